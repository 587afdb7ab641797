//! The reading side of a broadcast segment (see `broadcast`): latest values of the channels a
//! reader follows, the packet ring from the reader's own cursor, and what a waitset needs to
//! put the reader to sleep on the bells without losing a wake-up.

use super::*;

/// What a waitset needs to sleep on one bell: the shared words and this reader's record of
/// the generation it has processed. Cloning shares them.
#[derive(Clone)]
pub struct BellWatch {
    data: Arc<Mapping>,
    ctrl: Arc<Mapping>,
    gen_at: usize,
    sleepers_at: usize,
    seen: Arc<std::sync::atomic::AtomicU64>,
}

impl BellWatch {
    fn generation(&self) -> &AtomicU64 {
        // SAFETY: `gen_at` comes from a validated layout (aligned, inside the data mapping),
        // and `self` keeps the mapping alive.
        unsafe { word(self.data.as_ptr(), self.gen_at) }
    }

    fn sleepers(&self) -> &AtomicU64 {
        // SAFETY: as above, inside the control mapping.
        unsafe { word(self.ctrl.as_ptr(), self.sleepers_at) }
    }

    /// Before sleeping: counts this reader as asleep, then re-checks. True means "do not
    /// sleep, there is something new" — the caller must still call `woke` afterwards.
    pub fn prepare_to_sleep(&self) -> bool {
        bp::reader_sleeping(self.sleepers());
        bp::bell_changed_since(
            self.generation(),
            self.seen.load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// After a wait (slept or not): no longer counted as asleep.
    pub fn woke(&self) {
        bp::reader_woke(self.sleepers());
    }
}

/// Per-channel state private to a reader.
struct Followed {
    channel: usize,
    /// Version of the value last taken (0: none).
    have: Cell<u64>,
    /// Its sequence number, to count the values skipped.
    last_seq: Cell<u64>,
}

/// What one `read_ring` call produced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingRead {
    /// Bytes of records written to the output.
    pub bytes: usize,
    pub records: usize,
    /// Datagrams overwritten before this reader copied them, since the last call.
    pub lost: u64,
    /// True when the reader has caught up with the writer.
    pub caught_up: bool,
}

/// The reading side. Single-threaded, except the `BellWatch`es it hands a waitset.
pub struct BroadcastReader {
    data: Arc<Mapping>,
    ctrl: Arc<Mapping>,
    layout: Layout,
    capacities: Vec<u32>,
    ids: Vec<u32>,
    bell_of: Vec<u32>,
    ring_bell: u32,
    /// The bells handed to this reader, by bell index.
    bells: Vec<Option<OwnedFd>>,
    /// Generation processed, per bell.
    seen: Vec<Arc<std::sync::atomic::AtomicU64>>,
    followed: RefCell<Vec<Followed>>,
    /// Bells of the followed channels.
    followed_bells: RefCell<Vec<u32>>,
    cursor: Cell<u64>,
    /// Record number expected next (u64::MAX: not known, so nothing is counted lost until
    /// the next record read).
    next_record: Cell<u64>,
    /// Losses seen but not yet reported.
    lost: Cell<u64>,
    records_before: u64,
}

impl BroadcastReader {
    /// Attaches from the data and control memfds and the bells handed over (`(index, fd)`),
    /// taking ownership of all of them. Refuses anything that is not a complete, sealed gsw
    /// broadcast segment of this layout version.
    pub fn attach(
        data_fd: OwnedFd,
        ctrl_fd: OwnedFd,
        bells: Vec<(u32, OwnedFd)>,
    ) -> Result<BroadcastReader> {
        let bad = |why: String| {
            Error::new(
                code::BAD_LAYOUT,
                format!("corrupt gsw broadcast segment: {why}"),
            )
        };
        let data_len = sys::file_size(data_fd.as_fd())? as usize;
        let ctrl_len = sys::file_size(ctrl_fd.as_fd())? as usize;
        if data_len < HEADER_LEN || ctrl_len < C_SLEEPERS_AT {
            return Err(Error::new(
                code::BAD_MAGIC,
                format!("not a gsw broadcast segment: {data_len}/{ctrl_len} bytes is too small"),
            ));
        }
        let needed = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if sys::get_seals(data_fd.as_fd())? & (needed | libc::F_SEAL_FUTURE_WRITE)
            != needed | libc::F_SEAL_FUTURE_WRITE
            || sys::get_seals(ctrl_fd.as_fd())? & needed != needed
        {
            return Err(Error::new(
                code::NOT_SEALED,
                "the broadcast memfds are not sealed; refusing a segment that could fault or be written by readers",
            ));
        }
        for (fd, magic, what) in [
            (&data_fd, DATA_MAGIC, "data"),
            (&ctrl_fd, CTRL_MAGIC, "control"),
        ] {
            if sys::read_u64_at(fd.as_fd(), 0)? != magic {
                return Err(Error::new(
                    code::BAD_MAGIC,
                    format!(
                        "the {what} descriptor is not a gsw broadcast {what} memfd (wrong magic)"
                    ),
                ));
            }
        }
        let data = Mapping::map(data_fd.as_fd(), data_len, false)?;
        let ctrl = Mapping::map(ctrl_fd.as_fd(), ctrl_len, true)?;
        drop((data_fd, ctrl_fd));
        let (d, c) = (data.as_ptr(), ctrl.as_ptr());
        // SAFETY: both mappings hold at least their headers (checked above); every field is
        // read unaligned-safe at its natural alignment; READY words are 4-aligned.
        let h = unsafe {
            let get32 = |b: *mut u8, o: usize| (b.add(o) as *const u32).read();
            let get64 = |b: *mut u8, o: usize| (b.add(o) as *const u64).read();
            let ready = |b: *mut u8, o: usize| {
                // Acquire pairs with the writer's Release store: the header is complete.
                (*(b.add(o) as *const std::sync::atomic::AtomicU32))
                    .load(std::sync::atomic::Ordering::Acquire)
            };
            (
                (ready(d, H_READY), ready(c, C_READY)),
                (get32(d, H_VERSION), get32(c, C_VERSION)),
                get32(d, H_CHANNELS) as usize,
                (get32(d, H_BELLS), get32(c, C_BELLS)),
                get32(d, H_RING_BELL),
                get64(d, H_RING_SIZE) as usize,
                (get64(d, H_DATA_LEN) as usize, get64(d, H_CTRL_LEN) as usize),
                (get64(d, H_LINK), get64(c, C_LINK)),
                get64(c, C_LEN) as usize,
            )
        };
        let (ready, version, n, (nbells, cbells), ring_bell, ring_size, lens, links, clen) = h;
        if version != (LAYOUT_VERSION, LAYOUT_VERSION) {
            return Err(Error::new(
                code::BAD_VERSION,
                format!(
                    "the broadcast segment has layout version {}, this gsw reads {LAYOUT_VERSION}: run the same gsw version everywhere",
                    version.0
                ),
            ));
        }
        if ready != (1, 1) {
            return Err(Error::new(
                code::NOT_READY,
                "the segment is not initialised yet",
            ));
        }
        if links.0 != links.1 || nbells != cbells {
            return Err(bad(
                "data and control memfds belong to different segments".into()
            ));
        }
        if n > MAX_CHANNELS as usize || HEADER_LEN + n * ENTRY_LEN > data_len {
            return Err(bad(format!("{n} channels")));
        }
        let (mut capacities, mut ids, mut bell_of) = (vec![], vec![], vec![]);
        for i in 0..n {
            let at = HEADER_LEN + i * ENTRY_LEN;
            // SAFETY: the table lies inside the mapping (checked above).
            unsafe {
                capacities.push((d.add(at) as *const u32).read());
                ids.push((d.add(at + 4) as *const u32).read());
                bell_of.push((d.add(at + 8) as *const u32).read());
            }
        }
        // Recompute the layout: every size must agree, so no access can leave the mappings.
        let layout =
            Layout::new(&capacities, &bell_of, nbells, ring_size).map_err(|e| bad(e.message))?;
        if ring_bell >= nbells
            || layout.data_len != data_len
            || lens != (data_len, ctrl_len)
            || layout.ctrl_len != ctrl_len
            || clen != ctrl_len
        {
            return Err(bad(format!(
                "sizes disagree (data {data_len} bytes, layout needs {}; control {ctrl_len}, needs {})",
                layout.data_len, layout.ctrl_len
            )));
        }
        let mut by_bell: Vec<Option<OwnedFd>> = (0..nbells).map(|_| None).collect();
        for (bell, fd) in bells {
            if bell >= nbells {
                return Err(Error::arg(format!(
                    "bell {bell} does not exist (the segment has {nbells})"
                )));
            }
            if !sys::is_eventfd(fd.as_fd()) {
                return Err(Error::new(
                    code::BAD_LAYOUT,
                    format!("bell {bell} is not an eventfd"),
                ));
            }
            by_bell[bell as usize] = Some(fd);
        }
        // Start at the present: the head, with the count of records before it (so records
        // lost before this reader's first read are counted too). Both change together under
        // the commit stamp; retry while the writer is committing.
        // SAFETY: these words lie inside the validated data mapping.
        let (stamp, head_word, records_word) = unsafe {
            (
                word(d, layout.head_at + COMMIT_STAMP),
                word(d, layout.head_at),
                word(d, layout.head_at + RECORDS),
            )
        };
        let mut start = (bp::ring_head(head_word), u64::MAX - 1);
        // A commit takes nanoseconds; a stamp odd for this long is a writer that died
        // mid-commit, whose segment gets nothing new: the count then stays unknown.
        for _ in 0..1_000_000 {
            let Some(begun) = bp::slot_read_begin(stamp) else {
                std::hint::spin_loop();
                continue;
            };
            let h = bp::ring_head(head_word);
            let n = records_word.load(Ordering::Relaxed);
            if bp::slot_read_valid(stamp, begun) {
                start = (h, n);
                break;
            }
        }
        let (head, records) = start;
        Ok(BroadcastReader {
            data: Arc::new(data),
            ctrl: Arc::new(ctrl),
            layout,
            capacities,
            ids,
            bell_of,
            ring_bell,
            bells: by_bell,
            seen: (0..nbells)
                .map(|_| Arc::new(std::sync::atomic::AtomicU64::new(0)))
                .collect(),
            followed: RefCell::new(Vec::new()),
            followed_bells: RefCell::new(Vec::new()),
            cursor: Cell::new(head),
            next_record: Cell::new(records.wrapping_add(1)),
            lost: Cell::new(0),
            records_before: records,
        })
    }

