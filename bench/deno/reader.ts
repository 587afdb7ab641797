/**
 * The Deno reader of the cross-process benchmarks, started by `gsw-bench-native deno-wake`
 * and `gsw-bench-native idle` with a gsw segment's three descriptors and a control page
 * inherited (never run by hand). It reads through gsw's TypeScript wrappers (`ffi/mod.ts`),
 * follows the channel's sleep protocol (drain the doorbell and re-check before sleeping) and
 * checks every payload. Offsets on the control page match `bench/native/src/cmd/deno.rs`.
 *
 * Modes:
 *   wake --fds D,C,E --ctl FD --ctl-len N --plan S:count:rec,W:count:rec,… --size B
 *        S blocks wait in `SegmentReader.waitSync` and take with `SegmentReader.take`; L blocks
 *        wait the same way but take with the raw `gsw_reader_take` symbol into a reused record
 *        (no allocation); W blocks await `Waitset.wait()` on the blocking pool, each sample
 *        preceded by an awaited no-op `nonblocking` FFI call. Samples (f64 ns) go to the page
 *        in this order: S, L, W, no-op, then the time each S and W sample took to get back
 *        into JavaScript (before the take).
 *   idle-waitset | idle-sync --fds D,C,E --ctl FD --ctl-len N --slot I --size B
 *        block once (await `Waitset.wait(-1)` / `waitSync(-1)`) until the value 1 arrives.
 *   idle-timer --ctl FD --ctl-len N --slot I
 *        the reference: a Deno process with nothing but a pending timer.
 */
import {
  native,
  READABLE,
  type Sample,
  type SegmentFds,
  SegmentReader,
  Waitset,
} from "../../ffi/mod.ts";
import { bench, ControlPage } from "../lib/native.ts";
import { check } from "../lib/payload.ts";

// Control page (u32 word indices / f64 indices), as in deno.rs.
const STATE = 0;
const READY = 64 / 4;
const SAMPLES = 4096 / 8;
const STATE_READY = 1;
const STATE_DONE = 2;
const STATE_FAILED = 3;
/** Longest a reader waits for one value: the other process's blocks run in between. */
const WAIT_MS = 30_000;

function parseArgs(argv: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 1; i < argv.length; i += 2) {
    if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
      throw new Error(`bad argument ${argv[i]} (reader.ts is started by gsw-bench-native)`);
    }
    m.set(argv[i].slice(2), argv[i + 1]);
  }
  return m;
}

function need(args: Map<string, string>, name: string): string {
  const v = args.get(name);
  if (v === undefined) throw new Error(`missing --${name}`);
  return v;
}

function fdsOf(args: Map<string, string>): SegmentFds {
  const f = need(args, "fds").split(",").map(Number);
  if (f.length !== 3 || f.some((x) => !Number.isInteger(x) || x < 0)) {
    throw new Error(`--fds needs three descriptors, got ${args.get("fds")}`);
  }
  return [f[0], f[1], f[2]];
}

/** Drains the doorbell and takes what is pending on channel 0 (a copy), or null. */
function drainAndTake(reader: SegmentReader): Sample | null {
  let got: Sample | null = null;
  reader.takePending((s) => {
    if (s.channel === 0) got = { ...s, bytes: s.bytes.slice() };
  });
  return got;
}

/** Checks a sample carries value `seq` intact; returns its one-way latency at `t1`. */
function latencyOf(s: Sample, seq: number, size: number, t1: number): number {
  if (s.seq !== seq) throw new Error(`got value ${s.seq}, expected ${seq}`);
  if (s.bytes.length !== size) throw new Error(`value of ${s.bytes.length} bytes, not ${size}`);
  const stamp = check(s.bytes, seq);
  const t0 = Number(s.timestampNs);
  if (stamp !== t0) throw new Error(`payload stamp ${stamp} != header timestamp ${t0}`);
  return t1 - t0;
}

interface Block {
  kind: "S" | "L" | "W";
  count: number;
  record: boolean;
}

function parsePlan(text: string): Block[] {
  return text.split(",").filter((b) => b).map((b) => {
    const [kind, count, record] = b.split(":");
    if ((kind !== "S" && kind !== "L" && kind !== "W") || !(Number(count) >= 0)) {
      throw new Error(`bad plan block ${b}`);
    }
    return { kind: kind as Block["kind"], count: Number(count), record: record === "1" };
  });
}

