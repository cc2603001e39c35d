//! Which iptables backend rules go to: legacy x_tables or nf_tables.
//!
//! A host's rules must all live in one backend: kube-proxy, docker and
//! flanneld writing to different ones is a classic cause of Services that
//! work on some nodes only. The backend is chosen as kube-proxy's
//! iptables-wrapper chooses it: the one that already holds more rules
//! wins; with no rules anywhere, the one `iptables` runs by default
//! (`iptables v1.8.9 (legacy)`, `(nf_tables)`; before 1.8 there was only
//! legacy). The backend also decides how big syncs are cut: see
//! [`Backend::chunked`].

use std::path::Path;
use std::str::FromStr;

use crate::tool::{run, FirewallError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Backend {
    Legacy,
    Nft,
}

impl Backend {
    /// The name `iptables --version` prints.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nf_tables",
        }
    }

    /// The infix of its programs (`iptables-legacy-restore`).
    fn infix(self) -> &'static str {
        match self {
            Backend::Legacy => "legacy",
            Backend::Nft => "nft",
        }
    }

    /// Whether large syncs are cut into several transactions. iptables-nft
    /// keeps a transaction's chain names in a sorted list (quadratic in
    /// one big transaction), so it gets transactions of a few hundred
    /// chains. A legacy commit copies the whole table out of the kernel
    /// and back, so many transactions into a big table are quadratic
    /// instead: legacy gets one, as kube-proxy does.
    pub fn chunked(self) -> bool {
        self == Backend::Nft
    }

    pub const ALL: [Backend; 2] = [Backend::Legacy, Backend::Nft];
}

/// What the operator asked for (`--iptables-backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    #[default]
    Auto,
    Only(Backend),
}

impl FromStr for BackendChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "" => Ok(BackendChoice::Auto),
            "legacy" => Ok(BackendChoice::Only(Backend::Legacy)),
            "nft" | "nf_tables" => Ok(BackendChoice::Only(Backend::Nft)),
            _ => Err(format!(
                "{s:?} is not an iptables backend (auto, legacy or nft)"
            )),
        }
    }
}

/// The backend `iptables --version` output names, if any.
pub fn version_backend(version: &str) -> Option<Backend> {
    let v = version.trim();
    if v.contains("(nf_tables)") {
        Some(Backend::Nft)
    } else if v.contains("(legacy)") {
        Some(Backend::Legacy)
    } else if v.starts_with("iptables v1.") && !v.contains('(') {
        // 1.4 and 1.6 (CentOS 7's 1.4.21): legacy was all there was
        Some(Backend::Legacy)
    } else {
        None
    }
}

/// Rule lines (`-A …`) in `iptables-save` output.
pub fn rule_count(saved: &str) -> usize {
    saved.lines().filter(|l| l.starts_with("-A ")).count()
}

/// iptables-wrapper's choice: more rules wins; on a tie (typically none
/// anywhere) the default of `iptables`, else nf_tables. With the reason.
pub fn decide(
    default: Option<Backend>,
    legacy_rules: usize,
    nft_rules: usize,
) -> (Backend, String) {
    let counts = format!("{legacy_rules} rules in legacy, {nft_rules} in nf_tables");
    if legacy_rules > nft_rules {
        (Backend::Legacy, counts)
    } else if nft_rules > legacy_rules {
        (Backend::Nft, counts)
    } else {
        match default {
            Some(b) => (b, format!("{counts}; iptables defaults to {}", b.name())),
            None => (Backend::Nft, format!("{counts}; iptables names no backend")),
        }
    }
}

/// The programs that read and write one backend's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iptables {
    pub backend: Backend,
    /// Why this backend (logged; shown by `weft status` and `weft doctor`).
    pub reason: String,
    /// `-legacy` / `-nft` (`iptables-legacy-restore`), or empty when the
    /// plain programs are this backend's and no suffixed ones are installed.
    suffix: String,
}

impl Iptables {
    /// The plain `iptables-save` / `iptables-restore`, whatever backend they
    /// are (for tools that only read, when nothing better is known).
    pub fn plain(backend: Backend) -> Iptables {
        Iptables {
            backend,
            reason: "the system's iptables".into(),
            suffix: String::new(),
        }
    }

    fn program(&self, v6: bool, what: &str) -> String {
        let family = if v6 { "ip6" } else { "ip" };
        format!("{family}tables{}-{what}", self.suffix)
    }

    /// `iptables` / `ip6tables` of this backend.
    pub fn command(&self, v6: bool) -> String {
        let family = if v6 { "ip6" } else { "ip" };
        format!("{family}tables{}", self.suffix)
    }

    pub fn save(&self, v6: bool) -> String {
        self.program(v6, "save")
    }

    pub fn restore(&self, v6: bool) -> String {
        self.program(v6, "restore")
    }
}

impl std::fmt::Display for Iptables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.backend.name(), self.reason)
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| {
            let p = dir.join(program);
            Path::new(&p).is_file()
        })
    })
}

/// Whether this host has any iptables program at all (a RHEL or Rocky 10
/// host has nftables only).
pub fn iptables_installed() -> bool {
    [
        "iptables",
        "iptables-nft-restore",
        "iptables-legacy-restore",
    ]
    .iter()
    .any(|p| on_path(p))
}

/// `iptables --version`, if iptables runs.
pub fn default_version() -> Option<String> {
    run("iptables", &["--version"], None).ok()
}

