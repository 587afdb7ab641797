//! The pipeline benchmarks: gsw's real processes (logger, decom, broker: `deno run main.ts …`
//! as the tasks start them) on a private run directory and a generated config on free ports,
//! fed over loopback UDP, each figure next to its reference measured in the same run:
//!
//! - `ingest`: decom fed flat out by a native `sendmmsg` sender (64-byte datagrams of 16
//!   measurements), the logger recording, the broker and a subscriber following all 16
//!   measurements (native, on the `gsw` rlib) draining them; interleaved (A, B, A, B …) with a
//!   native `recvmmsg` receiver fed by the same sender. Loss, received rate, decom's CPU per
//!   measurement; then decom's CPU while idle.
//! - `e2e`: one datagram at a time, UDP send → a Deno process subscribed with the library
//!   (`subscribe()`, blocking in `next()`) has the value; interleaved block by block with the
//!   native chain (`chain`: UDP receive → eventfd hop → eventfd hop → reader).
//! - `fanout`: the same datagram rate with no subscriber and with 64 subscribers (native
//!   processes, each following all 300 measurements of a 300-measurement config), alternating:
//!   decom's CPU per datagram in both, the broker's CPU per value copied to a subscriber.
//! - `rss`: resident memory of decom + broker + logger with that config and 64 subscribers,
//!   next to a bare Deno process's.

use super::chain::{round_trip, NativeChain};
use super::{fail, WAIT_TIMEOUT};
use crate::cli::Args;
use crate::clock::{now_ns, Deadline};
use crate::gsw_channel::{io_err, pair};
use crate::pipeline::{
    config_text, cpu_ns, free_udp_ports, keys_of_packet, memory, number_before,
    packet_measurements, sched, tail, udp_sender, GswOptions, Memory, Pipeline,
};
use crate::proc::{fork_child, spawn_command, Child};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::summarize;
use crate::subscriber::{check_packet_value, Subscription};
use crate::udp::{
    fill_datagram, kernel_udp_counters, loopback, send, Receiver, RecvOptions, SendOptions,
};
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Usage text of `ingest`.
pub const HELP_INGEST: &str = "\
gsw-bench-native ingest [--count N] [--rounds N] [--idle-secs S] GSW [--timeout SECS]
  decom (with the logger, the broker and a subscriber of all 16 measurements running) fed
  flat out by a native sendmmsg sender, 64-byte datagrams of 16 measurements, interleaved
  with a native recvmmsg-only receiver fed by the same sender:
    ingest_loss_pct              datagrams sent that decom neither decoded nor counted (its
                                 exit summary), vs the native receiver's loss
    ingest_rate_vs_native_ratio  decom's received rate / the native receiver's
    decom_ns_per_measurement     decom's CPU (process CPU clock) / measurements published
    decom_idle_cpu_percent       decom's CPU with nothing arriving, vs a bare Deno process
  --count N       datagrams per phase (default 500000)
  --rounds N      decom / native phase pairs (default 3)
  --idle-secs S   idle measurement (default 5)
  --coalesce-us U also run a native receiver that sleeps U us after a partial batch, so
                  wake-ups carry several datagrams (default 100; 0: not run)";

/// Usage text of `e2e`.
pub const HELP_E2E: &str = "\
gsw-bench-native e2e [--samples N] [--warmup N] [--block N] [--gap-us US] [--script PATH] GSW
                     [--timeout SECS]
  One datagram at a time: UDP send -> decom -> broker -> a Deno process subscribed with the
  library (subscribe(), blocking in next()) has the value; interleaved block by block with
  the native chain (UDP recv -> eventfd hop -> eventfd hop -> reader, three processes):
    e2e_p50_us, e2e_p99_us (ref: the chain's), e2e_p50_vs_native_ratio, e2e_p99_vs_native_ratio
  --samples N     recorded samples per path (default 100000)
  --warmup N      unrecorded samples per path first (default 5000)
  --block N       samples per interleaved block (default 1000)
  --gap-us US     pause after the value arrived, before the next send (default 50)
  --script PATH   the Deno subscriber (default bench/deno/subscriber.ts)";

/// Usage text of `fanout`.
pub const HELP_FANOUT: &str = "\
gsw-bench-native fanout [--rate PPS] [--window SECS] [--rounds N] [--subscribers N] GSW
                        [--timeout SECS]
  A 300-measurement config (one 64-byte packet of 16 sent at --rate, four packets of 71
  not sent); phases with no subscriber and with --subscribers native subscriber processes
  (gsw rlib: subscribe over the broker socket, Waitset::add_reader, take_pending), each
  following all 300 measurements, alternating (0, N, N, 0, …):
    fanout_decom_cost_ratio_N        decom's CPU per datagram with N subscribers / with none
    broker_ns_per_subscriber_update  broker CPU / values copied to subscribers (its exit
                                     summary), vs the native pump alone (gsw::fanout, same
                                     copies, in this process)
    decom_ns_per_datagram_no_subscriber  vs a native receiver fed at the same rate
  --rate PPS      datagrams per second (default 1000)
  --window SECS   measured sending time per phase (default 3)
  --rounds N      phase pairs (default 3)
  --subscribers N (default 64)";

/// Usage text of `rss`.
pub const HELP_RSS: &str = "\
gsw-bench-native rss [--subscribers N] [--rate PPS] [--secs S] GSW [--timeout SECS]
  Resident memory (VmRSS) of decom + broker + logger with a 300-measurement config and
  --subscribers native subscribers (each following all 300) after --secs of traffic at
  --rate, vs three bare Deno processes (a pending timer):
    pipeline_rss_mb (and per process, VmHWM, anonymous / file / shared parts); PSS (shared
    pages divided among their sharers) and USS (pages only that process maps)
  --subscribers N (default 64)   --rate PPS (default 1000)   --secs S (default 3)";

/// Options every pipeline benchmark takes (`GSW` in the usage texts).
pub const HELP_GSW: &str = "\
  GSW = [--deno PATH] [--root DIR] [--work-dir DIR]
  --deno PATH     the deno executable (default: deno on PATH)
  --root DIR      the gsw repository (main.ts, target/release/libgsw.so; default .)
  --work-dir DIR  where to make the pipeline's private directory (default: the system's
                  temporary directory); removed at the end";

