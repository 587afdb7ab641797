//! Benchmarks whose reader is a Deno process (`bench/deno/reader.ts`), started by this
//! process with the segment's descriptors inherited, pinned, and killed with the run:
//!
//! - `deno-wake`: a native writer publishes to a Deno reader blocked in
//!   `SegmentReader.waitSync` (sync, value read with `takeInto`; also with the allocating
//!   `take`, "sync alloc") or awaiting `Waitset.wait()` (waitset, Deno's blocking pool),
//!   interleaved (A, B, A, B …) with a raw eventfd and gsw's channel between two native
//!   processes. Before each waitset sample the Deno reader also times an awaited no-op
//!   `nonblocking: true` FFI call (`libgsw.so`'s `gsw_bench_noop_wait`: Deno's own floor for
//!   waking JavaScript), so that reference is interleaved sample by sample.
//! - `idle`: readers blocked on their doorbell for `--duration` seconds (a Deno process
//!   awaiting `Waitset.wait()`, one blocked in `waitSync`, a native one) and, as the reference,
//!   a Deno process with nothing but a pending timer: CPU time from `/proc/<pid>/stat` over wall
//!   time. At the end each reader is sent a value and must wake up with it.

use super::{fail, Common, WAIT_TIMEOUT};
use crate::cli::Args;
use crate::clock::{now_ns, spin_for_ns, Deadline};
use crate::gsw_channel::{dup_fds, io_err, pair, GswWake};
use crate::payload;
use crate::proc::{fork_child, multi_cpu, spawn_command, Child, CpuPair};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::summarize;
use crate::wake::{read_blocks, schedule, EventfdWake, WakeMechanism, WakeOptions};
use gsw::segment::SegmentWriter;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Usage text of `deno-wake`.
pub const HELP_WAKE: &str = "\
gsw-bench-native deno-wake [--samples N] [--warmup N] [--rounds N] [--gap-us US] [--size BYTES]
                           [--deno PATH] [--script PATH] [--no-pin] [--timeout SECS]
  Wake latency of a Deno reader woken by a native writer through gsw's channel, interleaved
  with a raw eventfd and gsw's channel between two native processes (same run):
    deno_sync_wake     Deno reader blocked in SegmentReader.waitSync, value read with
                       SegmentReader.takeInto (vs eventfd_wake)
    deno_waitset_wake  Deno reader awaiting Waitset.wait() on the blocking pool, then takeInto
                       (vs deno_noop_await: an awaited no-op nonblocking FFI call, timed by the
                       same Deno process just before each waitset sample)
    deno_*_return      stamp -> the blocking call is back in JavaScript (before the take)
    deno_sync_alloc_wake  sync, but the value read with the allocating SegmentReader.take
  --samples N    samples per mechanism (default 100000)
  --warmup N     unrecorded samples per mechanism first (default 5000)
  --rounds N     interleaved rounds (default 10)
  --gap-us US    pause after the reader announced it waits, before the publish (default 20)
  --size BYTES   payload bytes, >= 16 (default 64)
  --deno PATH    the deno executable (default: deno on PATH)
  --script PATH  the Deno reader (default bench/deno/reader.ts)";

