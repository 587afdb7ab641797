//! The C ABI of broadcast segments (`crate::broadcast`): decom's writer, direct readers of the
//! latest values and of the packet ring, their bells in waitsets, and `pidfd_open` (readers
//! watch the writer's process through it). Conventions as in the parent module.

use super::{boundary, boundary_ptr, bytes_mut, items, obj, obj_mut, rc_clone, release_box};
use super::{release_rc, write_one};
use crate::broadcast::{BroadcastReader, BroadcastWriter};
use crate::error::{Error, Result};
use crate::extract::Extractor;
use crate::sys;
use crate::waitset::Waitset;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;

/// Creates a broadcast segment of `n` channels (`capacities`, `ids`, `bell_of`: `n` u32 each)
/// with `bells` bells, the ring's on `ring_bell`, and a packet ring of `ring_size` bytes.
///
/// # Safety
/// `capacities`, `ids`, `bell_of` must point at `n` u32 each.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_new(
    capacities: *const u32,
    ids: *const u32,
    bell_of: *const u32,
    n: u32,
    bells: u32,
    ring_bell: u32,
    ring_size: u32,
) -> *mut BroadcastWriter {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let (caps, ids, bell_of) = unsafe {
            (
                items(capacities, n as usize)?,
                items(ids, n as usize)?,
                items(bell_of, n as usize)?,
            )
        };
        let w = BroadcastWriter::create(caps, ids, bell_of, bells, ring_bell, ring_size as usize)?;
        Ok(Rc::into_raw(Rc::new(w)) as *mut BroadcastWriter)
    })
}

/// # Safety
/// `w` must be null or a live broadcast writer handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_free(w: *mut BroadcastWriter) {
    // SAFETY: per this function's contract.
    unsafe { release_rc(w) }
}

/// Writes the descriptors a reader needs (data memfd, control memfd, then each bell) as i32
/// into `out` (room for `cap`); returns how many. The writer keeps them.
///
/// # Safety
/// `w` a live handle; `out` room for `cap` i32.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_fds(
    w: *const BroadcastWriter,
    out: *mut u8,
    cap: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (w, out) = unsafe { (obj(w)?, bytes_mut(out, cap as usize * 4)?) };
        let fds = w.fds();
        if fds.len() > cap as usize {
            return Err(Error::arg(format!(
                "room for {cap} descriptors; the segment has {}",
                fds.len()
            )));
        }
        for (i, fd) in fds.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&fd.to_le_bytes());
        }
        Ok(fds.len() as i64)
    }) as i32
}

/// Writes [publishes, records, rings] as u64 into `out`.
///
/// # Safety
/// `w` a live handle; `out` room for 3 u64.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_stats(w: *const BroadcastWriter, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (w, out) = unsafe { (obj(w)?, bytes_mut(out, 24)?) };
        let s = w.stats();
        super::write_u64s(out, &[s.publishes, s.records, s.rings]);
        Ok(0)
    }) as i32
}

/// Rings a held-back wake-up of the packet ring's readers when due. Returns the milliseconds
/// until one is due, or -1 when none is held back (`BroadcastWriter::flush_due`).
///
/// # Safety
/// `w` a live handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_flush_due(w: *const BroadcastWriter) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let w = unsafe { obj(w)? };
        // -1 (none held back) must not read as an error: report it as i32::MAX instead.
        Ok(match w.flush_due()? {
            -1 => i32::MAX as i64,
            ms => ms,
        })
    }) as i32
}

/// Makes `w` the extractor's broadcast segment; `channel_of` has one u32 per measurement
/// (u32::MAX: not in it). The extractor keeps its own reference to the writer.
///
/// # Safety
/// `e`, `w` live handles; `channel_of` `n` u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_extractor_set_broadcast(
    e: *mut Extractor,
    w: *const BroadcastWriter,
    channel_of: *const u32,
    n: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (e, w, map) = unsafe { (obj_mut(e)?, rc_clone(w)?, items(channel_of, n as usize)?) };
        e.set_broadcast(w, map)?;
        Ok(e.flush()? as i64)
    }) as i32
}