pub(crate) fn gsw_options(a: &mut Args) -> Result<GswOptions, String> {
    let root: String = a.get("--root", ".".to_string())?;
    let root = std::fs::canonicalize(&root).map_err(|e| format!("--root {root}: {e}"))?;
    if !root.join("main.ts").exists() {
        return Err(format!("--root {}: no main.ts there", root.display()));
    }
    let lib = root.join("target/release/libgsw.so");
    if !lib.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release`",
            lib.display()
        ));
    }
    Ok(GswOptions {
        deno: a.get("--deno", "deno".to_string())?,
        root,
        work: a.opt::<String>("--work-dir")?.map(PathBuf::from),
    })
}

/// How long gsw's processes may take to start (Deno start-up, config, attach).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);

/// CPU time (ns) of several processes, read together.
fn cpus(pids: &[libc::pid_t]) -> io::Result<Vec<u64>> {
    pids.iter().map(|&p| cpu_ns(p)).collect()
}

/// The line of `output` that holds the exit summary (contains `word`).
fn summary_line<'a>(output: &'a str, word: &str) -> Option<&'a str> {
    output.lines().rev().find(|l| l.contains(word))
}

pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

// ---------------------------------------------------------------------------------------------
// ingest

/// Options of `ingest`.
#[derive(Clone, Debug)]
pub struct IngestOptions {
    /// Datagrams per phase.
    pub count: u64,
    /// Phase pairs.
    pub rounds: usize,
    /// Idle measurement.
    pub idle: Duration,
    /// The coalescing native receiver's sleep after a partial batch (zero: not run).
    pub coalesce: Duration,
    /// gsw.
    pub gsw: GswOptions,
    /// Watchdog.
    pub timeout: Duration,
}

impl IngestOptions {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            count: a.get("--count", 500_000)?,
            rounds: a.get("--rounds", 3)?,
            idle: a.secs("--idle-secs", 5.0)?,
            coalesce: Duration::from_micros(a.get("--coalesce-us", 100)?),
            gsw: gsw_options(a)?,
            timeout: a.secs("--timeout", 170.0)?,
        };
        if o.count == 0 || o.rounds == 0 {
            return Err("--count and --rounds must be at least 1".into());
        }
        Ok(o)
    }
}

// The ingest subscriber's page.
const IS_READY: usize = 0; // u32
const IS_STOP: usize = 4; // u32
const IS_TAKEN: usize = 64; // u64: values taken
const IS_SEQ: usize = 128; // u64: decom's sequence number of M00 in the newest value taken
const IS_SEQ_NS: usize = 192; // u64: when IS_SEQ last changed
const IS_WAKES: usize = 256; // u64: waits that slept

// The native receiver's page (one phase).
const NR_DISTINCT: usize = 0;
const NR_FIRST: usize = 8;
const NR_LAST: usize = 16;
const NR_CPU: usize = 24;
const NR_CORRUPT: usize = 32;
const NR_BATCHES: usize = 40;
const NR_DONE: usize = 64;

/// What the kernel counted as dropped for lack of receive buffer (all UDP sockets).
fn rcvbuf_errors() -> u64 {
    kernel_udp_counters()
        .into_iter()
        .find(|(n, _)| n == "RcvbufErrors")
        .map_or(0, |(_, v)| v)
}

#[derive(Default)]
struct Phases {
    sent: u64,
    received: u64,
    send_ns: u64,
    recv_ns: u64,
    /// The receiver's CPU (decom, or the native receiver).
    cpu_ns: u64,
    /// Every process of the phase, the sender (this process) included.
    total_cpu_ns: u64,
    rcvbuf_errors: u64,
    /// Receive calls that returned data (native receivers).
    batches: u64,
}

/// One phase of the native receiver (`coalesce`: sleep that long after a partial batch):
/// binds, forks the receiver, sends `count` datagrams (flat out, or `rate` per second), adds
/// the figures to `ph`.
fn native_phase(count: u64, coalesce: Duration, rate: u64, ph: &mut Phases) -> io::Result<()> {
    let mut rx = Receiver::bind(&RecvOptions {
        bind: loopback(0),
        batch: 64,
        rcvbuf: 8 << 20,
        max_size: 65536,
        coalesce,
    })?;
    let rport = rx.port();
    let rpage = SharedMem::create("gsw-bench-ingest-native", 4096)?;
    let mut child = fork_child(None, || {
        // SAFETY: getpid has no preconditions.
        let me = unsafe { libc::getpid() };
        let c0 = cpu_ns(me).map_err(|e| e.to_string())?;
        let t = rx
            .run(|t, idle| {
                t.distinct >= count
                    || (t.distinct > 0 && idle > 300_000_000)
                    || idle > 20_000_000_000
            })
            .map_err(|e| e.to_string())?;
        let c1 = cpu_ns(me).map_err(|e| e.to_string())?;
        for (at, v) in [
            (NR_DISTINCT, t.distinct),
            (NR_FIRST, t.first_ns),
            (NR_LAST, t.last_ns),
            (NR_CPU, c1 - c0),
            (NR_CORRUPT, t.corrupt),
            (NR_BATCHES, t.batches),
        ] {
            // Relaxed: published by the Release store of DONE.
            rpage.atomic_u64(at).store(v, Ordering::Relaxed);
        }
        // Release: the figures above are visible to the parent's Acquire load.
        rpage.atomic_u64(NR_DONE).store(1, Ordering::Release);
        Ok(())
    })?;
    drop(rx);
    child.wait_started(WAIT_TIMEOUT)?;
    let me = std::process::id() as libc::pid_t;
    let me0 = cpu_ns(me)?;
    let k0 = rcvbuf_errors();
    let st = send(&SendOptions {
        addr: loopback(rport),
        count,
        size: 64,
        rate,
        batch: 64,
        max_duration: Some(Duration::from_secs(60)),
    })?;
    let me1 = cpu_ns(me)?;
    child.wait(Duration::from_secs(30))?;
    // Acquire: pairs with the child's Release store.
    if rpage.atomic_u64(NR_DONE).load(Ordering::Acquire) != 1 {
        return Err(io::Error::other("the native receiver did not report"));
    }
    // Relaxed: ordered by the Acquire load above.
    let get = |at| rpage.atomic_u64(at).load(Ordering::Relaxed);
    if get(NR_CORRUPT) != 0 {
        return Err(io::Error::other(
            "the native receiver got corrupt datagrams",
        ));
    }
    ph.sent += st.sent;
    ph.received += get(NR_DISTINCT);
    ph.send_ns += st.end_ns - st.start_ns;
    ph.recv_ns += get(NR_LAST).max(st.end_ns).saturating_sub(st.start_ns);
    ph.cpu_ns += get(NR_CPU);
    ph.total_cpu_ns += get(NR_CPU) + (me1 - me0);
    ph.rcvbuf_errors += rcvbuf_errors() - k0;
    ph.batches += get(NR_BATCHES);
    Ok(())
}

/// Datagrams queued for a drain measurement: fits the 8 MiB receive buffers both sides ask
/// for (64-byte datagrams take ~1 KiB of buffer each in the kernel).
const DRAIN_COUNT: u64 = 6000;

/// The native receiver's drain cost: bind, let the sender fill the socket buffer while nobody
/// reads, then time (CPU) a receiver that drains it in full batches. Returns (CPU ns, received).
fn native_drain() -> io::Result<(u64, u64)> {
    let mut rx = Receiver::bind(&RecvOptions {
        bind: loopback(0),
        batch: 64,
        rcvbuf: 8 << 20,
        max_size: 65536,
        coalesce: Duration::ZERO,
    })?;
    send(&SendOptions {
        addr: loopback(rx.port()),
        count: DRAIN_COUNT,
        size: 64,
        rate: 0,
        batch: 64,
        max_duration: Some(Duration::from_secs(30)),
    })?;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let c0 = cpu_ns(me)?;
    let t = rx.run(|t, idle| t.distinct >= DRAIN_COUNT || idle > 300_000_000)?;
    let c1 = cpu_ns(me)?;
    Ok((c1 - c0, t.distinct))
}

/// Runs `ingest`.
pub fn run_ingest(o: &IngestOptions) -> io::Result<Report> {
    let port = free_udp_ports(1)?[0];
    let mut p = Pipeline::create(&o.gsw, &config_text(&[port], 0))?;
    let (logger, decom, broker) = p.start_all(START_TIMEOUT)?;
    let pids = [p.pid(decom), p.pid(broker), p.pid(logger)];
    // A bare Deno process: the idle reference.
    let mut bare = bare_deno(&o.gsw.deno)?;

    // The subscriber: all 16 measurements, drained as fast as it goes, sleeping when empty.
    let page = SharedMem::create("gsw-bench-ingest", 4096)?;
    let names = keys_of_packet(0, 0);
    let socket = p.socket("broker.sock");
    let mut sub = fork_child(None, || {
        let s = Subscription::open(&socket, &names, "bench-ingest", WAIT_TIMEOUT)
            .map_err(|e| e.to_string())?;
        // Release: the parent's Acquire load sees the subscription made.
        page.atomic_u32(IS_READY).store(1, Ordering::Release);
        let (mut taken, mut wakes, mut last) = (0u64, 0u64, 0u64);
        loop {
            let mut bad = None;
            let mut seq = None;
            let n = s.drain(|ch, h, d| {
                if let Err(e) = check_packet_value(ch, d) {
                    bad.get_or_insert(e);
                }
                if ch == 0 {
                    seq = Some(h.seq);
                }
            });
            if let Some(e) = bad {
                return Err(format!("ingest subscriber: {e}"));
            }
            taken += n as u64;
            // Relaxed: counters the parent polls; IS_SEQ_NS's Release publishes IS_SEQ.
            page.atomic_u64(IS_TAKEN).store(taken, Ordering::Relaxed);
            if let Some(s) = seq.filter(|&s| s != last) {
                last = s;
                page.atomic_u64(IS_SEQ).store(s, Ordering::Relaxed);
                page.atomic_u64(IS_SEQ_NS)
                    .store(now_ns(), Ordering::Release);
            }
            // Acquire: pairs with the parent's Release store of STOP.
            if page.atomic_u32(IS_STOP).load(Ordering::Acquire) != 0 {
                return Ok(());
            }
            if n == 0 {
                wakes += 1;
                page.atomic_u64(IS_WAKES).store(wakes, Ordering::Relaxed);
                s.wait(100).map_err(|e| e.to_string())?;
            }
        }
    })?;
    let deadline = Deadline::after(Duration::from_secs(20));
    // Acquire: pairs with the subscriber's Release store.
    while page.atomic_u32(IS_READY).load(Ordering::Acquire) == 0 {
        if sub.try_wait()?.is_some() || deadline.expired() {
            return Err(io::Error::other(format!(
                "the ingest subscriber did not subscribe; broker said:\n{}",
                tail(&p.output(broker), 8)
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let seq_now = || {
        // Acquire: pairs with the subscriber's Release store of IS_SEQ_NS.
        let ns = page.atomic_u64(IS_SEQ_NS).load(Ordering::Acquire);
        (page.atomic_u64(IS_SEQ).load(Ordering::Relaxed), ns)
    };

    let sender = |port: u16| SendOptions {
        addr: loopback(port),
        count: o.count,
        size: 64,
        rate: 0,
        batch: 64,
        max_duration: Some(Duration::from_secs(60)),
    };
    let warm = warm_up(port)?;
    let (mut a, mut b, mut c) = (Phases::default(), Phases::default(), Phases::default());
    let (mut broker_ns, mut logger_ns) = (0u64, 0u64);
    let taken0 = page.atomic_u64(IS_TAKEN).load(Ordering::Relaxed);
    for _ in 0..o.rounds {
        // A: gsw's decom.
        p.check_alive()?;
        std::thread::sleep(Duration::from_millis(200));
        let (seq0, _) = seq_now();
        let cpu0 = cpus(&pids)?;
        let (me0, sub0) = (
            cpu_ns(std::process::id() as libc::pid_t)?,
            cpu_ns(sub.pid())?,
        );
        let k0 = rcvbuf_errors();
        let st = send(&sender(port))?;
        // Done when every datagram is decoded, or nothing new for 300 ms.
        let mut last = seq_now();
        let mut still = Deadline::after(Duration::from_millis(300));
        let give_up = Deadline::after(Duration::from_secs(20));
        while last.0 - seq0 < st.sent && !still.expired() && !give_up.expired() {
            std::thread::sleep(Duration::from_millis(10));
            let now = seq_now();
            if now.0 != last.0 {
                still = Deadline::after(Duration::from_millis(300));
            }
            last = now;
        }
        let cpu1 = cpus(&pids)?;
        let (me1, sub1) = (
            cpu_ns(std::process::id() as libc::pid_t)?,
            cpu_ns(sub.pid())?,
        );
        a.total_cpu_ns +=
            (me1 - me0) + (sub1 - sub0) + cpu1.iter().sum::<u64>() - cpu0.iter().sum::<u64>();
        a.sent += st.sent;
        a.received += last.0 - seq0;
        a.send_ns += st.end_ns - st.start_ns;
        a.recv_ns += last.1.max(st.end_ns).saturating_sub(st.start_ns);
        a.cpu_ns += cpu1[0] - cpu0[0];
        a.rcvbuf_errors += rcvbuf_errors() - k0;
        broker_ns += cpu1[1] - cpu0[1];
        logger_ns += cpu1[2] - cpu0[2];

        // B: the native receiver, same sender, same socket buffer as decom asks for.
        std::thread::sleep(Duration::from_millis(200));
        native_phase(o.count, Duration::ZERO, 0, &mut b)?;
        // C: the same with user-space coalescing (what batching the wake-ups would save).
        if !o.coalesce.is_zero() {
            std::thread::sleep(Duration::from_millis(200));
            native_phase(o.count, o.coalesce, 0, &mut c)?;
        }
    }
    let taken = page.atomic_u64(IS_TAKEN).load(Ordering::Relaxed) - taken0;
    let wakes = page.atomic_u64(IS_WAKES).load(Ordering::Relaxed);

    // D: decom's own cost, without wake-ups: stopped, its socket buffer filled, then let go to
    // drain it in full batches. E: the native receiver doing the same (the reference). One
    // drain is short, so each is repeated and the totals compared, interleaved D, E, D, E …
    let (mut drain_cpu, mut drained) = (0u64, 0u64);
    let (mut native_drain_cpu, mut native_drained) = (0u64, 0u64);
    for _ in 0..o.rounds.max(1) * 2 {
        std::thread::sleep(Duration::from_millis(100));
        let (seq0, _) = seq_now();
        // SAFETY: signalling our own child process.
        unsafe { libc::kill(pids[0], libc::SIGSTOP) };
        let sent = send(&SendOptions {
            count: DRAIN_COUNT,
            ..sender(port)
        });
        let d0 = cpus(&pids[..1]);
        // SAFETY: signalling our own child process (even if sending failed).
        unsafe { libc::kill(pids[0], libc::SIGCONT) };
        sent?;
        let d0 = d0?[0];
        let mut last = seq_now();
        let mut still = Deadline::after(Duration::from_millis(300));
        while last.0 - seq0 < DRAIN_COUNT && !still.expired() {
            std::thread::sleep(Duration::from_millis(5));
            let now = seq_now();
            if now.0 != last.0 {
                still = Deadline::after(Duration::from_millis(300));
            }
            last = now;
        }
        drain_cpu += cpus(&pids[..1])?[0] - d0;
        drained += last.0 - seq0;
        let (cpu, n) = native_drain()?;
        native_drain_cpu += cpu;
        native_drained += n;
    }

    // Idle: everything attached, nothing arriving (decom still publishes its health each second).
    std::thread::sleep(Duration::from_secs(1));
    let idle_pids = [pids[0], pids[1], pids[2], bare.pid()];
    let t0 = now_ns();
    let i0 = cpus(&idle_pids)?;
    std::thread::sleep(o.idle);
    let i1 = cpus(&idle_pids)?;
    let wall = (now_ns() - t0) as f64;
    let idle_pct = |k: usize| ((i1[k] - i0[k]) as f64 / wall * 100.0 * 1e4).round() / 1e4;
    bare.kill();

    // Stop: decom's exit summary counts every datagram it received.
    // Release: pairs with the subscriber's Acquire load.
    page.atomic_u32(IS_STOP).store(1, Ordering::Release);
    sub.wait(WAIT_TIMEOUT)?;
    let out = p.stop(decom, Duration::from_secs(10))?;
    let line = summary_line(&out, "datagrams").ok_or_else(|| {
        io::Error::other(format!("decom printed no exit summary:\n{}", tail(&out, 8)))
    })?;
    let counted = number_before(line, "datagrams")
        .unwrap_or(0)
        .saturating_sub(warm);
    let published = number_before(line, "values decoded")
        .unwrap_or(0)
        .saturating_sub(16 * warm);
    let log_dropped = number_before(line, "dropped").unwrap_or(0);
    let rejected = number_before(line, "rejected").unwrap_or(0);

    let mut r = Report::new("ingest");
    let pct = |lost: u64, sent: u64| 100.0 * lost as f64 / sent.max(1) as f64;
    let native_loss = pct(b.sent - b.received.min(b.sent), b.sent);
    r.push_ref(
        "ingest_loss_pct",
        round3(pct(a.sent.saturating_sub(counted), a.sent) * 1000.0) / 1000.0,
        "%",
        Some(round3(native_loss * 1000.0) / 1000.0),
    );
    r.push_ref(
        "ingest_decoded_loss_pct",
        round3(pct(a.sent.saturating_sub(a.received), a.sent) * 1000.0) / 1000.0,
        "%",
        Some(round3(native_loss * 1000.0) / 1000.0),
    );
    let rate = |n: u64, ns: u64| n as f64 * 1e9 / ns.max(1) as f64;
    let (ra, rb) = (rate(a.received, a.recv_ns), rate(b.received, b.recv_ns));
    r.push_ref(
        "decom_recv_rate_pps",
        ra.round(),
        "packets/s",
        Some(rb.round()),
    );
    r.push("native_recv_rate_pps", rb.round(), "packets/s");
    r.push(
        "ingest_rate_vs_native_ratio",
        round3(ra / rb.max(1.0)),
        "ratio",
    );
    r.push_ref(
        "ingest_send_rate_pps",
        rate(a.sent, a.send_ns).round(),
        "packets/s",
        Some(rate(b.sent, b.send_ns).round()),
    );
    let per_dg = |ns: u64, n: u64| ns as f64 / n.max(1) as f64;
    let native_dg = per_dg(b.cpu_ns, b.received);
    r.push_ref(
        "decom_ns_per_measurement",
        round3(per_dg(a.cpu_ns, a.received * 16)),
        "ns",
        Some(round3(native_dg / 16.0)),
    );
    r.push_ref(
        "decom_ns_per_datagram",
        per_dg(a.cpu_ns, a.received).round(),
        "ns",
        Some(native_dg.round()),
    );
    r.push("native_recv_ns_per_datagram", native_dg.round(), "ns");
    let native_drain_dg = per_dg(native_drain_cpu, native_drained);
    r.push_ref(
        "decom_drain_ns_per_measurement",
        round3(per_dg(drain_cpu, drained * 16)),
        "ns",
        Some(round3(native_drain_dg / 16.0)),
    );
    r.push_ref(
        "decom_drain_ns_per_datagram",
        per_dg(drain_cpu, drained).round(),
        "ns",
        Some(native_drain_dg.round()),
    );
    r.push(
        "decom_own_ns_per_measurement",
        round3((per_dg(drain_cpu, drained) - native_drain_dg).max(0.0) / 16.0),
        "ns",
    );
    r.push(
        "native_recv_datagrams_per_call",
        round3(b.received as f64 / b.batches.max(1) as f64),
        "count",
    );
    r.push_ref(
        "ingest_total_cpu_ns_per_datagram",
        per_dg(a.total_cpu_ns, a.received).round(),
        "ns",
        Some(per_dg(b.total_cpu_ns, b.received).round()),
    );
    let cpus_n = crate::proc::allowed_cpus().map_or(1, |c| c.len()) as f64;
    r.push_ref(
        "ingest_machine_busy_pct",
        round3(100.0 * a.total_cpu_ns as f64 / (a.recv_ns.max(1) as f64 * cpus_n)),
        "%",
        Some(round3(
            100.0 * b.total_cpu_ns as f64 / (b.recv_ns.max(1) as f64 * cpus_n),
        )),
    );
    if c.received > 0 {
        let cdg = per_dg(c.cpu_ns, c.received);
        r.push_ref(
            "native_coalesced_recv_ns_per_datagram",
            cdg.round(),
            "ns",
            Some(native_dg.round()),
        );
        r.push(
            "native_coalesced_recv_datagrams_per_call",
            round3(c.received as f64 / c.batches.max(1) as f64),
            "count",
        );
        r.push(
            "native_coalesced_loss_pct",
            round3(pct(c.sent - c.received.min(c.sent), c.sent) * 1000.0) / 1000.0,
            "%",
        );
        r.push("native_coalesce_us", o.coalesce.as_secs_f64() * 1e6, "us");
    }
    r.push(
        "broker_ns_per_datagram",
        per_dg(broker_ns, a.received).round(),
        "ns",
    );
    r.push(
        "logger_ns_per_datagram",
        per_dg(logger_ns, a.received).round(),
        "ns",
    );
    r.push(
        "decom_cpu_percent_ingest",
        round3(a.cpu_ns as f64 / a.recv_ns.max(1) as f64 * 100.0),
        "%",
    );
    r.push_ref(
        "decom_idle_cpu_percent",
        idle_pct(0),
        "%",
        Some(idle_pct(3)),
    );
    r.push("broker_idle_cpu_percent", idle_pct(1), "%");
    r.push("logger_idle_cpu_percent", idle_pct(2), "%");
    r.push("bare_deno_idle_cpu_percent", idle_pct(3), "%");
    r.push("ingest_idle_s", round3(wall / 1e9), "s");
    r.push("ingest_datagrams_sent", a.sent as f64, "count");
    r.push("decom_datagrams_counted", counted as f64, "count");
    r.push("decom_datagrams_decoded", a.received as f64, "count");
    r.push("decom_datagrams_rejected", rejected as f64, "count");
    r.push("decom_values_published", published as f64, "count");
    r.push(
        "decom_values_published_per_datagram",
        round3(published as f64 / counted.max(1) as f64),
        "count",
    );
    r.push("decom_logger_drops", log_dropped as f64, "count");
    r.push_ref(
        "decom_kernel_rcvbuf_drops",
        a.rcvbuf_errors as f64,
        "count",
        Some(b.rcvbuf_errors as f64),
    );
    r.push("native_datagrams_sent", b.sent as f64, "count");
    r.push("native_datagrams_received", b.received as f64, "count");
    r.push(
        "ingest_subscriber_values_per_s",
        rate(taken, a.recv_ns).round(),
        "values/s",
    );
    r.push("ingest_subscriber_sleeps", wakes as f64, "count");
    r.push("payload_bytes", 64.0, "bytes");
    r.push("measurements_per_datagram", 16.0, "count");
    r.push("pinned", 0.0, "bool");
    Ok(r)
}

/// Datagrams sent flat out before measuring (see [`warm_up`]).
const WARM_UP: u64 = 100_000;

/// Sends [`WARM_UP`] datagrams flat out to `port` (unmeasured): V8 optimises decom's hot
/// path after enough calls, and the first measured phase must not pay for that.
fn warm_up(port: u16) -> io::Result<u64> {
    let st = send(&SendOptions {
        addr: loopback(port),
        count: WARM_UP,
        size: 64,
        rate: 0,
        batch: 64,
        max_duration: Some(Duration::from_secs(30)),
    })?;
    std::thread::sleep(Duration::from_millis(500));
    Ok(st.sent)
}

/// A Deno process with nothing but a pending timer: the floor of any Deno process.
fn bare_deno(deno: &str) -> io::Result<Child> {
    let mut c = Command::new(deno);
    c.args(["eval", "--quiet", "setInterval(() => {}, 1 << 30)"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_command(&mut c, None, &[]).map_err(|e| fail("starting a bare Deno process", e))
}

// ---------------------------------------------------------------------------------------------
// e2e

/// Options of `e2e`.
#[derive(Clone, Debug)]
pub struct E2eOptions {
    /// Recorded samples per path.
    pub samples: usize,
    /// Unrecorded samples per path first.
    pub warmup: usize,
    /// Samples per interleaved block.
    pub block: usize,
    /// Pause before each send.
    pub gap: Duration,
    /// The Deno subscriber script.
    pub script: String,
    /// gsw.
    pub gsw: GswOptions,
    /// Watchdog.
    pub timeout: Duration,
}

impl E2eOptions {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            samples: a.get("--samples", 100_000)?,
            warmup: a.get("--warmup", 5_000)?,
            block: a.get("--block", 1_000)?,
            gap: Duration::from_micros(a.get("--gap-us", 50)?),
            script: a.get("--script", "bench/deno/subscriber.ts".to_string())?,
            gsw: gsw_options(a)?,
            timeout: a.secs("--timeout", 170.0)?,
        };
        if o.samples == 0 || o.block == 0 {
            return Err("--samples and --block must be at least 1".into());
        }
        Ok(o)
    }
}

// The Deno subscriber's page (bench/deno/subscriber.ts uses the same offsets).
const DS_STATE: usize = 0; // u32: 1 subscribed
const DS_DONE: usize = 64; // u32 futex word: the last value (datagram sequence number) it has
const DS_T1: usize = 128; // f64: when it had it (ns, CLOCK_MONOTONIC)

/// A Deno library subscriber of `e2e`, started with its own control page: one reading
/// decom's values directly (the library's default), one through the broker (`--via-broker`).
struct DenoSubscriber {
    page: SharedMem,
    child: Child,
}

impl DenoSubscriber {
    fn start(o: &E2eOptions, run_dir: &std::path::Path, via_broker: bool) -> io::Result<Self> {
        let page = SharedMem::create("gsw-bench-e2e", 4096)?;
        let mut c = Command::new(&o.gsw.deno);
        c.current_dir(&o.gsw.root)
            .args([
                "run",
                "--quiet",
                "--no-prompt",
                "--no-lock",
                "--allow-ffi",
                "--allow-read",
                "--allow-env",
            ])
            .arg(&o.script)
            .args(["e2e", "--run-dir"])
            .arg(run_dir)
            .args(["--measurement", "M00", "--ctl"])
            .arg(page.fd().as_raw_fd().to_string())
            .arg("--ctl-len")
            .arg(page.len().to_string())
            .args(if via_broker {
                &["--via-broker"][..]
            } else {
                &[]
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        let mut child = spawn_command(&mut c, None, &[page.fd().as_raw_fd()])
            .map_err(|e| fail("starting the Deno subscriber", e))?;
        let deadline = Deadline::after(START_TIMEOUT);
        // Acquire: pairs with the subscriber's Atomics.store.
        while page.atomic_u32(DS_STATE).load(Ordering::Acquire) != 1 {
            if child.try_wait()?.is_some() {
                return Err(io::Error::other(
                    "the Deno subscriber exited (see its message above)",
                ));
            }
            if deadline.expired() {
                return Err(io::Error::other("the Deno subscriber did not subscribe"));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Self { page, child })
    }

    /// One sample: sends datagram `seq` to gsw and waits until this subscriber has it.
    fn round_trip(
        &mut self,
        sock: &std::net::UdpSocket,
        d: &mut [u8],
        seq: u64,
        p: &mut Pipeline,
    ) -> io::Result<u64> {
        let Self { page, child } = self;
        let t0 = round_trip(sock, d, seq, page.atomic_u32(DS_DONE), &mut || {
            if child.try_wait()?.is_some() {
                return Err(io::Error::other("the Deno subscriber died"));
            }
            p.check_alive()
        })?;
        // Relaxed: read after the Acquire load of DONE that saw this value.
        let t1 = f64::from_bits(page.atomic_u64(DS_T1).load(Ordering::Relaxed));
        Ok((t1 - t0 as f64).max(0.0).round() as u64)
    }
}

/// Runs `e2e`: gsw read directly (one hop) against the two-process native chain, and gsw
/// through the broker against the three-process chain, in alternating blocks.
pub fn run_e2e(o: &E2eOptions) -> io::Result<Report> {
    let port = free_udp_ports(1)?[0];
    let mut p = Pipeline::create(&o.gsw, &config_text(&[port], 0))?;
    p.start_all(START_TIMEOUT)?;
    let mut chain2 = NativeChain::start(64, 2)?;
    let mut chain3 = NativeChain::start(64, 3)?;
    // Both subscribers see every datagram; each waits for the one its block sends.
    let mut direct = DenoSubscriber::start(o, &p.run_dir, false)?;
    let mut broker = DenoSubscriber::start(o, &p.run_dir, true)?;

    let gsw_sock = udp_sender(port)?;
    let (c2_sock, c3_sock) = (udp_sender(chain2.port())?, udp_sender(chain3.port())?);
    let mut d = vec![0u8; 64];
    fill_datagram(&mut d, 0, 0);
    let (mut kg, mut k2, mut k3) = (0u64, 0u64, 0u64);
    let mut samples: [Vec<u64>; 4] = std::array::from_fn(|_| Vec::with_capacity(o.samples));
    // Warm-up blocks, then recorded ones, alternating: gsw direct, chain 2, gsw via the
    // broker, chain 3. The two subscribers both take every value; a block waits on one.
    let total = o.warmup + o.samples;
    let mut done = 0usize;
    while done < total {
        let n = o.block.min(total - done);
        let record = done >= o.warmup;
        for (which, out) in samples.iter_mut().enumerate() {
            for _ in 0..n {
                std::thread::sleep(o.gap);
                let dt = match which {
                    0 | 2 => {
                        kg += 1;
                        let sub = if which == 0 { &mut direct } else { &mut broker };
                        sub.round_trip(&gsw_sock, &mut d, kg, &mut p)
                            .map_err(|e| fail("gsw e2e", e))?
                    }
                    1 => {
                        k2 += 1;
                        let t0 = chain2
                            .round_trip(&c2_sock, &mut d, k2)
                            .map_err(|e| fail("native chain", e))?;
                        chain2.t1().saturating_sub(t0)
                    }
                    _ => {
                        k3 += 1;
                        let t0 = chain3
                            .round_trip(&c3_sock, &mut d, k3)
                            .map_err(|e| fail("native chain", e))?;
                        chain3.t1().saturating_sub(t0)
                    }
                };
                if record {
                    out.push(dt);
                }
            }
        }
        done += n;
    }
    direct.child.kill();
    broker.child.kill();
    let none = || io::Error::other("no samples");
    let [mut g, mut c2, mut gb, mut c3] = samples;
    let g = summarize(&mut g).ok_or_else(none)?;
    let c = summarize(&mut c2).ok_or_else(none)?;
    let gb = summarize(&mut gb).ok_or_else(none)?;
    let c3 = summarize(&mut c3).ok_or_else(none)?;
    let mut r = Report::new("e2e");
    let us = |v: u64| round3(v as f64 / 1000.0);
    r.push_ref("e2e_p50_us", us(g.p50), "us", Some(us(c.p50)));
    r.push_ref("e2e_p99_us", us(g.p99), "us", Some(us(c.p99)));
    r.push_ref("e2e_p999_us", us(g.p999), "us", Some(us(c.p999)));
    r.push_ref("e2e_max_us", us(g.max), "us", Some(us(c.max)));
    r.push("e2e_samples", g.count as f64, "count");
    r.latency("chain_e2e", &c, None);
    let ratio = |a: u64, b: u64| round3(a as f64 / (b as f64).max(1.0));
    r.push("e2e_p50_vs_native_ratio", ratio(g.p50, c.p50), "ratio");
    r.push("e2e_p99_vs_native_ratio", ratio(g.p99, c.p99), "ratio");
    r.push("e2e_p999_vs_native_ratio", ratio(g.p999, c.p999), "ratio");
    // Through the broker, against the three-process chain (the earlier shape).
    r.push_ref("e2e_broker_p50_us", us(gb.p50), "us", Some(us(c3.p50)));
    r.push_ref("e2e_broker_p99_us", us(gb.p99), "us", Some(us(c3.p99)));
    r.push_ref("e2e_broker_p999_us", us(gb.p999), "us", Some(us(c3.p999)));
    r.latency("chain3_e2e", &c3, None);
    r.push(
        "e2e_direct_vs_broker_p50_ratio",
        ratio(g.p50, gb.p50),
        "ratio",
    );
    r.push(
        "e2e_direct_vs_broker_p99_ratio",
        ratio(g.p99, gb.p99),
        "ratio",
    );
    r.push("e2e_gap_us", o.gap.as_secs_f64() * 1e6, "us");
    r.push("e2e_block", o.block as f64, "count");
    r.push("payload_bytes", 64.0, "bytes");
    r.push("pinned", 0.0, "bool");
    Ok(r)
}

// ---------------------------------------------------------------------------------------------
// fanout and rss

/// Options of `fanout` and `rss`.
#[derive(Clone, Debug)]
pub struct FanoutOptions {
    /// Datagrams per second.
    pub rate: u64,
    /// Measured sending time per phase (`fanout`), or traffic before the reading (`rss`).
    pub window: Duration,
    /// Phase pairs (`fanout`).
    pub rounds: usize,
    /// Subscriber processes.
    pub subscribers: usize,
    /// gsw.
    pub gsw: GswOptions,
    /// Watchdog.
    pub timeout: Duration,
}

impl FanoutOptions {
    /// Reads the options of `fanout` (`rss` = false) or `rss`.
    pub fn from_args(a: &mut Args, rss: bool) -> Result<Self, String> {
        let o = Self {
            rate: a.get("--rate", 1000)?,
            window: if rss {
                a.secs("--secs", 3.0)?
            } else {
                a.secs("--window", 3.0)?
            },
            rounds: if rss { 1 } else { a.get("--rounds", 3)? },
            subscribers: a.get("--subscribers", 64)?,
            gsw: gsw_options(a)?,
            timeout: a.secs("--timeout", 170.0)?,
        };
        if o.rate == 0 || o.rounds == 0 || o.subscribers == 0 || o.subscribers > 100 {
            return Err("--rate and --rounds must be at least 1, --subscribers 1..=100".into());
        }
        Ok(o)
    }
}

/// Extra packets of the 300-measurement config, and measurements in each.
const EXTRA_PACKETS: usize = 4;
const PER_EXTRA: usize = 71;

// Each subscriber's line on the fanout page.
const FS_LINE: usize = 64;
const FS_READY: usize = 0; // u32
const FS_TAKEN: usize = 8; // u64
const FS_WAKES: usize = 16; // u64

/// A running pipeline on the 300-measurement config.
struct FanoutPipeline {
    p: Pipeline,
    port: u16,
    names: Vec<String>,
    logger: usize,
    decom: usize,
    broker: usize,
}

impl FanoutPipeline {
    fn start(o: &FanoutOptions) -> io::Result<Self> {
        let ports = free_udp_ports(1 + EXTRA_PACKETS)?;
        let mut p = Pipeline::create(&o.gsw, &config_text(&ports, PER_EXTRA))?;
        let (logger, decom, broker) = p.start_all(START_TIMEOUT)?;
        Ok(Self {
            p,
            port: ports[0],
            names: packet_measurements(1 + EXTRA_PACKETS, PER_EXTRA),
            logger,
            decom,
            broker,
        })
    }

    /// Forks `n` subscriber processes, each following every measurement, and waits until all
    /// have their segment.
    fn subscribers(&self, n: usize, page: &SharedMem) -> io::Result<Vec<Child>> {
        let socket = self.p.socket("broker.sock");
        let mut children = Vec::with_capacity(n);
        for i in 0..n {
            page.atomic_u32(i * FS_LINE + FS_READY)
                .store(0, Ordering::Relaxed);
            let names = &self.names;
            children.push(fork_child(None, || {
                fanout_subscriber(&socket, names, page, i)
            })?);
        }
        let deadline = Deadline::after(Duration::from_secs(30));
        for (i, c) in children.iter_mut().enumerate() {
            // Acquire: pairs with the subscriber's Release store.
            while page
                .atomic_u32(i * FS_LINE + FS_READY)
                .load(Ordering::Acquire)
                == 0
            {
                if c.try_wait()?.is_some() || deadline.expired() {
                    return Err(io::Error::other(format!(
                        "subscriber {i} did not subscribe; broker said:\n{}",
                        tail(&self.p.output(self.broker), 8)
                    )));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        Ok(children)
    }

    /// Unmeasured traffic so V8 has optimised decom's and the broker's hot paths (it tiers
    /// up by call counts): a burst flat out, then a second at the phases' rate.
    fn warm_up(&self, o: &FanoutOptions) -> io::Result<u64> {
        let burst = warm_up(self.port)?;
        let paced = self.send(&FanoutOptions {
            window: Duration::from_secs(1),
            ..o.clone()
        })?;
        Ok(burst + paced)
    }

    fn send(&self, o: &FanoutOptions) -> io::Result<u64> {
        let st = send(&SendOptions {
            addr: loopback(self.port),
            count: (o.rate as f64 * o.window.as_secs_f64()).round().max(1.0) as u64,
            size: 64,
            rate: o.rate,
            batch: 64,
            max_duration: Some(o.window + Duration::from_secs(5)),
        })?;
        Ok(st.sent)
    }
}

/// A fanout subscriber process: subscribes to every measurement, then drains and sleeps,
/// counting values and wake-ups on its line of the page, until it is killed.
fn fanout_subscriber(
    socket: &Path,
    names: &[String],
    page: &SharedMem,
    i: usize,
) -> Result<(), String> {
    let s = Subscription::open(socket, names, "bench-fanout", WAIT_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let line = i * FS_LINE;
    // Release: the parent's Acquire load sees the subscription made.
    page.atomic_u32(line + FS_READY).store(1, Ordering::Release);
    let (mut taken, mut wakes) = (0u64, 0u64);
    loop {
        let mut bad = None;
        let n = s.drain(|ch, _, d| {
            if ch < 16 {
                if let Err(e) = check_packet_value(ch, d) {
                    bad.get_or_insert(e);
                }
            }
        });
        if let Some(e) = bad {
            return Err(format!("fanout subscriber {i}: {e}"));
        }
        taken += n as u64;
        // Relaxed: counters the parent reads between phases.
        page.atomic_u64(line + FS_TAKEN)
            .store(taken, Ordering::Relaxed);
        if n == 0 {
            s.wait(-1).map_err(|e| e.to_string())?;
            wakes += 1;
            page.atomic_u64(line + FS_WAKES)
                .store(wakes, Ordering::Relaxed);
        }
    }
}

fn page_sum(page: &SharedMem, n: usize, field: usize) -> u64 {
    // Relaxed: statistics.
    (0..n)
        .map(|i| page.atomic_u64(i * FS_LINE + field).load(Ordering::Relaxed))
        .sum()
}

/// The broker's native hot path alone, in this process: `gsw::fanout::Fanout::pump` copying
/// 16 changed values of a `channels`-channel segment to `subs` subscriber segments and
/// ringing each (their readers, drained between pumps, never sleep). ns per value copied.
fn pump_floor(subs: usize, channels: usize, pumps: usize) -> io::Result<f64> {
    let (src, src_r) = pair(channels, 4)?;
    let mut f = gsw::fanout::Fanout::new(Rc::new(src_r));
    let mut dsts = Vec::with_capacity(subs);
    for _ in 0..subs {
        let (w, r) = pair(channels, 4)?;
        let w = Rc::new(w);
        for ch in 0..channels {
            f.add_route(ch, w.clone(), ch, 0, 1).map_err(io_err)?;
        }
        dsts.push((w, r));
    }
    let (mut ns, mut copies) = (0u64, 0u64);
    for k in 1..=pumps as u64 {
        for ch in 0..16 {
            src.publish_quiet(ch, &(k as u32).to_le_bytes(), k, k)
                .map_err(io_err)?;
        }
        src.ring_if_owed().map_err(io_err)?;
        let t0 = now_ns();
        let got = f.pump(k).map_err(io_err)?;
        ns += now_ns() - t0;
        copies += got.copied as u64;
        for (_, r) in &dsts {
            r.take_pending(|_| true, |_, _, _| {});
        }
    }
    Ok(ns as f64 / copies.max(1) as f64)
}

/// Runs `fanout`.
pub fn run_fanout(o: &FanoutOptions) -> io::Result<Report> {
    let mut fp = FanoutPipeline::start(o)?;
    let n = o.subscribers;
    let page = SharedMem::create("gsw-bench-fanout", (n + 1) * FS_LINE)?;
    let pids = [fp.p.pid(fp.decom), fp.p.pid(fp.broker)];
    // Per phase kind (0: no subscriber, 1: n subscribers): datagrams, decom ns, broker ns,
    // window ns, values taken by subscribers, their wake-ups.
    let mut dg = [0u64; 2];
    let mut dcpu = [0u64; 2];
    let mut bcpu = [0u64; 2];
    let mut wall = [0u64; 2];
    // decom's main thread per phase kind: run-queue wait ns, voluntary and involuntary switches.
    let mut dwait = [0u64; 2];
    let mut dvol = [0u64; 2];
    let mut dinvol = [0u64; 2];
    let (mut taken, mut wakes) = (0u64, 0u64);
    let mut sent_total = fp.warm_up(o)?;
    for round in 0..o.rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for kind in order {
            fp.p.check_alive()?;
            let mut subs = if kind == 1 {
                fp.subscribers(n, &page)?
            } else {
                Vec::new()
            };
            // Let the broker finish routing the new subscribers (or noticing the old ones left).
            std::thread::sleep(Duration::from_millis(300));
            let (t0, c0, s0) = (now_ns(), cpus(&pids)?, sched(pids[0])?);
            let (k0, w0) = (page_sum(&page, n, FS_TAKEN), page_sum(&page, n, FS_WAKES));
            let sent = fp.send(o)?;
            std::thread::sleep(Duration::from_millis(100));
            let (t1, c1, s1) = (now_ns(), cpus(&pids)?, sched(pids[0])?);
            dwait[kind] += s1.wait_ns - s0.wait_ns;
            dvol[kind] += s1.voluntary - s0.voluntary;
            dinvol[kind] += s1.involuntary - s0.involuntary;
            if kind == 1 {
                taken += page_sum(&page, n, FS_TAKEN) - k0;
                wakes += page_sum(&page, n, FS_WAKES) - w0;
                for s in &mut subs {
                    if s.try_wait()?.is_some() {
                        return Err(io::Error::other(
                            "a fanout subscriber died (see its message above)",
                        ));
                    }
                }
            }
            for s in &mut subs {
                s.kill();
            }
            for line in 0..n {
                for f in [FS_TAKEN, FS_WAKES] {
                    page.atomic_u64(line * FS_LINE + f)
                        .store(0, Ordering::Relaxed);
                }
            }
            dg[kind] += sent;
            sent_total += sent;
            dcpu[kind] += c1[0] - c0[0];
            bcpu[kind] += c1[1] - c0[1];
            wall[kind] += t1 - t0;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let bout = fp.p.stop(fp.broker, Duration::from_secs(10))?;
    let copied = summary_line(&bout, "values copied")
        .and_then(|l| number_before(l, "values copied"))
        .ok_or_else(|| {
            io::Error::other(format!(
                "the broker printed no exit summary:\n{}",
                tail(&bout, 8)
            ))
        })?;
    let dout = fp.p.stop(fp.decom, Duration::from_secs(10))?;
    let counted = summary_line(&dout, "datagrams")
        .and_then(|l| number_before(l, "datagrams"))
        .unwrap_or(0);
    let _ = fp.logger;
    let floor = pump_floor(n, fp.names.len(), 2000)?;
    // The floor under decom's cost per datagram at this rate: a native receiver woken per
    // datagram just the same.
    let mut nat = Phases::default();
    native_phase(
        (o.rate as f64 * o.window.as_secs_f64()).round().max(1.0) as u64,
        Duration::ZERO,
        o.rate,
        &mut nat,
    )?;
    let native_dg = nat.cpu_ns as f64 / nat.received.max(1) as f64;

    let mut r = Report::new("fanout");
    let per = |ns: u64, k: u64| ns as f64 / k.max(1) as f64;
    let (d0, d1) = (per(dcpu[0], dg[0]), per(dcpu[1], dg[1]));
    r.push(
        &format!("fanout_decom_cost_ratio_{n}"),
        round3(d1 / d0.max(1.0)),
        "ratio",
    );
    r.push_ref(
        &format!("decom_ns_per_datagram_{n}_subscribers"),
        d1.round(),
        "ns",
        Some(d0.round()),
    );
    r.push_ref(
        "decom_ns_per_datagram_no_subscriber",
        d0.round(),
        "ns",
        Some(native_dg.round()),
    );
    r.push(
        "native_recv_ns_per_datagram_at_rate",
        native_dg.round(),
        "ns",
    );
    r.push_ref(
        "broker_ns_per_subscriber_update",
        round3(per(bcpu[1], copied)),
        "ns",
        Some(round3(floor)),
    );
    r.push("pump_floor_ns_per_update", round3(floor), "ns");
    r.push_ref(
        &format!("broker_ns_per_datagram_{n}_subscribers"),
        per(bcpu[1], dg[1]).round(),
        "ns",
        Some(per(bcpu[0], dg[0]).round()),
    );
    r.push(
        &format!("broker_cpu_percent_{n}_subscribers"),
        round3(100.0 * bcpu[1] as f64 / wall[1].max(1) as f64),
        "%",
    );
    r.push(
        &format!("decom_cpu_percent_{n}_subscribers"),
        round3(100.0 * dcpu[1] as f64 / wall[1].max(1) as f64),
        "%",
    );
    r.push("fanout_values_copied", copied as f64, "count");
    r.push(
        "fanout_copies_per_datagram",
        round3(copied as f64 / dg[1].max(1) as f64),
        "count",
    );
    r.push(
        "fanout_subscriber_values_per_s",
        (taken as f64 * 1e9 / wall[1].max(1) as f64).round(),
        "values/s",
    );
    r.push(
        "fanout_subscriber_wakes_per_s",
        (wakes as f64 * 1e9 / wall[1].max(1) as f64).round(),
        "wakes/s",
    );
    r.push(
        "fanout_lost_datagrams",
        sent_total.saturating_sub(counted) as f64,
        "count",
    );
    // Why decom's cost moved, if it did: waiting for a CPU the subscribers also want (run-queue
    // wait, involuntary switches) is sharing 2 vCPUs; more voluntary switches per datagram would
    // mean it waited for something, which it never may.
    r.push_ref(
        &format!("decom_runqueue_wait_us_per_datagram_{n}_subscribers"),
        round3(per(dwait[1], dg[1]) / 1000.0),
        "us",
        Some(round3(per(dwait[0], dg[0]) / 1000.0)),
    );
    r.push_ref(
        &format!("decom_runqueue_wait_percent_{n}_subscribers"),
        round3(100.0 * dwait[1] as f64 / wall[1].max(1) as f64),
        "%",
        Some(round3(100.0 * dwait[0] as f64 / wall[0].max(1) as f64)),
    );
    r.push_ref(
        &format!("decom_involuntary_switches_per_s_{n}_subscribers"),
        (dinvol[1] as f64 * 1e9 / wall[1].max(1) as f64).round(),
        "1/s",
        Some((dinvol[0] as f64 * 1e9 / wall[0].max(1) as f64).round()),
    );
    r.push_ref(
        &format!("decom_voluntary_switches_per_datagram_{n}_subscribers"),
        round3(per(dvol[1], dg[1])),
        "count",
        Some(round3(per(dvol[0], dg[0]))),
    );
    r.push("fanout_rate_pps", o.rate as f64, "packets/s");
    r.push("fanout_subscribers", n as f64, "count");
    r.push("fanout_measurements", fp.names.len() as f64, "count");
    r.push(
        "fanout_window_s",
        round3(wall[1] as f64 / 1e9 / o.rounds as f64),
        "s",
    );
    r.push("pinned", 0.0, "bool");
    Ok(r)
}

/// Runs `rss`.
pub fn run_rss(o: &FanoutOptions) -> io::Result<Report> {
    let mut bare = bare_deno(&o.gsw.deno)?;
    let mut fp = FanoutPipeline::start(o)?;
    let n = o.subscribers;
    let page = SharedMem::create("gsw-bench-rss", (n + 1) * FS_LINE)?;
    let mut subs = fp.subscribers(n, &page)?;
    fp.send(o)?;
    std::thread::sleep(Duration::from_millis(300));
    fp.p.check_alive()?;
    for s in &mut subs {
        if s.try_wait()?.is_some() {
            return Err(io::Error::other(
                "a subscriber died (see its message above)",
            ));
        }
    }
    let procs = [
        ("decom", fp.p.pid(fp.decom)),
        ("broker", fp.p.pid(fp.broker)),
        ("logger", fp.p.pid(fp.logger)),
    ];
    let mems: Vec<Memory> = procs
        .iter()
        .map(|(_, pid)| memory(*pid))
        .collect::<io::Result<_>>()?;
    let bare_mem = memory(bare.pid())?;
    let sub_mem: Vec<Memory> = subs
        .iter()
        .map(|s| memory(s.pid()))
        .collect::<io::Result<_>>()?;
    bare.kill();
    let mb = |kb: u64| round3(kb as f64 * 1024.0 / 1e6);
    let sum = |f: fn(&Memory) -> u64| mems.iter().map(f).sum::<u64>();
    let mut r = Report::new("rss");
    r.push_ref(
        "pipeline_rss_mb",
        mb(sum(|m| m.rss_kb)),
        "MB",
        Some(mb(3 * bare_mem.rss_kb)),
    );
    r.push_ref(
        "pipeline_pss_mb",
        mb(sum(|m| m.pss_kb)),
        "MB",
        Some(mb(3 * bare_mem.pss_kb)),
    );
    r.push_ref(
        "pipeline_uss_mb",
        mb(sum(|m| m.uss_kb)),
        "MB",
        Some(mb(3 * bare_mem.uss_kb)),
    );
    r.push("pipeline_hwm_mb", mb(sum(|m| m.hwm_kb)), "MB");
    r.push("pipeline_anon_mb", mb(sum(|m| m.anon_kb)), "MB");
    r.push("pipeline_file_mb", mb(sum(|m| m.file_kb)), "MB");
    r.push("pipeline_shmem_mb", mb(sum(|m| m.shmem_kb)), "MB");
    for ((name, _), m) in procs.iter().zip(&mems) {
        r.push_ref(
            &format!("{name}_rss_mb"),
            mb(m.rss_kb),
            "MB",
            Some(mb(bare_mem.rss_kb)),
        );
        r.push_ref(
            &format!("{name}_uss_mb"),
            mb(m.uss_kb),
            "MB",
            Some(mb(bare_mem.uss_kb)),
        );
        r.push(&format!("{name}_anon_mb"), mb(m.anon_kb), "MB");
        r.push(&format!("{name}_shmem_mb"), mb(m.shmem_kb), "MB");
    }
    r.push("bare_deno_rss_mb", mb(bare_mem.rss_kb), "MB");
    r.push("bare_deno_anon_mb", mb(bare_mem.anon_kb), "MB");
    r.push("bare_deno_file_mb", mb(bare_mem.file_kb), "MB");
    r.push(
        "native_subscriber_rss_mb",
        mb(sub_mem.iter().map(|m| m.rss_kb).sum::<u64>() / n as u64),
        "MB",
    );
    r.push("rss_measurements", fp.names.len() as f64, "count");
    r.push("rss_subscribers", n as f64, "count");
    r.push("rss_traffic_s", o.window.as_secs_f64(), "s");
    r.push("rss_rate_pps", o.rate as f64, "packets/s");
    Ok(r)
}
