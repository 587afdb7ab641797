//! `cacheline-pingpong`: the floor for any lock-free hand-off. Two processes spin on one
//! shared cache line; each hop writes a 48-byte payload and a sequence number into the line
//! (Release) and the peer, spinning on the sequence number (Acquire), copies it out. A sample
//! is "the reader has copied the payload" minus the writer's stamp taken just before its
//! store. Both directions are recorded.

use super::{fail, Common};
use crate::cli::Args;
use crate::clock::{clock_cost_ns, now_ns, Deadline};
use crate::payload;
use crate::proc::{fork_child, multi_cpu, CpuPair};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::summarize;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Usage text.
pub const HELP: &str = "\
gsw-bench-native cacheline-pingpong [--samples N] [--warmup N] [--no-pin] [--timeout SECS]
  Cache-line hand-off between two processes spinning on a shared atomic: one-way latency.
  --samples N    one-way samples, both directions together (default 1000000)
  --warmup N     unrecorded one-way hops first (default 100000)
  The payload is fixed at 48 bytes so that it shares the 64-byte line with the sequence number.";

/// Payload bytes carried in the line next to the 8-byte sequence number.
pub const LINE_PAYLOAD: usize = 48;
const OFF_SEQ: usize = 0;
const OFF_DATA: usize = 8;

/// Options of `cacheline-pingpong`.
#[derive(Clone, Debug)]
pub struct Options {
    /// One-way samples (both directions together).
    pub samples: usize,
    /// Unrecorded hops before measuring.
    pub warmup: usize,
    /// Pinning and watchdog.
    pub common: Common,
}

impl Options {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            samples: a.get("--samples", 1_000_000)?,
            warmup: a.get("--warmup", 100_000)?,
            common: Common::from_args(a, 120.0)?,
        };
        if o.samples < 2 {
            return Err("--samples must be at least 2".into());
        }
        Ok(o)
    }
}

/// Spins until the line's sequence number is `want`; gives up after `deadline` or, when
/// `peer_alive` says so, if the peer is gone. Yields instead of spinning on a single CPU.
fn spin_for(
    seq: &AtomicU64,
    want: u64,
    deadline: Deadline,
    yield_cpu: bool,
    mut peer_alive: impl FnMut() -> bool,
) -> Result<(), String> {
    let mut n = 0u32;
    // Acquire: pairs with the writer's Release store, so the payload it wrote is visible.
    while seq.load(Ordering::Acquire) != want {
        if yield_cpu {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        n = n.wrapping_add(1);
        if n % 8192 == 0 && (deadline.expired() || !peer_alive()) {
            return Err(format!(
                "hand-off {want} did not arrive (peer stuck or gone)"
            ));
        }
    }
    Ok(())
}

/// Writes payload `s` into the line, stamped, then publishes `s` (Release).
fn hand_off(shm: &SharedMem, buf: &mut [u8], s: u64) {
    payload::fill(buf, s);
    payload::stamp(buf, now_ns());
    // SAFETY: the peer reads the data only after its Acquire load sees `s`, and writes it only
    // after that; we touch the line again only after we see its reply. No access overlaps.
    unsafe { shm.write_bytes(OFF_DATA, buf) };
    // Release: the payload bytes are visible to the peer's Acquire load of the sequence number.
    shm.atomic_u64(OFF_SEQ).store(s, Ordering::Release);
}

/// Copies the line's payload out, stamps the arrival and checks it is payload `s`.
fn take(shm: &SharedMem, buf: &mut [u8], s: u64) -> Result<u64, String> {
    // SAFETY: called after the Acquire load saw `s`; the peer does not write the line again
    // until we publish our reply.
    unsafe { shm.read_bytes(OFF_DATA, buf) };
    let t1 = now_ns();
    let (ps, t0) = payload::check(buf)?;
    if ps != s {
        return Err(format!("hand-off {s} carried payload {ps}"));
    }
    Ok(t1.saturating_sub(t0))
}

/// Runs the benchmark.
pub fn run(o: &Options) -> io::Result<Report> {
    let warm = o.warmup.div_ceil(2) as u64;
    let rt = o.samples.div_ceil(2) as u64;
    let total = warm + rt;
    // The line at offset 0 (page-aligned, so it is one cache line); child samples after it.
    let shm = SharedMem::create("gsw-bench-cacheline", 4096 + rt as usize * 8)?;
    let child_samples = shm.atomic_u64_slice(4096, rt as usize);
    let seq = shm.atomic_u64(OFF_SEQ);
    let cpus = CpuPair::choose(o.common.pin);
    let yield_cpu = !multi_cpu();
    // SAFETY: getpid has no preconditions.
    let parent_pid = unsafe { libc::getpid() };

    // Parent writes odd sequence numbers 2i-1, the child answers with 2i.
    let mut child = fork_child(cpus.child, || {
        let mut buf = [0u8; LINE_PAYLOAD];
        let deadline = Deadline::after(o.common.timeout);
        // SAFETY: getppid has no preconditions.
        let alive = || unsafe { libc::getppid() } == parent_pid;
        for i in 1..=total {
            spin_for(seq, 2 * i - 1, deadline, yield_cpu, alive)?;
            let lat = take(&shm, &mut buf, 2 * i - 1)?;
            if i > warm {
                // Relaxed: the parent reads the samples after reaping us.
                child_samples[(i - warm - 1) as usize].store(lat, Ordering::Relaxed);
            }
            hand_off(&shm, &mut buf, 2 * i);
        }
        Ok(())
    })?;
    let child_pinned = child.wait_started(super::WAIT_TIMEOUT)?;
    let parent_pin = cpus.pin_parent()?;

    let mut samples = Vec::with_capacity(2 * rt as usize);
    let mut buf = [0u8; LINE_PAYLOAD];
    let deadline = Deadline::after(o.common.timeout);
    for i in 1..=total {
        hand_off(&shm, &mut buf, 2 * i - 1);
        let mut alive = || matches!(child.try_wait(), Ok(None));
        spin_for(seq, 2 * i, deadline, yield_cpu, &mut alive).map_err(|e| fail("parent", e))?;
        let lat = take(&shm, &mut buf, 2 * i).map_err(|e| fail("parent", e))?;
        if i > warm {
            samples.push(lat);
        }
    }
    child.wait(super::WAIT_TIMEOUT)?;
    // Relaxed: the child has exited and been reaped (waitpid orders its stores before us).
    samples.extend(child_samples.iter().map(|s| s.load(Ordering::Relaxed)));
    let s = summarize(&mut samples).ok_or_else(|| io::Error::other("no samples"))?;

    let mut r = Report::new("cacheline-pingpong");
    r.latency("cacheline_pingpong", &s, None);
    r.push("cacheline_pingpong_mean_ns", s.mean, "ns");
    r.push(
        "pinned",
        f64::from(u8::from(child_pinned && parent_pin.pinned())),
        "bool",
    );
    r.push("payload_bytes", LINE_PAYLOAD as f64, "bytes");
    r.push("clock_gettime_ns", clock_cost_ns(100_000), "ns");
    Ok(r)
}
