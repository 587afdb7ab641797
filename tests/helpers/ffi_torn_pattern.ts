/** The value pattern shared by the torn-read writer and reader helpers. */

/** Capacities of the data channels (bytes). */
export const TORN_CAPACITIES = [8, 256, 4096];

/** Length of the value with sequence number `seq` on data channel `ch`. */
export function tornLength(ch: number, seq: number): number {
  return ch === 1 ? 8 * (1 + (seq % 32)) : TORN_CAPACITIES[ch];
}

/** Why `bytes` is not the value `seq` of channel `ch`, or null if it is. */
export function tornReason(ch: number, seq: number, bytes: Uint8Array): string | null {
  const len = tornLength(ch, seq);
  if (bytes.byteLength !== len) return `length ${bytes.byteLength}, expected ${len}`;
  const words = new Uint32Array(bytes.buffer, bytes.byteOffset, len / 4);
  for (let i = 0; i < len / 8; i++) {
    if (words[2 * i] !== seq || words[2 * i + 1] !== ((ch << 24) | i)) {
      return `word ${i} is (${words[2 * i]}, ${words[2 * i + 1].toString(16)})`;
    }
  }
  return null;
}
