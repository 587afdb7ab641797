//! The C ABI of the MQTT source (`crate::mqtt`): decom creates one per `type: mqtt` source,
//! watches its socket in its waitset, services it when ready or due, and receives its raw
//! packets in the UDP batch format. Conventions as in the parent module.

use super::{boundary, boundary_ptr, bytes, bytes_mut, obj_mut, release_box};
use crate::error::{Error, Result};
use crate::mqtt::{MqttSource, Options};

/// Reads the `n`-th length-prefixed field of `opts`: u32 little-endian length (u32::MAX: the
/// field is absent), then the bytes.
fn fields(opts: &[u8], n: usize) -> Result<Vec<Option<Vec<u8>>>> {
    let mut out = Vec::with_capacity(n);
    let mut at = 0usize;
    for _ in 0..n {
        let len = opts
            .get(at..at + 4)
            .ok_or_else(|| Error::arg("MQTT options cut short"))?;
        let len = u32::from_le_bytes(len.try_into().expect("4"));
        at += 4;
        if len == u32::MAX {
            out.push(None);
            continue;
        }
        let field = opts
            .get(at..at + len as usize)
            .ok_or_else(|| Error::arg("MQTT options cut short"))?;
        out.push(Some(field.to_vec()));
        at += len as usize;
    }
    Ok(out)
}

fn text(field: Option<Vec<u8>>, what: &str) -> Result<Option<String>> {
    field
        .map(|f| {
            String::from_utf8(f).map_err(|_| Error::arg(format!("the MQTT {what} is not UTF-8")))
        })
        .transpose()
}

/// Creates an MQTT source. `opts` holds five length-prefixed fields (see [`fields`]): host,
/// client id, user name, password, topic filter. It connects on the first service call.
///
/// # Safety
/// `opts` `opts_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_mqtt_new(
    opts: *const u8,
    opts_len: u32,
    port: u16,
    qos: u8,
    keepalive_s: u16,
) -> *mut MqttSource {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let opts = unsafe { bytes(opts, opts_len as usize)? };
        let mut f = fields(opts, 5)?.into_iter();
        let mut next = || f.next().flatten();
        let host = text(next(), "host")?.ok_or_else(|| Error::arg("no MQTT host"))?;
        let client_id = text(next(), "client id")?.unwrap_or_default();
        let username = text(next(), "user name")?;
        let password = next();
        let topic = text(next(), "topic")?.ok_or_else(|| Error::arg("no MQTT topic"))?;
        let source = MqttSource::new(Options {
            host,
            port,
            client_id,
            username,
            password,
            topic,
            qos,
            keepalive_s: keepalive_s.max(1),
        })?;
        Ok(Box::into_raw(Box::new(source)))
    })
}

/// # Safety
/// `m` must be null or a live MQTT source handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_mqtt_free(m: *mut MqttSource) {
    // SAFETY: per this function's contract.
    unsafe { release_box(m) }
}

/// Does what is due (connecting, handshakes, pings, reading, writing). Returns the
/// milliseconds until it needs to run again if nothing happens on its socket.
///
/// # Safety
/// `m` a live handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_mqtt_service(m: *mut MqttSource) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let m = unsafe { obj_mut(m)? };
        let now = crate::sys::monotonic_ns() / 1_000_000;
        Ok(m.service(now).min(i32::MAX as u64) as i64)
    }) as i32
}

/// Writes the socket to watch (i32, -1 while waiting to reconnect), what to watch it for
/// (u32: 1 readable, 2 writable) and the attempt number (u32: a new one is a new socket) into
/// `out` (12 bytes).
///
/// # Safety
/// `m` a live handle; `out` 12 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_mqtt_watch(m: *mut MqttSource, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (m, out) = unsafe { (obj_mut(m)?, bytes_mut(out, 12)?) };
        out[0..4].copy_from_slice(&m.fd().to_le_bytes());
        out[4..8].copy_from_slice(&m.interest().to_le_bytes());
        out[8..12].copy_from_slice(&(m.stats().attempts as u32).to_le_bytes());
        Ok(0)
    }) as i32
}

/// Delivers received raw packets as `gsw_batch_recv` does (one destination port per batch).
/// Returns how many (0: none waiting).
///
/// # Safety
/// `m` a live handle; `buf`/`meta` writable for their lengths.
#[no_mangle]
pub unsafe extern "C" fn gsw_mqtt_recv(
    m: *mut MqttSource,
    buf: *mut u8,
    buf_len: u32,
    slot: u32,
    meta: *mut u8,
    meta_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (m, buf, meta) = unsafe {
            (
                obj_mut(m)?,
                bytes_mut(buf, buf_len as usize)?,
                bytes_mut(meta, meta_len as usize)?,
            )
        };
        Ok(m.recv(buf, slot as usize, meta)? as i64)
    }) as i32
}

/// Writes [connected, messages, malformed, gaps, connections, restarts] as u64 into `out`.
///
/// # Safety
/// `m` a live handle; `out` 48 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_mqtt_stats(m: *mut MqttSource, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (m, out) = unsafe { (obj_mut(m)?, bytes_mut(out, 48)?) };
        let s = m.stats();
        let values = [
            s.connected as u64,
            s.messages,
            s.malformed,
            s.gaps,
            s.connections,
            s.restarts,
        ];
        super::write_u64s(out, &values);
        Ok(0)
    }) as i32
}

/// Takes the oldest line worth logging (UTF-8) into `out`; returns its length, 0 if none.
/// A line longer than `cap` is cut.
///
/// # Safety
/// `m` a live handle; `out` `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_mqtt_next_event(m: *mut MqttSource, out: *mut u8, cap: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (m, out) = unsafe { (obj_mut(m)?, bytes_mut(out, cap as usize)?) };
        Ok(super::copy_line(m.next_event(), out))
    }) as i32
}
