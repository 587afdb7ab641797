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

mod broadcast;
mod mqtt;

/// Version of this ABI; the TypeScript side refuses a library with another.
pub const ABI_VERSION: u32 = 6;

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

// ---------------------------------------------------------------------------------------------
// Segment writers

/// Creates a segment of `n` channels with payload capacities `caps[i]` and ids `ids[i]`.
///
/// # Safety
/// `caps` and `ids` must each point at `n` u32 values.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_create(
    caps: *const u32,
    ids: *const u32,
    n: u32,
) -> *mut SegmentWriter {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let (caps, ids) = unsafe { (items(caps, n as usize)?, items(ids, n as usize)?) };
        let w = SegmentWriter::create(caps, ids)?;
        Ok(Rc::into_raw(Rc::new(w)) as *mut SegmentWriter)
    })
}

/// Releases the caller's reference (extractors and fanouts keep their own).
///
/// # Safety
/// `w` must be null or a live writer handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_free(w: *mut SegmentWriter) {
    // SAFETY: per this function's contract.
    unsafe { release_rc(w) }
}

/// Writes the data memfd, control memfd and doorbell descriptors into `out[0..3]`.
///
/// # Safety
/// `w` a live writer handle; `out` room for 3 i32.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_fds(w: *const SegmentWriter, out: *mut i32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (w, out) = unsafe { (obj(w)?, bytes_mut(out as *mut u8, 12)?) };
        let fds = w
            .fds()
            .ok_or_else(|| Error::arg("the segment's memfds were already released"))?;
        for (i, fd) in fds.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&fd.to_le_bytes());
        }
        Ok(0)
    }) as i32
}

/// Closes the writer's copies of the two memfds once the reader has them.
///
/// # Safety
/// `w` a live writer handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_release_fds(w: *const SegmentWriter) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        unsafe { obj(w)? }.release_fds();
        Ok(0)
    }) as i32
}

/// Publishes and rings if the reader may be asleep. Returns 1 if it rang, else 0.
///
/// # Safety
/// `w` a live writer handle; `data` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_publish(
    w: *const SegmentWriter,
    channel: u32,
    data: *const u8,
    len: u32,
    seq: u64,
    timestamp_ns: u64,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (w, data) = unsafe { (obj(w)?, bytes(data, len as usize)?) };
        w.publish_quiet(channel as usize, data, seq, timestamp_ns)?;
        Ok(w.ring_if_owed()? as i64)
    }) as i32
}

/// Publishes without ringing; returns 1 if the reader had taken everything (a ring is owed).
///
/// # Safety
/// `w` a live writer handle; `data` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_publish_quiet(
    w: *const SegmentWriter,
    channel: u32,
    data: *const u8,
    len: u32,
    seq: u64,
    timestamp_ns: u64,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (w, data) = unsafe { (obj(w)?, bytes(data, len as usize)?) };
        Ok(w.publish_quiet(channel as usize, data, seq, timestamp_ns)? as i64)
    }) as i32
}

/// Rings the doorbell if a publish since the last ring owes one. Returns 1 if it rang.
///
/// # Safety
/// `w` a live writer handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_ring(w: *const SegmentWriter) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        Ok(unsafe { obj(w)? }.ring_if_owed()? as i64)
    }) as i32
}

/// Writes [publishes, rings, channels] as u64 into `out`.
///
/// # Safety
/// `w` a live writer handle; `out` room for 3 u64.
#[no_mangle]
pub unsafe extern "C" fn gsw_writer_stats(w: *const SegmentWriter, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (w, out) = unsafe { (obj(w)?, bytes_mut(out, 24)?) };
        let s = w.stats();
        for (i, v) in [s.publishes, s.rings, w.channels() as u64]
            .iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        Ok(0)
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// Segment readers

/// Attaches to a segment from its three descriptors, taking ownership of them (they are
/// closed on failure too).
#[no_mangle]
pub extern "C" fn gsw_reader_attach(
    data_fd: RawFd,
    ctrl_fd: RawFd,
    doorbell_fd: RawFd,
) -> *mut SegmentReader {
    boundary_ptr(|| {
        if data_fd == ctrl_fd || data_fd == doorbell_fd || ctrl_fd == doorbell_fd {
            // Adopting one descriptor twice would close it twice; close each number once.
            let mut distinct = vec![data_fd, ctrl_fd, doorbell_fd];
            distinct.sort_unstable();
            distinct.dedup();
            for fd in distinct.into_iter().filter(|&fd| fd >= 0) {
                // SAFETY: the caller handed these descriptors over; each is closed once.
                unsafe { libc::close(fd) };
            }
            return Err(Error::arg(
                "a segment needs three different descriptors (data, control, doorbell)",
            ));
        }
        // SAFETY: the caller hands over these descriptors (received with SCM_RIGHTS).
        let (d, c, e) = unsafe {
            (
                sys::adopt(data_fd),
                sys::adopt(ctrl_fd),
                sys::adopt(doorbell_fd),
            )
        };
        let r = SegmentReader::attach(d?, c?, e?)?;
        Ok(Rc::into_raw(Rc::new(r)) as *mut SegmentReader)
    })
}

/// # Safety
/// `r` must be null or a live reader handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_reader_free(r: *mut SegmentReader) {
    // SAFETY: per this function's contract.
    unsafe { release_rc(r) }
}

