//! The older ground-software scheme that gsw replaces, written as a competent implementation
//! so gsw's channel can be compared against it in the same run (see `seed-notes.txt`, "here's
//! how old GSW did it"):
//!
//! - one readers/writer lock with writer priority over the shared packet, in shared memory,
//!   built from atomics and process-shared futexes (`FUTEX_WAIT`/`FUTEX_WAKE` without
//!   `FUTEX_PRIVATE_FLAG`);
//! - a writer takes the lock, copies the whole packet into shared memory, bumps a counter,
//!   releases the lock and `FUTEX_WAKE`s readers waiting on the counter;
//! - a reader takes the read lock and copies the packet; when it is not newer than what it
//!   has, it sleeps with `FUTEX_WAIT` on the counter.
//!
//! The lock follows the design of Rust's standard-library futex `RwLock`
//! (`library/std/src/sys/sync/rwlock/futex.rs`, MIT/Apache-2.0): writer-preferring, a bounded
//! spin before sleeping, readers sleep on the state word, writers on a separate notification
//! counter. Differences: the futexes are process-shared, and every sleep has a deadline so a
//! peer that dies holding the lock makes the benchmark fail instead of hang.
//!
//! A writer skips the `FUTEX_WAKE` syscall when no reader is registered as waiting
//! ([`WakePolicy::WhenWaiting`], the default); [`WakePolicy::Always`] wakes after every write,
//! as the simplest form of the old scheme did.
//!
//! Shared layout (each part on its own 128-byte line so the lock, the wake counter and the
//! data do not false-share): header | lock state + writer notify | counter + waiter count |
//! packet sequence number | packet bytes.

use crate::shm::SharedMem;
use crate::sys::{futex_wait, futex_wake, FutexWait};
use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

const LINE: usize = 128;
const OFF_MAGIC: usize = 0; // u64
const OFF_VERSION: usize = 8; // u32
const OFF_PAYLOAD_SIZE: usize = 12; // u32
const OFF_INIT: usize = 16; // u32, stored last
const OFF_STATE: usize = LINE; // u32: the readers/writer lock
const OFF_WRITER_NOTIFY: usize = LINE + 4; // u32: futex writers sleep on
const OFF_COUNTER: usize = 2 * LINE; // u32: low 32 bits of the packet sequence number; readers sleep on it
const OFF_WAITERS: usize = 2 * LINE + 4; // u32: readers registered as (about to be) sleeping on the counter
const OFF_SEQ: usize = 3 * LINE; // u64: sequence number of the packet (written under the write lock)
const OFF_DATA: usize = 4 * LINE; // packet bytes

const MAGIC: u64 = u64::from_le_bytes(*b"GSWBASE1");
const VERSION: u32 = 1;

// Lock state, as in std's futex RwLock: bits 0..30 count readers (MASK = write-locked),
// bit 30 = readers are sleeping on `state`, bit 31 = writers are sleeping on `writer_notify`.
const READ_LOCKED: u32 = 1;
const MASK: u32 = (1 << 30) - 1;
const WRITE_LOCKED: u32 = MASK;
const MAX_READERS: u32 = MASK - 1;
const READERS_WAITING: u32 = 1 << 30;
const WRITERS_WAITING: u32 = 1 << 31;
/// Default bound on spinning for the lock before sleeping (std's choice).
pub const DEFAULT_SPINS: u32 = 100;

fn is_unlocked(s: u32) -> bool {
    s & MASK == 0
}
fn is_write_locked(s: u32) -> bool {
    s & MASK == WRITE_LOCKED
}
fn has_readers_waiting(s: u32) -> bool {
    s & READERS_WAITING != 0
}
fn has_writers_waiting(s: u32) -> bool {
    s & WRITERS_WAITING != 0
}
/// Readers may not take the lock while anyone is waiting: waiting writers have priority,
/// and waiting readers are about to be woken by the unlocker.
fn is_read_lockable(s: u32) -> bool {
    s & MASK < MAX_READERS && !has_readers_waiting(s) && !has_writers_waiting(s)
}

/// When a writer issues `FUTEX_WAKE` on the counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WakePolicy {
    /// Only when a reader has registered as waiting (no syscall when nobody sleeps).
    WhenWaiting,
    /// After every write.
    Always,
}

