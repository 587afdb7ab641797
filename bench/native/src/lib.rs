//! Native reference programs and the old-scheme baseline for gsw's benchmarks.
//!
//! The binary `gsw-bench-native` runs them (see `README.md` beside this crate); the modules
//! are public so that later benchmarks (gsw's channel through `gsw-ffi`) can reuse the same
//! clock, statistics, output format, process handling and baseline in the same run.
//!
//! - [`clock`]: `CLOCK_MONOTONIC` nanoseconds, deadlines.
//! - [`stats`]: percentiles (p50, p99, p99.9, max).
//! - [`report`]: the one-JSON-object-per-metric output and the human table.
//! - [`proc`]: pinning, a `fork()` helper whose children never outlive the run, a watchdog.
//! - [`shm`]: `memfd_create` + `mmap(MAP_SHARED)` regions.
//! - [`sys`]: process-shared futex and eventfd wrappers.
//! - [`payload`]: "touch the data": stamped, sequence-numbered, checked payloads.
//! - [`wake`]: blocked-reader wake latency for any mechanism, interleaved with references.
//! - [`baseline`]: the old scheme (readers/writer lock + futex on a counter).
//! - [`udp`]: `sendmmsg` sender and `recvmmsg` receiver with exact loss accounting.
//! - [`machine`]: where it ran.
//! - [`gsw_channel`]: gsw's own channel (`gsw-ffi`) as a wake mechanism, and the protocol floor.
//! - [`ffi`]: the C ABI Deno loads: a `number` clock, shared-memory and futex helpers.
//! - [`pipeline`]: real gsw pipelines (logger, decom, broker) on a private directory, CPU and
//!   memory from `/proc`.
//! - [`subscriber`]: a native gsw subscriber (broker socket, segment, waitset).
//! - [`cmd`]: the subcommands.

pub mod baseline;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod ffi;
pub mod gsw_channel;
pub mod machine;
pub mod payload;
pub mod pipeline;
pub mod proc;
pub mod report;
pub mod shm;
pub mod stats;
pub mod subscriber;
pub mod sys;
pub mod udp;
pub mod wake;
