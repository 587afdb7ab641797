/**
 * The Deno reader of the cross-process benchmarks, started by `gsw-bench-native deno-wake`
 * and `gsw-bench-native idle` with a gsw segment's three descriptors and a control page
 * inherited (never run by hand). It reads through gsw's TypeScript wrappers (`ffi/mod.ts`),
 * follows the channel's sleep protocol (drain the doorbell and re-check before sleeping) and
 * checks every payload. Offsets on the control page match `bench/native/src/cmd/deno.rs`.
 *
 * Modes:
 *   wake --fds D,C,E --ctl FD --ctl-len N --plan S:count:rec,W:count:rec,… --size B
 *        S blocks wait in `SegmentReader.waitSync` and take with `SegmentReader.takeInto` (no
 *        allocation); A blocks wait the same way but take with the allocating
 *        `SegmentReader.take`; W blocks await `Waitset.wait()` on the blocking pool (the reader
 *        registered with `addReader`, as the library does) and take with `takeInto`, each
 *        sample preceded by an awaited no-op `nonblocking` FFI call (`libgsw.so`'s
 *        `gsw_bench_noop_wait`). Samples (f64 ns) go to the page in this order: S, A, W,
 *        no-op, then the time each S and W sample took to get back into JavaScript (before the
 *        take).
 *   idle-waitset | idle-sync --fds D,C,E --ctl FD --ctl-len N --slot I --size B
 *        block once (await `Waitset.wait(-1)` / `waitSync(-1)`) until the value 1 arrives.
 *   idle-timer --ctl FD --ctl-len N --slot I
 *        the reference: a Deno process with nothing but a pending timer.
 */
import {
  native,
  RECORD,
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
  kind: "S" | "A" | "W";
  count: number;
  record: boolean;
}

function parsePlan(text: string): Block[] {
  return text.split(",").filter((b) => b).map((b) => {
    const [kind, count, record] = b.split(":");
    if ((kind !== "S" && kind !== "A" && kind !== "W") || !(Number(count) >= 0)) {
      throw new Error(`bad plan block ${b}`);
    }
    return { kind: kind as Block["kind"], count: Number(count), record: record === "1" };
  });
}

/** A record for `takeInto`, reused for every value, and what a reader reads from it. */
class Record {
  readonly bytes: Uint8Array;
  readonly view: DataView;
  readonly payload: Uint8Array;

  constructor(readonly size: number) {
    this.bytes = new Uint8Array(RECORD.PAYLOAD + Math.ceil(size / 8) * 8);
    this.view = new DataView(this.bytes.buffer);
    this.payload = this.bytes.subarray(RECORD.PAYLOAD, RECORD.PAYLOAD + size);
  }

  /** Checks the record carries value `seq` intact; returns its one-way latency at `t1`. */
  latency(length: number, seq: number, t1: number): number {
    const v = this.view;
    const got = v.getUint32(RECORD.SEQ, true) + v.getUint32(RECORD.SEQ + 4, true) * 2 ** 32;
    const t0 = v.getUint32(RECORD.TIMESTAMP, true) +
      v.getUint32(RECORD.TIMESTAMP + 4, true) * 2 ** 32;
    if (got !== seq) throw new Error(`got value ${got}, expected ${seq}`);
    if (length !== this.size) throw new Error(`value of ${length} bytes, not ${this.size}`);
    if (check(this.payload, seq) !== t0) throw new Error("payload stamp != header timestamp");
    return t1 - t0;
  }
}

async function wake(args: Map<string, string>, page: ControlPage): Promise<void> {
  const size = Number(need(args, "size"));
  const plan = parsePlan(need(args, "plan"));
  const b = bench();
  const now = b.gsw_bench_now_ns;
  const noopWait = native().gsw_bench_noop_wait_async;
  using reader = SegmentReader.attach(fdsOf(args));
  using ws = new Waitset();
  ws.addReader(reader, 1);
  const noopOut = new Uint32Array(2 * 256);
  const recorded = (kind: string) =>
    plan.filter((p) => p.kind === kind && p.record).reduce((a, p) => a + p.count, 0);
  const sync = new Float64Array(recorded("S"));
  const alloc = new Float64Array(recorded("A"));
  const waitset = new Float64Array(recorded("W"));
  const noop = new Float64Array(recorded("W"));
  // Stamp -> the blocking call has returned to JavaScript (before the take): splits a
  // sample into "woken and back in JS" and "take through the wrapper".
  const syncReturn = new Float64Array(recorded("S"));
  const waitsetReturn = new Float64Array(recorded("W"));
  const rec = new Record(size);
  let nSync = 0;
  let nAlloc = 0;
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
      // Nothing may be pending before the announcement (this also clears the pending bits a
      // `takeInto` leaves behind, which would end the next waitset wait at once).
      if (drainAndTake(reader) !== null) throw new Error(`value ${k} arrived before announced`);
      let ns = 0;
      let returned = 0;
      if (blk.kind === "A") {
        // The allocating take: a Sample, a BigInt timestamp and a payload copy per value.
        Atomics.store(u32, READY, k);
        let s: Sample | null = null;
        while (s === null) {
          if (!reader.waitSync(WAIT_MS)) throw new Error(`no value ${k} within ${WAIT_MS} ms`);
          s = reader.take(0);
        }
        ns = latencyOf(s, k, size, now());
        if (blk.record) alloc[nAlloc++] = ns;
        continue;
      }
      let length = -1;
      if (blk.kind === "S") {
        Atomics.store(u32, READY, k);
        while (length < 0) {
          if (!reader.waitSync(WAIT_MS)) throw new Error(`no value ${k} within ${WAIT_MS} ms`);
          returned = now();
          length = reader.takeInto(0, rec.bytes);
        }
      } else {
        let announced = false;
        while (length < 0) {
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
          length = reader.takeInto(0, rec.bytes);
        }
      }
      const t1 = now();
      ns = rec.latency(length, k, t1);
      if (blk.record) {
        const back = returned - (t1 - ns);
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
  for (const part of [sync, alloc, waitset, noop, syncReturn, waitsetReturn]) {
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
  ws.addReader(reader, 1);
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
