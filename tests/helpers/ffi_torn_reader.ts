/**
 * Child: reads the torn-read writer's channels as fast as it can, alternating a
 * `takePending` sweep with direct `take`s of each channel, and blocking on the doorbell
 * when nothing is new. Checks every value it gets (see `ffi_torn_pattern.ts`), that sequence
 * numbers never go back, and that taken + skipped accounts for every publish.
 */
import { type Sample, UnixConnection } from "../../ffi/mod.ts";
import { emit, options, receiveSegment, sendMessage } from "./ffi_link.ts";
import { TORN_CAPACITIES, tornReason } from "./ffi_torn_pattern.ts";

const opts = options<{ path: string }>();
const END = TORN_CAPACITIES.length;

using conn = UnixConnection.connect(opts.path);
using reader = receiveSegment(conn);
sendMessage(conn, { attached: true });

const reads = TORN_CAPACITIES.map(() => 0);
const first = TORN_CAPACITIES.map(() => 0);
const last = TORN_CAPACITIES.map(() => 0);
const skippedSum = TORN_CAPACITIES.map(() => 0);
let torn = 0;
let backwards = 0;
let badSkipped = 0;
let firstProblem: string | null = null;
let end = -1;
let waits = 0;
let sweeps = 0;

function check(s: Sample): void {
  if (s.channel === END) {
    end = new DataView(s.bytes.buffer, s.bytes.byteOffset, 8).getFloat64(0, true);
    return;
  }
  const ch = s.channel;
  const why = tornReason(ch, s.seq, s.bytes);
  if (why) {
    torn++;
    firstProblem ??= `channel ${ch} seq ${s.seq}: ${why}`;
  }
  if (s.seq <= last[ch]) {
    backwards++;
    firstProblem ??= `channel ${ch}: seq ${s.seq} after ${last[ch]}`;
  }
  const expectSkipped = last[ch] === 0 ? 0 : s.seq - last[ch] - 1;
  if (s.skipped !== expectSkipped) {
    badSkipped++;
    firstProblem ??= `channel ${ch} seq ${s.seq}: skipped ${s.skipped}, expected ${expectSkipped}`;
  }
  if (first[ch] === 0) first[ch] = s.seq;
  reads[ch]++;
  skippedSum[ch] += s.skipped;
  last[ch] = s.seq;
}

const start = performance.now();
while (end < 0 || last.some((l) => l !== end)) {
  let n = 0;
  if (++sweeps % 2 === 0) {
    n = reader.takePending(check);
  } else {
    for (let ch = 0; ch <= END; ch++) {
      const s = reader.take(ch);
      if (s) {
        check(s);
        n++;
      }
    }
  }
  if (n > 0) continue;
  // Nothing new: the protocol's order is drain, re-check, then sleep.
  if (reader.takePending(check) > 0) continue;
  waits++;
  if (!reader.waitSync(5000)) throw new Error(`no value for 5 s; last seen ${last}, end ${end}`);
}
// Every publish was either taken or counted as skipped (those before the first take aside).
const unaccounted = TORN_CAPACITIES.map((_, ch) =>
  end - (first[ch] - 1) - reads[ch] - skippedSum[ch]
);
emit("done", {
  reads,
  torn,
  backwards,
  badSkipped,
  unaccounted,
  firstProblem,
  waits,
  elapsedMs: performance.now() - start,
});
