//! The ipsec backend's keys, with flanneld's defaults and checks: `PSK`
//! (required, at least 96 characters), `UDPEncap` (false) and
//! `ESPProposal` (`aes128gcm16-sha256-prfsha256-ecp256`). Both strings go
//! to strongSwan's charon, so weft also refuses what charon could not
//! read as one value: control characters, or a proposal with characters
//! outside strongSwan's proposal syntax.

use super::{field_err, requalify, ConfigError, Fields};

/// flanneld's ESP proposal when the config names none.
pub const DEFAULT_ESP_PROPOSAL: &str = "aes128gcm16-sha256-prfsha256-ecp256";
/// flanneld's shortest accepted pre-shared key.
pub const MIN_PSK_LEN: usize = 96;
/// What a VICI value can hold is far more; a key this long is a mistake.
const MAX_PSK_LEN: usize = 4096;
const MAX_PROPOSAL_LEN: usize = 1024;

/// The pre-shared key; its Debug form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk(String);

impl Psk {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Psk(<{} characters>)", self.0.len())
    }
}

/// ipsec backend keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsecConfig {
    pub psk: Psk,
    /// ESP in UDP (port 4500) even without NAT between hosts.
    pub udp_encap: bool,
    pub esp_proposal: String,
}

pub(super) fn parse_ipsec(f: &Fields) -> Result<IpsecConfig, ConfigError> {
    let psk = f
        .string("PSK")
        .map_err(|e| requalify(e, "Backend.PSK"))?
        .unwrap_or("");
    // flanneld counts bytes (Go's len)
    if psk.len() < MIN_PSK_LEN {
        return Err(field_err(
            "Backend.PSK",
            format!(
                "is too short: {} characters, at least {MIN_PSK_LEN} needed (as flanneld)",
                psk.len()
            ),
        ));
    }
    if psk.len() > MAX_PSK_LEN || psk.chars().any(char::is_control) {
        return Err(field_err(
            "Backend.PSK",
            format!("must be at most {MAX_PSK_LEN} characters with no control characters"),
        ));
    }
    let udp_encap = f
        .boolean("UDPEncap")
        .map_err(|e| requalify(e, "Backend.UDPEncap"))?
        .unwrap_or(false);
    let esp_proposal = match f
        .string("ESPProposal")
        .map_err(|e| requalify(e, "Backend.ESPProposal"))?
    {
        None | Some("") => DEFAULT_ESP_PROPOSAL.to_string(),
        Some(p) => check_proposal(p)?.to_string(),
    };
    Ok(IpsecConfig {
        psk: Psk(psk.to_string()),
        udp_encap,
        esp_proposal,
    })
}

/// strongSwan's proposal syntax: algorithm names joined by `-`, several
/// proposals joined by `,`, `!` before one to make it strict.
fn check_proposal(p: &str) -> Result<&str, ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | ',' | '!');
    if p.len() > MAX_PROPOSAL_LEN || !p.chars().all(allowed) {
        return Err(field_err(
            "Backend.ESPProposal",
            format!("{p:?} is not a strongSwan proposal (algorithm names joined by '-', like {DEFAULT_ESP_PROPOSAL:?})"),
        ));
    }
    Ok(p)
}