    pub fn channels(&self) -> usize {
        self.capacities.len()
    }

    pub fn capacity(&self, channel: usize) -> Option<u32> {
        self.capacities.get(channel).copied()
    }

    pub fn id(&self, channel: usize) -> Option<u32> {
        self.ids.get(channel).copied()
    }

    pub fn bell_of(&self, channel: usize) -> Option<u32> {
        self.bell_of.get(channel).copied()
    }

    pub fn ring_bell(&self) -> u32 {
        self.ring_bell
    }

    pub fn ring_size(&self) -> usize {
        self.layout.ring_size
    }

    /// The descriptor of bell `bell`, if it was handed to this reader.
    pub fn bell(&self, bell: u32) -> Option<BorrowedFd<'_>> {
        self.bells.get(bell as usize)?.as_ref().map(|fd| fd.as_fd())
    }

    /// What a waitset needs to sleep on bell `bell`.
    pub fn bell_watch(&self, bell: u32) -> Option<BellWatch> {
        if bell as usize >= self.seen.len() {
            return None;
        }
        Some(BellWatch {
            data: self.data.clone(),
            ctrl: self.ctrl.clone(),
            gen_at: self.layout.gens_at + bell as usize * CACHE_LINE,
            sleepers_at: Layout::sleepers_at(bell),
            seen: self.seen[bell as usize].clone(),
        })
    }

