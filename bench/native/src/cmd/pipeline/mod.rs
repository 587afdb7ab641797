//! The pipeline benchmarks: gsw's real processes (logger, decom, broker: `deno run main.ts …`
//! as the tasks start them) on a private run directory and a generated config on free ports,
//! fed over loopback UDP, each figure next to its reference measured in the same run:
//!
//! - `ingest`: decom fed flat out by a native `sendmmsg` sender (64-byte datagrams of 16
//!   measurements), the logger recording, the broker and a subscriber following all 16
//!   measurements (native, on the `gsw` rlib) draining them; interleaved (A, B, A, B …) with a
//!   native `recvmmsg` receiver fed by the same sender. Loss, received rate, decom's CPU per
//!   measurement; then decom's CPU while idle.
//! - `e2e`: one datagram at a time, UDP send → a Deno process subscribed with the library
//!   (`subscribe()`, blocking in `next()`) has the value; interleaved block by block with the
//!   native chain (`chain`: UDP receive → eventfd hop → eventfd hop → reader).
//! - `fanout`: the same datagram rate with no subscriber and with 64 subscribers (native
//!   processes, each following all 300 measurements of a 300-measurement config), alternating:
//!   decom's CPU per datagram in both, the broker's CPU per value copied to a subscriber.
//! - `rss`: resident memory of decom + broker + logger with that config and 64 subscribers,
//!   next to a bare Deno process's.

mod e2e;
mod fanout;
mod ingest;

use crate::cli::Args;
use crate::pipeline::{cpu_ns, GswOptions};
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use e2e::{run_e2e, E2eOptions, HELP_E2E};
pub use fanout::{run_fanout, run_rss, FanoutOptions, HELP_FANOUT, HELP_RSS};
pub use ingest::{run_ingest, IngestOptions, HELP_INGEST};

/// Options every pipeline benchmark takes (`GSW` in the usage texts).
pub const HELP_GSW: &str = "\
  GSW = [--deno PATH] [--root DIR] [--work-dir DIR]
  --deno PATH     the deno executable (default: deno on PATH)
  --root DIR      the gsw repository (main.ts, target/release/libgsw.so; default .)
  --work-dir DIR  where to make the pipeline's private directory (default: the system's
                  temporary directory); removed at the end";

pub(crate) fn gsw_options(a: &mut Args) -> Result<GswOptions, String> {
    let root: String = a.get("--root", ".".to_string())?;
    let root = std::fs::canonicalize(&root).map_err(|e| format!("--root {root}: {e}"))?;
    if !root.join("main.ts").exists() {
        return Err(format!("--root {}: no main.ts there", root.display()));
    }
    let lib = root.join("target/release/libgsw.so");
    if !lib.exists() {
        return Err(format!(
            "{} is missing: run `cargo build --release`",
            lib.display()
        ));
    }
    Ok(GswOptions {
        deno: a.get("--deno", "deno".to_string())?,
        root,
        work: a.opt::<String>("--work-dir")?.map(PathBuf::from),
    })
}

/// How long gsw's processes may take to start (Deno start-up, config, attach).
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(60);

/// CPU time (ns) of several processes, read together.
fn cpus(pids: &[libc::pid_t]) -> io::Result<Vec<u64>> {
    pids.iter().map(|&p| cpu_ns(p)).collect()
}

/// The line of `output` that holds the exit summary (contains `word`).
fn summary_line<'a>(output: &'a str, word: &str) -> Option<&'a str> {
    output.lines().rev().find(|l| l.contains(word))
}

pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
