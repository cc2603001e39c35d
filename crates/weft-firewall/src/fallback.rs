//! The fast paths that can fall back to the system's tools, and how often
//! they did. A fallback is correct (the tool applies the same text) but
//! slow, so it must not pass unnoticed: the first one of each path is
//! logged at warn with its reason, every one is counted, the daemons
//! export the counts on /metrics (`…_fast_path_fallbacks_total{path}`)
//! and the tests assert they stay at zero where the fast path is expected.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// A fast path and its slow alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FastPath {
    /// weft's x_tables writer → `iptables-legacy-restore`.
    XtablesWriter,
    /// Reading legacy tables from the kernel → `iptables-legacy-save`.
    XtablesReader,
    /// libnftables in-process → one `nft -f` process per transaction.
    Libnftables,
    /// Element changes over nf_tables netlink → the same as nft text.
    NftNetlink,
    /// A full set's size raised in place → the table written again.
    NftSetResize,
}

const PATHS: [FastPath; 5] = [
    FastPath::XtablesWriter,
    FastPath::XtablesReader,
    FastPath::Libnftables,
    FastPath::NftNetlink,
    FastPath::NftSetResize,
];

impl FastPath {
    /// The metric label.
    pub fn name(self) -> &'static str {
        match self {
            FastPath::XtablesWriter => "xtables_writer",
            FastPath::XtablesReader => "xtables_reader",
            FastPath::Libnftables => "libnftables",
            FastPath::NftNetlink => "nft_netlink",
            FastPath::NftSetResize => "nft_set_resize",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FastPath::XtablesWriter => {
                "weft's x_tables writer could not apply a transaction; iptables-legacy-restore applied it"
            }
            FastPath::XtablesReader => {
                "weft could not read a legacy table from the kernel; iptables-legacy-save was asked"
            }
            FastPath::Libnftables => {
                "libnftables is not usable here; each nft transaction runs an nft process"
            }
            FastPath::NftNetlink => {
                "element changes could not be sent over nf_tables netlink; they go as nft text"
            }
            FastPath::NftSetResize => {
                "this kernel keeps a set's size when it is declared again (Linux 6.1 does); a set about to be full makes the proxy write its table again"
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

static COUNTS: [AtomicU64; 5] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];
static TOLD: [AtomicBool; 5] = [
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
    AtomicBool::new(false),
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PathLabel {
    path: &'static str,
}

fn family() -> &'static Family<PathLabel, Counter> {
    static FAMILY: OnceLock<Family<PathLabel, Counter>> = OnceLock::new();
    FAMILY.get_or_init(|| {
        let f = Family::<PathLabel, Counter>::default();
        // every path shows, at zero until it falls back
        for p in PATHS {
            let _ = f.get_or_create(&PathLabel { path: p.name() });
        }
        f
    })
}

/// Records one fallback of `path`: counted always, logged (at warn, with
/// `reason`) the first time.
pub fn fell_back(path: FastPath, reason: impl fmt::Display) {
    COUNTS[path.index()].fetch_add(1, Ordering::Relaxed);
    family()
        .get_or_create(&PathLabel { path: path.name() })
        .inc();
    if !TOLD[path.index()].swap(true, Ordering::Relaxed) {
        tracing::warn!(
            path = path.name(),
            "{}: {reason} (counted in fast_path_fallbacks_total; told once)",
            path.describe()
        );
    }
}

/// How often `path` fell back in this process.
pub fn count(path: FastPath) -> u64 {
    COUNTS[path.index()].load(Ordering::Relaxed)
}

/// Adds the counts to a daemon's registry as `fast_path_fallbacks_total`.
pub fn register(registry: &mut Registry) {
    registry.register(
        "fast_path_fallbacks",
        "Transactions or reads that fell back from a fast path to the system's tools",
        family().clone(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fallback_is_counted_and_exported() {
        let before = count(FastPath::Libnftables);
        fell_back(FastPath::Libnftables, "a test");
        fell_back(FastPath::Libnftables, "a test");
        assert_eq!(count(FastPath::Libnftables), before + 2);
        let mut r = Registry::with_prefix("weft_test");
        register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).expect("encodes");
        assert!(
            text.contains(&format!(
                "weft_test_fast_path_fallbacks_total{{path=\"libnftables\"}} {}",
                before + 2
            )),
            "{text}"
        );
        assert!(
            text.contains("weft_test_fast_path_fallbacks_total{path=\"xtables_writer\"} 0"),
            "{text}"
        );
    }
}
