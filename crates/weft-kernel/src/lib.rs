//! weft's kernel edge: a synchronous, batching rtnetlink socket and the
//! objects weft programs through it (vxlan devices, addresses, routes,
//! neighbours, FDB entries). No `ip` commands: netlink messages only,
//! built with `netlink-packet-route`.
//!
//! The data flow is: a [`weft_core::plan::Op`] list in, [`apply`] turns it
//! into netlink requests sent in large batches; [`read_dataplane`] dumps
//! what the kernel holds back into a [`weft_core::plan::DataPlane`].

mod conntrack;
mod dataplane;
mod error;
mod iface;
mod ipip;
mod link;
mod memory;
mod messages;
mod netlink;
mod nexthop;
mod nfacct;
mod nft_chain;
mod nft_elements;
mod nla;
mod wireguard;
mod xfrm;

pub use conntrack::{
    parse_flows, Conntrack, Deleted, DumpFilter, Flow, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP,
};
pub use dataplane::{
    apply, main_table_routes, read_dataplane, supports_nexthops, ApplyReport, Ownership,
};
pub use error::KernelError;
pub use iface::{default_route_oif, list_interfaces, route_get_oif, Interface};
pub use ipip::{ensure_ipip, IpipSpec};
pub use link::{
    delete_link, ensure_address, ensure_blackhole_route, ensure_vxlan, ensure_wireguard_link,
    kernel_has_wireguard, link_by_name, list_links, replace_device_route, set_link_up, LinkState,
    VxlanSpec,
};
pub use memory::{release_free_heap, LARGE_PASS_OPS};
pub use netlink::{Netlink, RawMessage, Request};
pub use nfacct::{ensure_nfacct, nfacct_counts};
pub use nft_chain::{
    chain_jumps, map_verdict_chains, parse_element_verdicts, parse_rule_jumps, NFPROTO_IPV4,
    NFPROTO_IPV6,
};
pub use nft_elements::{
    read_replies, FinishedBatch, NftData, NftElementBatch, NftElementSocket, Replies,
};
/// A netlink payload's attributes, for readers of kernel messages outside
/// this crate (the bench's nf_tables event monitor).
pub use nla::attributes as netlink_attributes;
pub use wireguard::{KernelDevice, KernelPeer, KernelPeerState, WireguardGenl};
pub use xfrm::Xfrm;
