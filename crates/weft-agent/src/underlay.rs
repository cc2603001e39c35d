//! Choosing the underlay interface and public IP, as flanneld does:
//! `-iface` (names or IPs, first match wins), else `-iface-regex` (IPs,
//! then names), else `-iface-can-reach`, else the default route's device.
//! `-public-ip` overrides the address published to other hosts.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use regex_lite::Regex;
use weft_kernel::{Interface, KernelError, Netlink};

/// The interface inter-host traffic leaves by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Underlay {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// The interface's own IPv4 address (vxlan source address).
    pub local_ip: Ipv4Addr,
    /// Its network, for deciding which peers are on the same L2 segment.
    pub local_net: Ipv4Net,
    /// The address published in the lease.
    pub public_ip: Ipv4Addr,
    /// The interface's first global IPv6 address and network, if any.
    pub local_ipv6: Option<Ipv6Net>,
    /// The IPv6 address published in the lease (PublicIPv6).
    pub public_ipv6: Option<Ipv6Addr>,
}

/// What the flags ask for.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub iface: Vec<String>,
    pub iface_regex: Vec<String>,
    pub can_reach: Option<IpAddr>,
    pub public_ip: Option<Ipv4Addr>,
    pub public_ipv6: Option<Ipv6Addr>,
}

