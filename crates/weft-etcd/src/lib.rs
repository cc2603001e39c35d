//! flannel's subnet registry on etcd v3: the network config at
//! `<prefix>/config` and one key per lease under `<prefix>/subnets/`,
//! each bound to an etcd lease (TTL 24 h by default).

mod connect;
pub mod paged;
mod registry;
mod watch;

pub use connect::{connect, EtcdOptions};
pub use registry::{AcquiredLease, EtcdError, LeaseListing, LeaseRecord, Registry};
pub use watch::{LeaseEvent, LeaseWatch, WatchError};
