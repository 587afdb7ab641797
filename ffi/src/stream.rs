//! Byte-stream sources: a serial device (a USB radio), a TCP connection gsw makes (a radio
//! modem, a simulator), or TCP connections gsw accepts (one or more senders). Each stream is
//! cut into packets by its [`Framing`](crate::framing::Framing); packets and rejected bytes are
//! delivered in the UDP batch format (`udp::META_LEN` metadata each), with the source's port
//! as destination, so decom identifies, publishes and logs them as it does datagrams.
//!
//! Nothing here blocks. One epoll descriptor ([`StreamSource::fd`]) holds every socket or
//! device: decom's waitset watches it, and decom calls [`StreamSource::service`] when it is
//! readable or a timer is due. A device that disappears (unplugged: EIO, hang-up) or a
//! connection that ends is said once, and reopened with backoff until it is back.

use crate::error::{Error, Result};
use crate::framing::{Deframer, Framing, Piece, Reject};
use crate::sys;
use crate::udp::META_LEN;
use std::collections::VecDeque;
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// META flag: bytes that are no packet (garbage, a cut packet, a broken COBS/SLIP frame).
pub const FLAG_UNFRAMED: u16 = 1 << 10;
/// META flag: a COBS/SLIP frame whose CRC failed.
pub const FLAG_BAD_CRC: u16 = 1 << 9;
const MIN_BACKOFF_MS: u64 = 250;
const MAX_BACKOFF_MS: u64 = 5_000;
/// A stream quiet this long gives up the packet it holds half-received (as rejected bytes).
const IDLE_FLUSH_MS: u64 = 1_000;
/// Bytes read from one stream per service call at most, so no stream starves the others.
const READ_BUDGET: usize = 1 << 20;
/// Packets waiting for decom at most; beyond, reading pauses (the kernel buffers meanwhile).
const MAX_INBOX: usize = 65_536;
const MAX_CONNECTIONS: usize = 64;
const LISTENER: u64 = u64::MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Serial {
        path: String,
        baud: u32,
        data_bits: u8,
        parity: Parity,
        stop_bits: u8,
        rtscts: bool,
        xonxoff: bool,
    },
    Connect {
        host: String,
        port: u16,
    },
    Listen {
        host: String,
        port: u16,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Open streams: the device or connection (0 or 1), or the accepted senders.
    pub connected: u64,
    pub packets: u64,
    pub rejected: u64,
    pub bytes: u64,
    /// Streams opened or accepted.
    pub opens: u64,
}

struct Conn {
    id: u64,
    fd: OwnedFd,
    deframer: Deframer,
    peer: ([u8; 4], u16),
    last_rx_ms: u64,
    /// A TCP connect still in progress.
    connecting: bool,
}

struct Item {
    bytes: Vec<u8>,
    flags: u16,
    ts: u64,
    peer: ([u8; 4], u16),
}

pub struct StreamSource {
    endpoint: Endpoint,
    framing: Framing,
    port: u16,
    epoll: OwnedFd,
    listener: Option<OwnedFd>,
    conns: Vec<Conn>,
    next_id: u64,
    inbox: VecDeque<Item>,
    events: VecDeque<String>,
    stats: StreamStats,
    retry_at: u64,
    backoff_ms: u64,
    last_failure: Option<String>,
    buf: Vec<u8>,
}

