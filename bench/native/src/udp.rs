//! The floor for UDP ingest: a batch `sendmmsg` sender and a batch `recvmmsg` receiver that
//! count loss, reordering and duplicates exactly from a sequence number in every datagram.
//!
//! Datagram layout (little-endian): sequence number u64 (0, 1, 2 … per sender run) | magic
//! u32 `"GSWU"` | sender tag u32 (its pid) | filler bytes `i as u8 ^ 0x5a`, checked by the
//! receiver. Datagrams with another magic are counted as foreign and otherwise ignored; the
//! receiver follows the tag of the first valid datagram it sees.

use crate::clock::{now_ns, Deadline};
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Magic number in bytes 8..12 of every datagram.
pub const MAGIC: u32 = u32::from_le_bytes(*b"GSWU");
/// Smallest datagram that carries the header.
pub const MIN_DATAGRAM: usize = 16;
/// Largest sequence number the receiver tracks (its bitmap would otherwise grow without bound).
pub const MAX_TRACKED_SEQ: u64 = 1 << 34;

/// Fills a whole datagram buffer: header for `seq`/`tag` plus the filler pattern.
pub fn fill_datagram(buf: &mut [u8], seq: u64, tag: u32) {
    for (i, b) in buf.iter_mut().enumerate().skip(MIN_DATAGRAM) {
        *b = i as u8 ^ 0x5a;
    }
    set_header(buf, seq, tag);
}

/// Rewrites only the header (the filler does not depend on the sequence number).
#[inline]
pub fn set_header(buf: &mut [u8], seq: u64, tag: u32) {
    buf[..8].copy_from_slice(&seq.to_le_bytes());
    buf[8..12].copy_from_slice(&MAGIC.to_le_bytes());
    buf[12..16].copy_from_slice(&tag.to_le_bytes());
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: socket has no memory arguments.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn setsockopt_int(fd: &OwnedFd, level: i32, opt: i32, v: i32) -> io::Result<()> {
    // SAFETY: `v` is a readable c_int and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&v as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn getsockopt_int(fd: &OwnedFd, level: i32, opt: i32) -> io::Result<i32> {
    let mut v: i32 = 0;
    let mut len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: `v`/`len` are writable and `len` holds the size of `v`.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            level,
            opt,
            (&mut v as *mut i32).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(v)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Parameters of [`send`].
#[derive(Clone, Debug)]
pub struct SendOptions {
    /// Destination.
    pub addr: SocketAddrV4,
    /// Datagrams to send.
    pub count: u64,
    /// Bytes per datagram (at least [`MIN_DATAGRAM`]).
    pub size: usize,
    /// Datagrams per second; 0 = as fast as possible.
    pub rate: u64,
    /// Datagrams per `sendmmsg` call.
    pub batch: usize,
    /// Stop after this long even if `count` was not reached.
    pub max_duration: Option<Duration>,
}

/// What [`send`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SendStats {
    /// Datagrams the kernel accepted (sequence numbers `0..sent`).
    pub sent: u64,
    /// `sendmmsg` calls made.
    pub calls: u64,
    /// Calls that failed (e.g. `ECONNREFUSED` while nobody listened); their datagrams were
    /// retried with the same sequence numbers.
    pub errors: u64,
    /// `CLOCK_MONOTONIC` when sending started and ended, ns.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// The tag written into every datagram (this process's pid).
    pub tag: u32,
}

impl SendStats {
    /// Datagrams per second over the sending time.
    pub fn rate(&self) -> f64 {
        self.sent as f64 * 1e9 / (self.end_ns.saturating_sub(self.start_ns)).max(1) as f64
    }
}

/// Sends `count` sequence-numbered datagrams to `addr` with `sendmmsg`, in batches, flat out
/// or paced to `rate`.
pub fn send(o: &SendOptions) -> io::Result<SendStats> {
    if o.size < MIN_DATAGRAM || o.size > 65507 {
        return Err(io::Error::other(format!(
            "datagram size must be {MIN_DATAGRAM}..=65507 bytes"
        )));
    }
    let batch = o.batch.clamp(1, 1024);
    let fd = socket()?;
    let sa = sockaddr(o.addr);
    // SAFETY: `sa` is a valid sockaddr_in and its size is passed.
    if unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getpid has no preconditions.
    let tag = unsafe { libc::getpid() } as u32;
    let mut bufs = vec![0u8; batch * o.size];
    for (i, chunk) in bufs.chunks_mut(o.size).enumerate() {
        fill_datagram(chunk, i as u64, tag);
    }
    let mut iovs: Vec<libc::iovec> = bufs
        .chunks_mut(o.size)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: c.len(),
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths); we set the iovec below.
    let mut msgs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }

    let mut st = SendStats {
        tag,
        start_ns: now_ns(),
        ..SendStats::default()
    };
    let stop_at = o.max_duration.map(Deadline::after);
    let mut consecutive_errors = 0u32;
    while st.sent < o.count {
        let mut n = (o.count - st.sent).min(batch as u64) as usize;
        if o.rate > 0 {
            // Pace: datagram k is due at start + k / rate.
            let elapsed = now_ns() - st.start_ns;
            let due = (u128::from(elapsed) * u128::from(o.rate) / 1_000_000_000) as u64 + 1;
            if due <= st.sent {
                let next_ns = st.start_ns
                    + ((u128::from(st.sent) * 1_000_000_000) / u128::from(o.rate)) as u64;
                let wait = next_ns.saturating_sub(now_ns());
                if wait > 100_000 {
                    std::thread::sleep(Duration::from_nanos(wait - 50_000));
                } else {
                    std::hint::spin_loop();
                }
                if stop_at.is_some_and(|d| d.expired()) {
                    break;
                }
                continue;
            }
            n = n.min((due - st.sent) as usize);
        }
        for (i, chunk) in bufs.chunks_mut(o.size).take(n).enumerate() {
            set_header(chunk, st.sent + i as u64, tag);
        }
        // SAFETY: `msgs[..n]` point at iovecs that point into `bufs`, all alive and unmoved.
        let rc = unsafe { libc::sendmmsg(fd.as_raw_fd(), msgs.as_mut_ptr(), n as u32, 0) };
        st.calls += 1;
        if rc < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ECONNREFUSED | libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => {
                    st.errors += 1;
                    consecutive_errors += 1;
                    if consecutive_errors > 10_000 {
                        return Err(io::Error::other(format!(
                            "sendmmsg to {} keeps failing: {e} (is anything listening?)",
                            o.addr
                        )));
                    }
                    std::thread::yield_now();
                }
                _ => return Err(e),
            }
        } else {
            consecutive_errors = 0;
            st.sent += rc as u64;
        }
        if st.calls % 64 == 0 && stop_at.is_some_and(|d| d.expired()) {
            break;
        }
    }
    st.end_ns = now_ns();
    Ok(st)
}

