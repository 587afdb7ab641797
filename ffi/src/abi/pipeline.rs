//! The C ABI of the hot paths of decom (the extractor), the broker (fanout) and the raw-packet
//! queue to the logger. Conventions as in the parent module.

use super::*;

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
        super::write_u64s(out, &[r.taken as u64, r.copied as u64, r.next_due_ns]);
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
        super::write_u64s(out, &vals);
        Ok(0)
    }) as i32
}
