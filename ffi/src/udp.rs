//! Batch datagram I/O: UDP sockets for telemetry (bind address, multicast group, large receive
//! buffer, kernel receive timestamps), `recvmmsg` into a caller buffer with per-datagram
//! metadata, and `sendmmsg` for senders (simulator, replay, benchmarks). Oversize datagrams are
//! reported with their true length, never silently cut.

use crate::error::{Error, Result};
use crate::sock;
use crate::sys;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

/// Bytes of metadata written per received datagram:
/// `len u32` (bytes stored), `orig_len u32` (true datagram length), `timestamp_ns u64`
/// (kernel receive time, CLOCK_REALTIME), `src_ip [u8; 4]` (network order), `src_port u16`,
/// `flags u16` ([`FLAG_TRUNCATED`]), `drops u32` (the socket's count of datagrams the kernel
/// dropped for want of buffer space, as of this datagram: `SO_RXQ_OVFL`; 0 until the first
/// drop), `reserved u32`.
pub const META_LEN: usize = 32;
/// The datagram was longer than its slot: `len` bytes were kept, `orig_len` is the real size.
pub const FLAG_TRUNCATED: u16 = 1;
/// Most datagrams one call receives or sends.
pub const MAX_BATCH: usize = 1024;

/// Opens a non-blocking IPv4 UDP socket bound to `bind:port`, with SO_TIMESTAMPNS and
/// SO_RXQ_OVFL on and the receive buffer raised to `rcvbuf` bytes (as far as the system
/// allows; read back what was granted with [`receive_buffer`]).
///
/// With a `multicast` group, the socket is bound to `group:port` (so it takes that group's
/// datagrams, not unicast ones meant for another socket on the port) and joins the group on the
/// interface whose address is `bind` (0.0.0.0: the one the routing table picks).
pub fn open(bind: &str, port: u16, multicast: Option<&str>, rcvbuf: u32) -> Result<OwnedFd> {
    let bind_ip: Ipv4Addr = bind.parse().map_err(|_| {
        Error::arg(format!(
            "bind address \"{bind}\" is not an IPv4 address like 0.0.0.0 or 127.0.0.1"
        ))
    })?;
    // SAFETY: plain syscall with constant arguments.
    let fd = sys::own(
        unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        },
        "socket(AF_INET, SOCK_DGRAM) failed",
    )?;
    let one: libc::c_int = 1;
    for (opt, what) in [
        (libc::SO_TIMESTAMPNS, "SO_TIMESTAMPNS"),
        (libc::SO_RXQ_OVFL, "SO_RXQ_OVFL"),
    ] {
        setsockopt(fd.as_fd(), libc::SOL_SOCKET, opt, &one, what)?;
    }
    if rcvbuf > 0 {
        // Best effort: a smaller buffer still works, it only drops sooner under bursts.
        let _ = sock::set_buffer(fd.as_fd(), rcvbuf, false);
    }
    let group_ip = match multicast {
        None => None,
        Some(group) => {
            let ip: Ipv4Addr = group.parse().map_err(|_| {
                Error::arg(format!(
                    "multicast group \"{group}\" is not an IPv4 address"
                ))
            })?;
            if !ip.is_multicast() {
                return Err(Error::arg(format!(
                    "{ip} is not a multicast group (224.0.0.0 to 239.255.255.255)"
                )));
            }
            Some(ip)
        }
    };
    // SO_REUSEADDR only for a group, which several receivers may share. On a unicast port it
    // would let a second decom bind too, and the kernel would hand each datagram to just one
    // of them: the port is refused (EADDRINUSE) instead.
    if group_ip.is_some() {
        setsockopt(
            fd.as_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            &one,
            "SO_REUSEADDR",
        )?;
    }
    let addr = sockaddr(group_ip.unwrap_or(bind_ip), port);
    // SAFETY: `addr` is a valid sockaddr_in; `fd` is valid for this call.
    let ret = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            &addr as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        let err = std::io::Error::last_os_error();
        let hint = match err.raw_os_error() {
            Some(libc::EADDRINUSE) => {
                "; another process (another decom?) already receives on this port"
            }
            Some(libc::EADDRNOTAVAIL) => "; no network interface has this address",
            Some(libc::EACCES) => "; ports below 1024 need privileges",
            _ => "",
        };
        let at = group_ip.unwrap_or(bind_ip);
        let mut e = Error::from_io(&format!("cannot receive UDP on {at}:{port}"), err);
        e.message.push_str(hint);
        return Err(e);
    }
    if let Some(group_ip) = group_ip {
        let mreq = libc::ip_mreq {
            imr_multiaddr: libc::in_addr {
                s_addr: u32::from(group_ip).to_be(),
            },
            // The interface with the `bind` address; INADDR_ANY lets the routing table choose.
            imr_interface: libc::in_addr {
                s_addr: u32::from(bind_ip).to_be(),
            },
        };
        setsockopt(
            fd.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_ADD_MEMBERSHIP,
            &mreq,
            &format!("IP_ADD_MEMBERSHIP {group_ip} on the interface of {bind_ip}"),
        )?;
    }
    Ok(fd)
}