/// Exact accounting of received sequence numbers.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    seen: Vec<u64>,
    tag: Option<u32>,
    /// Valid datagrams received, duplicates included.
    pub received: u64,
    /// Distinct sequence numbers received.
    pub distinct: u64,
    /// Datagrams whose sequence number had been seen already.
    pub duplicates: u64,
    /// Datagrams that arrived after one with a higher sequence number.
    pub reordered: u64,
    /// Datagrams with our magic but a wrong filler, length or tag.
    pub corrupt: u64,
    /// Datagrams without our magic (other traffic on the port).
    pub foreign: u64,
    /// Bytes of valid datagrams.
    pub bytes: u64,
    /// Highest sequence number seen.
    pub highest: Option<u64>,
    /// Receive calls that returned data (datagrams / batches = mean batch filled).
    pub batches: u64,
    /// When the first and the latest batch with data arrived, ns (`CLOCK_MONOTONIC`).
    pub first_ns: u64,
    /// See `first_ns`.
    pub last_ns: u64,
}

impl SeqTracker {
    /// Accounts for one datagram (`truncated` when the kernel cut it to fit the buffer).
    pub fn record(&mut self, d: &[u8], truncated: bool) {
        if d.len() < MIN_DATAGRAM
            || u32::from_le_bytes(d[8..12].try_into().expect("4 bytes")) != MAGIC
        {
            self.foreign += 1;
            return;
        }
        let seq = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
        let tag = u32::from_le_bytes(d[12..16].try_into().expect("4 bytes"));
        let intact = !truncated
            && seq < MAX_TRACKED_SEQ
            && *self.tag.get_or_insert(tag) == tag
            && d.iter()
                .enumerate()
                .skip(MIN_DATAGRAM)
                .all(|(i, &b)| b == i as u8 ^ 0x5a);
        if !intact {
            self.corrupt += 1;
            return;
        }
        self.received += 1;
        self.bytes += d.len() as u64;
        let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if w >= self.seen.len() {
            self.seen.resize((w + 1).next_power_of_two(), 0);
        }
        if self.seen[w] & bit != 0 {
            self.duplicates += 1;
            return;
        }
        self.seen[w] |= bit;
        self.distinct += 1;
        match self.highest {
            Some(h) if seq < h => self.reordered += 1,
            _ => self.highest = Some(seq),
        }
    }

