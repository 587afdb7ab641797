//! Segments: the channels of one writer→reader link in shared memory, behind one doorbell.
//!
//! A segment is two memfds and an eventfd:
//! - the *data* memfd holds a header, a table of channel descriptors and every channel's three
//!   slots. Only the writer can write it: it is sealed against shrinking, growing and any new
//!   writable mapping (F_SEAL_FUTURE_WRITE) before a reader ever sees it, so a reader maps it
//!   read-only and can neither corrupt the writer's data nor make it fault.
//! - the *control* memfd holds the words both sides write: the reader's *awake* word on its
//!   own cache line, a pending bitmap, and one control word per channel, each on its own cache
//!   line. It is sealed against shrinking and growing.
//! - the eventfd is the doorbell: the writer rings it at most once per batch, and only when
//!   some channel's reader had taken everything (see `protocol`).
//!
//! Each segment serves exactly one reader for its whole life: a new reader gets a new segment,
//! so a reader's slot is always known (it starts with slot 2) and a crashed reader can leave
//! nothing behind that confuses the next one. Nothing is named in the filesystem.
//!
//! This file holds the layout and the writer; the reader is in `segment_reader.rs`.

use crate::error::{code, Error, Result};
use crate::protocol::{self, AtomicU64, Ordering};
use crate::sys::{self, Mapping};
use std::cell::{Cell, RefCell};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU32;
use std::sync::Arc;

/// "GSWDATA\0" little-endian: first word of a data memfd.
pub const DATA_MAGIC: u64 = u64::from_le_bytes(*b"GSWDATA\0");
/// "GSWCTRL\0" little-endian: first word of a control memfd.
pub const CTRL_MAGIC: u64 = u64::from_le_bytes(*b"GSWCTRL\0");
/// Bumped whenever the layout below changes; readers refuse other versions.
pub const LAYOUT_VERSION: u32 = 2;

pub const CACHE_LINE: usize = 64;
/// Bytes of the fixed header at the start of each memfd.
pub const HEADER_LEN: usize = 64;
/// Bytes of one channel descriptor in the data memfd's table.
pub const DESCRIPTOR_LEN: usize = 16;
/// Bytes before a slot's payload: seq u64, timestamp u64, length u32, reserved.
pub const SLOT_HEADER_LEN: usize = 32;
/// Largest value one channel can carry.
pub const MAX_CAPACITY: u32 = 1 << 20;
/// Most channels one segment can carry.
pub const MAX_CHANNELS: u32 = 1 << 16;

// Data header field offsets.
const D_MAGIC: usize = 0;
const D_VERSION: usize = 8;
const D_TABLE_END: usize = 12;
const D_CHANNELS: usize = 16;
const D_SLOT_HEADER: usize = 20;
const D_LEN: usize = 24;
const D_CTRL_LEN: usize = 32;
const D_PID: usize = 40;
const D_LINK_ID: usize = 48;
const D_READY: usize = 56;

// Control header field offsets.
const C_MAGIC: usize = 0;
const C_VERSION: usize = 8;
const C_CHANNELS: usize = 12;
const C_LEN: usize = 16;
const C_LINK_ID: usize = 24;
const C_PENDING_AT: usize = 32;
const C_CONTROLS_AT: usize = 36;
const C_READY: usize = 40;
const C_AWAKE_AT: usize = 44;

const fn round_up(n: usize, to: usize) -> usize {
    n.div_ceil(to) * to
}

/// Bytes between the starts of two slots of a channel of `capacity` payload bytes.
pub const fn slot_stride(capacity: u32) -> usize {
    round_up(SLOT_HEADER_LEN + capacity as usize, CACHE_LINE)
}

/// Where everything lives, computed from the channel capacities alone (both sides compute it;
/// the reader checks the writer's header against it).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Layout {
    /// Offset of each channel's first slot in the data memfd.
    offsets: Vec<usize>,
    data_len: usize,
    awake_at: usize,
    pending_at: usize,
    pending_words: usize,
    controls_at: usize,
    ctrl_len: usize,
}

