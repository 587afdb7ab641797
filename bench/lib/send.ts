/** Sending datagrams to gsw's decom at a fixed rate, as the pipeline benchmarks do. */
import { Batch, UdpSocket } from "../../ffi/mod.ts";
import { sleep } from "../../tests/helpers/pipeline.ts";

/** Datagrams laid out back to back (lengths in `lens`), each to its port on 127.0.0.1. */
export interface Datagrams {
  buf: Uint8Array;
  lens: Uint32Array;
  ports: Uint16Array;
}

/**
 * Sends `batch` (all its datagrams, in turn) again and again at `rate` datagrams/s for
 * `seconds`, with `sendmmsg`, waiting for room when the socket buffer is full; returns how many
 * the kernel took (a whole number of batches). `before(k)`, if given, is called right before
 * the k-th sending of the batch (from 0), to rewrite its bytes (a sequence number, a send time).
 */
export async function sendPaced(
  batch: Datagrams,
  rate: number,
  seconds: number,
  before?: (k: number) => void,
): Promise<number> {
  const { buf, lens, ports } = batch;
  const chunk = lens.length;
  const fd = UdpSocket.sender();
  const b = new Batch(chunk);
  let sent = 0;
  const total = Math.round(rate * seconds / chunk) * chunk;
  const t0 = performance.now();
  try {
    while (sent < total) {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - t0) / 1000 * rate));
      if (sent + chunk > due) {
        // Until the next batch is due (at least 1 ms): no polling at low rates.
        await sleep(Math.max(1, Math.ceil(t0 + (sent + chunk) * 1000 / rate - now)));
        continue;
      }
      before?.(sent / chunk);
      let off = 0;
      let done = 0;
      while (done < chunk) {
        const n = b.send(
          fd.fd,
          buf.subarray(off),
          lens.subarray(done),
          "127.0.0.1",
          0,
          ports.subarray(done),
        );
        for (let i = done; i < done + n; i++) off += lens[i];
        done += n;
        if (n === 0) await sleep(0); // the socket buffer is full: decom is behind
      }
      sent += chunk;
    }
  } finally {
    b.close();
    fd.close();
  }
  return sent;
}

/** Lays `datagrams` out for `sendPaced`, datagram i to `ports[i]`. */
export function layOut(datagrams: Uint8Array[], ports: number[]): Datagrams {
  const buf = new Uint8Array(datagrams.reduce((n, d) => n + d.length, 0));
  let at = 0;
  for (const d of datagrams) {
    buf.set(d, at);
    at += d.length;
  }
  return {
    buf,
    lens: new Uint32Array(datagrams.map((d) => d.length)),
    ports: new Uint16Array(ports),
  };
}

/** Process CPU time (utime + stime) from /proc, ns (10 ms ticks). */
export function cpuNs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(f[11]) + Number(f[12])) * 10_000_000;
}

/** Time on CPU of every thread of a process (`/proc/<pid>/task/*\/schedstat`), ns: sub-tick. */
export function schedNs(pid: number): number {
  let sum = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      sum += Number(Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ")[0]);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return sum;
}
