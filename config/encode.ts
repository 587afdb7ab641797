/**
 * Writes measurement values into packet buffers: the inverse of `decode.ts`, used by the
 * simulator and by tests that build packets.
 */
import { convert, type RawValue } from "./decode.ts";
import type { Conversion, Measurement } from "./types.ts";

const scratch = new Uint8Array(8);
const view = new DataView(scratch.buffer);
const utf8 = new TextEncoder();

/** Bits of the raw integer: the bit field's width, or the whole value. */
function rawBits(m: Measurement): number {
  return m.bits?.width ?? m.size * 8;
}

/** Smallest and largest raw integer of an int/uint/bool measurement, exactly. */
export function integerBounds(m: Measurement): [bigint, bigint] {
  const bits = BigInt(rawBits(m));
  if (m.type === "int") return [-(1n << (bits - 1n)), (1n << (bits - 1n)) - 1n];
  return [0n, (1n << bits) - 1n];
}

function readContainer(packet: Uint8Array, at: number, size: number, little: boolean): bigint {
  let v = 0n;
  for (let i = 0; i < size; i++) {
    v = (v << 8n) | BigInt(packet[little ? at + size - 1 - i : at + i]);
  }
  return v;
}

function writeContainer(
  packet: Uint8Array,
  at: number,
  size: number,
  little: boolean,
  v: bigint,
): void {
  for (let i = 0; i < size; i++) {
    packet[little ? at + i : at + size - 1 - i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

/**
 * Writes a raw value into `packet` at `fieldOffset` (where the field, or a bit field's
 * container, starts). A bit field replaces only its own bits. Strings are UTF-8, cut at a
 * character boundary to fit and NUL-padded; `bytes` shorter than the field are zero-padded.
 * Throws RangeError for a value the field cannot hold.
 */
export function encodeRaw(
  m: Measurement,
  raw: RawValue,
  packet: Uint8Array,
  fieldOffset: number,
): void {
  const size = m.size;
  if (!Number.isInteger(fieldOffset) || fieldOffset < 0 || fieldOffset + size > packet.length) {
    throw new RangeError(
      `measurement "${m.name}" (${size} bytes) does not fit at offset ${fieldOffset} of a ` +
        `${packet.length}-byte packet`,
    );
  }
  const little = m.endianness === "little";
  switch (m.type) {
    case "float": {
      const v = Number(raw);
      if (size === 4) view.setFloat32(0, v, little);
      else view.setFloat64(0, v, little);
      packet.set(scratch.subarray(0, size), fieldOffset);
      return;
    }
    case "string": {
      if (typeof raw !== "string") throw new TypeError(`measurement "${m.name}" needs a string`);
      const field = packet.subarray(fieldOffset, fieldOffset + size);
      const { written } = utf8.encodeInto(raw, field);
      field.fill(0, written);
      return;
    }
    case "bytes": {
      if (!(raw instanceof Uint8Array) || raw.length > size) {
        throw new RangeError(`measurement "${m.name}" needs at most ${size} bytes`);
      }
      packet.set(raw, fieldOffset);
      packet.fill(0, fieldOffset + raw.length, fieldOffset + size);
      return;
    }
  }
  const v = toInteger(m, raw);
  const [min, max] = integerBounds(m);
  if (v < min || v > max) {
    throw new RangeError(`measurement "${m.name}": ${raw} is outside ${min}..${max}`);
  }
  if (!m.bits) {
    writeContainer(packet, fieldOffset, size, little, BigInt.asUintN(size * 8, v));
    return;
  }
  const width = BigInt(m.bits.width);
  const shift = BigInt(m.bits.offset);
  const mask = ((1n << width) - 1n) << shift;
  const container = readContainer(packet, fieldOffset, size, little);
  const updated = (container & ~mask) | (BigInt.asUintN(m.bits.width, v) << shift);
  writeContainer(packet, fieldOffset, size, little, updated);
}

function toInteger(m: Measurement, raw: RawValue): bigint {
  if (typeof raw === "boolean") return raw ? 1n : 0n;
  if (typeof raw === "bigint") return raw;
  if (typeof raw === "number" && Number.isInteger(raw)) return BigInt(raw);
  throw new TypeError(`measurement "${m.name}" needs a whole number, not ${String(raw)}`);
}

/**
 * The raw value for an engineering value: the enum value of a label, the inverse of the
 * conversion, rounded and clamped to what an integer field can hold. Polynomials are inverted
 * numerically over the raw range; for one that is not monotonic there, one of the raw values
 * giving `value` is returned (or the closest found).
 */
export function encodeEngineering(m: Measurement, value: RawValue): RawValue {
  if (m.enum && typeof value === "string") {
    for (const [raw, label] of Object.entries(m.enum)) {
      if (label === value) return narrow(m, BigInt(raw));
    }
    throw new RangeError(`measurement "${m.name}" has no enum label "${value}"`);
  }
  switch (m.type) {
    case "bool":
      return Boolean(value);
    case "string":
    case "bytes":
      return value;
  }
  if (typeof value === "bigint" && !m.conversion) return clampInteger(m, value);
  const x = Number(value);
  if (m.type === "float") {
    return m.conversion ? invert(m.conversion, x, -1e12, 1e12) : x;
  }
  const [min, max] = integerBounds(m);
  const raw = m.conversion ? invert(m.conversion, x, Number(min), Number(max)) : x;
  if (Number.isNaN(raw)) return narrow(m, 0n);
  if (raw <= Number(min)) return narrow(m, min);
  if (raw >= Number(max)) return narrow(m, max);
  return clampInteger(m, BigInt(Math.round(raw)));
}

function clampInteger(m: Measurement, v: bigint): RawValue {
  const [min, max] = integerBounds(m);
  return narrow(m, v < min ? min : v > max ? max : v);
}

/** Raw integers follow `decodeRaw`'s rule: numbers up to 48 bits, bigints beyond. */
function narrow(m: Measurement, v: bigint): RawValue {
  return rawBits(m) <= 48 ? Number(v) : v;
}

function invert(c: Conversion, y: number, lo: number, hi: number): number {
  if (c.kind === "linear") return (y - c.offset) / c.scale;
  const f = (x: number) => convert(c, x) - y;
  // Look for a sign change on a coarse grid, then bisect inside it.
  const steps = 256;
  let a = lo;
  let fa = f(a);
  let best = lo;
  let bestError = Math.abs(fa);
  for (let i = 1; i <= steps; i++) {
    const b = lo + ((hi - lo) * i) / steps;
    const fb = f(b);
    if (Math.abs(fb) < bestError) {
      best = b;
      bestError = Math.abs(fb);
    }
    if (fa === 0) return a;
    if (Math.sign(fa) !== Math.sign(fb)) return bisect(f, a, b, fa);
    a = b;
    fa = fb;
  }
  return best;
}

function bisect(f: (x: number) => number, a: number, b: number, fa: number): number {
  for (let i = 0; i < 200 && b - a > 1e-12 * Math.max(1, Math.abs(a)); i++) {
    const mid = (a + b) / 2;
    const fm = f(mid);
    if (fm === 0) return mid;
    if (Math.sign(fm) === Math.sign(fa)) {
      a = mid;
      fa = fm;
    } else b = mid;
  }
  return (a + b) / 2;
}
