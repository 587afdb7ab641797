//! The one clock every benchmark uses: `CLOCK_MONOTONIC` in nanoseconds, so that a stamp
//! taken by a writer in one process and a wake time taken by a reader in another are
//! directly comparable (same machine, same clock).

use std::time::Duration;

/// Nanoseconds on `CLOCK_MONOTONIC` (vDSO, no syscall when the clocksource is `tsc`).
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec and CLOCK_MONOTONIC always exists on Linux,
    // so the call cannot fail or write out of bounds.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Mean cost of one [`now_ns`] call in nanoseconds, measured over `iters` back-to-back calls.
/// Every latency includes about one of these; it is reported so readers can subtract it.
pub fn clock_cost_ns(iters: u32) -> f64 {
    let iters = iters.max(1);
    let start = now_ns();
    let mut sink = 0u64;
    for _ in 0..iters {
        sink = sink.wrapping_add(now_ns());
    }
    std::hint::black_box(sink);
    (now_ns() - start) as f64 / f64::from(iters)
}

/// A point in time on the monotonic clock after which a wait gives up.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at_ns: u64,
}

impl Deadline {
    /// The deadline `timeout` from now.
    pub fn after(timeout: Duration) -> Self {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Self {
            at_ns: now_ns().saturating_add(ns),
        }
    }

    /// Whether the deadline has passed.
    #[inline]
    pub fn expired(&self) -> bool {
        now_ns() >= self.at_ns
    }

    /// Time left, or `None` once expired.
    pub fn remaining(&self) -> Option<Duration> {
        let now = now_ns();
        (now < self.at_ns).then(|| Duration::from_nanos(self.at_ns - now))
    }
}

/// Busy-waits for `ns` nanoseconds without sleeping (so the calling CPU stays awake and
/// the measured wake-ups are those of the *other* side).
pub fn spin_for_ns(ns: u64) {
    let end = now_ns().saturating_add(ns);
    while now_ns() < end {
        std::hint::spin_loop();
    }
}