    /// Datagrams lost out of `expected` sent (sequence numbers `0..expected`).
    pub fn lost_of(&self, expected: u64) -> u64 {
        expected.saturating_sub(self.distinct)
    }

    /// Datagrams missing below the highest sequence number seen (when the count sent is unknown).
    pub fn lost_inferred(&self) -> u64 {
        self.highest
            .map_or(0, |h| (h + 1).saturating_sub(self.distinct))
    }

    /// Distinct datagrams per second between the first and the latest batch.
    pub fn rate(&self) -> f64 {
        let span = self.last_ns.saturating_sub(self.first_ns);
        if span == 0 {
            return 0.0;
        }
        self.distinct as f64 * 1e9 / span as f64
    }
}

/// Parameters of [`Receiver::bind`].
#[derive(Clone, Debug)]
pub struct RecvOptions {
    /// Address to bind (port 0 = any free port; see [`Receiver::port`]).
    pub bind: SocketAddrV4,
    /// Datagrams per `recvmmsg` call.
    pub batch: usize,
    /// Requested `SO_RCVBUF` in bytes (`SO_RCVBUFFORCE` is tried first, as it is not capped
    /// by `net.core.rmem_max` when allowed).
    pub rcvbuf: usize,
    /// Largest datagram accepted whole; longer ones count as corrupt.
    pub max_size: usize,
    /// After a call that did not fill the batch, sleep this long before the next one, so
    /// datagrams accumulate and the sender is not made to wake the receiver for every few
    /// (user-space interrupt coalescing; adds up to this much latency). Zero = always block
    /// in `recvmmsg` and be woken by the kernel.
    pub coalesce: Duration,
}

