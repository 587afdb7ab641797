//! `broadcast-fanout`: what direct readers cost the writer. One process writes two broadcast
//! segments (`gsw::broadcast`) the way decom does — a batch of 16 values per datagram, then a
//! flush that rings the bell if some reader may sleep — alternating, window by window, between
//! segment A, which N reader processes follow (each sleeping in a waitset on its bell between
//! batches, as a library subscriber does), and segment B, which nobody reads. The writer's own
//! CPU time per batch (CLOCK_THREAD_CPUTIME_ID) on A over B is the cost the readers add: the
//! kernel wakes every sleeping reader inside the writer's eventfd write.

use super::fail;
use crate::cli::Args;
use crate::clock::now_ns;
use crate::proc::{fork_child, Child};
use crate::report::Report;
use gsw::broadcast::{BroadcastReader, BroadcastWriter, MIN_RING};
use gsw::waitset::{Ready, Waitset};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// Usage text.
pub const HELP: &str = "\
gsw-bench-native broadcast-fanout [--readers N] [--rate HZ] [--window SECS] [--rounds N]
  What N direct readers (processes sleeping on a broadcast segment's bell) cost its writer:
  the writer's CPU per batch (16 values + flush) on a segment N readers follow vs one nobody
  reads, alternating window by window.
    bfanout_writer_cost_ratio_N (A / B), bfanout_writer_ns_per_batch (ref: no reader),
    bfanout_rings_per_batch, bfanout_reader_wakes_per_batch
  --readers N    reader processes (default 64)
  --rate HZ      batches per second (default 1000)
  --window SECS  per phase (default 2)
  --rounds N     phase pairs (default 3)";

const VALUES: usize = 16;

/// Options of `broadcast-fanout`.
#[derive(Clone, Debug)]
pub struct Options {
    pub readers: usize,
    pub rate: u64,
    pub window: Duration,
    pub rounds: usize,
    pub timeout: Duration,
}

impl Options {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            readers: a.get("--readers", 64)?,
            rate: a.get("--rate", 1000)?,
            window: a.secs("--window", 2.0)?,
            rounds: a.get("--rounds", 3)?,
            timeout: a.secs("--timeout", 170.0)?,
        };
        if o.rate == 0 || o.rounds == 0 {
            return Err("--rate and --rounds must be at least 1".into());
        }
        Ok(o)
    }
}

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec; the clock always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn segment() -> io::Result<BroadcastWriter> {
    let caps = [8u32; VALUES];
    let ids: Vec<u32> = (0..VALUES as u32).collect();
    BroadcastWriter::create(&caps, &ids, &[0; VALUES], 2, 1, MIN_RING)
        .map_err(|e| io::Error::other(e.message))
}

/// A reader process of segment `w`: follows every channel, checks each value, sleeps on bell 0.
fn reader(w: &BroadcastWriter) -> io::Result<Child> {
    let fds = w.fds();
    fork_child(None, move || {
        // SAFETY: dups of descriptors inherited across fork; we own the copies.
        let dup = |fd| unsafe { OwnedFd::from_raw_fd(libc::dup(fd)) };
        let r = BroadcastReader::attach(dup(fds[0]), dup(fds[1]), vec![(0, dup(fds[2]))])
            .map_err(|e| e.message)?;
        r.follow(&(0..VALUES as u32).collect::<Vec<_>>())
            .map_err(|e| e.message)?;
        let ws = Waitset::new().map_err(|e| e.message)?;
        ws.add_bell(
            r.bell(0).expect("bell 0"),
            1,
            r.bell_watch(0).expect("bell 0"),
        )
        .map_err(|e| e.message)?;
        let mut out = vec![0u8; 4096];
        let mut ready = [Ready {
            token: 0,
            events: 0,
        }; 4];
        loop {
            let n = r.read_changed(&mut out);
            let mut at = 0;
            for _ in 0..n {
                let seq = u64::from_le_bytes(out[at..at + 8].try_into().expect("8"));
                let v = u64::from_le_bytes(out[at + 32..at + 40].try_into().expect("8"));
                if v != seq {
                    return Err(format!("value {v} carries seq {seq}"));
                }
                at += 40;
            }
            if n == 0 {
                ws.wait(&mut ready, 1000).map_err(|e| e.message)?;
            }
        }
    })
}

/// Runs `broadcast-fanout`.
pub fn run(o: &Options) -> io::Result<Report> {
    let (a, b) = (segment()?, segment()?);
    let mut children = Vec::new();
    for _ in 0..o.readers {
        children.push(reader(&a).map_err(|e| fail("starting a reader", e))?);
    }
    std::thread::sleep(Duration::from_millis(300));
    let per = Duration::from_nanos(1_000_000_000 / o.rate);
    let mut seq = 0u64;
    // [segment][cpu ns, batches, rings]
    let mut totals = [[0u64; 3]; 2];
    for _ in 0..o.rounds {
        for (k, w) in [&a, &b].into_iter().enumerate() {
            let rings0 = w.stats().rings;
            let end = now_ns() + o.window.as_nanos() as u64;
            let mut next = now_ns();
            while now_ns() < end {
                seq += 1;
                let c0 = thread_cpu_ns();
                for ch in 0..VALUES {
                    w.publish_quiet(ch, &seq.to_le_bytes(), seq, 0)
                        .map_err(|e| io::Error::other(e.message))?;
                }
                w.flush().map_err(|e| io::Error::other(e.message))?;
                totals[k][0] += thread_cpu_ns() - c0;
                totals[k][1] += 1;
                next += per.as_nanos() as u64;
                let now = now_ns();
                if next > now {
                    std::thread::sleep(Duration::from_nanos(next - now));
                }
            }
            totals[k][2] += w.stats().rings - rings0;
        }
        for c in &mut children {
            if c.try_wait()?.is_some() {
                return Err(io::Error::other("a reader died (see its message above)"));
            }
        }
    }
    drop(children);
    let ns = |k: usize| totals[k][0] as f64 / totals[k][1].max(1) as f64;
    let mut r = Report::new("broadcast-fanout");
    r.push(
        &format!("bfanout_writer_cost_ratio_{}", o.readers),
        (ns(0) / ns(1).max(1.0) * 1000.0).round() / 1000.0,
        "ratio",
    );
    r.push_ref(
        "bfanout_writer_ns_per_batch",
        ns(0).round(),
        "ns",
        Some(ns(1).round()),
    );
    r.push(
        "bfanout_rings_per_batch",
        totals[0][2] as f64 / totals[0][1].max(1) as f64,
        "count",
    );
    r.push("bfanout_readers", o.readers as f64, "count");
    r.push("bfanout_rate_hz", o.rate as f64, "Hz");
    Ok(r)
}
