//! Sending nft text to the kernel, one transaction per call: in-process
//! through libnftables when the host has it (no `nft` process started per
//! sync: an added Service costs the transaction, not nft's start-up), else
//! `nft -f`. A first sync into an empty kernel ([`apply_cold`]) loads its
//! elements with several `nft` processes at once instead, on several cores.

use std::time::{Duration, Instant};

use weft_firewall::apply::run;
use weft_firewall::{FirewallError, NftLibrary};

use crate::render::nft;

/// Applies nft text for one thread (the library's context is not shared).
pub struct NftApplier {
    library: Option<NftLibrary>,
    /// In-process was asked for (a missing library is then a fallback).
    in_process: bool,
}

impl NftApplier {
    /// In-process when `in_process` and libnftables loads.
    pub fn new(in_process: bool) -> NftApplier {
        let library = in_process.then(NftLibrary::open).flatten();
        if library.is_some() {
            tracing::info!("nft transactions applied in-process (libnftables)");
        }
        NftApplier {
            library,
            in_process,
        }
    }

    /// Applies `text` as one transaction: (bytes, time taken).
    pub fn apply(&mut self, text: &str) -> Result<(usize, Duration), FirewallError> {
        let Some(lib) = &mut self.library else {
            if self.in_process {
                weft_firewall::fallback::fell_back(
                    weft_firewall::fallback::FastPath::Libnftables,
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

/// Applies `text` with one `nft -f` process.
fn nft_process(text: &str) -> Result<(usize, Duration), FirewallError> {
    let t = Instant::now();
    run("nft", &["-f", "-"], Some(text))?;
    Ok((text.len(), t.elapsed()))
}

/// How many `nft` processes load a cold start's elements at once.
pub fn load_parts() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Applies a [`nft::ColdStart`]; `None` if its first step failed (the
/// table exists, most likely: then nothing was applied and a full sync
/// must replace it in one transaction).
pub fn apply_cold(cold: &nft::ColdStart) -> Result<Option<(usize, Duration)>, FirewallError> {
    let t = Instant::now();
    if nft_process(&cold.create).is_err() {
        return Ok(None);
    }
    let loads: Vec<Result<(usize, Duration), FirewallError>> = std::thread::scope(|s| {
        let running: Vec<_> = cold
            .loads
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
    let mut bytes = cold.create.len();
    for r in loads {
        bytes += r?.0;
    }
    if !cold.live.is_empty() {
        bytes += nft_process(&cold.live)?.0;
    }
    Ok(Some((bytes, t.elapsed())))
}
