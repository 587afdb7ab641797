/**
 * What gsw's TypeScript wrappers cost per call, against Deno's own floor: a no-op native
 * function with the same parameter types in the same library (`libgsw.so`'s
 * `gsw_bench_noop_*`), called in the same process, interleaved (A, B, C, … A, B, C, …). Prints
 * one JSON line per metric (bench "deno-ffi") on stdout.
 *
 *   publish_deno_ns        SegmentWriter.publishQuiet   vs gsw_bench_noop_publish
 *   publish_ring_deno_ns   SegmentWriter.publish (no reader waiting: never rings)
 *   read_deno_ns           SegmentReader.takeInto (no allocation) with a fresh value on every
 *                          channel   vs gsw_bench_noop_take
 *   read_deno_empty_ns     SegmentReader.takeInto with nothing new
 *   read_deno_alloc_ns     SegmentReader.take (allocates a Sample and a payload copy)
 *   *_raw_ns               the same gsw symbol called directly (no wrapper), to split the
 *                          wrapper's cost from the native work
 *
 * A call is too short to time alone, so each sample is a batch of one call per channel of a
 * 64-channel segment between two clock reads; the figures are ns per call, after subtracting
 * the median cost of the two clock reads (measured interleaved, `deno_clock_pair_ns`).
 * Every value published is taken back and checked; every value taken is checked.
 *
 *   deno run --allow-ffi bench/deno/ffi.ts [--batches N] [--rounds N] [--size BYTES]
 */
import { native, RECORD, SegmentReader, SegmentWriter } from "../../ffi/mod.ts";
import { bench } from "../lib/native.ts";
import { check, fill } from "../lib/payload.ts";
import { jsonLine, type Metric, metric } from "../lib/report.ts";
import { summarize, type Summary } from "../lib/stats.ts";

const BENCH = "deno-ffi";
const CHANNELS = 64;

function option(name: string, fallback: number): number {
  const i = Deno.args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(Deno.args[i + 1]);
  if (!Number.isInteger(v) || v <= 0) throw new Error(`--${name} needs a positive integer`);
  return v;
}

const batches = option("batches", 100_000);
const rounds = option("rounds", 10);
const size = option("size", 64);

const b = bench();
const g = native();
const now = b.gsw_bench_now_ns;
const noopPublish = g.gsw_bench_noop_publish;
const noopTake = g.gsw_bench_noop_take;
const rawPublishQuiet = g.gsw_writer_publish_quiet;
const rawTake = g.gsw_reader_take;

using writer = SegmentWriter.create(
  Array.from({ length: CHANNELS }, (_, i) => ({ capacity: size, id: i })),
);
// The reader attaches to duplicates, as a reader in another process would receive them.
const [d, c, e] = writer.fds().map((fd) => {
  const dup = b.gsw_bench_dup(fd);
  if (dup < 0) throw new Error(`dup failed: ${dup}`);
  return dup;
});
writer.releaseFds();
using reader = SegmentReader.attach([d, c, e]);
const wh = writer.handle;
const rh = reader.handle;

// One payload per channel; refilled with new sequence numbers for every block.
const payloads = Array.from({ length: CHANNELS }, () => new Uint8Array(size));
const payloadSeq = new Array<number>(CHANNELS).fill(0);
const seqs = new Array<bigint>(CHANNELS).fill(0n);
const record = new Uint8Array(32 + Math.ceil(size / 8) * 8);
const recordView = new DataView(record.buffer);
let nextSeq = 0;

function refill(): void {
  for (let ch = 0; ch < CHANNELS; ch++) {
    payloadSeq[ch] = ++nextSeq;
    fill(payloads[ch], nextSeq, nextSeq);
    seqs[ch] = BigInt(nextSeq);
  }
}

/** New header sequence numbers for the same payloads (a fresh value per channel). */
function renumber(): void {
  for (let ch = 0; ch < CHANNELS; ch++) seqs[ch] = BigInt(++nextSeq);
}

function publishAllUntimed(): void {
  for (let ch = 0; ch < CHANNELS; ch++) {
    const r = rawPublishQuiet(wh, ch, payloads[ch], size, seqs[ch], seqs[ch]);
    if (r < 0) throw new Error(`publish failed: ${r}`);
  }
}

/** Takes every channel back and checks it carries the last value published. */
function verifyAll(what: string): void {
  for (let ch = 0; ch < CHANNELS; ch++) {
    const s = reader.take(ch);
    if (s === null) throw new Error(`${what}: channel ${ch} has no new value`);
    if (BigInt(s.seq) !== seqs[ch]) throw new Error(`${what}: channel ${ch} seq ${s.seq}`);
    check(s.bytes, payloadSeq[ch]);
  }
}

// ---- the timed loops: one function each, so every call site stays monomorphic ----

function timeClockPair(): number {
  const t0 = now();
  return now() - t0;
}