    fn d(&self, off: usize) -> &AtomicU64 {
        // SAFETY: callers pass offsets from the validated layout, inside the data mapping.
        unsafe { word(self.data.as_ptr(), off) }
    }

    /// Follows these channels (replacing any earlier set); values already published count as
    /// new, so the next `read_changed` returns the current value of each.
    pub fn follow(&self, channels: &[u32]) -> Result<()> {
        let mut followed = Vec::with_capacity(channels.len());
        let mut bells: Vec<u32> = Vec::new();
        for &c in channels {
            let c = c as usize;
            if c >= self.capacities.len() {
                return Err(Error::arg(format!(
                    "channel {c} does not exist (the segment has {})",
                    self.capacities.len()
                )));
            }
            followed.push(Followed {
                channel: c,
                have: Cell::new(0),
                last_seq: Cell::new(0),
            });
            if !bells.contains(&self.bell_of[c]) {
                bells.push(self.bell_of[c]);
            }
        }
        *self.followed.borrow_mut() = followed;
        *self.followed_bells.borrow_mut() = bells;
        Ok(())
    }

    /// Reads the newest value of `channel` into `out` if its version is above `have`.
    /// Returns (header, version) with the bytes in `out[..len]`, or None when nothing newer.
    fn read_latch(&self, channel: usize, have: u64, out: &mut [u8]) -> Option<(SampleHeader, u64)> {
        let cap = self.capacities[channel];
        let latest = self.d(self.layout.latest_at + channel * 8);
        // The writer can only make a copy fail by filling the same slot twice during it; a
        // writer that fast on a value this size would have to publish millions of times a
        // second. Give up after many tries rather than spin: the next wake-up tries again.
        for _ in 0..1000 {
            let l = bp::latch_peek(latest);
            if bp::latest_version(l) <= have {
                return None;
            }
            let at = self.layout.offsets[channel] + bp::latest_slot(l) * slot_stride(cap);
            let stamp = self.d(at);
            let Some(begun) = bp::slot_read_begin(stamp) else {
                std::hint::spin_loop();
                continue;
            };
            let version = self.d(at + 8).load(Ordering::Relaxed);
            let seq = self.d(at + 16).load(Ordering::Relaxed);
            let timestamp_ns = self.d(at + 24).load(Ordering::Relaxed);
            // Clamped: the length comes from shared memory.
            let len = (self.d(at + 32).load(Ordering::Relaxed) as usize).min(cap as usize);
            let room = round_up(len, 8).min(out.len()) / 8 * 8;
            // SAFETY: the payload area holds round_up(cap, 8) bytes inside the mapping, and
            // `room` is at most that; `out` holds `room` bytes.
            unsafe {
                load_words(
                    &mut out[..room],
                    self.data.as_ptr().add(at + SLOT_HEADER_LEN),
                )
            };
            if bp::slot_read_valid(stamp, begun) {
                let header = SampleHeader {
                    seq,
                    timestamp_ns,
                    skipped: 0,
                    len: len as u32,
                };
                return Some((header, version));
            }
        }
        None
    }

