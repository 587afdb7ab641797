//! Blocked-reader wake latency, for any wake-up mechanism: a writer process publishes a
//! stamped payload to a reader process that is asleep waiting for it; one sample is
//! "the reader has copied the payload" minus "the writer stamped it just before publishing".
//! Several mechanisms are measured in one run, interleaved in rounds (A, B, A, B …), so
//! their ratio is not skewed by the machine drifting between runs.
//!
//! Pacing: before each sample the reader announces which value it is about to wait for; the
//! writer waits for that, then busy-waits `gap` more so the reader is really asleep in the
//! kernel, then stamps and publishes. The payload carries its sequence number and pattern
//! (see [`crate::payload`]) and the reader checks every byte.

use crate::baseline::BaselineShm;
use crate::clock::{now_ns, spin_for_ns, Deadline};
use crate::payload;
use crate::proc::{fork_child, Child, CpuPair};
use crate::shm::SharedMem;
use crate::sys::EventFd;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A one-writer, one-reader wake-up mechanism, created before `fork()` so that both
/// processes hold the same shared state; each process then uses its own copy of the handle.
pub trait WakeMechanism {
    /// Short name used as the metric prefix, e.g. `eventfd_wake`.
    fn name(&self) -> &str;
    /// Writer: make `payload` (already stamped) the newest value and wake the reader.
    fn publish(&mut self, payload: &[u8]) -> io::Result<()>;
    /// Reader: sleep until a value newer than the last one this handle read is published,
    /// then copy it into `out`. Mechanisms that cannot time out (a blocking eventfd read)
    /// rely on the caller's [`crate::proc::Watchdog`].
    fn wait_read(&mut self, out: &mut [u8], timeout: Duration) -> io::Result<()>;
}

const EV_SEQ: usize = 0;
const EV_DATA: usize = 128;

/// The kernel's floor: payload in shared memory, then a blocking eventfd `read`/`write`.
#[derive(Debug)]
pub struct EventfdWake {
    shm: SharedMem,
    efd: EventFd,
    size: usize,
    last: u64,
}

impl EventfdWake {
    /// A mechanism carrying `payload_size`-byte payloads.
    pub fn new(payload_size: usize) -> io::Result<Self> {
        Ok(Self {
            shm: SharedMem::create("gsw-bench-eventfd-wake", EV_DATA + payload_size)?,
            efd: EventFd::new()?,
            size: payload_size,
            last: 0,
        })
    }
}

impl WakeMechanism for EventfdWake {
    fn name(&self) -> &str {
        "eventfd_wake"
    }

    fn publish(&mut self, p: &[u8]) -> io::Result<()> {
        // SAFETY: the reader copies the bytes only after its Acquire load sees the new sequence
        // number, and the harness publishes again only after the reader announced (Release)
        // that it finished copying; so no access overlaps this copy.
        unsafe { self.shm.write_bytes(EV_DATA, p) };
        // Release: the payload bytes above are visible to a reader whose Acquire load sees it.
        self.shm
            .atomic_u64(EV_SEQ)
            .store(payload::seq(p), Ordering::Release);
        self.efd.write(1)
    }

    fn wait_read(&mut self, out: &mut [u8], _timeout: Duration) -> io::Result<()> {
        loop {
            self.efd.read()?;
            // Acquire: pairs with publish's Release store, making the payload bytes visible.
            let s = self.shm.atomic_u64(EV_SEQ).load(Ordering::Acquire);
            if s != self.last {
                self.last = s;
                // SAFETY: the writer does not touch the bytes again until we announce that we
                // wait for the next value (see publish).
                unsafe { self.shm.read_bytes(EV_DATA, &mut out[..self.size]) };
                return Ok(());
            }
        }
    }
}

/// The eventfd floor with gsw's syscall pattern instead of a blocking `read`: a non-blocking
/// eventfd, drained (non-blocking `read`) and re-checked before sleeping in `poll(2)`; after the
/// wake-up the value is taken without another syscall. Measured next to [`EventfdWake`] it
/// shows what sleeping in `poll` rather than `read` costs a wake-up.
#[derive(Debug)]
pub struct EventfdPollWake {
    shm: SharedMem,
    efd: std::os::fd::OwnedFd,
    size: usize,
    last: u64,
}