/// Usage text of `idle`.
pub const HELP_IDLE: &str = "\
gsw-bench-native idle [--duration SECS] [--deno PATH] [--script PATH] [--timeout SECS]
  CPU used by readers blocked on their doorbell for --duration (default 10) seconds, from
  /proc/<pid>/stat (utime + stime) over wall time, with the per-thread scheduler run time
  (/proc/<pid>/task/*/schedstat) for sub-tick resolution:
    idle_reader_cpu_percent          Deno awaiting Waitset.wait() (blocking pool)
    idle_reader_sync_cpu_percent     Deno blocked in SegmentReader.waitSync
    idle_native_reader_cpu_percent   native SegmentReader::wait
  reference: a Deno process that only has a pending timer. Each reader must then wake up
  with the value published at the end.";

/// Where the Deno reader is and how to start it.
#[derive(Clone, Debug)]
pub struct DenoOptions {
    /// The deno executable.
    pub deno: String,
    /// The reader script.
    pub script: String,
}

impl DenoOptions {
    fn from_args(a: &mut Args) -> Result<Self, String> {
        Ok(Self {
            deno: a.get("--deno", "deno".to_string())?,
            script: a.get("--script", "bench/deno/reader.ts".to_string())?,
        })
    }

    /// `deno run` of the reader with `args`; stdout is discarded (it must not mix with this
    /// process's JSON lines), stderr is shared.
    fn command(&self, args: &[String]) -> Command {
        let mut c = Command::new(&self.deno);
        c.args([
            "run",
            "--quiet",
            "--no-prompt",
            "--no-lock",
            "--allow-ffi",
            "--allow-read",
            "--allow-env",
        ])
        .arg(&self.script)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
        c
    }

    fn spawn(&self, args: &[String], cpu: Option<usize>, fds: &[i32]) -> io::Result<Child> {
        spawn_command(&mut self.command(args), cpu, fds)
            .map_err(|e| fail(&format!("starting `{} run {}`", self.deno, self.script), e))
    }
}

// ---------------------------------------------------------------------------------------------
// deno-wake

/// Options of `deno-wake`.
#[derive(Clone, Debug)]
pub struct WakeCmd {
    /// Samples per mechanism.
    pub samples: usize,
    /// Unrecorded samples per mechanism.
    pub warmup: usize,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Settle time before each publish.
    pub gap: Duration,
    /// Payload bytes.
    pub size: usize,
    /// The Deno reader.
    pub deno: DenoOptions,
    /// Pinning and watchdog.
    pub common: Common,
}

impl WakeCmd {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            samples: a.get("--samples", 100_000)?,
            warmup: a.get("--warmup", 5_000)?,
            rounds: a.get("--rounds", 10)?,
            gap: Duration::from_micros(a.get("--gap-us", 20)?),
            size: a.get("--size", 64)?,
            deno: DenoOptions::from_args(a)?,
            common: Common::from_args(a, 170.0)?,
        };
        if o.size < payload::MIN_SIZE || o.size > 65536 {
            return Err(format!("--size must be {} to 65536", payload::MIN_SIZE));
        }
        if o.rounds == 0 || o.samples == 0 {
            return Err("--rounds and --samples must be at least 1".into());
        }
        Ok(o)
    }
}

// The Deno reader's control page (`bench/deno/reader.ts` uses the same offsets).
const D_STATE: usize = 0; // u32: 0 starting, 1 attached, 2 finished, 3 failed
const D_READY: usize = 64; // u32: number of the sample the reader now waits for
                           // f64 ns: sync, waitset, no-op, then sync and waitset "back in JavaScript" (before the take).
const D_SAMPLES: usize = 4096;
const STATE_READY: u32 = 1;
const STATE_DONE: u32 = 2;

// The native reader's page.
const N_READY: usize = 0;
const N_DONE: usize = 64;
const N_SAMPLES: usize = 128;

/// Mechanism indices in the schedule.
const M_EVENTFD: usize = 0;
const M_GSW: usize = 1;
const M_DENO_SYNC: usize = 2;
const M_DENO_SYNC_ALLOC: usize = 3;
const M_DENO_WAITSET: usize = 4;
const MECHS: usize = 5;

/// Spins (yielding on a single CPU) until `word == want`; fails if `peer` exits or `deadline`
/// passes.
fn await_u64(word: &AtomicU64, want: u64, peer: &mut Child, deadline: Deadline) -> io::Result<()> {
    let yield_cpu = !multi_cpu();
    let mut n = 0u32;
    // Acquire: pairs with the reader's Release announcement.
    while word.load(Ordering::Acquire) != want {
        spin_or_yield(yield_cpu);
        n = n.wrapping_add(1);
        if n % 4096 == 0 {
            check_peer(peer, deadline, "native reader")?;
        }
    }
    Ok(())
}

fn await_u32(word: &AtomicU32, want: u32, peer: &mut Child, deadline: Deadline) -> io::Result<()> {
    let yield_cpu = !multi_cpu();
    let mut n = 0u32;
    // Acquire: pairs with the Deno reader's announcement (Atomics.store, sequentially consistent).
    while word.load(Ordering::Acquire) != want {
        spin_or_yield(yield_cpu);
        n = n.wrapping_add(1);
        if n % 4096 == 0 {
            check_peer(peer, deadline, "Deno reader")?;
        }
    }
    Ok(())
}

fn spin_or_yield(yield_cpu: bool) {
    if yield_cpu {
        std::thread::yield_now();
    } else {
        std::hint::spin_loop();
    }
}

fn check_peer(peer: &mut Child, deadline: Deadline, who: &str) -> io::Result<()> {
    if deadline.expired() {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{who} stopped announcing (stuck?)"),
        ));
    }
    if let Some(_status) = peer.try_wait()? {
        return Err(io::Error::other(format!(
            "{who} exited early (see its message above)"
        )));
    }
    Ok(())
}

/// Samples of one `deno-wake` run, ns.
struct DenoWakeRun {
    eventfd: Vec<u64>,
    gsw: Vec<u64>,
    deno_sync: Vec<u64>,
    /// Sync, with the allocating `take` (a `Sample` and a payload copy per value).
    deno_sync_alloc: Vec<u64>,
    deno_waitset: Vec<u64>,
    deno_noop: Vec<u64>,
    /// Stamp to the blocking call's return into JavaScript, before the take.
    deno_sync_return: Vec<u64>,
    deno_waitset_return: Vec<u64>,
    /// Writer-side cost of each recorded publish, per mechanism.
    publish: Vec<Vec<u64>>,
    pinned: bool,
}

fn deno_wake(o: &WakeCmd) -> io::Result<DenoWakeRun> {
    let wo = WakeOptions {
        samples: o.samples,
        warmup: o.warmup,
        rounds: o.rounds,
        gap: o.gap,
        payload_size: o.size,
        pin: o.common.pin,
        timeout: WAIT_TIMEOUT,
    };
    let plan = schedule(MECHS, &wo);
    let recorded = |m: usize| -> usize {
        plan.iter()
            .filter(|b| b.mech == m && b.record)
            .map(|b| b.count)
            .sum()
    };
    let (rec_sync, rec_alloc, rec_ws) = (
        recorded(M_DENO_SYNC),
        recorded(M_DENO_SYNC_ALLOC),
        recorded(M_DENO_WAITSET),
    );
    // The Deno reader's sample regions, in its order (see reader.ts).
    let regions = [rec_sync, rec_alloc, rec_ws, rec_ws, rec_sync, rec_ws];
    let deno_total: usize = regions.iter().sum();
    let native_recorded = recorded(M_EVENTFD) + recorded(M_GSW);

    let mut native: Vec<Box<dyn WakeMechanism>> = vec![
        Box::new(EventfdWake::new(o.size)?),
        Box::new(GswWake::new(o.size)?),
    ];
    let cap = u32::try_from(o.size).map_err(|_| io::Error::other("size"))?;
    let deno_w = SegmentWriter::create(&[cap], &[0]).map_err(io_err)?;
    let deno_fds: [OwnedFd; 3] = dup_fds(&deno_w)?;
    let dctl = SharedMem::create("gsw-bench-deno-ctl", D_SAMPLES + 8 * deno_total)?;
    let nctl = SharedMem::create("gsw-bench-deno-native", N_SAMPLES + 8 * native_recorded)?;
    let cpus = CpuPair::choose(o.common.pin);

    // The native reader: the eventfd and native gsw blocks, as `wake::measure`'s child.
    let native_plan: Vec<_> = plan.iter().filter(|b| b.mech < M_DENO_SYNC).collect();
    let mut nchild = fork_child(cpus.child, || {
        read_blocks(
            native_plan.iter().copied(),
            &mut native,
            nctl.atomic_u64(N_READY),
            nctl.atomic_u64_slice(N_SAMPLES, native_recorded),
            o.size,
            Duration::from_secs(60),
        )?;
        // Release: the samples above are visible to the parent's Acquire load.
        nctl.atomic_u64(N_DONE).store(1, Ordering::Release);
        Ok(())
    })?;
    let n_pinned = nchild.wait_started(WAIT_TIMEOUT)?;

    // The Deno reader, on the same CPU as the native reader.
    let deno_plan: Vec<String> = plan
        .iter()
        .filter(|b| b.mech >= M_DENO_SYNC)
        .map(|b| {
            let kind = match b.mech {
                M_DENO_SYNC => "S",
                M_DENO_SYNC_ALLOC => "A",
                _ => "W",
            };
            format!("{kind}:{}:{}", b.count, u8::from(b.record))
        })
        .collect();
    let fd_list = |fds: &[OwnedFd; 3]| {
        fds.iter()
            .map(|f| f.as_raw_fd().to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let args: Vec<String> = vec![
        "wake".into(),
        "--fds".into(),
        fd_list(&deno_fds),
        "--ctl".into(),
        dctl.fd().as_raw_fd().to_string(),
        "--ctl-len".into(),
        dctl.len().to_string(),
        "--plan".into(),
        deno_plan.join(","),
        "--size".into(),
        o.size.to_string(),
    ];
    let mut inherit: Vec<i32> = deno_fds.iter().map(|f| f.as_raw_fd()).collect();
    inherit.push(dctl.fd().as_raw_fd());
    let mut dchild = o.deno.spawn(&args, cpus.child, &inherit)?;
    drop(deno_fds);
    let d_pinned = dchild.wait_started(WAIT_TIMEOUT)?;
    // Deno needs a moment to start, compile and attach.
    await_u32(
        dctl.atomic_u32(D_STATE),
        STATE_READY,
        &mut dchild,
        Deadline::after(Duration::from_secs(60)),
    )?;
    let parent_pin = cpus.pin_parent()?;

    let n_ready = nctl.atomic_u64(N_READY);
    let d_ready = dctl.atomic_u32(D_READY);
    let mut buf = vec![0u8; o.size];
    let gap_ns = u64::try_from(o.gap.as_nanos()).unwrap_or(u64::MAX);
    let (mut kn, mut kd) = (0u64, 0u32);
    let mut publish: Vec<Vec<u64>> = (0..MECHS).map(|_| Vec::with_capacity(o.samples)).collect();
    // A reader that is between blocks waits for the other process's block to finish.
    let deadline = || Deadline::after(Duration::from_secs(30));
    for b in &plan {
        for _ in 0..b.count {
            let seq = if b.mech < M_DENO_SYNC {
                kn += 1;
                await_u64(n_ready, kn, &mut nchild, deadline())?;
                kn
            } else {
                kd += 1;
                await_u32(d_ready, kd, &mut dchild, deadline())?;
                u64::from(kd)
            };
            payload::fill(&mut buf, seq);
            spin_for_ns(gap_ns);
            let t0 = now_ns();
            payload::stamp(&mut buf, t0);
            if b.mech < M_DENO_SYNC {
                native[b.mech].publish(&buf)?;
            } else {
                deno_w.publish(0, &buf, seq, t0).map_err(io_err)?;
            }
            if b.record {
                publish[b.mech].push(now_ns() - t0);
            }
        }
    }
    nchild.wait(WAIT_TIMEOUT)?;
    dchild
        .wait(Duration::from_secs(30))
        .map_err(|e| fail("Deno reader", e))?;
    // Acquire: pairs with the children's final Release stores (both are reaped anyway).
    if nctl.atomic_u64(N_DONE).load(Ordering::Acquire) != 1 {
        return Err(io::Error::other("native reader exited without finishing"));
    }
    if dctl.atomic_u32(D_STATE).load(Ordering::Acquire) != STATE_DONE {
        return Err(io::Error::other("Deno reader exited without finishing"));
    }
    // Split the native samples by mechanism, in schedule order.
    let ns = nctl.atomic_u64_slice(N_SAMPLES, native_recorded);
    let (mut eventfd, mut gsw) = (Vec::new(), Vec::new());
    let mut idx = 0;
    for b in plan.iter().filter(|b| b.mech < M_DENO_SYNC && b.record) {
        for _ in 0..b.count {
            // Relaxed: ordered by the Acquire load of DONE above.
            let v = ns[idx].load(Ordering::Relaxed);
            idx += 1;
            if b.mech == M_EVENTFD {
                eventfd.push(v);
            } else {
                gsw.push(v);
            }
        }
    }
    let ds = dctl.atomic_u64_slice(D_SAMPLES, deno_total);
    let mut parts = Vec::with_capacity(regions.len());
    let mut at = 0;
    for n in regions {
        // Relaxed: the Deno process has exited and been reaped.
        parts.push(
            ds[at..at + n]
                .iter()
                .map(|v| f64::from_bits(v.load(Ordering::Relaxed)).max(0.0).round() as u64)
                .collect::<Vec<u64>>(),
        );
        at += n;
    }
    let mut parts = parts.into_iter();
    let mut next = || parts.next().unwrap_or_default();
    Ok(DenoWakeRun {
        eventfd,
        gsw,
        deno_sync: next(),
        deno_sync_alloc: next(),
        deno_waitset: next(),
        deno_noop: next(),
        deno_sync_return: next(),
        deno_waitset_return: next(),
        publish,
        pinned: n_pinned && d_pinned && parent_pin.pinned(),
    })
}

/// Runs `deno-wake`.
pub fn run_wake(o: &WakeCmd) -> io::Result<Report> {
    let mut run = deno_wake(o).map_err(|e| fail("deno-wake", e))?;
    let none = || io::Error::other("no samples");
    let ev = summarize(&mut run.eventfd).ok_or_else(none)?;
    let g = summarize(&mut run.gsw).ok_or_else(none)?;
    let ds = summarize(&mut run.deno_sync).ok_or_else(none)?;
    let da = summarize(&mut run.deno_sync_alloc).ok_or_else(none)?;
    let dw = summarize(&mut run.deno_waitset).ok_or_else(none)?;
    let dn = summarize(&mut run.deno_noop).ok_or_else(none)?;
    let dsr = summarize(&mut run.deno_sync_return).ok_or_else(none)?;
    let dwr = summarize(&mut run.deno_waitset_return).ok_or_else(none)?;
    let mut r = Report::new("deno-wake");
    r.latency("deno_sync_wake", &ds, Some(&ev));
    r.latency("deno_waitset_wake", &dw, Some(&dn));
    r.latency("deno_noop_await", &dn, None);
    r.latency("deno_sync_return", &dsr, Some(&ev));
    r.latency("deno_sync_alloc_wake", &da, Some(&ev));
    r.latency("deno_waitset_return", &dwr, Some(&dn));
    r.latency("eventfd_wake", &ev, None);
    r.latency("gsw_wake", &g, Some(&ev));
    r.push_ref(
        "deno_sync_vs_native_gsw_p50_ns",
        ds.p50 as f64,
        "ns",
        Some(g.p50 as f64),
    );
    let names = [
        "eventfd",
        "gsw",
        "deno_sync",
        "deno_sync_alloc",
        "deno_waitset",
    ];
    for (m, name) in names.iter().enumerate() {
        if let Some(s) = summarize(&mut run.publish[m]) {
            r.push(&format!("{name}_publish_p50_ns"), s.p50 as f64, "ns");
        }
    }
    let ratio = |a: u64, b: u64| a as f64 / (b as f64).max(1.0);
    r.push("wake_deno_sync_p50_ratio", ratio(ds.p50, ev.p50), "ratio");
    r.push("wake_deno_sync_p99_ratio", ratio(ds.p99, ev.p99), "ratio");
    r.push(
        "wake_deno_sync_alloc_p50_ratio",
        ratio(da.p50, ev.p50),
        "ratio",
    );
    r.push(
        "wake_deno_waitset_p50_ratio",
        ratio(dw.p50, dn.p50),
        "ratio",
    );
    r.push(
        "wake_deno_waitset_p99_ratio",
        ratio(dw.p99, dn.p99),
        "ratio",
    );
    r.push("pinned", f64::from(u8::from(run.pinned)), "bool");
    r.push("payload_bytes", o.size as f64, "bytes");
    r.push("wake_gap_us", o.gap.as_secs_f64() * 1e6, "us");
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// idle

/// Options of `idle`.
#[derive(Clone, Debug)]
pub struct IdleCmd {
    /// How long the readers stay blocked while measured.
    pub duration: Duration,
    /// The Deno reader.
    pub deno: DenoOptions,
    /// Watchdog (pinning is not used).
    pub common: Common,
}

impl IdleCmd {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        Ok(Self {
            duration: a.secs("--duration", 10.0)?,
            deno: DenoOptions::from_args(a)?,
            common: Common::from_args(a, 120.0)?,
        })
    }
}

/// CPU time a process has used so far.
#[derive(Clone, Copy, Debug)]
struct CpuTime {
    /// utime + stime from `/proc/<pid>/stat`, in clock ticks.
    ticks: u64,
    /// Sum of the scheduler's run time of its live threads (`/proc/<pid>/task/*/schedstat`), ns.
    run_ns: u64,
}

fn cpu_time(pid: libc::pid_t) -> io::Result<CpuTime> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may contain spaces: fields start after ") ".
    let rest = stat
        .rsplit_once(") ")
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("unreadable /proc/<pid>/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    let field = |i: usize| -> io::Result<u64> {
        f.get(i - 3)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other("unreadable /proc/<pid>/stat field"))
    };
    let ticks = field(14)? + field(15)?;
    let mut run_ns = 0u64;
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = t?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(path) {
            run_ns += s
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(CpuTime { ticks, run_ns })
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// One idle process and what it used.
struct Idle {
    name: &'static str,
    child: Child,
    /// Its state word on the control page (None for the timer reference, which never wakes).
    slot: Option<usize>,
    before: Option<CpuTime>,
    after: Option<CpuTime>,
}

/// Runs `idle`.
pub fn run_idle(o: &IdleCmd) -> io::Result<Report> {
    let ctl = SharedMem::create("gsw-bench-idle-ctl", 4096)?;
    let size = 64usize;
    let mut writers = Vec::new();
    let mut procs: Vec<Idle> = Vec::new();
    let ctl_fd = ctl.fd().as_raw_fd();
    for (slot, (name, mode)) in [
        ("idle_reader", "idle-waitset"),
        ("idle_reader_sync", "idle-sync"),
    ]
    .into_iter()
    .enumerate()
    {
        let w = SegmentWriter::create(&[size as u32], &[0]).map_err(io_err)?;
        let fds = dup_fds(&w)?;
        let args: Vec<String> = vec![
            mode.into(),
            "--fds".into(),
            fds.iter()
                .map(|f| f.as_raw_fd().to_string())
                .collect::<Vec<_>>()
                .join(","),
            "--ctl".into(),
            ctl_fd.to_string(),
            "--ctl-len".into(),
            ctl.len().to_string(),
            "--slot".into(),
            slot.to_string(),
            "--size".into(),
            size.to_string(),
        ];
        let mut inherit: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        inherit.push(ctl_fd);
        let child = o.deno.spawn(&args, None, &inherit)?;
        writers.push(w);
        procs.push(Idle {
            name,
            child,
            slot: Some(slot),
            before: None,
            after: None,
        });
    }
    // The reference: a Deno process with only a pending timer.
    let args: Vec<String> = vec![
        "idle-timer".into(),
        "--ctl".into(),
        ctl_fd.to_string(),
        "--ctl-len".into(),
        ctl.len().to_string(),
        "--slot".into(),
        "2".into(),
    ];
    let child = o.deno.spawn(&args, None, &[ctl_fd])?;
    procs.push(Idle {
        name: "idle_deno_timer",
        child,
        slot: None,
        before: None,
        after: None,
    });
    // A native reader blocked in SegmentReader::wait.
    let (w, r) = pair(1, size as u32)?;
    let native_slot = 3usize;
    let child = fork_child(None, || {
        let state = ctl.atomic_u32(native_slot * 64);
        // Release: tells the parent we are about to block.
        state.store(STATE_READY, Ordering::Release);
        let mut buf = vec![0u8; size];
        loop {
            if let Some((h, d)) = r.take(0).map_err(|e| e.message)? {
                buf.copy_from_slice(d);
                let (s, _) = payload::check(&buf)?;
                if s != 1 || h.seq != 1 {
                    return Err(format!("idle native reader got {s}, expected 1"));
                }
                break;
            }
            // Re-checks FRESH before sleeping, so a value published meanwhile is not missed.
            r.wait(-1).map_err(|e| e.message)?;
        }
        // Release: the parent's Acquire load sees that we woke with the value.
        state.store(STATE_DONE, Ordering::Release);
        Ok(())
    })?;
    writers.push(w);
    procs.push(Idle {
        name: "idle_native_reader",
        child,
        slot: Some(native_slot),
        before: None,
        after: None,
    });

    // Wait until every process is blocked, let start-up work (JIT, GC) settle, then measure.
    for (i, p) in procs.iter_mut().enumerate() {
        let slot = p.slot.unwrap_or(2);
        let _ = i;
        await_u32(
            ctl.atomic_u32(slot * 64),
            STATE_READY,
            &mut p.child,
            Deadline::after(Duration::from_secs(60)),
        )
        .map_err(|e| fail(p.name, e))?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let t0 = now_ns();
    for p in &mut procs {
        p.before = Some(cpu_time(p.child.pid())?);
    }
    std::thread::sleep(o.duration);
    for p in &mut procs {
        p.after = Some(cpu_time(p.child.pid())?);
    }
    let wall_s = (now_ns() - t0) as f64 / 1e9;

    // Wake every reader with value 1: each must have been waiting on its doorbell.
    let mut buf = vec![0u8; size];
    payload::fill(&mut buf, 1);
    let stamp = now_ns();
    payload::stamp(&mut buf, stamp);
    for w in &writers {
        w.publish(0, &buf, 1, stamp).map_err(io_err)?;
    }
    let mut woke = 0usize;
    for p in procs.iter_mut() {
        if let Some(slot) = p.slot {
            await_u32(
                ctl.atomic_u32(slot * 64),
                STATE_DONE,
                &mut p.child,
                Deadline::after(WAIT_TIMEOUT),
            )
            .map_err(|e| fail(&format!("{} did not wake with its value", p.name), e))?;
            p.child.wait(WAIT_TIMEOUT).map_err(|e| fail(p.name, e))?;
            woke += 1;
        } else {
            p.child.kill();
        }
    }

    let hz = clock_ticks_per_s();
    let mut r = Report::new("idle");
    let timer = procs
        .iter()
        .find(|p| p.slot.is_none())
        .and_then(|p| Some((p.before?, p.after?)));
    let pct = |b: CpuTime, a: CpuTime| (a.ticks - b.ticks) as f64 / hz / wall_s * 100.0;
    let ns_pct =
        |b: CpuTime, a: CpuTime| a.run_ns.saturating_sub(b.run_ns) as f64 / 1e9 / wall_s * 100.0;
    for p in &procs {
        let (Some(b), Some(a)) = (p.before, p.after) else {
            continue;
        };
        let reference = timer.filter(|_| p.slot.is_some());
        r.push_ref(
            &format!("{}_cpu_percent", p.name),
            pct(b, a),
            "%",
            reference.map(|(tb, ta)| pct(tb, ta)),
        );
        r.push_ref(
            &format!("{}_sched_cpu_percent", p.name),
            (ns_pct(b, a) * 1e4).round() / 1e4,
            "%",
            reference.map(|(tb, ta)| (ns_pct(tb, ta) * 1e4).round() / 1e4),
        );
        r.push(
            &format!("{}_cpu_ticks", p.name),
            (a.ticks - b.ticks) as f64,
            "ticks",
        );
    }
    r.push("idle_wall_s", (wall_s * 1000.0).round() / 1000.0, "s");
    r.push("clock_ticks_per_s", hz, "Hz");
    r.push("idle_readers_woke", woke as f64, "count");
    Ok(r)
}
