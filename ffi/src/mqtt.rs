//! The MQTT source: a minimal subscribe-only MQTT 3.1.1 client over a non-blocking TCP socket,
//! for a decom whose packets arrive through an MQTT broker (another gsw's bridge publishes
//! them). It connects (with a user name and password if given), subscribes to one topic
//! filter, answers QoS 1 deliveries, keeps the connection alive, and reconnects with
//! exponential backoff and jitter. Each message is a raw packet as the bridge frames it
//! (`RAW_HEADER_LEN` bytes of header, then the datagram); it is delivered in the same batch
//! format as UDP `recvmmsg` (`udp::META_LEN` metadata per datagram), with the receive time,
//! ports and sender restored from the header, so decom identifies, publishes and logs it
//! exactly as the first machine did. A message that is not such a packet is delivered with
//! `FLAG_MALFORMED` (counted as rejected, logged raw).
//!
//! Nothing here blocks: decom's waitset watches [`MqttSource::fd`] for
//! [`MqttSource::interest`], and decom calls [`MqttSource::service`] when it is ready or a
//! timer is due.

use crate::error::{Error, Result};
use crate::sys;
use crate::udp::META_LEN;
use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4, ToSocketAddrs};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// "GSWR": first bytes of a raw packet message.
pub const RAW_MAGIC: [u8; 4] = *b"GSWR";
pub const RAW_VERSION: u8 = 1;
/// Header of a raw packet message: magic, version u8, flags u8, reserved u16, seq u64,
/// timestamp_ns u64, src ip [4], src port u16, dst port u16, orig_len u32, reserved u32.
pub const RAW_HEADER_LEN: usize = 40;
/// META flag: a message on the source topic that is not a raw packet (kept as it came).
pub const FLAG_MALFORMED: u16 = 1 << 8;
/// Largest UDP payload over IPv4: no raw packet carries more.
const MAX_DATAGRAM: usize = 65507;
/// Largest message accepted (a datagram and its header, with room to spare).
const MAX_MESSAGE: usize = 1 << 20;
/// Streams whose sequence numbers are followed at once (one per source of the publisher).
const MAX_STREAMS: usize = 1024;
/// Longest backoff between connection attempts.
const MAX_BACKOFF_MS: u64 = 30_000;
const MIN_BACKOFF_MS: u64 = 250;
/// A connection attempt (TCP connect, CONNACK, SUBACK) that takes longer than this fails.
const HANDSHAKE_MS: u64 = 10_000;

/// What the caller's waitset should watch for.
pub const WANT_READ: u32 = 1;
pub const WANT_WRITE: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to try again at `retry_at` (ms, monotonic).
    Idle,
    /// TCP connect in progress.
    Connecting,
    /// CONNECT sent, waiting for CONNACK.
    Connack,
    /// SUBSCRIBE sent, waiting for SUBACK.
    Suback,
    Live,
}

/// Counters for health reporting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttStats {
    pub connected: bool,
    /// Raw packets delivered.
    pub messages: u64,
    /// Messages that were not raw packets.
    pub malformed: u64,
    /// Packets missing in the sequence numbers (the publisher lost or dropped them).
    pub gaps: u64,
    /// Connections made (CONNACK and SUBACK received).
    pub connections: u64,
    /// Sockets opened (each connection attempt): a new one means a new descriptor to watch.
    pub attempts: u64,
    /// Times a stream's sequence numbers went back (its publisher restarted): delivered, no
    /// gap counted.
    pub restarts: u64,
}

pub struct Options {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
    pub topic: String,
    pub qos: u8,
    pub keepalive_s: u16,
}

pub struct MqttSource {
    opts: Options,
    state: State,
    sock: Option<OwnedFd>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    /// Complete PUBLISH payloads not delivered yet, with the time they were received.
    /// (stream, payload): the stream is the topic without its last level, so the packets
    /// of one source on the first machine share one sequence.
    inbox: VecDeque<(Vec<u8>, Vec<u8>)>,
    retry_at: u64,
    backoff_ms: u64,
    since: u64,
    last_tx: u64,
    last_rx: u64,
    ping_out: bool,
    /// Sequence number of the last packet delivered, per stream.
    last_seq: HashMap<Vec<u8>, u64>,
    stats: MqttStats,
    /// Why the last connection attempt failed, so a long outage is not said at every attempt.
    last_failure: Option<String>,
    /// Things worth a log line, oldest first.
    events: VecDeque<String>,
    rng: u64,
}

