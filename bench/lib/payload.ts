/**
 * "Touch the data": the benchmark payload format of `bench/native/src/payload.rs`, so a Deno
 * reader checks exactly what a native writer wrote. Layout: sequence number (u64 LE), the
 * writer's stamp (u64 LE, CLOCK_MONOTONIC ns), then byte i = (seq * 31 + i) mod 256.
 */

/** Bytes of sequence number and stamp at the start of every payload. */
export const HEADER = 16;

/** Writes sequence number `seq`, stamp `stampNs` and the pattern into `buf`. */
export function fill(buf: Uint8Array, seq: number, stampNs = 0): void {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  view.setBigUint64(0, BigInt(seq), true);
  view.setBigUint64(8, BigInt(stampNs), true);
  const s = (seq & 0xff) * 31;
  for (let i = HEADER; i < buf.length; i++) buf[i] = (s + i) & 0xff;
}

/**
 * Checks an intact payload carrying `seq`; returns the writer's stamp, or throws saying which
 * byte is wrong (a torn or stale copy).
 */
export function check(buf: Uint8Array, seq: number): number {
  if (buf.length < HEADER) throw new Error(`payload of ${buf.length} bytes has no header`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const got = Number(view.getBigUint64(0, true));
  if (got !== seq) throw new Error(`payload carries seq ${got}, expected ${seq}`);
  const s = (seq & 0xff) * 31;
  for (let i = HEADER; i < buf.length; i++) {
    if (buf[i] !== ((s + i) & 0xff)) {
      throw new Error(`payload seq ${seq}: byte ${i} is ${buf[i]} (torn or stale copy)`);
    }
  }
  return Number(view.getBigUint64(8, true));
}
