/**
 * Child: the writing side of a ping/pong link. Publishes batch after batch into a segment
 * of `channels` channels, rings once per batch, and blocks (sync or async) until the pong
 * side acknowledges the batch on its own one-channel segment. Any wait that times out is a
 * lost wake-up and fails the child.
 */
import { monotonicNs, SegmentWriter, Waitset } from "../../ffi/mod.ts";
import {
  acceptOne,
  batchChannels,
  emit,
  listen,
  options,
  receiveSegment,
  sendSegment,
} from "./ffi_link.ts";

const opts = options<{
  runDir: string;
  channels: number;
  batches: number;
  mode: "sync" | "async";
  pattern: "all" | "varied";
  /** Spin this long before each batch, so the pong side is asleep when it is published. */
  pauseUs?: number;
}>();
const WAIT_MS = 5000;

using listener = listen(opts.runDir, "ping.sock");
emit("listening", { path: listener.path });
using conn = acceptOne(listener);
using out = SegmentWriter.create(
  Array.from({ length: opts.channels }, (_, i) => ({ capacity: 16, id: 1000 + i })),
);
sendSegment(conn, out);
using acks = receiveSegment(conn);
using ws = new Waitset();
ws.add(acks.doorbellFd, 1);

const seqs = new Array<number>(opts.channels).fill(0);
const payload = new Uint8Array(16);
const view = new DataView(payload.buffer);
let ringsReported = 0;
let sleeps = 0;
let acked = 0;
const start = performance.now();
for (let b = 1; b <= opts.batches; b++) {
  if (opts.pauseUs) {
    const until = monotonicNs() + BigInt(opts.pauseUs * 1000);
    while (monotonicNs() < until) { /* spin: a sleep would be far longer */ }
  }
  for (const ch of batchChannels(b, opts.channels, opts.pattern)) {
    seqs[ch]++;
    view.setUint32(0, b, true);
    view.setUint32(4, ch, true);
    view.setFloat64(8, seqs[ch], true);
    out.publishQuiet(ch, payload, BigInt(seqs[ch]), BigInt(b));
  }
  if (out.ring()) ringsReported++;
  while (acked < b) {
    const n = acks.takePending((s) => acked = s.seq);
    if (n > 0) continue;
    sleeps++;
    const woke = opts.mode === "sync"
      ? acks.waitSync(WAIT_MS)
      : (await ws.wait(WAIT_MS)).length > 0;
    if (!woke) throw new Error(`lost wake-up: no acknowledgement of batch ${b} in ${WAIT_MS} ms`);
  }
  if (acked !== b) throw new Error(`acknowledgement ${acked} for batch ${b}`);
}
const elapsedMs = performance.now() - start;
const stats = out.stats();
emit("done", { ...stats, ringsReported, sleeps, elapsedMs });
