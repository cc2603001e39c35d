//! A lab of hosts built from network namespaces, for the demo, the
//! benchmarks and the end-to-end tests.
//!
//! Every lab has a unique name prefix (tag + pid + counter), so labs run in
//! parallel. Hosts hang off one bridge in a "switch" namespace and get
//! TEST-NET-style underlay addresses from 198.18.0.0/24. Nothing is done in
//! the root namespace. Dropping the [`Lab`] kills the processes it started
//! (by PID) and deletes its namespaces, also when a test panics.

mod capture;
mod cgroups;
mod docker;
mod echo;
mod etcd;
mod image;
pub mod interrupt;
pub mod iptables_oracle;
mod kit;
#[cfg(feature = "peers")]
pub mod kube_cluster;
#[cfg(feature = "peers")]
mod kubernetes;
mod lab;
mod netns;
mod pods;
mod process;
mod tls;
#[cfg(feature = "peers")]
mod upstream;
pub mod vm;
#[cfg(feature = "peers")]
mod wireguard_go;

pub use capture::{marked_ping, Capture, Captured, MARK};
pub use docker::{Container, Dockerd};
pub use echo::{serve_name, tcp_ask, udp_ask, EchoServer, SteadyUdpClient};
pub use image::{Entry as ImageEntry, Image};
pub use kit::{fdb, metric_sum, metric_value, metrics, on_host, output_of};
#[cfg(feature = "peers")]
pub use kubernetes::{ApiServer, SERVICE_CIDR};
pub use lab::{eventually, Host, KeptLab, Lab, Pod, TlsFiles};
pub use netns::{http_get, http_get_at, in_netns, sh};
pub use process::{kill_where, tail, Proc};
#[cfg(feature = "peers")]
pub use upstream::{
    program_version, upstream_flannel_cni, upstream_flanneld, upstream_flanneld_v026,
    upstream_kubernetes,
};
#[cfg(feature = "peers")]
pub use wireguard_go::{wg_keypair, WgPeerSpec};