/// Writes [channels, doorbell fd, bytes for a full take_pending batch] as u32 into `out`.
///
/// # Safety
/// `r` a live reader handle; `out` room for 3 u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_reader_info(r: *const SegmentReader, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, 12)?) };
        let vals = [
            r.channels() as u32,
            r.doorbell().as_raw_fd() as u32,
            r.batch_capacity() as u32,
        ];
        for (i, v) in vals.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        Ok(0)
    }) as i32
}

/// Writes [capacity, id] of `channel` as u32 into `out`.
///
/// # Safety
/// `r` a live reader handle; `out` room for 2 u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_reader_channel(
    r: *const SegmentReader,
    channel: u32,
    out: *mut u8,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, 8)?) };
        let ch = channel as usize;
        let (Some(cap), Some(id)) = (r.capacity(ch), r.id(ch)) else {
            return Err(Error::arg(format!("channel {channel} does not exist")));
        };
        out[0..4].copy_from_slice(&cap.to_le_bytes());
        out[4..8].copy_from_slice(&id.to_le_bytes());
        Ok(0)
    }) as i32
}

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

/// Takes the newest value of `channel` if there is a new one. Writes one record
/// (seq u64, timestamp u64, skipped u64, len u32, channel u32, payload) into `out`.
/// Returns 1 if a new value was written, 0 if nothing new.
///
/// # Safety
/// `r` a live reader handle; `out` `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_reader_take(
    r: *const SegmentReader,
    channel: u32,
    out: *mut u8,
    out_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, out_len as usize)?) };
        // Check the room before taking: a value taken but not delivered would be lost.
        let cap = r.capacity(channel as usize).unwrap_or(0) as usize;
        if out.len() < RECORD_HEADER_LEN + cap.div_ceil(8) * 8 {
            return Err(Error::arg(format!(
                "output buffer of {} bytes cannot hold channel {channel}'s values ({cap} bytes plus a {RECORD_HEADER_LEN}-byte header); nothing was taken",
                out.len()
            )));
        }
        match r.take(channel as usize)? {
            Some((header, payload)) => write_one(out, channel as usize, &header, payload),
            None => Ok(0),
        }
    }) as i32
}

/// Writes the value this reader holds for `channel` (the newest it took) as one record.
/// Returns 1 if it holds a value, 0 if it never took one.
///
/// # Safety
/// `r` a live reader handle; `out` `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_reader_current(
    r: *const SegmentReader,
    channel: u32,
    out: *mut u8,
    out_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, out_len as usize)?) };
        let Some((header, payload)) = r.current(channel as usize) else {
            return Err(Error::arg(format!("channel {channel} does not exist")));
        };
        if header.seq == 0 {
            return Ok(0);
        }
        write_one(out, channel as usize, &header, payload)
    }) as i32
}

/// Drains the doorbell and takes every channel with a new value, writing records back to
/// back (each padded to 8 bytes) into `out`. Returns how many. Channels that do not fit stay
/// pending for the next call. Zero means: sleep on the doorbell (wait or a waitset).
///
/// # Safety
/// `r` a live reader handle; `out` `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_reader_take_pending(
    r: *const SegmentReader,
    out: *mut u8,
    out_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, out_len as usize)?) };
        let at = std::cell::Cell::new(0usize);
        let room = out.len();
        let n = r.take_pending(
            |ch| {
                let cap = r.capacity(ch).unwrap_or(0) as usize;
                at.get() + RECORD_HEADER_LEN + cap.div_ceil(8) * 8 <= room
            },
            |ch, header, payload| {
                if let Some(len) = segment::write_record(out, at.get(), ch, &header, payload) {
                    at.set(at.get() + len);
                }
            },
        );
        Ok(n as i64)
    }) as i32
}

