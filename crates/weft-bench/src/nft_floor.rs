//! The netlink floor of an nftables ruleset: its tables, chains and rules
//! loaded as text (`nft -f`, small), then every set and map element over
//! nf_tables netlink as register bytes (`weft_kernel::NftElementBatch`),
//! with no text parser. The elements come from `nft -j list table`, laid
//! out by the types nft reports for each set (each field of a
//! concatenation padded to 4 bytes, as the kernel holds them).

use std::net::IpAddr;

use anyhow::{bail, Context, Result};
use serde_json::Value;
use weft_kernel::{NftData, NftElementBatch, NftElementSocket};
use weft_proxy::render::nft_wire::protocol_number;
use weft_proxy::spec::Protocol;

/// The transaction sizes (elements) the floor is measured with; the
/// fastest is the floor. Small ones are faster (each message is copied
/// into the kernel and parsed while it is still in the CPU's cache: at
/// 255,000 elements 10,000 a transaction took 160 ms where 100,000 took
/// 200-250), so a floor of one size only would not be one.
pub const TRANSACTION_SIZES: [usize; 2] = [10_000, 100_000];

/// `text` (`nft list table` output) without its `elements = { … }` blocks:
/// the objects and rules alone.
pub fn without_elements(text: &str) -> String {
    let mut out = String::with_capacity(text.len() / 8);
    let mut skipping = false;
    for line in text.lines() {
        if !skipping && line.trim_start().starts_with("elements = {") {
            skipping = true;
        }
        if skipping {
            if line.trim_end().ends_with('}') {
                skipping = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// One field of a key or value, as `type` lays it out.
fn put_field(out: &mut Vec<u8>, kind: &str, v: &Value, pad: bool) -> Result<()> {
    let start = out.len();
    match kind {
        "ipv4_addr" | "ipv6_addr" => {
            let ip: IpAddr = v.as_str().context("an address")?.parse()?;
            match ip {
                IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
                IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
            }
        }
        "inet_proto" => out.push(match v {
            Value::String(s) => Protocol::parse(s)
                .map(protocol_number)
                .with_context(|| format!("protocol {s}"))?,
            Value::Number(n) => u8::try_from(n.as_u64().context("a protocol")?)?,
            other => bail!("protocol {other}"),
        }),
        "inet_service" => {
            let port = u16::try_from(v.as_u64().context("a port")?)?;
            out.extend_from_slice(&port.to_be_bytes());
        }
        // `numgen` results and other host-order 32-bit numbers
        "integer" => {
            let n = u32::try_from(v.as_u64().context("a number")?)?;
            out.extend_from_slice(&n.to_ne_bytes());
        }
        other => bail!("set field type {other} is not supported"),
    }
    if pad {
        out.resize(start + (out.len() - start).div_ceil(4) * 4, 0);
    }
    Ok(())
}

/// A key or value of `types` (a concatenation when several).
fn put_value(out: &mut Vec<u8>, types: &[&str], v: &Value) -> Result<()> {
    let parts: Vec<&Value> = match v.get("concat").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![v],
    };
    if parts.len() != types.len() {
        bail!("{v} does not match the set's type {}", types.join(" . "));
    }
    for (kind, part) in types.iter().zip(parts) {
        put_field(out, kind, part, types.len() > 1)?;
    }
    Ok(())
}

/// A set's or map's field types from its `type` (a name or a list).
fn types(v: &Value) -> Vec<&str> {
    match v {
        Value::String(s) => s.split(" . ").collect(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    }
}

/// Every element of `listing` (`nft -j list table`) as netlink batches
/// of at most `per_transaction` elements each.
pub fn element_batches(
    listing: &Value,
    family: u8,
    per_transaction: usize,
) -> Result<Vec<NftElementBatch>> {
    let mut batches = Vec::new();
    let mut batch: Option<NftElementBatch> = None;
    let (mut key, mut data) = (Vec::new(), Vec::new());
    let objects = listing["nftables"].as_array().context("nft -j output")?;
    for o in objects {
        let Some(set) = o.get("map").or_else(|| o.get("set")) else {
            continue;
        };
        let (Some(name), Some(table)) = (set["name"].as_str(), set["table"].as_str()) else {
            continue;
        };
        let key_types = types(&set["type"]);
        let value_types = types(&set["map"]);
        for e in set["elem"].as_array().into_iter().flatten() {
            let b = batch.get_or_insert_with(|| NftElementBatch::new(family, table));
            let (k, v) = match e.as_array() {
                Some(pair) if pair.len() == 2 && !value_types.is_empty() => {
                    (&pair[0], Some(&pair[1]))
                }
                _ => (e, None),
            };
            key.clear();
            put_value(&mut key, &key_types, k).with_context(|| format!("{name}: {e}"))?;
            let value = match v {
                None => None,
                Some(v) if value_types == ["verdict"] => Some(verdict(v)?),
                Some(v) => {
                    data.clear();
                    put_value(&mut data, &value_types, v)
                        .with_context(|| format!("{name}: {e}"))?;
                    Some(NftData::Value(&data))
                }
            };
            b.add(name, &key, value);
            if b.len() >= per_transaction {
                batches.extend(batch.take());
            }
        }
    }
    batches.extend(batch);
    Ok(batches)
}

fn verdict(v: &Value) -> Result<NftData<'_>> {
    let target = |k: &str| v.get(k).and_then(|g| g["target"].as_str());
    Ok(if let Some(chain) = target("goto") {
        NftData::Goto(chain)
    } else if let Some(chain) = target("jump") {
        NftData::Jump(chain)
    } else if v.get("drop").is_some() || v.as_str() == Some("drop") {
        NftData::Drop
    } else if v.get("accept").is_some() || v.as_str() == Some("accept") {
        NftData::Accept
    } else {
        bail!("verdict {v} is not supported")
    })
}

/// Commits `batches` in the calling thread's network namespace.
pub fn load(batches: Vec<NftElementBatch>) -> Result<()> {
    let mut sock = NftElementSocket::open()?;
    for b in batches {
        sock.commit(&b.finish())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_proxy::render::nft_wire::debug_words as words;

    /// The words nft 1.0.6 prints with `--debug=netlink` for the same
    /// elements (x86-64).
    #[test]
    #[cfg(target_endian = "little")]
    fn fields_are_laid_out_as_the_kernel_holds_them() {
        let mut out = Vec::new();
        let key = serde_json::json!({"concat": ["10.96.0.10", "tcp", 80, 1]});
        put_value(
            &mut out,
            &["ipv4_addr", "inet_proto", "inet_service", "integer"],
            &key,
        )
        .expect("encodes");
        assert_eq!(words(&out), "0a00600a 00000006 00005000 00000001");
        out.clear();
        let value = serde_json::json!({"concat": ["100.64.1.5", 8080]});
        put_value(&mut out, &["ipv4_addr", "inet_service"], &value).expect("encodes");
        assert_eq!(words(&out), "05014064 0000901f");
        out.clear();
        let bad = serde_json::json!({"concat": ["10.96.0.10", "tcp"]});
        assert!(put_value(&mut out, &["ipv4_addr", "inet_proto", "inet_service"], &bad).is_err());
    }

    #[test]
    fn element_blocks_are_cut_from_the_listing() {
        let text = "table ip t {\n\tmap m {\n\t\ttype inet_service : verdict\n\t\telements = { 1 : drop,\n\t\t\t     2 : drop }\n\t}\n\tchain c {\n\t}\n}\n";
        assert_eq!(
            without_elements(text),
            "table ip t {\n\tmap m {\n\t\ttype inet_service : verdict\n\t}\n\tchain c {\n\t}\n}\n"
        );
    }
}
