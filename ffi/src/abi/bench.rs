//! Benchmark references: no-op symbols with the hot calls' parameter types. Conventions as in
//! the parent module.

use super::*;

// ---------------------------------------------------------------------------------------------
// Benchmark references: the hot symbols' parameter types, doing nothing. `deno task bench`
// compares each hot call against its no-op twin in the same library and the same run.

/// No-op with `gsw_writer_publish`'s parameters.
#[no_mangle]
pub extern "C" fn gsw_bench_noop_publish(
    _w: *const SegmentWriter,
    _channel: u32,
    _data: *const u8,
    _len: u32,
    _seq: u64,
    _timestamp_ns: u64,
) -> i32 {
    0
}

/// No-op with `gsw_reader_take`'s parameters.
#[no_mangle]
pub extern "C" fn gsw_bench_noop_take(
    _r: *const SegmentReader,
    _channel: u32,
    _out: *mut u8,
    _out_len: u32,
) -> i32 {
    0
}

/// No-op with `gsw_waitset_wait`'s parameters (bound `nonblocking` for the awaited reference).
#[no_mangle]
pub extern "C" fn gsw_bench_noop_wait(
    _ws: *const Waitset,
    _out: *mut u8,
    _out_len: u32,
    _timeout_ms: i32,
) -> i32 {
    0
}
