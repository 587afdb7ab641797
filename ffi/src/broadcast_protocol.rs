//! The broadcast protocol: every atomic operation on a broadcast segment's shared words, and
//! nothing else, so that the same code runs in shared memory and under the `loom` model checker.
//!
//! A broadcast segment has one writer (decom) and any number of readers that the writer never
//! learns about: its cost does not grow with them, and a stopped reader slows nobody. Three
//! structures share it:
//!
//! - **latest values** — per channel, a *latch*: two slots, each with a *stamp* (odd while the
//!   writer fills it), and a *latest* word `(version << 1) | slot` naming the slot that holds
//!   the newest complete value. The writer always fills the slot that `latest` does not name,
//!   then points `latest` at it: one store, no loop, wait-free. A reader reads `latest`, copies
//!   the named slot between two stamp loads, and keeps the copy only if the stamp did not
//!   change (a sequence lock on each slot). It can only fail if the writer filled that very
//!   slot again meanwhile — two newer publishes during one copy — and then simply retries with
//!   the newer `latest`. A writer that dies mid-write leaves an odd stamp on the slot `latest`
//!   does not name: readers never see it.
//! - **the packet ring** — every datagram, in order: the writer appends records at a `head`
//!   position that only grows (records are copied in at `position % size`). Before it overwrites
//!   old bytes it raises `intent` (the end of what it is about to write); a reader copies what
//!   lies between its cursor and `head`, then reads `intent`: everything it copied that lies
//!   below `intent - size` may have been overwritten during the copy and is discarded (counted
//!   as lost, never delivered torn).
//! - **doorbells** — per *bell* (a group of channels, or the ring), a generation word the writer
//!   bumps in each batch that changed something behind the bell, a shared *sleepers* count, and
//!   an eventfd that every reader of the bell watches edge-triggered (so one write wakes them
//!   all, and nobody ever reads it). The writer writes the eventfd only if some reader may be
//!   asleep (sleepers > 0). A reader about to sleep increments sleepers, then re-checks the
//!   generation it last processed: both are read-modify-writes or acquire loads paired with the
//!   writer's release RMW, so either the writer sees the sleeper or the reader sees the change.

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU64, Ordering};

// -- latches (latest values) ---------------------------------------------------------------

/// The slot named by a `latest` word.
#[inline]
pub fn latest_slot(latest: u64) -> usize {
    (latest & 1) as usize
}

/// How many values were ever published through a `latest` word (0: none yet).
#[inline]
pub fn latest_version(latest: u64) -> u64 {
    latest >> 1
}

/// Writer: the slot to fill next (the one `latest` does not name) and its version.
#[inline]
pub fn latch_next(latest: &AtomicU64) -> (usize, u64) {
    // Relaxed: only the writer stores this word, so it reads its own last store.
    let l = latest.load(Ordering::Relaxed);
    (latest_slot(l) ^ 1, latest_version(l) + 1)
}

/// Writer: marks a slot as being written (its stamp turns odd). Call before touching the slot.
#[inline]
pub fn slot_write_begin(stamp: &AtomicU64) {
    // Relaxed load: only the writer stores stamps.
    let v = stamp.load(Ordering::Relaxed);
    stamp.store(v.wrapping_add(1) | 1, Ordering::Relaxed);
    // Release fence: the odd stamp is ordered before every data store that follows. A reader
    // that copies any of those stores and then runs its acquire fence (`slot_read_valid`) is
    // synchronised with this fence, so its second stamp load sees the odd stamp (or later)
    // and it discards the copy.
    fence(Ordering::Release);
}

/// Writer: the slot is complete (its stamp turns even again).
#[inline]
pub fn slot_write_end(stamp: &AtomicU64) {
    let v = stamp.load(Ordering::Relaxed);
    // Release: a reader whose first stamp load (Acquire) reads this even value sees every data
    // store of this write.
    stamp.store(v.wrapping_add(1) & !1, Ordering::Release);
}

/// Writer: points `latest` at the slot just completed, as `version`.
#[inline]
pub fn latch_publish(latest: &AtomicU64, slot: usize, version: u64) {
    // Release: a reader that reads this word (Acquire) then reads a stamp of the named slot
    // sees at least the stamp of the write that completed it.
    latest.store((version << 1) | slot as u64, Ordering::Release);
}

