/** The `measurements:` section: each measurement's type, size, bits, conversion, enum, limits. */
import type { Limits, MeasurementType } from "./types.ts";
import {
  type Entries,
  type Entry,
  isMap,
  isScalar,
  type Pos,
  type Reader,
  type YNode,
} from "./yaml_reader.ts";
import {
  BITS_KEYS,
  ENDIANNESS,
  LIMIT_KEYS,
  MAX_DATAGRAM,
  MEASUREMENT_KEYS,
  MEASUREMENT_NAME,
  MEASUREMENT_NAME_RULE,
  type MeasurementDef,
  TYPES,
} from "./defs.ts";

export function readMeasurements(r: Reader, top: Entries, start: Pos): Map<string, MeasurementDef> {
  const defs = new Map<string, MeasurementDef>();
  const e = r.require(
    top,
    "measurements",
    "the config",
    start,
    'add a "measurements:" map (key → {type, size, …})',
  );
  const entries = e && r.map(e.value, "measurements", e.pos);
  if (!entries) return defs;
  /** Every key and name in use → the measurement claiming it, so both can be subscribed to. */
  const claimed = new Map<string, MeasurementDef>();
  for (const entry of entries.values()) {
    const def = readMeasurement(r, entry);
    if (!def) continue;
    defs.set(def.key, def);
    for (const [id, pos] of [[def.key, def.pos], [def.name, def.namePos]] as const) {
      const other = claimed.get(id);
      if (other && other !== def) {
        r.error(
          pos,
          `${def.label}: "${id}" is already the key or name of ${other.label} ` +
            `(line ${other.pos.line}); every key and name must be unique because users may ` +
            `refer to a measurement by either: rename one`,
        );
      } else claimed.set(id, def);
    }
  }
  return defs;
}

export function readMeasurement(r: Reader, entry: Entry): MeasurementDef | undefined {
  const key = entry.key;
  let what = `measurement "${key}"`;
  if (!MEASUREMENT_NAME.test(key)) {
    r.error(
      entry.pos,
      `${what}: a key ${MEASUREMENT_NAME_RULE}; rename it`,
    );
  }
  const f = r.map(entry.value, what, entry.pos);
  if (!f) return undefined;
  r.allowOnly(f, MEASUREMENT_KEYS, what);

  const nameEntry = f.get("name");
  let name = key;
  if (nameEntry) {
    const n = r.string(nameEntry, what);
    if (n !== undefined && !MEASUREMENT_NAME.test(n)) {
      r.error(
        nameEntry.pos,
        `${what}: name "${n}" ${MEASUREMENT_NAME_RULE}; rename it`,
      );
    } else if (n !== undefined) name = n;
  }
  if (name !== key) what = `measurement "${key}" (name "${name}")`;
  const def: MeasurementDef = {
    key,
    name,
    label: what,
    pos: entry.pos,
    namePos: nameEntry?.pos ?? entry.pos,
    endianness: "big",
    packets: [],
  };

  const typeEntry = r.require(
    f,
    "type",
    what,
    entry.pos,
    'add "type: int" (or uint, float, bool, string, bytes)',
  );
  let type = r.choice(typeEntry, what, TYPES);
  const unsignedEntry = f.get("unsigned");
  const unsigned = r.boolean(unsignedEntry, what);
  if (unsignedEntry && unsigned !== undefined && type !== undefined) {
    if (type === "int" && unsigned) type = "uint";
    else if (type === "uint" && !unsigned) {
      r.error(
        unsignedEntry.pos,
        `${what}: type uint is always unsigned; remove "unsigned: false" or use "type: int"`,
      );
    } else if (unsigned && type !== "uint") {
      r.error(
        unsignedEntry.pos,
        `${what}: only integers can be unsigned, and this is a ${type}; remove "unsigned: true"`,
      );
    }
  }
  def.type = type;

  const sizeEntry = f.get("size");
  if (!sizeEntry && type !== undefined && type !== "bool") {
    r.error(entry.pos, `${what}: missing required key "size"; add "size: N" (bytes)`);
  }
  def.size = sizeEntry
    ? r.integer(sizeEntry, what, 1, MAX_DATAGRAM, "bytes")
    : type === "bool"
    ? 1
    : undefined;
  const endiannessEntry = f.get("endianness");
  def.endianness = r.choice(endiannessEntry, what, ENDIANNESS) ?? "big";
  if (endiannessEntry && (type === "string" || type === "bytes")) {
    r.warning(endiannessEntry.pos, `${what}: endianness has no effect on ${type}; remove it`);
  }
  readBits(r, f, def, what);
  if (type !== undefined && def.size !== undefined) {
    checkSizeFits(def, type, def.size, sizeEntry?.pos ?? entry.pos, what);
  }

  readConversion(r, f, def, what);
  readEnum(r, f, def, what);
  def.unit = r.string(f.get("unit"), what);
  def.description = r.string(f.get("description"), what);
  def.rateHz = r.number(f.get("rate_hz"), what, { above: 0 });
  readLimits(r, f, def, what);
  return def;
}

