//! `eventfd-pingpong`: the kernel's floor for a blocking wake-up. Two processes, two
//! eventfds; each side blocks in `read(2)` on its eventfd and the peer `write(2)`s it. Each
//! hop carries a payload in shared memory, stamped by the writer just before its `write`;
//! a sample is "the reader has copied the payload" minus that stamp. Both directions are
//! recorded, so N round trips give 2N one-way samples.

use super::{fail, Common};
use crate::cli::Args;
use crate::clock::{clock_cost_ns, now_ns};
use crate::payload;
use crate::proc::{fork_child, CpuPair};
use crate::report::Report;
use crate::shm::SharedMem;
use crate::stats::summarize;
use crate::sys::EventFd;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

/// Usage text.
pub const HELP: &str = "\
gsw-bench-native eventfd-pingpong [--samples N] [--warmup N] [--size BYTES] [--no-pin] [--timeout SECS]
  Raw eventfd ping-pong between two processes: one-way blocking wake latency (p50/p99/p99.9/max).
  --samples N    one-way samples, both directions together (default 200000)
  --warmup N     unrecorded one-way hops first (default 20000)
  --size BYTES   payload bytes, >= 16 (default 64)";

/// Options of `eventfd-pingpong`.
#[derive(Clone, Debug)]
pub struct Options {
    /// One-way samples (both directions together).
    pub samples: usize,
    /// Unrecorded hops before measuring.
    pub warmup: usize,
    /// Payload bytes.
    pub size: usize,
    /// Pinning and watchdog.
    pub common: Common,
}

impl Options {
    /// Reads the options from the command line.
    pub fn from_args(a: &mut Args) -> Result<Self, String> {
        let o = Self {
            samples: a.get("--samples", 200_000)?,
            warmup: a.get("--warmup", 20_000)?,
            size: a.get("--size", 64)?,
            common: Common::from_args(a, 120.0)?,
        };
        if o.size < payload::MIN_SIZE {
            return Err(format!("--size must be at least {}", payload::MIN_SIZE));
        }
        if o.samples < 2 {
            return Err("--samples must be at least 2".into());
        }
        Ok(o)
    }
}

/// One direction's mailbox: sequence number (own cache line), then the payload.
struct Slot<'a> {
    shm: &'a SharedMem,
    base: usize,
}

impl Slot<'_> {
    fn seq(&self) -> &AtomicU64 {
        self.shm.atomic_u64(self.base)
    }

    /// Copies the payload in, stamps it, publishes the sequence number and rings `efd`.
    fn send(&self, buf: &[u8], seq: u64, efd: &EventFd) -> io::Result<()> {
        // SAFETY: the peer reads this slot only after it sees `seq` (Acquire) and replies, and
        // we write it again only after that reply, so the accesses never overlap.
        unsafe { self.shm.write_bytes(self.base + 128, buf) };
        let t0 = now_ns();
        // SAFETY: as above.
        unsafe { self.shm.write_bytes(self.base + 128 + 8, &t0.to_le_bytes()) };
        // Release: the payload and stamp are visible to the peer's Acquire load of `seq`.
        self.seq().store(seq, Ordering::Release);
        efd.write(1)
    }

    /// After a wake-up: loads the sequence number and copies the payload out.
    fn receive(&self, buf: &mut [u8]) -> u64 {
        // Acquire: pairs with `send`'s Release store.
        let s = self.seq().load(Ordering::Acquire);
        // SAFETY: the writer does not touch the slot again until we reply (see `send`).
        unsafe { self.shm.read_bytes(self.base + 128, buf) };
        s
    }
}

/// The poison value a failing child stores before waking the parent, so the parent stops
/// instead of blocking forever.
const POISON: u64 = u64::MAX;

