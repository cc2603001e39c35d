//! Plans rendered as firewall text: [`iptables`] for `iptables-restore`,
//! [`nft`] for `nft -f`, and [`nft_wire`]: nft elements as netlink bytes.

pub mod iptables;
pub mod nft;
mod nft_batch;
mod nft_diff;
mod nft_element;
mod nft_names;
mod nft_port;
mod nft_slots;
pub mod nft_wire;

#[cfg(test)]
mod tests;
