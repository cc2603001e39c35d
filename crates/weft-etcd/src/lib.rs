//! weft-etcd
