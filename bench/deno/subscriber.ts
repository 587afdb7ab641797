/**
 * The Deno subscriber of `gsw-bench-native e2e`, started by it with a control page inherited
 * (never run by hand): a library subscriber (`subscribe()` from `mod.ts`) in a dedicated
 * process, blocking synchronously in `next()` as the library recommends for one. For every
 * update it records when it had the value and which value it was (the datagram's sequence
 * number, decoded by the library from measurement `--measurement`), then wakes the sender,
 * which sleeps on that word (`FUTEX_WAKE`). Offsets match `bench/native/src/cmd/pipeline/e2e.rs`.
 *
 *   e2e --run-dir DIR --measurement KEY --ctl FD --ctl-len N [--via-broker]
 *
 * `--via-broker` reads through the broker's copy instead of decom's memory (`direct: false`).
 */
import { subscribe } from "../../mod.ts";
import { bench, ControlPage } from "../lib/native.ts";

// Control page: u32 word indices, f64 indices and byte offsets.
const STATE = 0;
const DONE = 64 / 4;
const DONE_BYTES = 64;
const T1 = 128 / 8;
const STATE_READY = 1;
/** Longest wait for one value: the native chain's blocks run in between. */
const WAIT_MS = 60_000;

function option(args: string[], name: string): string {
  const i = args.indexOf(`--${name}`);
  if (i < 0 || i + 1 >= args.length) {
    throw new Error(`missing --${name} (subscriber.ts is started by gsw-bench-native)`);
  }
  return args[i + 1];
}

function e2e(args: string[]): void {
  const runDir = option(args, "run-dir");
  const key = option(args, "measurement");
  using page = new ControlPage(Number(option(args, "ctl")), Number(option(args, "ctl-len")));
  const now = bench().gsw_bench_now_ns;
  const direct = !args.includes("--via-broker");
  using sub = subscribe([key], { runDir, client: "bench-e2e", direct });
  Atomics.store(page.u32, STATE, STATE_READY);
  let last = 0;
  for (;;) {
    const u = sub.next(WAIT_MS);
    if (u === undefined) throw new Error(`no update of ${key} within ${WAIT_MS} ms`);
    const value = u.raw;
    if (typeof value !== "number") throw new Error(`${key} decoded as ${typeof value}`);
    // A value from before (replayed on subscription) is not an update of this run.
    if (value <= last) continue;
    const t1 = now();
    // Values sent while the other subscriber's block runs may be skipped (latest-value
    // semantics: this one is not waited for then); a value never goes back.
    page.f64[T1] = t1;
    Atomics.store(page.u32, DONE, value);
    page.wake(DONE_BYTES);
    last = value;
  }
}

if (import.meta.main) {
  try {
    if (Deno.args[0] !== "e2e") throw new Error(`unknown mode ${Deno.args[0]}`);
    e2e(Deno.args);
  } catch (e) {
    console.error(`bench/deno/subscriber.ts: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
