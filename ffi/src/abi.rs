//! The C ABI that `Deno.dlopen` binds (symbol table: `ffi/symbols.ts`).
//!
//! Conventions, for every function here:
//! - Integer results: `>= 0` success, negative = `-code` (an errno, or a gsw code from
//!   `error::code`); the message is then available from `gsw_last_error` on the same thread.
//!   `-EAGAIN` (-11) from the non-blocking calls means "nothing now", with no message.
//! - Object results: a non-null handle, or null with the error in `gsw_last_error`. Handles
//!   are freed with their `_free` function exactly once; the TypeScript wrappers enforce it.
//! - Buffers are (pointer, length in bytes) pairs; a zero length may come with a null pointer.
//! - No panic crosses this boundary (`error::boundary`).
//! - Objects other than waitsets belong to the thread that made them.

use crate::error::{self, boundary, boundary_ptr, code, errno_name, Error, Result};
use crate::extract::{Extractor, Field};
use crate::fanout::Fanout;
use crate::logq::LogQueue;
use crate::segment::{self, SegmentReader, SegmentWriter, RECORD_HEADER_LEN};
use crate::sock::{self, Kind, Received};
use crate::sys;
use crate::udp::{self, Batch};
use crate::waitset::{Ready, Waitset};
use std::ffi::OsStr;
use std::os::fd::{AsRawFd, BorrowedFd, IntoRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

mod bench;
mod broadcast;
mod datagrams;
mod mqtt;
mod pipeline;
mod segments;
mod sockets;
mod stream;
mod waitsets;

/// Version of this ABI; the TypeScript side refuses a library with another.
pub const ABI_VERSION: u32 = 8;

/// # Safety
/// `ptr` must be null or point at `len` readable bytes that stay valid for `'a`.
unsafe fn bytes<'a>(ptr: *const u8, len: usize) -> Result<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Error::arg("null buffer with a non-zero length"));
    }
    // SAFETY: non-null and `len` readable bytes, per the caller.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// # Safety
/// `ptr` must be null or point at `len` writable bytes, unaliased, valid for `'a`.
unsafe fn bytes_mut<'a>(ptr: *mut u8, len: usize) -> Result<&'a mut [u8]> {
    if len == 0 {
        return Ok(&mut []);
    }
    if ptr.is_null() {
        return Err(Error::arg("null buffer with a non-zero length"));
    }
    // SAFETY: non-null and `len` writable, unaliased bytes, per the caller.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// # Safety
/// As [`bytes`], with `len` counting `T` elements; `ptr` aligned for `T`.
unsafe fn items<'a, T>(ptr: *const T, len: usize) -> Result<&'a [T]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() || (ptr as usize) % std::mem::align_of::<T>() != 0 {
        return Err(Error::arg("null or misaligned array"));
    }
    // SAFETY: non-null, aligned, `len` readable elements, per the caller.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// # Safety
/// `ptr` must be null or a live handle of type `T` made by this library.
unsafe fn obj<'a, T>(ptr: *const T) -> Result<&'a T> {
    if ptr.is_null() {
        return Err(Error::new(code::BAD_HANDLE, "null handle (already freed?)"));
    }
    // SAFETY: a live handle, per the caller.
    Ok(unsafe { &*ptr })
}

/// # Safety
/// `ptr` must be null or a live, unaliased handle of type `T` made by this library.
unsafe fn obj_mut<'a, T>(ptr: *mut T) -> Result<&'a mut T> {
    if ptr.is_null() {
        return Err(Error::new(code::BAD_HANDLE, "null handle (already freed?)"));
    }
    // SAFETY: a live, unaliased handle, per the caller.
    Ok(unsafe { &mut *ptr })
}

/// A new strong reference to an `Rc` handle (made by `Rc::into_raw`).
///
/// # Safety
/// `ptr` must be null or a live handle made by `Rc::into_raw` of this library.
unsafe fn rc_clone<T>(ptr: *const T) -> Result<Rc<T>> {
    if ptr.is_null() {
        return Err(Error::new(code::BAD_HANDLE, "null handle (already freed?)"));
    }
    // SAFETY: `ptr` came from Rc::into_raw and is live, so bumping its count and taking an
    // Rc for that new count is balanced.
    unsafe {
        Rc::increment_strong_count(ptr);
        Ok(Rc::from_raw(ptr))
    }
}

/// Gives back the caller's reference to an `Rc` handle (null is ignored).
///
/// # Safety
/// `ptr` must be null or a live handle made by `Rc::into_raw` of this library, not used again.
unsafe fn release_rc<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: the handle came from Rc::into_raw; this gives back the caller's count.
        drop(unsafe { Rc::from_raw(ptr as *const T) });
    }
}