export function readBits(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
  const e = f.get("bits");
  if (!e) return;
  const b = r.map(e.value, `${what}: bits`, e.pos);
  if (!b) return;
  r.allowOnly(b, BITS_KEYS, `${what}: bits`);
  const hint = "write bits: {offset: N, width: W}";
  const offset = r.integer(r.require(b, "offset", `${what}: bits`, e.pos, hint), what, 0, 63);
  const width = r.integer(r.require(b, "width", `${what}: bits`, e.pos, hint), what, 1, 64);
  if (def.type !== undefined && def.type !== "int" && def.type !== "uint" && def.type !== "bool") {
    r.error(e.pos, `${what}: bit fields must be int, uint or bool, not ${def.type}; remove bits`);
    return;
  }
  if (offset === undefined || width === undefined || def.size === undefined) return;
  def.bits = { offset, width };
  if (offset + width > def.size * 8) {
    def.sizeProblem = {
      pos: e.pos,
      message: `${what}: bit field (offset ${offset}, width ${width}) needs bits ${offset}–` +
        `${offset + width - 1}, but its ${def.size}-byte container has bits 0–${def.size * 8 - 1}` +
        `; it is in {used}. Make size larger or fix bits`,
    };
  }
}

/** Records a size that cannot hold `type` (the message decides error or warning later). */
export function checkSizeFits(
  def: MeasurementDef,
  type: MeasurementType,
  size: number,
  pos: Pos,
  what: string,
): void {
  let message: string | undefined;
  if (type === "float" && size !== 4 && size !== 8) {
    message = `${what} is a ${size}-byte float, which cannot be decoded: floats are 4 bytes ` +
      `(32-bit) or 8 bytes (64-bit); it is in {used}. Set size to 4 or 8, or if the sender ` +
      `sends a ${size}-byte integer, use type: int (with scaling for fixed-point)`;
  } else if ((type === "int" || type === "uint" || type === "bool") && size > 8) {
    message = `${what} is a ${size}-byte ${type}, but ${type === "bool" ? "bools" : "integers"} ` +
      `are 1 to 8 bytes; it is in {used}. Fix size, or use type: bytes for an opaque block`;
  }
  if (message) def.sizeProblem = { pos, message };
}

export function readConversion(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
  const scaling = f.get("scaling");
  const offset = f.get("offset");
  const poly = f.get("polynomial");
  const numeric = def.type === "int" || def.type === "uint" || def.type === "float";
  for (const e of [scaling, offset, poly]) {
    if (e && def.type !== undefined && !numeric) {
      r.error(e.pos, `${what}: ${e.key} converts numbers, and this is a ${def.type}; remove it`);
      return;
    }
  }
  if (poly) {
    if (scaling || offset) {
      r.error(
        poly.pos,
        `${what}: use either scaling/offset or polynomial, not both (scaling: a, offset: b is ` +
          `polynomial: [b, a])`,
      );
      return;
    }
    const items = r.seq(poly, `${what}: polynomial`);
    if (!items) return;
    const coefficients: number[] = [];
    for (const item of items) {
      const v = isScalar(item) ? item.value : undefined;
      if (typeof v !== "number" || !Number.isFinite(v)) {
        r.error(
          r.pos(item, poly.pos),
          `${what}: polynomial coefficients must be numbers [c0, c1, c2, …] for ` +
            `c0 + c1·x + c2·x² + …`,
        );
        return;
      }
      coefficients.push(v);
    }
    if (coefficients.length < 2) {
      r.error(
        poly.pos,
        `${what}: polynomial needs at least two coefficients [c0, c1, …]; a constant carries no ` +
          `information`,
      );
      return;
    }
    def.conversion = { kind: "polynomial", coefficients };
    return;
  }
  const scale = r.number(scaling, what);
  const add = r.number(offset, what);
  if (scaling && scale === 0) {
    r.error(scaling.pos, `${what}: scaling 0 makes every value 0; fix the factor or remove it`);
    return;
  }
  if (scale !== undefined || add !== undefined) {
    def.conversion = { kind: "linear", scale: scale ?? 1, offset: add ?? 0 };
  }
}

