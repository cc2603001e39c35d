//! flannel's lease as a Kubernetes Node carries it (`-kube-subnet-mgr`):
//! the Node's pod ranges and flannel's annotations ([`annotations`]), and
//! Nodes as the API server encodes them in protobuf ([`proto`]). Both read
//! bytes from the API server, so both are fuzzed (`fuzz/`).

pub mod annotations;
pub mod proto;
