//! The C ABI of byte-stream sources (`crate::stream`): decom creates one per `type: serial` or
//! `type: tcp` source, watches its epoll descriptor in its waitset, services it when readable
//! or due, and receives its packets in the UDP batch format. Conventions as in the parent
//! module.

use super::{boundary, boundary_ptr, bytes, bytes_mut, obj_mut, release_box};
use crate::error::{Error, Result};
use crate::framing::{Crc, Framing, Kind};
use crate::stream::{Endpoint, Parity, StreamSource};
use crate::{stream_out, sys};
use std::os::fd::{IntoRawFd, RawFd};

/// Bytes of the settings block `gsw_stream_new` reads (see there).
pub const SPEC_LEN: usize = 48;

fn u16_at(s: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([s[at], s[at + 1]])
}

fn u32_at(s: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(s[at..at + 4].try_into().expect("4"))
}

/// Reads the settings block: what to open, its line settings and framing.
fn parse(spec: &[u8], text: String) -> Result<(Endpoint, Framing, u16)> {
    if spec.len() != SPEC_LEN {
        return Err(Error::arg(format!(
            "stream settings of {} bytes, not {SPEC_LEN}",
            spec.len()
        )));
    }
    let endpoint = match spec[0] {
        0 => Endpoint::Serial {
            path: text,
            baud: u32_at(spec, 8),
            data_bits: spec[1],
            parity: match spec[2] {
                1 => Parity::Even,
                2 => Parity::Odd,
                _ => Parity::None,
            },
            stop_bits: spec[3],
            rtscts: spec[4] == 1,
            xonxoff: spec[4] == 2,
        },
        1 => Endpoint::Connect {
            host: text,
            port: u16_at(spec, 12),
        },
        2 => Endpoint::Listen {
            host: text,
            port: u16_at(spec, 12),
        },
        k => return Err(Error::arg(format!("stream kind {k}"))),
    };
    let word_len = (spec[22] as usize).min(8);
    let kind = match spec[5] {
        0 => Kind::Sync {
            word: spec[24..24 + word_len].to_vec(),
            size: u32_at(spec, 16) as usize,
        },
        1 => Kind::Length {
            bytes: spec[20].clamp(1, 4) as usize,
            big: spec[21] == 1,
        },
        2 => Kind::Cobs,
        3 => Kind::Slip,
        k => return Err(Error::arg(format!("framing kind {k}"))),
    };
    if matches!(&kind, Kind::Sync { word, .. } if word.is_empty()) {
        return Err(Error::arg("a sync framing without a sync word"));
    }
    let framing = Framing {
        kind,
        crc: match spec[6] {
            1 => Crc::Ccitt16,
            2 => Crc::Crc32c,
            _ => Crc::None,
        },
        crc_big: spec[7] == 1,
        min_len: u32_at(spec, 32) as usize,
        max_len: u32_at(spec, 36) as usize,
    };
    Ok((endpoint, framing, u16_at(spec, 14)))
}

/// The settings block and its device path or host, read.
///
/// # Safety
/// `spec` `spec_len` and `text` `text_len` readable bytes.
unsafe fn settings(
    spec: *const u8,
    spec_len: u32,
    text: *const u8,
    text_len: u32,
) -> Result<(Endpoint, Framing, u16)> {
    // SAFETY: per this function's contract.
    let (spec, text) = unsafe {
        (
            bytes(spec, spec_len as usize)?,
            bytes(text, text_len as usize)?,
        )
    };
    let text = String::from_utf8(text.to_vec())
        .map_err(|_| Error::arg("a device path or host that is not UTF-8"))?;
    parse(spec, text)
}

/// Creates a stream source. `spec` is `SPEC_LEN` bytes, little-endian: kind u8 @0 (0 serial,
/// 1 TCP connect, 2 TCP listen), data bits u8 @1, parity u8 @2 (0 none, 1 even, 2 odd), stop
/// bits u8 @3, flow control u8 @4 (0 none, 1 RTS/CTS, 2 XON/XOFF), framing u8 @5 (0 sync, 1
/// length, 2 COBS, 3 SLIP), CRC u8 @6 (0 none, 1 CRC-16/CCITT-FALSE, 2 CRC-32C), CRC
/// big-endian u8 @7, baud u32 @8, TCP port u16 @12, destination port to deliver with u16 @14,
/// sync packet size u32 @16, length field bytes u8 @20, length big-endian u8 @21, sync word
/// length u8 @22, sync word @24 (8 bytes), shortest packet u32 @32, longest u32 @36. `text` is
/// the device path or the host.
///
/// # Safety
/// `spec` `spec_len` and `text` `text_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_new(
    spec: *const u8,
    spec_len: u32,
    text: *const u8,
    text_len: u32,
) -> *mut StreamSource {
    boundary_ptr(|| {
        // SAFETY: per this function's contract.
        let (endpoint, framing, port) = unsafe { settings(spec, spec_len, text, text_len)? };
        Ok(Box::into_raw(Box::new(StreamSource::new(
            endpoint, framing, port,
        )?)))
    })
}

/// # Safety
/// `s` must be null or a live stream source handle, not used again.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_free(s: *mut StreamSource) {
    // SAFETY: per this function's contract.
    unsafe { release_box(s) }
}

/// The descriptor to watch for readability (it stays the same for the source's life).
///
/// # Safety
/// `s` a live handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_fd(s: *mut StreamSource) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let s = unsafe { obj_mut(s)? };
        Ok(s.fd() as i64)
    }) as i32
}