impl MqttSource {
    pub fn new(opts: Options) -> Result<MqttSource> {
        if opts.qos > 1 {
            return Err(Error::arg("the MQTT source subscribes with QoS 0 or 1"));
        }
        if opts.topic.is_empty() || opts.topic.len() > 65535 {
            return Err(Error::arg("an MQTT topic filter must be 1 to 65535 bytes"));
        }
        let seed = sys::monotonic_ns() ^ ((std::process::id() as u64) << 32);
        Ok(MqttSource {
            opts,
            state: State::Idle,
            sock: None,
            rx: Vec::new(),
            tx: Vec::new(),
            inbox: VecDeque::new(),
            retry_at: 0,
            backoff_ms: MIN_BACKOFF_MS,
            since: 0,
            last_tx: 0,
            last_rx: 0,
            ping_out: false,
            last_seq: HashMap::new(),
            stats: MqttStats::default(),
            events: VecDeque::new(),
            last_failure: None,
            rng: seed | 1,
        })
    }

    pub fn stats(&self) -> MqttStats {
        self.stats
    }

    /// The socket to watch (-1 while waiting to reconnect).
    pub fn fd(&self) -> RawFd {
        self.sock.as_ref().map_or(-1, |s| s.as_raw_fd())
    }

    /// What to watch the socket for: readable always, writable while connecting or while
    /// output is waiting.
    pub fn interest(&self) -> u32 {
        match self.state {
            State::Idle => 0,
            State::Connecting => WANT_WRITE,
            _ => WANT_READ | if self.tx.is_empty() { 0 } else { WANT_WRITE },
        }
    }

    /// The next event worth a log line, if any.
    pub fn next_event(&mut self) -> Option<String> {
        self.events.pop_front()
    }

    fn say(&mut self, line: String) {
        if self.events.len() < 64 {
            self.events.push_back(line);
        }
    }

    fn jitter(&mut self, ms: u64) -> u64 {
        // xorshift64: only spreads reconnections of several decoms apart.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        ms / 2 + self.rng % (ms / 2 + 1)
    }

    fn fail(&mut self, now: u64, why: String) {
        let was = self.state;
        self.sock = None;
        self.rx.clear();
        self.tx.clear();
        self.ping_out = false;
        if self.stats.connected {
            self.stats.connected = false;
        }
        let wait = self.jitter(self.backoff_ms);
        self.retry_at = now + wait;
        self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
        self.state = State::Idle;
        let during = match was {
            State::Live => "connection lost",
            _ => "cannot connect",
        };
        // A broker that stays away is said once, then again only at the longest backoff (every
        // 30 s or so), not at every attempt.
        let repeat = was != State::Live && self.last_failure.as_deref() == Some(why.as_str());
        let quiet = repeat && wait < MAX_BACKOFF_MS / 2;
        self.last_failure = Some(why.clone());
        if quiet {
            return;
        }
        self.say(format!(
            "MQTT broker {}:{}: {during}: {why}; trying again in {:.1} s",
            self.opts.host,
            self.opts.port,
            wait as f64 / 1000.0
        ));
    }

    /// Does what is due: connecting, handshakes, pings, reading and writing whatever the socket
    /// allows. Returns the milliseconds until it next needs to run (for the caller's wait).
    pub fn service(&mut self, now: u64) -> u64 {
        if self.state == State::Idle && now >= self.retry_at {
            self.start_connect(now);
        }
        if self.state == State::Connecting {
            match self.connect_result() {
                Ok(true) => {
                    self.send_connect(now);
                    self.state = State::Connack;
                }
                Ok(false) => {}
                Err(e) => self.fail(now, e),
            }
        }
        if matches!(self.state, State::Connack | State::Suback | State::Live) {
            if let Err(e) = self.read(now) {
                self.fail(now, e);
            }
        }
        if self.state != State::Idle && !self.tx.is_empty() {
            if let Err(e) = self.write(now) {
                self.fail(now, e);
            }
        }
        match self.state {
            State::Idle => self.retry_at.saturating_sub(now).max(1),
            State::Connecting | State::Connack | State::Suback => {
                if now - self.since > HANDSHAKE_MS {
                    self.fail(now, "no answer within 10 s".into());
                    return self.retry_at.saturating_sub(now).max(1);
                }
                (self.since + HANDSHAKE_MS).saturating_sub(now).max(1)
            }
            State::Live => {
                let keep = self.opts.keepalive_s as u64 * 1000;
                if self.ping_out && now - self.last_rx > keep * 3 / 2 {
                    self.fail(now, "the broker stopped answering pings".into());
                    return self.retry_at.saturating_sub(now).max(1);
                }
                if !self.ping_out && now - self.last_tx >= keep / 2 {
                    self.tx.extend_from_slice(&[0xC0, 0x00]); // PINGREQ
                    self.ping_out = true;
                    if let Err(e) = self.write(now) {
                        self.fail(now, e);
                    }
                }
                (self.last_tx + keep / 2)
                    .saturating_sub(now)
                    .clamp(1, keep / 2)
            }
        }
    }