/// Blocks until the doorbell rings or `timeout_ms` passes (negative: forever).
/// Returns 1 if it rang, 0 on timeout.
///
/// # Safety
/// `r` a live reader handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_reader_wait(r: *const SegmentReader, timeout_ms: i32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        Ok(unsafe { obj(r)? }.wait(timeout_ms)? as i64)
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// Waitsets (safe to wait on one thread while another adds, removes or cancels)

#[no_mangle]
pub extern "C" fn gsw_waitset_new() -> *mut Waitset {
    boundary_ptr(|| Ok(Box::into_raw(Box::new(Waitset::new()?))))
}

/// # Safety
/// `ws` must be null or a live waitset handle with no wait in progress; not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_free(ws: *mut Waitset) {
    // SAFETY: per this function's contract.
    unsafe { release_box(ws) }
}

/// Watches `fd` for `interest` (1 readable, 2 writable), reported as `token`.
///
/// # Safety
/// `ws` a live waitset handle; `fd` open.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_add(
    ws: *const Waitset,
    fd: RawFd,
    token: u32,
    interest: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (ws, fd) = unsafe { (obj(ws)?, sys::borrow(fd)?) };
        ws.add(fd, token, interest)?;
        Ok(0)
    }) as i32
}

/// Watches reader `r`'s doorbell as `token`, and tells its writer when this process sleeps,
/// so the writer can skip signals while it is awake (see `protocol`). Remove with
/// `gsw_waitset_remove` (of the doorbell descriptor) before freeing the reader.
///
/// # Safety
/// `ws` a live waitset handle; `r` a live reader handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_add_reader(
    ws: *const Waitset,
    r: *const SegmentReader,
    token: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (ws, r) = unsafe { (obj(ws)?, obj(r)?) };
        ws.add_reader(r.doorbell(), token, r.control_words())?;
        Ok(0)
    }) as i32
}

/// Changes what `fd` is watched for.
///
/// # Safety
/// `ws` a live waitset handle; `fd` open.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_modify(
    ws: *const Waitset,
    fd: RawFd,
    token: u32,
    interest: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (ws, fd) = unsafe { (obj(ws)?, sys::borrow(fd)?) };
        ws.modify(fd, token, interest)?;
        Ok(0)
    }) as i32
}

/// Stops watching `fd`.
///
/// # Safety
/// `ws` a live waitset handle; `fd` open.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_remove(ws: *const Waitset, fd: RawFd) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (ws, fd) = unsafe { (obj(ws)?, sys::borrow(fd)?) };
        ws.remove(fd)?;
        Ok(0)
    }) as i32
}

/// Waits up to `timeout_ms` (negative: forever) and writes (token u32, events u32) pairs
/// into `out`. Returns how many; 0 on timeout or cancel.
///
/// # Safety
/// `ws` a live waitset handle; `out` `out_len` writable bytes, untouched by others until
/// this returns.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_wait(
    ws: *const Waitset,
    out: *mut u8,
    out_len: u32,
    timeout_ms: i32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (ws, out) = unsafe { (obj(ws)?, bytes_mut(out, out_len as usize)?) };
        let mut ready = [Ready {
            token: 0,
            events: 0,
        }; 256];
        let cap = (out.len() / 8).min(ready.len());
        // A wait may run on a pool thread (Deno's nonblocking calls): keep its error with the
        // waitset too, where the thread that awaits the result can read it.
        let n = ws
            .wait(&mut ready[..cap.max(1)], timeout_ms)
            .inspect_err(|e| {
                ws.set_last_error(e.clone());
            })?;
        for (i, r) in ready[..n.min(cap)].iter().enumerate() {
            out[i * 8..i * 8 + 4].copy_from_slice(&r.token.to_le_bytes());
            out[i * 8 + 4..i * 8 + 8].copy_from_slice(&r.events.to_le_bytes());
        }
        Ok(n.min(cap) as i64)
    }) as i32
}

/// Copies the message of the last failed wait on this waitset (from whichever thread it
/// ran on) into `buf`; returns its full length.
///
/// # Safety
/// `ws` a live waitset handle; `buf` `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_last_error(
    ws: *const Waitset,
    buf: *mut u8,
    cap: usize,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (ws, out) = unsafe { (obj(ws)?, bytes_mut(buf, cap)?) };
        let msg = ws.last_error().message;
        let n = msg.len().min(out.len());
        out[..n].copy_from_slice(&msg.as_bytes()[..n]);
        Ok(msg.len() as i64)
    }) as i32
}

/// Makes a wait in progress on any thread (or the next wait) return 0 at once.
///
/// # Safety
/// `ws` a live waitset handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_cancel(ws: *const Waitset) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        unsafe { obj(ws)? }.cancel()?;
        Ok(0)
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// UNIX sockets and the run directory

