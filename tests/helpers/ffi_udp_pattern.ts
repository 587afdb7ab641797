/** The datagram pattern shared by the UDP sender helper and the UDP test. */

/** Fills `d` with datagram number `k`. */
export function fillDatagram(d: Uint8Array, k: number): void {
  for (let i = 8; i < d.byteLength; i++) d[i] = (k * 31 + i) & 0xff;
  if (d.byteLength < 8) return;
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  view.setUint32(0, k, true);
  view.setUint32(4, ~k >>> 0, true);
}

/** The number of datagram `d`, or -1 if it is not intact. */
export function datagramNumber(d: Uint8Array): number {
  if (d.byteLength < 8) return -1;
  const view = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const k = view.getUint32(0, true);
  if (view.getUint32(4, true) !== (~k >>> 0)) return -1;
  for (let i = 8; i < d.byteLength; i++) if (d[i] !== ((k * 31 + i) & 0xff)) return -1;
  return k;
}
