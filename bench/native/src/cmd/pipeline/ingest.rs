//! `ingest`: decom fed flat out by a native `sendmmsg` sender (64-byte datagrams of 16
//! measurements), the logger recording, the broker and a subscriber following all 16
//! measurements (native, on the `gsw` rlib) draining them; interleaved (A, B, A, B …) with a
//! native `recvmmsg` receiver fed by the same sender. Loss, received rate, decom's CPU per
//! measurement; then decom's CPU while idle.

use super::{cpus, gsw_options, round3, summary_line, START_TIMEOUT};
use crate::cli::Args;
use crate::clock::{now_ns, Deadline};
use crate::cmd::{fail, WAIT_TIMEOUT};
use crate::pipeline::{
    config_text, cpu_ns, free_udp_ports, keys_of_packet, number_before, tail, GswOptions, Pipeline,
};
use crate::proc::{fork_child, spawn_command, Child};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::subscriber::{check_packet_value, Subscription};
use crate::udp::{kernel_udp_counters, loopback, send, Receiver, RecvOptions, SendOptions};
use std::io;
use std::process::{Command, Stdio};
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
pub(super) struct Phases {
    sent: u64,
    pub(super) received: u64,
    send_ns: u64,
    recv_ns: u64,
    /// The receiver's CPU (decom, or the native receiver).
    pub(super) cpu_ns: u64,
    /// Every process of the phase, the sender (this process) included.
    total_cpu_ns: u64,
    rcvbuf_errors: u64,
    /// Receive calls that returned data (native receivers).
    batches: u64,
}

/// One phase of the native receiver (`coalesce`: sleep that long after a partial batch):
/// binds, forks the receiver, sends `count` datagrams (flat out, or `rate` per second), adds
/// the figures to `ph`.
pub(super) fn native_phase(
    count: u64,
    coalesce: Duration,
    rate: u64,
    ph: &mut Phases,
) -> io::Result<()> {
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
pub(super) fn warm_up(port: u16) -> io::Result<u64> {
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
pub(super) fn bare_deno(deno: &str) -> io::Result<Child> {
    let mut c = Command::new(deno);
    c.args(["eval", "--quiet", "setInterval(() => {}, 1 << 30)"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_command(&mut c, None, &[]).map_err(|e| fail("starting a bare Deno process", e))
}
