//! The raw-packet queue from decom to the logger: every received datagram, framed with its
//! receive time, source and port, sent as one message per receive batch over a UNIX
//! SEQPACKET connection without ever blocking decom.
//!
//! Why SEQPACKET and not a DGRAM socket: a datagram socket's receive queue is capped at
//! `net.unix.max_dgram_qlen` messages (10 by default), so a logger that stalls for a moment
//! (an SD card flushing, say) would drop packets after ten batches. A connected SEQPACKET
//! socket keeps message boundaries and is bounded only by its send buffer (raised here as far
//! as the system allows). Behind that, the queue keeps its own bounded buffer of messages the
//! kernel could not take yet, so a stall or a logger that starts late loses nothing until
//! both are full; only then are packets dropped, and counted.
//!
//! Records are coalesced: batches accumulate in one open message that is sent when it holds
//! `FLUSH_BYTES` or is `max_age` old (decom's loop calls `flush_due` on time). One message per
//! receive batch would cost decom a send — and a cross-CPU wake of the logger — per batch,
//! which at a few kHz of single-datagram batches was most of decom's CPU time. A decom crash
//! loses at most the open message (`max_age` of packets), as the logger's loses what is in flight.

use crate::error::{Error, Result};
use crate::sock::{self, Kind};
use crate::sys;
use crate::udp::META_LEN;
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// "GSWQ" little-endian: first word of every queue message.
pub const MAGIC: u32 = u32::from_le_bytes(*b"GSWQ");
pub const VERSION: u16 = 1;
/// Message header: magic u32, version u16, record count u16, source u16, kind u8, reserved
/// 5 bytes.
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Offset of the message kind in the header.
pub const KIND_OFFSET: usize = 10;
/// A message of records (kind 0, the only kind of the first queue version).
pub const KIND_RECORDS: u8 = 0;
/// The first message of every connection: no records (count 0, so a logger that predates it
/// reads it as an empty message), a payload saying who the sender is (UTF-8 JSON: source name,
/// config hash and path), so the logger can tell that it records with another config.
pub const KIND_HELLO: u8 = 1;
/// Largest hello payload.
pub const MAX_HELLO: usize = 4096;
/// Record header: timestamp_ns u64, orig_len u32, len u32, src_ip [u8; 4], src_port u16,
/// dst_port u16, flags u16, source u16, reserved u32; then `len` payload bytes padded to 8.
pub const RECORD_HEADER_LEN: usize = 32;
/// Largest message sent; the logger's receive buffer must hold one.
pub const MAX_MESSAGE: usize = 128 * 1024;
/// Send buffer asked of the kernel for the queue socket.
pub const SOCKET_BUFFER: u32 = 32 << 20;
/// An open message this large is sent at once.
pub const FLUSH_BYTES: usize = 64 * 1024;
/// Memory a buffered message costs beside its bytes (its queue slot and the allocator's
/// header), counted against the bound so that it bounds real memory.
pub const PER_MESSAGE: usize = 64;

/// Counters of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Packets handed to the kernel for the logger.
    pub sent: u64,
    /// Packets dropped because the kernel buffer and the queue's own buffer were both full
    /// (or no logger was connected and the buffer filled).
    pub dropped: u64,
    /// Bytes the queue's own buffer holds in memory (the open message and unsent ones, as
    /// allocated, with PER_MESSAGE each): what the `max_pending` bound counts.
    pub pending_bytes: u64,
    /// Packets waiting in the queue's own buffer.
    pub pending_packets: u64,
    /// Bytes of messages the kernel refused so far (waiting for the socket to have room).
    pub unsent_bytes: u64,
}

