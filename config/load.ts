/**
 * Turns a vehicle config file (YAML) into the validated `Config` model, reporting every problem
 * in the file at once with its line and column. The format is documented in docs/config.md.
 */
import { createHash } from "node:crypto";
import { isIP } from "node:net";
import { didYouMean } from "./suggest.ts";
import {
  type Config,
  ConfigError,
  type Conversion,
  type Endianness,
  type HealthKind,
  type Limits,
  type Measurement,
  type MeasurementType,
  type Packet,
  type PacketId,
  type Source,
} from "./types.ts";
import {
  type Entries,
  type Entry,
  isMap,
  isScalar,
  type Pos,
  Reader,
  type YNode,
} from "./yaml_reader.ts";

/** Largest UDP payload over IPv4: no packet can be bigger. */
export const MAX_DATAGRAM = 65507;

const TOP_KEYS = ["name", "description", "measurements", "telemetry_packets", "sources"];
const MEASUREMENT_KEYS = [
  "name",
  "description",
  "type",
  "size",
  "endianness",
  "unsigned",
  "bits",
  "enum",
  "scaling",
  "offset",
  "polynomial",
  "unit",
  "limits",
  "rate_hz",
];
const BITS_KEYS = ["offset", "width"];
const LIMIT_KEYS = ["warn_low", "warn_high", "alarm_low", "alarm_high"];
const PACKET_KEYS = [
  "name",
  "description",
  "port",
  "source",
  "size",
  "id",
  "rate_hz",
  "measurements",
];
const FIELD_KEYS = ["measurement", "offset", "padding"];
const ID_KEYS = ["offset", "size", "endianness", "value"];
const SOURCE_KEYS = ["name", "description", "bind", "multicast"];
const TYPES: readonly MeasurementType[] = ["int", "uint", "float", "bool", "string", "bytes"];
const ENDIANNESS: readonly Endianness[] = ["big", "little"];
const HEALTH_COUNTERS: readonly HealthKind[] = [
  "packets",
  "bytes",
  "errors",
  "drops",
  "kernel_drops",
  "backlog_bytes",
];

/** Measurement keys and names: what users type in `subscribe`, so no spaces or quotes. */
const MEASUREMENT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/;
/** Packet and source names: no dots, because health measurements are named `source.packet.age`. */
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** The name of the source holding every packet when a config has no `sources:` list. */
export const DEFAULT_SOURCE = "default";

/** Path of the embedded default vehicle config, `examples/rocket.yaml`. */
export const DEFAULT_CONFIG_PATH: string = decodeURIComponent(
  new URL("../examples/rocket.yaml", import.meta.url).pathname,
);

/** Reads and validates the config at `path`; throws `ConfigError` listing every problem. */
export async function loadConfig(path: string): Promise<Config> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new ConfigError([{
      file: path,
      line: 1,
      col: 1,
      severity: "error",
      message: `cannot read the config file (${reason}); check the path and permissions`,
    }]);
  }
  return parseConfig(bytes, path);
}

/**
 * Validates config text (or the file's bytes) as if read from `file`, the name diagnostics use.
 * Returns the compiled config, whose `warnings` may be non-empty; throws `ConfigError` on errors.
 */
export function parseConfig(source: string | Uint8Array, file: string): Config {
  const bytes = typeof source === "string" ? new TextEncoder().encode(source) : source;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError([{
      file,
      line: 1,
      col: 1,
      severity: "error",
      message: "the file is not UTF-8 text; save it as UTF-8",
    }]);
  }
  const r = new Reader(file, text);
  const config = compile(r);
  const diagnostics = r.diagnostics.sort((a, b) => a.line - b.line || a.col - b.col);
  if (!config || diagnostics.some((d) => d.severity === "error")) {
    throw new ConfigError(diagnostics);
  }
  config.hash = createHash("sha256").update(bytes).digest("hex");
  config.warnings = diagnostics;
  return config;
}

