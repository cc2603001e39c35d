//! nft's engine, libnftables, inside the process: the text `nft -f`
//! reads, applied as one transaction by the same parser and the same
//! netlink code, without starting a process for it. Starting `nft` costs
//! about 5 ms on this kind of machine (loading its libraries, opening its
//! socket, reading the ruleset's objects), more than a small transaction
//! itself; a proxy adding one Service pays it on every change.
//!
//! The library is loaded at run time (`dlopen` of `libnftables.so.1`,
//! which the `nftables` package installs with `nft`), so weft builds and
//! runs without it: [`NftLibrary::open`] says `None` and callers run
//! `nft -f` instead.
//!
//! A context is used by one thread only (it holds a raw pointer, so it is
//! neither `Send` nor `Sync`), and its netlink socket belongs to the
//! network namespace of the thread that made it.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr::NonNull;

use crate::FirewallError;

type CtxNew = unsafe extern "C" fn(u32) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxSetup = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunFromBuffer = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// A `dlopen` handle, closed once when dropped.
struct Library {
    handle: NonNull<c_void>,
    close: unsafe fn(*mut c_void),
}

/// `dlclose(3)`, as [`Library`] calls it.
///
/// # Safety
/// `handle` came from `dlopen` and is closed this once.
#[allow(unsafe_code)]
unsafe fn dl_close(handle: *mut c_void) {
    // SAFETY: the caller's contract.
    #[allow(unsafe_code)]
    unsafe {
        libc::dlclose(handle);
    }
}

impl Drop for Library {
    fn drop(&mut self) {
        // SAFETY: the handle is owned by this value alone (it is neither
        // Clone nor Copy) and dropped once, so it is closed once.
        #[allow(unsafe_code)]
        unsafe {
            (self.close)(self.handle.as_ptr())
        }
    }
}

/// The library's functions a context needs.
#[derive(Clone, Copy)]
struct Functions {
    new: CtxNew,
    free: CtxFree,
    buffer_output: CtxSetup,
    buffer_error: CtxSetup,
    output: CtxBuffer,
    error: CtxBuffer,
    run: RunFromBuffer,
}

/// An open libnftables context.
pub struct NftLibrary {
    ctx: NonNull<c_void>,
    f: Functions,
    /// Declared last: closed after the context is freed (fields drop in
    /// order), and by this value alone.
    _library: Library,
}

/// The library's ABI version (its symbols are versioned `LIBNFTABLES_1`).
#[cfg_attr(not(target_env = "gnu"), allow(dead_code))]
const VERSION: &CStr = c"LIBNFTABLES_1";

