//! `fanout`: the same datagram rate with no subscriber and with 64 subscribers (native
//! processes, each following all 300 measurements of a 300-measurement config), alternating:
//! decom's CPU per datagram in both, the broker's CPU per value copied to a subscriber.
//! `rss`: resident memory of decom + broker + logger with that config and 64 subscribers,
//! next to a bare Deno process's.

use super::ingest::{bare_deno, native_phase, warm_up, Phases};
use super::{cpus, gsw_options, round3, summary_line, START_TIMEOUT};
use crate::cli::Args;
use crate::clock::{now_ns, Deadline};
use crate::cmd::WAIT_TIMEOUT;
use crate::gsw_channel::{io_err, pair};
use crate::pipeline::{
    config_text, free_udp_ports, memory, number_before, packet_measurements, sched, tail,
    GswOptions, Memory, Pipeline,
};
use crate::proc::{fork_child, Child};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::subscriber::{check_packet_value, Subscription};
use crate::udp::{loopback, send, SendOptions};
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
