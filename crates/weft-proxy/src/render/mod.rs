//! Plans rendered as firewall text: [`iptables`] for `iptables-restore`,
//! [`nft`] for `nft -f`.

pub mod iptables;
pub mod nft;
mod nft_batch;
mod nft_element;
mod nft_names;

#[cfg(test)]
mod tests;
