//! gsw's own channel (`gsw-ffi`, crate `gsw`) in the benchmark harness:
//!
//! - [`GswWake`]: one gsw segment (one channel, one doorbell) as a [`WakeMechanism`], so its
//!   wake latency is measured by [`crate::wake::measure`] interleaved with a raw eventfd and
//!   the old scheme in the same run. The reader does what every gsw reader does: take; if
//!   nothing is new, `SegmentReader::wait` (which clears the segment's awake word, re-checks,
//!   sleeps on the doorbell, drains it and marks the reader awake again).
//! - [`GswDrainFirstWake`]: a measured proposal, not gsw's code: the same segment and the
//!   same awake-word protocol, but the doorbell drained *before* sleeping instead of after
//!   waking. After a wake-up the reader takes the value at once (`take`); before sleeping it
//!   drains the doorbell and clears the pending bits (`take_pending`, taking anything that
//!   arrived), then clears the awake word and re-checks (`ControlWords::prepare_to_sleep`),
//!   then `poll`s. `SegmentReader::wait` (and `take_pending` after a waitset wake) put the
//!   drain, a syscall, on the wake-up path.
//! - [`FloorChannels`]: the protocol floor for a publish or a take: the design's one copy and
//!   one atomic swap per operation, written by hand with no checks, in the same kind of shared
//!   memory. gsw's publish and take are compared with it in the same run.
//! - [`pair`] / [`dup_fds`]: a writer and a reader attached to it in one process (before a
//!   `fork()`), or the writer's descriptors for another process.

use crate::clock::Deadline;
use crate::payload;
use crate::shm::SharedMem;
use crate::wake::WakeMechanism;
use gsw::segment::{SegmentReader, SegmentWriter};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A gsw error as an `io::Error` (keeps the message; errno codes stay errno codes).
pub fn io_err(e: gsw::error::Error) -> io::Error {
    if (1..1000).contains(&e.code) {
        io::Error::new(
            io::Error::from_raw_os_error(e.code).kind(),
            format!("gsw: {}", e.message),
        )
    } else {
        io::Error::other(format!("gsw: {}", e.message))
    }
}

/// Close-on-exec duplicates of a writer's three descriptors (data memfd, control memfd,
/// doorbell), as a reader in another process would receive them.
pub fn dup_fds(w: &SegmentWriter) -> io::Result<[OwnedFd; 3]> {
    let fds = w
        .fds()
        .ok_or_else(|| io::Error::other("gsw: the writer already released its descriptors"))?;
    let dup = |fd: RawFd| -> io::Result<OwnedFd> {
        // SAFETY: F_DUPFD_CLOEXEC on a descriptor the writer keeps open; the result is new.
        let r = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `r` was just returned by fcntl and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(r) })
    };
    Ok([dup(fds[0])?, dup(fds[1])?, dup(fds[2])?])
}

/// A segment of `channels` channels of `capacity` bytes and a reader attached to it.
pub fn pair(channels: usize, capacity: u32) -> io::Result<(SegmentWriter, SegmentReader)> {
    let caps = vec![capacity; channels];
    let ids: Vec<u32> = (0..channels as u32).collect();
    let w = SegmentWriter::create(&caps, &ids).map_err(io_err)?;
    let [d, c, e] = dup_fds(&w)?;
    let r = SegmentReader::attach(d, c, e).map_err(io_err)?;
    Ok((w, r))
}

fn timeout_ms(left: Duration) -> i32 {
    i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX)
}

/// gsw's channel as a wake-up mechanism: `publish` is `SegmentWriter::publish` (which rings
/// the doorbell only when the reader had taken everything and may be asleep), `wait_read` is
/// the reader's take / `SegmentReader::wait` loop.
pub struct GswWake {
    w: SegmentWriter,
    r: SegmentReader,
    size: usize,
    last: u64,
}

impl GswWake {
    /// A one-channel segment carrying `payload_size`-byte payloads.
    pub fn new(payload_size: usize) -> io::Result<Self> {
        let cap = u32::try_from(payload_size).map_err(|_| io::Error::other("payload too large"))?;
        let (w, r) = pair(1, cap)?;
        Ok(Self {
            w,
            r,
            size: payload_size,
            last: 0,
        })
    }

