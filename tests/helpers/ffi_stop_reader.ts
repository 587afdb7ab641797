/**
 * Child: attaches to a segment and reports every value it takes ({"event":"took",…}); says
 * {"event":"waiting"} each time it is about to block on the doorbell. Exits once it has
 * taken sequence number `until`.
 */
import { UnixConnection } from "../../ffi/mod.ts";
import { emit, options, receiveSegment } from "./ffi_link.ts";

const opts = options<{ path: string; until: number }>();

using conn = UnixConnection.connect(opts.path);
using reader = receiveSegment(conn);
let done = false;
while (!done) {
  const n = reader.takePending((s) => {
    const words = new Float64Array(s.bytes.slice().buffer);
    const intact = words.every((w) => w === s.seq);
    emit("took", { channel: s.channel, seq: s.seq, skipped: s.skipped, intact });
    done ||= s.seq === opts.until;
  });
  if (n > 0 || done) continue;
  emit("waiting");
  if (!reader.waitSync(30_000)) throw new Error("no value for 30 s");
}
