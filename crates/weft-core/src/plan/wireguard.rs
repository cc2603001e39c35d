//! What one remote lease means for the wireguard backend: WireGuard peers
//! (public key, endpoint, allowed IPs) on this host's devices, as
//! flanneld configures them.
//!
//! In `separate` mode each family has its own device (`flannel-wg` over
//! IPv4, `flannel-wg-v6` over IPv6) and a lease gives one peer on each. In
//! the other modes one device carries both families and a lease gives one
//! peer holding both subnets, reached over the family the mode picks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;

use crate::config::{WgMode, WireguardConfig};
use crate::lease::{LeaseAttrs, LeaseError, LeaseKey};
use crate::wg_key::WgKey;

/// Which of this host's WireGuard devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WgDeviceId {
    /// `flannel-wg`: IPv4 in `separate` mode, both families otherwise.
    Main,
    /// `flannel-wg-v6`: IPv6 in `separate` mode.
    V6,
}

impl WgDeviceId {
    pub fn name(self) -> &'static str {
        match self {
            WgDeviceId::Main => "flannel-wg",
            WgDeviceId::V6 => "flannel-wg-v6",
        }
    }
}

/// One WireGuard peer to configure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeer {
    pub device: WgDeviceId,
    pub key: WgKey,
    pub endpoint: SocketAddr,
    pub allowed_ips: Vec<IpNet>,
}

/// Plans peers from leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgPeerPlanner {
    pub mode: WgMode,
    pub listen_port: u16,
    pub listen_port_v6: u16,
    /// The families the network carries.
    pub v4: bool,
    pub v6: bool,
    /// This host's underlay addresses (the `auto` mode's choice).
    pub local_v4: Option<Ipv4Addr>,
    pub local_v6: Option<Ipv6Addr>,
}

/// The device (and family) of each family's network: what this host's
/// devices are and which addresses and routes they carry.
pub fn devices(mode: WgMode, v4: bool, v6: bool) -> Vec<WgDeviceId> {
    match mode {
        WgMode::Separate => [(v4, WgDeviceId::Main), (v6, WgDeviceId::V6)]
            .into_iter()
            .filter_map(|(on, d)| on.then_some(d))
            .collect(),
        _ => vec![WgDeviceId::Main],
    }
}

/// The device that carries a family's pod traffic.
pub fn device_for(mode: WgMode, v6: bool) -> WgDeviceId {
    if v6 && mode == WgMode::Separate {
        WgDeviceId::V6
    } else {
        WgDeviceId::Main
    }
}

fn private_v4(ip: Ipv4Addr) -> bool {
    ip.is_private()
}

fn private_v6(ip: Ipv6Addr) -> bool {
    (ip.segments()[0] & 0xfe00) == 0xfc00
}

impl WgPeerPlanner {
    pub fn new(
        c: &WireguardConfig,
        v4: bool,
        v6: bool,
        local_v4: Option<Ipv4Addr>,
        local_v6: Option<Ipv6Addr>,
    ) -> Self {
        WgPeerPlanner {
            mode: c.mode,
            listen_port: c.listen_port,
            listen_port_v6: c.listen_port_v6,
            v4,
            v6,
            local_v4,
            local_v6,
        }
    }

