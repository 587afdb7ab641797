/**
 * Child: `count` one-channel segments, each with its own doorbell, served one message per
 * segment (message {index}) to the first connection. Then from stdin:
 *   ring <index> <seq>      publishes seq on segment index; answers {"event":"rang","rang":…}
 *   ring-all <seq>          publishes seq on every segment; answers {"event":"rang","rang":n}
 */
import { SegmentWriter } from "../../ffi/mod.ts";
import { acceptOne, emit, listen, options, sendMessage, stdinLines } from "./ffi_link.ts";

const opts = options<{ runDir: string; count: number }>();

using listener = listen(opts.runDir, "many.sock");
emit("listening", { path: listener.path });
using conn = acceptOne(listener);
const writers: SegmentWriter[] = [];
try {
  for (let i = 0; i < opts.count; i++) {
    const w = SegmentWriter.create([{ capacity: 8, id: i }]);
    writers.push(w);
    sendMessage(conn, { index: i }, w.fds());
    w.releaseFds();
  }
  emit("served");
  const value = new Float64Array(1);
  const bytes = new Uint8Array(value.buffer);
  for await (const line of stdinLines()) {
    const [cmd, a, b] = line.split(" ");
    if (cmd === "ring") {
      value[0] = Number(b);
      emit("rang", { rang: writers[Number(a)].publish(0, bytes, BigInt(b), 0n) ? 1 : 0 });
    } else if (cmd === "ring-all") {
      value[0] = Number(a);
      let rang = 0;
      for (const w of writers) rang += w.publish(0, bytes, BigInt(a), 0n) ? 1 : 0;
      emit("rang", { rang });
    } else {
      throw new Error(`unknown command ${line}`);
    }
  }
} finally {
  writers.forEach((w) => w.close());
}
