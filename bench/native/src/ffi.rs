//! The C ABI of `libgsw_bench_native.so`, loaded by the Deno benchmarks (`bench/lib/native.ts`
//! holds the matching `Deno.dlopen` table):
//!
//! - a **clock** that returns a JavaScript `number` (gsw's own `gsw_monotonic_ns` returns a
//!   `u64`, i.e. a BigInt per call);
//! - **helpers** the Deno side of a cross-process benchmark needs and gsw does not export:
//!   `dup` and `mmap` of an inherited descriptor (the benchmark's control page), and a
//!   process-shared `FUTEX_WAKE` on a word of it (so a native peer can sleep instead of spin).
//!
//! The no-op references the Deno benchmarks compare gsw's hot calls with are in `libgsw.so`
//! itself (`gsw_bench_noop_*`, `ffi/src/abi.rs`), so reference and measured call cross into
//! the same library.
//!
//! Nothing here panics; errors are returned as `-errno` or a null pointer.

/// Bumped when a signature below changes; `bench/lib/native.ts` checks it.
pub const BENCH_ABI_VERSION: u32 = 2;

#[no_mangle]
pub extern "C" fn gsw_bench_abi_version() -> u32 {
    BENCH_ABI_VERSION
}

/// `CLOCK_MONOTONIC` in nanoseconds as a double (exact below 2^53 ns, i.e. 104 days of uptime):
/// a JavaScript `number`, so reading the clock from Deno costs one fast FFI call and no BigInt.
/// The same clock as the native side's stamps ([`crate::clock::now_ns`]).
#[no_mangle]
pub extern "C" fn gsw_bench_now_ns() -> f64 {
    crate::clock::now_ns() as f64
}

fn neg_errno() -> i32 {
    -std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// A close-on-exec duplicate of `fd` (lowest free number >= 3), or `-errno`.
#[no_mangle]
pub extern "C" fn gsw_bench_dup(fd: i32) -> i32 {
    // SAFETY: F_DUPFD_CLOEXEC only reads the descriptor table; an invalid `fd` fails with EBADF.
    let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if r < 0 {
        neg_errno()
    } else {
        r
    }
}

/// Maps `len` bytes of `fd` (a memfd) shared and read-write; null on failure. The mapping
/// stays valid after `fd` is closed, until [`gsw_bench_unmap`].
#[no_mangle]
pub extern "C" fn gsw_bench_map(fd: i32, len: usize) -> *mut u8 {
    if len == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: a new mapping at an address the kernel chooses aliases no existing object; a bad
    // descriptor or length makes mmap fail, which we report as null.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        std::ptr::null_mut()
    } else {
        p.cast()
    }
}

/// Unmaps a mapping made by [`gsw_bench_map`]. Returns 0 or `-errno`.
///
/// # Safety
/// `ptr`/`len` must be exactly a live mapping from [`gsw_bench_map`], not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn gsw_bench_unmap(ptr: *mut u8, len: usize) -> i32 {
    // SAFETY: per this function's contract.
    if unsafe { libc::munmap(ptr.cast(), len) } != 0 {
        neg_errno()
    } else {
        0
    }
}

/// Wakes every process sleeping in `FUTEX_WAIT` on the `u32` at `ptr + offset` (a word of a
/// shared mapping from [`gsw_bench_map`]); returns how many woke, or `-errno`. Lets a Deno
/// reader announce "done" to a native peer that sleeps instead of spinning for it.
///
/// # Safety
/// `ptr + offset` must be a 4-byte aligned word inside a live mapping.
#[no_mangle]
pub unsafe extern "C" fn gsw_bench_futex_wake(ptr: *mut u8, offset: u32) -> i32 {
    if ptr.is_null() || offset % 4 != 0 {
        return -libc::EINVAL;
    }
    // SAFETY: per this function's contract the word is aligned and mapped; AtomicU32 has
    // u32's layout, and FUTEX_WAKE only uses the address as a key.
    let word = unsafe { &*(ptr.add(offset as usize) as *const std::sync::atomic::AtomicU32) };
    match crate::sys::futex_wake(word, i32::MAX) {
        Ok(n) => i32::try_from(n).unwrap_or(i32::MAX),
        Err(e) => -e.raw_os_error().unwrap_or(libc::EIO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(gsw_bench_dup(-1), -libc::EBADF);
        let shm = crate::shm::SharedMem::create("ffi-test", 4096).unwrap();
        let fd = gsw_bench_dup(std::os::fd::AsRawFd::as_raw_fd(&shm.fd()));
        assert!(fd >= 3);
        let p = gsw_bench_map(fd, 4096);
        assert!(!p.is_null());
        // SAFETY: `p` maps 4096 writable bytes of the same memfd as `shm`.
        unsafe { p.add(8).write(42) };
        assert_eq!(
            shm.atomic_u64(8).load(std::sync::atomic::Ordering::Relaxed),
            42
        );
        // SAFETY: `p` maps 4096 bytes; offset 64 is aligned and inside; nobody waits there.
        unsafe {
            assert_eq!(gsw_bench_futex_wake(p, 64), 0);
            assert_eq!(gsw_bench_futex_wake(p, 2), -libc::EINVAL);
        }
        // SAFETY: exactly the mapping made above; `fd` is ours.
        unsafe {
            assert_eq!(gsw_bench_unmap(p, 4096), 0);
            libc::close(fd);
        }
    }
}
