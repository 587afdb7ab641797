#!/usr/bin/env bash
# The whole test suite, as the README and CI run it: builds the native library, runs the Rust
# tests (unit, cross-process stress, loom model checks) and the Deno tests, and ends with one
# plain line "N passed, N failed" counting the Deno tests. Exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=0
step() { echo; echo "== $*"; }

step "build (cargo build --release)"
cargo build --release --workspace || exit 1

step "Rust unit tests"
cargo test --release --workspace --lib --bins || failed=1

step "Rust cross-process stress tests (one at a time: they load both cores)"
cargo test --release -p gsw-ffi --test stress -- --test-threads=1 || failed=1

step "loom model checks of the channel protocol"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --release -p gsw-ffi --lib protocol || failed=1

step "Deno tests"
log=$(mktemp)
# Plain --allow-all: adding --ignore-env makes Deno stop granting /proc/<pid> reads, which
# the tests need to watch their child processes' CPU time and descriptors.
# A bound on the whole run (it takes ~6 minutes): a test that hangs fails the run, named by
# deno's "has been running for over" lines, instead of holding CI until its own limit.
timeout --kill-after=30 1200 deno test --allow-all tests/ 2>&1 | tee "$log"
deno_status=${PIPESTATUS[0]}
[ "$deno_status" -eq 124 ] && echo "deno test did not finish within 20 minutes: stopped"
# deno's summary line: "ok | 92 passed (3 steps) | 0 failed (12s)" (colours stripped).
summary=$(sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E '^(ok|FAILED) \| [0-9]+ passed' | tail -1)
rm -f "$log"
passed=$(echo "$summary" | sed -E 's/.* ([0-9]+) passed.*/\1/')
nfailed=$(echo "$summary" | sed -E 's/.*\| ([0-9]+) failed.*/\1/')
if [ -z "$summary" ]; then
  passed=0
  nfailed=1
  echo "could not find deno's test summary (did deno test crash?)"
fi
[ "$deno_status" -ne 0 ] && failed=1
echo
echo "${passed} passed, ${nfailed} failed"
exit $failed