    /// Writes a record (the point-to-point segment's `read_pending` format: seq, timestamp,
    /// skipped, len, channel, payload) for every followed channel with a newer value than
    /// the one last taken. Stops when `out` is full (the rest stays new for the next call).
    /// Returns the records written.
    pub fn read_changed(&self, out: &mut [u8]) -> usize {
        let bells = self.followed_bells.borrow();
        let gens: Vec<u64> = bells
            .iter()
            .map(|&b| bp::bell_generation(self.d(self.layout.gens_at + b as usize * CACHE_LINE)))
            .collect();
        let mut value = vec![0u8; 0];
        let (mut at, mut count, mut complete) = (0, 0, true);
        for f in self.followed.borrow().iter() {
            let cap = self.capacities[f.channel] as usize;
            if value.len() < round_up(cap, 8) {
                value.resize(round_up(cap, 8), 0);
            }
            let Some((mut header, version)) = self.read_latch(f.channel, f.have.get(), &mut value)
            else {
                continue;
            };
            let last = f.last_seq.get();
            // A sequence number that goes back means the writer restarted: nothing skipped.
            header.skipped = if last == 0 || header.seq <= last {
                0
            } else {
                header.seq - last - 1
            };
            let payload = &value[..header.len as usize];
            let Some(len) = write_record(out, at, f.channel, &header, payload) else {
                complete = false;
                break;
            };
            at += len;
            count += 1;
            f.have.set(version);
            f.last_seq.set(header.seq);
        }
        if complete {
            for (&b, &g) in bells.iter().zip(&gens) {
                self.seen[b as usize].store(g, std::sync::atomic::Ordering::Relaxed);
            }
        }
        count
    }

    /// The newest value of one channel, whether or not it was taken before (seq 0: none yet).
    pub fn current(&self, channel: usize, out: &mut [u8]) -> Result<SampleHeader> {
        if channel >= self.capacities.len() {
            return Err(Error::arg(format!("channel {channel} does not exist")));
        }
        Ok(self
            .read_latch(channel, 0, out)
            .map(|(h, _)| h)
            .unwrap_or_default())
    }