/// A handle on one old-scheme shared packet. Create it before `fork()` (both processes then
/// share it), or send [`BaselineShm::shm`]'s memfd to another process and [`BaselineShm::attach`].
/// Any number of writers and readers may use it concurrently.
#[derive(Debug)]
pub struct BaselineShm {
    shm: SharedMem,
    payload_size: usize,
    policy: WakePolicy,
    spins: u32,
    lock_timeout: Duration,
    /// `FUTEX_WAKE` calls this handle's writes made (the old scheme's doorbell rings).
    wakes: AtomicU64,
}

fn timed_out(what: &str, t: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("baseline: {what} not acquired within {t:?} (did a peer die holding the lock?)"),
    )
}

impl BaselineShm {
    /// Creates a shared packet of `payload_size` bytes (zeroed, sequence number 0), with the
    /// default wake policy ([`WakePolicy::WhenWaiting`]), [`DEFAULT_SPINS`] and a 5 s lock timeout.
    pub fn create(payload_size: usize) -> io::Result<Self> {
        let size32 =
            u32::try_from(payload_size).map_err(|_| io::Error::other("payload too large"))?;
        let shm = SharedMem::create("gsw-bench-baseline", OFF_DATA + payload_size)?;
        // Relaxed: nobody else can see the mapping yet; attach() pairs with the Release below.
        shm.atomic_u64(OFF_MAGIC).store(MAGIC, Ordering::Relaxed);
        shm.atomic_u32(OFF_VERSION)
            .store(VERSION, Ordering::Relaxed);
        shm.atomic_u32(OFF_PAYLOAD_SIZE)
            .store(size32, Ordering::Relaxed);
        // Release: an attacher that sees INIT=1 (Acquire) sees the header fields above.
        shm.atomic_u32(OFF_INIT).store(1, Ordering::Release);
        Ok(Self {
            shm,
            payload_size,
            policy: WakePolicy::WhenWaiting,
            spins: DEFAULT_SPINS,
            lock_timeout: Duration::from_secs(5),
            wakes: AtomicU64::new(0),
        })
    }

    /// Attaches to a mapping created by [`BaselineShm::create`] in another process.
    pub fn attach(shm: SharedMem) -> io::Result<Self> {
        // Acquire: pairs with the creator's Release store of INIT.
        if shm.len() < OFF_DATA || shm.atomic_u32(OFF_INIT).load(Ordering::Acquire) != 1 {
            return Err(io::Error::other("baseline: segment not initialised"));
        }
        // Relaxed: ordered by the Acquire above.
        let magic = shm.atomic_u64(OFF_MAGIC).load(Ordering::Relaxed);
        let version = shm.atomic_u32(OFF_VERSION).load(Ordering::Relaxed);
        if magic != MAGIC || version != VERSION {
            return Err(io::Error::other(
                "baseline: not a baseline segment of this version",
            ));
        }
        let payload_size = shm.atomic_u32(OFF_PAYLOAD_SIZE).load(Ordering::Relaxed) as usize;
        if OFF_DATA + payload_size > shm.len() {
            return Err(io::Error::other(
                "baseline: segment smaller than its payload",
            ));
        }
        Ok(Self {
            shm,
            payload_size,
            policy: WakePolicy::WhenWaiting,
            spins: DEFAULT_SPINS,
            lock_timeout: Duration::from_secs(5),
            wakes: AtomicU64::new(0),
        })
    }

    /// `FUTEX_WAKE` calls made by writes through this handle so far.
    pub fn wakes(&self) -> u64 {
        // Relaxed: a statistic; callers read it from the writing thread.
        self.wakes.load(Ordering::Relaxed)
    }

