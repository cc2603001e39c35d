//! Plans rendered as firewall text: [`iptables`] for `iptables-restore`,
//! [`nft`] for `nft -f`.

pub mod iptables;
pub mod nft;
mod nft_batch;
mod nft_element;
mod nft_names;
mod nft_slots;

#[cfg(test)]
mod tests;
