//! Handing memory freed by a large pass back to the kernel (the agent and
//! the proxy).
//!
//! A cold start lists every lease from etcd and dumps the kernel's tables;
//! once the pass is over that memory is free, but glibc keeps it in its
//! free lists (it only returns the top of the heap on its own). Trimming
//! after such passes keeps the agent's resident size near its live data.

/// Kernel changes in one incremental pass from which a trim follows it.
pub const LARGE_PASS_OPS: usize = 256;

/// Returns the heap's free pages to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_free_heap() {
    // SAFETY: malloc_trim(3) takes an integer and has no preconditions. It is
    // thread-safe (it takes each arena's lock) and only gives free pages back
    // with madvise(MADV_DONTNEED); no live allocation is moved or touched, so
    // no Rust reference or allocation can be invalidated.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators return memory on their own.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_free_heap() {}

#[cfg(test)]
mod tests {
    #[test]
    fn trimming_keeps_live_data() {
        let kept: Vec<u64> = (0..100_000).collect();
        drop(
            (0..1_000_000)
                .map(|i| vec![i as u8; 64])
                .collect::<Vec<_>>(),
        );
        super::release_free_heap();
        assert_eq!(kept.iter().sum::<u64>(), 4_999_950_000);
    }
}