impl StreamSource {
    /// A source delivering with destination `port`. A listening source binds now (an address
    /// in use is an error); the others open on the first service call.
    pub fn new(endpoint: Endpoint, framing: Framing, port: u16) -> Result<StreamSource> {
        // SAFETY: plain syscall.
        let epoll = sys::own(
            unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) },
            "epoll_create1",
        )?;
        let mut s = StreamSource {
            endpoint,
            framing,
            port,
            epoll,
            listener: None,
            conns: Vec::new(),
            next_id: 1,
            inbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: StreamStats::default(),
            retry_at: 0,
            backoff_ms: MIN_BACKOFF_MS,
            last_failure: None,
            buf: vec![0u8; 64 * 1024],
        };
        if let Endpoint::Listen { host, port } = &s.endpoint {
            let l = std::net::TcpListener::bind((host.as_str(), *port))
                .map_err(|e| Error::arg(format!("cannot listen on {host}:{port}: {e}")))?;
            l.set_nonblocking(true)
                .map_err(|e| Error::arg(format!("listen {host}:{port}: {e}")))?;
            let fd = OwnedFd::from(l);
            s.watch(fd.as_raw_fd(), LISTENER, libc::EPOLLIN as u32)?;
            s.listener = Some(fd);
        }
        Ok(s)
    }

    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    pub fn stats(&self) -> StreamStats {
        self.stats
    }

    pub fn next_event(&mut self) -> Option<String> {
        self.events.pop_front()
    }

    fn say(&mut self, line: String) {
        if self.events.len() < 64 {
            self.events.push_back(line);
        }
    }

    fn name(&self) -> String {
        match &self.endpoint {
            Endpoint::Serial { path, .. } => path.clone(),
            Endpoint::Connect { host, port } => format!("{host}:{port}"),
            Endpoint::Listen { host, port } => format!("{host}:{port}"),
        }
    }

    fn watch(&self, fd: RawFd, id: u64, events: u32) -> Result<()> {
        let mut ev = libc::epoll_event { events, u64: id };
        // SAFETY: `ev` is a valid epoll_event; `fd` is open.
        let ret =
            unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
        sys::check(ret, "epoll_ctl")?;
        Ok(())
    }

    fn rewatch(&self, fd: RawFd, id: u64, events: u32) {
        let mut ev = libc::epoll_event { events, u64: id };
        // SAFETY: as in `watch`; a failure leaves the old interest, harmlessly.
        unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_MOD, fd, &mut ev) };
    }

    /// Does what is due: opening, accepting, reading. Returns the ms until it must run again
    /// if its descriptor stays quiet.
    pub fn service(&mut self, now: u64) -> u64 {
        let single = !matches!(self.endpoint, Endpoint::Listen { .. });
        if single && self.conns.is_empty() && now >= self.retry_at {
            self.open(now);
        }
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        // SAFETY: `events` has room for 64 entries; a timeout of 0 never blocks.
        let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 64, 0) };
        for ev in events.iter().take(n.max(0) as usize) {
            let (id, bits) = (ev.u64, ev.events);
            if id == LISTENER {
                self.accept(now);
            } else {
                self.ready(id, bits, now);
            }
        }
        // Streams gone quiet give up what they hold half-received.
        let mut due = if single && self.conns.is_empty() {
            self.retry_at.saturating_sub(now).max(1)
        } else {
            1_000
        };
        for i in 0..self.conns.len() {
            let c = &mut self.conns[i];
            if c.deframer.pending() == 0 || c.connecting {
                continue;
            }
            let quiet = now.saturating_sub(c.last_rx_ms);
            if quiet >= IDLE_FLUSH_MS {
                let peer = c.peer;
                let mut items = Vec::new();
                c.deframer.finish(&mut |p| items.push(item(p, peer)));
                self.take(items);
            } else {
                due = due.min(IDLE_FLUSH_MS - quiet);
            }
        }
        if !self.inbox.is_empty() {
            due = 0;
        }
        due
    }

    fn take(&mut self, items: Vec<Item>) {
        for it in items {
            if it.flags == 0 {
                self.stats.packets += 1;
            } else {
                self.stats.rejected += 1;
            }
            self.inbox.push_back(it);
        }
    }

    fn open(&mut self, now: u64) {
        let result = match self.endpoint.clone() {
            Endpoint::Serial { .. } => open_device(&self.endpoint).map(|fd| (fd, false)),
            Endpoint::Connect { host, port } => crate::mqtt::resolve(&host, port)
                .and_then(crate::mqtt::tcp_connect)
                .map(|fd| (fd, true)),
            Endpoint::Listen { .. } => return,
        };
        match result {
            Ok((fd, connecting)) => {
                let id = self.next_id;
                self.next_id += 1;
                let events = if connecting {
                    libc::EPOLLOUT
                } else {
                    libc::EPOLLIN
                };
                if let Err(e) = self.watch(fd.as_raw_fd(), id, events as u32) {
                    return self.failed(now, e.message);
                }
                let peer = match &self.endpoint {
                    Endpoint::Connect { port, .. } => ([0; 4], *port),
                    _ => ([0; 4], 0),
                };
                self.conns.push(Conn {
                    id,
                    fd,
                    deframer: Deframer::new(self.framing.clone()),
                    peer,
                    last_rx_ms: now,
                    connecting,
                });
                if !connecting {
                    self.opened(0);
                }
            }
            Err(why) => self.failed(now, why),
        }
    }

    fn opened(&mut self, i: usize) {
        self.stats.opens += 1;
        self.stats.connected = self.conns.len() as u64;
        self.backoff_ms = MIN_BACKOFF_MS;
        let again = if self.last_failure.take().is_some() || self.stats.opens > 1 {
            " again"
        } else {
            ""
        };
        let what = match &self.endpoint {
            Endpoint::Serial { baud, .. } => {
                format!("opened {}{again} at {baud} baud", self.name())
            }
            Endpoint::Connect { .. } => format!("connected to {}{again}", self.name()),
            Endpoint::Listen { .. } => {
                let (ip, port) = self.conns[i].peer;
                let ip = std::net::Ipv4Addr::from(ip);
                format!("{ip}:{port} connected (sender {} now)", self.conns.len())
            }
        };
        self.say(what);
    }

    /// Opening or connecting failed: said once per kind of failure, tried again later.
    fn failed(&mut self, now: u64, why: String) {
        let wait = self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
        self.retry_at = now + wait;
        if self.last_failure.as_deref() != Some(why.as_str()) {
            let line = format!(
                "cannot open {}: {why}; trying again (every {} s at most)",
                self.name(),
                MAX_BACKOFF_MS / 1000
            );
            self.say(line);
            self.last_failure = Some(why);
        }
    }

    fn accept(&mut self, now: u64) {
        let Some(l) = &self.listener else { return };
        let lfd = l.as_raw_fd();
        loop {
            let mut sa: libc::sockaddr_in = unsafe_zeroed_sockaddr();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            // SAFETY: `sa`/`len` describe a writable sockaddr_in.
            let fd = unsafe {
                libc::accept4(
                    lfd,
                    &mut sa as *mut libc::sockaddr_in as *mut libc::sockaddr,
                    &mut len,
                    libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                )
            };
            if fd < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::EAGAIN) {
                    let line = format!("accepting on {}: {e}", self.name());
                    self.say(line);
                }
                return;
            }
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(fd) };
            let peer = (
                u32::from_be(sa.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(sa.sin_port),
            );
            if self.conns.len() >= MAX_CONNECTIONS {
                let line = format!(
                    "refused a sender from {}:{}: {MAX_CONNECTIONS} are connected already",
                    std::net::Ipv4Addr::from(peer.0),
                    peer.1
                );
                self.say(line);
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if self
                .watch(fd.as_raw_fd(), id, libc::EPOLLIN as u32)
                .is_err()
            {
                continue;
            }
            self.conns.push(Conn {
                id,
                fd,
                deframer: Deframer::new(self.framing.clone()),
                peer,
                last_rx_ms: now,
                connecting: false,
            });
            let i = self.conns.len() - 1;
            self.opened(i);
        }
    }

    fn ready(&mut self, id: u64, bits: u32, now: u64) {
        let Some(i) = self.conns.iter().position(|c| c.id == id) else {
            return;
        };
        if self.conns[i].connecting {
            let fd = self.conns[i].fd.as_raw_fd();
            match socket_error(fd) {
                0 => {
                    self.conns[i].connecting = false;
                    self.rewatch(fd, id, libc::EPOLLIN as u32);
                    self.opened(i);
                }
                e => {
                    self.conns.remove(i);
                    let why = std::io::Error::from_raw_os_error(e).to_string();
                    self.failed(now, why);
                }
            }
            return;
        }
        let mut budget = READ_BUDGET;
        while budget > 0 && self.inbox.len() < MAX_INBOX {
            let fd = self.conns[i].fd.as_raw_fd();
            // SAFETY: `buf` is writable for its length; `fd` is open.
            let n = unsafe { libc::read(fd, self.buf.as_mut_ptr().cast(), self.buf.len()) };
            if n > 0 {
                let n = n as usize;
                budget = budget.saturating_sub(n);
                self.stats.bytes += n as u64;
                let c = &mut self.conns[i];
                c.last_rx_ms = now;
                let peer = c.peer;
                let mut items = Vec::new();
                c.deframer
                    .push(&self.buf[..n], &mut |p| items.push(item(p, peer)));
                self.take(items);
                continue;
            }
            let err = std::io::Error::last_os_error();
            let serial = matches!(self.endpoint, Endpoint::Serial { .. });
            // A tty in raw mode with VMIN = VTIME = 0 answers "nothing now" with 0, not EAGAIN
            // (n_tty checks the zero timeout before O_NONBLOCK): for a device, 0 is no end. An
            // unplugged device says EIO or hangs up instead.
            if (n < 0 && err.raw_os_error() == Some(libc::EAGAIN)) || (n == 0 && serial) {
                if bits & (libc::EPOLLHUP | libc::EPOLLERR) as u32 != 0 && serial {
                    return self.lost(i, now, "hung up".into());
                }
                return;
            }
            let why = if n == 0 {
                "the other end closed it".to_string()
            } else {
                err.to_string()
            };
            return self.lost(i, now, why);
        }
    }

    /// A stream ended: what it held is handed out, and a device or connection is reopened.
    fn lost(&mut self, i: usize, now: u64, why: String) {
        let mut c = self.conns.remove(i);
        let peer = c.peer;
        let mut items = Vec::new();
        c.deframer.finish(&mut |p| items.push(item(p, peer)));
        self.take(items);
        drop(c); // closing the descriptor also takes it out of the epoll set
        self.stats.connected = self.conns.len() as u64;
        let line = match &self.endpoint {
            Endpoint::Listen { .. } => format!(
                "sender {}:{} left ({why}); {} connected",
                std::net::Ipv4Addr::from(peer.0),
                peer.1,
                self.conns.len()
            ),
            Endpoint::Serial { .. } => {
                format!(
                    "lost {} ({why}: unplugged?); reopening it when it is back",
                    self.name()
                )
            }
            Endpoint::Connect { .. } => {
                format!(
                    "lost the connection to {} ({why}); reconnecting",
                    self.name()
                )
            }
        };
        self.say(line);
        self.last_failure = None;
        self.retry_at = now + MIN_BACKOFF_MS;
    }

    /// Delivers waiting packets as `gsw_batch_recv` does; returns how many (0: none).
    pub fn recv(&mut self, buf: &mut [u8], slot: usize, meta: &mut [u8]) -> Result<usize> {
        if slot == 0 {
            return Err(Error::arg("a receive slot of 0 bytes"));
        }
        let max = (buf.len() / slot).min(meta.len() / META_LEN);
        let mut n = 0;
        while n < max {
            let Some(it) = self.inbox.pop_front() else {
                break;
            };
            let m = &mut meta[n * META_LEN..(n + 1) * META_LEN];
            m.fill(0);
            let len = it.bytes.len().min(slot);
            buf[n * slot..n * slot + len].copy_from_slice(&it.bytes[..len]);
            let flags = it.flags | if len < it.bytes.len() { 1 } else { 0 };
            m[0..4].copy_from_slice(&(len as u32).to_le_bytes());
            m[4..8].copy_from_slice(&(it.bytes.len() as u32).to_le_bytes());
            m[8..16].copy_from_slice(&it.ts.to_le_bytes());
            m[16..20].copy_from_slice(&it.peer.0);
            m[20..22].copy_from_slice(&it.peer.1.to_le_bytes());
            m[22..24].copy_from_slice(&flags.to_le_bytes());
            m[28..30].copy_from_slice(&self.port.to_le_bytes());
            n += 1;
        }
        Ok(n)
    }
}

