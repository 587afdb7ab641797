//! Broadcast segments: one writer (decom), any number of readers it never learns about.
//!
//! A broadcast segment carries, for one data source:
//! - the **latest value of every measurement**, each in a latch of two slots (see
//!   `broadcast_protocol`), so a subscriber reads decom's values directly: no broker hop, no
//!   copy per reader on the writer's side, no torn values;
//! - an **every-packet ring**: each datagram decom received, in order, with its metadata and
//!   the packet type decom identified, for readers that need every sample (dashboard plots,
//!   bridges); a reader that falls more than the ring behind loses the oldest records and
//!   counts exactly how many;
//! - **bells**: eventfds grouping what changes together (a packet type's measurements, the
//!   health values, the ring), rung at most once per batch and only when some reader may be
//!   asleep. Readers watch them edge-triggered and never read them, so one write wakes every
//!   reader of the bell and no reader can take a wake-up from another.
//!
//! Two memfds: the *data* memfd (header, channel table, latest words, bell generations, ring
//! positions, slots, ring bytes) is written by the writer only and sealed against any new
//! writable mapping, so readers map it read-only; the *control* memfd holds the one word per
//! bell that readers write (its sleepers count). Both are sealed against shrinking and
//! growing. Unlike a point-to-point segment, the writer keeps its descriptors for its whole
//! life, to hand them to any reader that asks.

use crate::broadcast_protocol::{self as bp, AtomicU64, Ordering};
use crate::error::{code, Error, Result};
use crate::segment::{write_record, SampleHeader, CACHE_LINE};
use crate::sys::{self, Mapping};
use crate::udp::META_LEN;
use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;

/// "GSWBCST\0": first word of a broadcast data memfd.
pub const DATA_MAGIC: u64 = u64::from_le_bytes(*b"GSWBCST\0");
/// "GSWBCTL\0": first word of a broadcast control memfd.
pub const CTRL_MAGIC: u64 = u64::from_le_bytes(*b"GSWBCTL\0");
/// Bumped whenever the layout changes; readers refuse other versions.
pub const LAYOUT_VERSION: u32 = 1;

const HEADER_LEN: usize = 128;
/// Channel table entry: capacity u32, id u32, bell u32, reserved u32.
const ENTRY_LEN: usize = 16;
/// Bytes before a slot's payload: stamp, version, seq, timestamp, length (u64 each).
pub const SLOT_HEADER_LEN: usize = 40;
/// Bytes of a ring record's header (see `RingRecord`); the payload follows, padded to 8.
pub const RECORD_LEN: usize = 56;
/// Largest value one channel carries.
pub const MAX_CAPACITY: u32 = 1 << 20;
pub const MAX_CHANNELS: u32 = 1 << 16;
pub const MAX_BELLS: u32 = 4096;
/// Ring sizes: a power of two, room for several of the largest records.
pub const MIN_RING: usize = 1 << 18;
pub const MAX_RING: usize = 1 << 30;
/// Largest payload a ring record stores (one receive slot).
pub const MAX_RECORD_PAYLOAD: usize = 65536;
/// Beside the ring's head on its cache line: the records written so far, and the stamp that
/// makes the pair consistent.
const RECORDS: usize = 8;
const COMMIT_STAMP: usize = 16;
/// Bytes of a pad record's header (position, number, length and kind). A gap at the ring's
/// end too short for it holds no header: readers skip any gap shorter than this.
const PAD_HEADER_LEN: usize = 24;
/// Record kinds.
const KIND_DATAGRAM: u64 = 1;
const KIND_PAD: u64 = 2;
/// `packet` of a ring record whose datagram matched no packet type.
pub const NO_PACKET: u32 = u32::MAX;

