/**
 * Child: a segment writer driven line by line from stdin, for tests that need to control
 * exactly when values are published. Serves its segment to the first connection, then:
 *   publish <channel> <seq>            one value; answers {"event":"published","rang":…}
 *   burst <channel> <from> <count>     count values, seq from..; answers rings and time
 *   stats                              answers {"event":"stats", publishes, rings}
 *   quit
 * Every 8-byte word of a value holds its sequence number (as a float64).
 */
import { SegmentWriter } from "../../ffi/mod.ts";
import { acceptOne, emit, listen, options, sendSegment, stdinLines } from "./ffi_link.ts";

const opts = options<{ runDir: string; capacities: number[] }>();

using listener = listen(opts.runDir, "cmd.sock");
emit("listening", { path: listener.path });
using conn = acceptOne(listener);
using writer = SegmentWriter.create(opts.capacities.map((capacity, id) => ({ capacity, id })));
sendSegment(conn, writer);
emit("served");

const values = opts.capacities.map((cap) => new Float64Array(cap / 8));
const bytes = values.map((v) => new Uint8Array(v.buffer));

function publish(ch: number, seq: number): boolean {
  values[ch].fill(seq);
  return writer.publish(ch, bytes[ch], BigInt(seq), BigInt(Date.now()) * 1_000_000n);
}

for await (const line of stdinLines()) {
  const [cmd, ...args] = line.split(" ");
  const [a, b, c] = args.map(Number);
  if (cmd === "publish") {
    emit("published", { rang: publish(a, b) });
  } else if (cmd === "burst") {
    const before = writer.stats().rings;
    const start = performance.now();
    for (let i = 0; i < c; i++) publish(a, b + i);
    emit("burst", { rings: writer.stats().rings - before, elapsedMs: performance.now() - start });
  } else if (cmd === "stats") {
    emit("stats", writer.stats());
  } else if (cmd === "quit") {
    break;
  } else {
    throw new Error(`unknown command ${line}`);
  }
}
