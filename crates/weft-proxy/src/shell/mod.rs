//! The thin shell around the pure core: where Services come from
//! ([`source`]: weft's etcd [`store`] or the Kubernetes API), the kernel
//! [`sync`] through the firewall tools ([`nft_apply`] sends nft text),
//! kube-proxy's [`health`] endpoints and the proxy's [`run`] loop.

pub mod health;
pub mod nft_apply;
pub mod run;
pub mod source;
pub mod store;
pub mod sync;
