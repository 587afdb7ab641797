//! `baseline`: the older ground-software scheme ([`crate::baseline`]) measured two ways.
//!
//! (a) Writer throughput: one writer process writes flat out, one reader process reads as
//!     fast as it can (read lock + copy; when nothing is newer, `FUTEX_WAIT` on the counter).
//!     Interleaved with phases where the reader is parked, which give the writer-alone
//!     reference: how much an attached reader slows the writer.
//! (b) Wake latency: writer write → a reader that was asleep has the new packet, measured by
//!     [`crate::wake::measure`] interleaved with the same measurement over a raw eventfd (the
//!     kernel's floor) in the same run.

use super::{fail, Common, WAIT_TIMEOUT};
use crate::baseline::{BaselineShm, WakePolicy};
use crate::cli::Args;
use crate::clock::now_ns;
use crate::payload;
use crate::proc::{fork_child, Child, CpuPair};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::summarize;
use crate::sys::{futex_wait, futex_wake};
use crate::wake::{self, BaselineWake, EventfdWake, WakeMechanism, WakeOptions};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Usage text.
pub const HELP: &str = "\
gsw-bench-native baseline [--samples N] [--warmup N] [--rounds N] [--gap-us US] [--size BYTES]
                          [--duration SECS] [--always-wake] [--no-pin] [--timeout SECS]
  The old scheme (readers/writer lock + futex on a counter, cross-process):
  (a) writer throughput with one reader reading flat out, vs the writer alone;
  (b) write -> blocked-reader wake latency, vs a raw eventfd wake in the same run.
  --samples N      wake-latency samples per mechanism (default 100000)
  --warmup N       unrecorded wake samples per mechanism first (default 5000)
  --rounds N       interleaved rounds of baseline/eventfd samples (default 10)
  --gap-us US      pause after the reader is waiting, before the write, so it is asleep (default 20)
  --size BYTES     packet bytes, >= 16 (default 64)
  --duration SECS  total throughput time, split between reader-attached and writer-alone phases (default 3)
  --always-wake    FUTEX_WAKE after every write, not only when a reader waits
  --spin N         spins on a contended lock before sleeping (default 100, as Rust's std;
                   0 = sleep at once, as glibc's pthread_rwlock)";

/// Options of `baseline`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Wake-latency samples per mechanism.
    pub samples: usize,
    /// Unrecorded wake samples per mechanism.
    pub warmup: usize,
    /// Interleaved rounds (throughput phases and latency blocks).
    pub rounds: usize,
    /// Settle time before each wake-latency write.
    pub gap: Duration,
    /// Packet bytes.
    pub size: usize,
    /// Total throughput time.
    pub duration: Duration,
    /// Writers' wake policy.
    pub policy: WakePolicy,
    /// Spins on a contended lock before sleeping.
    pub spins: u32,
    /// Pinning and watchdog.
    pub common: Common,
}

impl Options {
    /// A baseline segment configured by these options.
    pub fn segment(&self) -> io::Result<BaselineShm> {
        Ok(BaselineShm::create(self.size)?
            .with_wake_policy(self.policy)
            .with_spin_limit(self.spins))
    }

    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            samples: a.get("--samples", 100_000)?,
            warmup: a.get("--warmup", 5_000)?,
            rounds: a.get("--rounds", 10)?,
            gap: Duration::from_micros(a.get("--gap-us", 20)?),
            size: a.get("--size", 64)?,
            duration: a.secs("--duration", 3.0)?,
            policy: if a.flag("--always-wake") {
                WakePolicy::Always
            } else {
                WakePolicy::WhenWaiting
            },
            spins: a.get("--spin", crate::baseline::DEFAULT_SPINS)?,
            common: Common::from_args(a, 180.0)?,
        };
        if o.size < payload::MIN_SIZE {
            return Err(format!("--size must be at least {}", payload::MIN_SIZE));
        }
        if o.rounds == 0 || o.samples == 0 {
            return Err("--rounds and --samples must be at least 1".into());
        }
        Ok(o)
    }
}

// Throughput control page. PHASE is a futex word the parked reader sleeps on; it holds
// `epoch << 2 | state`, and the reader acknowledges a pause by storing its epoch in PARKED,
// so an acknowledgement of an earlier pause is never mistaken for the current one.
const PHASE: usize = 0;
const PARKED: usize = 64;
const READS: usize = 128;
const FRESH: usize = 136;
const SLEEPS: usize = 144;
const DONE: usize = 152;
const PAUSE: u32 = 0;
const RUN: u32 = 1;
const EXIT: u32 = 2;

/// Figures of the throughput part.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    /// Writes per second while the reader read flat out.
    pub with_reader: f64,
    /// Writes per second with the reader parked.
    pub alone: f64,
    /// Reader's read-lock-and-copy operations per second (attached phases).
    pub reads_per_s: f64,
    /// New packets the reader saw per second.
    pub fresh_per_s: f64,
    /// Times per second the reader found nothing new and waited on the counter.
    pub sleeps_per_s: f64,
    /// Whether both sides were pinned.
    pub pinned: bool,
}

