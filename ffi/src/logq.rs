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

use crate::error::{Error, Result};
use crate::sock::{self, Kind};
use crate::udp::META_LEN;
use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// "GSWQ" little-endian: first word of every queue message.
pub const MAGIC: u32 = u32::from_le_bytes(*b"GSWQ");
pub const VERSION: u16 = 1;
/// Message header: magic u32, version u16, record count u16, source u16, reserved 6 bytes.
pub const MESSAGE_HEADER_LEN: usize = 16;
/// Record header: timestamp_ns u64, orig_len u32, len u32, src_ip [u8; 4], src_port u16,
/// dst_port u16, flags u16, source u16, reserved u32; then `len` payload bytes padded to 8.
pub const RECORD_HEADER_LEN: usize = 32;
/// Largest message sent; the logger's receive buffer must hold one.
pub const MAX_MESSAGE: usize = 128 * 1024;
/// Send buffer asked of the kernel for the queue socket.
pub const SOCKET_BUFFER: u32 = 32 << 20;

/// Counters of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Packets handed to the kernel for the logger.
    pub sent: u64,
    /// Packets dropped because the kernel buffer and the queue's own buffer were both full
    /// (or no logger was connected and the buffer filled).
    pub dropped: u64,
    /// Bytes waiting in the queue's own buffer.
    pub pending_bytes: u64,
    /// Packets waiting in the queue's own buffer.
    pub pending_packets: u64,
}

pub struct LogQueue {
    fd: Option<OwnedFd>,
    source: u16,
    max_pending: usize,
    /// Messages the kernel could not take yet, oldest first, with their packet counts.
    pending: VecDeque<(Vec<u8>, u32)>,
    stats: QueueStats,
}

fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

impl LogQueue {
    /// A queue tagging its records with `source`, buffering up to `max_pending` bytes itself.
    pub fn new(source: u16, max_pending: usize) -> LogQueue {
        LogQueue {
            fd: None,
            source,
            max_pending,
            pending: VecDeque::new(),
            stats: QueueStats::default(),
        }
    }

    /// Connects to the logger's socket (replacing any previous connection).
    pub fn connect(&mut self, path: &Path) -> Result<()> {
        let fd = sock::connect(path, Kind::SeqPacket)?;
        // Best effort: a smaller buffer only means the queue's own buffer fills sooner.
        let _ = sock::set_buffer(fd.as_fd(), SOCKET_BUFFER, true);
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
        self.stats
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
        let mut msg = Vec::new();
        let mut count = 0u32;
        for i in 0..n {
            let m = &meta[i * META_LEN..(i + 1) * META_LEN];
            let len = (u32::from_le_bytes(m[0..4].try_into().unwrap()) as usize).min(slot);
            let record = RECORD_HEADER_LEN + pad8(len);
            if count > 0 && (msg.len() + record > MAX_MESSAGE || count == u16::MAX as u32) {
                dropped += self.enqueue(std::mem::take(&mut msg), count);
                count = 0;
            }
            if msg.is_empty() {
                msg.reserve(MESSAGE_HEADER_LEN + (n - i) * (RECORD_HEADER_LEN + 64));
                msg.extend_from_slice(&MAGIC.to_le_bytes());
                msg.extend_from_slice(&VERSION.to_le_bytes());
                msg.extend_from_slice(&0u16.to_le_bytes()); // count, filled in by enqueue
                msg.extend_from_slice(&self.source.to_le_bytes());
                msg.extend_from_slice(&[0u8; 6]);
            }
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
            count += 1;
        }
        if count > 0 {
            dropped += self.enqueue(msg, count);
        }
        Ok(dropped)
    }

    /// Sends or buffers one message; returns the packets dropped (0 or `count`).
    fn enqueue(&mut self, mut msg: Vec<u8>, count: u32) -> u64 {
        msg[6..8].copy_from_slice(&(count as u16).to_le_bytes());
        if self.pending.is_empty() && self.try_send(&msg) {
            self.stats.sent += count as u64;
            return 0;
        }
        if self.stats.pending_bytes as usize + msg.len() > self.max_pending {
            self.stats.dropped += count as u64;
            return count as u64;
        }
        self.stats.pending_bytes += msg.len() as u64;
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
            self.stats.pending_bytes -= msg.len() as u64;
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
        let mut q = LogQueue::new(3, 1 << 20);
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
        let mut q = LogQueue::new(0, 1 << 20);
        let buf = vec![7u8; 64];
        for _ in 0..10 {
            q.forward(&buf, 64, &meta_for(&[64]), 1, 1).unwrap();
        }
        assert_eq!(q.stats().pending_packets, 10);
        let (a, b) = sock::pair(Kind::SeqPacket).unwrap();
        q.fd = Some(a);
        assert_eq!(q.flush(), 0);
        let mut rx = vec![0u8; MAX_MESSAGE];
        let mut got = 0;
        while let Received::Message(_, _) = sock::recv(b.as_fd(), &mut rx).unwrap() {
            got += 1;
        }
        assert_eq!(got, 10);
        assert_eq!(q.stats().sent, 10);
    }

    #[test]
    fn drops_and_counts_when_full() {
        let mut q = LogQueue::new(0, 1000);
        let buf = vec![1u8; 400];
        for _ in 0..5 {
            q.forward(&buf, 400, &meta_for(&[400]), 1, 1).unwrap();
        }
        let s = q.stats();
        assert_eq!(s.pending_packets + s.dropped, 5);
        assert!(s.dropped >= 3);
    }
}