// Data header fields.
const H_MAGIC: usize = 0;
const H_VERSION: usize = 8;
const H_CHANNELS: usize = 12;
const H_BELLS: usize = 16;
const H_RING_BELL: usize = 20;
const H_RING_SIZE: usize = 24;
const H_DATA_LEN: usize = 32;
const H_CTRL_LEN: usize = 40;
const H_PID: usize = 48;
const H_READY: usize = 52;
const H_LINK: usize = 56;
// Control header fields.
const C_MAGIC: usize = 0;
const C_VERSION: usize = 8;
const C_BELLS: usize = 12;
const C_LEN: usize = 16;
const C_LINK: usize = 24;
const C_READY: usize = 32;
const C_SLEEPERS_AT: usize = 64;

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Bytes between the two slots of a channel of `capacity` payload bytes.
const fn slot_stride(capacity: u32) -> usize {
    round_up(SLOT_HEADER_LEN + round_up(capacity as usize, 8), CACHE_LINE)
}

/// Where everything lives, computed from the channel table alone (both sides compute it; the
/// reader checks the writer's header against it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    latest_at: usize,
    gens_at: usize,
    head_at: usize,
    intent_at: usize,
    tail_at: usize,
    offsets: Vec<usize>,
    ring_at: usize,
    ring_size: usize,
    data_len: usize,
    ctrl_len: usize,
}

impl Layout {
    fn new(capacities: &[u32], bell_of: &[u32], bells: u32, ring_size: usize) -> Result<Layout> {
        let n = capacities.len();
        if n > MAX_CHANNELS as usize || bell_of.len() != n {
            return Err(Error::arg(format!(
                "a broadcast segment holds up to {MAX_CHANNELS} channels, each with a bell"
            )));
        }
        if bells == 0 || bells > MAX_BELLS {
            return Err(Error::arg(format!(
                "a broadcast segment has 1 to {MAX_BELLS} bells, not {bells}"
            )));
        }
        if !(MIN_RING..=MAX_RING).contains(&ring_size) || !ring_size.is_power_of_two() {
            return Err(Error::arg(format!(
                "the packet ring must be a power of two from {} KiB to {} MiB, not {ring_size} bytes",
                MIN_RING >> 10,
                MAX_RING >> 20
            )));
        }
        let latest_at = round_up(HEADER_LEN + n * ENTRY_LEN, CACHE_LINE);
        let gens_at = round_up(latest_at + n * 8, CACHE_LINE);
        let head_at = gens_at + bells as usize * CACHE_LINE;
        let intent_at = head_at + CACHE_LINE;
        let tail_at = intent_at + CACHE_LINE;
        let mut at = tail_at + CACHE_LINE;
        let mut offsets = Vec::with_capacity(n);
        for (i, (&cap, &bell)) in capacities.iter().zip(bell_of).enumerate() {
            if cap > MAX_CAPACITY {
                return Err(Error::arg(format!(
                    "channel {i} asks for {cap} bytes; a channel carries at most {MAX_CAPACITY}"
                )));
            }
            if bell >= bells {
                return Err(Error::arg(format!(
                    "channel {i} rings bell {bell}; there are {bells}"
                )));
            }
            offsets.push(at);
            at += 2 * slot_stride(cap);
        }
        let ring_at = round_up(at, 4096);
        Ok(Layout {
            latest_at,
            gens_at,
            head_at,
            intent_at,
            tail_at,
            offsets,
            ring_at,
            ring_size,
            data_len: ring_at + ring_size,
            ctrl_len: C_SLEEPERS_AT + bells as usize * CACHE_LINE,
        })
    }

    fn sleepers_at(bell: u32) -> usize {
        C_SLEEPERS_AT + bell as usize * CACHE_LINE
    }
}

/// The atomic u64 at `base + off`.
///
/// # Safety
/// `base + off` must be 8-byte aligned inside a mapping that outlives `'a`.
unsafe fn word<'a>(base: *mut u8, off: usize) -> &'a AtomicU64 {
    // SAFETY: aligned and live per the caller; AtomicU64 has the layout of u64.
    unsafe { &*(base.add(off) as *const AtomicU64) }
}