// Every loop consumes its calls' results, as the wrappers do (`check(ret)`): V8's optimizing
// tier has been seen to leave an FFI call whose result is unused on the slow path (~10x).
function timeNoopPublish(): number {
  let bad = 0;
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) {
    bad |= noopPublish(wh, ch, payloads[ch], size, seqs[ch], seqs[ch]);
  }
  const t = now() - t0;
  if (bad !== 0) throw new Error("no-op publish returned non-zero");
  return t;
}

function timePublishQuiet(): number {
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) {
    writer.publishQuiet(ch, payloads[ch], seqs[ch], seqs[ch]);
  }
  return now() - t0;
}

function timePublish(): number {
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) {
    writer.publish(ch, payloads[ch], seqs[ch], seqs[ch]);
  }
  return now() - t0;
}

function timeRawPublish(): number {
  let bad = 0;
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) {
    bad |= rawPublishQuiet(wh, ch, payloads[ch], size, seqs[ch], seqs[ch]);
  }
  const t = now() - t0;
  if (bad < 0) throw new Error("raw publish failed");
  return t;
}

function timeNoopTake(): number {
  let got = 0;
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) got |= noopTake(rh, ch, record, record.byteLength);
  const t = now() - t0;
  if (got !== 0) throw new Error("no-op take returned non-zero");
  return t;
}

/** One reused record per channel, as a caller of `takeInto` keeps them. */
const records = Array.from({ length: CHANNELS }, () => new Uint8Array(record.byteLength));
const recordViews = records.map((r) => new DataView(r.buffer));
const recordPayloads = records.map((r) => r.subarray(RECORD.PAYLOAD, RECORD.PAYLOAD + size));
const lengths = new Int32Array(CHANNELS);

function timeTakeInto(): number {
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) lengths[ch] = reader.takeInto(ch, records[ch]);
  return now() - t0;
}

function timeTakeIntoEmpty(): number {
  let found = 0;
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) if (reader.takeInto(ch, records[ch]) >= 0) found++;
  const t = now() - t0;
  if (found !== 0) throw new Error("takeInto found a value nobody published");
  return t;
}

const taken: (ReturnType<SegmentReader["take"]>)[] = new Array(CHANNELS).fill(null);

function timeTake(): number {
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) taken[ch] = reader.take(ch);
  return now() - t0;
}

function timeRawTake(): number {
  let got = 0;
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) got += rawTake(rh, ch, record, record.byteLength);
  const t = now() - t0;
  if (got !== CHANNELS) throw new Error(`raw take found ${got} of ${CHANNELS} values`);
  return t;
}

function timeRawTakeEmpty(): number {
  let got = 0;
  const t0 = now();
  for (let ch = 0; ch < CHANNELS; ch++) got += rawTake(rh, ch, record, record.byteLength);
  const t = now() - t0;
  if (got !== 0) throw new Error(`raw take found ${got} values nobody published`);
  return t;
}

/** Every channel's record holds the value just published, whole. */
function checkRecords(): void {
  for (let ch = 0; ch < CHANNELS; ch++) {
    const v = recordViews[ch];
    const seq = v.getUint32(RECORD.SEQ, true) + v.getUint32(RECORD.SEQ + 4, true) * 2 ** 32;
    if (lengths[ch] !== size || BigInt(seq) !== seqs[ch]) {
      throw new Error(`takeInto: channel ${ch} did not return the value just published`);
    }
    check(recordPayloads[ch], payloadSeq[ch]);
  }
}

function checkTaken(): void {
  for (let ch = 0; ch < CHANNELS; ch++) {
    const s = taken[ch];
    if (s === null || BigInt(s.seq) !== seqs[ch]) {
      throw new Error(`take: channel ${ch} did not return the value just published`);
    }
    check(s.bytes, payloadSeq[ch]);
    taken[ch] = null;
  }
}

/** The last raw take (channel CHANNELS-1) wrote its record into `record`: check it. */
function checkRawRecord(): void {
  const seq = recordView.getBigUint64(0, true);
  const len = recordView.getUint32(24, true);
  if (seq !== seqs[CHANNELS - 1] || len !== size) throw new Error("raw take: wrong record");
  check(record.subarray(32, 32 + len), payloadSeq[CHANNELS - 1]);
}

interface Op {
  name: string;
  /** Runs `count` batches; pushes each batch's ns into `out` when recording. */
  block(count: number, out: number[] | null): void;
  samples: number[];
}

function op(name: string, block: (count: number, out: number[] | null) => void): Op {
  return { name, block, samples: [] };
}

