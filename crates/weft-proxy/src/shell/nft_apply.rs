//! Sending nft transactions to the kernel, one per call. A transaction
//! that only adds and deletes elements (endpoint churn, the common partial
//! sync) goes over nf_tables netlink as register bytes, without a text
//! parser ([`crate::render::nft_wire`]). Any other goes as text:
//! in-process through libnftables when the host has it (no `nft` process
//! started per sync: an added Service costs the transaction, not nft's
//! start-up), else `nft -f`. A first sync into an empty kernel
//! ([`NftApplier::apply_cold`]) creates the table as text and loads its
//! elements over netlink (as text: with several `nft` processes at once,
//! on several cores).

use std::time::{Duration, Instant};

use weft_firewall::apply::run;
use weft_firewall::fallback::{fell_back, FastPath};
use weft_firewall::{FirewallError, NftLibrary};
use weft_kernel::{NftData, NftElementBatch, NftElementSocket, NFPROTO_IPV4, NFPROTO_IPV6};

use crate::render::nft::{self, NftBatch, NftRenderer};
use crate::render::nft_wire::{put_endpoint, put_member, wire_value, WireValue};

/// A cold start's three steps as applied ([`NftApplier::apply_cold`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColdApplied {
    pub bytes: usize,
    /// The table, its chains, rules and sets, as text.
    pub create: Duration,
    /// The endpoint elements.
    pub loads: Duration,
    /// The elements that send traffic into the rest.
    pub live: Duration,
    /// The loads went over netlink (else as text, by several `nft`).
    pub over_netlink: bool,
}

impl ColdApplied {
    pub fn total(&self) -> Duration {
        self.create + self.loads + self.live
    }
}

impl std::fmt::Display for ColdApplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let how = if self.over_netlink {
            "over netlink"
        } else {
            "as text by several nft processes"
        };
        write!(
            f,
            "new table: objects {:?}, endpoint elements {how} {:?}, services live {:?}",
            self.create, self.loads, self.live
        )
    }
}

/// Applies nft transactions for one thread (the library's context is not
/// shared).
pub struct NftApplier {
    library: Option<NftLibrary>,
    /// In-process was asked for (a missing library is then a fallback).
    in_process: bool,
    /// Element-only transactions over netlink; opened on first use.
    netlink: Option<NftElementSocket>,
    /// The kernel raises a set's size when the set is declared again
    /// (false once it was seen not to: Linux 6.1 keeps the size).
    pub raises_set_sizes: bool,
}

impl NftApplier {
    /// In-process when `in_process`: elements over netlink, the rest
    /// through libnftables when it loads (else `nft -f`, a counted
    /// fallback).
    pub fn new(in_process: bool) -> NftApplier {
        let library = in_process.then(NftLibrary::open).flatten();
        if library.is_some() {
            tracing::info!(
                "nft transactions applied in-process (elements over netlink, the rest through libnftables)"
            );
        }
        NftApplier {
            library,
            in_process,
            netlink: None,
            raises_set_sizes: true,
        }
    }

    /// Applies `batch` for `r`'s table as one transaction: over netlink
    /// when it changes only elements, else as text. Returns the bytes sent,
    /// the time taken and whether it went over netlink.
    pub fn apply_batch(
        &mut self,
        r: &NftRenderer,
        batch: NftBatch,
    ) -> Result<(usize, Duration, bool), FirewallError> {
        if batch.elements_only() {
            let t = Instant::now();
            if let Some(bytes) = self.send_elements(r, &batch, usize::MAX)? {
                return Ok((bytes, t.elapsed(), true));
            }
        }
        let mut text = String::with_capacity(batch.len());
        batch.finish_into(&r.target(), &mut text);
        let (bytes, took) = self.apply(&text)?;
        Ok((bytes, took, false))
    }