export function readEnum(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
  const e = f.get("enum");
  if (!e) return;
  if (def.type !== undefined && def.type !== "int" && def.type !== "uint") {
    r.error(e.pos, `${what}: enum labels integer values, and this is a ${def.type}; remove enum`);
    return;
  }
  if (def.conversion) {
    r.error(e.pos, `${what}: enum and scaling/polynomial exclude each other; keep one`);
    return;
  }
  const node = r.resolve(e.value);
  if (!isMap(node) || node.items.length === 0) {
    r.error(
      e.pos,
      `${what}: enum must be a map of value: LABEL lines, such as {0: SAFE, 1: ARMED}`,
    );
    return;
  }
  const range = def.type && def.size !== undefined
    ? integerRange(def.type === "int", def.bits?.width ?? Math.min(def.size, 8) * 8)
    : undefined;
  const labels = new Map<string, Pos>();
  const out: Record<string, string> = {};
  for (const pair of node.items) {
    const k = pair.key as YNode;
    const pos = r.pos(k, e.pos);
    const raw = isScalar(k) ? k.value : undefined;
    const value = typeof raw === "number"
      ? raw
      : typeof raw === "string" && /^-?(\d+|0x[0-9a-f]+)$/i.test(raw)
      ? Number(raw)
      : NaN;
    if (!Number.isSafeInteger(value)) {
      r.error(pos, `${what}: enum values must be whole numbers, not ${JSON.stringify(raw)}`);
      continue;
    }
    if (range && (value < range[0] || value > range[1])) {
      r.error(
        pos,
        `${what}: enum value ${value} can never occur: the raw value is ${range[0]} to ` +
          `${range[1]}; fix the value, or the type/size`,
      );
      continue;
    }
    const v = pair.value as YNode;
    const label = isScalar(v) && (typeof v.value === "string" || typeof v.value === "number")
      ? String(v.value)
      : undefined;
    if (label === undefined || label === "") {
      r.error(pos, `${what}: enum value ${value} needs a label (text; quote words like "true")`);
      continue;
    }
    const first = labels.get(label);
    if (first) {
      r.error(
        pos,
        `${what}: enum label "${label}" is used twice (also line ${first.line}); labels must ` +
          `be unique so a label means one value`,
      );
      continue;
    }
    if (String(value) in out) {
      r.error(pos, `${what}: enum value ${value} is listed twice; remove one`);
      continue;
    }
    labels.set(label, pos);
    out[String(value)] = label;
  }
  def.enum = out;
}

/** [min, max] of a `bits`-bit integer, as numbers (approximate above 2^53, fine for checks). */
export function integerRange(signed: boolean, bits: number): [number, number] {
  return signed ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
}

export function readLimits(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
  const e = f.get("limits");
  if (!e) return;
  if (def.type !== undefined && (def.enum || !["int", "uint", "float"].includes(def.type))) {
    r.error(
      e.pos,
      `${what}: limits apply to numeric values, not to ${
        def.enum ? "an enum" : def.type
      }; remove limits`,
    );
    return;
  }
  const l = r.map(e.value, `${what}: limits`, e.pos);
  if (!l) return;
  r.allowOnly(l, LIMIT_KEYS, `${what}: limits`);
  const limits: Limits = {
    warnLow: r.number(l.get("warn_low"), what),
    warnHigh: r.number(l.get("warn_high"), what),
    alarmLow: r.number(l.get("alarm_low"), what),
    alarmHigh: r.number(l.get("alarm_high"), what),
  };
  // Each pair must be ordered alarm_low ≤ warn_low < warn_high ≤ alarm_high.
  const order: [keyof Limits, string][] = [
    ["alarmLow", "alarm_low"],
    ["warnLow", "warn_low"],
    ["warnHigh", "warn_high"],
    ["alarmHigh", "alarm_high"],
  ];
  for (let i = 0; i < order.length; i++) {
    for (let j = i + 1; j < order.length; j++) {
      const [a, aKey] = order[i];
      const [b, bKey] = order[j];
      const va = limits[a];
      const vb = limits[b];
      const strict = a === "warnLow" && b === "warnHigh" || a === "alarmLow" && b === "alarmHigh";
      if (va !== undefined && vb !== undefined && (strict ? va >= vb : va > vb)) {
        r.error(
          l.get(bKey)!.pos,
          `${what}: limits out of order: ${bKey} (${vb}) must be ${
            strict ? "above" : "at least"
          } ` +
            `${aKey} (${va}); the order is alarm_low ≤ warn_low < warn_high ≤ alarm_high`,
        );
      }
    }
  }
  for (const k of Object.keys(limits) as (keyof Limits)[]) {
    if (limits[k] === undefined) delete limits[k];
  }
  if (Object.keys(limits).length > 0) def.limits = limits;
  else if (l.size === 0) {
    r.error(
      e.pos,
      `${what}: limits is empty; give warn_low/warn_high/alarm_low/alarm_high or remove it`,
    );
  }
}
