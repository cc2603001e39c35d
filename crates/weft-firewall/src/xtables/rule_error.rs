//! Why one rule's text could not be encoded: shared by the rule's header
//! ([`super::rule`]) and its matches and targets ([`super::extensions`]).

/// A rule's text that could not be encoded, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Valid iptables, but not modelled here.
    #[error("{0} is not written natively")]
    Unsupported(String),
    /// Not valid as written.
    #[error("{0}")]
    Invalid(String),
}