/// Creates the run directory (mode 0700) if missing, and refuses one that another user owns
/// or that others can enter.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_prepare_run_dir(p: *const u8, len: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let dir = unsafe { path(p, len as usize)? };
        prepare_run_dir(dir)?;
        Ok(0)
    }) as i32
}

fn prepare_run_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => {}
        Err(e) => {
            return Err(Error::from_io(
                &format!("cannot create run directory {}", dir.display()),
                e,
            ))
        }
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| {
        Error::from_io(
            &format!("cannot inspect run directory {}", dir.display()),
            e,
        )
    })?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() {
        return Err(Error::errno(
            libc::ENOTDIR,
            &format!("run directory {} is not a directory", dir.display()),
        ));
    }
    if meta.uid() != me {
        return Err(Error::errno(
            libc::EACCES,
            &format!(
                "run directory {} belongs to uid {}, not to you (uid {me}); choose your own with --run-dir or GSW_RUN_DIR",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(Error::errno(
            libc::EACCES,
            &format!(
                "run directory {} is open to other users (mode {:o}); run `chmod 700 {}` or choose another",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            ),
        ));
    }
    Ok(())
}

/// Removes a file (a socket of ours at shutdown). Missing is not an error.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_unlink(p: *const u8, len: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let file = unsafe { path(p, len as usize)? };
        match std::fs::remove_file(file) {
            Ok(()) => Ok(1),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::from_io(
                &format!("cannot remove {}", file.display()),
                e,
            )),
        }
    }) as i32
}

/// Binds (and for seqpacket, listens on) a UNIX socket at the path; `kind` 0 seqpacket,
/// 1 datagram. Returns the descriptor.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_listen(p: *const u8, len: u32, kind_: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let at = unsafe { path(p, len as usize)? };
        Ok(sock::listen(at, kind(kind_)?)?.into_raw_fd() as i64)
    }) as i32
}

/// Connects to the UNIX socket at the path. Returns the (non-blocking) descriptor.
///
/// # Safety
/// `p` must point at `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_connect(p: *const u8, len: u32, kind_: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let at = unsafe { path(p, len as usize)? };
        Ok(sock::connect(at, kind(kind_)?)?.into_raw_fd() as i64)
    }) as i32
}

fn write_cred(out: &mut [u8], c: sock::Cred) {
    out[0..4].copy_from_slice(&c.pid.to_le_bytes());
    out[4..8].copy_from_slice(&c.uid.to_le_bytes());
    out[8..12].copy_from_slice(&c.gid.to_le_bytes());
}

/// Accepts a pending connection; writes the peer's [pid, uid, gid] into `cred`.
/// Returns the new descriptor, or -EAGAIN when none is waiting.
///
/// # Safety
/// `cred` room for 3 u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_accept(listener: RawFd, cred: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (l, out) = unsafe { (sys::borrow(listener)?, bytes_mut(cred, 12)?) };
        match sock::accept(l)? {
            Some((fd, c)) => {
                write_cred(out, c);
                Ok(fd.into_raw_fd() as i64)
            }
            None => Ok(-(libc::EAGAIN as i64)),
        }
    }) as i32
}

/// Writes the connected peer's [pid, uid, gid] into `cred`.
///
/// # Safety
/// `cred` room for 3 u32; `fd` open.
#[no_mangle]
pub unsafe extern "C" fn gsw_peer_cred(fd: RawFd, cred: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (fd, out) = unsafe { (sys::borrow(fd)?, bytes_mut(cred, 12)?) };
        write_cred(out, sock::peer_cred(fd)?);
        Ok(0)
    }) as i32
}

/// Sends one message with `nfds` descriptors from `fds`. Returns bytes sent, or -EAGAIN if
/// the peer's queue is full.
///
/// # Safety
/// `buf` `len` readable bytes; `fds` `nfds` i32; every descriptor open.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_send(
    fd: RawFd,
    buf: *const u8,
    len: u32,
    fds: *const i32,
    nfds: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (fd, buf, raw) = unsafe {
            (
                sys::borrow(fd)?,
                bytes(buf, len as usize)?,
                items(fds, nfds as usize)?,
            )
        };
        let mut borrowed: Vec<BorrowedFd<'_>> = Vec::with_capacity(raw.len());
        for &f in raw {
            // SAFETY: the caller keeps each descriptor open for the call.
            borrowed.push(unsafe { sys::borrow(f)? });
        }
        match sock::send(fd, buf, &borrowed)? {
            Some(n) => Ok(n as i64),
            None => Ok(-(libc::EAGAIN as i64)),
        }
    }) as i32
}

