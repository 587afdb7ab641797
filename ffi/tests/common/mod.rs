//! What the cross-process stress tests share: re-running the test binary as a child in a
//! role, handing it descriptors by inheritance, scaling sizes down for quick runs, and the
//! payload pattern that shows a torn read.
#![allow(dead_code)] // each test binary uses its own part

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::Child;
use std::time::{Duration, Instant};

pub const ROLE: &str = "GSW_STRESS_ROLE";
pub const FDS: &str = "GSW_STRESS_FDS";

pub fn scale(n: u64) -> u64 {
    let s: f64 = std::env::var("GSW_STRESS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    ((n as f64 * s) as u64).max(1)
}

/// Duplicates `fds` without close-on-exec so a child inherits them; returns the numbers.
pub fn inheritable(fds: &[RawFd]) -> Vec<OwnedFd> {
    fds.iter()
        .map(|&fd| {
            // SAFETY: dup of a valid descriptor returns a new one (no CLOEXEC) that we own.
            let n = unsafe { libc::dup(fd) };
            assert!(n >= 0, "dup failed");
            // SAFETY: `n` is a new descriptor we own.
            unsafe { OwnedFd::from_raw_fd(n) }
        })
        .collect()
}

/// Kills the child on drop, so a failing parent never leaves it running. Its stdout is read
/// continuously by a thread, so a chatty child can never block on a full pipe.
pub struct ChildGuard {
    child: Child,
    output: Option<std::thread::JoinHandle<String>>,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildGuard {
    pub fn new(mut child: Child) -> ChildGuard {
        let mut stdout = child.stdout.take().expect("child stdout is piped");
        let output = std::thread::spawn(move || {
            use std::io::Read;
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        });
        ChildGuard {
            child,
            output: Some(output),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the child to exit and returns its output; fails the test (killing the child)
    /// if it fails or runs past `limit`.
    pub fn finish(mut self, limit: Duration) -> String {
        let start = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if start.elapsed() >= limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let out = self.output.take().unwrap().join().unwrap_or_default();
        match status {
            Some(s) if s.success() => out,
            Some(s) => panic!("child failed ({s}); output:\n{out}"),
            None => panic!("child did not finish within {limit:?}; output:\n{out}"),
        }
    }
}

/// The payload of sequence number `seq`: every 8-byte word holds `seq`, so a torn mix of two
/// values (words from two publishes) cannot pass `check_payload`. Cheap enough that the
/// writer still publishes flat out.
pub fn fill_payload(buf: &mut [u8], seq: u64) {
    for chunk in buf.chunks_exact_mut(8) {
        chunk.copy_from_slice(&seq.to_le_bytes());
    }
}

pub fn check_payload(buf: &[u8], seq: u64) -> bool {
    let want = seq.to_le_bytes();
    buf.len() % 8 == 0 && buf.chunks_exact(8).all(|c| c == want)
}