    /// Sets when writers issue `FUTEX_WAKE` (per process handle).
    pub fn with_wake_policy(mut self, policy: WakePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets how many times a contended lock acquisition spins before it sleeps (default
    /// [`DEFAULT_SPINS`]; 0 sleeps at once, as glibc's `pthread_rwlock` does).
    pub fn with_spin_limit(mut self, spins: u32) -> Self {
        self.spins = spins;
        self
    }

    /// Sets how long a lock acquisition may wait before failing with `TimedOut`.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// Packet size in bytes.
    pub fn payload_size(&self) -> usize {
        self.payload_size
    }

    /// The underlying shared mapping (e.g. to pass its memfd to another process).
    pub fn shm(&self) -> &SharedMem {
        &self.shm
    }

    fn state(&self) -> &AtomicU32 {
        self.shm.atomic_u32(OFF_STATE)
    }
    fn writer_notify(&self) -> &AtomicU32 {
        self.shm.atomic_u32(OFF_WRITER_NOTIFY)
    }
    fn counter(&self) -> &AtomicU32 {
        self.shm.atomic_u32(OFF_COUNTER)
    }
    fn waiters(&self) -> &AtomicU32 {
        self.shm.atomic_u32(OFF_WAITERS)
    }
    fn seq_word(&self) -> &AtomicU64 {
        self.shm.atomic_u64(OFF_SEQ)
    }

    /// Writes a whole packet (`data.len()` must equal the payload size) and wakes waiting
    /// readers; returns the packet's sequence number (1 for the first write).
    pub fn write(&self, data: &[u8]) -> io::Result<u64> {
        if data.len() != self.payload_size {
            return Err(io::Error::other(format!(
                "baseline: write of {} bytes into a {}-byte packet",
                data.len(),
                self.payload_size
            )));
        }
        self.write_lock()?;
        // Relaxed: the write lock orders every access to the sequence number and the bytes.
        let seq = self.seq_word().load(Ordering::Relaxed) + 1;
        // SAFETY: we hold the write lock, so no reader or writer accesses the packet bytes
        // until write_unlock's Release, which publishes this copy.
        unsafe { self.shm.write_bytes(OFF_DATA, data) };
        self.seq_word().store(seq, Ordering::Relaxed);
        // The counter moves under the lock so that concurrent writers cannot move it backwards.
        // SeqCst: one half of a store→load (Dekker) pair with `wait_newer`: we store the counter
        // then load `waiters`; a reader increments `waiters` then loads the counter. In the single
        // total order of SeqCst operations one of them comes first, so either the reader sees
        // the new counter and does not sleep, or we see its registration and wake it.
        self.counter().store(seq as u32, Ordering::SeqCst);
        self.write_unlock();
        // SeqCst: the other half of the pair above (a weaker load could see a stale 0 and skip
        // the wake while the reader goes to sleep: a lost wake-up).
        if self.policy == WakePolicy::Always || self.waiters().load(Ordering::SeqCst) != 0 {
            // Relaxed: a statistic of this handle, read by the same thread.
            self.wakes.fetch_add(1, Ordering::Relaxed);
            futex_wake(self.counter(), i32::MAX)?;
        }
        Ok(seq)
    }

    /// Copies the latest packet into `out[..payload_size]` under the read lock; returns its
    /// sequence number (0 when nothing was written yet).
    pub fn read_latest(&self, out: &mut [u8]) -> io::Result<u64> {
        let n = self.payload_size;
        if out.len() < n {
            return Err(io::Error::other(
                "baseline: read buffer smaller than the packet",
            ));
        }
        self.read_lock()?;
        // Relaxed: the read lock's Acquire (paired with the writer's Release unlock) orders it.
        let seq = self.seq_word().load(Ordering::Relaxed);
        // SAFETY: we hold a read lock, so no writer modifies the bytes during the copy.
        unsafe { self.shm.read_bytes(OFF_DATA, &mut out[..n]) };
        self.read_unlock();
        Ok(seq)
    }

    /// Sleeps (`FUTEX_WAIT` on the counter) until a packet newer than `seq` has been written;
    /// returns `Ok(true)` when there is one, `Ok(false)` after `timeout` without one.
    /// Returns at once when a newer packet already exists. (The counter holds the low 32 bits
    /// of the sequence number: exactly 2³² writes during one wait would go unnoticed.)
    pub fn wait_newer(&self, seq: u64, timeout: Duration) -> io::Result<bool> {
        let target = seq as u32;
        let deadline = crate::clock::Deadline::after(timeout);
        loop {
            // SeqCst: cheap early exit; the decisive check is the one after registering.
            if self.counter().load(Ordering::SeqCst) != target {
                return Ok(true);
            }
            // SeqCst RMW then SeqCst load: our half of the Dekker pair described in `write`.
            self.waiters().fetch_add(1, Ordering::SeqCst);
            let outcome = if self.counter().load(Ordering::SeqCst) != target {
                FutexWait::Mismatch
            } else {
                match deadline.remaining() {
                    // The kernel re-checks counter == target atomically with queueing us, so a
                    // write between our load and the sleep makes this return at once.
                    Some(left) => futex_wait(self.counter(), target, Some(left))?,
                    None => FutexWait::TimedOut,
                }
            };
            // Relaxed: a stale non-zero count only costs a writer one needless FUTEX_WAKE.
            self.waiters().fetch_sub(1, Ordering::Relaxed);
            if outcome == FutexWait::TimedOut || deadline.expired() {
                // SeqCst like the loads above (a last look before reporting a timeout).
                return Ok(self.counter().load(Ordering::SeqCst) != target);
            }
        }
    }

    // ---- the readers/writer lock -------------------------------------------------------

    fn spin_until(&self, f: impl Fn(u32) -> bool) -> u32 {
        let mut spin = self.spins;
        loop {
            // Relaxed: only a hint for whether to try; the CAS that takes the lock is Acquire.
            let s = self.state().load(Ordering::Relaxed);
            if f(s) || spin == 0 {
                return s;
            }
            std::hint::spin_loop();
            spin -= 1;
        }
    }

    fn read_lock(&self) -> io::Result<()> {
        // Relaxed: a failed or skipped attempt is retried on the slow path.
        let s = self.state().load(Ordering::Relaxed);
        // Acquire on success: pairs with the last writer's Release unlock, so its packet bytes
        // and sequence number are visible to our copy.
        if is_read_lockable(s)
            && self
                .state()
                .compare_exchange_weak(s, s + READ_LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(());
        }
        self.read_contended()
    }

    #[cold]
    fn read_contended(&self) -> io::Result<()> {
        let deadline = crate::clock::Deadline::after(self.lock_timeout);
        // Stop spinning once it is no longer write-locked, or when anyone waits (fairness).
        let spin = || {
            self.spin_until(|s| {
                !is_write_locked(s) || has_readers_waiting(s) || has_writers_waiting(s)
            })
        };
        let mut state = spin();
        loop {
            if is_read_lockable(state) {
                // Acquire: as in read_lock.
                match self.state().compare_exchange_weak(
                    state,
                    state + READ_LOCKED,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(()),
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if state & MASK == MAX_READERS {
                return Err(io::Error::other("baseline: too many concurrent readers"));
            }
            if !has_readers_waiting(state) {
                // Relaxed: the flag orders nothing by itself; FUTEX_WAIT compares the word
                // atomically with queueing, so an unlock that clears it wakes us or stops the sleep.
                if let Err(s) = self.state().compare_exchange(
                    state,
                    state | READERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    state = s;
                    continue;
                }
            }
            let left = deadline
                .remaining()
                .ok_or_else(|| timed_out("read lock", self.lock_timeout))?;
            futex_wait(self.state(), state | READERS_WAITING, Some(left))?;
            state = spin();
        }
    }

    fn read_unlock(&self) {
        // Release: our copy of the packet happens-before the next writer's Acquire of the lock,
        // so it cannot overwrite bytes we are still reading.
        let state = self.state().fetch_sub(READ_LOCKED, Ordering::Release) - READ_LOCKED;
        // The last reader out wakes a waiting writer (readers only wait while writers do).
        if is_unlocked(state) && has_writers_waiting(state) {
            self.wake_writer_or_readers(state);
        }
    }

    fn write_lock(&self) -> io::Result<()> {
        // Acquire: pairs with readers' Release unlocks (their copies are finished) and with
        // the previous writer's Release unlock.
        if self
            .state()
            .compare_exchange_weak(0, WRITE_LOCKED, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            return Ok(());
        }
        self.write_contended()
    }

    #[cold]
    fn write_contended(&self) -> io::Result<()> {
        let deadline = crate::clock::Deadline::after(self.lock_timeout);
        // Stop spinning once unlocked, or when other writers already wait (fairness).
        let spin = || self.spin_until(|s| is_unlocked(s) || has_writers_waiting(s));
        let mut state = spin();
        let mut other_writers_waiting = 0;
        loop {
            if is_unlocked(state) {
                // Acquire: as in write_lock. Keep the waiting bits (and re-set ours if other
                // writers may still sleep) so the next unlock wakes them.
                match self.state().compare_exchange_weak(
                    state,
                    state | WRITE_LOCKED | other_writers_waiting,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok(()),
                    Err(s) => {
                        state = s;
                        continue;
                    }
                }
            }
            if !has_writers_waiting(state) {
                // Relaxed: see the READERS_WAITING flag in read_contended.
                if let Err(s) = self.state().compare_exchange(
                    state,
                    state | WRITERS_WAITING,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    state = s;
                    continue;
                }
            }
            other_writers_waiting = WRITERS_WAITING;
            // Acquire, read *before* re-checking the state: pairs with the Release increment in
            // wake_writer, so a notification sent after our re-check changes the value we sleep on.
            let notify = self.writer_notify().load(Ordering::Acquire);
            // Relaxed: only decides whether to sleep; the futex re-checks `notify`.
            state = self.state().load(Ordering::Relaxed);
            if is_unlocked(state) || !has_writers_waiting(state) {
                continue;
            }
            let left = deadline
                .remaining()
                .ok_or_else(|| timed_out("write lock", self.lock_timeout))?;
            futex_wait(self.writer_notify(), notify, Some(left))?;
            state = spin();
        }
    }

    fn write_unlock(&self) {
        // Release: publishes the packet bytes, sequence number and counter to the next locker.
        let state = self.state().fetch_sub(WRITE_LOCKED, Ordering::Release) - WRITE_LOCKED;
        if has_writers_waiting(state) || has_readers_waiting(state) {
            self.wake_writer_or_readers(state);
        }
    }

    /// After unlocking: wake one writer if any waits (writer priority), else all readers.
    /// If the lock was re-taken meanwhile, its holder will do this at its own unlock.
    #[cold]
    fn wake_writer_or_readers(&self, mut state: u32) {
        // All CASes Relaxed: they only hand over the duty to wake; the futex calls that follow
        // are ordered by the kernel, and lock data is ordered by the lock's Acquire/Release.
        if state == WRITERS_WAITING {
            match self
                .state()
                .compare_exchange(state, 0, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.wake_writer();
                    return;
                }
                Err(s) => state = s,
            }
        }
        if state == READERS_WAITING + WRITERS_WAITING {
            if self
                .state()
                .compare_exchange(state, READERS_WAITING, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
            {
                return;
            }
            if self.wake_writer() {
                return;
            }
            // No writer was asleep to take the hand-off: wake the readers instead.
            state = READERS_WAITING;
        }
        if state == READERS_WAITING
            && self
                .state()
                .compare_exchange(state, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let _ = futex_wake(self.state(), i32::MAX);
        }
    }

    /// Wakes one writer; true if one was actually asleep.
    fn wake_writer(&self) -> bool {
        // Release: pairs with the Acquire load in write_contended (see there).
        self.writer_notify().fetch_add(1, Ordering::Release);
        // A failed wake (impossible for a valid address) counts as "nobody woke", which makes
        // the caller fall back to waking readers: conservative, never a lost wake-up.
        futex_wake(self.writer_notify(), 1).is_ok_and(|n| n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_wait() {
        let b = BaselineShm::create(32).unwrap();
        let mut out = [0u8; 32];
        assert_eq!(b.read_latest(&mut out).unwrap(), 0);
        assert!(!b.wait_newer(0, Duration::from_millis(5)).unwrap());
        assert_eq!(b.write(&[7u8; 32]).unwrap(), 1);
        assert!(b.wait_newer(0, Duration::from_millis(5)).unwrap());
        assert_eq!(b.read_latest(&mut out).unwrap(), 1);
        assert_eq!(out, [7u8; 32]);
        assert!(b.write(&[1u8; 3]).is_err());
    }

    #[test]
    fn threads_no_torn_reads_no_lost_wakeups() {
        let b = std::sync::Arc::new(BaselineShm::create(256).unwrap());
        let n = 20_000u64;
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256];
                    let mut last = 0;
                    while last < n {
                        let s = b.read_latest(&mut buf).unwrap();
                        if s > last {
                            let (ps, _) = crate::payload::check(&buf).unwrap();
                            assert_eq!(ps, s);
                            last = s;
                        } else {
                            assert!(
                                b.wait_newer(s, Duration::from_secs(5)).unwrap(),
                                "lost wake-up"
                            );
                        }
                    }
                })
            })
            .collect();
        let mut buf = vec![0u8; 256];
        for s in 1..=n {
            crate::payload::fill(&mut buf, s);
            assert_eq!(b.write(&buf).unwrap(), s);
        }
        for r in readers {
            r.join().unwrap();
        }
    }
}
