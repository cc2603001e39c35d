//! Firewall rules as text, applied atomically: `iptables-restore
//! --noflush` for iptables, one `nft -f` transaction for nftables.
//!
//! [`masq`] renders flannel's masquerade and forward rules (pure, golden
//! tested); [`apply`] checks what the kernel holds and re-applies;
//! [`backend`] picks the iptables backend (legacy or nf_tables) and its
//! programs; [`nft_library`] applies nft text in-process through
//! libnftables when it is installed; [`xtables`] applies iptables-restore
//! text to legacy (x_tables) tables without the tool.

pub mod apply;
pub mod backend;
pub mod fallback;
pub mod masq;
pub mod nft_library;
pub mod tool;
pub mod xtables;

pub use apply::{FirewallError, Mode};
pub use backend::{Backend, BackendChoice, Iptables};
pub use masq::MasqRules;
pub use nft_library::NftLibrary;
