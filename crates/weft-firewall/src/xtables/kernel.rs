//! The legacy x_tables socket options: reading a table
//! (`SO_GET_INFO`, `SO_GET_ENTRIES`), replacing it whole in one atomic
//! step (`SO_SET_REPLACE`, which hands back the old counters) and adding
//! the kept rules' counters to the new table (`SO_SET_ADD_COUNTERS`), all
//! under the xtables lock every iptables program takes.

use std::fs::File;

use nix::fcntl::{Flock, FlockArg};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use zerocopy::{FromZeros, IntoBytes};

use super::abi::{self, Family};
use super::structs::{CountersInfoHead, GetEntriesHead, GetInfo, ReplaceHead};
use super::table::Info;

/// A raw socket of the family: the handle the socket options go through.
pub fn socket(family: Family) -> io::Result<OwnedFd> {
    let domain = match family {
        Family::V4 => libc::AF_INET,
        Family::V6 => libc::AF_INET6,
    };
    // SAFETY: socket() takes no pointers; a non-negative result is a new
    // descriptor nothing else owns.
    #[allow(unsafe_code)]
    let fd = unsafe {
        libc::socket(
            domain,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is owned only here.
    #[allow(unsafe_code)]
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(owned)
}

fn get(fd: &OwnedFd, family: Family, opt: i32, buf: &mut [u8]) -> io::Result<()> {
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: buf is valid for writes of `len` bytes for the whole call;
    // the kernel writes at most `len` bytes into it.
    #[allow(unsafe_code)]
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            family.level(),
            opt,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// # Safety
///
/// Any pointer the kernel reads from `buf` for `opt` must be valid for the
/// writes the kernel makes through it (for `SO_SET_REPLACE`, the counters
/// pointer: `num_counters` × 16 bytes) until this returns.
#[allow(unsafe_code)]
unsafe fn set(fd: &OwnedFd, family: Family, opt: i32, buf: &[u8]) -> io::Result<()> {
    // SAFETY: buf is valid for reads of its length for the whole call; the
    // pointers inside it are the caller's promise (above).
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            family.level(),
            opt,
            buf.as_ptr().cast(),
            buf.len() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A table's name in its fixed field.
fn table_name(name: &str) -> io::Result<[u8; abi::TABLE_NAME_LEN]> {
    if name.len() >= abi::TABLE_NAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "table name too long",
        ));
    }
    Ok(abi::fixed(name))
}

/// What the kernel says about `table` (its size, entries and hooks).
pub fn info(fd: &OwnedFd, family: Family, table: &str) -> io::Result<Info> {
    let mut q = GetInfo::new_zeroed();
    q.name = table_name(table)?;
    get(fd, family, abi::SO_GET_INFO, q.as_mut_bytes())?;
    Ok(Info {
        valid_hooks: q.valid_hooks,
        hook_entry: q.hook_entry,
        underflow: q.underflow,
        num_entries: q.num_entries,
        size: q.size,
    })
}

/// The table's entries, [`abi::GET_ENTRIES_HEAD`] bytes into the buffer
/// returned. If the table changes between the calls (another writer that
/// does not take the lock), it is read again, a few times at most.
pub fn read(fd: &OwnedFd, family: Family, table: &str) -> io::Result<(Info, Vec<u8>)> {
    for _ in 0..8 {
        let info = info(fd, family, table)?;
        let head = GetEntriesHead {
            name: table_name(table)?,
            size: info.size,
            _pad: [0; 4],
        };
        let mut b = head.as_bytes().to_vec();
        b.resize(abi::GET_ENTRIES_HEAD + info.size as usize, 0);
        match get(fd, family, abi::SO_GET_ENTRIES, &mut b) {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => continue,
            Err(e) => return Err(e),
            // the entries belong to this info only if it still holds
            Ok(()) if self::info(fd, family, table)? == info => return Ok((info, b)),
            Ok(()) => continue,
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        format!("table {table} kept changing while it was read"),
    ))
}

/// Replaces `table` (which held `old_entries` entries) with the entries
/// that follow the first [`abi::REPLACE_HEAD`] bytes of `b` (the request's
/// head, filled in here); returns the old entries' counters. `EAGAIN`
/// means the table changed since it was read.
pub fn replace(
    fd: &OwnedFd,
    family: Family,
    table: &str,
    info: &Info,
    b: &mut [u8],
    old_entries: u32,
) -> io::Result<Vec<u8>> {
    if b.len() < abi::REPLACE_HEAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "no room for the request's head",
        ));
    }
    let mut counters = vec![0u8; old_entries as usize * abi::COUNTERS_SIZE];
    let head = ReplaceHead {
        name: table_name(table)?,
        valid_hooks: info.valid_hooks,
        num_entries: info.num_entries,
        size: info.size,
        hook_entry: info.hook_entry,
        underflow: info.underflow,
        num_counters: old_entries,
        counters: counters.as_mut_ptr() as usize as u64,
    };
    b[..abi::REPLACE_HEAD].copy_from_slice(head.as_bytes());
    // SAFETY: the kernel writes `num_counters` (`old_entries`) counters of
    // 16 bytes through the `counters` pointer during this call; the buffer
    // is exactly that long, is not touched until the call returns, and
    // outlives it.
    #[allow(unsafe_code)]
    unsafe {
        set(fd, family, abi::SO_SET_REPLACE, b)?
    };
    Ok(counters)
}

/// Adds `counters` (16 bytes per entry, in entry order) to the table's.
pub fn add_counters(fd: &OwnedFd, family: Family, table: &str, counters: &[u8]) -> io::Result<()> {
    let head = CountersInfoHead {
        name: table_name(table)?,
        num_counters: (counters.len() / abi::COUNTERS_SIZE) as u32,
        _pad: [0; 4],
    };
    let mut b = head.as_bytes().to_vec();
    b.extend_from_slice(counters);
    // SAFETY: `xt_counters_info` holds no pointers.
    #[allow(unsafe_code)]
    unsafe {
        set(fd, family, abi::SO_SET_ADD_COUNTERS, &b)
    }
}

/// The lock every iptables program takes before changing a table
/// (`/run/xtables.lock`, or `$XTABLES_LOCKFILE`): held until dropped.
pub fn lock() -> io::Result<Flock<File>> {
    let path = std::env::var_os("XTABLES_LOCKFILE").unwrap_or_else(|| "/run/xtables.lock".into());
    let shown = std::path::Path::new(&path).display().to_string();
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{shown}: {e}"));
    // as iptables: read-only, created (0600) when missing
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use std::os::unix::fs::OpenOptionsExt;
            File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .mode(0o600)
                .open(&path)
                .map_err(with_path)?
        }
        Err(e) => return Err(with_path(e)),
    };
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| with_path(io::Error::from(e)))
}