/// Receives one message into `buf`; received descriptors go into `fds` (at most `max_fds`,
/// their count into `nfds`, the caller owns them). Returns the message length, 0 when the
/// peer closed, -EAGAIN when nothing is waiting, -EMSGSIZE for a message that did not fit
/// (it is discarded whole, its descriptors closed).
///
/// # Safety
/// `buf` `cap` writable bytes; `fds` room for `max_fds` i32; `nfds` room for one u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_unix_recv(
    fd: RawFd,
    buf: *mut u8,
    cap: u32,
    fds: *mut i32,
    max_fds: u32,
    nfds: *mut u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (fd, buf, fds_out, nfds_out) = unsafe {
            (
                sys::borrow(fd)?,
                bytes_mut(buf, cap as usize)?,
                bytes_mut(fds as *mut u8, max_fds as usize * 4)?,
                bytes_mut(nfds as *mut u8, 4)?,
            )
        };
        nfds_out.copy_from_slice(&0u32.to_le_bytes());
        match sock::recv(fd, buf)? {
            Received::Empty => Ok(-(libc::EAGAIN as i64)),
            Received::Closed => Ok(0),
            Received::Message(n, received) => {
                if n == 0 {
                    // gsw never sends empty messages (they read as a hang-up); dropping
                    // `received` closes the descriptors that came with this one.
                    return Err(Error::errno(
                        libc::EBADMSG,
                        "an empty message carrying descriptors was refused",
                    ));
                }
                if received.len() > max_fds as usize {
                    return Err(Error::errno(
                        libc::EMSGSIZE,
                        &format!(
                            "a message carried {} descriptors, {max_fds} expected at most",
                            received.len()
                        ),
                    ));
                }
                for (i, f) in received.into_iter().enumerate() {
                    fds_out[i * 4..i * 4 + 4].copy_from_slice(&f.into_raw_fd().to_le_bytes());
                    nfds_out.copy_from_slice(&(i as u32 + 1).to_le_bytes());
                }
                Ok(n as i64)
            }
        }
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// UDP and batches

/// Opens a UDP socket bound to `bind:port`, joined to the multicast group if `mcast_len` > 0,
/// with a receive buffer of `rcvbuf` bytes and kernel timestamps. Returns the descriptor.
///
/// # Safety
/// `bind` `bind_len` readable bytes; `mcast` `mcast_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_udp_open(
    bind: *const u8,
    bind_len: u32,
    port: u16,
    mcast: *const u8,
    mcast_len: u32,
    rcvbuf: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (b, m) = unsafe {
            (
                bytes(bind, bind_len as usize)?,
                bytes(mcast, mcast_len as usize)?,
            )
        };
        let b = std::str::from_utf8(b).map_err(|_| Error::arg("bind address is not UTF-8"))?;
        let m = std::str::from_utf8(m).map_err(|_| Error::arg("multicast group is not UTF-8"))?;
        let fd = udp::open(b, port, (!m.is_empty()).then_some(m), rcvbuf)?;
        Ok(fd.into_raw_fd() as i64)
    }) as i32
}

/// Opens a UDP socket for sending. Returns the descriptor.
#[no_mangle]
pub extern "C" fn gsw_udp_open_sender() -> i32 {
    boundary(|| Ok(udp::open_sender()?.into_raw_fd() as i64)) as i32
}

/// The local port of a bound socket.
#[no_mangle]
pub extern "C" fn gsw_udp_local_port(fd: RawFd) -> i32 {
    boundary(|| {
        // SAFETY: the caller keeps `fd` open for the call.
        let fd = unsafe { sys::borrow(fd)? };
        Ok(udp::local_port(fd)? as i64)
    }) as i32
}

/// The receive buffer the kernel granted a UDP socket, in bytes.
#[no_mangle]
pub extern "C" fn gsw_udp_receive_buffer(fd: RawFd) -> i32 {
    boundary(|| {
        // SAFETY: the caller keeps `fd` open for the call.
        let fd = unsafe { sys::borrow(fd)? };
        Ok(udp::receive_buffer(fd)?.min(i32::MAX as u32) as i64)
    }) as i32
}

#[no_mangle]
pub extern "C" fn gsw_batch_new(max: u32) -> *mut Batch {
    boundary_ptr(|| Ok(Box::into_raw(Box::new(Batch::new(max as usize)?))))
}

/// # Safety
/// `b` must be null or a live batch handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_batch_free(b: *mut Batch) {
    // SAFETY: per this function's contract.
    unsafe { release_box(b) }
}