    /// Takes the channel's value if it is newer than the last one; copies it into `out`.
    fn take_into(&mut self, out: &mut [u8]) -> io::Result<bool> {
        match self.r.take(0).map_err(io_err)? {
            Some((h, data)) if h.seq > self.last => {
                if data.len() != self.size {
                    return Err(io::Error::other(format!(
                        "gsw: value of {} bytes, expected {}",
                        data.len(),
                        self.size
                    )));
                }
                out[..self.size].copy_from_slice(data);
                self.last = h.seq;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The writer's counters: (publishes, doorbell rings).
    pub fn writer_stats(&self) -> (u64, u64) {
        let s = self.w.stats();
        (s.publishes, s.rings)
    }
}

impl WakeMechanism for GswWake {
    fn name(&self) -> &str {
        "gsw_wake"
    }

    fn publish(&mut self, p: &[u8]) -> io::Result<()> {
        self.w
            .publish(0, p, payload::seq(p), payload::stamp_of(p))
            .map_err(io_err)
    }

    fn wait_read(&mut self, out: &mut [u8], timeout: Duration) -> io::Result<()> {
        let deadline = Deadline::after(timeout);
        loop {
            if self.take_into(out)? {
                return Ok(());
            }
            // `wait` re-checks for a value after clearing the awake word and before sleeping,
            // so a publish between the take above and the sleep is not missed.
            let Some(left) = deadline.remaining() else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "gsw: no value after seq {} within {timeout:?} (lost wake-up?)",
                        self.last
                    ),
                ));
            };
            self.r.wait(timeout_ms(left)).map_err(io_err)?;
        }
    }
}

/// gsw's channel with the doorbell drained before sleeping rather than after waking (see the
/// module docs): `publish` is `SegmentWriter::publish`, as in [`GswWake`].
pub struct GswDrainFirstWake {
    w: SegmentWriter,
    r: SegmentReader,
    words: gsw::segment::ControlWords,
    size: usize,
    last: u64,
}

impl GswDrainFirstWake {
    /// A one-channel segment carrying `payload_size`-byte payloads.
    pub fn new(payload_size: usize) -> io::Result<Self> {
        let cap = u32::try_from(payload_size).map_err(|_| io::Error::other("payload too large"))?;
        let (w, r) = pair(1, cap)?;
        let words = r.control_words();
        Ok(Self {
            w,
            r,
            words,
            size: payload_size,
            last: 0,
        })
    }
}

impl WakeMechanism for GswDrainFirstWake {
    fn name(&self) -> &str {
        "gsw_drain_first_wake"
    }

    fn publish(&mut self, p: &[u8]) -> io::Result<()> {
        self.w
            .publish(0, p, payload::seq(p), payload::stamp_of(p))
            .map_err(io_err)
    }

    fn wait_read(&mut self, out: &mut [u8], timeout: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let deadline = Deadline::after(timeout);
        loop {
            // After a wake-up: the value at once, no syscall first.
            match self.r.take(0).map_err(io_err)? {
                Some((h, d)) if h.seq > self.last => {
                    out[..self.size].copy_from_slice(d);
                    self.last = h.seq;
                    return Ok(());
                }
                _ => {}
            }
            // Before sleeping: drain the doorbell and clear the pending bits, taking anything
            // that arrived since the take above.
            let (size, last) = (self.size, self.last);
            let mut got = 0;
            self.r.take_pending(
                |_| true,
                |_, h, d| {
                    if h.seq > last {
                        out[..size].copy_from_slice(d);
                        got = h.seq;
                    }
                },
            );
            if got > 0 {
                self.last = got;
                return Ok(());
            }
            // Clear the awake word and re-check the pending bits; sleep only if nothing arrived
            // meanwhile (a ring after the drain above leaves the doorbell readable).
            if self.words.prepare_to_sleep() {
                self.words.woke();
                continue;
            }
            let Some(left) = deadline.remaining() else {
                self.words.woke();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "gsw (drain first): no value after seq {} within {timeout:?} (lost wake-up?)",
                        self.last
                    ),
                ));
            };
            let mut pfd = libc::pollfd {
                fd: self.r.doorbell().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms(left)) };
            let err = io::Error::last_os_error();
            self.words.woke();
            if rc < 0 && err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
    }
}

/// Set in a floor control word when the back slot holds a value not taken yet (as gsw's).
const FLOOR_FRESH: u64 = 1 << 2;
/// Bytes before a floor slot's payload: seq u64, timestamp u64, length u32 (as gsw's slots).
const FLOOR_SLOT_HEADER: usize = 32;

/// The floor under gsw's publish and take: `channels` triple buffers in one shared mapping,
/// each operation exactly one copy and one atomic swap (plus one relaxed load for a take),
/// with no bounds checks, no error values and no bookkeeping. Single-threaded; the same
/// layout rules as gsw (control words on their own cache lines, slots cache-line aligned).
pub struct FloorChannels {
    shm: SharedMem,
    channels: usize,
    capacity: usize,
    stride: usize,
    slots_at: usize,
    writer_slot: Vec<u8>,
    reader_slot: Vec<u8>,
}

impl FloorChannels {
    /// `channels` channels of `capacity` payload bytes.
    pub fn new(channels: usize, capacity: usize) -> io::Result<Self> {
        let stride = (FLOOR_SLOT_HEADER + capacity).div_ceil(64) * 64;
        let slots_at = channels * 64;
        let shm = SharedMem::create("gsw-bench-floor", slots_at + channels * 3 * stride)?;
        for ch in 0..channels {
            // Relaxed: single-threaded setup; slot 1 is the back slot, nothing fresh.
            shm.atomic_u64(ch * 64).store(1, Ordering::Relaxed);
        }
        Ok(Self {
            shm,
            channels,
            capacity,
            stride,
            slots_at,
            writer_slot: vec![0; channels],
            reader_slot: vec![2; channels],
        })
    }