/// Opens, accepts and reads what is due. Returns the ms until it needs to run again if its
/// descriptor stays quiet (0: packets are waiting for `gsw_stream_recv`).
///
/// # Safety
/// `s` a live handle.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_service(s: *mut StreamSource) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let s = unsafe { obj_mut(s)? };
        let now = crate::sys::monotonic_ns() / 1_000_000;
        Ok(s.service(now).min(i32::MAX as u64) as i64)
    }) as i32
}

/// Delivers waiting packets as `gsw_batch_recv` does. Returns how many (0: none waiting).
///
/// # Safety
/// `s` a live handle; `buf`/`meta` writable for their lengths.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_recv(
    s: *mut StreamSource,
    buf: *mut u8,
    buf_len: u32,
    slot: u32,
    meta: *mut u8,
    meta_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (s, buf, meta) = unsafe {
            (
                obj_mut(s)?,
                bytes_mut(buf, buf_len as usize)?,
                bytes_mut(meta, meta_len as usize)?,
            )
        };
        Ok(s.recv(buf, slot as usize, meta)? as i64)
    }) as i32
}

/// Writes [connected, packets, rejected, bytes, opens] as u64 into `out`.
///
/// # Safety
/// `s` a live handle; `out` 40 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_stats(s: *mut StreamSource, out: *mut u8) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (s, out) = unsafe { (obj_mut(s)?, bytes_mut(out, 40)?) };
        let st = s.stats();
        super::write_u64s(
            out,
            &[st.connected, st.packets, st.rejected, st.bytes, st.opens],
        );
        Ok(0)
    }) as i32
}

/// Takes the oldest line worth logging (UTF-8) into `out`; returns its length, 0 if none.
///
/// # Safety
/// `s` a live handle; `out` `cap` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_next_event(
    s: *mut StreamSource,
    out: *mut u8,
    cap: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (s, out) = unsafe { (obj_mut(s)?, bytes_mut(out, cap as usize)?) };
        Ok(super::copy_line(s.next_event(), out))
    }) as i32
}

/// Frames `packet` as the settings block `spec` says (see `gsw_stream_new`) into `out`;
/// returns the framed length, or an error when the framing cannot carry it or `out` is short.
///
/// # Safety
/// `spec`, `packet` readable and `out` writable for their lengths.
#[no_mangle]
pub unsafe extern "C" fn gsw_frame_encode(
    spec: *const u8,
    spec_len: u32,
    packet: *const u8,
    packet_len: u32,
    out: *mut u8,
    out_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (spec, packet, out) = unsafe {
            (
                bytes(spec, spec_len as usize)?,
                bytes(packet, packet_len as usize)?,
                bytes_mut(out, out_len as usize)?,
            )
        };
        let (_, framing, _) = parse(spec, String::new())?;
        let mut v = Vec::new();
        crate::framing::encode(&framing, packet, &mut v).map_err(Error::arg)?;
        if v.len() > out.len() {
            return Err(Error::arg(format!(
                "{} bytes framed, room for {}",
                v.len(),
                out.len()
            )));
        }
        out[..v.len()].copy_from_slice(&v);
        Ok(v.len() as i64)
    }) as i32
}

/// Opens where replay writes a stream source's bytes: the serial device at its line settings
/// (kind 0), a TCP connection to a listening decom (kind 1: blocks up to 5 s connecting), or a
/// TCP listener (kind 2) for a decom that connects, taken with `gsw_stream_out_accept`. The
/// settings block and `text` are `gsw_stream_new`'s (the framing is not used here). Returns
/// the non-blocking descriptor, owned by the caller.
///
/// # Safety
/// `spec` `spec_len` and `text` `text_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_out_open(
    spec: *const u8,
    spec_len: u32,
    text: *const u8,
    text_len: u32,
) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract.
        let (endpoint, _, _) = unsafe { settings(spec, spec_len, text, text_len)? };
        Ok(stream_out::open(&endpoint)?.into_raw_fd() as i64)
    }) as i32
}

/// The TCP port a listener from `gsw_stream_out_open` is bound to.
#[no_mangle]
pub extern "C" fn gsw_stream_out_port(listener: RawFd) -> i32 {
    boundary(|| {
        // SAFETY: the caller passes an open descriptor, borrowed for this call only.
        let l = unsafe { sys::borrow(listener)? };
        Ok(stream_out::local_port(l)? as i64)
    }) as i32
}

/// Takes the connection waiting on a listener from `gsw_stream_out_open`: its descriptor, or
/// -EAGAIN when none is waiting.
#[no_mangle]
pub extern "C" fn gsw_stream_out_accept(listener: RawFd) -> i32 {
    boundary(|| {
        // SAFETY: the caller passes an open descriptor, borrowed for this call only.
        let l = unsafe { sys::borrow(listener)? };
        Ok(match stream_out::accept(l)? {
            Some(fd) => fd.into_raw_fd() as i64,
            None => -(libc::EAGAIN as i64),
        })
    }) as i32
}

/// Writes what the descriptor takes now of `data`: the bytes written, 0 when it is full (wait
/// for it to be writable). A closed connection or an unplugged device is an error.
///
/// # Safety
/// `data` `len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn gsw_stream_out_write(fd: RawFd, data: *const u8, len: u32) -> i32 {
    boundary(|| {
        // SAFETY: per this function's contract; the descriptor is borrowed for this call.
        let (fd, data) = unsafe { (sys::borrow(fd)?, bytes(data, len as usize)?) };
        Ok(stream_out::write(fd, data)? as i64)
    }) as i32
}

#[cfg(all(test, not(loom)))]
#[path = "stream_tests.rs"]
mod tests;
