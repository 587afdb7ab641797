/**
 * Child: the reading side of a ping/pong link. Takes each batch through `takePending`,
 * checks that exactly the batch's channels arrived, each with the next sequence number and
 * nothing skipped, acknowledges it, and blocks (sync or async) whenever nothing is pending.
 * A wait that times out with a batch incomplete is a lost wake-up and fails the child.
 */
import { SegmentWriter, UnixConnection, Waitset } from "../../ffi/mod.ts";
import { batchChannels, emit, options, receiveSegment, sendSegment } from "./ffi_link.ts";

const opts = options<{
  path: string;
  channels: number;
  batches: number;
  mode: "sync" | "async";
  pattern: "all" | "varied";
}>();
const WAIT_MS = 5000;

using conn = UnixConnection.connect(opts.path);
using input = receiveSegment(conn);
if (input.channels !== opts.channels) throw new Error(`${input.channels} channels`);
using acks = SegmentWriter.create([{ capacity: 8, id: 0 }]);
sendSegment(conn, acks);
using ws = new Waitset();
ws.add(input.doorbellFd, 7);

const seqs = new Array<number>(opts.channels).fill(0);
const ack = new Uint8Array(8);
let sleeps = 0;
let emptyWakes = 0;
let values = 0;
for (let b = 1; b <= opts.batches; b++) {
  const want = new Set(batchChannels(b, opts.channels, opts.pattern));
  let got = 0;
  let woke = false;
  while (got < want.size) {
    const n = input.takePending((s) => {
      const view = new DataView(s.bytes.buffer, s.bytes.byteOffset, s.bytes.byteLength);
      const fields = [view.getUint32(0, true), view.getUint32(4, true), view.getFloat64(8, true)];
      if (!want.has(s.channel)) throw new Error(`batch ${b}: channel ${s.channel} not in it`);
      if (s.seq !== seqs[s.channel] + 1 || s.skipped !== 0) {
        throw new Error(
          `batch ${b} channel ${s.channel}: seq ${s.seq} skipped ${s.skipped}, ` +
            `expected seq ${seqs[s.channel] + 1}`,
        );
      }
      if (fields[0] !== b || fields[1] !== s.channel || fields[2] !== s.seq) {
        throw new Error(`batch ${b} channel ${s.channel}: payload ${fields}`);
      }
      seqs[s.channel] = s.seq;
      got++;
    });
    values += n;
    if (n > 0) {
      woke = false;
      continue;
    }
    if (woke) emptyWakes++;
    sleeps++;
    woke = opts.mode === "sync" ? input.waitSync(WAIT_MS) : (await ws.wait(WAIT_MS)).length > 0;
    if (!woke) {
      throw new Error(
        `lost wake-up: batch ${b} has ${got}/${want.size} values after ${WAIT_MS} ms`,
      );
    }
  }
  ack.fill(0);
  new DataView(ack.buffer).setUint32(0, b, true);
  acks.publish(0, ack, BigInt(b), 0n);
}
emit("done", { sleeps, emptyWakes, values });