    fn control(&self, ch: usize) -> &AtomicU64 {
        self.shm.atomic_u64(ch * 64)
    }

    fn slot_ptr(&self, ch: usize, slot: u8) -> *mut u8 {
        let at = self.slots_at + (ch * 3 + slot as usize) * self.stride;
        debug_assert!(at + self.stride <= self.shm.len());
        // SAFETY: `ch < channels` and `slot <= 2` (callers and the masks below guarantee it),
        // so the offset lies inside the mapping sized for channels * 3 slots.
        unsafe { self.shm.as_ptr().add(at) }
    }

    /// Publishes `payload` (at most `capacity` bytes) on channel `ch` (< `channels`).
    #[inline]
    pub fn publish(&mut self, ch: usize, payload: &[u8], seq: u64, timestamp_ns: u64) {
        debug_assert!(ch < self.channels && payload.len() <= self.capacity);
        let mine = self.writer_slot[ch];
        let p = self.slot_ptr(ch, mine);
        // SAFETY: the writer owns slot `mine` until the swap below; the slot holds the header
        // and `capacity >= payload.len()` bytes.
        unsafe {
            (p as *mut u64).write(seq);
            (p.add(8) as *mut u64).write(timestamp_ns);
            (p.add(16) as *mut u32).write(payload.len() as u32);
            std::ptr::copy_nonoverlapping(
                payload.as_ptr(),
                p.add(FLOOR_SLOT_HEADER),
                payload.len(),
            );
        }
        // AcqRel, as gsw's publish: Release publishes the slot, Acquire takes back the slot
        // the reader released.
        let old = self
            .control(ch)
            .swap(u64::from(mine) | FLOOR_FRESH, Ordering::AcqRel);
        self.writer_slot[ch] = (old & 3) as u8;
    }

    /// Takes channel `ch`'s newest value into `out` if there is a new one; returns its
    /// sequence number.
    #[inline]
    pub fn take(&mut self, ch: usize, out: &mut [u8]) -> Option<u64> {
        // Relaxed early-out, as gsw's acquire.
        if self.control(ch).load(Ordering::Relaxed) & FLOOR_FRESH == 0 {
            return None;
        }
        let held = self.reader_slot[ch];
        // AcqRel, as gsw's acquire.
        let old = self.control(ch).swap(u64::from(held), Ordering::AcqRel);
        let slot = (old & 3) as u8;
        self.reader_slot[ch] = slot;
        let p = self.slot_ptr(ch, slot);
        // SAFETY: the reader owns `slot` now; the length is clamped to the slot's capacity and
        // to `out`.
        unsafe {
            let seq = (p as *const u64).read();
            let len = ((p.add(16) as *const u32).read() as usize)
                .min(self.capacity)
                .min(out.len());
            std::ptr::copy_nonoverlapping(p.add(FLOOR_SLOT_HEADER), out.as_mut_ptr(), len);
            Some(seq)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_behaves_like_a_triple_buffer() {
        let mut f = FloorChannels::new(2, 64).unwrap();
        let mut out = [0u8; 64];
        assert_eq!(f.take(1, &mut out), None);
        for s in 1..=3u64 {
            let mut p = [0u8; 64];
            payload::fill(&mut p, s);
            f.publish(1, &p, s, 0);
        }
        assert_eq!(f.take(1, &mut out), Some(3));
        assert_eq!(payload::check(&out).unwrap().0, 3);
        assert_eq!(f.take(1, &mut out), None);
        assert_eq!(f.take(0, &mut out), None);
    }

    #[test]
    fn gsw_drain_first_wake_in_one_process() {
        let mut g = GswDrainFirstWake::new(64).unwrap();
        let mut p = [0u8; 64];
        let mut out = [0u8; 64];
        for seq in 1..=2 {
            payload::fill(&mut p, seq);
            g.publish(&p).unwrap();
            g.wait_read(&mut out, Duration::from_secs(1)).unwrap();
            assert_eq!(payload::check(&out).unwrap().0, seq);
        }
        let e = g
            .wait_read(&mut out, Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn gsw_wake_in_one_process() {
        let mut g = GswWake::new(64).unwrap();
        let mut p = [0u8; 64];
        payload::fill(&mut p, 1);
        g.publish(&p).unwrap();
        let mut out = [0u8; 64];
        g.wait_read(&mut out, Duration::from_secs(1)).unwrap();
        assert_eq!(payload::check(&out).unwrap().0, 1);
        let e = g
            .wait_read(&mut out, Duration::from_millis(20))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
