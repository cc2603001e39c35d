//! flannel's subnet registry on etcd v3: the network config at
//! `<prefix>/config` and one key per lease under `<prefix>/subnets/`,
//! each bound to an etcd lease (TTL 24 h by default). Every call goes
//! through [`Etcd`], which rides out members that are down.

mod connect;
mod error;
mod failover;
pub mod paged;
mod registry;
mod requests;
mod watch;

pub use connect::{connect, EtcdOptions};
pub use error::{describe, is_transient, EtcdError};
pub use failover::{Etcd, CALL_BUDGET};
pub use registry::{AcquiredLease, LeaseListing, LeaseRecord, Registry};
pub use watch::{LeaseEvent, LeaseWatch, WatchError};