    fn start_connect(&mut self, now: u64) {
        self.since = now;
        let addr = match resolve(&self.opts.host, self.opts.port) {
            Ok(a) => a,
            Err(e) => return self.fail(now, e),
        };
        match tcp_connect(addr) {
            Ok(fd) => {
                self.sock = Some(fd);
                self.stats.attempts += 1;
                self.state = State::Connecting;
            }
            Err(e) => self.fail(now, e),
        }
    }

    /// Whether the non-blocking connect has finished (Err: it failed).
    fn connect_result(&self) -> std::result::Result<bool, String> {
        let Some(fd) = &self.sock else {
            return Ok(false);
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd; no waiting.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        if n <= 0 {
            return Ok(false);
        }
        let mut err: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: SO_ERROR writes one int into `err`.
        unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut libc::c_int as *mut libc::c_void,
                &mut len,
            )
        };
        if err != 0 {
            return Err(std::io::Error::from_raw_os_error(err).to_string());
        }
        Ok(true)
    }

    fn send_connect(&mut self, now: u64) {
        let o = &self.opts;
        let mut vh = Vec::new();
        put_str(&mut vh, b"MQTT");
        vh.push(4); // protocol level 3.1.1
        let mut flags = 0x02u8; // clean session
        if o.username.is_some() {
            flags |= 0x80;
        }
        if o.password.is_some() {
            flags |= 0x40;
        }
        vh.push(flags);
        vh.extend_from_slice(&o.keepalive_s.to_be_bytes());
        put_str(&mut vh, o.client_id.as_bytes());
        if let Some(u) = &o.username {
            put_str(&mut vh, u.as_bytes());
        }
        if let Some(p) = &o.password {
            put_str(&mut vh, p);
        }
        frame(&mut self.tx, 0x10, &vh);
        self.last_tx = now;
        self.last_rx = now;
    }

    fn send_subscribe(&mut self) {
        let mut body = vec![0x00, 0x01]; // packet id 1
        put_str(&mut body, self.opts.topic.as_bytes());
        body.push(self.opts.qos);
        frame(&mut self.tx, 0x82, &body);
    }

    fn write(&mut self, now: u64) -> std::result::Result<(), String> {
        let Some(fd) = &self.sock else { return Ok(()) };
        while !self.tx.is_empty() {
            // SAFETY: writes from a valid buffer; MSG_NOSIGNAL: a closed peer is an error, not
            // a SIGPIPE.
            let n = unsafe {
                libc::send(
                    fd.as_raw_fd(),
                    self.tx.as_ptr() as *const libc::c_void,
                    self.tx.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    return Ok(());
                }
                return Err(e.to_string());
            }
            self.tx.drain(..n as usize);
            self.last_tx = now;
        }
        Ok(())
    }

    fn read(&mut self, now: u64) -> std::result::Result<(), String> {
        let Some(fd) = &self.sock else { return Ok(()) };
        let fd = fd.as_raw_fd();
        let mut buf = [0u8; 65536];
        loop {
            // SAFETY: reads into a valid buffer.
            let n = unsafe {
                libc::recv(
                    fd,
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EAGAIN) {
                    break;
                }
                return Err(e.to_string());
            }
            self.rx.extend_from_slice(&buf[..n as usize]);
            self.last_rx = now;
            // Bound what one call holds: the rest waits in the socket.
            if self.rx.len() > 4 * MAX_MESSAGE || self.inbox.len() > 4096 {
                break;
            }
        }
        self.parse(now)
    }

    /// Takes every complete control packet off the receive buffer.
    fn parse(&mut self, now: u64) -> std::result::Result<(), String> {
        let mut at = 0;
        while let Some((kind, body, next)) = next_packet(&self.rx[at..])? {
            let body = body.to_vec();
            at += next;
            match kind >> 4 {
                2 => {
                    // CONNACK: session present, return code.
                    let code = *body.get(1).ok_or("a CONNACK without a return code")?;
                    if code != 0 {
                        return Err(connack_reason(code));
                    }
                    self.send_subscribe();
                    self.state = State::Suback;
                }
                9 => {
                    // SUBACK: packet id, then the granted QoS (0x80: refused).
                    if body.get(2) == Some(&0x80) {
                        return Err(format!(
                            "the broker refused the subscription to \"{}\" (not authorised?)",
                            self.opts.topic
                        ));
                    }
                    self.state = State::Live;
                    self.stats.connected = true;
                    self.stats.connections += 1;
                    self.backoff_ms = MIN_BACKOFF_MS;
                    self.last_failure = None;
                    self.say(format!(
                        "MQTT broker {}:{}: connected, subscribed to \"{}\"",
                        self.opts.host, self.opts.port, self.opts.topic
                    ));
                }
                3 => {
                    let qos = (kind >> 1) & 3;
                    let tlen = u16::from_be_bytes(
                        body.get(..2)
                            .ok_or("a short PUBLISH")?
                            .try_into()
                            .expect("2"),
                    ) as usize;
                    let mut p = 2 + tlen;
                    if qos > 0 {
                        let id = body.get(p..p + 2).ok_or("a short PUBLISH")?;
                        // PUBACK
                        self.tx.extend_from_slice(&[0x40, 0x02, id[0], id[1]]);
                        p += 2;
                    }
                    let payload = body.get(p..).ok_or("a short PUBLISH")?;
                    let topic = &body[2..2 + tlen];
                    let stream = &topic[..topic.iter().rposition(|&b| b == b'/').unwrap_or(0)];
                    self.inbox.push_back((stream.to_vec(), payload.to_vec()));
                }
                13 => self.ping_out = false, // PINGRESP
                _ => {}
            }
        }
        self.rx.drain(..at);
        if !self.tx.is_empty() {
            self.write(now)?;
        }
        Ok(())
    }

    /// Delivers received raw packets into a receive batch: datagram `i` at `buf[i * slot..]`,
    /// its metadata at `meta[i * META_LEN..]` (as `udp::Batch::recv` writes it, with the
    /// destination port at offset 28). One batch holds datagrams of one destination port only
    /// (decom publishes and logs a batch per port), so a batch may end early. Returns how many.
    pub fn recv(&mut self, buf: &mut [u8], slot: usize, meta: &mut [u8]) -> Result<usize> {
        if slot == 0 {
            return Err(Error::arg("a receive slot of 0 bytes"));
        }
        let max = (buf.len() / slot).min(meta.len() / META_LEN);
        let mut n = 0;
        let mut batch_port = None;
        while n < max {
            let Some(front) = self.inbox.front() else {
                break;
            };
            let port = parse_raw(&front.1).map_or(0, |r| r.dst_port);
            if *batch_port.get_or_insert(port) != port {
                break;
            }
            let (stream, msg) = self.inbox.pop_front().expect("front exists");
            let m = &mut meta[n * META_LEN..(n + 1) * META_LEN];
            m.fill(0);
            let d = &mut buf[n * slot..(n + 1) * slot];
            match parse_raw(&msg) {
                Some(raw) => {
                    if raw.seq != 0 {
                        if self.last_seq.len() >= MAX_STREAMS
                            && !self.last_seq.contains_key(&stream)
                        {
                            self.last_seq.clear(); // a flood of topics: forget, never grow
                        }
                        let last = self.last_seq.insert(stream, raw.seq).unwrap_or(0);
                        if last != 0 && raw.seq > last + 1 {
                            self.stats.gaps += raw.seq - last - 1;
                        } else if raw.seq <= last {
                            self.stats.restarts += 1;
                        }
                    }
                    let len = raw.data.len().min(slot);
                    d[..len].copy_from_slice(&raw.data[..len]);
                    let flags = raw.flags | if len < raw.data.len() { 1 } else { 0 };
                    m[0..4].copy_from_slice(&(len as u32).to_le_bytes());
                    m[4..8].copy_from_slice(&raw.orig_len.to_le_bytes());
                    m[8..16].copy_from_slice(&raw.timestamp_ns.to_le_bytes());
                    m[16..20].copy_from_slice(&raw.src_ip);
                    m[20..22].copy_from_slice(&raw.src_port.to_le_bytes());
                    m[22..24].copy_from_slice(&flags.to_le_bytes());
                    m[28..30].copy_from_slice(&raw.dst_port.to_le_bytes());
                    self.stats.messages += 1;
                }
                None => {
                    let len = msg.len().min(slot);
                    d[..len].copy_from_slice(&msg[..len]);
                    m[0..4].copy_from_slice(&(len as u32).to_le_bytes());
                    m[4..8].copy_from_slice(&(msg.len() as u32).to_le_bytes());
                    m[8..16].copy_from_slice(&sys::realtime_ns().to_le_bytes());
                    m[22..24].copy_from_slice(&FLAG_MALFORMED.to_le_bytes());
                    self.stats.malformed += 1;
                }
            }
            n += 1;
        }
        Ok(n)
    }
}

