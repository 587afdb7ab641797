//! `channel`: gsw's own channel (`gsw::segment`, through the `gsw` rlib) from Rust, each part
//! measured against its reference in the same run, interleaved (A, B, A, B …):
//!
//! - `micro`: the cost of one publish (no reader waiting), one take of a fresh value, and one
//!   take that finds nothing new, against the protocol floor ([`FloorChannels`]: one copy and
//!   one swap, no checks). Operations are too short to time one by one, so each sample is a
//!   batch of `--batch` operations (one per channel of a `--batch`-channel segment) timed
//!   with two clock reads; the figures are nanoseconds per operation: (batch time − the median
//!   time of two back-to-back clock reads, measured interleaved) / batch.
//! - `wake`: publish → blocked reader has the payload, for gsw ([`GswWake`]), a raw eventfd
//!   (the kernel's floor) and the old scheme ([`BaselineWake`]), by [`wake::measure`]; plus
//!   [`EventfdPollWake`] (the floor with gsw's drain + `poll` instead of a blocking `read`)
//!   and [`GswDrainFirstWake`] (a measured proposal: gsw with the doorbell drained before
//!   sleeping instead of after waking).
//! - `throughput`: a writer writing flat out against one reader, gsw vs the old scheme, in
//!   alternating phases: first with a reader that blocks whenever nothing is new (gsw in
//!   `SegmentReader::wait`, the old scheme in its futex wait: what every gsw subscriber does),
//!   then with a reader that polls flat out and never blocks.
//!
//! Every payload is written by the writer and checked by the reader.

use super::{fail, Common, WAIT_TIMEOUT};
use crate::baseline::BaselineShm;
use crate::cli::Args;
use crate::clock::{clock_cost_ns, now_ns, Deadline};
use crate::gsw_channel::{io_err, pair, FloorChannels, GswDrainFirstWake, GswWake};
use crate::payload;
use crate::proc::{fork_child, Child, CpuPair};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::{summarize, Summary};
use crate::sys::{futex_wait, futex_wake};
use crate::wake::{self, BaselineWake, EventfdPollWake, EventfdWake, WakeMechanism, WakeOptions};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Usage text.
pub const HELP: &str = "\
gsw-bench-native channel [--parts micro,wake,throughput] [--batches N] [--batch N] [--samples N]
                         [--warmup N] [--rounds N] [--gap-us US] [--size BYTES] [--duration SECS]
                         [--no-pin] [--timeout SECS]
  gsw's channel from Rust (gsw::segment), each part against its reference in the same run:
  micro       publish (no reader waiting), take of a fresh value, take with nothing new,
              vs the protocol floor (one copy + one atomic swap, hand-written):
              publish_native_ns, read_native_ns, read_native_empty_ns (ns per operation)
  wake        publish -> blocked reader (SegmentReader::wait + take) has the payload, vs a raw
              eventfd and the old scheme: wake_native_p50_ratio, wake_native_p99_ratio,
              wake_p50_vs_baseline_ratio
  throughput  writer flat out, gsw vs the old scheme, with a reader that blocks when nothing
              is new (writer_vs_baseline_ratio) and with one that polls flat out
              (writer_vs_baseline_flatout_ratio); doorbell rings / futex wakes per second
  wake also measures eventfd_poll_wake: the eventfd floor with gsw's syscalls (drain, poll)
  instead of a blocking read; and gsw_drain_first_wake: gsw with the doorbell drained before
  sleeping instead of after waking (a proposed change to SegmentReader::wait, measured)
  --parts LIST     which parts, comma-separated (default all three)
  --batches N      micro: timed batches per operation (default 100000)
  --batch N        micro: operations per batch = channels in the segment (default 64)
  --samples N      wake: samples per mechanism (default 100000)
  --warmup N       wake: unrecorded samples per mechanism first (default 5000)
  --rounds N       interleaved rounds for every part (default 10)
  --gap-us US      wake: pause after the reader is waiting, before the publish (default 20)
  --size BYTES     payload bytes, >= 16 (default 64)
  --duration SECS  throughput: total time, split between the four phase kinds (default 4)";

