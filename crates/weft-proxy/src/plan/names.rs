//! kube-proxy's chain names: a prefix and the first 16 characters of the
//! base32 (RFC 4648) SHA-256 of the service port name and protocol (and, for
//! endpoint chains, the endpoint). nft chains carry 8 characters and the
//! readable name, as kube-proxy's nftables mode does.

use arrayvec::ArrayString;
use sha2::{Digest, Sha256};

use crate::spec::Protocol;

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The first `n` base32 characters of `sha256(text)` (n ≤ 51).
fn hash(text: &str, n: usize) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut out = String::with_capacity(n);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in digest.iter() {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
            if out.len() == n {
                return out;
            }
        }
        acc &= (1 << bits) - 1;
    }
    out
}

/// The hashed part of a service port's chains (`svc_port` is `ns/name:port`).
pub fn service_hash(svc_port: &str, protocol: Protocol) -> String {
    hash(&format!("{svc_port}{}", protocol.lower()), 16)
}

/// An iptables chain name, kept inline: iptables allows 28 characters and
/// weft's are at most 25 (`KUBE-SEP-` and 16 of a hash). At 255,000
/// endpoints the proxy keeps 255,000 of them between syncs; as heap
/// strings, allocated one by one among the rules of a full sync, they
/// pinned most of the freed rule text in memory.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChainName(ArrayString<28>);

impl ChainName {
    /// `prefix` and `hash` joined, cut at 28 characters (never reached:
    /// the prefixes are at most 9 characters and the hashes 16).
    pub fn new(prefix: &str, hash: &str) -> ChainName {
        let mut name = ArrayString::new();
        for c in prefix.chars().chain(hash.chars()) {
            if name.try_push(c).is_err() {
                break;
            }
        }
        ChainName(name)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ChainName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<&str> for ChainName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ChainName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for ChainName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// `KUBE-SEP-…` for one endpoint (`ip:port`, IPv6 in brackets).
pub fn endpoint_chain(svc_port: &str, protocol: Protocol, endpoint: &str) -> ChainName {
    let text = format!("{svc_port}{}{endpoint}", protocol.lower());
    ChainName::new("KUBE-SEP-", &hash(&text, 16))
}

/// The 8-character hash nft chain names start with.
pub fn nft_hash(text: &str) -> String {
    hash(text, 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names the article's `iptables-save` shows (and the notes verify).
    #[test]
    fn article_chain_names() {
        let svc = "default/example-service:";
        assert_eq!(service_hash(svc, Protocol::Tcp), "BR4KARPIGKMRMN3E");
        assert_eq!(
            endpoint_chain(svc, Protocol::Tcp, "172.30.14.2:80"),
            "KUBE-SEP-ONEKQBIWICF7RAR3"
        );
        assert_eq!(
            endpoint_chain(svc, Protocol::Tcp, "172.30.46.2:80"),
            "KUBE-SEP-NCPBOLUH5XTTHG3E"
        );
        assert_eq!(
            service_hash("default/kubernetes:https", Protocol::Tcp),
            "NPX46M4PTMTKRN6Y"
        );
    }

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // base32("") prefix of sha256("") = e3b0c442…: RFC 4648 alphabet.
        assert_eq!(hash("", 8), "4OYMIQUY");
    }
}