    /// The peers a remote lease stands for, or why it is unusable.
    pub fn peers(&self, key: &LeaseKey, attrs: &LeaseAttrs) -> Result<Vec<WgPeer>, LeaseError> {
        let name = key.to_string();
        let err = |field: &'static str, msg: String| LeaseError::Value {
            key: name.clone(),
            field,
            msg,
        };
        if attrs.backend() != "wireguard" {
            return Err(err(
                "BackendType",
                format!("{:?} is not wireguard; lease ignored", attrs.backend()),
            ));
        }
        let public_key = |v6: bool| -> Result<(WgKey, u16), LeaseError> {
            let field = if v6 { "BackendV6Data" } else { "BackendData" };
            let d = attrs.wireguard_data(&name, v6)?;
            let k = WgKey::from_base64(&d.public_key)
                .map_err(|e| err(field, format!("PublicKey {e}")))?;
            Ok((k, d.port))
        };
        let v6_endpoint = |port: u16| -> Result<SocketAddr, LeaseError> {
            let ip = attrs
                .public_ipv6
                .ok_or_else(|| err("PublicIPv6", "missing: no IPv6 endpoint".into()))?;
            Ok(SocketAddr::new(IpAddr::V6(ip), port))
        };
        let v4_subnet = key.v4.filter(|_| self.v4).map(IpNet::V4);
        let v6_subnet = key.v6.filter(|_| self.v6).map(IpNet::V6);
        let mut peers = Vec::new();
        if self.mode == WgMode::Separate {
            if let Some(s) = v4_subnet {
                let (k, port) = public_key(false)?;
                let port = if port == 0 { self.listen_port } else { port };
                peers.push(WgPeer {
                    device: WgDeviceId::Main,
                    key: k,
                    endpoint: SocketAddr::new(IpAddr::V4(attrs.public_ip), port),
                    allowed_ips: vec![s],
                });
            }
            if let Some(s) = v6_subnet {
                let (k, port) = public_key(true)?;
                let port = if port == 0 { self.listen_port_v6 } else { port };
                peers.push(WgPeer {
                    device: WgDeviceId::V6,
                    key: k,
                    endpoint: v6_endpoint(port)?,
                    allowed_ips: vec![s],
                });
            }
            return Ok(peers);
        }
        let allowed_ips: Vec<IpNet> = [v4_subnet, v6_subnet].into_iter().flatten().collect();
        if allowed_ips.is_empty() {
            return Ok(peers);
        }
        // flanneld takes the key of the IPv6 data when the network has IPv6
        let (k, port) = public_key(v6_subnet.is_some())?;
        let v6 = match self.mode {
            WgMode::Ipv6 => true,
            WgMode::Auto => self.auto_picks_v6(attrs),
            _ => false,
        };
        let port = if port == 0 { self.listen_port } else { port };
        let endpoint = if v6 {
            v6_endpoint(port)?
        } else {
            SocketAddr::new(IpAddr::V4(attrs.public_ip), port)
        };
        peers.push(WgPeer {
            device: WgDeviceId::Main,
            key: k,
            endpoint,
            allowed_ips,
        });
        Ok(peers)
    }

    /// flanneld's choice in `auto` mode: IPv4 unless the peer's IPv4 is
    /// private (or this host has none) and both IPv6 addresses are public.
    fn auto_picks_v6(&self, attrs: &LeaseAttrs) -> bool {
        let Some(remote6) = attrs.public_ipv6 else {
            return false;
        };
        if !private_v4(attrs.public_ip) && self.local_v4.is_some() {
            return false;
        }
        !private_v6(remote6) && self.local_v6.is_some_and(|l| !private_v6(l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::WireguardLeaseData;

    const K1: &str = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
    const K2: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

    fn lease(key: &str, v6: bool) -> (LeaseKey, LeaseAttrs) {
        let data = |k: &str, port| {
            Some(WireguardLeaseData {
                public_key: k.into(),
                port,
            })
        };
        (
            key.parse().expect("key"),
            LeaseAttrs::wireguard(
                "198.18.0.12".parse().expect("ip"),
                v6.then(|| "2001:db8::12".parse().expect("ip")),
                data(K1, 51820),
                if v6 { data(K2, 51821) } else { None },
            ),
        )
    }

    fn planner(mode: WgMode, v6: bool) -> WgPeerPlanner {
        WgPeerPlanner {
            mode,
            listen_port: 51820,
            listen_port_v6: 51821,
            v4: true,
            v6,
            local_v4: Some("198.18.0.11".parse().expect("ip")),
            local_v6: Some("2001:db8::11".parse().expect("ip")),
        }
    }

    #[test]
    fn separate_mode_gives_one_peer_per_family_device() {
        let (k, a) = lease("172.30.12.0-24&fd00:0:0:12::-64", true);
        let peers = planner(WgMode::Separate, true)
            .peers(&k, &a)
            .expect("peers");
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].device, WgDeviceId::Main);
        assert_eq!(peers[0].key.to_base64(), K1);
        assert_eq!(peers[0].endpoint.to_string(), "198.18.0.12:51820");
        assert_eq!(peers[0].allowed_ips[0].to_string(), "172.30.12.0/24");
        assert_eq!(peers[1].device, WgDeviceId::V6);
        assert_eq!(peers[1].key.to_base64(), K2);
        assert_eq!(peers[1].endpoint.to_string(), "[2001:db8::12]:51821");
        assert_eq!(peers[1].allowed_ips[0].to_string(), "fd00:0:0:12::/64");
    }

    #[test]
    fn single_device_modes_give_one_peer_with_both_subnets() {
        let (k, a) = lease("172.30.12.0-24&fd00:0:0:12::-64", true);
        let p = planner(WgMode::Ipv6, true).peers(&k, &a).expect("peers");
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].allowed_ips.len(), 2);
        assert_eq!(p[0].key.to_base64(), K2, "the IPv6 data's key, as flanneld");
        assert!(p[0].endpoint.is_ipv6());
        let p = planner(WgMode::Auto, true).peers(&k, &a).expect("peers");
        assert!(p[0].endpoint.is_ipv4(), "public IPv4 on both ends: IPv4");
        let p = planner(WgMode::Ipv4, true).peers(&k, &a).expect("peers");
        // key and port both come from the IPv6 data, as flanneld takes them
        assert_eq!(p[0].endpoint.to_string(), "198.18.0.12:51821");
    }

    #[test]
    fn auto_prefers_ipv6_only_when_ipv4_is_private() {
        let (k, mut a) = lease("172.30.12.0-24&fd00:0:0:12::-64", true);
        a.public_ip = "10.0.0.12".parse().expect("ip");
        let p = planner(WgMode::Auto, true).peers(&k, &a).expect("peers");
        assert!(p[0].endpoint.is_ipv6());
        a.public_ipv6 = Some("fd00::12".parse().expect("ip"));
        let p = planner(WgMode::Auto, true).peers(&k, &a).expect("peers");
        assert!(p[0].endpoint.is_ipv4(), "private IPv6: back to IPv4");
    }

    #[test]
    fn unusable_leases_say_why() {
        let (k, mut a) = lease("172.30.12.0-24", false);
        a.backend_type = Some("vxlan".into());
        let e = planner(WgMode::Separate, false)
            .peers(&k, &a)
            .expect_err("vxlan");
        assert!(e.to_string().contains("not wireguard"), "{e}");
        let (k, a) = lease("172.30.12.0-24", false);
        let bad = LeaseAttrs::parse(
            "k",
            br#"{"PublicIP":"198.18.0.12","BackendType":"wireguard","BackendData":{"PublicKey":"short"}}"#,
        )
        .expect("parses");
        let e = planner(WgMode::Separate, false)
            .peers(&k, &bad)
            .expect_err("bad key");
        assert!(e.to_string().contains("BackendData: PublicKey"), "{e}");
        // a v6 lease on a host whose network has no IPv6: only the v4 peer
        let (k6, a6) = lease("172.30.12.0-24&fd00:0:0:12::-64", true);
        assert_eq!(
            planner(WgMode::Separate, false)
                .peers(&k6, &a6)
                .expect("v4")
                .len(),
            1
        );
        assert_eq!(
            planner(WgMode::Separate, false)
                .peers(&k, &a)
                .expect("v4")
                .len(),
            1
        );
    }

    #[test]
    fn a_lease_without_port_uses_this_host_s_listen_port() {
        let k: LeaseKey = "172.30.12.0-24".parse().expect("key");
        let a = LeaseAttrs::parse(
            "k",
            format!(r#"{{"PublicIP":"198.18.0.12","BackendType":"wireguard","BackendData":{{"PublicKey":"{K1}"}}}}"#).as_bytes(),
        )
        .expect("parses");
        let p = planner(WgMode::Separate, false)
            .peers(&k, &a)
            .expect("peer");
        assert_eq!(p[0].endpoint.port(), 51820);
    }

    #[test]
    fn devices_per_mode() {
        assert_eq!(
            devices(WgMode::Separate, true, true),
            vec![WgDeviceId::Main, WgDeviceId::V6]
        );
        assert_eq!(devices(WgMode::Separate, false, true), vec![WgDeviceId::V6]);
        assert_eq!(devices(WgMode::Auto, true, true), vec![WgDeviceId::Main]);
        assert_eq!(device_for(WgMode::Separate, true), WgDeviceId::V6);
        assert_eq!(device_for(WgMode::Ipv6, true), WgDeviceId::Main);
    }
}
