//! `soak`: decom's resident memory over minutes of traffic, first with no logger running
//! (every raw packet waits in decom's logger backlog, up to its bound) and then with one. The
//! growth after a warm-up is compared with the documented bound of that backlog: memory that
//! is what it says. decom and the broker run as the tasks start them, with a native subscriber
//! following every measurement.

use super::pipeline::{gsw_options, round3, START_TIMEOUT};
use crate::cli::Args;
use crate::clock::{now_ns, Deadline};
use crate::pipeline::{
    config_text, free_udp_ports, memory, packet_measurements, send_one, udp_sender, GswOptions,
    Pipeline, SOURCE,
};
use crate::report::Report;
use crate::subscriber::Subscription;
use crate::udp::fill_datagram;
use std::io;
use std::time::Duration;

/// Usage text.
pub const HELP: &str = "\
gsw-bench-native soak [--rate PPS] [--secs S] [--log-buffer MIB] GSW [--timeout SECS]
  decom's RSS sampled every second while it receives PPS datagrams per second for S seconds
  with no logger (its backlog fills up to its bound, then drops), then S more seconds with a
  logger. Growth is measured from the end of the first quarter of each phase (warm-up) and
  compared with the backlog's bound (--log-buffer, decom's default 64 MiB).
    soak_rss_growth_no_logger_mb (ref: the bound), soak_rss_growth_logger_mb,
    soak_rss_growth_no_logger_ratio, soak_decom_rss_start_mb, soak_decom_rss_peak_mb
  --rate PPS        datagrams per second (default 2900, one per receive batch)
  --secs S          seconds per phase (default 120)
  --log-buffer MIB  decom's backlog bound (default 64)";

/// Options of `soak`.
#[derive(Clone, Debug)]
pub struct Options {
    pub rate: u64,
    pub secs: u64,
    pub log_buffer_mib: u64,
    pub gsw: GswOptions,
    pub timeout: Duration,
}

impl Options {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            rate: a.get("--rate", 2900)?,
            secs: a.get("--secs", 120)?,
            log_buffer_mib: a.get("--log-buffer", 64)?,
            gsw: gsw_options(a)?,
            timeout: a.secs("--timeout", 0.0)?,
        };
        if o.rate == 0 || o.secs < 4 {
            return Err("--rate must be at least 1 and --secs at least 4".into());
        }
        Ok(o)
    }

    /// The whole run's watchdog: both phases and start-up.
    pub fn watchdog(&self) -> Duration {
        if self.timeout.is_zero() {
            Duration::from_secs(2 * self.secs + 120)
        } else {
            self.timeout
        }
    }
}

/// Sends `rate` datagrams per second for `secs`, sampling `pid`'s RSS (kB) every second.
fn phase(
    sock: &std::net::UdpSocket,
    seq: &mut u64,
    rate: u64,
    secs: u64,
    pid: libc::pid_t,
    p: &mut Pipeline,
) -> io::Result<Vec<u64>> {
    let mut d = vec![0u8; 64];
    let per = 1_000_000_000 / rate;
    let start = now_ns();
    let mut next = start;
    let mut samples = Vec::new();
    let mut next_sample = start;
    while now_ns() < start + secs * 1_000_000_000 {
        *seq += 1;
        fill_datagram(&mut d, *seq, 0);
        send_one(sock, &d)?;
        next += per;
        let now = now_ns();
        if now >= next_sample {
            samples.push(memory(pid)?.rss_kb);
            next_sample += 1_000_000_000;
            p.check_alive()?;
        }
        if next > now {
            std::thread::sleep(Duration::from_nanos(next - now));
        }
    }
    Ok(samples)
}

/// Growth (kB) from the end of the first quarter (warm-up) to the largest later sample.
fn growth(samples: &[u64]) -> u64 {
    let from = samples.len() / 4;
    let base = samples.get(from).copied().unwrap_or(0);
    samples[from..].iter().max().copied().unwrap_or(base) - base
}

/// Runs `soak`.
pub fn run(o: &Options) -> io::Result<Report> {
    let port = free_udp_ports(1)?[0];
    let mut p = Pipeline::create(&o.gsw, &config_text(&[port], 0))?;
    let decom = p.spawn(
        "decom",
        &["--log-buffer".into(), o.log_buffer_mib.to_string()],
    )?;
    p.wait_ready(
        decom,
        Some(&format!("decom.{SOURCE}.sock")),
        None,
        START_TIMEOUT,
    )?;
    let broker = p.spawn("broker", &[])?;
    p.wait_ready(
        broker,
        Some("broker.sock"),
        Some("attached to decom"),
        START_TIMEOUT,
    )?;
    let names = packet_measurements(1, 0);
    let sub = Subscription::open(
        &p.socket("broker.sock"),
        &names,
        "bench-soak",
        Duration::from_secs(10),
    )?;
    // The subscriber drains in a thread, as a real one would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            // Relaxed: only a flag to end the loop; nothing is published through it.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                sub.drain(|_, _, _| {});
                let _ = sub.wait(100);
            }
        })
    };
    let pid = p.pid(decom);
    std::thread::sleep(Duration::from_secs(1));
    let start_kb = memory(pid)?.rss_kb;
    let sock = udp_sender(port)?;
    let mut seq = 0;
    let absent = phase(&sock, &mut seq, o.rate, o.secs, pid, &mut p)?;
    let logger = p.spawn(
        "logger",
        &["--log-dir".into(), p.log_dir.display().to_string()],
    )?;
    p.wait_ready(logger, Some("logger.sock"), None, START_TIMEOUT)?;
    let deadline = Deadline::after(Duration::from_secs(30));
    while !p.output(decom).contains("logger connected") && !deadline.expired() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let present = phase(&sock, &mut seq, o.rate, o.secs, pid, &mut p)?;
    // Relaxed: see above.
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = reader.join();
    let mb = |kb: u64| round3(kb as f64 * 1024.0 / 1e6);
    let bound_mb = round3(o.log_buffer_mib as f64 * 1024.0 * 1024.0 / 1e6);
    let (g0, g1) = (growth(&absent), growth(&present));
    let peak = absent.iter().chain(&present).max().copied().unwrap_or(0);
    let mut r = Report::new("soak");
    r.push_ref("soak_rss_growth_no_logger_mb", mb(g0), "MB", Some(bound_mb));
    r.push(
        "soak_rss_growth_no_logger_ratio",
        round3(mb(g0) / bound_mb.max(0.001)),
        "ratio",
    );
    r.push("soak_rss_growth_logger_mb", mb(g1), "MB");
    r.push("soak_decom_rss_start_mb", mb(start_kb), "MB");
    r.push("soak_decom_rss_peak_mb", mb(peak), "MB");
    r.push("soak_rate_pps", o.rate as f64, "pps");
    r.push("soak_secs_per_phase", o.secs as f64, "s");
    r.push("soak_datagrams", seq as f64, "count");
    Ok(r)
}
