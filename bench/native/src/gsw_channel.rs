//! gsw's own channel (`gsw-ffi`, crate `gsw`) in the benchmark harness:
//!
//! - [`GswWake`]: one gsw segment (one channel, one doorbell) as a [`WakeMechanism`], so its
//!   wake latency is measured by [`crate::wake::measure`] interleaved with a raw eventfd and
//!   the old scheme in the same run. The reader follows the channel's sleep protocol exactly:
//!   take; if nothing, drain the doorbell, take again; if still nothing, `SegmentReader::wait`.
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
/// the doorbell only when the reader had taken everything), `wait_read` is the reader's
/// take / drain / take / `SegmentReader::wait` loop.
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
            // The sleep protocol: drain, re-check, then sleep. A ring after the drain keeps
            // the doorbell readable; a publish before it is seen by the re-check.
            self.r.drain_doorbell();
            if self.take_into(out)? {
                return Ok(());
            }
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

/// Offsets in a [`SleepFlagChannel`]'s mapping.
const SF_CONTROL: usize = 0;
const SF_ASLEEP: usize = 64;
const SF_SLOTS: usize = 128;

/// A measured proposal, not gsw: the protocol floor for one channel plus a *reader-asleep*
/// flag, so the writer rings the doorbell only for a reader that is really going to sleep.
///
/// gsw's writer rings whenever its swap finds FRESH clear, i.e. whenever the reader has taken
/// everything, asleep or not; a reader that keeps up while awake then costs the writer one
/// eventfd `write` per value it takes. Here the reader, before sleeping, stores `asleep = 1`
/// and re-checks FRESH (both SeqCst); the writer, after its swap, rings only if FRESH was
/// clear *and* `asleep` is set (SeqCst load). In the single total order of SeqCst operations
/// either the reader's re-check sees the publish, or the writer's load sees the flag: no
/// wake-up is lost; a stale flag only costs a spurious ring, which the reader's next blocking
/// read absorbs.
pub struct SleepFlagChannel {
    shm: SharedMem,
    efd: crate::sys::EventFd,
    size: usize,
    stride: usize,
    writer_slot: u8,
    reader_slot: u8,
    last: u64,
    rings: u64,
}

impl SleepFlagChannel {
    /// One channel carrying `payload_size`-byte payloads.
    pub fn new(payload_size: usize) -> io::Result<Self> {
        let stride = (FLOOR_SLOT_HEADER + payload_size).div_ceil(64) * 64;
        let shm = SharedMem::create("gsw-bench-sleepflag", SF_SLOTS + 3 * stride)?;
        // Relaxed: nobody else sees the mapping yet (it is shared by a later fork).
        shm.atomic_u64(SF_CONTROL).store(1, Ordering::Relaxed);
        Ok(Self {
            shm,
            efd: crate::sys::EventFd::new()?,
            size: payload_size,
            stride,
            writer_slot: 0,
            reader_slot: 2,
            last: 0,
            rings: 0,
        })
    }

    fn control(&self) -> &AtomicU64 {
        self.shm.atomic_u64(SF_CONTROL)
    }

    fn asleep(&self) -> &std::sync::atomic::AtomicU32 {
        self.shm.atomic_u32(SF_ASLEEP)
    }

    fn slot_ptr(&self, slot: u8) -> *mut u8 {
        // SAFETY: slot <= 2 (masked by callers) and the mapping holds three strides after
        // SF_SLOTS.
        unsafe {
            self.shm
                .as_ptr()
                .add(SF_SLOTS + slot as usize * self.stride)
        }
    }

    /// Doorbell rings so far by this (writer's) handle.
    pub fn rings(&self) -> u64 {
        self.rings
    }