impl NftLibrary {
    /// Loads libnftables and makes a context, with its output and error
    /// messages kept for the caller; `None` when the library is missing.
    pub fn open() -> Option<NftLibrary> {
        // SAFETY: dlopen(3) takes a NUL-terminated name (a C string
        // literal) and flags; it returns a handle or NULL, checked below.
        // Loading runs the library's constructors, which libnftables (a
        // plain C library depending on libc, libmnl, libnftnl, libjansson
        // and libgmp) uses for nothing that touches this process's state.
        #[allow(unsafe_code)]
        let handle = unsafe { libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW) };
        let library = Library {
            handle: NonNull::new(handle)?,
            close: dl_close,
        };
        // whatever fails from here, `library` is closed once, by its drop
        let f = Self::symbols(&library)?;
        Self::with_context(library, f)
    }

    fn symbols(library: &Library) -> Option<Functions> {
        let handle = library.handle;
        let find = |name: &CStr| {
            // SAFETY: dlvsym(3) with a live handle and NUL-terminated
            // name and version; NULL (missing symbol) is checked.
            #[cfg(target_env = "gnu")]
            #[allow(unsafe_code)]
            let f = unsafe { libc::dlvsym(handle.as_ptr(), name.as_ptr(), VERSION.as_ptr()) };
            // musl has no symbol versions (and a static musl binary's
            // dlopen never succeeds, so this is not reached there)
            // SAFETY: dlsym(3) with a live handle and a NUL-terminated name.
            #[cfg(not(target_env = "gnu"))]
            #[allow(unsafe_code)]
            let f = unsafe { libc::dlsym(handle.as_ptr(), name.as_ptr()) };
            NonNull::new(f)
        };
        let new = find(c"nft_ctx_new")?;
        let free = find(c"nft_ctx_free")?;
        let buffer_output = find(c"nft_ctx_buffer_output")?;
        let buffer_error = find(c"nft_ctx_buffer_error")?;
        let output = find(c"nft_ctx_get_output_buffer")?;
        let error = find(c"nft_ctx_get_error_buffer")?;
        let run = find(c"nft_run_cmd_from_buffer")?;
        // SAFETY: each pointer is the versioned LIBNFTABLES_1 symbol of the
        // name, whose C prototype (libnftables.h, stable since 0.9) is the
        // type it becomes:
        //   struct nft_ctx *nft_ctx_new(uint32_t flags);
        //   void nft_ctx_free(struct nft_ctx *ctx);
        //   int nft_ctx_buffer_output(struct nft_ctx *ctx);
        //   int nft_ctx_buffer_error(struct nft_ctx *ctx);
        //   const char *nft_ctx_get_output_buffer(struct nft_ctx *ctx);
        //   const char *nft_ctx_get_error_buffer(struct nft_ctx *ctx);
        //   int nft_run_cmd_from_buffer(struct nft_ctx *nft, const char *buf);
        // A function pointer and a data pointer have the same size here.
        // The pointers stay valid while `library` is open, and they are
        // kept only in an NftLibrary, which holds the library open.
        #[allow(unsafe_code)]
        unsafe {
            Some(Functions {
                new: std::mem::transmute::<*mut c_void, CtxNew>(new.as_ptr()),
                free: std::mem::transmute::<*mut c_void, CtxFree>(free.as_ptr()),
                buffer_output: std::mem::transmute::<*mut c_void, CtxSetup>(buffer_output.as_ptr()),
                buffer_error: std::mem::transmute::<*mut c_void, CtxSetup>(buffer_error.as_ptr()),
                output: std::mem::transmute::<*mut c_void, CtxBuffer>(output.as_ptr()),
                error: std::mem::transmute::<*mut c_void, CtxBuffer>(error.as_ptr()),
                run: std::mem::transmute::<*mut c_void, RunFromBuffer>(run.as_ptr()),
            })
        }
    }

    /// Makes a context whose messages go to buffers; on any failure the
    /// context (if made) is freed and the library closed, each once.
    fn with_context(library: Library, f: Functions) -> Option<NftLibrary> {
        // `library` is dropped (closed) here when no context can be made
        let ctx = Self::buffered_context(&f)?;
        Some(NftLibrary {
            ctx,
            f,
            _library: library,
        })
    }

    /// A new context of the library whose messages go to buffers, not to
    /// this process's stdout/stderr; `None`, with whatever was made freed,
    /// when that cannot be set up.
    fn buffered_context(f: &Functions) -> Option<NonNull<c_void>> {
        // SAFETY: `new` is nft_ctx_new of a library the caller holds open
        // (NFT_CTX_DEFAULT).
        #[allow(unsafe_code)]
        let ctx = NonNull::new(unsafe { (f.new)(0) })?;
        // SAFETY: a live context just made by this library, used by this
        // thread alone.
        #[allow(unsafe_code)]
        let buffered =
            unsafe { (f.buffer_output)(ctx.as_ptr()) == 0 && (f.buffer_error)(ctx.as_ptr()) == 0 };
        if buffered {
            return Some(ctx);
        }
        // SAFETY: made by this library's nft_ctx_new above, never handed
        // out, freed once.
        #[allow(unsafe_code)]
        unsafe {
            (f.free)(ctx.as_ptr());
        }
        None
    }

    /// Replaces the context with a fresh one, freeing what the old one
    /// kept between runs (its copy of the kernel's ruleset objects and
    /// the parser's state: half a megabyte after a proxy's full sync at
    /// 10,000 Services). Keeps the old context, and returns false, when
    /// a new one cannot be made.
    pub fn renew(&mut self) -> bool {
        let Some(fresh) = Self::buffered_context(&self.f) else {
            return false;
        };
        let old = std::mem::replace(&mut self.ctx, fresh);
        // SAFETY: `old` was made by this library's nft_ctx_new, is no longer
        // held by `self` and no buffer of it is borrowed (`apply` copies its
        // messages before returning); it is freed once, here.
        #[allow(unsafe_code)]
        unsafe {
            (self.f.free)(old.as_ptr());
        }
        true
    }

    /// Applies `text` (what `nft -f` would read) as one transaction; on
    /// failure nothing is applied and the error is nft's message.
    pub fn apply(&mut self, text: &str) -> Result<(), FirewallError> {
        let failed = |stderr: String| FirewallError::Failed {
            cmd: "nft -f (libnftables)".into(),
            stderr,
        };
        let buf = CString::new(text).map_err(|_| failed("the rules contain a NUL byte".into()))?;
        // SAFETY: the context is live (freed only in drop) and used by this
        // thread alone (the type is neither Send nor Sync); `buf` is
        // NUL-terminated and outlives the call, which only reads it. The
        // returned buffers are owned by the context and read before the
        // next call into it.
        #[allow(unsafe_code)]
        let (rc, error) = unsafe {
            let rc = (self.f.run)(self.ctx.as_ptr(), buf.as_ptr());
            // read (and so reset) both buffers after every run
            let _ = (self.f.output)(self.ctx.as_ptr());
            let error = (self.f.error)(self.ctx.as_ptr());
            let error = if error.is_null() {
                String::new()
            } else {
                CStr::from_ptr(error).to_string_lossy().trim().to_string()
            };
            (rc, error)
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(failed(error))
        }
    }
}