/// Opens a non-blocking UDP socket for sending (bound to an ephemeral port).
pub fn open_sender() -> Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments.
    let ret = unsafe {
        libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    let fd = sys::own(ret, "socket(AF_INET, SOCK_DGRAM) failed")?;
    let _ = sock::set_buffer(fd.as_fd(), 4 << 20, true);
    Ok(fd)
}

/// The receive buffer the kernel granted a socket, in bytes (Linux reports twice what it
/// accounts as usable: this is its figure halved, the payload room asked for).
pub fn receive_buffer(fd: BorrowedFd<'_>) -> Result<u32> {
    // SAFETY: SO_RCVBUF writes an int.
    let v: libc::c_int =
        unsafe { sock::getsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, "SO_RCVBUF")? };
    Ok((v.max(0) as u32) / 2)
}

fn setsockopt<T>(
    fd: BorrowedFd<'_>,
    level: libc::c_int,
    opt: libc::c_int,
    value: &T,
    what: &str,
) -> Result<()> {
    // SAFETY: `value` is a valid T of the declared size; `fd` is valid for this call.
    let ret = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    sys::check(ret, &format!("setsockopt({what}) failed"))?;
    Ok(())
}

fn sockaddr(ip: Ipv4Addr, port: u16) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(ip).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// The local port a socket is bound to.
pub fn local_port(fd: BorrowedFd<'_>) -> Result<u16> {
    // SAFETY: an all-zero sockaddr_in is a valid value of this plain C struct.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: `addr` has room for `len` bytes; `fd` is valid for this call.
    let ret = unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr,
            &mut len,
        )
    };
    sys::check(ret, "getsockname failed")?;
    Ok(u16::from_be(addr.sin_port))
}

/// Reusable scratch space for `recvmmsg`/`sendmmsg`, so a batch costs no allocation.
pub struct Batch {
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
    /// One control buffer per message, room for an SCM_TIMESTAMPNS timespec.
    cmsgs: Vec<[u64; 8]>,
}

impl Batch {
    pub fn new(max: usize) -> Result<Batch> {
        if max == 0 || max > MAX_BATCH {
            return Err(Error::arg(format!(
                "a batch holds 1 to {MAX_BATCH} datagrams, not {max}"
            )));
        }
        Ok(Batch {
            // SAFETY: all-zero mmsghdr/iovec/sockaddr_in are valid plain C values.
            msgs: (0..max).map(|_| unsafe { std::mem::zeroed() }).collect(),
            // SAFETY: as above.
            iovs: (0..max).map(|_| unsafe { std::mem::zeroed() }).collect(),
            // SAFETY: as above.
            addrs: (0..max).map(|_| unsafe { std::mem::zeroed() }).collect(),
            cmsgs: vec![[0u64; 8]; max],
        })
    }

    pub fn max(&self) -> usize {
        self.msgs.len()
    }

