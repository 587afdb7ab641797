//! The C ABI of `libgsw_bench_native.so`, loaded by the Deno benchmarks (`bench/lib/native.ts`
//! holds the matching `Deno.dlopen` table):
//!
//! - **no-op references**: functions with exactly the parameter and result types of gsw's hot
//!   symbols that do nothing. Timing one of them next to the real symbol in the same Deno
//!   process separates what Deno's FFI call costs from what gsw's code and its TypeScript
//!   wrapper add. (They belong in `libgsw.so` itself eventually; until then they live here.)
//! - **helpers** the Deno side of a cross-process benchmark needs and gsw does not export:
//!   `dup` and `mmap` of an inherited descriptor (the benchmark's control page).
//!
//! Nothing here panics; errors are returned as `-errno` or a null pointer.

use std::ffi::c_void;

/// Bumped when a signature below changes; `bench/lib/native.ts` checks it.
pub const BENCH_ABI_VERSION: u32 = 1;

#[no_mangle]
pub extern "C" fn gsw_bench_abi_version() -> u32 {
    BENCH_ABI_VERSION
}

/// No-op with the signature of `gsw_writer_publish` / `gsw_writer_publish_quiet`:
/// `(pointer, u32, buffer, u32, u64, u64) -> i32`.
#[no_mangle]
pub extern "C" fn gsw_bench_noop_publish(
    _w: *const c_void,
    _channel: u32,
    _data: *const u8,
    _len: u32,
    _seq: u64,
    _timestamp_ns: u64,
) -> i32 {
    0
}

/// No-op with the signature of `gsw_reader_take`: `(pointer, u32, buffer, u32) -> i32`.
/// Returns 0 ("nothing new").
#[no_mangle]
pub extern "C" fn gsw_bench_noop_take(
    _r: *const c_void,
    _channel: u32,
    _out: *mut u8,
    _out_len: u32,
) -> i32 {
    0
}

/// No-op with the signature of `gsw_waitset_wait`: `(pointer, buffer, u32, i32) -> i32`.
/// Declared `nonblocking: true` on the Deno side, its awaited round trip is Deno's floor for
/// waking JavaScript from the blocking pool.
#[no_mangle]
pub extern "C" fn gsw_bench_noop_wait(
    _ws: *const c_void,
    _out: *mut u8,
    _out_len: u32,
    _timeout_ms: i32,
) -> i32 {
    0
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noops_and_helpers() {
        assert_eq!(
            gsw_bench_noop_publish(std::ptr::null(), 0, std::ptr::null(), 0, 1, 2),
            0
        );
        assert_eq!(
            gsw_bench_noop_take(std::ptr::null(), 0, std::ptr::null_mut(), 0),
            0
        );
        assert_eq!(
            gsw_bench_noop_wait(std::ptr::null(), std::ptr::null_mut(), 0, -1),
            0
        );
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
        // SAFETY: exactly the mapping made above; `fd` is ours.
        unsafe {
            assert_eq!(gsw_bench_unmap(p, 4096), 0);
            libc::close(fd);
        }
    }
}