/// Reader: the `latest` word, to compare with the version it already has.
#[inline]
pub fn latch_peek(latest: &AtomicU64) -> u64 {
    // Acquire pairs with `latch_publish`.
    latest.load(Ordering::Acquire)
}

/// Reader: starts copying a slot; None if the writer is filling it right now (retry from
/// `latch_peek`: the writer has published a newer value elsewhere since).
#[inline]
pub fn slot_read_begin(stamp: &AtomicU64) -> Option<u64> {
    // Acquire pairs with `slot_write_end`: the data of the completed write is visible.
    let v = stamp.load(Ordering::Acquire);
    if v & 1 == 1 {
        None
    } else {
        Some(v)
    }
}

/// Reader: after copying, whether the copy is one complete write (the stamp did not move).
#[inline]
pub fn slot_read_valid(stamp: &AtomicU64, begun: u64) -> bool {
    // Acquire fence: pairs with the writer's release fence in `slot_write_begin` (see there).
    fence(Ordering::Acquire);
    stamp.load(Ordering::Relaxed) == begun
}

// -- the packet ring -------------------------------------------------------------------------

/// Writer: announces that bytes up to position `end` are about to be written, so readers
/// know that positions below `end - size` may be overwritten from now on.
#[inline]
pub fn ring_reserve(intent: &AtomicU64, end: u64) {
    intent.store(end, Ordering::Relaxed);
    // Release fence: as in `slot_write_begin`, orders the intent before the record stores.
    fence(Ordering::Release);
}

/// Writer: records up to position `end` are complete.
#[inline]
pub fn ring_commit(head: &AtomicU64, end: u64) {
    // Release: a reader that loads this head (Acquire) sees every record below it.
    head.store(end, Ordering::Release);
}

/// Reader: the end of the complete records.
#[inline]
pub fn ring_head(head: &AtomicU64) -> u64 {
    // Acquire pairs with `ring_commit`.
    head.load(Ordering::Acquire)
}

/// Reader: after copying, the lowest position whose bytes were certainly not overwritten
/// during the copy. Anything copied from below it must be discarded.
#[inline]
pub fn ring_valid_from(intent: &AtomicU64, size: u64) -> u64 {
    // Acquire fence: pairs with the writer's release fence in `ring_reserve`. If the copy read
    // any byte stored after that fence, this load sees that reservation (or a later one).
    fence(Ordering::Acquire);
    intent.load(Ordering::Relaxed).saturating_sub(size)
}

// -- doorbells ---------------------------------------------------------------------------------

/// Writer: something behind this bell changed in this batch.
#[inline]
pub fn bell_touch(generation: &AtomicU64) {
    let g = generation.load(Ordering::Relaxed);
    // Release: a reader that reads this generation (Acquire) before scanning sees what was
    // published before it. (The wake-up argument itself rests on `bell_may_sleep`'s RMW.)
    generation.store(g.wrapping_add(1), Ordering::Release);
}

/// Writer: after touching a bell, whether some reader may be asleep on it (then write its
/// eventfd).
#[inline]
pub fn bell_may_sleep(sleepers: &AtomicU64) -> bool {
    // An RMW, not a load, with AcqRel: RMWs on `sleepers` are totally ordered. If a reader's
    // increment (`reader_sleeping`) comes first, this RMW reads it (non-zero) and we ring. If
    // ours comes first, the reader's RMW reads ours (or a later RMW in its release sequence)
    // and acquires it, so the generation we stored before is visible to the reader's re-check,
    // and it does not sleep. No wake-up is lost; no SeqCst is needed.
    sleepers.fetch_add(0, Ordering::AcqRel) != 0
}

/// Reader: the generation of a bell, read before scanning what is behind it; store it as
/// "processed" once the scan is done.
#[inline]
pub fn bell_generation(generation: &AtomicU64) -> u64 {
    // Acquire pairs with `bell_touch`.
    generation.load(Ordering::Acquire)
}

/// Reader: about to sleep on a bell. Then call `bell_changed_since`: sleep only if false.
#[inline]
pub fn reader_sleeping(sleepers: &AtomicU64) {
    // AcqRel RMW paired with `bell_may_sleep` (see there).
    sleepers.fetch_add(1, Ordering::AcqRel);
}