    /// Receives up to `min(max, buf.len() / slot, meta.len() / META_LEN)` datagrams without
    /// blocking; datagram `i` lands at `buf[i * slot..]` with its metadata at
    /// `meta[i * META_LEN..]`. Returns how many arrived (0 when none was waiting).
    pub fn recv(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &mut [u8],
        slot: usize,
        meta: &mut [u8],
    ) -> Result<usize> {
        if slot == 0 {
            return Err(Error::arg("slot size must be at least 1 byte"));
        }
        let n = self
            .msgs
            .len()
            .min(buf.len() / slot)
            .min(meta.len() / META_LEN);
        if n == 0 {
            return Err(Error::arg(
                "receive buffer too small for one slot or one metadata record",
            ));
        }
        let base = buf.as_mut_ptr();
        for i in 0..n {
            self.iovs[i] = libc::iovec {
                // SAFETY: i * slot + slot <= buf.len(), so this stays inside `buf`.
                iov_base: unsafe { base.add(i * slot) } as *mut libc::c_void,
                iov_len: slot,
            };
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.cmsgs[i].as_mut_ptr() as *mut libc::c_void;
            hdr.msg_controllen = std::mem::size_of::<[u64; 8]>() as _;
            hdr.msg_flags = 0;
            self.msgs[i].msg_len = 0;
        }
        // MSG_TRUNC makes each msg_len the datagram's real length even when it did not fit.
        // SAFETY: every header points at buffers owned by `self` or `buf`, all outliving the
        // call; `n` headers are initialised.
        let got = unsafe {
            libc::recvmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let err = std::io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(Error::from_io("recvmmsg failed", err)),
            };
        }
        let got = got as usize;
        let fallback_ts = sys::realtime_ns();
        for i in 0..got {
            let m = &self.msgs[i];
            let orig = m.msg_len as usize;
            let truncated = orig > slot || m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            let stored = orig.min(slot);
            let (ts, drops) = control_info(&m.msg_hdr);
            let ts = ts.unwrap_or(fallback_ts);
            let addr = &self.addrs[i];
            let from_inet = m.msg_hdr.msg_namelen as usize
                >= std::mem::size_of::<libc::sockaddr_in>()
                && addr.sin_family == libc::AF_INET as libc::sa_family_t;
            let (ip, port) = if from_inet {
                (
                    addr.sin_addr.s_addr.to_ne_bytes(),
                    u16::from_be(addr.sin_port),
                )
            } else {
                ([0; 4], 0)
            };
            let rec = &mut meta[i * META_LEN..(i + 1) * META_LEN];
            rec[0..4].copy_from_slice(&(stored as u32).to_le_bytes());
            rec[4..8].copy_from_slice(&(orig as u32).to_le_bytes());
            rec[8..16].copy_from_slice(&ts.to_le_bytes());
            rec[16..20].copy_from_slice(&ip);
            rec[20..22].copy_from_slice(&port.to_le_bytes());
            let flags = if truncated { FLAG_TRUNCATED } else { 0 };
            rec[22..24].copy_from_slice(&flags.to_le_bytes());
            rec[24..28].copy_from_slice(&drops.to_le_bytes());
            rec[28..32].fill(0);
        }
        Ok(got)
    }

    /// Sends `lens.len()` datagrams laid out back to back in `buf` to `ip:port` (or, when
    /// `ports` is given, datagram `i` to `ip:ports[i]`) without blocking. Returns how many the
    /// kernel took; fewer than asked means the socket buffer is full.
    pub fn send(
        &mut self,
        fd: BorrowedFd<'_>,
        buf: &[u8],
        lens: &[u32],
        ip: Ipv4Addr,
        port: u16,
        ports: Option<&[u16]>,
    ) -> Result<usize> {
        let n = lens.len().min(self.msgs.len());
        if let Some(p) = ports {
            if p.len() < n {
                return Err(Error::arg("fewer ports than datagrams"));
            }
        }
        let mut at = 0usize;
        for i in 0..n {
            let len = lens[i] as usize;
            if at + len > buf.len() {
                return Err(Error::arg(format!(
                    "datagram {i} ({len} bytes at {at}) runs past the {}-byte buffer",
                    buf.len()
                )));
            }
            self.iovs[i] = libc::iovec {
                // SAFETY: at + len <= buf.len(): inside `buf`. sendmmsg only reads it.
                iov_base: unsafe { buf.as_ptr().add(at) } as *mut libc::c_void,
                iov_len: len,
            };
            at += len;
            self.addrs[i] = sockaddr(ip, ports.map_or(port, |p| p[i]));
            let hdr = &mut self.msgs[i].msg_hdr;
            hdr.msg_name = &mut self.addrs[i] as *mut libc::sockaddr_in as *mut libc::c_void;
            hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            hdr.msg_iov = &mut self.iovs[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = std::ptr::null_mut();
            hdr.msg_controllen = 0;
            hdr.msg_flags = 0;
        }
        // SAFETY: `n` headers point at buffers that outlive the call.
        let sent = unsafe {
            libc::sendmmsg(
                fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            let err = std::io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS) => Ok(0),
                _ => Err(Error::from_io("sendmmsg failed", err)),
            };
        }
        Ok(sent as usize)
    }
}

/// The SCM_TIMESTAMPNS receive time in a received message's control data, if present.
/// The kernel receive time (SCM_TIMESTAMPNS) and the socket's drop count (SO_RXQ_OVFL, sent
/// only once it is non-zero) from a received message's control data.
fn control_info(hdr: &libc::msghdr) -> (Option<u64>, u32) {
    let (mut ts, mut drops) = (None, 0);
    // SAFETY: the kernel wrote well-formed control headers up to msg_controllen into the
    // buffer msg_control points at; CMSG_* stay inside it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET {
                let data = libc::CMSG_DATA(cmsg);
                match (*cmsg).cmsg_type {
                    libc::SCM_TIMESTAMPNS => {
                        let t = (data as *const libc::timespec).read_unaligned();
                        ts = Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64);
                    }
                    libc::SO_RXQ_OVFL => drops = (data as *const u32).read_unaligned(),
                    _ => {}
                }
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
    }
    (ts, drops)
}