/// Copies `src` into shared memory at `dst` as whole 8-byte words (the last one zero-padded),
/// with relaxed atomic stores: readers copy concurrently, and only the protocol's stamps and
/// positions decide whether what they copied counts.
///
/// # Safety
/// `dst` must be 8-byte aligned with `round_up(src.len(), 8)` writable bytes in a live mapping.
unsafe fn store_words(dst: *mut u8, src: &[u8]) {
    let mut chunks = src.chunks_exact(8);
    let mut i = 0;
    for c in &mut chunks {
        // SAFETY: in bounds and aligned per the caller.
        unsafe { word(dst, i * 8) }.store(
            u64::from_le_bytes(c.try_into().expect("8 bytes")),
            Ordering::Relaxed,
        );
        i += 1;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        // SAFETY: the padded last word is in bounds per the caller.
        unsafe { word(dst, i * 8) }.store(u64::from_le_bytes(last), Ordering::Relaxed);
    }
}

/// Copies `dst.len()` bytes (rounded up to words, which must fit in `dst`'s backing) out of
/// shared memory with relaxed atomic loads.
///
/// # Safety
/// `src` must be 8-byte aligned with `round_up(dst.len(), 8)` readable bytes in a live mapping.
unsafe fn load_words(dst: &mut [u8], src: *const u8) {
    let n = dst.len();
    let mut i = 0;
    while i < n {
        // SAFETY: in bounds and aligned per the caller.
        let v = unsafe { word(src as *mut u8, i) }.load(Ordering::Relaxed);
        let take = (n - i).min(8);
        dst[i..i + take].copy_from_slice(&v.to_le_bytes()[..take]);
        i += 8;
    }
}

fn random_u64() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: getrandom writes at most 8 bytes into `v`.
    let n = unsafe { libc::getrandom(&mut v as *mut u64 as *mut libc::c_void, 8, 0) };
    if n != 8 {
        v = sys::monotonic_ns() ^ ((std::process::id() as u64) << 32);
    }
    v
}

/// One datagram to append to the ring.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    /// The 32-byte metadata record as `udp::Batch::recv` writes it.
    pub meta: &'a [u8],
    pub payload: &'a [u8],
    /// Destination port (0 for stream sources).
    pub port: u16,
    /// Packet type decom identified, or NO_PACKET.
    pub packet: u32,
}

/// Counters of a broadcast writer, for health reporting and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BroadcastStats {
    pub publishes: u64,
    /// Datagrams appended to the ring.
    pub records: u64,
    /// Eventfd writes.
    pub rings: u64,
}

/// The writing side. Single-threaded: use it from one thread at a time.
pub struct BroadcastWriter {
    data: Mapping,
    ctrl: Mapping,
    layout: Layout,
    capacities: Vec<u32>,
    bell_of: Vec<u32>,
    ring_bell: u32,
    data_fd: OwnedFd,
    ctrl_fd: OwnedFd,
    bells: Vec<OwnedFd>,
    /// Bells touched since the last flush.
    touched: RefCell<Vec<u32>>,
    is_touched: Vec<Cell<bool>>,
    /// Ring position of the next record.
    head: Cell<u64>,
    /// Ring position of the oldest record not overwritten yet.
    tail: Cell<u64>,
    stats: Cell<BroadcastStats>,
    /// When the ring's bell last woke a reader (monotonic ns; 0: never).
    ring_rung_at: Cell<u64>,
    /// A wake-up of the ring's readers held back, due at this time (0: none).
    ring_due_at: Cell<u64>,
}

/// The ring's readers are woken at most once per this interval (1 ms). They are bulk readers
/// (plots drawn per display frame, bridges, writers): at high packet rates one wake-up then
/// covers many receive batches, so decom's cost does not grow with a wake-up (an eventfd write
/// that wakes another process, ~1.7 µs here) per batch. Datagrams arriving further apart than
/// this wake them at once, with no delay.
pub const RING_WAKE_GAP_NS: u64 = 1_000_000;