/// Measures writer throughput with a reader attached vs alone, interleaved in `o.rounds`.
pub fn throughput(o: &Options) -> io::Result<Throughput> {
    let bl = o.segment()?;
    let ctl = SharedMem::create("gsw-bench-baseline-ctl", 4096)?;
    let cpus = CpuPair::choose(o.common.pin);

    let mut child = fork_child(cpus.child, || {
        let (phase, parked) = (ctl.atomic_u32(PHASE), ctl.atomic_u32(PARKED));
        let mut buf = vec![0u8; o.size];
        let (mut last, mut reads, mut fresh, mut sleeps) = (0u64, 0u64, 0u64, 0u64);
        loop {
            // Acquire: pairs with the parent's Release phase changes (nothing else rides on it).
            let p = phase.load(Ordering::Acquire);
            match p & 3 {
                RUN => {
                    let s = bl.read_latest(&mut buf).map_err(|e| e.to_string())?;
                    reads += 1;
                    if s > last {
                        let (ps, _) = payload::check(&buf)?;
                        if ps != s {
                            return Err(format!("packet {s} carried payload {ps}"));
                        }
                        last = s;
                        fresh += 1;
                    } else {
                        sleeps += 1;
                        if !bl.wait_newer(s, WAIT_TIMEOUT).map_err(|e| e.to_string())? {
                            return Err(format!(
                                "no packet after {s} within {WAIT_TIMEOUT:?} (lost wake-up?)"
                            ));
                        }
                    }
                }
                PAUSE => {
                    // Release: tells the parent we stopped reading (for this pause's epoch).
                    parked.store(p >> 2, Ordering::Release);
                    futex_wait(phase, p, Some(WAIT_TIMEOUT)).map_err(|e| e.to_string())?;
                }
                _ => break,
            }
        }
        // Relaxed stores published by the Release store of DONE.
        ctl.atomic_u64(READS).store(reads, Ordering::Relaxed);
        ctl.atomic_u64(FRESH).store(fresh, Ordering::Relaxed);
        ctl.atomic_u64(SLEEPS).store(sleeps, Ordering::Relaxed);
        ctl.atomic_u64(DONE).store(1, Ordering::Release);
        Ok(())
    })?;
    let child_pinned = child.wait_started(WAIT_TIMEOUT)?;
    let parent_pin = cpus.pin_parent()?;

    let (phase, parked) = (ctl.atomic_u32(PHASE), ctl.atomic_u32(PARKED));
    let mut buf = vec![0u8; o.size];
    let mut seq = 0u64;
    let mut epoch = 0u32;
    let mut write = |buf: &mut [u8]| -> io::Result<()> {
        seq += 1;
        payload::fill(buf, seq);
        let got = bl.write(buf)?;
        debug_assert_eq!(got, seq);
        Ok(())
    };
    park(phase, parked, &mut epoch, &mut child, &mut write, &mut buf)?;
    let phase_ns = (o.duration.as_nanos() / (2 * o.rounds as u128)).max(1) as u64;
    let (mut n_with, mut t_with, mut n_alone, mut t_alone) = (0u64, 0u64, 0u64, 0u64);
    for _ in 0..o.rounds {
        // Writer alone (reader parked).
        let (n, t) = flat_out(&mut write, &mut buf, phase_ns)?;
        n_alone += n;
        t_alone += t;
        // Reader attached.
        // Release: pairs with the reader's Acquire phase load.
        phase.store(epoch << 2 | RUN, Ordering::Release);
        futex_wake(phase, 1)?;
        let (n, t) = flat_out(&mut write, &mut buf, phase_ns)?;
        n_with += n;
        t_with += t;
        park(phase, parked, &mut epoch, &mut child, &mut write, &mut buf)?;
    }
    // Release: pairs with the reader's Acquire phase load.
    phase.store(epoch << 2 | EXIT, Ordering::Release);
    futex_wake(phase, 1)?;
    child.wait(WAIT_TIMEOUT)?;
    // Acquire: pairs with the child's Release store of DONE.
    if ctl.atomic_u64(DONE).load(Ordering::Acquire) != 1 {
        return Err(io::Error::other("reader exited without reporting"));
    }
    let per_s = |n: u64| n as f64 * 1e9 / t_with.max(1) as f64;
    Ok(Throughput {
        with_reader: per_s(n_with),
        alone: n_alone as f64 * 1e9 / t_alone.max(1) as f64,
        // Relaxed: ordered by the Acquire load of DONE.
        reads_per_s: per_s(ctl.atomic_u64(READS).load(Ordering::Relaxed)),
        fresh_per_s: per_s(ctl.atomic_u64(FRESH).load(Ordering::Relaxed)),
        sleeps_per_s: per_s(ctl.atomic_u64(SLEEPS).load(Ordering::Relaxed)),
        pinned: child_pinned && parent_pin.pinned(),
    })
}