/// Reads a received datagram's metadata record (for Rust callers and tests).
pub fn meta_of(meta: &[u8], i: usize) -> (u32, u32, u64, u16) {
    let rec = &meta[i * META_LEN..(i + 1) * META_LEN];
    let u32_at = |o: usize| u32::from_le_bytes(rec[o..o + 4].try_into().unwrap());
    (
        u32_at(0),
        u32_at(4),
        u64::from_le_bytes(rec[8..16].try_into().unwrap()),
        u16::from_le_bytes(rec[22..24].try_into().unwrap()),
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn batch_roundtrip_with_truncation_flag() {
        let rx = open("127.0.0.1", 0, None, 1 << 20).unwrap();
        let port = local_port(rx.as_fd()).unwrap();
        let tx = open_sender().unwrap();
        let mut batch = Batch::new(8).unwrap();
        let mut out = vec![0u8; 3 + 200];
        out[..3].copy_from_slice(b"abc");
        batch
            .send(tx.as_fd(), &out, &[3, 200], Ipv4Addr::LOCALHOST, port, None)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut buf = vec![0u8; 8 * 64];
        let mut meta = vec![0u8; 8 * META_LEN];
        let n = batch.recv(rx.as_fd(), &mut buf, 64, &mut meta).unwrap();
        assert_eq!(n, 2);
        let (len0, orig0, ts0, flags0) = meta_of(&meta, 0);
        assert_eq!((len0, orig0, flags0), (3, 3, 0));
        assert_eq!(&buf[..3], b"abc");
        assert!(
            ts0 > 1_600_000_000_000_000_000,
            "kernel timestamp looks wrong: {ts0}"
        );
        let (len1, orig1, _, flags1) = meta_of(&meta, 1);
        assert_eq!((len1, orig1, flags1), (64, 200, FLAG_TRUNCATED));
        assert_eq!(batch.recv(rx.as_fd(), &mut buf, 64, &mut meta).unwrap(), 0);
    }

    #[test]
    fn kernel_drops_are_reported_with_the_datagrams_after_them() {
        // The smallest receive buffer the kernel allows, flooded while nobody reads.
        let rx = open("127.0.0.1", 0, None, 1).unwrap();
        let port = local_port(rx.as_fd()).unwrap();
        let granted = receive_buffer(rx.as_fd()).unwrap();
        assert!(granted > 0 && granted < 1 << 16, "granted {granted}");
        let tx = open_sender().unwrap();
        let mut batch = Batch::new(64).unwrap();
        let out = vec![7u8; 64 * 512];
        let mut sent = 0;
        for _ in 0..20 {
            sent += batch
                .send(
                    tx.as_fd(),
                    &out,
                    &[512; 64],
                    Ipv4Addr::LOCALHOST,
                    port,
                    None,
                )
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut buf = vec![0u8; 64 * 512];
        let mut meta = vec![0u8; 64 * META_LEN];
        let (mut received, mut drops) = (0usize, 0u32);
        loop {
            let n = batch.recv(rx.as_fd(), &mut buf, 512, &mut meta).unwrap();
            if n == 0 {
                break;
            }
            received += n;
            for i in 0..n {
                let d = u32::from_le_bytes(
                    meta[i * META_LEN + 24..i * META_LEN + 28]
                        .try_into()
                        .unwrap(),
                );
                assert!(d >= drops, "the drop count never goes back");
                drops = d;
            }
        }
        assert!(
            received > 0 && received < sent,
            "received {received} of {sent}"
        );
        // A datagram carries the count as of its own arrival: those queued before the flood
        // overflowed say 0. The next one to arrive carries every drop: with what was received,
        // that is every datagram sent.
        batch
            .send(tx.as_fd(), &out[..8], &[8], Ipv4Addr::LOCALHOST, port, None)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        assert_eq!(batch.recv(rx.as_fd(), &mut buf, 512, &mut meta).unwrap(), 1);
        let d = u32::from_le_bytes(meta[24..28].try_into().unwrap());
        assert!(d >= drops);
        assert_eq!(
            received + d as usize,
            sent,
            "received {received}, dropped {d}"
        );
    }

    #[test]
    fn a_unicast_port_is_not_shared() {
        let a = open("127.0.0.1", 0, None, 0).unwrap();
        let port = local_port(a.as_fd()).unwrap();
        for bind in ["127.0.0.1", "0.0.0.0"] {
            let err = open(bind, port, None, 0).unwrap_err();
            assert_eq!(err.code, libc::EADDRINUSE, "{bind}: {}", err.message);
            assert!(
                err.message.contains("already receives on this port"),
                "{}",
                err.message
            );
        }
    }
}
