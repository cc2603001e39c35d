//! Tearing down on SIGINT / SIGTERM / SIGHUP what a long run (a bench)
//! started, when its labs cannot be dropped: the signal arrives while the
//! main thread is deep in a scenario. Every lab registers its network
//! namespaces and its directory here while it lives; on a signal a
//! watcher thread stops every process descended from this one (found by
//! PID through `/proc`'s parent links, never by name; SIGTERM, then
//! SIGKILL after 3 s), deletes the registered namespaces and directories,
//! and exits with 128 + the signal's number.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};

static NAMESPACES: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
static DIRS: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

pub(crate) fn track_netns(ns: &str) {
    if let Ok(mut s) = NAMESPACES.lock() {
        s.insert(ns.to_string());
    }
}

pub(crate) fn untrack_netns(ns: &str) {
    if let Ok(mut s) = NAMESPACES.lock() {
        s.remove(ns);
    }
}

pub(crate) fn track_dir(dir: PathBuf) {
    if let Ok(mut s) = DIRS.lock() {
        s.insert(dir);
    }
}

pub(crate) fn untrack_dir(dir: &std::path::Path) {
    if let Ok(mut s) = DIRS.lock() {
        s.remove(dir);
    }
}

/// The PIDs descended from `root`, parents before children.
fn descendants(root: u32) -> Vec<u32> {
    let parent_of = crate::process::process_parents();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parent_of
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}

/// Stops this process's descendants and removes the registered
/// namespaces and directories.
pub fn tear_down_everything() {
    crate::process::stop_pids(&descendants(std::process::id()), Duration::from_secs(3));
    let namespaces = NAMESPACES.lock().map(|s| s.clone()).unwrap_or_default();
    for ns in namespaces.iter().rev() {
        let _ = crate::sh("ip", &["netns", "del", ns]);
    }
    let dirs = DIRS.lock().map(|s| s.clone()).unwrap_or_default();
    for d in dirs {
        let _ = std::fs::remove_dir_all(d);
    }
}

/// Call first in `main`, before any thread starts (they inherit the
/// blocked signals; spawned programs do not: the standard library clears
/// the mask in the child). `program` names the process in the message.
pub fn tear_down_on_signals(program: &'static str) -> Result<()> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        signals.add(s);
    }
    signals
        .thread_block()
        .context("blocking SIGINT, SIGTERM and SIGHUP")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Ok(sig) = signals.wait() {
                eprintln!("{program}: {sig}: stopping what this run started");
                tear_down_everything();
                std::process::exit(128 + sig as i32);
            }
        })
        .context("starting the signal watcher")?;
    Ok(())
}
