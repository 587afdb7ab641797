/**
 * Turns a measurement's published bytes into values: the raw value, the engineering value
 * (conversion or enum label), display text, and limit state. Runs for every update a
 * subscriber prints, so the common paths read bytes directly and allocate nothing.
 */
import type { Config, Conversion, Measurement } from "./types.ts";

/** A raw value: integers of up to 48 bits are numbers, wider ones bigints. */
export type RawValue = number | bigint | boolean | string | Uint8Array;

export type LimitState = "ok" | "warn" | "alarm";

// One 8-byte scratch word for floats and 7–8-byte integers: copying the bytes in is cheaper
// than creating a DataView over the caller's buffer on every call.
const scratch = new Uint8Array(8);
const view = new DataView(scratch.buffer);
const utf8 = new TextDecoder();

/** Copies `size` bytes from `bytes[at]` into the scratch word, right-aligned for big-endian. */
function load(bytes: Uint8Array, at: number, size: number, little: boolean): void {
  scratch.fill(0);
  const to = little ? 0 : 8 - size;
  for (let i = 0; i < size; i++) scratch[to + i] = bytes[at + i];
}

/** Unsigned integer of ≤ 6 bytes at `bytes[at]`: exact in a double, no allocation. */
function unsignedNumber(bytes: Uint8Array, at: number, size: number, little: boolean): number {
  let v = 0;
  if (little) { for (let i = at + size - 1; i >= at; i--) v = v * 256 + bytes[i]; }
  else for (let i = at; i < at + size; i++) v = v * 256 + bytes[i];
  return v;
}

function unsignedBigint(bytes: Uint8Array, at: number, size: number, little: boolean): bigint {
  load(bytes, at, size, little);
  // Big-endian values were right-aligned, so both cases read the whole word.
  return view.getBigUint64(0, little);
}

/**
 * The raw value from a measurement's published bytes (`m.size` bytes; a bit field's container).
 * Integers and bit fields of up to 48 bits give numbers, wider ones bigints; `bytes` gives a
 * copy, so the caller may reuse its buffer.
 */
export function decodeRaw(m: Measurement, bytes: Uint8Array): RawValue {
  if (bytes.length !== m.size) {
    throw new RangeError(`measurement "${m.name}" is ${m.size} bytes, got ${bytes.length}`);
  }
  return rawAt(m, bytes, 0);
}

/** `decodeRaw` of the `m.size` bytes at `bytes[at]`, which the caller has checked are there. */
function rawAt(m: Measurement, bytes: Uint8Array, at: number): RawValue {
  const size = m.size;
  const little = m.endianness === "little";
  switch (m.type) {
    case "float":
      load(bytes, at, size, little);
      return size === 4 ? view.getFloat32(little ? 0 : 4, little) : view.getFloat64(0, little);
    case "string": {
      const text = bytes.subarray(at, at + size);
      const end = text.indexOf(0);
      return utf8.decode(end < 0 ? text : text.subarray(0, end));
    }
    case "bytes":
      return bytes.slice(at, at + size);
  }
  if (m.bits) return bitField(m, bytes, at, little);
  if (m.type === "bool") {
    for (let i = at; i < at + size; i++) if (bytes[i] !== 0) return true;
    return false;
  }
  if (size <= 4) {
    const v = unsignedNumber(bytes, at, size, little);
    // Shifting the sign bit to bit 31 and back sign-extends in 32-bit integer arithmetic.
    const shift = 32 - size * 8;
    return m.type === "int" ? (v << shift) >> shift : v;
  }
  if (size <= 6) {
    const v = unsignedNumber(bytes, at, size, little);
    const bits = size * 8;
    return m.type === "int" && v >= 2 ** (bits - 1) ? v - 2 ** bits : v;
  }
  const v = unsignedBigint(bytes, at, size, little);
  return m.type === "int" ? BigInt.asIntN(size * 8, v) : v;
}

/** Bit `offset` counts from the least significant bit of the container integer. */
function bitField(m: Measurement, bytes: Uint8Array, at: number, little: boolean): RawValue {
  const { offset, width } = m.bits!;
  let field: number | bigint;
  if (m.size <= 6) {
    const container = unsignedNumber(bytes, at, m.size, little);
    field = Math.floor(container / 2 ** offset) % 2 ** width;
    if (m.type === "int" && field >= 2 ** (width - 1)) field -= 2 ** width;
  } else {
    const container = unsignedBigint(bytes, at, m.size, little);
    let f = (container >> BigInt(offset)) & ((1n << BigInt(width)) - 1n);
    if (m.type === "int") f = BigInt.asIntN(width, f);
    field = width <= 48 ? Number(f) : f;
  }
  return m.type === "bool" ? field != 0 : field;
}

/** Applies a conversion to a number: linear `x·scale + offset`, or a polynomial by Horner. */
export function convert(c: Conversion, x: number): number {
  if (c.kind === "linear") return x * c.scale + c.offset;
  const k = c.coefficients;
  let y = 0;
  for (let i = k.length - 1; i >= 0; i--) y = y * x + k[i];
  return y;
}