fn item(p: Piece<'_>, peer: ([u8; 4], u16)) -> Item {
    let ts = sys::realtime_ns();
    match p {
        Piece::Packet(b) => Item {
            bytes: b.to_vec(),
            flags: 0,
            ts,
            peer,
        },
        Piece::Rejected(b, why) => Item {
            bytes: b.to_vec(),
            flags: if why == Reject::BadCrc {
                FLAG_BAD_CRC
            } else {
                FLAG_UNFRAMED
            },
            ts,
            peer,
        },
    }
}

fn unsafe_zeroed_sockaddr() -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: 0,
        sin_port: 0,
        sin_addr: libc::in_addr { s_addr: 0 },
        sin_zero: [0; 8],
    }
}

fn socket_error(fd: RawFd) -> i32 {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: SO_ERROR writes one int into `err`.
    let ret = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut err as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if ret < 0 {
        return std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO);
    }
    err
}

fn speed(baud: u32) -> std::result::Result<libc::speed_t, String> {
    Ok(match baud {
        1200 => libc::B1200,
        2400 => libc::B2400,
        4800 => libc::B4800,
        9600 => libc::B9600,
        19200 => libc::B19200,
        38400 => libc::B38400,
        57600 => libc::B57600,
        115200 => libc::B115200,
        230400 => libc::B230400,
        460800 => libc::B460800,
        500000 => libc::B500000,
        576000 => libc::B576000,
        921600 => libc::B921600,
        1000000 => libc::B1000000,
        1500000 => libc::B1500000,
        2000000 => libc::B2000000,
        3000000 => libc::B3000000,
        _ => return Err(format!("{baud} baud is not a standard rate")),
    })
}

