//! The triple-buffer protocol: every atomic operation on a channel's shared words, and nothing
//! else, so that the same code runs in shared memory and under the `loom` model checker.
//!
//! A channel has three slots. At any moment the writer owns one, the reader owns one, and the
//! third is the *back* slot holding the newest complete value. One shared word (the *control
//! word*) holds the back slot's index and a FRESH bit ("the back slot holds a value the reader
//! has not taken yet").
//!
//! - publish (writer): fill your slot, then swap the control word with `your slot | FRESH`;
//!   the slot you get back is your next one. One swap: wait-free, no loop, no spin.
//! - acquire (reader): if FRESH is set, swap the control word with `your slot`; the slot you get
//!   back holds the newest value. Wait-free, and never torn: a slot is only ever written by
//!   the writer while the writer owns it.
//! - wake-up: the writer signals the reader's eventfd only when its swap found FRESH clear (the
//!   reader had taken everything and may be asleep). The reader, before sleeping, drains the
//!   eventfd, then re-checks, then sleeps. A signal sent after the drain leaves the eventfd
//!   readable; a publish before the drain is seen by the re-check. No wake-up is lost.
//! - pending bits: a writer that feeds many channels to one reader also sets the channel's bit
//!   in a shared bitmap when its swap found FRESH clear, so a woken reader visits only the
//!   channels that changed instead of scanning every control word.
//! - the awake word: a signal is a syscall (~10× a publish), wasted when the reader is awake
//!   and will find the value anyway. A reader that opts in sets the segment's *awake* word
//!   while it works and clears it, then re-checks, before it sleeps; the writer signals only
//!   if some publish found FRESH clear **and** the word says the reader may be asleep. A
//!   reader that never touches the word (it stays 0: "may be asleep") is signalled exactly as
//!   without it, so any event loop can still poll the doorbell descriptor.

#[cfg(loom)]
pub use loom::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicU64, Ordering};

/// Set in the control word when the back slot holds a value the reader has not taken.
pub const FRESH: u64 = 1 << 2;
/// Low bits of the control word: the back slot's index (0, 1 or 2).
pub const INDEX_MASK: u64 = 0b11;
/// Control word of a new channel: slot 1 is the back slot, nothing fresh.
pub const INITIAL_CONTROL: u64 = 1;
/// The slot a new channel's writer fills first.
pub const INITIAL_WRITER_SLOT: u8 = 0;
/// The slot a new channel's reader holds first (it holds no value yet: sequence number 0).
pub const INITIAL_READER_SLOT: u8 = 2;

/// A slot index taken from a control word. The word lives in memory the peer can write, so a
/// broken or hostile peer could store 3; any index in 0..=2 keeps us inside our mapping (the
/// peer then only harms its own view of the data), so fall back to the slot we already hold.
#[inline]
fn slot_of(word: u64, fallback: u8) -> u8 {
    let index = (word & INDEX_MASK) as u8;
    if index <= 2 {
        index
    } else {
        fallback
    }
}

/// Writer: hands over `filled` (already written) as the newest value.
/// Returns the slot to fill next and whether the reader had taken everything before this
/// publish (FRESH was clear), i.e. whether it may be asleep and needs a wake-up.
#[inline]
pub fn publish(control: &AtomicU64, filled: u8) -> (u8, bool) {
    // AcqRel. Release: the slot contents written before this swap become visible to the
    // reader whose swap acquires this value. Acquire: the slot we get back may be the one the
    // reader just gave up with its own (Release) swap; acquiring it orders all of the reader's
    // reads of that slot before our next writes into it.
    let old = control.swap(filled as u64 | FRESH, Ordering::AcqRel);
    (slot_of(old, filled), old & FRESH == 0)
}