/**
 * The engineering value: the enum label (`UNKNOWN(n)` for a value with no label), the converted
 * number, or the raw value unchanged when the measurement has neither.
 */
export function toEngineering(m: Measurement, raw: RawValue): RawValue {
  if (m.enum) return m.enum[String(raw)] ?? `UNKNOWN(${raw})`;
  if (m.conversion) return convert(m.conversion, Number(raw));
  return raw;
}

/** `toEngineering(m, decodeRaw(m, bytes))`. */
export function decodeValue(m: Measurement, bytes: Uint8Array): RawValue {
  return toEngineering(m, decodeRaw(m, bytes));
}

/** A number as people read it: whole numbers in full, others to 7 significant digits. */
export function formatNumber(v: number): string {
  if (Number.isInteger(v) || !Number.isFinite(v)) return String(v);
  const abs = Math.abs(v);
  if (abs >= 1e9 || abs < 1e-4) return v.toExponential(6).replace(/\.?0+e/, "e");
  // Through Number() so float32 noise (12.300000190734863) prints as 12.3.
  return String(Number(v.toPrecision(7)));
}

/** Human text for a raw or engineering value, with the unit for numbers. */
export function formatValue(m: Measurement, value: RawValue): string {
  const unit = m.unit ? ` ${m.unit}` : "";
  switch (typeof value) {
    case "number":
      return formatNumber(value) + unit;
    case "bigint":
      return value.toString() + unit;
    case "boolean":
      return String(value);
    case "string":
      // Enum labels print bare; string measurements are quoted so spaces and emptiness show.
      return m.enum ? value : JSON.stringify(value);
  }
  return Array.from(value, (b) => b.toString(16).padStart(2, "0")).join(" ");
}

/**
 * Where an engineering value stands against the measurement's limits. A value equal to a limit
 * is inside it. NaN is an alarm when there are limits: a sensor sending NaN is broken.
 */
export function limitState(m: Measurement, value: RawValue): LimitState {
  const l = m.limits;
  if (!l || (typeof value !== "number" && typeof value !== "bigint")) return "ok";
  const v = Number(value);
  if (Number.isNaN(v)) return "alarm";
  if (
    (l.alarmLow !== undefined && v < l.alarmLow) || (l.alarmHigh !== undefined && v > l.alarmHigh)
  ) {
    return "alarm";
  }
  if ((l.warnLow !== undefined && v < l.warnLow) || (l.warnHigh !== undefined && v > l.warnHigh)) {
    return "warn";
  }
  return "ok";
}

/** Each packet's measurements in field order, per config: looked up once, not per packet. */
const packetMeasurements = new WeakMap<Config, Measurement[][]>();

function measurementsOf(config: Config): Measurement[][] {
  let all = packetMeasurements.get(config);
  if (!all) {
    all = config.packets.map((p) => p.fields.map((f) => config.measurements[f.measurement]));
    packetMeasurements.set(config, all);
  }
  return all;
}

/** One measurement of a decoded packet. */
export interface DecodedField {
  measurement: Measurement;
  /** The raw value as sent. */
  raw: RawValue;
  /** Its engineering value (conversion or enum label applied). */
  value: RawValue;
}

/**
 * Every measurement of one datagram identified as packet `packetIndex` (as decom, export and
 * the packet stream identify it), in the packet's field order. Decoding lives here so every
 * consumer of whole packets — export, the dashboard, bridges, live writers — decodes the
 * same way decom publishes.
 */
export function decodePacket(
  config: Config,
  packetIndex: number,
  bytes: Uint8Array,
): DecodedField[] {
  const packet = config.packets[packetIndex];
  if (!packet) throw new RangeError(`packet ${packetIndex} does not exist in "${config.name}"`);
  const fields = measurementsOf(config)[packetIndex];
  // Fields are sorted by offset and the last one ends by the packet's size: one check for all.
  const last = packet.fields.at(-1);
  if (last && bytes.length < last.offset + last.size) {
    throw new RangeError(
      `packet "${packet.name}" needs ${last.offset + last.size} bytes, got ${bytes.length}`,
    );
  }
  const out: DecodedField[] = new Array(fields.length);
  for (let i = 0; i < fields.length; i++) {
    const m = fields[i];
    const raw = rawAt(m, bytes, packet.fields[i].offset);
    out[i] = { measurement: m, raw, value: toEngineering(m, raw) };
  }
  return out;
}

/**
 * A value as JSON text. bigints are written as exact integer numbers (JSON has no precision
 * limit; JavaScript readers need `JSON.parse` with a reviver that reads `context.source`);
 * non-finite floats as the strings "NaN", "Infinity", "-Infinity" (JSON has no such
 * numbers); bytes as a lowercase hex string.
 */
export function jsonValue(v: RawValue | undefined): string {
  switch (typeof v) {
    case "bigint":
      return v.toString();
    case "number":
      return Number.isFinite(v) ? JSON.stringify(v) : JSON.stringify(String(v));
    case "boolean":
    case "string":
      return JSON.stringify(v);
    case "undefined":
      return "null";
  }
  return JSON.stringify(Array.from(v, (b) => b.toString(16).padStart(2, "0")).join(""));
}
