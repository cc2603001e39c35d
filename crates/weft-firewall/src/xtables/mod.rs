//! Writing legacy (x_tables) iptables rules without `iptables-restore`.
//!
//! On the legacy backend every change replaces a whole table, and
//! `iptables-legacy-restore` spends most of a large sync in libiptc's and
//! libxtables' chain-name lookups (10,000 services: 12 s, quadratic in the
//! number of chains). This module applies the same restore text itself:
//! it reads the table from the kernel, decodes it into chains, makes the
//! text's changes, lays the table out again and hands it back in one
//! atomic `SO_SET_REPLACE`, with the counters of kept rules carried over.
//! The text stays the interface: rules are rendered exactly as before, and
//! what the kernel holds prints the same in `iptables-save`.
//!
//! [`rule`] encodes one rule (only the matches and targets kube-proxy's and
//! flannel's rules use; the rest is refused, and the caller uses the tool);
//! [`table`] is the chain model and its layout; [`kernel`] the socket
//! options; [`restore`] the text's commands.

// The layouts in `abi` are those of 64-bit kernels and programs (the
// `ipt_replace` counters pointer is 8 bytes wide).
#[cfg(not(target_pointer_width = "64"))]
compile_error!("weft's x_tables writer knows the 64-bit layouts only");

pub mod abi;
pub mod extensions;
pub mod kernel;
pub mod restore;
pub mod rule;
pub mod rule_error;
pub mod structs;
pub mod table;

#[cfg(test)]
mod tests;

pub use abi::Family;
pub use restore::{read_table, restore, Report, RestoreError};