/// A raw packet message, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct RawPacket<'a> {
    pub flags: u16,
    pub seq: u64,
    pub timestamp_ns: u64,
    pub src_ip: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub orig_len: u32,
    pub data: &'a [u8],
}

/// Parses a raw packet message (None: not one).
pub fn parse_raw(msg: &[u8]) -> Option<RawPacket<'_>> {
    if msg.len() < RAW_HEADER_LEN || msg[0..4] != RAW_MAGIC || msg[4] != RAW_VERSION {
        return None;
    }
    let u16_at = |a: usize| u16::from_le_bytes(msg[a..a + 2].try_into().expect("2"));
    let u32_at = |a: usize| u32::from_le_bytes(msg[a..a + 4].try_into().expect("4"));
    let u64_at = |a: usize| u64::from_le_bytes(msg[a..a + 8].try_into().expect("8"));
    let data = &msg[RAW_HEADER_LEN..];
    let orig_len = u32_at(32);
    if (orig_len as usize) < data.len() || data.len() > MAX_DATAGRAM {
        return None;
    }
    Some(RawPacket {
        flags: msg[5] as u16,
        seq: u64_at(8),
        timestamp_ns: u64_at(16),
        src_ip: msg[24..28].try_into().expect("4"),
        src_port: u16_at(28),
        dst_port: u16_at(30),
        orig_len,
        data,
    })
}