/** A measurement as read from the file, before it has an index. */
interface MeasurementDef {
  key: string;
  name: string;
  label: string;
  pos: Pos;
  namePos: Pos;
  type?: MeasurementType;
  /** Undefined when missing or invalid: the measurement cannot be laid out in a packet. */
  size?: number;
  endianness: Endianness;
  bits?: { offset: number; width: number };
  enum?: Record<string, string>;
  conversion?: Conversion;
  unit?: string;
  limits?: Limits;
  rateHz?: number;
  description?: string;
  /** A size that cannot hold the type: an error if a packet uses it, else a warning. */
  sizeProblem?: { pos: Pos; message: string };
  /** Indices of the packets using it. */
  packets: number[];
}

interface FieldDef {
  def: MeasurementDef;
  offset: number;
  pos: Pos;
}

interface PacketDef {
  index: number;
  name: string;
  pos: Pos;
  port?: number;
  portPos: Pos;
  source?: string;
  sourcePos: Pos;
  declaredSize?: { size: number; pos: Pos };
  id?: PacketId;
  idPos: Pos;
  idValuePos: Pos;
  rateHz?: number;
  description?: string;
  fields: FieldDef[];
  /** Where the last `{padding: N}` entry ends: trailing padding makes the packet longer. */
  paddingEnd?: { end: number; pos: Pos };
}

interface SourceDef {
  name: string;
  pos: Pos;
  bind: string;
  multicast?: string;
}

function compile(r: Reader): Config | undefined {
  if (r.hasErrors()) return undefined; // YAML syntax errors: the tree is not worth checking.
  const start: Pos = { line: 1, col: 1 };
  if (r.root === null) {
    r.error(
      start,
      "the file is empty; a vehicle config needs name, measurements and telemetry_packets " +
        "(see docs/config.md)",
    );
    return undefined;
  }
  const top = r.map(r.root, "the config", r.pos(r.root));
  if (!top) return undefined;
  r.allowOnly(top, TOP_KEYS, "the config");
  const what = "the config";
  const name = r.string(
    r.require(top, "name", what, start, 'add "name: <vehicle name>" at the top'),
    what,
  );
  const description = r.string(top.get("description"), what);

  const defs = readMeasurements(r, top, start);
  const sources = readSources(r, top);
  const packets = readPackets(r, top, start, defs, sources);
  checkPorts(r, packets);

  const sourceList: SourceDef[] = sources ??
    [{ name: DEFAULT_SOURCE, pos: start, bind: "0.0.0.0" }];
  checkHealthNames(r, defs, sourceList, packets);
  for (const s of sources ?? []) {
    if (!packets.some((p) => p.source === s.name)) {
      r.warning(
        s.pos,
        `source "${s.name}" has no packets; remove it or add "source: ${s.name}" to its packets`,
      );
    }
  }
  for (const d of defs.values()) {
    if (d.sizeProblem) {
      if (d.packets.length > 0) {
        const users = d.packets.map((i) => `"${packets[i].name}"`).join(", ");
        r.error(d.sizeProblem.pos, d.sizeProblem.message.replace("{used}", `packet ${users}`));
      } else {
        r.warning(
          d.sizeProblem.pos,
          d.sizeProblem.message.replace("{used}", "no packet (so it is left out)"),
        );
      }
    } else if (d.size !== undefined && d.type !== undefined && d.packets.length === 0) {
      r.warning(
        d.pos,
        `${d.label} is not in any packet, so it never updates; add it to a packet or remove it`,
      );
    }
  }
  if (r.hasErrors() || name === undefined) return undefined;
  return build(name, description, r.file, defs, packets, sourceList);
}

// ---------------------------------------------------------------------------------------------
// measurements