/// Receives datagrams from `fd` into `buf` (slots of `slot` bytes) with 32-byte metadata
/// records in `meta` (see `udp::META_LEN`). Returns how many (0: none waiting).
///
/// # Safety
/// `b` a live batch; `buf`/`meta` writable for their lengths.
#[no_mangle]
pub unsafe extern "C" fn gsw_batch_recv(
    b: *mut Batch,
    fd: RawFd,
    buf: *mut u8,
    buf_len: u32,
    slot: u32,
    meta: *mut u8,
    meta_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (b, fd, buf, meta) = unsafe {
            (
                obj_mut(b)?,
                sys::borrow(fd)?,
                bytes_mut(buf, buf_len as usize)?,
                bytes_mut(meta, meta_len as usize)?,
            )
        };
        Ok(b.recv(fd, buf, slot as usize, meta)? as i64)
    }) as i32
}

/// Sends `n` datagrams laid out back to back in `buf` (lengths in `lens`) to `ip:port`, or
/// datagram i to `ip:ports[i]` when `ports` is not null. Returns how many were taken.
///
/// # Safety
/// `b` a live batch; `buf` `buf_len` bytes; `lens` `n` u32; `ip` `ip_len` bytes; `ports`
/// null or `ports_len` u16.
#[no_mangle]
pub unsafe extern "C" fn gsw_batch_send(
    b: *mut Batch,
    fd: RawFd,
    buf: *const u8,
    buf_len: u32,
    lens: *const u32,
    n: u32,
    ip: *const u8,
    ip_len: u32,
    port: u16,
    ports: *const u16,
    ports_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (b, fd, buf, lens, ip) = unsafe {
            (
                obj_mut(b)?,
                sys::borrow(fd)?,
                bytes(buf, buf_len as usize)?,
                items(lens, n as usize)?,
                bytes(ip, ip_len as usize)?,
            )
        };
        let ports = if ports.is_null() {
            None
        } else {
            if ports_len < n {
                return Err(Error::arg(format!(
                    "{n} datagrams but only {ports_len} destination ports"
                )));
            }
            // SAFETY: per this function's contract, `ports` holds `ports_len` u16.
            Some(unsafe { items(ports, ports_len as usize)? })
        };
        let ip = std::str::from_utf8(ip)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::arg("destination is not an IPv4 address like 127.0.0.1"))?;
        Ok(b.send(fd, buf, lens, ip, port, ports)? as i64)
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// Extractor (decom)

/// Creates an extractor from `n` fields of 4 u32 each: packet, measurement, offset, length.
///
/// # Safety
/// `fields` must point at `4 * n` u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_extractor_new(
    fields: *const u32,
    n: u32,
    packets: u32,
    measurements: u32,
) -> *mut Extractor {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let raw = unsafe { items(fields, 4 * n as usize)? };
        let fields: Vec<Field> = raw
            .chunks_exact(4)
            .map(|f| Field {
                packet: f[0],
                measurement: f[1],
                offset: f[2],
                len: f[3],
            })
            .collect();
        Ok(Box::into_raw(Box::new(Extractor::new(
            &fields,
            packets as usize,
            measurements as usize,
        )?)))
    })
}

/// # Safety
/// `e` must be null or a live extractor handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_extractor_free(e: *mut Extractor) {
    // SAFETY: per this function's contract.
    unsafe { release_box(e) }
}

/// Attaches writer `w` as a link; `channel_of` has one u32 per measurement (u32::MAX: not on
/// this link). The extractor keeps its own reference to the writer.
///
/// # Safety
/// `e`, `w` live handles; `channel_of` `n` u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_extractor_add_link(
    e: *mut Extractor,
    w: *const SegmentWriter,
    channel_of: *const u32,
    n: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (e, w, map) = unsafe { (obj_mut(e)?, rc_clone(w)?, items(channel_of, n as usize)?) };
        e.add_link(w, map)?;
        Ok(0)
    }) as i32
}

/// Detaches writer `w`. Returns how many links were removed.
///
/// # Safety
/// `e`, `w` live handles.
#[no_mangle]
pub unsafe extern "C" fn gsw_extractor_remove_link(
    e: *mut Extractor,
    w: *const SegmentWriter,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (e, w) = unsafe { (obj_mut(e)?, obj(w)?) };
        Ok(e.remove_link(w) as i64)
    }) as i32
}

