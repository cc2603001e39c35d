//! The messages the ipsec backend sends charon over VICI, with the keys
//! and values flanneld v0.28 sends (through goStrongswanVici), and the
//! replies it reads back; encoded and decoded by `serde_vici`. Per remote
//! host: an IKEv2 connection named as flanneld names it, PSK
//! authentication, one tunnel-mode child SA with request id 11 whose
//! policies charon leaves to the agent (`policies = no`).

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::IpsecConfig;
use crate::plan::ipsec::{Peer, REQID};

/// flanneld's IKE proposal.
const IKE_PROPOSAL: &str = "aes256-sha256-modp4096";

/// `load-shared`: the PSK for IKE with a host.
#[derive(Serialize)]
pub struct SharedKey<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    data: &'a str,
    owners: Vec<String>,
}

impl<'a> SharedKey<'a> {
    /// The key `psk` for IKE with the host at `owner`.
    pub fn new(psk: &'a str, owner: Ipv4Addr) -> SharedKey<'a> {
        SharedKey {
            kind: "IKE",
            data: psk,
            owners: vec![owner.to_string()],
        }
    }
}

/// A side's authentication: PSK, no identity (charon uses the address).
#[derive(Serialize)]
pub struct Auth {
    id: &'static str,
    auth: &'static str,
}

/// The child SA: the tunnel between the two subnets.
#[derive(Serialize)]
pub struct Child {
    local_ts: Vec<String>,
    remote_ts: Vec<String>,
    esp_proposals: Vec<String>,
    start_action: &'static str,
    close_action: &'static str,
    reqid: String,
    rekey_time: &'static str,
    mode: &'static str,
    policies: &'static str,
    dpd_action: &'static str,
}

/// `load-conn`'s connection: the IKEv2 SA between the public IPs.
#[derive(Serialize)]
pub struct Ike {
    local_addrs: Vec<String>,
    remote_addrs: Vec<String>,
    proposals: Vec<&'static str>,
    version: &'static str,
    encap: String,
    keyingtries: &'static str,
    rekey_time: &'static str,
    local: Auth,
    remote: Auth,
    children: HashMap<String, Child>,
}

/// `unload-conn`: the connection's name.
#[derive(Serialize)]
pub struct Unload<'a> {
    pub name: &'a str,
}

/// charon's answer to a command.
#[derive(Debug, Deserialize)]
pub struct Reply {
    pub success: String,
    #[serde(default)]
    pub errmsg: Option<String>,
}

impl Reply {
    /// Ok on `success = yes`, else charon's message.
    pub fn check(self) -> Result<(), String> {
        if self.success == "yes" {
            return Ok(());
        }
        Err(format!(
            "charon refused: {}",
            self.errmsg.as_deref().unwrap_or("no reason given")
        ))
    }
}

/// Decodes a reply packet's message body.
pub fn decode_reply(bytes: &[u8]) -> Result<Reply, String> {
    serde_vici::from_slice(bytes).map_err(|e| format!("charon's reply could not be decoded: {e}"))
}

/// The connection flanneld loads for `peer`.
pub fn connection(local_ip: Ipv4Addr, peer: &Peer, cfg: &IpsecConfig) -> HashMap<String, Ike> {
    let auth = || Auth {
        id: "",
        auth: "psk",
    };
    let child = Child {
        local_ts: vec![peer.policies[0].src.to_string()],
        remote_ts: vec![peer.remote.subnet.to_string()],
        esp_proposals: vec![cfg.esp_proposal.clone()],
        start_action: "start",
        close_action: "trap",
        reqid: REQID.to_string(),
        rekey_time: "1h",
        mode: "tunnel",
        policies: "no",
        dpd_action: "restart",
    };
    let ike = Ike {
        local_addrs: vec![local_ip.to_string()],
        remote_addrs: vec![peer.remote.public_ip.to_string()],
        proposals: vec![IKE_PROPOSAL],
        version: "2",
        // flanneld sends Go's bool text; charon reads it as a bool
        encap: cfg.udp_encap.to_string(),
        keyingtries: "0",
        rekey_time: "",
        local: auth(),
        remote: auth(),
        children: HashMap::from([(peer.child.clone(), child)]),
    };
    HashMap::from([(peer.connection.clone(), ike)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lease::{Lease, LeaseAttrs};
    use crate::plan::ipsec::{End, IpsecPlanner};

    #[test]
    fn the_connection_carries_flanneld_s_keys_and_values() {
        let planner = IpsecPlanner {
            local: End {
                subnet: "172.30.1.0/24".parse().expect("net"),
                public_ip: "198.18.0.11".parse().expect("ip"),
            },
            network: "172.30.0.0/16".parse().expect("net"),
        };
        let lease = Lease {
            key: "172.30.7.0-24".parse().expect("key"),
            attrs: LeaseAttrs::ipsec("198.18.0.12".parse().expect("ip")),
        };
        let peer = planner.peer(&lease.key, &lease.attrs).expect("peer");
        let cfg = crate::config::NetConfig::parse(&format!(
            r#"{{"Network":"172.30.0.0/16","Backend":{{"Type":"ipsec","PSK":"{}","UDPEncap":true}}}}"#,
            "p".repeat(96)
        ))
        .expect("config");
        let crate::config::BackendConfig::Ipsec(cfg) = cfg.backend else {
            panic!("ipsec")
        };
        let conn = connection("198.18.0.11".parse().expect("ip"), &peer, &cfg);
        let bytes = serde_vici::to_vec(&conn).expect("encodes");
        let text = String::from_utf8_lossy(&bytes);
        for want in [
            "198.18.0.11-172.30.1.0/24-172.30.7.0/24-198.18.0.12",
            "172.30.1.0/24-172.30.7.0/24",
            "aes256-sha256-modp4096",
            "aes128gcm16-sha256-prfsha256-ecp256",
            "encap",
            "true",
            "policies",
            "reqid",
            "11",
        ] {
            assert!(text.contains(want), "{want} in {text:?}");
        }
    }

    #[test]
    fn replies_decode_and_failures_carry_charon_s_message() {
        // key "success" = "no", key "errmsg" = "bad"
        let mut no = vec![3u8, 7];
        no.extend_from_slice(b"success");
        no.extend_from_slice(&[0, 2]);
        no.extend_from_slice(b"no");
        no.extend_from_slice(&[3, 6]);
        no.extend_from_slice(b"errmsg");
        no.extend_from_slice(&[0, 3]);
        no.extend_from_slice(b"bad");
        let e = decode_reply(&no)
            .expect("decodes")
            .check()
            .expect_err("refused");
        assert_eq!(e, "charon refused: bad");
        assert!(decode_reply(&[3, 200]).is_err(), "a torn reply is an error");
    }
}