impl BroadcastWriter {
    /// A segment with one channel per entry of `capacities` (payload bytes), tagged with
    /// `ids`, where channel `i` rings bell `bell_of[i]`; `bells` bells in all, of which
    /// `ring_bell` rings for the packet ring of `ring_size` bytes.
    pub fn create(
        capacities: &[u32],
        ids: &[u32],
        bell_of: &[u32],
        bells: u32,
        ring_bell: u32,
        ring_size: usize,
    ) -> Result<BroadcastWriter> {
        if ids.len() != capacities.len() {
            return Err(Error::arg("channel ids and capacities differ in length"));
        }
        if ring_bell >= bells {
            return Err(Error::arg(format!(
                "the ring's bell {ring_bell} is past the {bells} bells"
            )));
        }
        let layout = Layout::new(capacities, bell_of, bells, ring_size)?;
        let data_fd = sys::memfd(c"gsw-broadcast", layout.data_len)?;
        let ctrl_fd = sys::memfd(c"gsw-broadcast-ctrl", layout.ctrl_len)?;
        let data = Mapping::map(data_fd.as_fd(), layout.data_len, true)?;
        let ctrl = Mapping::map(ctrl_fd.as_fd(), layout.ctrl_len, true)?;
        let link = random_u64();
        let (d, c) = (data.as_ptr(), ctrl.as_ptr());
        let n = capacities.len();
        // SAFETY: every offset is inside the mappings by construction of `layout`, all are
        // suitably aligned (header fields at their natural alignment, entries 4-aligned), and
        // nobody else has these memfds yet.
        unsafe {
            let put32 = |base: *mut u8, off: usize, v: u32| (base.add(off) as *mut u32).write(v);
            let put64 = |base: *mut u8, off: usize, v: u64| (base.add(off) as *mut u64).write(v);
            put64(d, H_MAGIC, DATA_MAGIC);
            put32(d, H_VERSION, LAYOUT_VERSION);
            put32(d, H_CHANNELS, n as u32);
            put32(d, H_BELLS, bells);
            put32(d, H_RING_BELL, ring_bell);
            put64(d, H_RING_SIZE, ring_size as u64);
            put64(d, H_DATA_LEN, layout.data_len as u64);
            put64(d, H_CTRL_LEN, layout.ctrl_len as u64);
            put32(d, H_PID, std::process::id());
            put64(d, H_LINK, link);
            for i in 0..n {
                let at = HEADER_LEN + i * ENTRY_LEN;
                put32(d, at, capacities[i]);
                put32(d, at + 4, ids[i]);
                put32(d, at + 8, bell_of[i]);
            }
            put64(c, C_MAGIC, CTRL_MAGIC);
            put32(c, C_VERSION, LAYOUT_VERSION);
            put32(c, C_BELLS, bells);
            put64(c, C_LEN, layout.ctrl_len as u64);
            put64(c, C_LINK, link);
            // Release: a reader that sees READY (Acquire) sees every header field above.
            (*(d.add(H_READY) as *const std::sync::atomic::AtomicU32))
                .store(1, std::sync::atomic::Ordering::Release);
            (*(c.add(C_READY) as *const std::sync::atomic::AtomicU32))
                .store(1, std::sync::atomic::Ordering::Release);
        }
        sys::add_seals(
            data_fd.as_fd(),
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL,
        )?;
        sys::add_seals(
            ctrl_fd.as_fd(),
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )?;
        let bells_fds = (0..bells)
            .map(|_| sys::eventfd())
            .collect::<Result<Vec<_>>>()?;
        Ok(BroadcastWriter {
            data,
            ctrl,
            layout,
            capacities: capacities.to_vec(),
            bell_of: bell_of.to_vec(),
            ring_bell,
            data_fd,
            ctrl_fd,
            bells: bells_fds,
            touched: RefCell::new(Vec::new()),
            is_touched: (0..bells).map(|_| Cell::new(false)).collect(),
            head: Cell::new(0),
            tail: Cell::new(0),
            stats: Cell::new(BroadcastStats::default()),
            ring_rung_at: Cell::new(0),
            ring_due_at: Cell::new(0),
        })
    }

    pub fn channels(&self) -> usize {
        self.capacities.len()
    }

    pub fn capacity(&self, channel: usize) -> Option<u32> {
        self.capacities.get(channel).copied()
    }