    /// Writer: publishes `payload` (`payload_size` bytes) and rings only a sleeping reader.
    pub fn publish_value(&mut self, payload: &[u8], seq: u64, timestamp_ns: u64) -> io::Result<()> {
        let n = payload.len().min(self.size);
        let p = self.slot_ptr(self.writer_slot);
        // SAFETY: the writer owns its slot until the swap below; the slot holds the header
        // and `size >= n` payload bytes.
        unsafe {
            (p as *mut u64).write(seq);
            (p.add(8) as *mut u64).write(timestamp_ns);
            (p.add(16) as *mut u32).write(n as u32);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), p.add(FLOOR_SLOT_HEADER), n);
        }
        // SeqCst (an AcqRel RMW that is also in the total order): publishes the slot and
        // orders this swap before the load of `asleep` below (the Dekker pair).
        let old = self
            .control()
            .swap(u64::from(self.writer_slot) | FLOOR_FRESH, Ordering::SeqCst);
        self.writer_slot = (old & 3) as u8;
        // SeqCst: the writer's half of the pair (see the type's docs).
        if old & FLOOR_FRESH == 0 && self.asleep().load(Ordering::SeqCst) != 0 {
            self.rings += 1;
            self.efd.write(1)?;
        }
        Ok(())
    }

    /// Reader: takes a value newer than the last one into `out`; returns its sequence number.
    pub fn take_newer(&mut self, out: &mut [u8]) -> Option<u64> {
        // Relaxed early-out, as gsw's acquire.
        if self.control().load(Ordering::Relaxed) & FLOOR_FRESH == 0 {
            return None;
        }
        // AcqRel: acquires the writer's slot, releases ours.
        let old = self
            .control()
            .swap(u64::from(self.reader_slot), Ordering::AcqRel);
        self.reader_slot = (old & 3) as u8;
        let p = self.slot_ptr(self.reader_slot);
        // SAFETY: the reader owns this slot now; the length is clamped to the slot and `out`.
        let seq = unsafe {
            let n = ((p.add(16) as *const u32).read() as usize)
                .min(self.size)
                .min(out.len());
            std::ptr::copy_nonoverlapping(p.add(FLOOR_SLOT_HEADER), out.as_mut_ptr(), n);
            (p as *const u64).read()
        };
        (seq > self.last).then(|| {
            self.last = seq;
            seq
        })
    }

    /// Reader: announces it is going to sleep, re-checks, then blocks on the doorbell (a
    /// blocking eventfd `read`, which also drains it). Returns at once if a value arrived.
    pub fn sleep(&mut self) -> io::Result<()> {
        // SeqCst store then SeqCst load: the reader's half of the Dekker pair.
        self.asleep().store(1, Ordering::SeqCst);
        if self.control().load(Ordering::SeqCst) & FLOOR_FRESH == 0 {
            self.efd.read()?;
        }
        // Relaxed: a stale 1 seen by the writer only costs one spurious ring.
        self.asleep().store(0, Ordering::Relaxed);
        Ok(())
    }
}

impl WakeMechanism for SleepFlagChannel {
    fn name(&self) -> &str {
        "sleepflag_wake"
    }

    fn publish(&mut self, p: &[u8]) -> io::Result<()> {
        self.publish_value(p, payload::seq(p), payload::stamp_of(p))
    }

    fn wait_read(&mut self, out: &mut [u8], _timeout: Duration) -> io::Result<()> {
        // The blocking read carries no timeout: the caller's watchdog covers a lost wake-up.
        loop {
            if self.take_newer(out).is_some() {
                return Ok(());
            }
            self.sleep()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_flag_channel_rings_only_a_sleeper() {
        let mut c = SleepFlagChannel::new(64).unwrap();
        let mut p = [0u8; 64];
        payload::fill(&mut p, 1);
        c.publish(&p).unwrap();
        assert_eq!(c.rings(), 0, "nobody asleep: no ring");
        let mut out = [0u8; 64];
        assert_eq!(c.take_newer(&mut out), Some(1));
        // Flag set as a sleeper would: the next publish that finds FRESH clear rings.
        c.asleep().store(1, Ordering::SeqCst);
        payload::fill(&mut p, 2);
        c.publish(&p).unwrap();
        assert_eq!(c.rings(), 1);
        c.sleep().unwrap(); // FRESH is set: returns at once
        assert_eq!(c.take_newer(&mut out), Some(2));
        assert_eq!(payload::check(&out).unwrap().0, 2);
    }

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