/// Publishes a receive batch that arrived on `port`: `types[i]` is datagram i's packet type
/// or u32::MAX (not identified: only the broadcast ring gets it). Returns the values published.
///
/// # Safety
/// `e` live; `buf`, `meta` readable for their lengths; `types` `n` u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_extractor_publish_batch(
    e: *mut Extractor,
    buf: *const u8,
    buf_len: u32,
    slot: u32,
    meta: *const u8,
    meta_len: u32,
    types: *const u32,
    n: u32,
    port: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (e, buf, meta, types) = unsafe {
            (
                obj_mut(e)?,
                bytes(buf, buf_len as usize)?,
                bytes(meta, meta_len as usize)?,
                items(types, n as usize)?,
            )
        };
        Ok(e.publish_batch(buf, slot as usize, meta, types, port as u16)? as i64)
    }) as i32
}

/// Publishes one value of a measurement no packet carries (health) and rings.
///
/// # Safety
/// `e` live; `data` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_extractor_publish_value(
    e: *mut Extractor,
    measurement: u32,
    data: *const u8,
    len: u32,
    timestamp_ns: u64,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (e, data) = unsafe { (obj_mut(e)?, bytes(data, len as usize)?) };
        e.publish_value(measurement as usize, data, timestamp_ns)?;
        Ok(e.flush()? as i64)
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// Fanout (broker)

/// Creates a fanout reading from `r` (it keeps its own reference).
///
/// # Safety
/// `r` a live reader handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_fanout_new(r: *const SegmentReader) -> *mut Fanout {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let r = unsafe { rc_clone(r)? };
        Ok(Box::into_raw(Box::new(Fanout::new(r))))
    })
}

/// # Safety
/// `f` must be null or a live fanout handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_fanout_free(f: *mut Fanout) {
    // SAFETY: per this function's contract.
    unsafe { release_box(f) }
}

/// Routes source channel `src` to channel `dst` of writer `w`, at most once per
/// `min_interval_ns`; `now_ns` is the caller's monotonic clock.
///
/// # Safety
/// `f`, `w` live handles.
#[no_mangle]
pub unsafe extern "C" fn gsw_fanout_add(
    f: *mut Fanout,
    src: u32,
    w: *const SegmentWriter,
    dst: u32,
    min_interval_ns: u64,
    now_ns: u64,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (f, w) = unsafe { (obj_mut(f)?, rc_clone(w)?) };
        f.add_route(src as usize, w, dst as usize, min_interval_ns, now_ns)?;
        Ok(0)
    }) as i32
}

/// Removes every route to writer `w`. Returns how many.
///
/// # Safety
/// `f`, `w` live handles.
#[no_mangle]
pub unsafe extern "C" fn gsw_fanout_remove(f: *mut Fanout, w: *const SegmentWriter) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (f, w) = unsafe { (obj_mut(f)?, obj(w)?) };
        Ok(f.remove_dst(w) as i64)
    }) as i32
}

/// Copies every new source value to its routes and rings subscribers. Writes
/// [taken u64, copied u64, next_due_ns u64] into `out`. Returns values copied.
///
/// # Safety
/// `f` live; `out` room for 3 u64.
#[no_mangle]
pub unsafe extern "C" fn gsw_fanout_pump(f: *const Fanout, now_ns: u64, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (f, out) = unsafe { (obj(f)?, bytes_mut(out, 24)?) };
        let r = f.pump(now_ns)?;
        for (i, v) in [r.taken as u64, r.copied as u64, r.next_due_ns]
            .iter()
            .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        Ok(r.copied as i64)
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// Raw-packet queue to the logger

/// A queue tagging records with `source`, buffering up to `max_pending` bytes itself, and
/// holding records at most `max_age_ms` before sending them (0: send every batch at once).
#[no_mangle]
pub extern "C" fn gsw_logq_new(source: u16, max_pending: u32, max_age_ms: u32) -> *mut LogQueue {
    boundary_ptr(|| {
        Ok(Box::into_raw(Box::new(LogQueue::new(
            source,
            max_pending as usize,
            max_age_ms as u64 * 1_000_000,
        ))))
    })
}

/// # Safety
/// `q` must be null or a live queue handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_free(q: *mut LogQueue) {
    // SAFETY: per this function's contract.
    unsafe { release_box(q) }
}

/// Connects to the logger's socket at the path (replacing any earlier connection).
///
/// # Safety
/// `q` live; `p` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_connect(q: *mut LogQueue, p: *const u8, len: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (q, at) = unsafe { (obj_mut(q)?, path(p, len as usize)?) };
        q.connect(at)?;
        Ok(0)
    }) as i32
}

/// Sets the payload of the hello message sent first on every later connection (at most
/// 4096 bytes; decom sends its source name and config hash, see `logq::KIND_HELLO`).
///
/// # Safety
/// `q` live; `p` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_set_hello(q: *mut LogQueue, p: *const u8, len: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (q, payload) = unsafe { (obj_mut(q)?, bytes(p, len as usize)?) };
        q.set_hello(payload)?;
        Ok(0)
    }) as i32
}