/// Frees a `Box` handle (null is ignored).
///
/// # Safety
/// `ptr` must be null or a live handle made by `Box::into_raw` of this library, not used again.
unsafe fn release_box<T>(ptr: *mut T) {
    if !ptr.is_null() {
        // SAFETY: the handle came from Box::into_raw and is released once.
        drop(unsafe { Box::from_raw(ptr) });
    }
}

/// # Safety
/// `ptr`/`len` must describe readable bytes (a path without NUL).
unsafe fn path<'a>(ptr: *const u8, len: usize) -> Result<&'a Path> {
    // SAFETY: per the caller.
    let b = unsafe { bytes(ptr, len) }?;
    Ok(Path::new(OsStr::from_bytes(b)))
}

fn kind(k: u32) -> Result<Kind> {
    match k {
        0 => Ok(Kind::SeqPacket),
        1 => Ok(Kind::Datagram),
        _ => Err(Error::arg(format!(
            "socket kind {k} is neither 0 (seqpacket) nor 1 (datagram)"
        ))),
    }
}

/// Copies `line` (UTF-8) into `out`, cut at a character boundary if it is longer; returns its
/// length, 0 for none. The `next_event` calls of the sources share it.
pub(crate) fn copy_line(line: Option<String>, out: &mut [u8]) -> i64 {
    let Some(line) = line else { return 0 };
    let mut len = line.len().min(out.len());
    while !line.is_char_boundary(len) {
        len -= 1;
    }
    out[..len].copy_from_slice(&line.as_bytes()[..len]);
    len as i64
}

/// Writes `values` as little-endian u64s at the start of `out` (the stats and result arrays
/// the calls hand back); `out` holds at least `8 * values.len()` bytes.
pub(crate) fn write_u64s(out: &mut [u8], values: &[u64]) {
    for (chunk, v) in out.chunks_exact_mut(8).zip(values) {
        chunk.copy_from_slice(&v.to_le_bytes());
    }
}

/// Writes one record (`segment::write_record` at offset 0) into `out`; returns 1.
fn write_one(
    out: &mut [u8],
    channel: usize,
    header: &segment::SampleHeader,
    payload: &[u8],
) -> Result<i64> {
    segment::write_record(out, 0, channel, header, payload).ok_or_else(|| {
        Error::arg(format!(
            "output buffer of {} bytes cannot hold a {}-byte value plus its {RECORD_HEADER_LEN}-byte header",
            out.len(),
            payload.len()
        ))
    })?;
    Ok(1)
}

// ---------------------------------------------------------------------------------------------
// Errors and clocks

#[no_mangle]
pub extern "C" fn gsw_abi_version() -> u32 {
    ABI_VERSION
}

/// Copies the last error message of this thread into `buf`; returns its full length.
///
/// # Safety
/// `buf` must point at `cap` writable bytes (or be null with `cap` 0).
#[no_mangle]
pub unsafe extern "C" fn gsw_last_error(buf: *mut u8, cap: usize) -> i32 {
    let msg = error::last().message;
    // SAFETY: per this function's contract.
    if let Ok(out) = unsafe { bytes_mut(buf, cap) } {
        let n = msg.len().min(out.len());
        out[..n].copy_from_slice(&msg.as_bytes()[..n]);
    }
    msg.len() as i32
}

/// The code of the last error recorded on this thread (positive; 0 if none).
#[no_mangle]
pub extern "C" fn gsw_last_error_code() -> i32 {
    error::last().code
}

/// Copies the symbolic name of `code` (e.g. "EAGAIN") into `buf`; returns its length.
///
/// # Safety
/// `buf` must point at `cap` writable bytes (or be null with `cap` 0).
#[no_mangle]
pub unsafe extern "C" fn gsw_error_name(code: i32, buf: *mut u8, cap: usize) -> i32 {
    let name = errno_name(code.abs());
    // SAFETY: per this function's contract.
    if let Ok(out) = unsafe { bytes_mut(buf, cap) } {
        let n = name.len().min(out.len());
        out[..n].copy_from_slice(&name.as_bytes()[..n]);
    }
    name.len() as i32
}