const ops: Op[] = [
  op("clock_pair", (n, out) => {
    for (let i = 0; i < n; i++) {
      const t = timeClockPair();
      out?.push(t);
    }
  }),
  op("noop_publish", (n, out) => {
    refill();
    for (let i = 0; i < n; i++) {
      const t = timeNoopPublish();
      out?.push(t);
    }
  }),
  op("publish_quiet", (n, out) => {
    refill();
    publishAllUntimed();
    for (let i = 0; i < n; i++) {
      const t = timePublishQuiet();
      out?.push(t);
    }
    verifyAll("publishQuiet");
  }),
  op("publish", (n, out) => {
    refill();
    publishAllUntimed(); // every channel FRESH: no publish below rings
    for (let i = 0; i < n; i++) {
      const t = timePublish();
      out?.push(t);
    }
    verifyAll("publish");
    reader.takePending(() => {}); // drain the doorbell rung by the priming batch
  }),
  op("raw_publish", (n, out) => {
    refill();
    for (let i = 0; i < n; i++) {
      const t = timeRawPublish();
      out?.push(t);
    }
    verifyAll("raw publish");
  }),
  op("noop_take", (n, out) => {
    for (let i = 0; i < n; i++) {
      const t = timeNoopTake();
      out?.push(t);
    }
  }),
  op("take_into", (n, out) => {
    refill();
    for (let i = 0; i < n; i++) {
      renumber();
      publishAllUntimed();
      const t = timeTakeInto();
      out?.push(t);
      checkRecords();
    }
  }),
  op("take_into_empty", (n, out) => {
    for (let i = 0; i < n; i++) {
      const t = timeTakeIntoEmpty();
      out?.push(t);
    }
  }),
  op("take", (n, out) => {
    refill();
    for (let i = 0; i < n; i++) {
      renumber();
      publishAllUntimed();
      const t = timeTake();
      out?.push(t);
      checkTaken();
    }
  }),
  op("raw_take", (n, out) => {
    refill();
    for (let i = 0; i < n; i++) {
      renumber();
      publishAllUntimed();
      const t = timeRawTake();
      out?.push(t);
      checkRawRecord();
    }
  }),
  op("raw_take_empty", (n, out) => {
    for (let i = 0; i < n; i++) {
      const t = timeRawTakeEmpty();
      out?.push(t);
    }
  }),
];

// Warm-up, interleaved like the measurement: V8 needs several hundred thousand calls of a loop
// before it settles on its optimized code (earlier samples mix in interpreted and
// baseline-compiled calls several times slower), whatever --batches says.
for (let w = 0; w < 8; w++) for (const o of ops) o.block(1000, null);
for (let r = 0; r < rounds; r++) {
  const count = Math.floor(batches / rounds) + (r < batches % rounds ? 1 : 0);
  for (const o of ops) o.block(count, o.samples);
}

const sum = new Map<string, Summary>(ops.map((o) => [o.name, summarize(o.samples)]));
const clock = sum.get("clock_pair")!.p50;
const out: Metric[] = [];

/** Per-call figures from per-batch times, less the clock pair's median. */
function perCall(prefix: string, name: string, refName: string | null): void {
  const s = sum.get(name)!;
  const r = refName ? sum.get(refName)! : null;
  const per = (v: number) => Math.round(Math.max(v - clock, 0) / CHANNELS * 100) / 100;
  const rows: [string, (x: Summary) => number][] = [
    ["", (x) => x.p50],
    ["_p99", (x) => x.p99],
    ["_p999", (x) => x.p999],
    ["_max", (x) => x.max],
    ["_mean", (x) => x.mean],
  ];
  for (const [suffix, get] of rows) {
    out.push(metric(BENCH, `${prefix}${suffix}_ns`, per(get(s)), "ns", r ? per(get(r)) : null));
  }
  out.push(metric(BENCH, `${prefix}_batches`, s.count, "count"));
}

perCall("publish_deno", "publish_quiet", "noop_publish");
perCall("publish_ring_deno", "publish", "noop_publish");
perCall("publish_deno_raw", "raw_publish", "noop_publish");
perCall("noop_publish", "noop_publish", null);
perCall("read_deno", "take_into", "noop_take");
perCall("read_deno_raw", "raw_take", "noop_take");
perCall("read_deno_alloc", "take", "noop_take");
perCall("read_deno_empty", "take_into_empty", "noop_take");
perCall("read_deno_empty_raw", "raw_take_empty", "noop_take");
perCall("noop_take", "noop_take", null);
const ratio = (a: string, r: string) => {
  const x = sum.get(a)!.p50 - clock;
  const y = sum.get(r)!.p50 - clock;
  return y > 0 ? x / y : null;
};
out.push(
  metric(BENCH, "publish_deno_overhead_ratio", ratio("publish_quiet", "noop_publish"), "ratio"),
  metric(BENCH, "publish_ring_deno_overhead_ratio", ratio("publish", "noop_publish"), "ratio"),
  metric(BENCH, "read_deno_overhead_ratio", ratio("take_into", "noop_take"), "ratio"),
  metric(BENCH, "read_deno_alloc_overhead_ratio", ratio("take", "noop_take"), "ratio"),
  metric(BENCH, "read_deno_empty_overhead_ratio", ratio("take_into_empty", "noop_take"), "ratio"),
  metric(BENCH, "deno_clock_pair_ns", clock, "ns"),
  metric(BENCH, "ffi_batch_calls", CHANNELS, "count"),
  metric(BENCH, "payload_bytes", size, "bytes"),
);
for (const m of out) console.log(jsonLine(m));