/// Reader: whether the writer touched the bell since generation `seen` was processed.
#[inline]
pub fn bell_changed_since(generation: &AtomicU64, seen: u64) -> bool {
    generation.load(Ordering::Acquire) != seen
}

/// Reader: awake again.
#[inline]
pub fn reader_woke(sleepers: &AtomicU64) {
    // Relaxed: a late decrement only costs the writer one unneeded ring. Wrapping: a broken
    // peer may have decremented below zero; the writer then rings every batch, which wakes
    // readers that re-check and go back to sleep — harmless.
    sleepers.fetch_sub(1, Ordering::Relaxed);
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model checks of the broadcast protocol. Run with
    //! `RUSTFLAGS="--cfg loom" cargo test -p gsw-ffi --release --lib broadcast_protocol`.
    use super::*;
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// Words of a value derived from its version, so a torn copy shows as a mismatch.
    fn word(version: u64, i: u64) -> u64 {
        version.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (i + 1)
    }

    const WORDS: usize = 2;

    struct Latch {
        latest: AtomicU64,
        stamps: [AtomicU64; 2],
        /// Each slot: its version, then WORDS data words. Atomics with relaxed access, as the
        /// real code copies them.
        slots: [[AtomicU64; WORDS + 1]; 2],
    }

    impl Latch {
        fn new() -> Latch {
            Latch {
                latest: AtomicU64::new(0),
                stamps: [AtomicU64::new(0), AtomicU64::new(0)],
                slots: [
                    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
                    [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)],
                ],
            }
        }

        fn publish(&self) {
            let (slot, version) = latch_next(&self.latest);
            slot_write_begin(&self.stamps[slot]);
            self.slots[slot][0].store(version, Ordering::Relaxed);
            for i in 0..WORDS {
                self.slots[slot][i + 1].store(word(version, i as u64), Ordering::Relaxed);
            }
            slot_write_end(&self.stamps[slot]);
            latch_publish(&self.latest, slot, version);
        }

        /// The newest value if its version is above `have`: (version, words), never torn.
        fn read(&self, have: u64) -> Option<(u64, [u64; WORDS])> {
            loop {
                let l = latch_peek(&self.latest);
                if latest_version(l) <= have {
                    return None;
                }
                let slot = latest_slot(l);
                let Some(begun) = slot_read_begin(&self.stamps[slot]) else {
                    thread::yield_now();
                    continue;
                };
                let version = self.slots[slot][0].load(Ordering::Relaxed);
                let mut data = [0u64; WORDS];
                for (i, d) in data.iter_mut().enumerate() {
                    *d = self.slots[slot][i + 1].load(Ordering::Relaxed);
                }
                if slot_read_valid(&self.stamps[slot], begun) {
                    return Some((version, data));
                }
                thread::yield_now();
            }
        }
    }

    /// Two readers and a writer publishing three values: no reader ever keeps a torn copy,
    /// versions never go back, a value is never older than the `latest` word that named it,
    /// and after the writer stops both readers get its last value.
    #[test]
    fn latch_reads_are_never_torn() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let latch = Arc::new(Latch::new());
            const LAST: u64 = 3;
            let writer = {
                let latch = latch.clone();
                thread::spawn(move || {
                    for _ in 0..LAST {
                        latch.publish();
                    }
                })
            };
            let reader = |latch: Arc<Latch>| {
                move || {
                    let mut have = 0;
                    for _ in 0..2 {
                        if let Some((version, data)) = latch.read(have) {
                            assert!(version > have, "went back: {version} after {have}");
                            for (i, &d) in data.iter().enumerate() {
                                assert_eq!(d, word(version, i as u64), "torn copy of {version}");
                            }
                            have = version;
                        }
                    }
                    have
                }
            };
            let other = thread::spawn(reader(latch.clone()));
            reader(latch.clone())();
            writer.join().unwrap();
            other.join().unwrap();
            let (version, _) = latch.read(0).expect("a value after the writer stopped");
            assert_eq!(version, LAST);
        });
    }

    /// The ring: a writer appends one-word records (each holding its own position and a
    /// check word) into a ring of two words, so the third record overwrites the first. A
    /// reader copies from its cursor to head, then discards what `ring_valid_from` says may be
    /// overwritten: it must never keep a record whose words disagree.
    #[test]
    fn ring_never_delivers_an_overwritten_record() {
        loom::model(|| {
            const SIZE: u64 = 2;
            let head = Arc::new(AtomicU64::new(0));
            let intent = Arc::new(AtomicU64::new(0));
            // Each cell: (position, check word of that position).
            let cells = Arc::new([
                [AtomicU64::new(u64::MAX), AtomicU64::new(0)],
                [AtomicU64::new(u64::MAX), AtomicU64::new(0)],
            ]);
            let writer = {
                let (head, intent, cells) = (head.clone(), intent.clone(), cells.clone());
                thread::spawn(move || {
                    for pos in 0..3u64 {
                        ring_reserve(&intent, pos + 1);
                        let cell = &cells[(pos % SIZE) as usize];
                        cell[0].store(pos, Ordering::Relaxed);
                        cell[1].store(word(pos, 0), Ordering::Relaxed);
                        ring_commit(&head, pos + 1);
                    }
                })
            };
            let mut cursor = 0u64;
            let mut delivered = 0u64;
            let mut lost = 0u64;
            for _ in 0..3 {
                let h = ring_head(&head);
                let from = cursor.max(h.saturating_sub(SIZE));
                let mut copy = Vec::new();
                for pos in from..h {
                    let cell = &cells[(pos % SIZE) as usize];
                    copy.push((
                        pos,
                        cell[0].load(Ordering::Relaxed),
                        cell[1].load(Ordering::Relaxed),
                    ));
                }
                let valid = ring_valid_from(&intent, SIZE);
                lost += from - cursor;
                for (pos, p, check) in copy {
                    if pos < valid {
                        lost += 1;
                        continue;
                    }
                    assert_eq!(p, pos, "a record from the wrong lap was kept");
                    assert_eq!(check, word(pos, 0), "a torn record was kept");
                    delivered += 1;
                }
                cursor = h;
            }
            writer.join().unwrap();
            assert_eq!(
                delivered + lost,
                cursor,
                "every record is delivered or counted lost"
            );
        });
    }

    /// An eventfd watched edge-triggered by each reader: a signal sets every watcher's event,
    /// which its next wait consumes. Nobody reads the counter.
    struct Bell {
        events: Mutex<[bool; 2]>,
        cond: Condvar,
    }

    impl Bell {
        fn signal(&self) {
            let mut e = self.events.lock().unwrap();
            *e = [true, true];
            self.cond.notify_all();
        }
        /// Blocks until reader `r` has an event: loom reports a deadlock if it never comes.
        fn wait(&self, r: usize) {
            let mut e = self.events.lock().unwrap();
            while !e[r] {
                e = self.cond.wait(e).unwrap();
            }
            e[r] = false;
        }
    }

    /// A writer publishing twice and two readers that sleep whenever they find nothing new:
    /// both must end with the last value (a lost wake-up deadlocks the model).
    #[test]
    fn bell_loses_no_wakeup() {
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let latch = Arc::new(Latch::new());
            let generation = Arc::new(AtomicU64::new(0));
            let sleepers = Arc::new(AtomicU64::new(0));
            let bell = Arc::new(Bell {
                events: Mutex::new([false, false]),
                cond: Condvar::new(),
            });
            const LAST: u64 = 2;
            let writer = {
                let (latch, generation, sleepers, bell) = (
                    latch.clone(),
                    generation.clone(),
                    sleepers.clone(),
                    bell.clone(),
                );
                thread::spawn(move || {
                    for _ in 0..LAST {
                        latch.publish();
                        bell_touch(&generation);
                        if bell_may_sleep(&sleepers) {
                            bell.signal();
                        }
                    }
                })
            };
            let reader = |r: usize| {
                let (latch, generation, sleepers, bell) = (
                    latch.clone(),
                    generation.clone(),
                    sleepers.clone(),
                    bell.clone(),
                );
                move || {
                    let mut have = 0;
                    while have != LAST {
                        let g = bell_generation(&generation);
                        if let Some((version, _)) = latch.read(have) {
                            have = version;
                        }
                        let seen = g;
                        if have == LAST {
                            break;
                        }
                        reader_sleeping(&sleepers);
                        if !bell_changed_since(&generation, seen) {
                            bell.wait(r);
                        }
                        reader_woke(&sleepers);
                    }
                }
            };
            let other = thread::spawn(reader(1));
            reader(0)();
            writer.join().unwrap();
            other.join().unwrap();
        });
    }
}