    /// The descriptors to hand a reader: data memfd, control memfd, then every bell. The
    /// writer keeps them open (every reader gets duplicates).
    pub fn fds(&self) -> Vec<RawFd> {
        let mut fds = vec![self.data_fd.as_raw_fd(), self.ctrl_fd.as_raw_fd()];
        fds.extend(self.bells.iter().map(|b| b.as_raw_fd()));
        fds
    }

    pub fn stats(&self) -> BroadcastStats {
        self.stats.get()
    }

    fn d(&self, off: usize) -> &AtomicU64 {
        // SAFETY: callers pass offsets from the layout: aligned, inside the data mapping,
        // which `self` keeps alive.
        unsafe { word(self.data.as_ptr(), off) }
    }

    fn touch(&self, bell: u32) {
        let flag = &self.is_touched[bell as usize];
        if !flag.replace(true) {
            self.touched.borrow_mut().push(bell);
        }
    }

    /// Publishes one value to `channel` without ringing; call [`flush`] after the batch.
    ///
    /// [`flush`]: BroadcastWriter::flush
    #[inline]
    pub fn publish_quiet(
        &self,
        channel: usize,
        payload: &[u8],
        seq: u64,
        timestamp_ns: u64,
    ) -> Result<()> {
        let Some(&cap) = self.capacities.get(channel) else {
            return Err(Error::arg(format!(
                "channel {channel} does not exist (the segment has {})",
                self.capacities.len()
            )));
        };
        if payload.len() > cap as usize {
            return Err(Error::errno(
                libc::EMSGSIZE,
                &format!(
                    "a {}-byte value does not fit channel {channel} ({cap} bytes)",
                    payload.len()
                ),
            ));
        }
        let latest = self.d(self.layout.latest_at + channel * 8);
        let (slot, version) = bp::latch_next(latest);
        let at = self.layout.offsets[channel] + slot * slot_stride(cap);
        let stamp = self.d(at);
        bp::slot_write_begin(stamp);
        self.d(at + 8).store(version, Ordering::Relaxed);
        self.d(at + 16).store(seq, Ordering::Relaxed);
        self.d(at + 24).store(timestamp_ns, Ordering::Relaxed);
        self.d(at + 32)
            .store(payload.len() as u64, Ordering::Relaxed);
        // SAFETY: the payload area is 8-aligned and holds round_up(cap, 8) >= the padded
        // payload, inside the data mapping.
        unsafe { store_words(self.data.as_ptr().add(at + SLOT_HEADER_LEN), payload) };
        bp::slot_write_end(stamp);
        bp::latch_publish(latest, slot, version);
        self.touch(self.bell_of[channel]);
        let mut s = self.stats.get();
        s.publishes += 1;
        self.stats.set(s);
        Ok(())
    }

