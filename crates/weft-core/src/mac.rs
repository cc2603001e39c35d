//! Ethernet MAC addresses in the `aa:bb:cc:dd:ee:ff` form flannel publishes.

use std::fmt;
use std::str::FromStr;

/// A 48-bit Ethernet hardware address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

/// A MAC address string that is not six colon-separated hex bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?}: want six hex bytes such as 56:27:7d:1c:08:22")]
pub struct MacParseError(pub String);

impl MacAddr {
    /// Builds a locally administered unicast address from arbitrary bytes.
    pub fn local_unicast(mut bytes: [u8; 6]) -> Self {
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        MacAddr(bytes)
    }

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// Parses from a byte slice as netlink returns it (must be 6 bytes).
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 6]>::try_from(b).ok().map(MacAddr)
    }
}

impl FromStr for MacAddr {
    type Err = MacParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || MacParseError(s.to_string());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in out.iter_mut() {
            let p = parts.next().ok_or_else(err)?;
            if p.len() != 2 {
                return Err(err());
            }
            *byte = u8::from_str_radix(p, 16).map_err(|_| err())?;
        }
        if parts.next().is_some() {
            return Err(err());
        }
        Ok(MacAddr(out))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_article_mac() {
        let m: MacAddr = "56:27:7d:1c:08:22".parse().expect("valid");
        assert_eq!(m.to_string(), "56:27:7d:1c:08:22");
        let upper: MacAddr = "E6:B2:FD:F6:66:96".parse().expect("valid");
        assert_eq!(upper.to_string(), "e6:b2:fd:f6:66:96");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "56:27:7d:1c:08",
            "56:27:7d:1c:08:22:11",
            "5:27:7d:1c:08:22",
            "zz:27:7d:1c:08:22",
            "56-27-7d-1c-08-22",
            "562:7:7d:1c:08:22",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn local_unicast_sets_bits() {
        let m = MacAddr::local_unicast([0xff; 6]);
        assert_eq!(m.0[0] & 0x01, 0, "multicast bit cleared");
        assert_eq!(m.0[0] & 0x02, 0x02, "local bit set");
    }
}
