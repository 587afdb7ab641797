/**
 * Child: sends `count` datagrams of `size` bytes to 127.0.0.1:`port` with `Batch.send`
 * (sendmmsg, up to 1024 a call), flat out (`rate` 0) or paced at `rate` datagrams per
 * second. Datagram k holds k in its first 4 bytes, ~k in the next 4 and a pattern derived
 * from k after that; all are laid out before the clock starts, so flat out is the native
 * send rate.
 */
import { Batch, UdpSocket } from "../../ffi/mod.ts";
import { emit, options } from "./ffi_link.ts";
import { fillDatagram } from "./ffi_udp_pattern.ts";

const opts = options<{ port: number; count: number; size: number; rate: number }>();
const CHUNK = 1024;

using socket = UdpSocket.sender();
using batch = new Batch(CHUNK);
const all = new Uint8Array(opts.count * opts.size);
for (let k = 0; k < opts.count; k++) {
  fillDatagram(all.subarray(k * opts.size, (k + 1) * opts.size), k);
}
const lens = new Uint32Array(CHUNK).fill(opts.size);
let sent = 0;
let calls = 0;
let shortSends = 0;
const start = performance.now();
while (sent < opts.count) {
  const due = opts.rate > 0
    ? Math.min(opts.count, Math.floor((opts.rate * (performance.now() - start)) / 1000) + 64)
    : opts.count;
  while (sent < due) {
    const n = Math.min(CHUNK, due - sent);
    const took = batch.send(
      socket.fd,
      all.subarray(sent * opts.size, (sent + n) * opts.size),
      lens.subarray(0, n),
      "127.0.0.1",
      opts.port,
    );
    calls++;
    if (took < n) {
      shortSends++;
      // The kernel is out of buffer for this socket: let it drain, then resend the rest.
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    sent += took;
  }
  if (opts.rate > 0) await new Promise((resolve) => setTimeout(resolve, 1));
}
emit("done", { sent, calls, shortSends, elapsedMs: performance.now() - start });