pub struct LogQueue {
    fd: Option<OwnedFd>,
    source: u16,
    max_pending: usize,
    /// Messages the kernel could not take yet, oldest first, with their packet counts.
    pending: VecDeque<(Vec<u8>, u32)>,
    stats: QueueStats,
    /// The message being filled (empty: none), its record count, and when it was opened
    /// (CLOCK_MONOTONIC ns).
    open: Vec<u8>,
    open_count: u32,
    open_since_ns: u64,
    /// How long a record may wait in the open message.
    max_age_ns: u64,
    /// The hello message sent first on every connection (empty: none).
    hello: Vec<u8>,
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl LogQueue {
    /// A queue tagging its records with `source`, buffering up to `max_pending` bytes itself
    /// and holding records at most `max_age_ns` before sending them.
    pub fn new(source: u16, max_pending: usize, max_age_ns: u64) -> LogQueue {
        LogQueue {
            fd: None,
            source,
            max_pending,
            pending: VecDeque::new(),
            stats: QueueStats::default(),
            open: Vec::new(),
            open_count: 0,
            open_since_ns: 0,
            max_age_ns,
            hello: Vec::new(),
        }
    }

    /// Sets the payload of the hello message sent first on every later connection.
    pub fn set_hello(&mut self, payload: &[u8]) -> Result<()> {
        if payload.len() > MAX_HELLO {
            return Err(Error::arg("hello: payload larger than 4096 bytes"));
        }
        let mut msg = Vec::with_capacity(MESSAGE_HEADER_LEN + payload.len());
        msg.extend_from_slice(&MAGIC.to_le_bytes());
        msg.extend_from_slice(&VERSION.to_le_bytes());
        msg.extend_from_slice(&0u16.to_le_bytes()); // no records
        msg.extend_from_slice(&self.source.to_le_bytes());
        msg.push(KIND_HELLO);
        msg.extend_from_slice(&[0u8; 5]);
        msg.extend_from_slice(payload);
        self.hello = msg;
        Ok(())
    }

    /// Connects to the logger's socket (replacing any previous connection) and sends the
    /// hello first, ahead of anything buffered.
    pub fn connect(&mut self, path: &Path) -> Result<()> {
        let fd = sock::connect(path, Kind::SeqPacket)?;
        // Best effort: a smaller buffer only means the queue's own buffer fills sooner.
        let _ = sock::set_buffer(fd.as_fd(), SOCKET_BUFFER, true);
        if !self.hello.is_empty() {
            // A new connection's send buffer is empty, so the kernel takes a message this
            // small unless the logger is already gone; then the connection fails as any other.
            if sock::send(fd.as_fd(), &self.hello, &[])?.is_none() {
                return Err(Error::arg("the logger's socket refused the hello message"));
            }
        }
        self.fd = Some(fd);
        Ok(())
    }

    pub fn disconnect(&mut self) {
        self.fd = None;
    }

    pub fn raw_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    pub fn stats(&self) -> QueueStats {
        let mut s = self.stats;
        s.unsent_bytes = s.pending_bytes;
        s.pending_bytes += self.open.capacity() as u64;
        s.pending_packets += self.open_count as u64;
        s
    }

    /// Frames the `n` datagrams of a receive batch (`buf` slots of `slot` bytes, `meta`
    /// records as written by `udp::Batch::recv`) and queues them. Never blocks. Returns the
    /// packets dropped by this call.
    pub fn forward(
        &mut self,
        buf: &[u8],
        slot: usize,
        meta: &[u8],
        n: usize,
        dst_port: u16,
    ) -> Result<u64> {
        if n == 0 {
            return Ok(0);
        }
        if slot == 0 || n * slot > buf.len() || n * META_LEN > meta.len() {
            return Err(Error::arg(
                "forward: batch larger than its buffers (slot size or count wrong)",
            ));
        }
        let mut dropped = 0;
        for i in 0..n {
            let m = &meta[i * META_LEN..(i + 1) * META_LEN];
            let len = (u32::from_le_bytes(m[0..4].try_into().unwrap()) as usize).min(slot);
            let record = RECORD_HEADER_LEN + pad8(len);
            if self.open_count > 0
                && (self.open.len() + record > MAX_MESSAGE || self.open_count == u16::MAX as u32)
            {
                dropped += self.close_open();
            }
            // Grow the open message ourselves (doubling, at least a page's worth) so that what
            // the bound counts is what is allocated; while it cannot go out, a record that
            // would take the queue past its bound is dropped, and counted.
            let need = self.open.len().max(MESSAGE_HEADER_LEN) + record;
            if need > self.open.capacity() {
                let cap = need
                    .max(2 * self.open.capacity())
                    .clamp(4096, MAX_MESSAGE)
                    .max(need);
                if !self.can_send_now()
                    && self.stats.pending_bytes as usize + cap > self.max_pending
                {
                    self.stats.dropped += 1;
                    dropped += 1;
                    continue;
                }
                self.open.reserve_exact(cap - self.open.len());
            }
            if self.open.is_empty() {
                self.open_since_ns = sys::monotonic_ns();
                let msg = &mut self.open;
                msg.extend_from_slice(&MAGIC.to_le_bytes());
                msg.extend_from_slice(&VERSION.to_le_bytes());
                msg.extend_from_slice(&0u16.to_le_bytes()); // count, filled in by enqueue
                msg.extend_from_slice(&self.source.to_le_bytes());
                msg.push(KIND_RECORDS);
                msg.extend_from_slice(&[0u8; 5]);
            }
            let msg = &mut self.open;
            msg.extend_from_slice(&m[8..16]); // timestamp
            msg.extend_from_slice(&m[4..8]); // orig_len
            msg.extend_from_slice(&(len as u32).to_le_bytes());
            msg.extend_from_slice(&m[16..22]); // src ip, src port
            msg.extend_from_slice(&dst_port.to_le_bytes());
            msg.extend_from_slice(&m[22..24]); // flags
            msg.extend_from_slice(&self.source.to_le_bytes());
            msg.extend_from_slice(&[0u8; 4]);
            msg.extend_from_slice(&buf[i * slot..i * slot + len]);
            msg.resize(msg.len() + pad8(len) - len, 0);
            self.open_count += 1;
        }
        if self.open.len() >= FLUSH_BYTES
            || (self.can_send_now() && self.open_age_ns() >= self.max_age_ns)
        {
            dropped += self.close_open();
        }
        Ok(dropped)
    }

    /// Whether a message closed now could go straight to the kernel: connected, nothing older
    /// waiting. Otherwise the open message keeps filling up to FLUSH_BYTES instead of being
    /// closed for its age: it could not go out any sooner, and a long outage at a low packet
    /// rate then buffers a few large messages instead of one small message per 10 ms.
    fn can_send_now(&self) -> bool {
        self.fd.is_some() && self.pending.is_empty()
    }

    fn open_age_ns(&self) -> u64 {
        if self.open.is_empty() {
            0
        } else {
            sys::monotonic_ns().saturating_sub(self.open_since_ns)
        }
    }

    /// Sends (or buffers) the open message; returns the packets dropped.
    fn close_open(&mut self) -> u64 {
        if self.open.is_empty() {
            return 0;
        }
        let msg = std::mem::take(&mut self.open);
        let count = std::mem::replace(&mut self.open_count, 0);
        self.enqueue(msg, count)
    }

    /// Sends the open message if it is `max_age` old, then what the kernel can take of the
    /// buffered ones. Returns the packets dropped and the milliseconds until the open message
    /// is due (None when there is none), for the caller's next wait.
    pub fn flush_due(&mut self) -> (u64, Option<u64>) {
        let mut dropped = 0;
        self.flush();
        if !self.open.is_empty() && self.can_send_now() && self.open_age_ns() >= self.max_age_ns {
            dropped = self.close_open();
        }
        // No timer while the open message could not go out anyway (the socket's writability
        // or the logger's return wakes the caller).
        let due = (!self.open.is_empty() && self.can_send_now())
            .then(|| (self.max_age_ns.saturating_sub(self.open_age_ns())).div_ceil(1_000_000));
        (dropped, due)
    }

    /// Sends everything now (at shutdown). Returns the bytes still buffered.
    pub fn finish(&mut self) -> u64 {
        self.close_open();
        self.flush()
    }

    /// Sends or buffers one message; returns the packets dropped (0 or `count`).
    fn enqueue(&mut self, mut msg: Vec<u8>, count: u32) -> u64 {
        msg[6..8].copy_from_slice(&(count as u16).to_le_bytes());
        if self.pending.is_empty() && self.try_send(&msg) {
            self.stats.sent += count as u64;
            return 0;
        }
        // The open message was allocated for FLUSH_BYTES; one sent for its age may hold a few
        // hundred bytes. Kept as it is, every buffered message would hold 64 KiB while the
        // bound counted its length: at low packet rates the real memory reached many times
        // the bound. Shrunk, the bound counts what is really allocated.
        msg.shrink_to_fit();
        let cost = msg.capacity() + PER_MESSAGE;
        if self.stats.pending_bytes as usize + cost > self.max_pending {
            self.stats.dropped += count as u64;
            return count as u64;
        }
        self.stats.pending_bytes += cost as u64;
        self.stats.pending_packets += count as u64;
        self.pending.push_back((msg, count));
        0
    }

    /// True if the kernel took the whole message now.
    fn try_send(&mut self, msg: &[u8]) -> bool {
        let Some(fd) = &self.fd else { return false };
        match sock::send(fd.as_fd(), msg, &[]) {
            Ok(Some(_)) => true,
            Ok(None) => false,
            Err(_) => {
                // The logger went away (EPIPE/ECONNRESET): keep buffering until it is back.
                // (Messages are capped at MAX_MESSAGE, far below any socket buffer, so a
                // too-large message cannot be the reason.)
                self.fd = None;
                false
            }
        }
    }

    /// Sends buffered messages until the kernel refuses one. Returns the bytes still
    /// buffered; when non-zero, wait for the socket to be writable and flush again.
    pub fn flush(&mut self) -> u64 {
        while let Some((msg, count)) = self.pending.pop_front() {
            if !self.try_send(&msg) {
                self.pending.push_front((msg, count));
                break;
            }
            self.stats.sent += count as u64;
            self.stats.pending_bytes -= (msg.capacity() + PER_MESSAGE) as u64;
            self.stats.pending_packets -= count as u64;
        }
        self.stats.pending_bytes
    }

    pub fn is_connected(&self) -> bool {
        self.fd.is_some()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::sock::Received;

    fn meta_for(lens: &[u32]) -> Vec<u8> {
        let mut meta = vec![0u8; lens.len() * META_LEN];
        for (i, &l) in lens.iter().enumerate() {
            meta[i * META_LEN..i * META_LEN + 4].copy_from_slice(&l.to_le_bytes());
            meta[i * META_LEN + 4..i * META_LEN + 8].copy_from_slice(&l.to_le_bytes());
            meta[i * META_LEN + 8..i * META_LEN + 16]
                .copy_from_slice(&(1000 + i as u64).to_le_bytes());
        }
        meta
    }

    #[test]
    fn frames_a_batch_as_one_message() {
        let (a, b) = sock::pair(Kind::SeqPacket).unwrap();
        let mut q = LogQueue::new(3, 1 << 20, 0);
        q.fd = Some(a);
        let mut buf = vec![0u8; 2 * 16];
        buf[..5].copy_from_slice(b"hello");
        buf[16..18].copy_from_slice(b"hi");
        assert_eq!(q.forward(&buf, 16, &meta_for(&[5, 2]), 2, 4000).unwrap(), 0);
        let mut rx = vec![0u8; MAX_MESSAGE];
        let Received::Message(n, _) = sock::recv(b.as_fd(), &mut rx).unwrap() else {
            panic!("no message")
        };
        assert_eq!(n, MESSAGE_HEADER_LEN + 2 * RECORD_HEADER_LEN + 8 + 8);
        assert_eq!(&rx[0..4], b"GSWQ");
        assert_eq!(u16::from_le_bytes([rx[6], rx[7]]), 2);
        let r0 = &rx[MESSAGE_HEADER_LEN..];
        assert_eq!(u64::from_le_bytes(r0[0..8].try_into().unwrap()), 1000);
        assert_eq!(u32::from_le_bytes(r0[12..16].try_into().unwrap()), 5);
        assert_eq!(u16::from_le_bytes(r0[22..24].try_into().unwrap()), 4000);
        assert_eq!(&r0[32..37], b"hello");
        assert_eq!(&r0[40 + 32..40 + 34], b"hi");
        assert_eq!(q.stats().sent, 2);
    }

    #[test]
    fn buffers_without_logger_then_delivers_in_order() {
        let mut q = LogQueue::new(0, 1 << 20, 0);
        let buf = vec![7u8; 64];
        for _ in 0..10 {
            q.forward(&buf, 64, &meta_for(&[64]), 1, 1).unwrap();
        }
        assert_eq!(q.stats().pending_packets, 10);
        // No logger: they wait in one open message, not one message per 10 ms.
        assert!(q.pending.is_empty());
        assert_eq!(q.flush_due().1, None, "no timer while nothing can go out");
        let (a, b) = sock::pair(Kind::SeqPacket).unwrap();
        q.fd = Some(a);
        assert_eq!(q.flush_due(), (0, None));
        let mut rx = vec![0u8; MAX_MESSAGE];
        let mut got = 0;
        while let Received::Message(_, _) = sock::recv(b.as_fd(), &mut rx).unwrap() {
            assert_eq!(u16::from_le_bytes([rx[6], rx[7]]), 10);
            got += 1;
        }
        assert_eq!(got, 1);
        assert_eq!(q.stats().sent, 10);
    }

    #[test]
    fn coalesces_batches_until_big_or_old() {
        let (a, b) = sock::pair(Kind::SeqPacket).unwrap();
        let mut q = LogQueue::new(0, 1 << 20, 50_000_000);
        q.fd = Some(a);
        let buf = vec![7u8; 64];
        for _ in 0..10 {
            q.forward(&buf, 64, &meta_for(&[64]), 1, 1).unwrap();
        }
        let mut rx = vec![0u8; MAX_MESSAGE];
        assert!(matches!(
            sock::recv(b.as_fd(), &mut rx).unwrap(),
            Received::Empty
        ));
        assert_eq!(q.stats().pending_packets, 10, "held in the open message");
        let (_, due) = q.flush_due();
        assert!(
            due.is_some_and(|ms| ms > 0 && ms <= 50),
            "due in {due:?} ms"
        );
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(q.flush_due(), (0, None));
        match sock::recv(b.as_fd(), &mut rx).unwrap() {
            Received::Message(_, _) => assert_eq!(u16::from_le_bytes([rx[6], rx[7]]), 10),
            other => panic!("expected one message of 10 records, got {other:?}"),
        }
        // Enough bytes at once go out without waiting for the age.
        let big = vec![1u8; 1024];
        for _ in 0..(FLUSH_BYTES / 1024 + 1) {
            q.forward(&big, 1024, &meta_for(&[1024]), 1, 1).unwrap();
        }
        assert!(matches!(
            sock::recv(b.as_fd(), &mut rx).unwrap(),
            Received::Message(_, _)
        ));
    }

    #[test]
    fn sends_the_hello_first_on_every_connection() {
        let dir = std::env::temp_dir().join(format!("gsw-logq-hello-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let at = dir.join("logger.sock");
        let listener = sock::listen(&at, Kind::SeqPacket).unwrap();
        let mut q = LogQueue::new(5, 1 << 20, 0);
        q.set_hello(br#"{"source":"radio"}"#).unwrap();
        let buf = vec![9u8; 8];
        // Buffered before the logger is there: must arrive after the hello.
        q.forward(&buf, 8, &meta_for(&[8]), 1, 1).unwrap();
        let mut rx = vec![0u8; MAX_MESSAGE];
        for round in 0..2 {
            q.connect(&at).unwrap();
            let conn = loop {
                if let Some((c, _)) = sock::accept(listener.as_fd()).unwrap() {
                    break c;
                }
            };
            let Received::Message(n, _) = sock::recv(conn.as_fd(), &mut rx).unwrap() else {
                panic!("no hello in round {round}")
            };
            assert_eq!(&rx[0..4], b"GSWQ");
            assert_eq!(
                u16::from_le_bytes([rx[6], rx[7]]),
                0,
                "a hello holds no records"
            );
            assert_eq!(u16::from_le_bytes([rx[8], rx[9]]), 5);
            assert_eq!(rx[KIND_OFFSET], KIND_HELLO);
            assert_eq!(&rx[MESSAGE_HEADER_LEN..n], br#"{"source":"radio"}"#);
            q.flush_due();
            if round == 0 {
                let Received::Message(_, _) = sock::recv(conn.as_fd(), &mut rx).unwrap() else {
                    panic!("the buffered records did not follow the hello")
                };
                assert_eq!(rx[KIND_OFFSET], KIND_RECORDS);
                assert_eq!(u16::from_le_bytes([rx[6], rx[7]]), 1);
            }
            q.disconnect();
        }
        assert!(q.set_hello(&vec![b'x'; MAX_HELLO + 1]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn drops_and_counts_when_full() {
        let bound = 256 * 1024;
        let mut q = LogQueue::new(0, bound, 0);
        let buf = vec![1u8; 400];
        for _ in 0..1000 {
            q.forward(&buf, 400, &meta_for(&[400]), 1, 1).unwrap();
        }
        let s = q.stats();
        assert_eq!(s.pending_packets + s.dropped, 1000);
        assert!(s.dropped > 0 && s.pending_packets > 400, "{s:?}");
        assert!(s.pending_bytes as usize <= bound, "{s:?}");
    }

    /// The bound is real memory: records arriving one per 10 ms (each message closed for its
    /// age would be one small message) with the logger away hold no more than the bound.
    #[test]
    fn a_long_outage_at_a_low_rate_stays_within_the_bound() {
        let bound = 1 << 20;
        let mut q = LogQueue::new(0, bound, 0);
        let buf = vec![3u8; 64];
        for _ in 0..100_000 {
            q.forward(&buf, 64, &meta_for(&[64]), 1, 1).unwrap();
            q.flush_due();
        }
        let s = q.stats();
        let held: usize = q
            .pending
            .iter()
            .map(|(m, _)| m.capacity() + PER_MESSAGE)
            .sum::<usize>()
            + q.open.capacity();
        assert_eq!(
            held as u64, s.pending_bytes,
            "the bound counts what is allocated"
        );
        assert!(held <= bound, "{held} bytes held for a {bound}-byte bound");
        assert_eq!(s.pending_packets + s.dropped, 100_000);
        assert!(
            q.pending.len() < 40,
            "{} messages: they should be large",
            q.pending.len()
        );
    }
}
