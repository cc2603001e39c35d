//! `NetConfig::parse`: the network config JSON read from `<prefix>/config`.
//! Input: the JSON text, or, when the first byte is 0xff (never valid
//! UTF-8, so no JSON is lost), bytes that `structured` turns into a config
//! with well-formed but arbitrary networks, lengths and bounds, to reach
//! the subnet arithmetic more often than mutated text does. Besides "no
//! panic", an accepted config must satisfy the pool invariants the
//! allocator relies on.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Value};
use weft_core::config::{BackendConfig, NetConfig};
use weft_core::subnet::{addr_u128, make_net, SubnetPool};

fn check_pool(pool: &SubnetPool, v6: bool) {
    let net = pool.network();
    assert_eq!(net.addr().is_ipv6(), v6, "pool in the wrong family: {net}");
    assert_eq!(net, net.trunc(), "network not truncated: {net}");
    let len = pool.subnet_len();
    assert!(
        len >= net.prefix_len() + 2,
        "{net}: /{len} leaves < 4 subnets"
    );
    assert!(len <= net.max_prefix_len() - 2, "{net}: /{len} too long");
    let (min, max) = (pool.min(), pool.max());
    assert!(
        addr_u128(min) <= addr_u128(max),
        "{net}: min {min} > max {max}"
    );
    for a in [min, max] {
        assert!(
            pool.contains_subnet(&make_net(a, len)),
            "{net}: bound {a} is not one of its /{len} subnets"
        );
    }
    assert!(pool.capacity() >= 1);
    assert_eq!(pool.iter().next(), Some(make_net(min, len)));
}

/// An address near `net`'s subnets: on a subnet boundary inside it, just off
/// one, or anywhere.
fn bound(u: &mut Unstructured, v6: bool, base: u128, len: u8) -> Result<Option<String>> {
    let bits: u32 = if v6 { 128 } else { 32 };
    let step = 1u128
        .checked_shl(bits.saturating_sub(len as u32))
        .unwrap_or(0);
    let a: u128 = match u.int_in_range(0..=3u8)? {
        0 => return Ok(None),
        1 => base.wrapping_add(step.wrapping_mul(u.arbitrary::<u16>()? as u128)),
        2 => base
            .wrapping_add(step.wrapping_mul(u.arbitrary::<u16>()? as u128))
            .wrapping_add(1),
        _ => u.arbitrary()?,
    };
    Ok(Some(if v6 {
        Ipv6Addr::from(a).to_string()
    } else {
        Ipv4Addr::from(a as u32).to_string()
    }))
}

fn family(u: &mut Unstructured, m: &mut Map<String, Value>, v6: bool) -> Result<()> {
    let (net, len, min, max) = if v6 {
        (
            "IPv6Network",
            "IPv6SubnetLen",
            "IPv6SubnetMin",
            "IPv6SubnetMax",
        )
    } else {
        ("Network", "SubnetLen", "SubnetMin", "SubnetMax")
    };
    let bits: u8 = if v6 { 128 } else { 32 };
    let addr: u128 = if v6 {
        u.arbitrary()?
    } else {
        u.arbitrary::<u32>()? as u128
    };
    let prefix = u.int_in_range(0..=bits)?;
    let base = addr
        & !(u128::MAX
            .checked_shr(prefix as u32 + 128 - bits as u32)
            .unwrap_or(0));
    let text = if v6 {
        Ipv6Addr::from(addr).to_string()
    } else {
        Ipv4Addr::from(addr as u32).to_string()
    };
    if u.ratio(15, 16)? {
        m.insert(net.into(), json!(format!("{text}/{prefix}")));
    }
    let subnet_len: u8 = if u.ratio(3, 4)? {
        u.int_in_range(0..=bits)?
    } else {
        u.arbitrary()?
    };
    if u.arbitrary()? {
        m.insert(len.into(), json!(subnet_len));
    }
    let eff = if subnet_len == 0 {
        prefix.saturating_add(2).max(if v6 { 64 } else { 24 })
    } else {
        subnet_len
    };
    if let Some(a) = bound(u, v6, base, eff)? {
        m.insert(min.into(), json!(a));
    }
    if let Some(a) = bound(u, v6, base, eff)? {
        m.insert(max.into(), json!(a));
    }
    Ok(())
}

/// A config object built from fuzz bytes; all fields well-typed.
fn structured(u: &mut Unstructured) -> Result<String> {
    let mut m = Map::new();
    for (name, v6) in [("EnableIPv4", false), ("EnableIPv6", true)] {
        let on: Option<bool> = u.arbitrary()?;
        if let Some(on) = on {
            m.insert(name.into(), json!(on));
        }
        if on.unwrap_or(!v6) || u.ratio(1, 8)? {
            family(u, &mut m, v6)?;
        }
    }
    let mut b = Map::new();
    let kind = *u.choose(&["vxlan", "VXLAN", "host-gw", "udp", "none", ""])?;
    if !kind.is_empty() {
        b.insert("Type".into(), json!(kind));
    }
    for key in ["VNI", "Port", "MTU"] {
        if u.arbitrary()? {
            b.insert(
                key.into(),
                json!(u.arbitrary::<u32>()? >> u.int_in_range(0..=31)?),
            );
        }
    }
    for key in ["GBP", "Learning", "DirectRouting"] {
        if let Some(v) = u.arbitrary::<Option<bool>>()? {
            b.insert(key.into(), json!(v));
        }
    }
    if u.ratio(7, 8)? {
        m.insert("Backend".into(), Value::Object(b));
    }
    Ok(Value::Object(m).to_string())
}

fuzz_target!(|data: &[u8]| {
    let owned;
    let text = match data.split_first() {
        Some((0xff, rest)) => match structured(&mut Unstructured::new(rest)) {
            Ok(t) => {
                owned = t;
                owned.as_str()
            }
            Err(_) => return,
        },
        _ => match std::str::from_utf8(data) {
            Ok(t) => t,
            Err(_) => return,
        },
    };
    match NetConfig::parse(text) {
        Ok(c) => {
            assert!(c.ipv4.is_some() || c.ipv6.is_some());
            if let Some(p) = &c.ipv4 {
                check_pool(p, false);
            }
            if let Some(p) = &c.ipv6 {
                check_pool(p, true);
            }
            if let BackendConfig::Vxlan(v) = &c.backend {
                assert!(v.vni < 1 << 24);
                assert!(v.port != 0);
                assert!(v.mtu.is_none_or(|m| (576..=65535).contains(&m)));
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains('\n'), "error is not one line: {msg:?}");
        }
    }
});
