/**
 * Child: publishes flat out for `durationMs` into three channels (8, 256 and 4096 bytes)
 * once the reader says it is attached. Every 8-byte word of a value holds the sequence number
 * (low half) and the word's index and channel (high half), and the 256-byte channel's length
 * varies with the sequence number, so any torn or misplaced read shows. Ends by publishing
 * the last sequence number on a fourth channel.
 */
import { realtimeNs, SegmentWriter } from "../../ffi/mod.ts";
import { acceptOne, emit, listen, options, receiveMessage, sendSegment } from "./ffi_link.ts";
import { TORN_CAPACITIES, tornLength } from "./ffi_torn_pattern.ts";

const opts = options<{ runDir: string; durationMs: number }>();

using listener = listen(opts.runDir, "torn.sock");
emit("listening", { path: listener.path });
using conn = acceptOne(listener);
using writer = SegmentWriter.create(
  [...TORN_CAPACITIES, 8].map((capacity, id) => ({ capacity, id })),
);
sendSegment(conn, writer);
receiveMessage(conn); // the reader is attached

const payloads = TORN_CAPACITIES.map((cap, ch) => {
  const words = new Uint32Array(cap / 4);
  for (let i = 0; i < cap / 8; i++) words[2 * i + 1] = (ch << 24) | i;
  return words;
});
const bytes = payloads.map((w) => new Uint8Array(w.buffer));
let seq = 0;
const start = performance.now();
while (performance.now() - start < opts.durationMs) {
  for (let burst = 0; burst < 64; burst++) {
    seq++;
    const ts = realtimeNs();
    for (let ch = 0; ch < payloads.length; ch++) {
      const words = payloads[ch];
      const len = tornLength(ch, seq);
      for (let i = 0; i < len / 8; i++) words[2 * i] = seq;
      writer.publish(ch, bytes[ch].subarray(0, len), BigInt(seq), ts);
    }
  }
}
const elapsedMs = performance.now() - start;
const end = new Uint8Array(8);
new DataView(end.buffer).setFloat64(0, seq, true);
writer.publish(TORN_CAPACITIES.length, end, 1n, realtimeNs());
emit("done", { last: seq, ...writer.stats(), elapsedMs });