impl Layout {
    fn new(capacities: &[u32]) -> Result<Layout> {
        let n = capacities.len();
        if n == 0 || n > MAX_CHANNELS as usize {
            return Err(Error::arg(format!(
                "a segment holds 1 to {MAX_CHANNELS} channels, not {n}"
            )));
        }
        let mut at = round_up(HEADER_LEN + n * DESCRIPTOR_LEN, CACHE_LINE);
        let mut offsets = Vec::with_capacity(n);
        for (i, &cap) in capacities.iter().enumerate() {
            if cap > MAX_CAPACITY {
                return Err(Error::arg(format!(
                    "channel {i} asks for {cap} bytes; a channel carries at most {MAX_CAPACITY}"
                )));
            }
            offsets.push(at);
            at += 3 * slot_stride(cap);
        }
        // The reader writes the awake word around its sleeps and the writer reads it once per
        // batch: its own cache line keeps it from bouncing with the pending bits.
        let awake_at = HEADER_LEN;
        let pending_at = awake_at + CACHE_LINE;
        let pending_words = n.div_ceil(64);
        let controls_at = round_up(pending_at + pending_words * 8, CACHE_LINE);
        Ok(Layout {
            offsets,
            data_len: at,
            awake_at,
            pending_at,
            pending_words,
            controls_at,
            ctrl_len: controls_at + n * CACHE_LINE,
        })
    }
}

/// The control memfd's shared words, as either side sees them. Cloning shares the mapping,
/// so a waitset can arm a reader's awake word while the reader itself is elsewhere.
#[derive(Clone)]
pub struct ControlWords {
    map: Arc<Mapping>,
    awake_at: usize,
    pending_at: usize,
    pending_words: usize,
    controls_at: usize,
    /// Set while a waitset drains this reader's doorbell before each sleep, so `take_pending`
    /// can skip its own drain (a syscall on the wake-up path). Process-local, not shared.
    drained_by_waitset: Arc<std::sync::atomic::AtomicBool>,
}

impl ControlWords {
    fn new(map: Mapping, layout: &Layout) -> ControlWords {
        ControlWords {
            map: Arc::new(map),
            awake_at: layout.awake_at,
            pending_at: layout.pending_at,
            pending_words: layout.pending_words,
            controls_at: layout.controls_at,
            drained_by_waitset: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        }
    }

    /// A waitset takes over (true) or gives back (false) draining the doorbell before sleeps.
    pub fn set_drained_by_waitset(&self, yes: bool) {
        // Relaxed: only this process's threads read it, and a waitset wait (which drains)
        // always happens-after the add that set it, through the waitset's own lock.
        self.drained_by_waitset
            .store(yes, std::sync::atomic::Ordering::Relaxed);
    }

    fn word(&self, at: usize) -> &AtomicU64 {
        // SAFETY: every offset passed here comes from a validated layout: 8-byte aligned and
        // inside the control mapping, which `self` keeps alive; AtomicU64 has u64's layout.
        unsafe { &*(self.map.as_ptr().add(at) as *const AtomicU64) }
    }

    fn control(&self, channel: usize) -> &AtomicU64 {
        self.word(self.controls_at + channel * CACHE_LINE)
    }

    fn pending_word(&self, word: usize) -> &AtomicU64 {
        self.word(self.pending_at + word * 8)
    }

    fn awake(&self) -> &AtomicU64 {
        self.word(self.awake_at)
    }

    /// Reader, before sleeping (after draining its doorbell): clears the awake word, then
    /// looks for anything the writer published meanwhile (pending bits). True means: do not
    /// sleep, there is work.
    pub fn prepare_to_sleep(&self) -> bool {
        protocol::reader_about_to_sleep(self.awake());
        (0..self.pending_words).any(|w| self.pending_word(w).load(Ordering::Acquire) != 0)
    }