function readMeasurements(r: Reader, top: Entries, start: Pos): Map<string, MeasurementDef> {
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

function readMeasurement(r: Reader, entry: Entry): MeasurementDef | undefined {
  const key = entry.key;
  let what = `measurement "${key}"`;
  if (!MEASUREMENT_NAME.test(key)) {
    r.error(
      entry.pos,
      `${what}: a key may hold only letters, digits and _ . : - (and not start with . : -); ` +
        `rename it`,
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
        `${what}: name "${n}" may hold only letters, digits and _ . : - (and not start with ` +
          `. : -); rename it`,
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

function readBits(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
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
function checkSizeFits(
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

function readConversion(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
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

function readEnum(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
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
function integerRange(signed: boolean, bits: number): [number, number] {
  return signed ? [-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] : [0, 2 ** bits - 1];
}

function readLimits(r: Reader, f: Entries, def: MeasurementDef, what: string): void {
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

// ---------------------------------------------------------------------------------------------
// sources

function readSources(r: Reader, top: Entries): SourceDef[] | undefined {
  const e = top.get("sources");
  if (!e) return undefined;
  const items = r.seq(e, "sources");
  if (!items) return [];
  if (items.length === 0) {
    r.error(
      e.pos,
      'sources is empty; remove it (every packet then belongs to source "default") or add a ' +
        "source",
    );
  }
  const out: SourceDef[] = [];
  const byName = new Map<string, SourceDef>();
  items.forEach((item, i) => {
    const pos = r.pos(item, e.pos);
    let what = `source #${i + 1}`;
    const f = r.map(item, what, pos);
    if (!f) return;
    r.allowOnly(f, SOURCE_KEYS, what);
    const nameEntry = r.require(f, "name", what, pos, 'add "name: <source name>"');
    const name = r.string(nameEntry, what);
    if (name === undefined || !nameEntry) return;
    what = `source "${name}"`;
    if (!PLAIN_NAME.test(name)) {
      r.error(
        nameEntry.pos,
        `${what}: a source name may hold only letters, digits, _ and - (no dots: health ` +
          `measurements are named source.packets); rename it`,
      );
    }
    const first = byName.get(name);
    if (first) {
      r.error(
        nameEntry.pos,
        `${what} is defined twice (first at line ${first.pos.line}); rename one`,
      );
      return;
    }
    const bindEntry = f.get("bind");
    const bind = r.string(bindEntry, what) ?? "0.0.0.0";
    if (bindEntry && isIP(bind) !== 4) {
      r.error(
        bindEntry.pos,
        isIP(bind) === 6
          ? `${what}: bind ${bind} is IPv6, which decom does not receive yet; use an IPv4 ` +
            "address of this machine such as 0.0.0.0 (all) or 127.0.0.1"
          : `${what}: bind must be an IPv4 address of this machine such as 0.0.0.0 (all) or ` +
            `127.0.0.1, not "${bind}"`,
      );
    }
    const mcEntry = f.get("multicast");
    const multicast = r.string(mcEntry, what);
    if (mcEntry && multicast !== undefined && !isMulticast(multicast)) {
      r.error(
        mcEntry.pos,
        isIP(multicast) === 6
          ? `${what}: multicast group ${multicast} is IPv6, which decom does not receive yet; ` +
            "use an IPv4 group (224.0.0.0–239.255.255.255)"
          : `${what}: multicast must be an IPv4 multicast group address (224.0.0.0–` +
            `239.255.255.255), not "${multicast}"`,
      );
    }
    const def: SourceDef = { name, pos: nameEntry.pos, bind, multicast };
    byName.set(name, def);
    out.push(def);
  });
  return out;
}

function isMulticast(address: string): boolean {
  if (isIP(address) !== 4) return false;
  const first = Number(address.split(".")[0]);
  return first >= 224 && first <= 239;
}

// ---------------------------------------------------------------------------------------------
// packets

function readPackets(
  r: Reader,
  top: Entries,
  start: Pos,
  defs: Map<string, MeasurementDef>,
  sources: SourceDef[] | undefined,
): PacketDef[] {
  const e = r.require(
    top,
    "telemetry_packets",
    "the config",
    start,
    'add a "telemetry_packets:" list (each with name, port and measurements)',
  );
  const items = e && r.seq(e, "telemetry_packets");
  if (!items || !e) return [];
  if (items.length === 0) {
    r.error(e.pos, "telemetry_packets is empty; add at least one packet");
  }
  const byId = new Map<string, MeasurementDef>();
  for (const d of defs.values()) {
    byId.set(d.key, d);
    if (!byId.has(d.name)) byId.set(d.name, d);
  }
  const packets: PacketDef[] = [];
  const byName = new Map<string, PacketDef>();
  items.forEach((item, position) => {
    const pos = r.pos(item, e.pos);
    // Indexed by place among the packets kept, which is what measurements refer to.
    const p = readPacket(r, item, position, packets.length, pos, byId, sources);
    if (!p) return;
    const first = byName.get(p.name);
    if (first) {
      r.error(
        p.pos,
        `packet "${p.name}" is defined twice (first at line ${first.pos.line}); packet names ` +
          `must be unique: rename one`,
      );
    } else byName.set(p.name, p);
    packets.push(p);
  });
  return packets;
}

function readPacket(
  r: Reader,
  item: YNode,
  position: number,
  index: number,
  pos: Pos,
  byId: Map<string, MeasurementDef>,
  sources: SourceDef[] | undefined,
): PacketDef | undefined {
  let what = `packet #${position + 1}`;
  const f = r.map(item, what, pos);
  if (!f) return undefined;
  r.allowOnly(f, PACKET_KEYS, what);
  const nameEntry = r.require(f, "name", what, pos, 'add "name: <packet name>"');
  const name = r.string(nameEntry, what);
  if (name === undefined || !nameEntry) return undefined;
  what = `packet "${name}"`;
  if (!PLAIN_NAME.test(name)) {
    r.error(
      nameEntry.pos,
      `${what}: a packet name may hold only letters, digits, _ and - (no dots: health ` +
        `measurements are named source.packet.age); rename it`,
    );
  }
  const portEntry = r.require(f, "port", what, nameEntry.pos, 'add "port: N" (the UDP port)');
  const sizeEntry = f.get("size");
  const declared = r.integer(sizeEntry, what, 1, MAX_DATAGRAM, "bytes");
  const p: PacketDef = {
    index,
    name,
    pos: nameEntry.pos,
    port: r.integer(portEntry, what, 1, 65535),
    portPos: portEntry?.pos ?? nameEntry.pos,
    sourcePos: nameEntry.pos,
    declaredSize: declared !== undefined && sizeEntry
      ? { size: declared, pos: sizeEntry.pos }
      : undefined,
    idPos: nameEntry.pos,
    idValuePos: nameEntry.pos,
    rateHz: r.number(f.get("rate_hz"), what, { above: 0 }),
    description: r.string(f.get("description"), what),
    fields: [],
  };
  readPacketSource(r, f, p, what, sources);
  readId(r, f, p, what);
  const listEntry = r.require(
    f,
    "measurements",
    what,
    nameEntry.pos,
    'add "measurements:" with the keys of the measurements it carries, in order',
  );
  if (listEntry) readFields(r, listEntry, p, what, byId);
  checkExtent(r, p, what);
  return p;
}

function readPacketSource(
  r: Reader,
  f: Entries,
  p: PacketDef,
  what: string,
  sources: SourceDef[] | undefined,
): void {
  const e = f.get("source");
  const name = r.string(e, what);
  if (e) p.sourcePos = e.pos;
  if (sources === undefined) {
    if (name !== undefined && name !== DEFAULT_SOURCE && e) {
      r.error(
        e.pos,
        `${what}: unknown source "${name}": this config has no sources: list, so every packet ` +
          `belongs to source "${DEFAULT_SOURCE}"; add a sources: list or remove source:`,
      );
    }
    p.source = DEFAULT_SOURCE;
    return;
  }
  const names = sources.map((s) => s.name);
  if (name === undefined) {
    if (e) return; // wrong type, already reported
    if (sources.length === 1) p.source = sources[0].name;
    else if (sources.length > 1) {
      r.error(
        p.pos,
        `${what}: missing "source:"; with several sources each packet must say which one ` +
          `receives it (${names.join(", ")})`,
      );
    }
    return;
  }
  if (!names.includes(name)) {
    r.error(
      e!.pos,
      `${what}: unknown source "${name}"${didYouMean(name, names)}; the sources are ` +
        `${names.join(", ")}`,
    );
    return;
  }
  p.source = name;
}

function readId(r: Reader, f: Entries, p: PacketDef, what: string): void {
  const e = f.get("id");
  if (!e) return;
  p.idPos = e.pos;
  p.idValuePos = e.pos;
  const w = `${what}: id`;
  const m = r.map(e.value, w, e.pos);
  if (!m) return;
  r.allowOnly(m, ID_KEYS, w);
  const offset = m.has("offset") ? r.integer(m.get("offset"), w, 0, MAX_DATAGRAM - 1) : 0;
  const size = m.has("size") ? r.integer(m.get("size"), w, 1, 6, "bytes") : 1;
  const endianness = r.choice(m.get("endianness"), w, ENDIANNESS) ?? "big";
  const valueEntry = r.require(m, "value", w, e.pos, 'add "value: N", the id of this packet');
  if (offset === undefined || size === undefined || !valueEntry) return;
  p.idValuePos = valueEntry.pos;
  const value = r.integer(valueEntry, w, 0, 2 ** (8 * size) - 1);
  if (value === undefined) return;
  p.id = { offset, size, endianness, value };
}

function readFields(
  r: Reader,
  listEntry: Entry,
  p: PacketDef,
  what: string,
  byId: Map<string, MeasurementDef>,
): void {
  const items = r.seq(listEntry, `${what}: measurements`);
  if (!items) return;
  /** Where the next implicitly placed field starts; undefined after a field of unknown size. */
  let cursor: number | undefined = 0;
  const seen = new Map<MeasurementDef, Pos>();
  let measurementCount = 0;
  for (const item of items) {
    const pos = r.pos(item, listEntry.pos);
    const node = r.resolve(item);
    let ref: string | undefined;
    let offset: number | undefined;
    if (isScalar(node) && typeof node.value === "string") {
      ref = node.value;
    } else if (isMap(node)) {
      const w = `${what}: measurement entry`;
      const m = r.map(node, w, pos)!;
      r.allowOnly(m, FIELD_KEYS, w);
      const padding = m.get("padding");
      if (padding) {
        if (m.has("measurement") || m.has("offset")) {
          r.error(
            padding.pos,
            `${w}: an entry is either {padding: N} or {measurement: KEY, offset: N}, not both`,
          );
          continue;
        }
        const n = r.integer(padding, w, 1, MAX_DATAGRAM, "bytes");
        cursor = n === undefined || cursor === undefined ? undefined : cursor + n;
        if (cursor !== undefined) p.paddingEnd = { end: cursor, pos };
        continue;
      }
      ref = r.string(
        r.require(m, "measurement", w, pos, "write {measurement: KEY, offset: N} or {padding: N}"),
        w,
      );
      const offsetEntry = m.get("offset");
      if (offsetEntry) {
        offset = r.integer(offsetEntry, w, 0, MAX_DATAGRAM - 1, "(byte offset in the packet)");
        if (offset === undefined) {
          cursor = undefined;
          continue;
        }
      }
      if (ref === undefined) continue;
    } else {
      r.error(
        pos,
        `${what}: each entry of measurements must be a measurement key or name, ` +
          `{measurement: KEY, offset: N} or {padding: N}, not ${describeItem(node)}`,
      );
      cursor = undefined;
      continue;
    }
    measurementCount++;
    const def = byId.get(ref);
    if (!def) {
      r.error(
        pos,
        `${what} refers to unknown measurement "${ref}"${didYouMean(ref, byId.keys())}; define ` +
          `it under measurements: or fix the name`,
      );
      cursor = undefined;
      continue;
    }
    const first = seen.get(def);
    if (first) {
      r.error(
        pos,
        `${what}: ${def.label} is listed twice (first at line ${first.line}); a packet ` +
          `carries each measurement once`,
      );
      continue;
    }
    seen.set(def, pos);
    if (!def.packets.includes(p.index)) def.packets.push(p.index);
    const at = offset ?? cursor;
    if (def.size === undefined || def.type === undefined || at === undefined) {
      cursor = undefined; // cannot place what follows implicitly; the cause is reported already
      continue;
    }
    p.fields.push({ def, offset: at, pos });
    cursor = at + def.size;
  }
  if (measurementCount === 0) {
    r.error(
      listEntry.pos,
      `${what} has no measurements; list the measurements it carries or remove the packet`,
    );
  }
  checkOverlaps(r, p, what);
}

function describeItem(node: YNode): string {
  if (isScalar(node)) {
    return node.value === null ? "an empty item" : `${JSON.stringify(node.value)}`;
  }
  return isMap(node) ? "a map" : "a list";
}

/** Bytes and bits a field occupies: [byte index, bit mask] pairs. */
function fieldBits(f: FieldDef): [number, number][] {
  const { def, offset } = f;
  const size = def.size!;
  const out: [number, number][] = [];
  if (!def.bits) {
    for (let i = 0; i < size; i++) out.push([offset + i, 0xff]);
    return out;
  }
  const masks = new Map<number, number>();
  for (let b = def.bits.offset; b < def.bits.offset + def.bits.width && b < size * 8; b++) {
    // Bit b counts from the least significant bit of the container integer: in a big-endian
    // container that bit lives in the last byte, in a little-endian one in the first.
    const byte = def.endianness === "little"
      ? offset + Math.floor(b / 8)
      : offset + size - 1 - Math.floor(b / 8);
    masks.set(byte, (masks.get(byte) ?? 0) | (1 << (b % 8)));
  }
  return [...masks];
}

function describeField(f: FieldDef): string {
  const end = f.offset + f.def.size! - 1;
  const bytes = end === f.offset ? `byte ${f.offset}` : `bytes ${f.offset}–${end}`;
  if (!f.def.bits) return `${f.def.label} (${bytes})`;
  const { offset, width } = f.def.bits;
  const bits = width === 1 ? `bit ${offset}` : `bits ${offset}–${offset + width - 1}`;
  return `${f.def.label} (${bits} of ${bytes})`;
}

/** Fields may share bytes only as bit fields, and never share a bit. */
function checkOverlaps(r: Reader, p: PacketDef, what: string): void {
  const used = new Map<number, { mask: number; field: FieldDef }[]>();
  for (const f of p.fields) {
    let clash: FieldDef | undefined;
    const bits = fieldBits(f);
    for (const [byte, mask] of bits) {
      clash ??= used.get(byte)?.find((u) => (u.mask & mask) !== 0)?.field;
    }
    if (clash) {
      r.error(
        f.pos,
        `${what}: ${describeField(f)} overlaps ${describeField(clash)}; fix the offset, add ` +
          `padding, or if they share a status word give them disjoint bits`,
      );
      continue;
    }
    for (const [byte, mask] of bits) {
      const list = used.get(byte) ?? [];
      list.push({ mask, field: f });
      used.set(byte, list);
    }
    const id = p.id;
    const end = f.offset + f.def.size!;
    const exactlyId = id && f.offset === id.offset && f.def.size === id.size;
    if (id && !exactlyId && f.offset < id.offset + id.size && id.offset < end) {
      // Implicit offsets start at 0, so forgetting to skip a leading id is an easy slip.
      r.error(
        f.pos,
        `${what}: ${describeField(f)} overlaps the packet's id (bytes ${id.offset}–` +
          `${id.offset + id.size - 1}); skip the id with {padding: ${id.size}} or an explicit ` +
          `offset (a measurement may cover exactly the id's bytes to publish it)`,
      );
    }
  }
}

/** The packet's size: as declared (and then nothing may stick out), else its furthest byte. */
function checkExtent(r: Reader, p: PacketDef, what: string): void {
  const idEnd = p.id ? p.id.offset + p.id.size : 0;
  const ends = p.fields.map((f) => f.offset + f.def.size!);
  if (p.declaredSize) {
    const size = p.declaredSize.size;
    const where = `the packet's size: ${size} (line ${p.declaredSize.pos.line})`;
    for (const f of p.fields) {
      const end = f.offset + f.def.size!;
      if (end > size) {
        r.error(
          f.pos,
          `${what}: ${describeField(f)} ends past ${where}; make the packet larger or move ` +
            `the field`,
        );
      }
    }
    if (idEnd > size) {
      r.error(p.idPos, `${what}: the id (bytes ${p.id!.offset}–${idEnd - 1}) ends past ${where}`);
    }
    if (p.paddingEnd && p.paddingEnd.end > size) {
      r.error(
        p.paddingEnd.pos,
        `${what}: padding up to byte ${p.paddingEnd.end - 1} ends past ${where}; remove ` +
          `padding or make the packet larger`,
      );
    }
    return;
  }
  const extent = Math.max(idEnd, p.paddingEnd?.end ?? 0, ...ends);
  if (extent > MAX_DATAGRAM) {
    r.error(
      p.pos,
      `${what} is ${extent} bytes, more than a UDP datagram can carry (${MAX_DATAGRAM}); ` +
        `split it into several packets`,
    );
  }
}

function packetSize(p: PacketDef): number {
  if (p.declaredSize) return p.declaredSize.size;
  const idEnd = p.id ? p.id.offset + p.id.size : 0;
  return Math.max(idEnd, p.paddingEnd?.end ?? 0, ...p.fields.map((f) => f.offset + f.def.size!));
}

/** Packets sharing a port must be told apart by id fields at the same place, in one source. */
function checkPorts(r: Reader, packets: PacketDef[]): void {
  const byPort = new Map<number, PacketDef[]>();
  for (const p of packets) {
    if (p.port === undefined) continue;
    const list = byPort.get(p.port) ?? [];
    list.push(p);
    byPort.set(p.port, list);
  }
  for (const [port, list] of byPort) {
    if (list.length < 2) continue;
    const first = list[0];
    const values = new Map<number, PacketDef>();
    for (const p of list) {
      const others = list.filter((o) => o !== p).map((o) => `"${o.name}" (line ${o.pos.line})`);
      if (!p.id) {
        r.error(
          p.portPos,
          `packet "${p.name}": port ${port} is also used by ${others.join(", ")}; packets ` +
            `sharing a port need an id: {offset, size, value} each so decom can tell them ` +
            `apart, or use another port`,
        );
        continue;
      }
      if (p.source !== undefined && first.source !== undefined && p.source !== first.source) {
        r.error(
          p.sourcePos,
          `packet "${p.name}": port ${port} is also used by packet "${first.name}" of source ` +
            `"${first.source}"; a port belongs to one source, so use the same source or another port`,
        );
      }
      const ref = list.find((o) => o.id);
      if (ref && ref !== p && !sameIdLayout(ref.id!, p.id)) {
        r.error(
          p.idPos,
          `packet "${p.name}": its id (${idLayout(p.id)}) is not where packet "${ref.name}" on ` +
            `port ${port} has its id (${idLayout(ref.id!)}); packets on one port must put ` +
            `their id in the same bytes`,
        );
        continue;
      }
      const clash = values.get(p.id.value);
      if (clash) {
        r.error(
          p.idValuePos,
          `packet "${p.name}": id value ${p.id.value} is already used by packet "${clash.name}" ` +
            `on port ${port}; give each packet on a port its own id value`,
        );
      } else values.set(p.id.value, p);
    }
  }
}

function sameIdLayout(a: PacketId, b: PacketId): boolean {
  return a.offset === b.offset && a.size === b.size && a.endianness === b.endianness;
}

function idLayout(id: PacketId): string {
  return `offset ${id.offset}, ${id.size} byte${id.size > 1 ? "s" : ""}, ${id.endianness}-endian`;
}

// ---------------------------------------------------------------------------------------------
// health measurements and the compiled model

function healthNames(source: string, packets: string[]): [string, HealthKind, number?][] {
  return [
    ...HEALTH_COUNTERS.map((k) => [`${source}.${k}`, k] as [string, HealthKind]),
    [`${source}.packet_rate`, "packet_rate"],
    ...packets.map((p, i) => [`${source}.${p}.age`, "age", i] as [string, HealthKind, number]),
  ];
}

function checkHealthNames(
  r: Reader,
  defs: Map<string, MeasurementDef>,
  sources: SourceDef[],
  packets: PacketDef[],
): void {
  const reserved = new Map<string, string>();
  for (const s of sources) {
    const names = packets.filter((p) => p.source === s.name).map((p) => p.name);
    for (const [n] of healthNames(s.name, names)) reserved.set(n, s.name);
  }
  for (const d of defs.values()) {
    for (const [id, pos] of [[d.key, d.pos], [d.name, d.namePos]] as const) {
      const source = reserved.get(id);
      if (source !== undefined) {
        r.error(
          pos,
          `${d.label}: "${id}" is the name of a health measurement that decom publishes for ` +
            `source "${source}"; rename the measurement`,
        );
        break;
      }
    }
  }
}

function build(
  name: string,
  description: string | undefined,
  file: string,
  defs: Map<string, MeasurementDef>,
  packetDefs: PacketDef[],
  sourceDefs: SourceDef[],
): Config {
  const measurements: Measurement[] = [];
  const indexOf = new Map<MeasurementDef, number>();
  for (const d of defs.values()) {
    if (d.sizeProblem || d.type === undefined || d.size === undefined) continue; // warned
    indexOf.set(d, measurements.length);
    const rates = d.packets.map((i) => packetDefs[i].rateHz).filter((x) => x !== undefined);
    measurements.push(measurement({
      index: measurements.length,
      key: d.key,
      name: d.name,
      type: d.type,
      size: d.size,
      endianness: d.endianness,
      bits: d.bits,
      enum: d.enum,
      conversion: d.conversion,
      unit: d.unit,
      limits: d.limits,
      expectedRateHz: d.rateHz ?? (rates.length > 0 ? rates.reduce((a, b) => a + b) : undefined),
      description: d.description,
      packets: [...d.packets],
    }));
  }
  const packets: Packet[] = packetDefs.map((p, index) => ({
    index,
    name: p.name,
    source: p.source!,
    port: p.port!,
    size: packetSize(p),
    id: p.id,
    // Stable sort: bit fields sharing a container keep their list order.
    fields: p.fields
      .map((f) => ({ measurement: indexOf.get(f.def)!, offset: f.offset, size: f.def.size! }))
      .sort((a, b) => a.offset - b.offset),
    expectedRateHz: p.rateHz,
    description: p.description,
  }));
  const sources: Source[] = sourceDefs.map((s) => {
    const mine = packets.filter((p) => p.source === s.name);
    return {
      name: s.name,
      bind: s.bind,
      multicast: s.multicast,
      ports: [...new Set(mine.map((p) => p.port))].sort((a, b) => a - b),
      packets: mine.map((p) => p.index),
    };
  });
  for (const s of sources) {
    const mine = s.packets.map((i) => packets[i]);
    for (const [hname, what, packet] of healthNames(s.name, mine.map((p) => p.name))) {
      const isCounter = HEALTH_COUNTERS.includes(what);
      measurements.push(measurement({
        index: measurements.length,
        key: hname,
        name: hname,
        type: isCounter ? "uint" : "float",
        size: 8,
        endianness: "little",
        unit: what === "packet_rate" ? "Hz" : what === "age" ? "s" : undefined,
        description: HEALTH_DESCRIPTIONS[what],
        health: packet === undefined
          ? { source: s.name, what }
          : { source: s.name, what, packet: mine[packet].index },
        packets: [],
      }));
    }
  }
  return { name, description, file, hash: "", measurements, packets, sources, warnings: [] };
}

/**
 * Every measurement object gets every key, in one order: decoders read these fields for each
 * value, and V8 keeps property reads fast only for objects of a few shapes.
 */
function measurement(m: Measurement): Measurement {
  return {
    index: m.index,
    key: m.key,
    name: m.name,
    type: m.type,
    size: m.size,
    endianness: m.endianness,
    bits: m.bits,
    enum: m.enum,
    conversion: m.conversion,
    unit: m.unit,
    limits: m.limits,
    expectedRateHz: m.expectedRateHz,
    description: m.description,
    health: m.health,
    packets: m.packets,
  };
}

const HEALTH_DESCRIPTIONS: Record<HealthKind, string> = {
  packets: "datagrams received (identified or not)",
  bytes: "bytes received",
  errors: "datagrams rejected: unknown id, wrong length, or otherwise malformed",
  drops: "raw packets the logger queue could not take (decoded, but missing from the log)",
  kernel_drops:
    "datagrams the kernel dropped before decom read them (receive buffer full): lost entirely",
  backlog_bytes:
    "bytes of raw packets decom holds for the logger (absent or slow), counted as allocated; " +
    "at the bound (64 MiB) new packets are dropped and counted in drops",
  packet_rate: "datagrams per second over the last interval",
  age: "seconds since this packet was last received",
};