/// Parks the reader: a new pause epoch, then writes until the reader acknowledges it (each
/// write wakes the reader if it sleeps on the counter; it then sees PAUSE and parks on the
/// phase word).
fn park(
    phase: &AtomicU32,
    parked: &AtomicU32,
    epoch: &mut u32,
    reader: &mut Child,
    write: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
    buf: &mut [u8],
) -> io::Result<()> {
    *epoch += 1;
    // Release: pairs with the reader's Acquire phase load.
    phase.store(*epoch << 2 | PAUSE, Ordering::Release);
    // Wakes the reader if it is parked on an earlier epoch, so it acknowledges this one.
    futex_wake(phase, 1)?;
    let deadline = crate::clock::Deadline::after(WAIT_TIMEOUT);
    // Acquire: pairs with the reader's Release store of PARKED.
    while parked.load(Ordering::Acquire) != *epoch {
        write(buf)?;
        std::thread::sleep(Duration::from_micros(50));
        if deadline.expired() {
            return Err(io::Error::other("reader did not park"));
        }
        if let Some(_status) = reader.try_wait()? {
            return Err(io::Error::other("reader process died"));
        }
    }
    Ok(())
}

/// Writes flat out for `ns`; returns (writes, elapsed ns).
fn flat_out(
    write: &mut dyn FnMut(&mut [u8]) -> io::Result<()>,
    buf: &mut [u8],
    ns: u64,
) -> io::Result<(u64, u64)> {
    let start = now_ns();
    let mut n = 0u64;
    loop {
        for _ in 0..16 {
            write(buf)?;
        }
        n += 16;
        let el = now_ns() - start;
        if el >= ns {
            return Ok((n, el));
        }
    }
}

/// Mean cost of a process-shared `FUTEX_WAKE` on shared memory when nobody waits (what
/// [`WakePolicy::Always`] adds to every write).
pub fn futex_wake_idle_ns(n: u32) -> io::Result<f64> {
    let shm = SharedMem::create("gsw-bench-futex-idle", 64)?;
    let word = shm.atomic_u32(0);
    let start = now_ns();
    for _ in 0..n {
        futex_wake(word, i32::MAX)?;
    }
    Ok((now_ns() - start) as f64 / f64::from(n.max(1)))
}

/// Runs both parts.
pub fn run(o: &Options) -> io::Result<Report> {
    let tp = throughput(o).map_err(|e| fail("baseline throughput", e))?;
    let mut mechs: Vec<Box<dyn WakeMechanism>> = vec![
        Box::new(BaselineWake::new(o.segment()?)),
        Box::new(EventfdWake::new(o.size)?),
    ];
    let wo = WakeOptions {
        samples: o.samples,
        warmup: o.warmup,
        rounds: o.rounds,
        gap: o.gap,
        payload_size: o.size,
        pin: o.common.pin,
        timeout: WAIT_TIMEOUT,
    };
    let mut run = wake::measure(&mut mechs, &wo).map_err(|e| fail("baseline wake latency", e))?;
    let none = || io::Error::other("no samples");
    let ev = summarize(&mut run.results[1].samples).ok_or_else(none)?;
    let bl = summarize(&mut run.results[0].samples).ok_or_else(none)?;
    let ev_pub = summarize(&mut run.results[1].publish).ok_or_else(none)?;
    let bl_pub = summarize(&mut run.results[0].publish).ok_or_else(none)?;

    let mut r = Report::new("baseline");
    r.latency("baseline_wake", &bl, Some(&ev));
    r.latency("eventfd_wake", &ev, None);
    r.latency("baseline_publish", &bl_pub, Some(&ev_pub));
    r.latency("eventfd_publish", &ev_pub, None);
    r.push_ref(
        "baseline_writer_writes_per_s",
        tp.with_reader,
        "writes/s",
        Some(tp.alone),
    );
    r.push("baseline_writer_alone_writes_per_s", tp.alone, "writes/s");
    r.push("baseline_reader_reads_per_s", tp.reads_per_s, "reads/s");
    r.push("baseline_reader_fresh_per_s", tp.fresh_per_s, "packets/s");
    r.push("baseline_reader_waits_per_s", tp.sleeps_per_s, "waits/s");
    r.push("futex_wake_idle_ns", futex_wake_idle_ns(100_000)?, "ns");
    r.push(
        "pinned",
        f64::from(u8::from(tp.pinned && run.pinned)),
        "bool",
    );
    r.push("payload_bytes", o.size as f64, "bytes");
    r.push(
        "always_wake",
        f64::from(u8::from(o.policy == WakePolicy::Always)),
        "bool",
    );
    r.push("lock_spins", f64::from(o.spins), "count");
    r.push("wake_gap_us", o.gap.as_secs_f64() * 1e6, "us");
    Ok(r)
}