/// Opens a serial endpoint's device at its line settings (a TCP endpoint is an error).
pub fn open_device(e: &Endpoint) -> std::result::Result<OwnedFd, String> {
    let Endpoint::Serial {
        path,
        baud,
        data_bits,
        parity,
        stop_bits,
        rtscts,
        xonxoff,
    } = e
    else {
        return Err("not a serial device".into());
    };
    open_serial(
        path, *baud, *data_bits, *parity, *stop_bits, *rtscts, *xonxoff,
    )
}

/// Opens a serial device raw, non-blocking, at the given line settings.
fn open_serial(
    path: &str,
    baud: u32,
    data_bits: u8,
    parity: Parity,
    stop_bits: u8,
    rtscts: bool,
    xonxoff: bool,
) -> std::result::Result<OwnedFd, String> {
    let c = CString::new(path).map_err(|_| "a device path with a NUL byte".to_string())?;
    // SAFETY: `c` is a valid C string.
    let fd = unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: termios is plain data; tcgetattr fills it.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a writable termios; `fd` is open.
    if unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut t) } < 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("not a serial device ({e})"));
    }
    // SAFETY: `t` is a valid termios.
    unsafe { libc::cfmakeraw(&mut t) };
    let s = speed(baud)?;
    // SAFETY: `t` is a valid termios; `s` a speed constant.
    unsafe {
        libc::cfsetispeed(&mut t, s);
        libc::cfsetospeed(&mut t, s);
    }
    t.c_cflag &= !libc::CSIZE;
    t.c_cflag |= match data_bits {
        5 => libc::CS5,
        6 => libc::CS6,
        7 => libc::CS7,
        _ => libc::CS8,
    };
    t.c_cflag &= !(libc::PARENB | libc::PARODD | libc::CSTOPB | libc::CRTSCTS);
    match parity {
        Parity::None => {}
        Parity::Even => t.c_cflag |= libc::PARENB,
        Parity::Odd => t.c_cflag |= libc::PARENB | libc::PARODD,
    }
    if stop_bits == 2 {
        t.c_cflag |= libc::CSTOPB;
    }
    if rtscts {
        t.c_cflag |= libc::CRTSCTS;
    }
    if xonxoff {
        t.c_iflag |= libc::IXON | libc::IXOFF;
    }
    t.c_cflag |= libc::CLOCAL | libc::CREAD;
    t.c_cc[libc::VMIN] = 0;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: `t` is a valid termios; `fd` is open.
    if unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &t) } < 0 {
        return Err(format!(
            "cannot set its line: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(fd)
}