/// CLOCK_REALTIME in nanoseconds (the clock of receive timestamps).
#[no_mangle]
pub extern "C" fn gsw_realtime_ns() -> u64 {
    sys::realtime_ns()
}

/// CLOCK_MONOTONIC in nanoseconds (for rate limits and intervals).
#[no_mangle]
pub extern "C" fn gsw_monotonic_ns() -> u64 {
    sys::monotonic_ns()
}

/// The effective user id of this process (for the default run directory, and to check peers).
#[no_mangle]
pub extern "C" fn gsw_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[no_mangle]
pub extern "C" fn gsw_close(fd: RawFd) -> i32 {
    // SAFETY: closing a descriptor the caller owns and no longer uses.
    let ret = unsafe { libc::close(fd) };
    if ret < 0 {
        error::set_last(Error::last_os("close failed"))
    } else {
        0
    }
}

/// Makes SIGINT, SIGTERM and SIGHUP set a flag and signal the returned eventfd instead of
/// killing the process (for a synchronous event loop). Returns the descriptor to watch.
#[no_mangle]
pub extern "C" fn gsw_signals_watch() -> i32 {
    boundary(|| Ok(crate::signals::watch(&[libc::SIGINT, libc::SIGTERM, libc::SIGHUP])? as i64))
        as i32
}

/// The termination signals received since the last call, as a bit mask (bit n: signal n).
#[no_mangle]
pub extern "C" fn gsw_signals_take() -> u64 {
    crate::signals::take()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::segments::*;
    use super::sockets::*;
    use super::*;

    #[test]
    fn errors_come_back_as_negative_codes_with_a_message() {
        let ret = gsw_close(-5);
        assert_eq!(ret, -libc::EBADF);
        let mut buf = [0u8; 200];
        // SAFETY: `buf` is writable for its length.
        let n = unsafe { gsw_last_error(buf.as_mut_ptr(), buf.len()) } as usize;
        let msg = std::str::from_utf8(&buf[..n.min(200)]).unwrap();
        assert!(msg.contains("EBADF"), "{msg}");
    }

    #[test]
    fn null_handles_are_refused() {
        // SAFETY: null is explicitly allowed and must be refused.
        let ret = unsafe { gsw_writer_ring(std::ptr::null()) };
        assert_eq!(ret, -code::BAD_HANDLE);
    }

    #[test]
    fn run_dir_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("gsw-rundir-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        prepare_run_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_run_dir(&dir).unwrap_err();
        assert!(e.message.contains("chmod 700"), "{}", e.message);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_sealed_fd_pair_crosses_a_socket_and_attaches() {
        let w = SegmentWriter::create(&[8], &[0]).unwrap();
        let (a, b) = sock::pair(Kind::SeqPacket).unwrap();
        let fds = w.fds().unwrap();
        let res = unsafe {
            // SAFETY: valid buffers and descriptors for the call.
            gsw_unix_send(a.as_raw_fd(), b"seg".as_ptr(), 3, fds.as_ptr(), 3)
        };
        assert_eq!(res, 3);
        let mut buf = [0u8; 16];
        let mut got = [0i32; 4];
        let mut n = 0u32;
        // SAFETY: valid buffers for the call.
        let len = unsafe {
            gsw_unix_recv(
                b.as_raw_fd(),
                buf.as_mut_ptr(),
                16,
                got.as_mut_ptr(),
                4,
                &mut n,
            )
        };
        assert_eq!((len, n), (3, 3));
        let r = gsw_reader_attach(got[0], got[1], got[2]);
        assert!(!r.is_null());
        w.publish(0, b"ok", 1, 1).unwrap();
        let mut out = [0u8; 64];
        // SAFETY: `r` is live; `out` writable.
        assert_eq!(unsafe { gsw_reader_take(r, 0, out.as_mut_ptr(), 64) }, 1);
        assert_eq!(&out[32..34], b"ok");
        // SAFETY: `r` is live and not used again.
        unsafe { gsw_reader_free(r) };
    }
}
