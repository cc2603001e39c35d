//! The legacy x_tables socket options: reading a table
//! (`SO_GET_INFO`, `SO_GET_ENTRIES`), replacing it whole in one atomic
//! step (`SO_SET_REPLACE`, which hands back the old counters) and adding
//! the kept rules' counters to the new table (`SO_SET_ADD_COUNTERS`), all
//! under the xtables lock every iptables program takes.

use std::fs::File;

use nix::fcntl::{Flock, FlockArg};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::abi::{self, Family};
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

fn put_name(buf: &mut [u8], name: &str) -> io::Result<()> {
    if name.len() >= abi::TABLE_NAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "table name too long",
        ));
    }
    buf[..name.len()].copy_from_slice(name.as_bytes());
    Ok(())
}

/// What the kernel says about `table` (its size, entries and hooks).
pub fn info(fd: &OwnedFd, family: Family, table: &str) -> io::Result<Info> {
    let mut b = [0u8; abi::GETINFO_SIZE];
    put_name(&mut b, table)?;
    get(fd, family, abi::SO_GET_INFO, &mut b)?;
    let mut info = Info {
        valid_hooks: abi::read_u32(&b, 32),
        num_entries: abi::read_u32(&b, 76),
        size: abi::read_u32(&b, 80),
        ..Info::default()
    };
    for h in 0..5 {
        info.hook_entry[h] = abi::read_u32(&b, 36 + 4 * h);
        info.underflow[h] = abi::read_u32(&b, 56 + 4 * h);
    }
    Ok(info)
}

/// The table's entries, [`abi::GET_ENTRIES_HEAD`] bytes into the buffer
/// returned. If the table changes between the calls (another writer that
/// does not take the lock), it is read again, a few times at most.
pub fn read(fd: &OwnedFd, family: Family, table: &str) -> io::Result<(Info, Vec<u8>)> {
    for _ in 0..8 {
        let info = info(fd, family, table)?;
        let mut b = vec![0u8; abi::GET_ENTRIES_HEAD + info.size as usize];
        put_name(&mut b, table)?;
        abi::put_u32(&mut b, 32, info.size);
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
    b[..abi::REPLACE_HEAD].fill(0);
    put_name(b, table)?;
    abi::put_u32(b, 32, info.valid_hooks);
    abi::put_u32(b, 36, info.num_entries);
    abi::put_u32(b, 40, info.size);
    for h in 0..5 {
        abi::put_u32(b, 44 + 4 * h, info.hook_entry[h]);
        abi::put_u32(b, 64 + 4 * h, info.underflow[h]);
    }
    abi::put_u32(b, 84, old_entries);
    let ptr = counters.as_mut_ptr() as usize as u64;
    b[88..96].copy_from_slice(&ptr.to_ne_bytes());
    // SAFETY: the kernel writes `num_counters` (offset 84: `old_entries`)
    // counters of 16 bytes through the pointer at 88 during this call;
    // `counters` is exactly that long, is not touched until the call
    // returns, and outlives it.
    #[allow(unsafe_code)]
    unsafe {
        set(fd, family, abi::SO_SET_REPLACE, b)?
    };
    Ok(counters)
}

/// Adds `counters` (16 bytes per entry, in entry order) to the table's.
pub fn add_counters(fd: &OwnedFd, family: Family, table: &str, counters: &[u8]) -> io::Result<()> {
    let mut b = vec![0u8; abi::COUNTERS_INFO_HEAD];
    put_name(&mut b, table)?;
    abi::put_u32(&mut b, 32, (counters.len() / abi::COUNTERS_SIZE) as u32);
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