impl EventfdPollWake {
    /// A mechanism carrying `payload_size`-byte payloads.
    pub fn new(payload_size: usize) -> io::Result<Self> {
        // SAFETY: eventfd has no memory arguments.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            shm: SharedMem::create("gsw-bench-eventfd-poll-wake", EV_DATA + payload_size)?,
            // SAFETY: eventfd just returned this descriptor and nothing else owns it.
            efd: unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) },
            size: payload_size,
            last: 0,
        })
    }

    fn take(&mut self, out: &mut [u8]) -> bool {
        // Acquire: pairs with publish's Release store, making the payload bytes visible.
        let s = self.shm.atomic_u64(EV_SEQ).load(Ordering::Acquire);
        if s == self.last {
            return false;
        }
        self.last = s;
        // SAFETY: the writer does not touch the bytes again until we announce that we wait
        // for the next value (see EventfdWake::publish).
        unsafe { self.shm.read_bytes(EV_DATA, &mut out[..self.size]) };
        true
    }
}

impl WakeMechanism for EventfdPollWake {
    fn name(&self) -> &str {
        "eventfd_poll_wake"
    }

    fn publish(&mut self, p: &[u8]) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        // SAFETY: as in EventfdWake::publish.
        unsafe { self.shm.write_bytes(EV_DATA, p) };
        // Release: the payload bytes above are visible to a reader whose Acquire load sees it.
        self.shm
            .atomic_u64(EV_SEQ)
            .store(payload::seq(p), Ordering::Release);
        let one = 1u64.to_ne_bytes();
        // SAFETY: 8 readable bytes, the size eventfd requires.
        if unsafe { libc::write(self.efd.as_raw_fd(), one.as_ptr().cast(), 8) } != 8 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait_read(&mut self, out: &mut [u8], timeout: Duration) -> io::Result<()> {
        use std::os::fd::AsRawFd as _;
        let deadline = Deadline::after(timeout);
        loop {
            if self.take(out) {
                return Ok(());
            }
            let mut buf = [0u8; 8];
            // SAFETY: 8 writable bytes; a non-blocking eventfd at zero fails with EAGAIN.
            unsafe { libc::read(self.efd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
            if self.take(out) {
                return Ok(());
            }
            let Some(left) = deadline.remaining() else {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "eventfd poll: no value in time (lost wake-up?)",
                ));
            };
            let mut pfd = libc::pollfd {
                fd: self.efd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut pfd, 1, ms) } < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
}

/// The old scheme: readers/writer lock + futex on a counter ([`BaselineShm`]).
#[derive(Debug)]
pub struct BaselineWake {
    shm: BaselineShm,
    last: u64,
}

impl BaselineWake {
    /// Wraps a baseline segment (its payload size must match the harness's).
    pub fn new(shm: BaselineShm) -> Self {
        Self { shm, last: 0 }
    }
}

impl WakeMechanism for BaselineWake {
    fn name(&self) -> &str {
        "baseline_wake"
    }

    fn publish(&mut self, p: &[u8]) -> io::Result<()> {
        self.shm.write(p).map(drop)
    }

    fn wait_read(&mut self, out: &mut [u8], timeout: Duration) -> io::Result<()> {
        let deadline = Deadline::after(timeout);
        loop {
            let s = self.shm.read_latest(out)?;
            if s > self.last {
                self.last = s;
                return Ok(());
            }
            let left = deadline.remaining().unwrap_or_default();
            if !self.shm.wait_newer(s, left)? {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "baseline: no new packet after seq {s} within {timeout:?} (lost wake-up?)"
                    ),
                ));
            }
        }
    }
}

