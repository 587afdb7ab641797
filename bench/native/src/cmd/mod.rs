//! The subcommands: each parses its options, runs its measurement and returns a
//! [`crate::report::Report`] (printing is left to `main`).

pub mod baseline;
pub mod bfanout;
pub mod cacheline;
pub mod chain;
pub mod channel;
pub mod deno;
pub mod eventfd_pingpong;
pub mod pipeline;
pub mod soak;
pub mod udp;

use crate::cli::Args;
use std::time::Duration;

/// Longest any single wait for the peer may take before the run fails (a lost wake-up or a
/// dead peer); far above any real latency here.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Options every benchmark subcommand takes.
#[derive(Clone, Copy, Debug)]
pub struct Common {
    /// Pin the two sides to different CPUs (`--no-pin` turns it off).
    pub pin: bool,
    /// Whole-run watchdog (`--timeout SECS`).
    pub timeout: Duration,
}

impl Common {
    /// Reads `--no-pin` and `--timeout SECS` (default `default_timeout_s`).
    pub fn from_args(a: &mut Args, default_timeout_s: f64) -> Result<Self, String> {
        Ok(Self {
            pin: !a.flag("--no-pin"),
            timeout: a.secs("--timeout", default_timeout_s)?,
        })
    }
}

/// An error for a failed run, with context.
pub fn fail(what: &str, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(format!("{what}: {e}"))
}