    /// Copies ring records from this reader's cursor into `out` (each: the 56-byte record
    /// header, then the payload padded to 8 bytes), stopping when `out` is full or the reader
    /// has caught up. Records overwritten before they were copied are counted in `lost`.
    pub fn read_ring(&self, out: &mut [u8]) -> RingRead {
        let ring_gen = self.d(self.layout.gens_at + self.ring_bell as usize * CACHE_LINE);
        let g = bp::bell_generation(ring_gen);
        let size = self.layout.ring_size as u64;
        let h = bp::ring_head(self.d(self.layout.head_at));
        let start = self.cursor.get();
        let mut result = RingRead::default();
        if h < start {
            // Only a broken writer moves head back: start again from where it is.
            self.cursor.set(h);
            self.next_record.set(u64::MAX);
            return result;
        }
        if h - start > size {
            // Lapped: resume at the oldest record still whole; its number says how many were
            // lost before it.
            return self.resume_at_tail();
        }
        let mut cur = start;
        let mut at = 0;
        let mut torn = false;
        while cur < h {
            let off = (cur % size) as usize;
            if size as usize - off < PAD_HEADER_LEN {
                // A gap too short for a pad header: the next record starts the next lap.
                cur += size - off as u64;
                continue;
            }
            let base = self.layout.ring_at + off;
            let pos = self.d(base).load(Ordering::Relaxed);
            let w2 = self.d(base + 16).load(Ordering::Relaxed);
            let total = (w2 & 0xffff_ffff) as usize;
            let kind = (w2 >> 32) & 0xffff;
            if pos != cur
                || total < 8
                || total % 8 != 0
                || off + total > size as usize
                || cur + total as u64 > h
            {
                torn = true;
                break;
            }
            if kind == KIND_PAD {
                cur += total as u64;
                continue;
            }
            if kind != KIND_DATAGRAM || total < RECORD_LEN || at + total > out.len() {
                torn = kind != KIND_DATAGRAM || total < RECORD_LEN;
                break;
            }
            // SAFETY: the record lies inside the ring (off + total <= size) in the data
            // mapping, 8-aligned; `out` has `total` bytes from `at`.
            unsafe { load_words(&mut out[at..at + total], self.data.as_ptr().add(base)) };
            at += total;
            cur += total as u64;
            result.records += 1;
        }
        let valid = bp::ring_valid_from(self.d(self.layout.intent_at), size);
        if start < valid || torn {
            // Part of what we copied may have been overwritten meanwhile: drop all of it and
            // resume at the oldest record still whole.
            return self.resume_at_tail();
        }
        // Count gaps in the record numbers: records overwritten before we got to them.
        let mut r = 0;
        while r < at {
            let seq = u64::from_le_bytes(out[r + 8..r + 16].try_into().expect("8 bytes"));
            let total =
                u32::from_le_bytes(out[r + 16..r + 20].try_into().expect("4 bytes")) as usize;
            let expect = self.next_record.get();
            if seq > expect {
                self.lost.set(self.lost.get() + (seq - expect));
            }
            self.next_record.set(seq + 1);
            r += total;
        }
        self.cursor.set(cur);
        result.bytes = at;
        result.lost = self.lost.take();
        result.caught_up = cur == h;
        if result.caught_up {
            self.seen[self.ring_bell as usize].store(g, std::sync::atomic::Ordering::Relaxed);
        }
        result
    }

    /// After being lapped: continues at the oldest record the writer has not overwritten
    /// (a record boundary it published), not caught up (the caller reads again at once).
    fn resume_at_tail(&self) -> RingRead {
        // Acquire pairs with the writer's Release store in `advance_tail`.
        let tail = self.d(self.layout.tail_at).load(Ordering::Acquire);
        self.cursor.set(tail.max(self.cursor.get()));
        RingRead {
            lost: self.lost.take(),
            ..RingRead::default()
        }
    }

    /// Marks bell `bell` as processed up to now; returns whether the writer touched it since
    /// it was last marked. For a process that only relays a bell's rings to readers of its
    /// own (the broker), without reading what is behind it.
    pub fn mark_seen(&self, bell: u32) -> bool {
        let Some(seen) = self.seen.get(bell as usize) else {
            return false;
        };
        let g = bp::bell_generation(self.d(self.layout.gens_at + bell as usize * CACHE_LINE));
        seen.swap(g, std::sync::atomic::Ordering::Relaxed) != g
    }

    /// Records the writer had written when this reader attached (for tests and diagnostics).
    pub fn records_before(&self) -> u64 {
        self.records_before
    }

    /// The ring position this reader will read next (for tests and diagnostics).
    pub fn cursor(&self) -> u64 {
        self.cursor.get()
    }
}