/// Parameters of a [`measure`] run.
#[derive(Clone, Debug)]
pub struct WakeOptions {
    /// Recorded samples per mechanism.
    pub samples: usize,
    /// Unrecorded samples per mechanism before the first round.
    pub warmup: usize,
    /// Number of interleaved rounds the samples are split into.
    pub rounds: usize,
    /// Busy-wait between the reader announcing it waits and the writer publishing.
    pub gap: Duration,
    /// Payload bytes (at least [`payload::MIN_SIZE`]).
    pub payload_size: usize,
    /// Pin writer and reader to different CPUs when at least two exist.
    pub pin: bool,
    /// Longest time any single wait may take before the run fails.
    pub timeout: Duration,
}

/// Samples of one mechanism, in nanoseconds, in the order taken.
#[derive(Clone, Debug)]
pub struct WakeSamples {
    /// The mechanism's [`WakeMechanism::name`].
    pub name: String,
    /// One-way latencies, ns.
    pub samples: Vec<u64>,
    /// Writer-side cost of each recorded publish (stamp to return from
    /// [`WakeMechanism::publish`], with the reader asleep), ns: what waking costs the writer.
    pub publish: Vec<u64>,
}

/// Result of a [`measure`] run.
#[derive(Clone, Debug)]
pub struct WakeRun {
    /// Whether both sides were pinned to different CPUs.
    pub pinned: bool,
    /// One entry per mechanism, in the order given.
    pub results: Vec<WakeSamples>,
}

/// One block of a run's schedule: `count` consecutive samples of mechanism `mech`, recorded or
/// (warm-up) not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// Index of the mechanism.
    pub mech: usize,
    /// Samples in the block.
    pub count: usize,
    /// Whether the samples are recorded (false: warm-up).
    pub record: bool,
}

/// The order samples are taken in: a warm-up block per mechanism, then `o.rounds` rounds in
/// which every mechanism takes its share of `o.samples` in turn (A, B, A, B …).
pub fn schedule(n_mechs: usize, o: &WakeOptions) -> Vec<Block> {
    let mut s: Vec<Block> = (0..n_mechs)
        .map(|m| Block {
            mech: m,
            count: o.warmup,
            record: false,
        })
        .collect();
    let rounds = o.rounds.clamp(1, o.samples.max(1));
    for r in 0..rounds {
        let count = o.samples / rounds + usize::from(r < o.samples % rounds);
        s.extend((0..n_mechs).map(|m| Block {
            mech: m,
            count,
            record: true,
        }));
    }
    s
}

const CTL_READY: usize = 0;
const CTL_DONE: usize = 64;
const CTL_SAMPLES: usize = 128;

/// Spins until `word == want`, failing if the peer exits or `deadline` passes.
fn await_value(
    word: &AtomicU64,
    want: u64,
    peer: &mut Child,
    deadline: Deadline,
    yield_cpu: bool,
) -> io::Result<()> {
    let mut n = 0u32;
    // Acquire: pairs with the reader's Release announcement (its previous copy is finished).
    while word.load(Ordering::Acquire) != want {
        n = n.wrapping_add(1);
        if yield_cpu {
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
        if n % 4096 == 0 {
            if deadline.expired() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "reader stopped announcing (stuck?)",
                ));
            }
            if let Some(_status) = peer.try_wait()? {
                return Err(io::Error::other(
                    "reader process exited early (see its message above)",
                ));
            }
        }
    }
    Ok(())
}