/// A bound UDP socket receiving with `recvmmsg`.
pub struct Receiver {
    fd: OwnedFd,
    port: u16,
    rcvbuf: usize,
    batch: usize,
    max_size: usize,
    coalesce: Duration,
    bufs: Vec<u8>,
    // Point into `bufs` (heap storage: moving `Receiver` does not move them).
    _iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

impl Receiver {
    /// Binds the socket, sizes its receive buffer and sets a 20 ms receive timeout (so
    /// [`Receiver::run`] can check its stop condition while no data arrives).
    pub fn bind(o: &RecvOptions) -> io::Result<Self> {
        let fd = socket()?;
        let want = i32::try_from(o.rcvbuf).unwrap_or(i32::MAX);
        if setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_err() {
            setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF, want)?;
        }
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 20_000,
        };
        // SAFETY: `tv` is a readable timeval and its size is passed.
        if unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let sa = sockaddr(o.bind);
        // SAFETY: `sa` is a valid sockaddr_in and its size is passed.
        if unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
            )
        } != 0
        {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("bind {}: {e}", o.bind)));
        }
        // SAFETY: all-zero is a valid sockaddr_in for getsockname to overwrite.
        let mut got: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `got`/`len` are writable and `len` holds the size of `got`.
        if unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&mut got as *mut libc::sockaddr_in).cast(),
                &mut len,
            )
        } != 0
        {
            return Err(io::Error::last_os_error());
        }
        let rcvbuf = getsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_RCVBUF)? as usize;
        let batch = o.batch.clamp(1, 1024);
        let max_size = o.max_size.max(MIN_DATAGRAM);
        let mut bufs = vec![0u8; batch * max_size];
        let mut iovs: Vec<libc::iovec> = bufs
            .chunks_mut(max_size)
            .map(|c| libc::iovec {
                iov_base: c.as_mut_ptr().cast(),
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: all-zero is a valid mmsghdr (null pointers, zero lengths); we set the iovec below.
        let mut msgs: Vec<libc::mmsghdr> =
            (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
        for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
            m.msg_hdr.msg_iov = iov;
            m.msg_hdr.msg_iovlen = 1;
        }
        Ok(Self {
            fd,
            port: u16::from_be(got.sin_port),
            rcvbuf,
            batch,
            max_size,
            coalesce: o.coalesce,
            bufs,
            _iovs: iovs,
            msgs,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The receive buffer the kernel granted (it reports twice the usable size).
    pub fn rcvbuf(&self) -> usize {
        self.rcvbuf
    }

    /// One `recvmmsg` call (waits up to the 20 ms receive timeout for the first datagram,
    /// then takes whatever else is queued, up to the batch size); accounts for every datagram
    /// in `t` and returns how many arrived.
    pub fn recv_batch(&mut self, t: &mut SeqTracker) -> io::Result<usize> {
        let size = self.max_size;
        // SAFETY: `self.msgs` point at `self.iovs`, which point into `self.bufs`; all three are
        // heap buffers owned by `self`, never resized, so the pointers are valid for the call.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                self.batch as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let n = rc as usize;
        if n > 0 {
            t.batches += 1;
            let now = now_ns();
            if t.first_ns == 0 {
                t.first_ns = now;
            }
            t.last_ns = now;
        }
        for (m, chunk) in self.msgs.iter().zip(self.bufs.chunks(size)).take(n) {
            let len = (m.msg_len as usize).min(size);
            t.record(&chunk[..len], m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0);
        }
        Ok(n)
    }

    /// Receives until `stop(tracker, idle_ns)` returns true (checked after every call, at
    /// least every 20 ms); `idle_ns` is the time since the last datagram (or since the start).
    pub fn run(
        &mut self,
        mut stop: impl FnMut(&SeqTracker, u64) -> bool,
    ) -> io::Result<SeqTracker> {
        let mut t = SeqTracker::default();
        let start = now_ns();
        loop {
            let n = self.recv_batch(&mut t)?;
            if n > 0 && n < self.batch && !self.coalesce.is_zero() {
                std::thread::sleep(self.coalesce);
            }
            let since = if t.last_ns == 0 { start } else { t.last_ns };
            if stop(&t, now_ns().saturating_sub(since)) {
                return Ok(t);
            }
        }
    }
}

/// The kernel's system-wide UDP counters (`/proc/net/snmp`), e.g. `RcvbufErrors`.
pub fn kernel_udp_counters() -> Vec<(String, u64)> {
    let text = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut lines = text.lines().filter(|l| l.starts_with("Udp:"));
    match (lines.next(), lines.next()) {
        (Some(names), Some(values)) => names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
            .filter_map(|(n, v)| Some((n.to_string(), v.parse().ok()?)))
            .collect(),
        _ => Vec::new(),
    }
}

/// The loopback address with `port`.
pub fn loopback(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_loss_reorder_dups() {
        let mut t = SeqTracker::default();
        let mut d = vec![0u8; 64];
        for s in [0u64, 1, 3, 2, 3, 6] {
            fill_datagram(&mut d, s, 9);
            t.record(&d, false);
        }
        d[40] ^= 1;
        t.record(&d, false);
        t.record(b"hello", false);
        assert_eq!(
            (t.received, t.distinct, t.duplicates, t.reordered),
            (6, 5, 1, 1)
        );
        assert_eq!((t.corrupt, t.foreign), (1, 1));
        assert_eq!(t.lost_of(7), 2);
        assert_eq!(t.lost_inferred(), 2);
    }

    #[test]
    fn loopback_send_receive() {
        let mut rx = Receiver::bind(&RecvOptions {
            bind: loopback(0),
            batch: 64,
            rcvbuf: 1 << 22,
            max_size: 2048,
            coalesce: Duration::ZERO,
        })
        .unwrap();
        let st = send(&SendOptions {
            addr: loopback(rx.port()),
            count: 1000,
            size: 64,
            rate: 0,
            batch: 64,
            max_duration: None,
        })
        .unwrap();
        assert_eq!(st.sent, 1000);
        let t = rx
            .run(|t, idle| t.distinct >= 1000 || idle > 500_000_000)
            .unwrap();
        assert_eq!((t.distinct, t.corrupt, t.duplicates), (1000, 0, 0));
    }
}
