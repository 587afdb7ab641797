//! The C ABI of UDP sockets and batch receive/send (`crate::udp`). Conventions as in the
//! parent module.

use super::*;

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