fn connack_reason(code: u8) -> String {
    match code {
        1 => "the broker does not speak MQTT 3.1.1".into(),
        2 => "the broker refused the client id".into(),
        3 => "the broker is unavailable".into(),
        4 => "bad user name or password".into(),
        5 => "not authorised: check the user name and password".into(),
        c => format!("the broker refused the connection (code {c})"),
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// Appends a control packet: fixed header byte, remaining length, body.
fn frame(out: &mut Vec<u8>, first: u8, body: &[u8]) {
    out.push(first);
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
}

/// A control packet in a buffer: its first byte, its body, and the bytes it takes in all.
type Framed<'a> = (u8, &'a [u8], usize);

/// The next complete packet in `buf`: (first byte, body, bytes it takes); None if incomplete.
fn next_packet(buf: &[u8]) -> std::result::Result<Option<Framed<'_>>, String> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let mut len = 0usize;
    let mut mult = 1usize;
    let mut at = 1;
    loop {
        let Some(&b) = buf.get(at) else {
            return Ok(None);
        };
        len += (b & 0x7f) as usize * mult;
        at += 1;
        if b & 0x80 == 0 {
            break;
        }
        mult *= 128;
        if at > 4 {
            return Err("a malformed packet length from the broker".into());
        }
    }
    if len > 4 * MAX_MESSAGE {
        return Err(format!("a {len}-byte message from the broker, too large"));
    }
    if buf.len() < at + len {
        return Ok(None);
    }
    Ok(Some((buf[0], &buf[at..at + len], at + len)))
}

pub(crate) fn resolve(host: &str, port: u16) -> std::result::Result<SocketAddrV4, String> {
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(SocketAddrV4::new(ip, port));
    }
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .find_map(|a| match a {
            std::net::SocketAddr::V4(v4) => Some(v4),
            _ => None,
        })
        .ok_or_else(|| format!("{host} has no IPv4 address"))
}

pub(crate) fn tcp_connect(addr: SocketAddrV4) -> std::result::Result<OwnedFd, String> {
    // SAFETY: plain syscall with constant arguments.
    let fd = sys::own(
        unsafe {
            libc::socket(
                libc::AF_INET,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        },
        "socket failed",
    )
    .map_err(|e| e.message)?;
    let sa = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    };
    let one: libc::c_int = 1;
    // SAFETY: TCP_NODELAY takes an int; small messages should go out at once.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // SAFETY: `sa` is a valid sockaddr_in of the given length.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            &sa as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if ret < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e.to_string());
        }
    }
    Ok(fd)
}

#[cfg(all(test, not(loom)))]
#[path = "mqtt_tests.rs"]
mod tests;