    /// Sends the elements of `batch` over netlink, `per_transaction` at a
    /// time (`usize::MAX`: all in one); `None` when netlink cannot be
    /// used here (a fallback, counted), so nothing was sent.
    fn send_elements(
        &mut self,
        r: &NftRenderer,
        batch: &NftBatch,
        per_transaction: usize,
    ) -> Result<Option<usize>, FirewallError> {
        if !self.in_process {
            return Ok(None);
        }
        let sock = match self.element_socket() {
            Ok(sock) => sock,
            Err(e) => {
                fell_back(FastPath::NftNetlink, e);
                return Ok(None);
            }
        };
        let family = if r.v6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
        let mut bytes = 0;
        let mut commit = |b: NftElementBatch| -> Result<(), FirewallError> {
            bytes += sock
                .commit(&b.finish())
                .map_err(|e| FirewallError::Failed {
                    cmd: "nf_tables netlink".into(),
                    stderr: e.to_string(),
                })?;
            Ok(())
        };
        element_batches(family, &r.table, batch, per_transaction, &mut commit)?;
        Ok(Some(bytes))
    }

    fn element_socket(&mut self) -> Result<&mut NftElementSocket, weft_kernel::KernelError> {
        let sock = match self.netlink.take() {
            Some(s) => s,
            None => NftElementSocket::open()?,
        };
        Ok(self.netlink.insert(sock))
    }

    /// Applies a [`nft::ColdStart`]; `None` if its first step failed (the
    /// table exists, most likely: then nothing was applied and a full sync
    /// must replace it in one transaction).
    pub fn apply_cold(
        &mut self,
        r: &NftRenderer,
        cold: nft::ColdStart,
    ) -> Result<Option<ColdApplied>, FirewallError> {
        let t = Instant::now();
        let Ok((mut bytes, _)) = self.apply(&cold.create) else {
            return Ok(None);
        };
        let create = t.elapsed();
        let t = Instant::now();
        let over_netlink = match self.send_elements(r, &cold.loads, ELEMENTS_PER_LOAD)? {
            Some(sent) => {
                bytes += sent;
                true
            }
            None => {
                bytes += load_in_parallel(&cold.text_loads(&r.target(), load_parts()))?;
                false
            }
        };
        let loads = t.elapsed();
        let t = Instant::now();
        bytes += self.apply_batch(r, cold.live)?.0;
        Ok(Some(ColdApplied {
            bytes,
            create,
            loads,
            live: t.elapsed(),
            over_netlink,
        }))
    }

    /// Frees what libnftables kept of the last transactions (after a full
    /// sync: the table's objects, half a megabyte at 10,000 Services); the
    /// next text transaction reads what it needs from the kernel again.
    pub fn forget_cache(&mut self) {
        if let Some(lib) = &mut self.library {
            if !lib.renew() {
                tracing::debug!("libnftables: no fresh context; the old one is kept");
            }
        }
    }

    /// Applies `text` as one transaction: (bytes, time taken).
    pub fn apply(&mut self, text: &str) -> Result<(usize, Duration), FirewallError> {
        let Some(lib) = &mut self.library else {
            if self.in_process {
                fell_back(
                    FastPath::Libnftables,
                    "libnftables.so.1 (Debian's libnftables1) could not be loaded",
                );
            }
            return nft_process(text);
        };
        let t = Instant::now();
        lib.apply(text)?;
        Ok((text.len(), t.elapsed()))
    }
}

/// The kernel refused an element because its set is full (`ENFILE`), as
/// netlink or libnftables words it.
pub fn is_set_full(e: &FirewallError) -> bool {
    e.to_string().contains("Too many open files in system")
}

/// Elements per transaction of a cold start's loads (about 600 KB): the
/// loads need not be one transaction (nothing reaches them before the
/// live elements), and small ones are faster, as each is copied into the
/// kernel and parsed while it is still in the CPU's cache. Measured at
/// 255,000 elements (`weft-bench --scenario proxy-scale`, the proxy's
/// log): 160 ms at 10,000 a transaction where 100,000 took 200-250 ms;
/// 5,000 and 20,000 within the noise of 10,000.
const ELEMENTS_PER_LOAD: usize = 10_000;

