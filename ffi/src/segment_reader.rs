//! The reading side of a segment (see `segment`): attaching with every check a reader makes
//! before trusting a writer's memory, taking values, and waiting on the doorbell.

use super::*;

/// The reading side of a segment. Single-threaded: use it from one thread at a time.
pub struct SegmentReader {
    data: Mapping,
    ctrl: ControlWords,
    chans: Vec<Chan>,
    doorbell: OwnedFd,
    /// Sequence number of the value each channel's held slot carries.
    last_seq: Vec<Cell<u64>>,
}

impl SegmentReader {
    /// Attaches to a segment from its three descriptors (taking ownership of all three; the
    /// two memfds are closed once mapped). Refuses, with a clear error, anything that is not
    /// a complete, sealed gsw segment of this layout version.
    pub fn attach(data_fd: OwnedFd, ctrl_fd: OwnedFd, doorbell: OwnedFd) -> Result<SegmentReader> {
        let data_len = sys::file_size(data_fd.as_fd())? as usize;
        let ctrl_len = sys::file_size(ctrl_fd.as_fd())? as usize;
        if data_len < HEADER_LEN || ctrl_len < HEADER_LEN {
            return Err(Error::new(
                code::BAD_MAGIC,
                format!(
                    "not a gsw segment: {data_len}/{ctrl_len} bytes is too small to hold a header"
                ),
            ));
        }
        let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        for (fd, what) in [(&data_fd, "data"), (&ctrl_fd, "control")] {
            if sys::get_seals(fd.as_fd())? & needed != needed {
                return Err(Error::new(
                    code::NOT_SEALED,
                    format!("the {what} memfd is not sealed against shrinking and growing; refusing a segment that could fault"),
                ));
            }
        }
        // Check what each descriptor is before mapping: the control memfd is mapped writable,
        // which the kernel refuses for a data memfd (sealed read-only), and a permission error
        // would send the operator looking in the wrong place.
        for (fd, magic, what) in [
            (&data_fd, DATA_MAGIC, "data"),
            (&ctrl_fd, CTRL_MAGIC, "control"),
        ] {
            if sys::read_u64_at(fd.as_fd(), 0)? != magic {
                return Err(Error::new(
                    code::BAD_MAGIC,
                    format!("the {what} descriptor is not a gsw {what} segment (wrong magic); is the peer a gsw process of this version?"),
                ));
            }
        }
        if !sys::is_eventfd(doorbell.as_fd()) {
            return Err(Error::new(
                code::BAD_LAYOUT,
                "the doorbell descriptor is not an eventfd; refusing a segment that could never wake its reader properly",
            ));
        }
        let data = Mapping::map(data_fd.as_fd(), data_len, false)?;
        let ctrl = Mapping::map(ctrl_fd.as_fd(), ctrl_len, true)?;
        drop((data_fd, ctrl_fd));
        let d = data.as_ptr();
        let c = ctrl.as_ptr();
        // SAFETY: both mappings are at least HEADER_LEN bytes (checked above), so every header
        // field read here is in bounds; READY offsets are 4-byte aligned.
        let (magic, version, cmagic, cversion, ready, cready) = unsafe {
            (
                get::<u64>(d, D_MAGIC),
                get::<u32>(d, D_VERSION),
                get::<u64>(c, C_MAGIC),
                get::<u32>(c, C_VERSION),
                // Acquire pairs with the writer's Release store: header fields are complete.
                atomic_u32(d, D_READY).load(Ordering::Acquire),
                atomic_u32(c, C_READY).load(Ordering::Acquire),
            )
        };
        if magic != DATA_MAGIC || cmagic != CTRL_MAGIC {
            return Err(Error::new(
                code::BAD_MAGIC,
                format!("not a gsw segment (magic {magic:#018x}/{cmagic:#018x}); is the peer a gsw process?"),
            ));
        }
        if version != LAYOUT_VERSION || cversion != LAYOUT_VERSION {
            return Err(Error::new(
                code::BAD_VERSION,
                format!("the segment has layout version {version}, this gsw reads version {LAYOUT_VERSION}: run the same gsw version on both sides"),
            ));
        }
        if ready != 1 || cready != 1 {
            return Err(Error::new(
                code::NOT_READY,
                "the segment is not initialised yet",
            ));
        }
        // SAFETY: header fields are inside the first HEADER_LEN bytes of each mapping.
        let (n, table_end, slot_header, hdr_data_len, hdr_ctrl_len, link, clink, cn, chdr_len) = unsafe {
            (
                get::<u32>(d, D_CHANNELS) as usize,
                get::<u32>(d, D_TABLE_END) as usize,
                get::<u32>(d, D_SLOT_HEADER) as usize,
                get::<u64>(d, D_LEN) as usize,
                get::<u64>(d, D_CTRL_LEN) as usize,
                get::<u64>(d, D_LINK_ID),
                get::<u64>(c, C_LINK_ID),
                get::<u32>(c, C_CHANNELS) as usize,
                get::<u64>(c, C_LEN) as usize,
            )
        };
        let bad = |why: String| Error::new(code::BAD_LAYOUT, format!("corrupt gsw segment: {why}"));
        if n == 0 || n > MAX_CHANNELS as usize || cn != n {
            return Err(bad(format!("channel count {n} (control says {cn})")));
        }
        if link != clink {
            return Err(bad(
                "data and control memfds belong to different links".into()
            ));
        }
        if table_end != HEADER_LEN + n * DESCRIPTOR_LEN || table_end > data_len {
            return Err(bad(format!("descriptor table ends at {table_end}")));
        }
        if slot_header != SLOT_HEADER_LEN {
            return Err(bad(format!("slot header of {slot_header} bytes")));
        }
        let mut capacities = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut offsets = Vec::with_capacity(n);
        for i in 0..n {
            let at = HEADER_LEN + i * DESCRIPTOR_LEN;
            // SAFETY: the table lies inside the mapping (table_end <= data_len checked above).
            unsafe {
                offsets.push(get::<u64>(d, at) as usize);
                capacities.push(get::<u32>(d, at + 8));
                ids.push(get::<u32>(d, at + 12));
            }
        }
        // Recompute the layout from the capacities: every offset and size must agree, so no
        // later access can leave the mappings whatever the header said.
        let layout = Layout::new(&capacities).map_err(|e| bad(e.message))?;
        if layout.offsets != offsets
            || layout.data_len != data_len
            || hdr_data_len != data_len
            || layout.ctrl_len != ctrl_len
            || hdr_ctrl_len != ctrl_len
            || chdr_len != ctrl_len
        {
            return Err(bad(format!(
                "sizes disagree (data {data_len} bytes, header says {hdr_data_len}, layout needs {}; control {ctrl_len}, needs {})",
                layout.data_len, layout.ctrl_len
            )));
        }
        // SAFETY: inside the control header.
        let (pending_at, controls_at, awake_at) = unsafe {
            (
                get::<u32>(c, C_PENDING_AT) as usize,
                get::<u32>(c, C_CONTROLS_AT) as usize,
                get::<u32>(c, C_AWAKE_AT) as usize,
            )
        };
        if pending_at != layout.pending_at
            || controls_at != layout.controls_at
            || awake_at != layout.awake_at
        {
            return Err(bad("control word offsets disagree".into()));
        }
        let chans = (0..n)
            .map(|i| Chan {
                offset: offsets[i],
                capacity: capacities[i],
                stride: slot_stride(capacities[i]),
                id: ids[i],
                slot: Cell::new(protocol::INITIAL_READER_SLOT),
            })
            .collect();
        Ok(SegmentReader {
            data,
            ctrl: ControlWords::new(ctrl, &layout),
            chans,
            doorbell,
            last_seq: (0..n).map(|_| Cell::new(0)).collect(),
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

    pub fn doorbell(&self) -> BorrowedFd<'_> {
        self.doorbell.as_fd()
    }

    /// Bytes a buffer needs to hold one [`SegmentReader::read_pending`] record of every channel.
    pub fn batch_capacity(&self) -> usize {
        self.chans
            .iter()
            .map(|c| RECORD_HEADER_LEN + round_up(c.capacity as usize, 8))
            .sum()
    }

    /// The shared words a waitset needs to put this reader to sleep safely (see
    /// `ControlWords::prepare_to_sleep`).
    pub fn control_words(&self) -> ControlWords {
        self.ctrl.clone()
    }

    /// Takes the newest value of `channel` if one was published since the last take.
    /// Returns the value's header and its payload as a slice of shared memory that stays
    /// valid (and unchanged) until the next take of this channel.
    #[inline]
    pub fn take(&self, channel: usize) -> Result<Option<(SampleHeader, &[u8])>> {
        let Some(chan) = self.chans.get(channel) else {
            return Err(Error::arg(format!(
                "channel {channel} does not exist (the segment has {})",
                self.chans.len()
            )));
        };
        let Some(slot) = protocol::acquire(self.ctrl.control(channel), chan.slot.get()) else {
            return Ok(None);
        };
        chan.slot.set(slot);
        let (header, payload) = self.held(chan);
        let last = self.last_seq[channel].replace(header.seq);
        // A sequence number that goes back means the writer restarted: nothing was skipped.
        let skipped = if last == 0 || header.seq <= last {
            0
        } else {
            header.seq - last - 1
        };
        Ok(Some((SampleHeader { skipped, ..header }, payload)))
    }

    /// The value this reader holds for `channel` now (sequence 0 if it never took one).
    pub fn current(&self, channel: usize) -> Option<(SampleHeader, &[u8])> {
        self.chans.get(channel).map(|chan| self.held(chan))
    }

    fn held(&self, chan: &Chan) -> (SampleHeader, &[u8]) {
        let at = chan.offset + chan.slot.get() as usize * chan.stride;
        // SAFETY: the slot lies inside the read-only data mapping (validated layout); the
        // reader owns it, so the writer does not write it while we look. The length comes from
        // shared memory, so it is clamped to the channel's capacity before slicing.
        unsafe {
            let p = self.data.as_ptr().add(at);
            let len = get::<u32>(p, 16).min(chan.capacity);
            let header = SampleHeader {
                seq: get::<u64>(p, 0),
                timestamp_ns: get::<u64>(p, 8),
                skipped: 0,
                len,
            };
            let payload = std::slice::from_raw_parts(p.add(SLOT_HEADER_LEN), len as usize);
            (header, payload)
        }
    }

    /// Resets the doorbell. Call before scanning for new values, never after: a ring that
    /// arrives after this stays pending and wakes the next wait.
    pub fn drain_doorbell(&self) -> u64 {
        sys::eventfd_drain(self.doorbell.as_fd())
    }

    /// Drains the doorbell, then takes the new value of every channel whose pending bit was
    /// set, calling `visit(channel, header, payload)` for each. Before taking a channel's value
    /// it asks `admit(channel)`; on false it stops and puts the bits not yet visited back, so
    /// nothing is lost (e.g. when an output buffer is full). Returns how many values it took;
    /// zero means the reader may sleep on the doorbell.
    pub fn take_pending<A, V>(&self, mut admit: A, mut visit: V) -> usize
    where
        A: FnMut(usize) -> bool,
        V: FnMut(usize, SampleHeader, &[u8]),
    {
        // A waitset that watches this reader drains the doorbell before it sleeps; draining
        // here too would only put a syscall on the wake-up path.
        if !self
            .ctrl
            .drained_by_waitset
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.drain_doorbell();
        }
        let mut taken = 0;
        for w in 0..self.ctrl.pending_words {
            let word = self.ctrl.pending_word(w);
            let mut bits = protocol::take_pending(word);
            while bits != 0 {
                let bit = bits.trailing_zeros() as usize;
                let channel = w * 64 + bit;
                if channel >= self.chans.len() {
                    // Bits past the last channel can only come from a broken peer.
                    break;
                }
                if !admit(channel) {
                    // Later words were never taken, so only this word's rest goes back.
                    protocol::restore_pending(word, bits);
                    return taken;
                }
                if let Ok(Some((header, payload))) = self.take(channel) {
                    taken += 1;
                    visit(channel, header, payload);
                }
                bits &= !(1u64 << bit);
            }
        }
        taken
    }

    /// Blocks until a new value may be there: returns at once if some channel holds one,
    /// else sleeps until the doorbell rings or `timeout_ms` passes (negative: forever).
    /// Returns false on timeout. Rings are consumed by the next wait (before it sleeps), so a
    /// caller that reads with `take` alone does not spin on a readable doorbell.
    pub fn wait(&self, timeout_ms: i32) -> Result<bool> {
        // Drain, then clear the awake word, then re-check, then sleep: a ring after the drain
        // keeps the doorbell readable, a publish before it is seen by the re-check. Draining
        // here, before sleeping, keeps the syscall off the wake-up path.
        self.drain_doorbell();
        protocol::reader_about_to_sleep(self.ctrl.awake());
        // FRESH rather than the pending bits: a reader that only uses `take` leaves pending
        // bits behind, which would make every wait return at once.
        let fresh = (0..self.chans.len())
            .any(|c| self.ctrl.control(c).load(Ordering::Acquire) & protocol::FRESH != 0);
        let result = if fresh {
            Ok(true)
        } else {
            sys::poll_readable(self.doorbell.as_fd(), timeout_ms)
        };
        protocol::reader_awake(self.ctrl.awake());
        result
    }
}

/// Bytes before each payload in a `read_pending` output record:
/// seq u64, timestamp u64, skipped u64, len u32, channel u32.
pub const RECORD_HEADER_LEN: usize = 32;

/// Writes one record (header + payload padded to 8 bytes) at `out[at..]`; returns its length,
/// or None if it does not fit.
pub fn write_record(
    out: &mut [u8],
    at: usize,
    channel: usize,
    header: &SampleHeader,
    payload: &[u8],
) -> Option<usize> {
    let len = RECORD_HEADER_LEN + round_up(payload.len(), 8);
    let rec = out.get_mut(at..at + len)?;
    rec[0..8].copy_from_slice(&header.seq.to_le_bytes());
    rec[8..16].copy_from_slice(&header.timestamp_ns.to_le_bytes());
    rec[16..24].copy_from_slice(&header.skipped.to_le_bytes());
    rec[24..28].copy_from_slice(&header.len.to_le_bytes());
    rec[28..32].copy_from_slice(&(channel as u32).to_le_bytes());
    rec[RECORD_HEADER_LEN..RECORD_HEADER_LEN + payload.len()].copy_from_slice(payload);
    Some(len)
}