    /// Reader, after waking: writers may skip signals while it works.
    pub fn woke(&self) {
        protocol::reader_awake(self.awake());
    }
}

/// Writes a little-endian integer at `base + off`.
///
/// # Safety
/// `base + off .. + size_of::<T>()` must lie inside a live, writable mapping.
unsafe fn put<T: Copy>(base: *mut u8, off: usize, value: T) {
    // SAFETY: in bounds per the caller; unaligned write so any offset is fine.
    unsafe { (base.add(off) as *mut T).write_unaligned(value) }
}

/// Reads an integer at `base + off`.
///
/// # Safety
/// `base + off .. + size_of::<T>()` must lie inside a live mapping.
unsafe fn get<T: Copy>(base: *const u8, off: usize) -> T {
    // SAFETY: in bounds per the caller; unaligned read so any offset is fine.
    unsafe { (base.add(off) as *const T).read_unaligned() }
}

/// The atomic u32 at `base + off` (4-byte aligned by layout).
///
/// # Safety
/// `base + off` must be 4-byte aligned inside a mapping that outlives `'a`.
unsafe fn atomic_u32<'a>(base: *mut u8, off: usize) -> &'a AtomicU32 {
    // SAFETY: aligned and live per the caller; AtomicU32 has the layout of u32.
    unsafe { &*(base.add(off) as *const AtomicU32) }
}

/// Per-channel bookkeeping private to one side.
struct Chan {
    offset: usize,
    capacity: u32,
    stride: usize,
    id: u32,
    /// The slot this side owns now.
    slot: Cell<u8>,
}

/// One value as read from a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SampleHeader {
    /// The writer's sequence number (0: never published).
    pub seq: u64,
    /// The writer's timestamp (nanoseconds; the meaning is the writer's, usually receive time).
    pub timestamp_ns: u64,
    /// Updates published since the previous value this reader took, that it never saw.
    pub skipped: u64,
    /// Payload length in bytes.
    pub len: u32,
}

/// Counters of a writer, for health reporting and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub publishes: u64,
    /// Doorbell rings (eventfd writes).
    pub rings: u64,
}

/// The writing side of a segment. Single-threaded: use it from one thread at a time.
pub struct SegmentWriter {
    data: Mapping,
    ctrl: ControlWords,
    chans: Vec<Chan>,
    doorbell: OwnedFd,
    /// The memfds, kept only until handed to the reader.
    fds: RefCell<Option<(OwnedFd, OwnedFd)>>,
    /// Some publish since the last ring found its reader idle.
    ring_owed: Cell<bool>,
    publishes: Cell<u64>,
    rings: Cell<u64>,
}