    /// Appends datagrams to the ring, in order, without ringing.
    pub fn append(&self, datagrams: &[Datagram<'_>]) -> Result<()> {
        let size = self.layout.ring_size as u64;
        // A chunk is reserved, written and committed as one: at most half the ring, so a
        // reader that is keeping up never loses what it has not read yet to one chunk.
        let limit = size / 2;
        let mut i = 0;
        while i < datagrams.len() {
            let start = self.head.get();
            let mut end = start;
            let mut j = i;
            while j < datagrams.len() {
                let need = record_len(datagrams[j].payload.len()) as u64;
                let pad = pad_before(end, need, size);
                if j > i && end + pad + need - start > limit {
                    break;
                }
                end += pad + need;
                j += 1;
            }
            self.advance_tail(end);
            bp::ring_reserve(self.d(self.layout.intent_at), end);
            let mut pos = start;
            let mut stats = self.stats.get();
            for dg in &datagrams[i..j] {
                let need = record_len(dg.payload.len()) as u64;
                let pad = pad_before(pos, need, size);
                if pad >= PAD_HEADER_LEN as u64 {
                    self.write_header(pos, 0, pad, KIND_PAD, None);
                }
                pos += pad;
                stats.records += 1;
                self.write_header(pos, stats.records, need, KIND_DATAGRAM, Some(dg));
                let off = self.layout.ring_at + (pos % size) as usize + RECORD_LEN;
                // SAFETY: `record_len` reserved the padded payload after the header, and the
                // whole record lies before the ring's end (`pad_before` wrapped it otherwise).
                unsafe { store_words(self.data.as_ptr().add(off), dg.payload) };
                pos += need;
            }
            debug_assert_eq!(pos, end);
            self.stats.set(stats);
            // Head and the record count change together under a stamp (a sequence lock, as a
            // latch slot's), so a reader attaching can read both consistently.
            let stamp = self.d(self.layout.head_at + COMMIT_STAMP);
            bp::slot_write_begin(stamp);
            self.d(self.layout.head_at + RECORDS)
                .store(stats.records, Ordering::Relaxed);
            bp::ring_commit(self.d(self.layout.head_at), end);
            bp::slot_write_end(stamp);
            self.head.set(end);
            i = j;
        }
        if !datagrams.is_empty() {
            self.touch(self.ring_bell);
        }
        Ok(())
    }

    /// Before writing up to ring position `end`: moves the published tail past every record
    /// that writing will overwrite, so a reader the ring lapped resumes at the oldest record
    /// still whole (and learns from its number exactly how many it lost).
    fn advance_tail(&self, end: u64) {
        let size = self.layout.ring_size as u64;
        let mut tail = self.tail.get();
        let head = self.head.get();
        while tail < head && tail + size < end {
            let off = (tail % size) as usize;
            if size as usize - off < PAD_HEADER_LEN {
                tail += size - off as u64;
                continue;
            }
            let w2 = self
                .d(self.layout.ring_at + off + 16)
                .load(Ordering::Relaxed);
            // Our own headers: a length of at least 8 always (checked when written).
            tail += (w2 & 0xffff_ffff).max(8);
        }
        if tail != self.tail.get() {
            self.tail.set(tail);
            // Release: a reader that resumes here (Acquire) finds the record's header complete.
            self.d(self.layout.tail_at).store(tail, Ordering::Release);
        }
    }

    /// Writes a ring record's header at ring position `pos`.
    fn write_header(&self, pos: u64, seq: u64, total: u64, kind: u64, dg: Option<&Datagram<'_>>) {
        let at = self.layout.ring_at + (pos % self.layout.ring_size as u64) as usize;
        let w = |off: usize, v: u64| self.d(at + off).store(v, Ordering::Relaxed);
        w(0, pos);
        w(8, seq);
        let Some(dg) = dg else {
            w(16, total | kind << 32);
            return;
        };
        let m = |a: usize, b: usize| &dg.meta[a..b];
        let flags = u16::from_le_bytes(m(22, 24).try_into().expect("2 bytes")) as u64;
        w(16, total | kind << 32 | flags << 48);
        w(
            24,
            u64::from_le_bytes(m(8, 16).try_into().expect("8 bytes")),
        );
        // len (as stored here) | orig_len
        let orig = u32::from_le_bytes(m(4, 8).try_into().expect("4 bytes")) as u64;
        w(32, dg.payload.len() as u64 | orig << 32);
        // src ip (4 bytes as received) | src port | dst port
        let ip = u32::from_le_bytes(m(16, 20).try_into().expect("4 bytes")) as u64;
        let sport = u16::from_le_bytes(m(20, 22).try_into().expect("2 bytes")) as u64;
        w(40, ip | sport << 32 | (dg.port as u64) << 48);
        w(48, dg.packet as u64);
    }

    /// Bumps the generation of every bell touched since the last flush and rings those some
    /// reader may be asleep on. Returns how many rang.
    pub fn flush(&self) -> Result<usize> {
        let mut touched = self.touched.borrow_mut();
        let mut rang = 0;
        for &bell in touched.iter() {
            self.is_touched[bell as usize].set(false);
            bp::bell_touch(self.d(self.layout.gens_at + bell as usize * CACHE_LINE));
            // SAFETY: the sleepers word of an existing bell lies inside the control mapping.
            let sleepers = unsafe { word(self.ctrl.as_ptr(), Layout::sleepers_at(bell)) };
            if bp::bell_may_sleep(sleepers) {
                if bell == self.ring_bell && !self.ring_wake_now() {
                    continue; // held back; flush_due rings it
                }
                sys::eventfd_signal(self.bells[bell as usize].as_fd())?;
                rang += 1;
            }
        }
        touched.clear();
        let mut s = self.stats.get();
        s.rings += rang as u64;
        self.stats.set(s);
        Ok(rang)
    }

    /// Whether the ring's sleeping readers may be woken now; if not, the wake-up is held back
    /// until `RING_WAKE_GAP_NS` after the last one (see [`flush_due`]).
    ///
    /// [`flush_due`]: BroadcastWriter::flush_due
    fn ring_wake_now(&self) -> bool {
        let now = sys::monotonic_ns();
        let due = self.ring_rung_at.get() + RING_WAKE_GAP_NS;
        if self.ring_rung_at.get() == 0 || now >= due {
            self.ring_rung_at.set(now);
            self.ring_due_at.set(0);
            return true;
        }
        if self.ring_due_at.get() == 0 {
            self.ring_due_at.set(due);
        }
        false
    }

    /// Rings a held-back wake-up of the ring's readers when it is due. Returns the
    /// milliseconds until one is due (rounded up), or -1 when none is held back: the writer's
    /// loop waits no longer than that.
    pub fn flush_due(&self) -> Result<i64> {
        let due = self.ring_due_at.get();
        if due == 0 {
            return Ok(-1);
        }
        let now = sys::monotonic_ns();
        if now < due {
            return Ok((due - now).div_ceil(1_000_000) as i64);
        }
        self.ring_due_at.set(0);
        self.ring_rung_at.set(now);
        // The bell's generation was bumped when the records were appended; a reader that has
        // gone to sleep since then counted itself in sleepers first (bell protocol).
        // SAFETY: the sleepers word of an existing bell lies inside the control mapping.
        let sleepers = unsafe { word(self.ctrl.as_ptr(), Layout::sleepers_at(self.ring_bell)) };
        if bp::bell_may_sleep(sleepers) {
            sys::eventfd_signal(self.bells[self.ring_bell as usize].as_fd())?;
            let mut s = self.stats.get();
            s.rings += 1;
            self.stats.set(s);
        }
        Ok(-1)
    }

    /// Appends a whole receive batch to the ring (datagram `i` in `buf` at `i * slot`, its
    /// metadata at `meta[i * META_LEN..]`, identified as `types[i]`), without ringing.
    pub fn append_batch(
        &self,
        buf: &[u8],
        slot: usize,
        meta: &[u8],
        types: &[u32],
        port: u16,
    ) -> Result<()> {
        let n = types.len();
        if slot == 0 || n * slot > buf.len() || n * META_LEN > meta.len() {
            return Err(Error::arg(
                "append_batch: more datagrams than the buffers hold",
            ));
        }
        let mut batch = Vec::with_capacity(n);
        for (i, &packet) in types.iter().enumerate() {
            let m = &meta[i * META_LEN..(i + 1) * META_LEN];
            let len = (u32::from_le_bytes(m[0..4].try_into().expect("4 bytes")) as usize)
                .min(slot)
                .min(MAX_RECORD_PAYLOAD);
            batch.push(Datagram {
                meta: m,
                payload: &buf[i * slot..i * slot + len],
                port,
                packet,
            });
        }
        self.append(&batch)
    }
}

/// Bytes a record of `payload` bytes takes in the ring.
fn record_len(payload: usize) -> usize {
    RECORD_LEN + round_up(payload.min(MAX_RECORD_PAYLOAD), 8)
}

/// Padding needed at `pos` so a record of `need` bytes does not straddle the ring's end.
fn pad_before(pos: u64, need: u64, size: u64) -> u64 {
    let off = pos % size;
    if off + need > size {
        size - off
    } else {
        0
    }
}

#[path = "broadcast_reader.rs"]
mod reader;
pub use reader::{BellWatch, BroadcastReader, RingRead};

#[cfg(all(test, not(loom)))]
#[path = "broadcast_tests.rs"]
mod tests;