/// Reader: if a newer value was published, takes it. `held` is the slot the reader holds now.
/// Returns the slot now holding the newest value, or None if nothing new was published.
#[inline]
pub fn acquire(control: &AtomicU64, held: u8) -> Option<u8> {
    // Relaxed is enough for this early-out: it is only a hint. If it misses a publish that
    // happened "just now", the caller reports "nothing new" and sleeps on the eventfd; the
    // writer's signal then wakes it (the wake-up argument above). When the caller has just
    // drained the eventfd and the writer's signal was part of what it drained, the kernel's
    // eventfd lock orders the writer's swap before this load, so this load sees it.
    if control.load(Ordering::Relaxed) & FRESH == 0 {
        return None;
    }
    // AcqRel. Acquire pairs with the writer's Release swap: the slot we get back is fully
    // written. Release: our reads of `held` are done before the writer can acquire it back.
    let old = control.swap(held as u64, Ordering::AcqRel);
    Some(slot_of(old, held))
}

/// Writer: records that `bit` of this pending word's channels has a value the reader has not
/// seen. Called after a publish that found FRESH clear, before ringing the doorbell.
#[inline]
pub fn mark_pending(word: &AtomicU64, bit: u32) {
    // Release: a reader that takes this bit (Acquire in `take_pending`) and then acquires the
    // channel is ordered after our publish swap, so it finds that value (or a newer one).
    // Always the RMW, never "load and skip if already set": a stale load could skip a bit the
    // reader has just cleared, and the doorbell would then wake it to an empty bitmap.
    word.fetch_or(1u64 << bit, Ordering::Release);
}

/// Reader: takes (and clears) the pending bits of one bitmap word.
#[inline]
pub fn take_pending(word: &AtomicU64) -> u64 {
    // Relaxed early-out keeps an idle scan from dirtying the shared cache line; the same
    // eventfd argument as in `acquire` makes it safe to report "nothing" from a stale load.
    if word.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    // Acquire pairs with `mark_pending`'s Release (see there).
    word.swap(0, Ordering::Acquire)
}

/// Reader: puts bits back that it took but could not process (e.g. its output was full).
#[inline]
pub fn restore_pending(word: &AtomicU64, bits: u64) {
    // Relaxed: the bits are only a hint to our own next scan; the channels' FRESH bits
    // still carry the data ordering.
    word.fetch_or(bits, Ordering::Relaxed);
}

/// Writer: after a batch in which some publish found FRESH clear (and set its pending bit),
/// decides whether the reader may be asleep and so needs the signal.
#[inline]
pub fn reader_may_sleep(awake: &AtomicU64) -> bool {
    // An RMW, not a load, with AcqRel: RMWs read the latest value in the word's modification
    // order, and this one's Release carries our pending bits to the reader's swap in
    // `reader_about_to_sleep`. Either that swap comes later in the order — then it acquires
    // this RMW and the reader's re-check sees our bits, so it does not sleep — or it came
    // earlier, and we read its 0 and signal. No wake-up is lost; no SeqCst fence is needed.
    awake.fetch_add(0, Ordering::AcqRel) == 0
}

/// Reader: about to sleep on the doorbell. After this, re-check the pending bits (or the
/// channels' FRESH bits): sleep only if they show nothing new.
#[inline]
pub fn reader_about_to_sleep(awake: &AtomicU64) {
    // AcqRel swap, paired with the writer's RMW in `reader_may_sleep` (see there).
    awake.swap(0, Ordering::AcqRel);
}

/// Reader: awake again; writers may skip their signals until it next sleeps.
#[inline]
pub fn reader_awake(awake: &AtomicU64) {
    // Relaxed: only a hint that saves the writer a syscall. A stale value costs at most one
    // spurious signal (read 0) or nothing (read 1: the reader re-checks before sleeping).
    awake.store(1, Ordering::Relaxed);
}

#[cfg(all(test, loom))]
mod loom_tests {
    //! Model checks of the protocol. Run with
    //! `RUSTFLAGS="--cfg loom" cargo test -p gsw-ffi --release --lib protocol`.
    use super::*;
    use loom::cell::UnsafeCell;
    use loom::sync::{Arc, Condvar, Mutex};
    use loom::thread;

    /// One channel with three slots; each slot holds (sequence, payload) where payload is
    /// derived from the sequence, so a torn read shows up as a mismatch. loom's UnsafeCell
    /// also fails the model if the writer and reader ever touch one slot concurrently.
    struct Channel {
        control: AtomicU64,
        slots: [UnsafeCell<(u64, u64)>; 3],
    }