/// The reader's side of a wake measurement, run in the forked child: for each block of
/// `plan`, announce readiness for value k (`ready`), block in that mechanism until it arrives,
/// check it is value k, and store the wake latency of recorded blocks into `samples` in order.
pub fn read_blocks<'a>(
    plan: impl Iterator<Item = &'a Block>,
    mechs: &mut [Box<dyn WakeMechanism>],
    ready: &AtomicU64,
    samples: &[AtomicU64],
    payload_size: usize,
    timeout: Duration,
) -> Result<(), String> {
    let mut buf = vec![0u8; payload_size];
    let (mut k, mut idx) = (0u64, 0usize);
    for b in plan {
        for _ in 0..b.count {
            k += 1;
            // Release: our copy of the previous value is finished before the writer
            // (Acquire) overwrites the shared payload.
            ready.store(k, Ordering::Release);
            mechs[b.mech]
                .wait_read(&mut buf, timeout)
                .map_err(|e| e.to_string())?;
            let t1 = now_ns();
            let (s, t0) = payload::check(&buf)?;
            if s != k {
                return Err(format!(
                    "{}: got payload {s}, expected {k}",
                    mechs[b.mech].name()
                ));
            }
            if b.record {
                // Relaxed: published to the parent by the Release store of DONE.
                samples[idx].store(t1.saturating_sub(t0), Ordering::Relaxed);
                idx += 1;
            }
        }
    }
    Ok(())
}

/// Measures every mechanism in `mechs` with a writer in this process and a reader in a
/// forked child, interleaved per [`WakeOptions::rounds`].
pub fn measure(mechs: &mut [Box<dyn WakeMechanism>], o: &WakeOptions) -> io::Result<WakeRun> {
    if o.payload_size < payload::MIN_SIZE {
        return Err(io::Error::other(format!(
            "payload must be at least {} bytes",
            payload::MIN_SIZE
        )));
    }
    let plan = schedule(mechs.len(), o);
    let recorded: usize = plan.iter().filter(|b| b.record).map(|b| b.count).sum();
    let ctl = SharedMem::create("gsw-bench-wake-ctl", CTL_SAMPLES + recorded * 8)?;
    let cpus = CpuPair::choose(o.pin);
    let yield_cpu = !crate::proc::multi_cpu();

    let mut child = fork_child(cpus.child, || {
        read_blocks(
            plan.iter(),
            mechs,
            ctl.atomic_u64(CTL_READY),
            ctl.atomic_u64_slice(CTL_SAMPLES, recorded),
            o.payload_size,
            o.timeout,
        )?;
        // Release: all sample stores above are visible to the parent's Acquire load.
        ctl.atomic_u64(CTL_DONE).store(1, Ordering::Release);
        Ok(())
    })?;
    let child_pinned = child.wait_started(o.timeout)?;
    let parent_pin = cpus.pin_parent()?;

    let ready = ctl.atomic_u64(CTL_READY);
    let mut buf = vec![0u8; o.payload_size];
    let gap_ns = u64::try_from(o.gap.as_nanos()).unwrap_or(u64::MAX);
    let mut k = 0u64;
    let mut publish: Vec<Vec<u64>> = vec![Vec::with_capacity(o.samples); mechs.len()];
    for b in &plan {
        for _ in 0..b.count {
            k += 1;
            payload::fill(&mut buf, k);
            await_value(ready, k, &mut child, Deadline::after(o.timeout), yield_cpu)?;
            spin_for_ns(gap_ns);
            let t0 = now_ns();
            payload::stamp(&mut buf, t0);
            mechs[b.mech].publish(&buf)?;
            if b.record {
                publish[b.mech].push(now_ns() - t0);
            }
        }
    }
    child.wait(o.timeout)?;
    // Acquire: pairs with the child's Release store of DONE.
    if ctl.atomic_u64(CTL_DONE).load(Ordering::Acquire) != 1 {
        return Err(io::Error::other("reader exited without finishing"));
    }
    let samples = ctl.atomic_u64_slice(CTL_SAMPLES, recorded);
    let mut results: Vec<WakeSamples> = mechs
        .iter()
        .zip(publish)
        .map(|(m, publish)| WakeSamples {
            name: m.name().to_string(),
            samples: Vec::with_capacity(o.samples),
            publish,
        })
        .collect();
    let mut idx = 0;
    for b in plan.iter().filter(|b| b.record) {
        for _ in 0..b.count {
            // Relaxed: ordered by the Acquire load of DONE above.
            results[b.mech]
                .samples
                .push(samples[idx].load(Ordering::Relaxed));
            idx += 1;
        }
    }
    Ok(WakeRun {
        pinned: child_pinned && parent_pin.pinned(),
        results,
    })
}
