//! WireGuard keys as flannel, `wg` and the UAPI spell them: 32 bytes,
//! written as standard base64 (44 characters) in files, leases and
//! configs, and as hex on the UAPI socket.
//!
//! A private key or pre-shared key is a [`WgSecret`]: its `Debug` and
//! `Display` never show the bytes, so it cannot reach a log by accident.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// A public key (shown freely).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

/// A private or pre-shared key (never shown).
#[derive(Clone, PartialEq, Eq)]
pub struct WgSecret(pub [u8; 32]);

/// Why a key text was refused (never quoting the text: it may be secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("is not base64 (a WireGuard key is 44 characters of base64, as `wg genkey` prints)")]
    Base64,
    #[error("holds {0} bytes, not the 32 of a WireGuard key")]
    Length(usize),
    #[error("is not 64 hex digits")]
    Hex,
}

fn decode_base64(text: &str) -> Result<[u8; 32], KeyError> {
    // Go's decoder (flanneld, wgctrl) skips line breaks; so does this.
    let text: String = text.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    let bytes = STANDARD.decode(text.trim()).map_err(|_| KeyError::Base64)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Length(bytes.len()))
}

fn decode_hex(text: &str) -> Result<[u8; 32], KeyError> {
    let t = text.as_bytes();
    if t.len() != 64 {
        return Err(KeyError::Hex);
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; 32];
    for (i, pair) in t.chunks(2).enumerate() {
        out[i] = digit(pair[0]).ok_or(KeyError::Hex)? << 4 | digit(pair[1]).ok_or(KeyError::Hex)?;
    }
    Ok(out)
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl WgKey {
    pub fn from_base64(text: &str) -> Result<WgKey, KeyError> {
        decode_base64(text).map(WgKey)
    }
    pub fn from_hex(text: &str) -> Result<WgKey, KeyError> {
        decode_hex(text).map(WgKey)
    }
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({})", self.to_base64())
    }
}

impl std::str::FromStr for WgKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WgKey::from_base64(s)
    }
}

impl WgSecret {
    pub fn from_base64(text: &str) -> Result<WgSecret, KeyError> {
        decode_base64(text).map(WgSecret)
    }
    pub fn from_hex(text: &str) -> Result<WgSecret, KeyError> {
        decode_hex(text).map(WgSecret)
    }
    /// The text of a key file (what `wg genkey` prints, without the newline).
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
    /// The UAPI's spelling (only ever written to the root-only socket).
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
    /// A private key from 32 random bytes, clamped as Curve25519 keys are
    /// (what `wg genkey` and flanneld's wgtypes do).
    pub fn private_from_random(mut bytes: [u8; 32]) -> WgSecret {
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        WgSecret(bytes)
    }
}

impl fmt::Debug for WgSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WgSecret(hidden)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_hex_round_trip() {
        // a key as `wg genkey | wg pubkey` prints it
        let text = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
        let k = WgKey::from_base64(text).expect("key");
        assert_eq!(k.to_base64(), text);
        assert_eq!(WgKey::from_hex(&k.to_hex()).expect("hex"), k);
        assert_eq!(
            WgKey::from_base64(&format!("{text}\n")).expect("newline"),
            k
        );
    }

    #[test]
    fn bad_keys_are_refused_without_quoting_them() {
        let e = WgKey::from_base64("not a key!").expect_err("not base64");
        assert_eq!(e, KeyError::Base64);
        assert_eq!(
            WgKey::from_base64("AAAA").expect_err("short"),
            KeyError::Length(3)
        );
        assert_eq!(WgKey::from_hex("zz").expect_err("hex"), KeyError::Hex);
        let secret =
            WgSecret::from_base64("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=").expect("secret");
        assert_eq!(format!("{secret:?}"), "WgSecret(hidden)");
    }

    #[test]
    fn private_keys_are_clamped() {
        let k = WgSecret::private_from_random([0xff; 32]);
        assert_eq!(k.0[0], 0xf8);
        assert_eq!(k.0[31], 0x7f);
    }
}
