//! The thin shell around the pure core: the etcd [`store`], the kernel
//! [`sync`] through the firewall tools, and the proxy's [`run`] loop.

pub mod run;
pub mod store;
pub mod sync;