impl Drop for NftLibrary {
    fn drop(&mut self) {
        // SAFETY: the context was made by this library's nft_ctx_new and is
        // freed once, here; the library is closed after it (by the field
        // `_library`, dropped after this), and no function pointer from it
        // is used afterwards (they die with `self`).
        #[allow(unsafe_code)]
        unsafe {
            (self.f.free)(self.ctx.as_ptr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static FREED: AtomicUsize = AtomicUsize::new(0);
    static CLOSED: AtomicUsize = AtomicUsize::new(0);
    static CTX: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

    extern "C" fn fake_new(_: u32) -> *mut c_void {
        CTX.as_ptr().cast()
    }
    extern "C" fn fake_free(_: *mut c_void) {
        FREED.fetch_add(1, Ordering::SeqCst);
    }
    extern "C" fn fake_refuse(_: *mut c_void) -> c_int {
        -1
    }
    extern "C" fn fake_buffer(_: *mut c_void) -> *const c_char {
        std::ptr::null()
    }
    extern "C" fn fake_run(_: *mut c_void, _: *const c_char) -> c_int {
        0
    }
    fn fake_close(_: *mut c_void) {
        CLOSED.fetch_add(1, Ordering::SeqCst);
    }

    /// The path where the library loads but its buffers cannot be set up:
    /// the context is freed once and the library closed once (it was
    /// closed twice before).
    #[test]
    fn a_failed_buffer_setup_frees_and_closes_once() {
        // safe fns coerce to the unsafe fn pointer types
        let f = Functions {
            new: fake_new,
            free: fake_free,
            buffer_output: fake_refuse,
            buffer_error: fake_refuse,
            output: fake_buffer,
            error: fake_buffer,
            run: fake_run,
        };
        let library = Library {
            handle: NonNull::dangling(),
            close: fake_close,
        };
        assert!(NftLibrary::with_context(library, f).is_none());
        assert_eq!(FREED.load(Ordering::SeqCst), 1);
        assert_eq!(CLOSED.load(Ordering::SeqCst), 1);
    }

    /// A syntax error needs no privilege, and comes back as nft's message.
    #[test]
    fn a_syntax_error_comes_back_as_nfts_message() {
        let mut lib = NftLibrary::open().expect("libnftables.so.1 (Debian's libnftables1)");
        let e = lib.apply("add tabel ip x\n").expect_err("a typo");
        let text = e.to_string();
        assert!(text.contains("syntax error"), "{text}");
        let e = lib.apply("add table ip x\0\n").expect_err("a NUL byte");
        assert!(e.to_string().contains("NUL"), "{e}");
        // a renewed context answers as the first did
        assert!(lib.renew());
        let e = lib.apply("add tabel ip x\n").expect_err("a typo");
        assert!(e.to_string().contains("syntax error"), "{e}");
    }
}