    impl Channel {
        fn new() -> Self {
            Channel {
                control: AtomicU64::new(INITIAL_CONTROL),
                slots: [
                    UnsafeCell::new((0, 0)),
                    UnsafeCell::new((0, 0)),
                    UnsafeCell::new((0, 0)),
                ],
            }
        }
    }

    fn payload(seq: u64) -> u64 {
        seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xA5A5
    }

    /// eventfd as the kernel implements it: a counter under a lock, a blocking read that
    /// waits for non-zero, and a non-blocking drain.
    struct EventFd {
        count: Mutex<u64>,
        cond: Condvar,
    }

    impl EventFd {
        fn new() -> Self {
            EventFd {
                count: Mutex::new(0),
                cond: Condvar::new(),
            }
        }
        fn signal(&self) {
            *self.count.lock().unwrap() += 1;
            self.cond.notify_all();
        }
        fn drain(&self) {
            *self.count.lock().unwrap() = 0;
        }
        /// Blocks until readable (poll): loom reports a deadlock if this never returns.
        fn wait(&self) {
            let mut count = self.count.lock().unwrap();
            while *count == 0 {
                count = self.cond.wait(count).unwrap();
            }
        }
    }

    #[test]
    fn reads_are_never_torn_and_never_go_back() {
        loom::model(|| {
            let ch = Arc::new(Channel::new());
            let writer = {
                let ch = ch.clone();
                thread::spawn(move || {
                    let mut mine = INITIAL_WRITER_SLOT;
                    for seq in 1..=3u64 {
                        ch.slots[mine as usize].with_mut(|p| {
                            // SAFETY: the protocol gives the writer sole ownership of `mine`;
                            // loom checks that claim on every interleaving.
                            unsafe { *p = (seq, payload(seq)) }
                        });
                        mine = publish(&ch.control, mine).0;
                    }
                })
            };
            let mut held = INITIAL_READER_SLOT;
            let mut last = 0;
            for _ in 0..4 {
                if let Some(slot) = acquire(&ch.control, held) {
                    held = slot;
                }
                let (seq, data) = ch.slots[held as usize].with(|p| {
                    // SAFETY: the reader owns `held`; loom checks it.
                    unsafe { *p }
                });
                assert!(seq >= last, "sequence went back: {seq} after {last}");
                if seq > 0 {
                    assert_eq!(data, payload(seq), "torn read of seq {seq}");
                }
                last = seq;
            }
            writer.join().unwrap();
            if let Some(slot) = acquire(&ch.control, held) {
                held = slot;
            }
            let (seq, _) = ch.slots[held as usize].with(|p| {
                // SAFETY: the writer has finished; the reader owns `held`.
                unsafe { *p }
            });
            assert_eq!(
                seq, 3,
                "after the writer stops the reader must see its last value"
            );
        });
    }

    /// Two channels behind one doorbell with a pending bitmap: the reader sleeps whenever it
    /// finds nothing, and must still end up with the writer's last value on both channels.
    #[test]
    fn doorbell_loses_no_wakeup() {
        loom::model(|| {
            let chans = Arc::new([Channel::new(), Channel::new()]);
            let pending = Arc::new(AtomicU64::new(0));
            let bell = Arc::new(EventFd::new());
            const LAST: u64 = 2;
            let writer = {
                let (chans, pending, bell) = (chans.clone(), pending.clone(), bell.clone());
                thread::spawn(move || {
                    let mut mine = [INITIAL_WRITER_SLOT; 2];
                    for seq in 1..=LAST {
                        // One batch: publish both channels, ring at most once.
                        let mut ring = false;
                        for c in 0..2 {
                            chans[c].slots[mine[c] as usize].with_mut(|p| {
                                // SAFETY: writer-owned slot, checked by loom.
                                unsafe { *p = (seq, payload(seq)) }
                            });
                            let (next, idle) = publish(&chans[c].control, mine[c]);
                            mine[c] = next;
                            if idle {
                                mark_pending(&pending, c as u32);
                                ring = true;
                            }
                        }
                        if ring {
                            bell.signal();
                        }
                    }
                })
            };
            let mut held = [INITIAL_READER_SLOT; 2];
            let mut seen = [0u64; 2];
            while seen != [LAST, LAST] {
                bell.drain();
                let bits = take_pending(&pending);
                let mut got = false;
                for c in 0..2 {
                    if bits & (1 << c) == 0 {
                        continue;
                    }
                    if let Some(slot) = acquire(&chans[c].control, held[c]) {
                        held[c] = slot;
                        let (seq, data) = chans[c].slots[slot as usize].with(|p| {
                            // SAFETY: reader-owned slot, checked by loom.
                            unsafe { *p }
                        });
                        assert_eq!(data, payload(seq));
                        assert!(seq > seen[c]);
                        seen[c] = seq;
                        got = true;
                    }
                }
                if !got {
                    bell.wait();
                }
            }
            writer.join().unwrap();
        });
    }