/// The rules each backend holds now (IPv4 and IPv6 together), from the
/// suffixed save programs that are installed.
pub fn saved_by_backend() -> Vec<(Backend, String)> {
    Backend::ALL
        .into_iter()
        .filter_map(|b| {
            let ipt = Iptables {
                backend: b,
                reason: String::new(),
                suffix: format!("-{}", b.infix()),
            };
            if !on_path(&ipt.save(false)) {
                return None;
            }
            let mut text = run(&ipt.save(false), &[], None).unwrap_or_default();
            if on_path(&ipt.save(true)) {
                text.push_str(&run(&ipt.save(true), &[], None).unwrap_or_default());
            }
            Some((b, text))
        })
        .collect()
}

/// Every backend whose programs are installed (the plain programs alone
/// on hosts without suffixed ones), for cleaning up everywhere.
pub fn installed() -> Vec<Iptables> {
    let mut out: Vec<Iptables> = Backend::ALL
        .into_iter()
        .map(|b| Iptables {
            backend: b,
            reason: "installed".into(),
            suffix: format!("-{}", b.infix()),
        })
        .filter(|i| on_path(&i.restore(false)) && on_path(&i.save(false)))
        .collect();
    if out.is_empty() {
        let default = default_version().as_deref().and_then(version_backend);
        out.push(Iptables::plain(default.unwrap_or(Backend::Nft)));
    }
    out
}

/// The backend to use and its programs: `choice`, or detected (see the
/// module's doc). Fails, naming the backend, when its programs are missing.
pub fn detect(choice: BackendChoice) -> Result<Iptables, FirewallError> {
    let saved = match choice {
        BackendChoice::Auto => saved_by_backend(),
        BackendChoice::Only(_) => Vec::new(),
    };
    detect_with(choice, &saved)
}

/// [`detect`] with the rules of each backend already read
/// ([`saved_by_backend`]; used by `Auto` only).
pub fn detect_with(
    choice: BackendChoice,
    saved: &[(Backend, String)],
) -> Result<Iptables, FirewallError> {
    let version = default_version();
    let default = version.as_deref().and_then(version_backend);
    let (backend, reason) = match choice {
        BackendChoice::Only(b) => (b, "chosen with --iptables-backend".to_string()),
        BackendChoice::Auto => {
            let count = |b: Backend| {
                saved
                    .iter()
                    .filter(|(x, _)| *x == b)
                    .map(|(_, t)| rule_count(t))
                    .sum()
            };
            decide(default, count(Backend::Legacy), count(Backend::Nft))
        }
    };
    let suffixed = format!("-{}", backend.infix());
    let suffix = if on_path(&format!("iptables{suffixed}-restore"))
        && on_path(&format!("iptables{suffixed}-save"))
    {
        suffixed
    } else if default == Some(backend) {
        String::new()
    } else {
        let have = version.map_or_else(
            || "iptables is not installed".to_string(),
            |v| format!("iptables is {}", v.trim()),
        );
        return Err(FirewallError::Backend(format!(
            "iptables backend {}: iptables{suffixed}-restore is not installed and {have}",
            backend.name()
        )));
    };
    Ok(Iptables {
        backend,
        reason,
        suffix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings_name_their_backend() {
        assert_eq!(
            version_backend("iptables v1.8.9 (nf_tables)\n"),
            Some(Backend::Nft)
        );
        assert_eq!(
            version_backend("iptables v1.8.9 (legacy)"),
            Some(Backend::Legacy)
        );
        // CentOS 7: before 1.8 there was no other backend
        assert_eq!(version_backend("iptables v1.4.21"), Some(Backend::Legacy));
        assert_eq!(version_backend("something else"), None);
    }

    #[test]
    fn the_backend_holding_more_rules_wins_else_the_default() {
        assert_eq!(decide(Some(Backend::Nft), 120, 3).0, Backend::Legacy);
        assert_eq!(decide(Some(Backend::Legacy), 0, 7).0, Backend::Nft);
        let (b, why) = decide(Some(Backend::Legacy), 0, 0);
        assert_eq!(b, Backend::Legacy);
        assert_eq!(
            why,
            "0 rules in legacy, 0 in nf_tables; iptables defaults to legacy"
        );
        assert_eq!(decide(None, 0, 0).0, Backend::Nft);
    }

    #[test]
    fn choices_parse_and_programs_are_named_per_family() {
        assert_eq!("auto".parse(), Ok(BackendChoice::Auto));
        assert_eq!("legacy".parse(), Ok(BackendChoice::Only(Backend::Legacy)));
        assert_eq!("nf_tables".parse(), Ok(BackendChoice::Only(Backend::Nft)));
        assert!("xtables".parse::<BackendChoice>().is_err());
        let ipt = Iptables {
            backend: Backend::Legacy,
            reason: String::new(),
            suffix: "-legacy".into(),
        };
        assert_eq!(ipt.restore(false), "iptables-legacy-restore");
        assert_eq!(ipt.save(true), "ip6tables-legacy-save");
        assert_eq!(
            Iptables::plain(Backend::Nft).restore(true),
            "ip6tables-restore"
        );
        assert_eq!(
            rule_count("*nat\n:A - [0:0]\n-A A -j B\n-A A -j C\nCOMMIT\n"),
            2
        );
    }
}