/// The element changes of `batch` for `table` as netlink batches of at
/// most `per_batch` elements, each handed to `send` when full: deletions
/// first, then additions, as the text would have them.
fn element_batches(
    family: u8,
    table: &str,
    batch: &NftBatch,
    per_batch: usize,
    send: &mut dyn FnMut(NftElementBatch) -> Result<(), FirewallError>,
) -> Result<(), FirewallError> {
    let mut out = NftElementBatch::new(family, table);
    let (mut key, mut data, mut chain) = (Vec::new(), Vec::new(), String::new());
    for (set, members) in &batch.unmap {
        let set = set.to_string();
        for m in members {
            key.clear();
            put_member(&mut key, m);
            out.delete(&set, &key);
        }
    }
    for (set, added) in &batch.map {
        let set = set.to_string();
        for a in added {
            if out.len() >= per_batch {
                send(std::mem::replace(
                    &mut out,
                    NftElementBatch::new(family, table),
                ))?;
            }
            key.clear();
            put_member(&mut key, &a.member);
            let value = a.value.as_ref().map(|v| match wire_value(v, &mut chain) {
                WireValue::Goto(c) => NftData::Goto(c),
                WireValue::Drop => NftData::Drop,
                WireValue::Endpoint(ep) => {
                    data.clear();
                    put_endpoint(&mut data, ep);
                    NftData::Value(&data)
                }
            });
            out.add(&set, &key, value);
        }
    }
    if !out.is_empty() {
        send(out)?;
    }
    Ok(())
}

/// Applies `text` with one `nft -f` process.
fn nft_process(text: &str) -> Result<(usize, Duration), FirewallError> {
    let t = Instant::now();
    run("nft", &["-f", "-"], Some(text))?;
    Ok((text.len(), t.elapsed()))
}

/// How many `nft` processes load a cold start's elements at once.
fn load_parts() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Applies text loads with several `nft` processes at once; the bytes.
fn load_in_parallel(loads: &[String]) -> Result<usize, FirewallError> {
    let done: Vec<Result<(usize, Duration), FirewallError>> = std::thread::scope(|s| {
        let running: Vec<_> = loads
            .iter()
            .map(|text| s.spawn(move || nft_process(text)))
            .collect();
        running
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(FirewallError::Failed {
                        cmd: "nft -f -".into(),
                        stderr: "the thread running it panicked".into(),
                    })
                })
            })
            .collect()
    });
    let mut bytes = 0;
    for r in done {
        bytes += r?.0;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::nft::{Added, ElementKey, ElementValue, MapName, Pool};
    use crate::spec::Protocol;

    #[test]
    fn a_full_set_is_told_from_other_refusals_either_way_it_is_worded() {
        let over_netlink = |errno| FirewallError::Failed {
            cmd: "nf_tables netlink".into(),
            stderr: weft_kernel::KernelError::request(
                "adding elements to service-endpoints-5",
                std::io::Error::from_raw_os_error(errno),
            )
            .to_string(),
        };
        assert!(is_set_full(&over_netlink(23))); // ENFILE
        assert!(!is_set_full(&over_netlink(2)));
        let as_text = FirewallError::Failed {
            cmd: "nft -f (libnftables)".into(),
            stderr: "Error: Could not process rule: Too many open files in system\nadd element …"
                .into(),
        };
        assert!(is_set_full(&as_text));
    }

    #[test]
    fn loads_are_cut_into_transactions_of_at_most_the_given_size() {
        let pool = Pool {
            node_port: false,
            n: 1,
        };
        let key = ElementKey::addr("10.254.0.1".parse().expect("ip"), Protocol::Tcp, 80);
        let mut batch = NftBatch::default();
        batch.map.insert(
            MapName::Pool(pool),
            (0..250)
                .map(|i| Added {
                    member: nft::Member::Key(key.slot(i)),
                    value: Some(ElementValue::Endpoint(
                        "172.30.0.2".parse().expect("ip"),
                        80,
                    )),
                })
                .collect(),
        );
        let mut sizes = Vec::new();
        element_batches(NFPROTO_IPV4, "kube-proxy", &batch, 100, &mut |b| {
            sizes.push(b.len());
            Ok(())
        })
        .expect("no send fails");
        assert_eq!(sizes, [100, 100, 50]);
        sizes.clear();
        element_batches(NFPROTO_IPV4, "kube-proxy", &batch, usize::MAX, &mut |b| {
            sizes.push(b.len());
            Ok(())
        })
        .expect("no send fails");
        assert_eq!(sizes, [250]);
    }
}