async function wake(args: Map<string, string>, page: ControlPage): Promise<void> {
  const size = Number(need(args, "size"));
  const plan = parsePlan(need(args, "plan"));
  const b = bench();
  const now = b.gsw_bench_now_ns;
  const noopWait = b.gsw_bench_noop_wait_async;
  using reader = SegmentReader.attach(fdsOf(args));
  using ws = new Waitset();
  ws.add(reader.doorbellFd, 1, READABLE);
  const noopOut = new Uint32Array(2 * 256);
  const recorded = (kind: string) =>
    plan.filter((p) => p.kind === kind && p.record).reduce((a, p) => a + p.count, 0);
  const sync = new Float64Array(recorded("S"));
  const lean = new Float64Array(recorded("L"));
  let nLean = 0;
  // The lean take: the raw symbol writes the record into a reused buffer; nothing allocated.
  const rawTake = native().gsw_reader_take;
  const rh = reader.handle;
  const record = new Uint8Array(32 + Math.ceil(size / 8) * 8);
  const recordView = new DataView(record.buffer);
  const recordPayload = record.subarray(32, 32 + size);
  const waitset = new Float64Array(recorded("W"));
  const noop = new Float64Array(recorded("W"));
  // Stamp -> the blocking call has returned to JavaScript (before the take): splits a
  // sample into "woken and back in JS" and "take through the wrapper".
  const syncReturn = new Float64Array(recorded("S"));
  const waitsetReturn = new Float64Array(recorded("W"));
  let nSync = 0;
  let nWs = 0;
  const u32 = page.u32;
  let k = 0;
  Atomics.store(u32, STATE, STATE_READY);
  for (const blk of plan) {
    for (let i = 0; i < blk.count; i++) {
      k++;
      let noopNs = 0;
      if (blk.kind === "W") {
        // Deno's floor for waking JavaScript, interleaved sample by sample with the waitset.
        const t0 = now();
        await noopWait(ws.handle, noopOut, noopOut.byteLength, 0);
        noopNs = now() - t0;
      }
      // The sleep protocol: drain the doorbell and re-check before announcing (and sleeping).
      if (drainAndTake(reader) !== null) throw new Error(`value ${k} arrived before announced`);
      let s: Sample | null = null;
      let returned = 0;
      if (blk.kind === "L") {
        Atomics.store(u32, READY, k);
        let r = 0;
        while (r === 0) {
          if (!reader.waitSync(WAIT_MS)) throw new Error(`no value ${k} within ${WAIT_MS} ms`);
          r = rawTake(rh, 0, record, record.byteLength);
          if (r < 0) throw new Error(`take failed (${r})`);
          if (r === 0) reader.takePending(() => {}); // spurious: drain, sleep again
        }
        const t1 = now();
        const seq = recordView.getUint32(0, true) + recordView.getUint32(4, true) * 2 ** 32;
        const t0 = recordView.getUint32(8, true) + recordView.getUint32(12, true) * 2 ** 32;
        if (seq !== k || recordView.getUint32(24, true) !== size) {
          throw new Error(`lean take: got value ${seq}, expected ${k}`);
        }
        if (check(recordPayload, k) !== t0) throw new Error("lean take: stamp mismatch");
        if (blk.record) lean[nLean++] = t1 - t0;
        continue;
      }
      if (blk.kind === "S") {
        Atomics.store(u32, READY, k);
        while (s === null) {
          if (!reader.waitSync(WAIT_MS)) throw new Error(`no value ${k} within ${WAIT_MS} ms`);
          returned = now();
          s = reader.take(0) ?? drainAndTake(reader);
        }
      } else {
        let announced = false;
        while (s === null) {
          // Dispatch the wait first, so the pool thread is in epoll_wait when the writer,
          // which waits for the announcement and then `--gap-us`, publishes.
          const pending = ws.wait(WAIT_MS);
          if (!announced) {
            Atomics.store(u32, READY, k);
            announced = true;
          }
          const ready = await pending;
          returned = now();
          if (ready.length === 0) throw new Error(`no value ${k} within ${WAIT_MS} ms`);
          s = reader.take(0) ?? drainAndTake(reader);
        }
      }
      const t1 = now();
      const ns = latencyOf(s, k, size, t1);
      const back = returned - Number(s.timestampNs);
      if (blk.record) {
        if (blk.kind === "S") {
          syncReturn[nSync] = back;
          sync[nSync++] = ns;
        } else {
          waitsetReturn[nWs] = back;
          waitset[nWs] = ns;
          noop[nWs++] = noopNs;
        }
      }
    }
  }
  let at = SAMPLES;
  for (const part of [sync, lean, waitset, noop, syncReturn, waitsetReturn]) {
    page.f64.set(part, at);
    at += part.length;
  }
  Atomics.store(u32, STATE, STATE_DONE);
}

async function idle(mode: string, args: Map<string, string>, page: ControlPage): Promise<void> {
  const state = Number(need(args, "slot")) * 16;
  if (mode === "idle-timer") {
    Atomics.store(page.u32, state, STATE_READY);
    // Killed by the parent when the measurement ends.
    await new Promise((resolve) => setTimeout(resolve, 3_600_000));
    return;
  }
  const size = Number(need(args, "size"));
  using reader = SegmentReader.attach(fdsOf(args));
  using ws = new Waitset();
  ws.add(reader.doorbellFd, 1, READABLE);
  let s = drainAndTake(reader);
  if (s !== null) throw new Error("a value arrived before the reader blocked");
  if (mode === "idle-waitset") {
    const pending = ws.wait(-1);
    Atomics.store(page.u32, state, STATE_READY);
    while (s === null) {
      await pending;
      s = reader.take(0) ?? drainAndTake(reader);
      if (s === null) throw new Error("woke without a value");
    }
  } else {
    Atomics.store(page.u32, state, STATE_READY);
    while (s === null) {
      reader.waitSync(-1);
      s = reader.take(0) ?? drainAndTake(reader);
    }
  }
  latencyOf(s, 1, size, 0);
  Atomics.store(page.u32, state, STATE_DONE);
}

async function main(): Promise<void> {
  const mode = Deno.args[0];
  const args = parseArgs(Deno.args);
  const page = new ControlPage(Number(need(args, "ctl")), Number(need(args, "ctl-len")));
  try {
    if (mode === "wake") await wake(args, page);
    else if (mode?.startsWith("idle-")) await idle(mode, args, page);
    else throw new Error(`unknown mode ${mode}`);
  } catch (e) {
    if (!args.has("slot")) Atomics.store(page.u32, STATE, STATE_FAILED);
    throw e;
  }
}

if (import.meta.main) {
  try {
    await main();
    Deno.exit(0);
  } catch (e) {
    console.error(`bench/deno/reader.ts: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
