//! The C ABI of shared-memory segments (`crate::segment`): writers (decom, the broker) and
//! readers (subscribers). Conventions as in the parent module.

use super::*;

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
        super::write_u64s(out, &[s.publishes, s.rings, w.channels() as u64]);
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