/// Attaches a reader, taking ownership of `fds` (data memfd, control memfd, then `n - 2`
/// bells whose indices are `bells[0..n - 2]`); they are closed on failure too.
///
/// # Safety
/// `fds` must point at `n` i32, `bells` at `n - 2` u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_attach(
    fds: *const i32,
    bells: *const u32,
    n: u32,
) -> *mut BroadcastReader {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let fds = unsafe { items(fds, n as usize)? };
        // Adopt each descriptor once (closing them all on any error below).
        let owned: Vec<Result<OwnedFd>> = fds
            .iter()
            .enumerate()
            .map(|(i, &fd)| {
                if fds[..i].contains(&fd) {
                    Err(Error::arg("the same descriptor was passed twice"))
                } else {
                    // SAFETY: the caller hands these descriptors over; each number once.
                    unsafe { sys::adopt(fd) }
                }
            })
            .collect();
        if n < 2 {
            return Err(Error::arg(
                "a broadcast segment needs its data and control memfds",
            ));
        }
        // SAFETY: per this function's contract.
        let indices = unsafe { items(bells, n as usize - 2)? };
        let mut owned = owned
            .into_iter()
            .collect::<Result<Vec<OwnedFd>>>()?
            .into_iter();
        let (data, ctrl) = (owned.next().expect("n >= 2"), owned.next().expect("n >= 2"));
        let bells = indices.iter().copied().zip(owned).collect();
        let r = BroadcastReader::attach(data, ctrl, bells)?;
        Ok(Box::into_raw(Box::new(r)))
    })
}

/// # Safety
/// `r` must be null or a live broadcast reader handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_free(r: *mut BroadcastReader) {
    // SAFETY: per this function's contract.
    unsafe { release_box(r) }
}

/// Writes [channels, ring bell, ring size] as u32 into `out`.
///
/// # Safety
/// `r` a live handle; `out` room for 3 u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_info(r: *const BroadcastReader, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, 12)?) };
        let vals = [r.channels() as u32, r.ring_bell(), r.ring_size() as u32];
        for (i, v) in vals.iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        Ok(0)
    }) as i32
}

/// Writes [capacity, id, bell] of `channel` as u32 into `out`.
///
/// # Safety
/// `r` a live handle; `out` room for 3 u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_channel(
    r: *const BroadcastReader,
    channel: u32,
    out: *mut u8,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, 12)?) };
        let ch = channel as usize;
        let (Some(cap), Some(id), Some(bell)) = (r.capacity(ch), r.id(ch), r.bell_of(ch)) else {
            return Err(Error::arg(format!("channel {channel} does not exist")));
        };
        for (i, v) in [cap, id, bell].iter().enumerate() {
            out[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        Ok(0)
    }) as i32
}

/// Follows `n` channels (replacing the earlier set).
///
/// # Safety
/// `r` a live handle; `channels` `n` u32.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_follow(
    r: *const BroadcastReader,
    channels: *const u32,
    n: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, channels) = unsafe { (obj(r)?, items(channels, n as usize)?) };
        r.follow(channels)?;
        Ok(0)
    }) as i32
}

/// Writes a record (seq u64, timestamp u64, skipped u64, len u32, channel u32, payload padded
/// to 8) for each followed channel with a newer value; returns how many. Those that do not
/// fit stay new for the next call.
///
/// # Safety
/// `r` a live handle; `out` `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_read(
    r: *const BroadcastReader,
    out: *mut u8,
    out_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, out_len as usize)?) };
        Ok(r.read_changed(out) as i64)
    }) as i32
}

/// Writes the newest value of `channel` as one record, taken or not; returns 1, or 0 if it
/// has none yet.
///
/// # Safety
/// `r` a live handle; `out` `out_len` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_current(
    r: *const BroadcastReader,
    channel: u32,
    out: *mut u8,
    out_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out) = unsafe { (obj(r)?, bytes_mut(out, out_len as usize)?) };
        let cap = r.capacity(channel as usize).unwrap_or(0) as usize;
        let mut value = vec![0u8; cap.div_ceil(8) * 8];
        let header = r.current(channel as usize, &mut value)?;
        if header.seq == 0 {
            return Ok(0);
        }
        write_one(
            out,
            channel as usize,
            &header,
            &value[..header.len as usize],
        )
    }) as i32
}