impl SegmentWriter {
    /// Creates a segment with one channel per entry of `capacities` (payload bytes), tagged
    /// with the caller's `ids` (e.g. measurement indices).
    pub fn create(capacities: &[u32], ids: &[u32]) -> Result<SegmentWriter> {
        if ids.len() != capacities.len() {
            return Err(Error::arg("channel ids and capacities differ in length"));
        }
        let layout = Layout::new(capacities)?;
        let data_fd = sys::memfd(c"gsw-data", layout.data_len)?;
        let ctrl_fd = sys::memfd(c"gsw-ctrl", layout.ctrl_len)?;
        let data = Mapping::map(data_fd.as_fd(), layout.data_len, true)?;
        let ctrl = Mapping::map(ctrl_fd.as_fd(), layout.ctrl_len, true)?;
        let link_id = random_u64();
        let d = data.as_ptr();
        let c = ctrl.as_ptr();
        let n = capacities.len();
        // SAFETY: every offset below is inside the mappings by construction of `layout`
        // (header and table inside data_len; pending words and control lines inside ctrl_len),
        // and nobody else has these memfds yet.
        unsafe {
            put(d, D_MAGIC, DATA_MAGIC);
            put(d, D_VERSION, LAYOUT_VERSION);
            put(d, D_TABLE_END, (HEADER_LEN + n * DESCRIPTOR_LEN) as u32);
            put(d, D_CHANNELS, n as u32);
            put(d, D_SLOT_HEADER, SLOT_HEADER_LEN as u32);
            put(d, D_LEN, layout.data_len as u64);
            put(d, D_CTRL_LEN, layout.ctrl_len as u64);
            put(d, D_PID, std::process::id());
            put(d, D_LINK_ID, link_id);
            for i in 0..n {
                let at = HEADER_LEN + i * DESCRIPTOR_LEN;
                put(d, at, layout.offsets[i] as u64);
                put(d, at + 8, capacities[i]);
                put(d, at + 12, ids[i]);
            }
            put(c, C_MAGIC, CTRL_MAGIC);
            put(c, C_VERSION, LAYOUT_VERSION);
            put(c, C_CHANNELS, n as u32);
            put(c, C_LEN, layout.ctrl_len as u64);
            put(c, C_LINK_ID, link_id);
            put(c, C_PENDING_AT, layout.pending_at as u32);
            put(c, C_CONTROLS_AT, layout.controls_at as u32);
            put(c, C_AWAKE_AT, layout.awake_at as u32);
            for i in 0..n {
                put(
                    c,
                    layout.controls_at + i * CACHE_LINE,
                    protocol::INITIAL_CONTROL,
                );
            }
            // Release: a reader that sees READY (Acquire) sees every header field above.
            atomic_u32(c, C_READY).store(1, Ordering::Release);
            atomic_u32(d, D_READY).store(1, Ordering::Release);
        }
        sys::add_seals(
            data_fd.as_fd(),
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL,
        )?;
        sys::add_seals(
            ctrl_fd.as_fd(),
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL,
        )?;
        let chans = capacities
            .iter()
            .zip(ids)
            .zip(&layout.offsets)
            .map(|((&capacity, &id), &offset)| Chan {
                offset,
                capacity,
                stride: slot_stride(capacity),
                id,
                slot: Cell::new(protocol::INITIAL_WRITER_SLOT),
            })
            .collect();
        Ok(SegmentWriter {
            data,
            ctrl: ControlWords::new(ctrl, &layout),
            chans,
            doorbell: sys::eventfd()?,
            fds: RefCell::new(Some((data_fd, ctrl_fd))),
            ring_owed: Cell::new(false),
            publishes: Cell::new(0),
            rings: Cell::new(0),
        })
    }

    pub fn channels(&self) -> usize {
        self.chans.len()
    }

    pub fn capacity(&self, channel: usize) -> Option<u32> {
        self.chans.get(channel).map(|c| c.capacity)
    }

    pub fn id(&self, channel: usize) -> Option<u32> {
        self.chans.get(channel).map(|c| c.id)
    }

    /// The three descriptors to send to the reader: data memfd, control memfd, doorbell.
    /// None once released.
    pub fn fds(&self) -> Option<[RawFd; 3]> {
        self.fds
            .borrow()
            .as_ref()
            .map(|(d, c)| [d.as_raw_fd(), c.as_raw_fd(), self.doorbell.as_raw_fd()])
    }

    /// Closes the two memfds once the reader has them (the mappings stay). Keeps a long-lived
    /// link at one descriptor on the writer's side.
    pub fn release_fds(&self) {
        self.fds.replace(None);
    }

