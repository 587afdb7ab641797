//! `e2e`: one datagram at a time, UDP send → a Deno process subscribed with the library
//! (`subscribe()`, blocking in `next()`) has the value; interleaved block by block with the
//! native chain (`chain`: UDP receive → eventfd hop → eventfd hop → reader).

use super::{gsw_options, round3, START_TIMEOUT};
use crate::cli::Args;
use crate::clock::Deadline;
use crate::cmd::chain::{round_trip, NativeChain};
use crate::cmd::fail;
use crate::pipeline::{config_text, free_udp_ports, udp_sender, GswOptions, Pipeline};
use crate::proc::{spawn_command, Child};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::summarize;
use crate::udp::fill_datagram;
use std::io;
use std::os::fd::AsRawFd as _;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

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