/// Copies packet-ring records from the reader's cursor into `out`; writes [records, lost,
/// caught up (0/1)] as u64 into `result`; returns the bytes written.
///
/// # Safety
/// `r` a live handle; `out` `out_len` writable bytes; `result` room for 3 u64.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_ring(
    r: *const BroadcastReader,
    out: *mut u8,
    out_len: u32,
    result: *mut u8,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (r, out, res) = unsafe {
            (
                obj(r)?,
                bytes_mut(out, out_len as usize)?,
                bytes_mut(result, 24)?,
            )
        };
        let got = r.read_ring(out);
        super::write_u64s(res, &[got.records as u64, got.lost, got.caught_up as u64]);
        Ok(got.bytes as i64)
    }) as i32
}

/// Watches bell `bell` of reader `r` in waitset `ws` as `token` (edge-triggered; see
/// `Waitset::add_bell`).
///
/// # Safety
/// `ws`, `r` live handles.
#[no_mangle]
pub unsafe extern "C" fn gsw_waitset_add_bell(
    ws: *const Waitset,
    r: *const BroadcastReader,
    bell: u32,
    token: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (ws, r) = unsafe { (obj(ws)?, obj(r)?) };
        let (Some(fd), Some(watch)) = (r.bell(bell), r.bell_watch(bell)) else {
            return Err(Error::arg(format!(
                "bell {bell} was not handed to this reader"
            )));
        };
        ws.add_bell(fd, token, watch)?;
        Ok(0)
    }) as i32
}

/// The descriptor number of bell `bell` of reader `r` (to remove it from a waitset), or an
/// error if it was not handed over.
///
/// # Safety
/// `r` a live handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_bell_fd(r: *const BroadcastReader, bell: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let r = unsafe { obj(r)? };
        use std::os::fd::AsRawFd;
        match r.bell(bell) {
            Some(fd) => Ok(fd.as_raw_fd() as i64),
            None => Err(Error::arg(format!(
                "bell {bell} was not handed to this reader"
            ))),
        }
    }) as i32
}

/// Marks bell `bell` of reader `r` as processed; returns 1 if the writer touched it since the
/// last mark, else 0.
///
/// # Safety
/// `r` a live handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_broadcast_reader_mark_seen(
    r: *const BroadcastReader,
    bell: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let r = unsafe { obj(r)? };
        Ok(r.mark_seen(bell) as i64)
    }) as i32
}

/// A new non-blocking, close-on-exec eventfd.
#[no_mangle]
pub extern "C" fn gsw_eventfd() -> RawFd {
    boundary(|| Ok(sys::eventfd()?.into_raw_fd() as i64)) as RawFd
}

/// Adds one to eventfd `fd` (never blocks).
#[no_mangle]
pub extern "C" fn gsw_eventfd_signal(fd: RawFd) -> i32 {
    boundary(|| {
        // SAFETY: the caller owns `fd` for the duration of the call.
        let fd = unsafe { sys::borrow(fd)? };
        sys::eventfd_signal(fd)?;
        Ok(0)
    }) as i32
}

/// A duplicate of `fd` (close-on-exec) that the caller owns.
#[no_mangle]
pub extern "C" fn gsw_dup(fd: RawFd) -> RawFd {
    boundary(|| {
        // SAFETY: the caller owns `fd` for the duration of the call.
        let fd = unsafe { sys::borrow(fd)? };
        let own = fd
            .try_clone_to_owned()
            .map_err(|e| Error::from_io("dup failed", e))?;
        Ok(own.into_raw_fd() as i64)
    }) as i32
}

/// Asks the kernel to send this process `signal` when its parent exits (PR_SET_PDEATHSIG), so
/// a process started by another gsw process never outlives it. Returns 1 if the parent (whose
/// pid was `parent`) is already gone, else 0.
#[no_mangle]
pub extern "C" fn gsw_die_with_parent(parent: i32, signal: i32) -> i32 {
    boundary(|| {
        // SAFETY: prctl(PR_SET_PDEATHSIG) only sets a per-process flag.
        let ret = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) };
        sys::check(ret, "prctl(PR_SET_PDEATHSIG) failed")?;
        // The parent may have died before the flag was set: then nobody would signal us.
        // SAFETY: getppid has no preconditions.
        Ok((unsafe { libc::getppid() } != parent) as i64)
    }) as i32
}

/// A pidfd for process `pid` (readable once it exits), close-on-exec.
#[no_mangle]
pub extern "C" fn gsw_pidfd_open(pid: i32) -> RawFd {
    boundary(|| Ok(sys::pidfd_open(pid)?.into_raw_fd() as i64)) as RawFd
}