    pub fn doorbell(&self) -> BorrowedFd<'_> {
        self.doorbell.as_fd()
    }

    /// Publishes one value without ringing the doorbell; call [`ring_if_owed`] after a batch.
    /// Returns whether the reader had taken everything (and so may be asleep).
    ///
    /// [`ring_if_owed`]: SegmentWriter::ring_if_owed
    #[inline]
    pub fn publish_quiet(
        &self,
        channel: usize,
        payload: &[u8],
        seq: u64,
        timestamp_ns: u64,
    ) -> Result<bool> {
        let Some(chan) = self.chans.get(channel) else {
            return Err(Error::arg(format!(
                "channel {channel} does not exist (the segment has {})",
                self.chans.len()
            )));
        };
        if payload.len() > chan.capacity as usize {
            return Err(Error::errno(
                libc::EMSGSIZE,
                &format!(
                    "a {}-byte value does not fit channel {channel} ({} bytes)",
                    payload.len(),
                    chan.capacity
                ),
            ));
        }
        let mine = chan.slot.get();
        let slot_at = chan.offset + mine as usize * chan.stride;
        // SAFETY: the slot lies inside the data mapping (layout), `payload` fits its capacity,
        // and the protocol gives the writer sole ownership of slot `mine` until it is swapped
        // into the control word below.
        unsafe {
            let p = self.data.as_ptr().add(slot_at);
            put(p, 0, seq);
            put(p, 8, timestamp_ns);
            put(p, 16, payload.len() as u32);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), p.add(SLOT_HEADER_LEN), payload.len());
        }
        let (next, idle) = protocol::publish(self.ctrl.control(channel), mine);
        chan.slot.set(next);
        if idle {
            protocol::mark_pending(self.ctrl.pending_word(channel / 64), (channel % 64) as u32);
            self.ring_owed.set(true);
        }
        self.publishes.set(self.publishes.get() + 1);
        Ok(idle)
    }

    /// Rings the doorbell if some publish since the last ring found its reader idle and the
    /// reader may be asleep (its awake word is clear).
    #[inline]
    pub fn ring_if_owed(&self) -> Result<bool> {
        if !self.ring_owed.replace(false) || !protocol::reader_may_sleep(self.ctrl.awake()) {
            return Ok(false);
        }
        self.rings.set(self.rings.get() + 1);
        sys::eventfd_signal(self.doorbell.as_fd())?;
        Ok(true)
    }

    /// Publishes one value and rings the doorbell if the reader may be asleep.
    pub fn publish(
        &self,
        channel: usize,
        payload: &[u8],
        seq: u64,
        timestamp_ns: u64,
    ) -> Result<()> {
        self.publish_quiet(channel, payload, seq, timestamp_ns)?;
        self.ring_if_owed()?;
        Ok(())
    }

    pub fn stats(&self) -> WriterStats {
        WriterStats {
            publishes: self.publishes.get(),
            rings: self.rings.get(),
        }
    }
}

fn random_u64() -> u64 {
    let mut v: u64 = 0;
    // SAFETY: getrandom writes at most 8 bytes into `v`.
    let n = unsafe { libc::getrandom(&mut v as *mut u64 as *mut libc::c_void, 8, 0) };
    if n != 8 {
        // Only used to pair a link's two memfds; time and pid are unique enough.
        v = sys::monotonic_ns() ^ ((std::process::id() as u64) << 32);
    }
    v
}

/// A reader attached to duplicates of `w`'s descriptors, as a peer process would get them.
#[cfg(all(test, not(loom)))]
pub(crate) fn test_reader(w: &SegmentWriter) -> SegmentReader {
    use std::os::fd::FromRawFd;
    let [d, c, e] = w.fds().expect("the writer still has its descriptors");
    // SAFETY: `dup` of valid descriptors gives new ones that we own.
    let dup = |fd: RawFd| unsafe { OwnedFd::from_raw_fd(libc::dup(fd)) };
    SegmentReader::attach(dup(d), dup(c), dup(e)).expect("a fresh segment attaches")
}

#[path = "segment_reader.rs"]
mod reader;
pub use reader::{write_record, SegmentReader, RECORD_HEADER_LEN};

#[cfg(all(test, not(loom)))]
#[path = "segment_tests.rs"]
mod tests;
