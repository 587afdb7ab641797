/**
 * CRC-32C (Castagnoli), the checksum of every log record: table-driven, eight bytes per step
 * ("slicing-by-8"), because the logger checksums every byte it records on the JS thread.
 *
 * Parameters (as in iSCSI, ext4, SCTP): reflected polynomial 0x82F63B78, initial value
 * 0xFFFFFFFF, final XOR 0xFFFFFFFF; CRC-32C("123456789") = 0xE3069283. Castagnoli rather than
 * the zip CRC-32 because it detects more error patterns in records of our sizes, and because
 * any native reader can use the SSE4.2 `crc32` instruction for it.
 */

const POLY = 0x82f63b78;

/** TABLES[k][b]: the CRC of byte b followed by k zero bytes; TABLES[0] is the classic table. */
const TABLES: Uint32Array[] = (() => {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[0][b] = c >>> 0;
  }
  for (let b = 0; b < 256; b++) {
    for (let k = 1; k < 8; k++) t[k][b] = (t[k - 1][b] >>> 8) ^ t[0][t[k - 1][b] & 0xff];
  }
  return t;
})();
const [T0, T1, T2, T3, T4, T5, T6, T7] = TABLES;

/**
 * Continues a CRC-32C over `data[start..end)`. Pass the previous result as `crc` to checksum
 * discontiguous pieces as if they were one run of bytes (0 to start).
 */
export function crc32c(data: Uint8Array, start = 0, end = data.length, crc = 0): number {
  let c = ~crc >>> 0;
  let i = start;
  // Eight bytes per step: XOR the CRC into the first four, then look each byte up in the
  // table that accounts for how many bytes still follow it in this step.
  for (const stop = end - 7; i < stop; i += 8) {
    const lo = (c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24))) >>>
      0;
    c = T7[lo & 0xff] ^ T6[(lo >>> 8) & 0xff] ^ T5[(lo >>> 16) & 0xff] ^ T4[lo >>> 24] ^
      T3[data[i + 4]] ^ T2[data[i + 5]] ^ T1[data[i + 6]] ^ T0[data[i + 7]];
  }
  for (; i < end; i++) c = (c >>> 8) ^ T0[(c ^ data[i]) & 0xff];
  return ~c >>> 0;
}