/// Why no interface fits.
#[derive(Debug, thiserror::Error)]
pub enum UnderlayError {
    #[error("-iface-regex {0:?}: {1}")]
    Regex(String, String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Kernel(#[from] KernelError),
}

fn first_v4(i: &Interface) -> Option<Ipv4Net> {
    i.addrs.iter().find_map(|a| match a {
        IpNet::V4(n) => Some(*n),
        IpNet::V6(_) => None,
    })
}

fn owning(ifaces: &[Interface], ip: IpAddr) -> Option<(&Interface, Ipv4Net)> {
    ifaces.iter().find_map(|i| {
        i.addrs.iter().find_map(|a| match a {
            IpNet::V4(n) if IpAddr::V4(n.addr()) == ip => Some((i, *n)),
            _ => None,
        })
    })
}

/// Pure choice among known interfaces. `default_oif` is the default
/// route's device; `reach_oif` the device that routes to `can_reach`.
pub fn choose(
    ifaces: &[Interface],
    sel: &Selector,
    default_oif: Option<u32>,
    reach_oif: Option<u32>,
) -> Result<Underlay, UnderlayError> {
    let by_index = |idx: u32| -> Option<(&Interface, Ipv4Net)> {
        let i = ifaces.iter().find(|i| i.index == idx)?;
        Some((i, first_v4(i)?))
    };
    let found = if !sel.iface.is_empty() {
        sel.iface
            .iter()
            .find_map(|want| match want.parse::<IpAddr>() {
                Ok(ip) => owning(ifaces, ip),
                Err(_) => ifaces
                    .iter()
                    .find(|i| &i.name == want)
                    .and_then(|i| Some((i, first_v4(i)?))),
            })
            .ok_or_else(|| {
                UnderlayError::NotFound(format!(
                    "-iface {}: no such interface with an IPv4 address",
                    sel.iface.join(",")
                ))
            })?
    } else if !sel.iface_regex.is_empty() {
        let res = sel
            .iface_regex
            .iter()
            .map(|r| Regex::new(r).map_err(|e| UnderlayError::Regex(r.clone(), e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let by_ip = res.iter().find_map(|re| {
            ifaces.iter().find_map(|i| {
                i.addrs.iter().find_map(|a| match a {
                    IpNet::V4(n) if re.is_match(&n.addr().to_string()) => Some((i, *n)),
                    _ => None,
                })
            })
        });
        let by_name = || {
            res.iter().find_map(|re| {
                ifaces
                    .iter()
                    .filter(|i| re.is_match(&i.name))
                    .find_map(|i| Some((i, first_v4(i)?)))
            })
        };
        by_ip.or_else(by_name).ok_or_else(|| {
            UnderlayError::NotFound(format!(
                "-iface-regex {}: no interface matches",
                sel.iface_regex.join(",")
            ))
        })?
    } else if let Some(target) = sel.can_reach {
        reach_oif.and_then(by_index).ok_or_else(|| {
            UnderlayError::NotFound(format!("-iface-can-reach {target}: no route to it"))
        })?
    } else {
        default_oif.and_then(by_index).ok_or_else(|| {
            UnderlayError::NotFound(
                "no default route to pick an interface from: pass -iface".to_string(),
            )
        })?
    };
    let (iface, net) = found;
    let local_ipv6 = iface.addrs.iter().find_map(|a| match a {
        // global addresses only: not link-local fe80::/10
        IpNet::V6(n) if n.addr().segments()[0] & 0xffc0 != 0xfe80 => Some(*n),
        _ => None,
    });
    Ok(Underlay {
        index: iface.index,
        name: iface.name.clone(),
        mtu: iface.mtu,
        local_ip: net.addr(),
        local_net: net.trunc(),
        public_ip: sel.public_ip.unwrap_or(net.addr()),
        local_ipv6,
        public_ipv6: sel.public_ipv6.or(local_ipv6.map(|n| n.addr())),
    })
}

/// Reads the host's interfaces and routes, then [`choose`]s.
pub fn discover(nl: &mut Netlink, sel: &Selector) -> Result<Underlay, UnderlayError> {
    let ifaces = weft_kernel::list_interfaces(nl)?;
    let default_oif =
        if sel.iface.is_empty() && sel.iface_regex.is_empty() && sel.can_reach.is_none() {
            weft_kernel::default_route_oif(nl, false)?
        } else {
            None
        };
    let reach_oif = match sel.can_reach {
        Some(ip) => weft_kernel::route_get_oif(nl, ip)?.map(|(oif, _)| oif),
        None => None,
    };
    choose(&ifaces, sel, default_oif, reach_oif)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(index: u32, name: &str, addrs: &[&str]) -> Interface {
        Interface {
            index,
            name: name.into(),
            mtu: 1500,
            up: true,
            addrs: addrs.iter().map(|a| a.parse().expect("net")).collect(),
        }
    }

    fn host() -> Vec<Interface> {
        vec![
            iface(1, "lo", &["127.0.0.1/8"]),
            iface(
                2,
                "eth0",
                &["198.18.0.10/24", "fe80::1/64", "2001:db8:198::10/64"],
            ),
            iface(3, "eth1", &["192.0.2.7/24"]),
            iface(4, "dummy0", &[]),
        ]
    }

    #[test]
    fn default_route_device() {
        let u = choose(&host(), &Selector::default(), Some(2), None).expect("choice");
        assert_eq!(
            (u.name.as_str(), u.local_ip.to_string()),
            ("eth0", "198.18.0.10".into())
        );
        assert_eq!(u.local_net.to_string(), "198.18.0.0/24");
        assert_eq!(u.public_ip, u.local_ip);
        assert_eq!(
            u.public_ipv6.map(|a| a.to_string()).as_deref(),
            Some("2001:db8:198::10"),
            "global, not link-local"
        );
        assert!(choose(&host(), &Selector::default(), None, None).is_err());
    }

    #[test]
    fn iface_by_name_or_ip_first_match_wins() {
        let sel = Selector {
            iface: vec!["nope".into(), "eth1".into(), "eth0".into()],
            ..Default::default()
        };
        assert_eq!(
            choose(&host(), &sel, Some(2), None).expect("c").name,
            "eth1"
        );
        let sel = Selector {
            iface: vec!["198.18.0.10".into()],
            ..Default::default()
        };
        assert_eq!(choose(&host(), &sel, None, None).expect("c").name, "eth0");
        let sel = Selector {
            iface: vec!["dummy0".into()],
            ..Default::default()
        };
        assert!(
            choose(&host(), &sel, None, None).is_err(),
            "no IPv4 address"
        );
    }

    #[test]
    fn regex_tries_ips_then_names() {
        let sel = Selector {
            iface_regex: vec![r"^192\.0\.2\.".into()],
            ..Default::default()
        };
        assert_eq!(choose(&host(), &sel, None, None).expect("c").name, "eth1");
        let sel = Selector {
            iface_regex: vec!["^eth0$".into()],
            ..Default::default()
        };
        assert_eq!(choose(&host(), &sel, None, None).expect("c").name, "eth0");
        let sel = Selector {
            iface_regex: vec!["(".into()],
            ..Default::default()
        };
        assert!(matches!(
            choose(&host(), &sel, None, None),
            Err(UnderlayError::Regex(..))
        ));
    }

    #[test]
    fn can_reach_and_public_ip() {
        let sel = Selector {
            can_reach: Some("192.0.2.99".parse().expect("ip")),
            public_ip: Some("203.0.113.5".parse().expect("ip")),
            ..Default::default()
        };
        let u = choose(&host(), &sel, None, Some(3)).expect("c");
        assert_eq!(u.name, "eth1");
        assert_eq!(u.local_ip.to_string(), "192.0.2.7");
        assert_eq!(u.public_ip.to_string(), "203.0.113.5");
    }
}