/// Runs the benchmark.
pub fn run(o: &Options) -> io::Result<Report> {
    let rt_warm = o.warmup.div_ceil(2) as u64;
    let rt = o.samples.div_ceil(2) as u64;
    let total = rt_warm + rt;
    let slot_len = 128 + o.size.div_ceil(128) * 128;
    let shm = SharedMem::create("gsw-bench-eventfd-pingpong", 2 * slot_len + rt as usize * 8)?;
    let (to_child, to_parent) = (EventFd::new()?, EventFd::new()?);
    let a = Slot { shm: &shm, base: 0 };
    let b = Slot {
        shm: &shm,
        base: slot_len,
    };
    let child_samples = shm.atomic_u64_slice(2 * slot_len, rt as usize);
    let cpus = CpuPair::choose(o.common.pin);

    let mut child = fork_child(cpus.child, || {
        // If anything below fails or panics, wake the parent with POISON so it stops.
        struct Poison<'a>(&'a Slot<'a>, &'a EventFd, bool);
        impl Drop for Poison<'_> {
            fn drop(&mut self) {
                if self.2 {
                    // Release: same as in `send`.
                    self.0.seq().store(POISON, Ordering::Release);
                    let _ = self.1.write(1);
                }
            }
        }
        let mut guard = Poison(&b, &to_parent, true);
        let mut buf = vec![0u8; o.size];
        for i in 1..=total {
            to_child.read().map_err(|e| e.to_string())?;
            let s = a.receive(&mut buf);
            let t1 = now_ns();
            let (ps, t0) = payload::check(&buf)?;
            if s != i || ps != i {
                return Err(format!(
                    "child expected hop {i}, got seq {s} / payload {ps}"
                ));
            }
            if i > rt_warm {
                // Relaxed: the parent reads the samples after reaping us.
                child_samples[(i - rt_warm - 1) as usize].store(t1 - t0, Ordering::Relaxed);
            }
            payload::fill(&mut buf, i);
            b.send(&buf, i, &to_parent).map_err(|e| e.to_string())?;
        }
        guard.2 = false;
        Ok(())
    })?;
    let child_pinned = child.wait_started(super::WAIT_TIMEOUT)?;
    let parent_pin = cpus.pin_parent()?;

    let mut samples = Vec::with_capacity(2 * rt as usize);
    let mut buf = vec![0u8; o.size];
    for i in 1..=total {
        payload::fill(&mut buf, i);
        a.send(&buf, i, &to_child)?;
        // Interrupted by SIGCHLD if the child dies, so we fail now rather than at the watchdog.
        while let Err(e) = to_parent.read_interruptible() {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            if let Some(_status) = child.try_wait()? {
                return Err(io::Error::other(format!(
                    "child process died during hop {i}"
                )));
            }
        }
        let s = b.receive(&mut buf);
        let t1 = now_ns();
        if s == POISON {
            child.wait(super::WAIT_TIMEOUT)?;
            return Err(io::Error::other("child stopped without an error"));
        }
        let (ps, t0) = payload::check(&buf).map_err(|e| fail("parent", e))?;
        if s != i || ps != i {
            return Err(io::Error::other(format!(
                "parent expected hop {i}, got seq {s} / payload {ps}"
            )));
        }
        if i > rt_warm {
            samples.push(t1 - t0);
        }
    }
    child.wait(super::WAIT_TIMEOUT)?;
    // Relaxed: the child has exited and been reaped (waitpid orders its stores before us).
    samples.extend(child_samples.iter().map(|s| s.load(Ordering::Relaxed)));
    let s = summarize(&mut samples).ok_or_else(|| io::Error::other("no samples"))?;

    let mut r = Report::new("eventfd-pingpong");
    r.latency("eventfd_pingpong", &s, None);
    r.push("eventfd_pingpong_mean_ns", s.mean, "ns");
    r.push(
        "pinned",
        f64::from(u8::from(child_pinned && parent_pin.pinned())),
        "bool",
    );
    r.push("payload_bytes", o.size as f64, "bytes");
    r.push(
        "eventfd_write_idle_ns",
        eventfd_write_idle_ns(100_000)?,
        "ns",
    );
    r.push("clock_gettime_ns", clock_cost_ns(100_000), "ns");
    Ok(r)
}

/// Mean cost of an eventfd `write` when nobody is waiting (what ringing a doorbell costs a
/// writer whose reader is awake).
pub fn eventfd_write_idle_ns(n: u32) -> io::Result<f64> {
    let efd = EventFd::new()?;
    let start = now_ns();
    for _ in 0..n {
        efd.write(1)?;
    }
    Ok((now_ns() - start) as f64 / f64::from(n.max(1)))
}
