//! The thin shell around the pure core. The proxy's [`options`] come in;
//! [`start`] starts the [`source`] of Services (weft's etcd [`store`] or
//! the Kubernetes API) and learns the host; the [`run`] loop feeds the
//! catalog's plans to [`sync`] (nft mode's partial syncs in
//! `sync::nft_table`), which applies them through the firewall
//! ([`nft_apply`] sends nft text); kube-proxy's [`health`] endpoints and
//! the [`metrics`] report how it goes.

pub mod canary;
pub mod conntrack;
pub mod health;
pub mod kube_proxy_metrics;
pub mod metrics;
pub mod nft_apply;
pub mod options;
pub mod run;
pub mod source;
mod start;
pub mod store;
pub mod sync;
