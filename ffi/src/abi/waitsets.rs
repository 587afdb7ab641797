//! The C ABI of waitsets (`crate::waitset`). Conventions as in the parent module.

use super::*;

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
