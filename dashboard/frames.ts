/**
 * The dashboard's binary WebSocket frames of samples (the page decodes the same layout in
 * `static/app.js`). All little-endian:
 *
 *   u8 kind (HISTORY: replaces what the page has for these series; APPEND: adds to it),
 *   3 bytes reserved, u32 series count, then per series:
 *   u32 measurement index, u32 n, u32 flags (REDUCED: a min/max envelope), u32 reserved,
 *   f64 times[n] (ms since the epoch, receive time), f64 values[n].
 */

export const HISTORY = 1;
export const APPEND = 2;
/** The series is a min/max envelope of more samples than the window can show. */
export const REDUCED = 1;

export interface FrameSeries {
  measurement: number;
  t: Float64Array | number[];
  v: Float64Array | number[];
  reduced?: boolean;
}

/** Bytes a frame of these series takes. */
export function frameSize(series: readonly FrameSeries[]): number {
  return 8 + series.reduce((n, s) => n + 16 + 16 * s.t.length, 0);
}

export function encodeFrame(kind: number, series: readonly FrameSeries[]): Uint8Array {
  const buf = new ArrayBuffer(frameSize(series));
  const view = new DataView(buf);
  view.setUint8(0, kind);
  view.setUint32(4, series.length, true);
  let at = 8;
  for (const s of series) {
    const n = s.t.length;
    view.setUint32(at, s.measurement, true);
    view.setUint32(at + 4, n, true);
    view.setUint32(at + 8, s.reduced ? REDUCED : 0, true);
    at += 16;
    new Float64Array(buf, at, n).set(s.t);
    at += 8 * n;
    new Float64Array(buf, at, n).set(s.v);
    at += 8 * n;
  }
  return new Uint8Array(buf);
}

export function decodeFrame(
  bytes: Uint8Array,
): {
  kind: number;
  series: { measurement: number; t: Float64Array; v: Float64Array; reduced: boolean }[];
} {
  const copy = bytes.byteOffset % 8 === 0 ? bytes : bytes.slice();
  const view = new DataView(copy.buffer, copy.byteOffset, copy.byteLength);
  const kind = view.getUint8(0);
  const count = view.getUint32(4, true);
  const series = [];
  let at = 8;
  for (let i = 0; i < count; i++) {
    const measurement = view.getUint32(at, true);
    const n = view.getUint32(at + 4, true);
    const reduced = (view.getUint32(at + 8, true) & REDUCED) !== 0;
    at += 16;
    const t = new Float64Array(copy.buffer, copy.byteOffset + at, n);
    at += 8 * n;
    const v = new Float64Array(copy.buffer, copy.byteOffset + at, n);
    at += 8 * n;
    series.push({ measurement, t, v, reduced });
  }
  return { kind, series };
}