/// Drops the connection (the queue keeps buffering).
///
/// # Safety
/// `q` live.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_disconnect(q: *mut LogQueue) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        unsafe { obj_mut(q)? }.disconnect();
        Ok(0)
    }) as i32
}

/// The connection's descriptor (to watch for writability and hang-up), or -ENOTCONN.
///
/// # Safety
/// `q` live.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_fd(q: *const LogQueue) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        Ok(unsafe { obj(q)? }
            .raw_fd()
            .map_or(-(libc::ENOTCONN as i64), |fd| fd as i64))
    }) as i32
}

/// Queues a receive batch for the logger. Returns the packets dropped by this call.
///
/// # Safety
/// `q` live; `buf`, `meta` readable for their lengths.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_forward(
    q: *mut LogQueue,
    buf: *const u8,
    buf_len: u32,
    slot: u32,
    meta: *const u8,
    meta_len: u32,
    n: u32,
    dst_port: u16,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (q, buf, meta) = unsafe {
            (
                obj_mut(q)?,
                bytes(buf, buf_len as usize)?,
                bytes(meta, meta_len as usize)?,
            )
        };
        Ok(q.forward(buf, slot as usize, meta, n as usize, dst_port)? as i64)
    }) as i32
}

/// Sends what the queue buffered. Returns the bytes still buffered (0: all sent).
///
/// # Safety
/// `q` live.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_flush(q: *mut LogQueue) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        Ok(unsafe { obj_mut(q)? }.flush().min(i32::MAX as u64) as i64)
    }) as i32
}

/// Sends the records held longer than the queue's maximum age, and what the kernel can take
/// of the buffered messages. Returns the milliseconds until the next records fall due
/// (`0x3fff_ffff` when none are held), plus `1 << 30` when the kernel refused messages that
/// still wait for room (watch the socket for writability, then `gsw_logq_flush`): one call
/// per event-loop turn tells the caller both things.
///
/// # Safety
/// `q` live.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_flush_due(q: *mut LogQueue) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let q = unsafe { obj_mut(q)? };
        let (_, due) = q.flush_due();
        let ms = due.map_or(0x3fff_ffff, |ms| ms.min(0x3fff_fffe));
        let unsent = if q.stats().unsent_bytes > 0 {
            1 << 30
        } else {
            0
        };
        Ok((ms | unsent) as i64)
    }) as i32
}

/// Sends everything held, now (at shutdown). Returns the bytes still buffered.
///
/// # Safety
/// `q` live.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_finish(q: *mut LogQueue) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        Ok(unsafe { obj_mut(q)? }.finish().min(i32::MAX as u64) as i64)
    }) as i32
}

/// Writes [sent, dropped, pending_bytes, pending_packets, connected, unsent_bytes] as u64
/// into `out`.
///
/// # Safety
/// `q` live; `out` room for 6 u64.
#[no_mangle]
pub unsafe extern "C" fn gsw_logq_stats(q: *const LogQueue, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (q, out) = unsafe { (obj(q)?, bytes_mut(out, 48)?) };
        let s = q.stats();
        let vals = [
            s.sent,
            s.dropped,
            s.pending_bytes,
            s.pending_packets,
            q.is_connected() as u64,
            s.unsent_bytes,
        ];
        for (i, v) in vals.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        Ok(0)
    }) as i32
}

// ---------------------------------------------------------------------------------------------
// Benchmark references: the hot symbols' parameter types, doing nothing. `deno task bench`
// compares each hot call against its no-op twin in the same library and the same run.

/// No-op with `gsw_writer_publish`'s parameters.
#[no_mangle]
pub extern "C" fn gsw_bench_noop_publish(
    _w: *const SegmentWriter,
    _channel: u32,
    _data: *const u8,
    _len: u32,
    _seq: u64,
    _timestamp_ns: u64,
) -> i32 {
    0
}

/// No-op with `gsw_reader_take`'s parameters.
#[no_mangle]
pub extern "C" fn gsw_bench_noop_take(
    _r: *const SegmentReader,
    _channel: u32,
    _out: *mut u8,
    _out_len: u32,
) -> i32 {
    0
}

/// No-op with `gsw_waitset_wait`'s parameters (bound `nonblocking` for the awaited reference).
#[no_mangle]
pub extern "C" fn gsw_bench_noop_wait(
    _ws: *const Waitset,
    _out: *mut u8,
    _out_len: u32,
    _timeout_ms: i32,
) -> i32 {
    0
}

#[cfg(all(test, not(loom)))]
mod tests {
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