    /// The same link with the awake word: the reader marks itself awake while it works and
    /// clears the word (then re-checks) before sleeping; the writer signals only when the word
    /// says it may be asleep. The reader must still end up with the last value of both
    /// channels, having slept whenever it found nothing.
    #[test]
    fn awake_word_loses_no_wakeup() {
        // One channel (the awake word's interplay with one pending bit is the whole story;
        // two channels multiply interleavings without adding cases), a bounded number of
        // preemptions so the model finishes in seconds: 3 covers every interleaving of the
        // writer's publish/mark/decide against the reader's drain/scan/clear/re-check.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        builder.check(|| {
            let chan = Arc::new(Channel::new());
            let pending = Arc::new(AtomicU64::new(0));
            let awake = Arc::new(AtomicU64::new(0));
            let bell = Arc::new(EventFd::new());
            const LAST: u64 = 2;
            let writer = {
                let (chan, pending, awake, bell) =
                    (chan.clone(), pending.clone(), awake.clone(), bell.clone());
                thread::spawn(move || {
                    let mut mine = INITIAL_WRITER_SLOT;
                    for seq in 1..=LAST {
                        chan.slots[mine as usize].with_mut(|p| {
                            // SAFETY: writer-owned slot, checked by loom.
                            unsafe { *p = (seq, payload(seq)) }
                        });
                        let (next, idle) = publish(&chan.control, mine);
                        mine = next;
                        if idle {
                            mark_pending(&pending, 0);
                            if reader_may_sleep(&awake) {
                                bell.signal();
                            }
                        }
                    }
                })
            };
            let mut held = INITIAL_READER_SLOT;
            let mut seen = 0u64;
            let mut scan = |held: &mut u8, seen: &mut u64| {
                if take_pending(&pending) == 0 {
                    return false;
                }
                let Some(slot) = acquire(&chan.control, *held) else {
                    return false;
                };
                *held = slot;
                let (seq, data) = chan.slots[slot as usize].with(|p| {
                    // SAFETY: reader-owned slot, checked by loom.
                    unsafe { *p }
                });
                assert_eq!(data, payload(seq));
                assert!(seq > *seen);
                *seen = seq;
                true
            };
            while seen != LAST {
                bell.drain();
                if scan(&mut held, &mut seen) {
                    continue;
                }
                reader_about_to_sleep(&awake);
                if !scan(&mut held, &mut seen) {
                    bell.wait();
                }
                reader_awake(&awake);
            }
            writer.join().unwrap();
        });
    }

    /// A reader that gives back pending bits it could not process keeps them for its next scan.
    #[test]
    fn restored_bits_survive_a_concurrent_mark() {
        loom::model(|| {
            let word = Arc::new(AtomicU64::new(0));
            let w = word.clone();
            let t = thread::spawn(move || mark_pending(&w, 1));
            let taken = take_pending(&word);
            restore_pending(&word, taken);
            t.join().unwrap();
            assert_eq!(take_pending(&word) & 0b10, 0b10);
        });
    }
}