/// Options of `channel`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run the micro part.
    pub micro: bool,
    /// Run the wake part.
    pub wake: bool,
    /// Run the throughput part.
    pub throughput: bool,
    /// Micro: timed batches per operation.
    pub batches: usize,
    /// Micro: operations per batch (channels).
    pub batch: usize,
    /// Wake: samples per mechanism.
    pub samples: usize,
    /// Wake: unrecorded samples per mechanism.
    pub warmup: usize,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Wake: settle time before each publish.
    pub gap: Duration,
    /// Payload bytes.
    pub size: usize,
    /// Throughput: total time.
    pub duration: Duration,
    /// Pinning and watchdog.
    pub common: Common,
}

impl Options {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let parts: String = a.get("--parts", "micro,wake,throughput".to_string())?;
        let mut o = Self {
            micro: false,
            wake: false,
            throughput: false,
            batches: a.get("--batches", 100_000)?,
            batch: a.get("--batch", 64)?,
            samples: a.get("--samples", 100_000)?,
            warmup: a.get("--warmup", 5_000)?,
            rounds: a.get("--rounds", 10)?,
            gap: Duration::from_micros(a.get("--gap-us", 20)?),
            size: a.get("--size", 64)?,
            duration: a.secs("--duration", 4.0)?,
            common: Common::from_args(a, 170.0)?,
        };
        for p in parts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p {
                "micro" => o.micro = true,
                "wake" => o.wake = true,
                "throughput" => o.throughput = true,
                other => {
                    return Err(format!(
                        "--parts: unknown part '{other}' (micro, wake, throughput)"
                    ))
                }
            }
        }
        if !(o.micro || o.wake || o.throughput) {
            return Err("--parts names no part".into());
        }
        if o.size < payload::MIN_SIZE || o.size > gsw::segment::MAX_CAPACITY as usize {
            return Err(format!(
                "--size must be {} to {} bytes",
                payload::MIN_SIZE,
                gsw::segment::MAX_CAPACITY
            ));
        }
        if o.rounds == 0 || o.samples == 0 || o.batches == 0 {
            return Err("--rounds, --samples and --batches must be at least 1".into());
        }
        if o.batch == 0 || o.batch > 4096 {
            return Err("--batch must be 1 to 4096".into());
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------------------------------------
// micro

/// Per-batch times (ns) of each micro operation.
struct Micro {
    gsw_publish: Vec<u64>,
    floor_publish: Vec<u64>,
    gsw_read: Vec<u64>,
    floor_read: Vec<u64>,
    gsw_empty: Vec<u64>,
    floor_empty: Vec<u64>,
    /// Two back-to-back clock reads: what every batch time includes besides its operations.
    clock: Vec<u64>,
    pinned: bool,
}

fn mismatch(what: &str, ch: usize, got: u64, want: u64) -> io::Error {
    io::Error::other(format!(
        "{what}: channel {ch} holds seq {got}, expected {want}"
    ))
}

/// Checks a copied-out payload: intact and carrying `want`.
fn check_copy(what: &str, ch: usize, buf: &[u8], want: u64) -> io::Result<()> {
    let (s, _) = payload::check(buf).map_err(|e| fail(what, e))?;
    if s != want {
        return Err(mismatch(what, ch, s, want));
    }
    Ok(())
}

fn micro(o: &Options) -> io::Result<Micro> {
    let n = o.batch;
    let size = o.size;
    let cap = u32::try_from(size).map_err(|_| io::Error::other("size"))?;
    let pin = CpuPair::choose(o.common.pin).pin_parent()?;
    let (w, r) = pair(n, cap)?;
    let mut floor = FloorChannels::new(n, size)?;
    // One payload buffer per channel (filled before each timed batch), one output per channel.
    let mut payloads = vec![0u8; n * size];
    let mut outs = vec![0u8; n * size];
    let mut seqs = vec![0u64; n];
    let mut seq = 0u64;
    let per_round = |round: usize| o.batches / o.rounds + usize::from(round < o.batches % o.rounds);
    let mut m = Micro {
        gsw_publish: Vec::with_capacity(o.batches),
        floor_publish: Vec::with_capacity(o.batches),
        gsw_read: Vec::with_capacity(o.batches),
        floor_read: Vec::with_capacity(o.batches),
        gsw_empty: Vec::with_capacity(o.batches),
        floor_empty: Vec::with_capacity(o.batches),
        clock: Vec::with_capacity(o.batches),
        pinned: pin.pinned(),
    };
    // Fills every channel's payload with the next sequence number (untimed).
    let mut refill = |payloads: &mut [u8], seqs: &mut [u64]| {
        for (ch, p) in payloads.chunks_exact_mut(size).enumerate() {
            seq += 1;
            payload::fill(p, seq);
            seqs[ch] = seq;
        }
    };
    // Warm-up round (unrecorded) then `rounds` recorded rounds; in each, every operation runs
    // its share of batches in turn: A, B, C, … , A, B, C, …
    for round in 0..=o.rounds {
        let (count, record) = if round == 0 {
            ((o.batches / 10).clamp(1, 10_000), false)
        } else {
            (per_round(round - 1), true)
        };

        // The clock pair every batch time includes.
        for _ in 0..count {
            let t0 = now_ns();
            let t = now_ns() - t0;
            if record {
                m.clock.push(t);
            }
        }

        // gsw publish, no reader waiting: every channel's FRESH bit is already set (the
        // priming batch), so no publish rings the doorbell.
        refill(&mut payloads, &mut seqs);
        for (ch, p) in payloads.chunks_exact(size).enumerate() {
            w.publish(ch, p, seqs[ch], 0).map_err(io_err)?;
        }
        for _ in 0..count {
            refill(&mut payloads, &mut seqs);
            let t0 = now_ns();
            for (ch, p) in payloads.chunks_exact(size).enumerate() {
                w.publish(ch, p, seqs[ch], 0).map_err(io_err)?;
            }
            let t = now_ns() - t0;
            if record {
                m.gsw_publish.push(t);
            }
        }
        for (ch, &want) in seqs.iter().enumerate() {
            let (h, d) = r
                .take(ch)
                .map_err(io_err)?
                .ok_or_else(|| mismatch("gsw publish", ch, 0, want))?;
            if h.seq != want {
                return Err(mismatch("gsw publish", ch, h.seq, want));
            }
            check_copy("gsw publish", ch, d, want)?;
        }
        r.drain_doorbell();

        // Floor publish.
        refill(&mut payloads, &mut seqs);
        for (ch, p) in payloads.chunks_exact(size).enumerate() {
            floor.publish(ch, p, seqs[ch], 0);
        }
        for _ in 0..count {
            refill(&mut payloads, &mut seqs);
            let t0 = now_ns();
            for (ch, p) in payloads.chunks_exact(size).enumerate() {
                floor.publish(ch, p, seqs[ch], 0);
            }
            let t = now_ns() - t0;
            if record {
                m.floor_publish.push(t);
            }
        }
        for ch in 0..n {
            let out = &mut outs[ch * size..(ch + 1) * size];
            let s = floor
                .take(ch, out)
                .ok_or_else(|| mismatch("floor publish", ch, 0, seqs[ch]))?;
            if s != seqs[ch] {
                return Err(mismatch("floor publish", ch, s, seqs[ch]));
            }
            check_copy("floor publish", ch, out, seqs[ch])?;
        }

        // gsw take, a fresh value on every channel (published untimed before each batch).
        for _ in 0..count {
            refill(&mut payloads, &mut seqs);
            for (ch, p) in payloads.chunks_exact(size).enumerate() {
                w.publish_quiet(ch, p, seqs[ch], 0).map_err(io_err)?;
            }
            let mut got = 0u64;
            let t0 = now_ns();
            for (ch, out) in outs.chunks_exact_mut(size).enumerate() {
                if let Some((h, d)) = r.take(ch).map_err(io_err)? {
                    out[..d.len()].copy_from_slice(d);
                    got ^= h.seq;
                }
            }
            let t = now_ns() - t0;
            std::hint::black_box(got);
            if record {
                m.gsw_read.push(t);
            }
            for (ch, out) in outs.chunks_exact(size).enumerate() {
                check_copy("gsw take", ch, out, seqs[ch])?;
            }
        }

        // Floor take, a fresh value on every channel.
        for _ in 0..count {
            refill(&mut payloads, &mut seqs);
            for (ch, p) in payloads.chunks_exact(size).enumerate() {
                floor.publish(ch, p, seqs[ch], 0);
            }
            let mut got = 0u64;
            let t0 = now_ns();
            for (ch, out) in outs.chunks_exact_mut(size).enumerate() {
                if let Some(s) = floor.take(ch, out) {
                    got ^= s;
                }
            }
            let t = now_ns() - t0;
            std::hint::black_box(got);
            if record {
                m.floor_read.push(t);
            }
            for (ch, out) in outs.chunks_exact(size).enumerate() {
                check_copy("floor take", ch, out, seqs[ch])?;
            }
        }

        // gsw take with nothing new (everything was taken above).
        for _ in 0..count {
            let mut found = 0usize;
            let t0 = now_ns();
            for ch in 0..n {
                found += usize::from(r.take(ch).map_err(io_err)?.is_some());
            }
            let t = now_ns() - t0;
            if found != 0 {
                return Err(io::Error::other("gsw take found a value nobody published"));
            }
            if record {
                m.gsw_empty.push(t);
            }
        }

        // Floor take with nothing new.
        for _ in 0..count {
            let mut found = 0usize;
            let t0 = now_ns();
            for (ch, out) in outs.chunks_exact_mut(size).enumerate() {
                found += usize::from(floor.take(ch, out).is_some());
            }
            let t = now_ns() - t0;
            if found != 0 {
                return Err(io::Error::other(
                    "floor take found a value nobody published",
                ));
            }
            if record {
                m.floor_empty.push(t);
            }
        }
    }
    Ok(m)
}

/// Adds `<prefix>_ns` (p50 per operation), `_p99_ns`, `_p999_ns`, `_max_ns`, `_mean_ns` and
/// `_batches`, from per-batch times of `ops` operations each, less `clock_ns` (the median cost
/// of the batch's two clock reads).
fn push_per_op(
    r: &mut Report,
    prefix: &str,
    s: &Summary,
    reference: Option<&Summary>,
    ops: f64,
    clock_ns: f64,
) {
    type Stat = fn(&Summary) -> f64;
    let rows: [(&str, Stat); 5] = [
        ("", |s| s.p50 as f64),
        ("_p99", |s| s.p99 as f64),
        ("_p999", |s| s.p999 as f64),
        ("_max", |s| s.max as f64),
        ("_mean", |s| s.mean),
    ];
    let round = |v: f64| ((v - clock_ns).max(0.0) / ops * 100.0).round() / 100.0;
    for (name, get) in rows {
        r.push_ref(
            &format!("{prefix}{name}_ns"),
            round(get(s)),
            "ns",
            reference.map(|x| round(get(x))),
        );
    }
    r.push(&format!("{prefix}_batches"), s.count as f64, "count");
}

// ---------------------------------------------------------------------------------------------
// throughput

// Control page of the throughput part. PHASE is a futex word: `epoch << 3 | state`.
const PHASE: usize = 0;
const PARKED: usize = 64;
/// Reader counters: reads, fresh values, waits, per mechanism (in `MECHS` order).
const COUNTERS: usize = 128;
const DONE: usize = 512;
const PAUSE: u32 = 0;
/// gsw, the reader blocking in `SegmentReader::wait` when nothing is new.
const RUN_GSW: u32 = 1;
/// The old scheme, the reader blocking in its futex wait when nothing is new.
const RUN_BASELINE: u32 = 2;
/// gsw, the reader polling `take` flat out, never blocking.
const RUN_GSW_SPIN: u32 = 3;
/// The old scheme, the reader polling `read_latest` flat out, never blocking.
const RUN_BASELINE_SPIN: u32 = 4;
const EXIT: u32 = 5;
const STATE_BITS: u32 = 3;
/// The phases of one round, in order.
const MECHS: [u32; 4] = [RUN_GSW, RUN_BASELINE, RUN_GSW_SPIN, RUN_BASELINE_SPIN];

/// Figures of one writer in the throughput part.
#[derive(Clone, Copy, Debug, Default)]
struct WriterFigures {
    writes_per_s: f64,
    fresh_per_s: f64,
    reads_per_s: f64,
    waits_per_s: f64,
    /// gsw: doorbell rings; the old scheme: `FUTEX_WAKE` calls.
    rings_per_s: f64,
}

/// Figures of the throughput part, per phase kind (in `MECHS` order).
struct Throughput {
    figures: [WriterFigures; 4],
    pinned: bool,
}

/// Writes flat out for `ns` (the clock is read every 16 writes); returns (writes, elapsed ns).
fn flat_out(write: &mut dyn FnMut() -> io::Result<()>, ns: u64) -> io::Result<(u64, u64)> {
    let start = now_ns();
    let mut n = 0u64;
    loop {
        for _ in 0..16 {
            write()?;
        }
        n += 16;
        let el = now_ns() - start;
        if el >= ns {
            return Ok((n, el));
        }
    }
}

/// Parks the reader: a new pause epoch, then keeps writing with the mechanism that just ran
/// (which wakes the reader if it sleeps on it) until the reader acknowledges the epoch.
fn park(
    phase: &AtomicU32,
    parked: &AtomicU32,
    epoch: &mut u32,
    reader: &mut Child,
    write: &mut dyn FnMut() -> io::Result<()>,
) -> io::Result<()> {
    *epoch += 1;
    // Release: pairs with the reader's Acquire phase load.
    phase.store(*epoch << STATE_BITS | PAUSE, Ordering::Release);
    futex_wake(phase, 1)?;
    let deadline = Deadline::after(WAIT_TIMEOUT);
    // Acquire: pairs with the reader's Release store of PARKED.
    while parked.load(Ordering::Acquire) != *epoch {
        write()?;
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

/// A writer flat out (fill the payload, publish) against one reader, in alternating phases:
/// gsw and the old scheme with a reader that blocks when nothing is new (what every gsw
/// subscriber does, and the regime of the old scheme's published writer rate), then both
/// with a reader that polls flat out and never blocks.
fn throughput(o: &Options) -> io::Result<Throughput> {
    let size = o.size;
    let (w, r) = pair(1, size as u32)?;
    let bl = BaselineShm::create(size)?;
    let ctl = SharedMem::create("gsw-bench-channel-tp", 4096)?;
    let cpus = CpuPair::choose(o.common.pin);

    let mut child = fork_child(cpus.child, || {
        let (phase, parked) = (ctl.atomic_u32(PHASE), ctl.atomic_u32(PARKED));
        let mut buf = vec![0u8; size];
        let (mut last_g, mut last_b) = (0u64, 0u64);
        // Per phase kind: reads, fresh values, waits.
        let mut c = [[0u64; 3]; 4];
        let checked = |buf: &[u8], seq: u64, what: &str| -> Result<(), String> {
            let (ps, _) = payload::check(buf)?;
            if ps != seq {
                return Err(format!("{what} value {seq} carried payload {ps}"));
            }
            Ok(())
        };
        // One gsw take; checks and counts a new value. Returns whether there was one.
        let gsw_take = |buf: &mut [u8], last: &mut u64, c: &mut [u64; 3]| {
            c[0] += 1;
            match r.take(0).map_err(|e| e.message)? {
                Some((h, d)) if h.seq > *last => {
                    buf[..d.len()].copy_from_slice(d);
                    checked(&buf[..d.len()], h.seq, "gsw")?;
                    *last = h.seq;
                    c[1] += 1;
                    Ok::<bool, String>(true)
                }
                _ => Ok(false),
            }
        };
        // One old-scheme read; checks and counts a new packet. Returns its sequence number
        // and whether it was new.
        let bl_read = |buf: &mut [u8], last: &mut u64, c: &mut [u64; 3]| {
            let s = bl.read_latest(buf).map_err(|e| e.to_string())?;
            c[0] += 1;
            if s > *last {
                checked(buf, s, "baseline")?;
                *last = s;
                c[1] += 1;
                return Ok::<(u64, bool), String>((s, true));
            }
            Ok((s, false))
        };
        loop {
            // Acquire: pairs with the parent's Release phase changes.
            let p = phase.load(Ordering::Acquire);
            match p & ((1 << STATE_BITS) - 1) {
                RUN_GSW => {
                    if gsw_take(&mut buf, &mut last_g, &mut c[0])? {
                        continue;
                    }
                    c[0][2] += 1;
                    // Clears the awake word, re-checks, sleeps, marks the reader awake.
                    if !r
                        .wait(WAIT_TIMEOUT.as_millis() as i32)
                        .map_err(|e| e.message)?
                    {
                        return Err(format!(
                            "gsw: nothing after seq {last_g} within {WAIT_TIMEOUT:?} (lost wake-up?)"
                        ));
                    }
                }
                RUN_BASELINE => {
                    let (s, new) = bl_read(&mut buf, &mut last_b, &mut c[1])?;
                    if !new {
                        c[1][2] += 1;
                        if !bl.wait_newer(s, WAIT_TIMEOUT).map_err(|e| e.to_string())? {
                            return Err(format!(
                                "baseline: no packet after {s} within {WAIT_TIMEOUT:?} (lost wake-up?)"
                            ));
                        }
                    }
                }
                RUN_GSW_SPIN => {
                    gsw_take(&mut buf, &mut last_g, &mut c[2])?;
                }
                RUN_BASELINE_SPIN => {
                    bl_read(&mut buf, &mut last_b, &mut c[3])?;
                }
                PAUSE => {
                    // Release: tells the parent we stopped reading (for this pause's epoch).
                    parked.store(p >> STATE_BITS, Ordering::Release);
                    futex_wait(phase, p, Some(WAIT_TIMEOUT)).map_err(|e| e.to_string())?;
                }
                _ => break,
            }
        }
        for (i, v) in c.iter().flatten().enumerate() {
            // Relaxed: published by the Release store of DONE.
            ctl.atomic_u64(COUNTERS + 8 * i)
                .store(*v, Ordering::Relaxed);
        }
        // Release: the counters above are visible to the parent's Acquire load.
        ctl.atomic_u64(DONE).store(1, Ordering::Release);
        Ok(())
    })?;
    let child_pinned = child.wait_started(WAIT_TIMEOUT)?;
    let parent_pin = cpus.pin_parent()?;

    let (phase, parked) = (ctl.atomic_u32(PHASE), ctl.atomic_u32(PARKED));
    let mut gbuf = vec![0u8; size];
    let mut bbuf = vec![0u8; size];
    let (mut gseq, mut bseq) = (0u64, 0u64);
    let mut gsw_write = || -> io::Result<()> {
        gseq += 1;
        payload::fill(&mut gbuf, gseq);
        w.publish(0, &gbuf, gseq, 0).map_err(io_err)
    };
    let mut baseline_write = || -> io::Result<()> {
        bseq += 1;
        payload::fill(&mut bbuf, bseq);
        bl.write(&bbuf).map(drop)
    };
    let mut epoch = 0u32;
    park(phase, parked, &mut epoch, &mut child, &mut gsw_write)?;
    let phase_ns = (o.duration.as_nanos() / (MECHS.len() as u128 * o.rounds as u128)).max(1) as u64;
    // Writes, ns and rings per phase kind.
    let mut n = [0u64; 4];
    let mut t = [0u64; 4];
    let mut rings = [0u64; 4];
    for _ in 0..o.rounds {
        for mech in MECHS {
            // Release: pairs with the reader's Acquire phase load.
            phase.store(epoch << STATE_BITS | mech, Ordering::Release);
            futex_wake(phase, 1)?;
            let i = (mech - 1) as usize;
            let (dn, dt) = if mech == RUN_GSW || mech == RUN_GSW_SPIN {
                let before = w.stats().rings;
                let r = flat_out(&mut gsw_write, phase_ns)?;
                rings[i] += w.stats().rings - before;
                park(phase, parked, &mut epoch, &mut child, &mut gsw_write)?;
                r
            } else {
                let before = bl.wakes();
                let r = flat_out(&mut baseline_write, phase_ns)?;
                rings[i] += bl.wakes() - before;
                park(phase, parked, &mut epoch, &mut child, &mut baseline_write)?;
                r
            };
            n[i] += dn;
            t[i] += dt;
        }
    }
    // Release: pairs with the reader's Acquire phase load.
    phase.store(epoch << STATE_BITS | EXIT, Ordering::Release);
    futex_wake(phase, 1)?;
    child.wait(WAIT_TIMEOUT)?;
    // Acquire: pairs with the child's Release store of DONE.
    if ctl.atomic_u64(DONE).load(Ordering::Acquire) != 1 {
        return Err(io::Error::other("reader exited without reporting"));
    }
    // Relaxed: ordered by the Acquire load of DONE.
    let c = |m: usize, k: usize| {
        ctl.atomic_u64(COUNTERS + 8 * (3 * m + k))
            .load(Ordering::Relaxed)
    };
    let per = |v: u64, t: u64| v as f64 * 1e9 / t.max(1) as f64;
    let fig = |m: usize| WriterFigures {
        writes_per_s: per(n[m], t[m]),
        reads_per_s: per(c(m, 0), t[m]),
        fresh_per_s: per(c(m, 1), t[m]),
        waits_per_s: per(c(m, 2), t[m]),
        rings_per_s: per(rings[m], t[m]),
    };
    Ok(Throughput {
        figures: [fig(0), fig(1), fig(2), fig(3)],
        pinned: child_pinned && parent_pin.pinned(),
    })
}

// ---------------------------------------------------------------------------------------------
// wake

/// Runs the selected parts. Each part reports as its own benchmark: `channel` (micro),
/// `channel-wake`, `channel-throughput`, each with its own `pinned` and `payload_bytes`.
pub fn run(o: &Options) -> io::Result<Report> {
    let mut all: Option<Report> = None;
    let mut add = |r: Report| match &mut all {
        Some(a) => a.absorb(r),
        None => all = Some(r),
    };
    let common = |r: &mut Report, pinned: bool| {
        r.push("pinned", f64::from(u8::from(pinned)), "bool");
        r.push("payload_bytes", o.size as f64, "bytes");
    };
    if o.micro {
        let mut r = Report::new("channel");
        let mut m = micro(o).map_err(|e| fail("channel micro", e))?;
        let none = || io::Error::other("no samples");
        let ops = o.batch as f64;
        let gp = summarize(&mut m.gsw_publish).ok_or_else(none)?;
        let fp = summarize(&mut m.floor_publish).ok_or_else(none)?;
        let gr = summarize(&mut m.gsw_read).ok_or_else(none)?;
        let fr = summarize(&mut m.floor_read).ok_or_else(none)?;
        let ge = summarize(&mut m.gsw_empty).ok_or_else(none)?;
        let fe = summarize(&mut m.floor_empty).ok_or_else(none)?;
        let clock = summarize(&mut m.clock).ok_or_else(none)?.p50 as f64;
        push_per_op(&mut r, "publish_native", &gp, Some(&fp), ops, clock);
        push_per_op(&mut r, "publish_floor", &fp, None, ops, clock);
        push_per_op(&mut r, "read_native", &gr, Some(&fr), ops, clock);
        push_per_op(&mut r, "read_floor", &fr, None, ops, clock);
        push_per_op(&mut r, "read_native_empty", &ge, Some(&fe), ops, clock);
        push_per_op(&mut r, "read_floor_empty", &fe, None, ops, clock);
        r.push("micro_batch_ops", ops, "count");
        r.push("micro_clock_pair_ns", clock, "ns");
        r.push("clock_gettime_ns", clock_cost_ns(100_000), "ns");
        common(&mut r, m.pinned);
        add(r);
    }
    if o.wake {
        let mut r = Report::new("channel-wake");
        let mut mechs: Vec<Box<dyn WakeMechanism>> = vec![
            Box::new(GswWake::new(o.size)?),
            Box::new(EventfdWake::new(o.size)?),
            Box::new(BaselineWake::new(BaselineShm::create(o.size)?)),
            Box::new(EventfdPollWake::new(o.size)?),
            Box::new(GswDrainFirstWake::new(o.size)?),
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
        let mut run =
            wake::measure(&mut mechs, &wo).map_err(|e| fail("channel wake latency", e))?;
        let none = || io::Error::other("no samples");
        let g = summarize(&mut run.results[0].samples).ok_or_else(none)?;
        let ev = summarize(&mut run.results[1].samples).ok_or_else(none)?;
        let bl = summarize(&mut run.results[2].samples).ok_or_else(none)?;
        let gp = summarize(&mut run.results[0].publish).ok_or_else(none)?;
        let evp = summarize(&mut run.results[1].publish).ok_or_else(none)?;
        let blp = summarize(&mut run.results[2].publish).ok_or_else(none)?;
        let evp_wake = summarize(&mut run.results[3].samples).ok_or_else(none)?;
        let gdf = summarize(&mut run.results[4].samples).ok_or_else(none)?;
        r.latency("gsw_wake", &g, Some(&ev));
        r.latency("eventfd_wake", &ev, None);
        r.latency("baseline_wake", &bl, Some(&ev));
        r.latency("eventfd_poll_wake", &evp_wake, Some(&ev));
        r.latency("gsw_drain_first_wake", &gdf, Some(&ev));
        r.push_ref(
            "gsw_wake_vs_baseline_p50_ns",
            g.p50 as f64,
            "ns",
            Some(bl.p50 as f64),
        );
        r.push_ref(
            "gsw_wake_vs_baseline_p99_ns",
            g.p99 as f64,
            "ns",
            Some(bl.p99 as f64),
        );
        r.latency("gsw_publish", &gp, Some(&evp));
        r.latency("eventfd_publish", &evp, None);
        r.latency("baseline_publish", &blp, Some(&evp));
        let ratio = |a: u64, b: u64| a as f64 / (b as f64).max(1.0);
        r.push("wake_native_p50_ratio", ratio(g.p50, ev.p50), "ratio");
        r.push("wake_native_p99_ratio", ratio(g.p99, ev.p99), "ratio");
        r.push("wake_native_p999_ratio", ratio(g.p999, ev.p999), "ratio");
        r.push("wake_p50_vs_baseline_ratio", ratio(g.p50, bl.p50), "ratio");
        r.push("wake_gap_us", o.gap.as_secs_f64() * 1e6, "us");
        common(&mut r, run.pinned);
        add(r);
    }
    if o.throughput {
        let mut r = Report::new("channel-throughput");
        let t = throughput(o).map_err(|e| fail("channel throughput", e))?;
        let [g, b, gs, bs] = t.figures;
        r.push_ref(
            "gsw_writer_writes_per_s",
            g.writes_per_s,
            "writes/s",
            Some(b.writes_per_s),
        );
        r.push("baseline_writer_writes_per_s", b.writes_per_s, "writes/s");
        r.push(
            "writer_vs_baseline_ratio",
            g.writes_per_s / b.writes_per_s.max(1.0),
            "ratio",
        );
        r.push_ref(
            "gsw_writer_flatout_writes_per_s",
            gs.writes_per_s,
            "writes/s",
            Some(bs.writes_per_s),
        );
        r.push(
            "baseline_writer_flatout_writes_per_s",
            bs.writes_per_s,
            "writes/s",
        );
        r.push(
            "writer_vs_baseline_flatout_ratio",
            gs.writes_per_s / bs.writes_per_s.max(1.0),
            "ratio",
        );
        for (name, x) in [
            ("gsw", g),
            ("baseline", b),
            ("gsw_flatout", gs),
            ("baseline_flatout", bs),
        ] {
            r.push(
                &format!("{name}_reader_fresh_per_s"),
                x.fresh_per_s,
                "values/s",
            );
            r.push(
                &format!("{name}_reader_seen_pct"),
                100.0 * x.fresh_per_s / x.writes_per_s.max(1.0),
                "%",
            );
            r.push(
                &format!("{name}_reader_reads_per_s"),
                x.reads_per_s,
                "reads/s",
            );
            r.push(
                &format!("{name}_reader_waits_per_s"),
                x.waits_per_s,
                "waits/s",
            );
        }
        r.push("gsw_doorbell_rings_per_s", g.rings_per_s, "rings/s");
        r.push("baseline_futex_wakes_per_s", b.rings_per_s, "wakes/s");
        r.push(
            "gsw_flatout_doorbell_rings_per_s",
            gs.rings_per_s,
            "rings/s",
        );
        r.push(
            "baseline_flatout_futex_wakes_per_s",
            bs.rings_per_s,
            "wakes/s",
        );
        r.push(
            "throughput_phase_ms",
            o.duration.as_secs_f64() * 1e3 / (MECHS.len() as f64 * o.rounds as f64),
            "ms",
        );
        common(&mut r, t.pinned);
        add(r);
    }
    all.ok_or_else(|| io::Error::other("no part selected"))
}
