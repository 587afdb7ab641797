/**
 * InfluxDB line protocol for decoded packets: one point per packet, its measurements as fields,
 * every number exact. Shared by `export --format influx` (a log, after the flight) and the live
 * writer (`gsw influx`), so both write the same points for the same datagram.
 *
 * A field's Influx type depends only on the config, never on a value: Influx refuses a point
 * whose field changes type ("field type conflict"), so a value that does not fit its field's
 * type (NaN, a uint64 above 2^63 − 1 as an Influx 1.x integer) is left out of its point and
 * counted, never written as another type.
 */
import {
  type Config,
  decodePacket,
  type Measurement,
  type Packet,
  type RawValue,
} from "../config/mod.ts";

/** How unsigned integers are written: `i` (every InfluxDB accepts it) or `u` (2.x, 3.x). */
export type UnsignedMode = "i" | "u";

/** A tag of every point: a built-in (its value comes from the packet) or a constant. */
export type Tag =
  | { key: "source" | "packet" | "vehicle"; value?: undefined }
  | { key: string; value: string };

export interface LineOptions {
  /** The Influx measurement's name; `{vehicle}`, `{packet}`, `{source}` are filled in. */
  measurement: string;
  tags: Tag[];
  unsigned: UnsignedMode;
}

export const DEFAULT_MEASUREMENT = "{vehicle}";
export const DEFAULT_TAGS = "source,packet";
const BUILTIN_TAGS = ["source", "packet", "vehicle"] as const;
const PLACEHOLDERS = ["{vehicle}", "{packet}", "{source}"];

/** `--tags` text → tags, or a message saying what is wrong with it. */
export function parseTags(text: string): Tag[] | string {
  if (text === "none" || text === "") return [];
  const tags: Tag[] = [];
  for (const item of text.split(",")) {
    const eq = item.indexOf("=");
    if (eq < 0) {
      if (!(BUILTIN_TAGS as readonly string[]).includes(item)) {
        return `"${item}" is no built-in tag (${BUILTIN_TAGS.join(", ")}); ` +
          "a constant tag is KEY=VALUE";
      }
      tags.push({ key: item as typeof BUILTIN_TAGS[number] });
    } else {
      const key = item.slice(0, eq);
      const value = item.slice(eq + 1);
      if (key === "" || value === "") return `"${item}": a constant tag needs a key and a value`;
      if (/\\$/.test(key) || /\\$/.test(value)) {
        return `"${item}": InfluxDB cannot read a tag ending in a backslash`;
      }
      tags.push({ key, value });
    }
  }
  const keys = tags.map((t) => t.key);
  const twice = keys.find((k, i) => keys.indexOf(k) !== i);
  if (twice !== undefined) return `tag "${twice}" is given twice`;
  if (keys.includes("time")) return `InfluxDB refuses a tag named "time"`;
  return tags;
}

/** A problem with a `--measurement` template, or undefined. */
export function measurementProblem(template: string): string | undefined {
  const unknown = template.match(/\{[^}]*\}/g)?.find((p) => !PLACEHOLDERS.includes(p));
  if (unknown) return `unknown placeholder ${unknown} (placeholders: ${PLACEHOLDERS.join(" ")})`;
  return undefined;
}

/** A problem InfluxDB would have with a measurement name, or undefined. */
function nameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (name === "time") return `is "time", which InfluxDB refuses`;
  if (name.startsWith("#")) return "starts with #, which makes its lines comments";
  if (name.endsWith("\\")) return "ends in a backslash, which InfluxDB cannot read";
  return undefined;
}

/** Thrown by `LineEncoder` when the options give a measurement name InfluxDB cannot take. */
export class LineOptionError extends Error {
  override name = "LineOptionError";
}

// Escaping, as InfluxDB 1.x reads it: measurement names escape commas and spaces; tag keys, tag
// values and field keys escape commas, equals signs and spaces (a backslash before anything
// else stays a backslash, so backslashes are not escaped there); string field values escape
// backslashes and double quotes.
const escapeMeasurement = (s: string) => s.replace(/[, ]/g, (c) => `\\${c}`);
const escapeKey = (s: string) => s.replace(/[,= ]/g, (c) => `\\${c}`);
const escapeString = (s: string) => s.replace(/["\\]/g, (c) => `\\${c}`);

const INT64_MAX = (1n << 63n) - 1n;

/** How a field's values are written; fixed per measurement. */
const enum Kind {
  Float,
  Integer,
  /** A uint64 written as an Influx integer: values above 2^63 − 1 do not fit. */
  WideUnsigned,
  Unsigned,
  Bool,
  String,
  Bytes,
}

function kindOf(m: Measurement, unsigned: UnsignedMode): Kind {
  if (m.enum) return Kind.String; // the label; the number is in the raw log
  if (m.conversion || m.type === "float") return Kind.Float;
  switch (m.type) {
    case "bool":
      return Kind.Bool;
    case "string":
      return Kind.String;
    case "bytes":
      return Kind.Bytes;
    case "int":
      return Kind.Integer;
  }
  if (unsigned === "u") return Kind.Unsigned;
  const bits = m.bits ? m.bits.width : m.size * 8;
  return bits >= 64 ? Kind.WideUnsigned : Kind.Integer;
}

/** The Influx field type a measurement gets, in InfluxQL's words (`SHOW FIELD KEYS`). */
export function influxType(m: Measurement, unsigned: UnsignedMode): string {
  switch (kindOf(m, unsigned)) {
    case Kind.Float:
      return "float";
    case Kind.Integer:
    case Kind.WideUnsigned:
      return "integer";
    case Kind.Unsigned:
      return "unsigned";
    case Kind.Bool:
      return "boolean";
  }
  return "string";
}

function hex(b: Uint8Array): string {
  let s = "";
  for (const x of b) s += x < 16 ? `0${x.toString(16)}` : x.toString(16);
  return s;
}

/**
 * One value as field text, or undefined when its type cannot hold it. Floats are written in
 * JavaScript's shortest round-trip form (17 significant digits at most, exponent when needed),
 * which Influx parses back to the same double; integers are written from their exact value
 * (64-bit ones are bigints from the decoder, never numbers).
 */
function fieldValue(kind: Kind, v: RawValue): string | undefined {
  switch (kind) {
    case Kind.Float: {
      const x = Number(v);
      if (!Number.isFinite(x)) return undefined; // Influx has no NaN or infinities
      return Object.is(x, -0) ? "-0" : String(x);
    }
    case Kind.Integer:
      return `${v}i`;
    case Kind.WideUnsigned:
      return typeof v === "bigint" && v > INT64_MAX ? undefined : `${v}i`;
    case Kind.Unsigned:
      return `${v}u`;
    case Kind.Bool:
      return v ? "true" : "false";
    case Kind.String:
      return `"${escapeString(String(v))}"`;
  }
  return `"${hex(v as Uint8Array)}"`;
}

/** Why values were left out of points: "NAME: reason" → count. */
export type Omissions = Map<string, number>;

/** What one packet type's points share, computed once. */
interface PacketLines {
  /** `measurement,tags ` */
  prefix: string;
  /** `key=` of each field, in the packet's field order. */
  keys: string[];
  kinds: Kind[];
  /** Packets whose points land in the same Influx series share one. */
  series: number;
}

/**
 * Turns identified packets into lines of line protocol. Two points of one series with the same
 * timestamp would overwrite each other in Influx: a packet received in the same nanosecond as
 * the previous one of its series (it does not happen with kernel timestamps; hand-made logs
 * may do it) is written 1 ns after it, and counted in `nudged`.
 */
export class LineEncoder {
  readonly #config: Config;
  readonly #packets: PacketLines[];
  /** Per series: the last timestamp received and the one written. */
  readonly #lastIn: bigint[];
  readonly #lastOut: bigint[];
  readonly omitted: Omissions = new Map();
  /** Field keys renamed because Influx refuses them ("time" → "time_"). */
  readonly renamed: string[] = [];
  nudged = 0;

  constructor(config: Config, opts: LineOptions) {
    this.#config = config;
    const seriesOf = new Map<string, number>();
    this.#packets = config.packets.map((p) => {
      const prefix = this.#prefix(p, opts);
      if (!seriesOf.has(prefix)) seriesOf.set(prefix, seriesOf.size);
      return {
        prefix,
        keys: p.fields.map((f) => {
          const name = config.measurements[f.measurement].name;
          if (name !== "time") return `${escapeKey(name)}=`;
          if (!this.renamed.includes(name)) this.renamed.push(name);
          return "time_=";
        }),
        kinds: p.fields.map((f) => kindOf(config.measurements[f.measurement], opts.unsigned)),
        series: seriesOf.get(prefix)!,
      };
    });
    this.#lastIn = new Array(seriesOf.size).fill(-1n);
    this.#lastOut = new Array(seriesOf.size).fill(-1n);
  }

  #prefix(p: Packet, opts: LineOptions): string {
    const measurement = opts.measurement.replaceAll("{vehicle}", this.#config.name)
      .replaceAll("{packet}", p.name).replaceAll("{source}", p.source);
    const problem = nameProblem(measurement);
    if (problem) {
      throw new LineOptionError(
        `the InfluxDB measurement name "${measurement}" (--measurement ${opts.measurement}) ` +
          `${problem}: give another with --measurement NAME`,
      );
    }
    const tags = opts.tags.map((t) => {
      const value = t.value ??
        (t.key === "vehicle" ? this.#config.name : t.key === "packet" ? p.name : p.source);
      return `${escapeKey(t.key)}=${escapeKey(value)}`;
    }).sort();
    return escapeMeasurement(measurement) + tags.map((t) => `,${t}`).join("") + " ";
  }

  /**
   * The line (ending in "\n") of one datagram identified as packet `packetIndex`, received at
   * `timestampNs`; "" when none of its values could be written.
   */
  encode(packetIndex: number, bytes: Uint8Array, timestampNs: bigint): string {
    const p = this.#packets[packetIndex];
    const fields = decodePacket(this.#config, packetIndex, bytes);
    let line = p.prefix;
    let n = 0;
    for (let i = 0; i < fields.length; i++) {
      const text = fieldValue(p.kinds[i], fields[i].value);
      if (text === undefined) {
        this.#omit(fields[i].measurement, p.kinds[i]);
        continue;
      }
      line += n++ === 0 ? p.keys[i] + text : "," + p.keys[i] + text;
    }
    if (n === 0) return "";
    let t = timestampNs;
    const s = p.series;
    // Between the last timestamp received and the last written: that point would be overwritten.
    if (t >= this.#lastIn[s] && t <= this.#lastOut[s]) {
      t = this.#lastOut[s] + 1n;
      this.nudged++;
    }
    this.#lastIn[s] = timestampNs;
    this.#lastOut[s] = t;
    return `${line} ${t}\n`;
  }

  #omit(m: Measurement, kind: Kind): void {
    const why = kind === Kind.Float
      ? "NaN or infinite values left out (InfluxDB stores neither)"
      : "values above 9223372036854775807 left out (an InfluxDB 1.x integer cannot hold " +
        "them; --unsigned u writes unsigned integers, for InfluxDB 2.x and 3.x)";
    const key = `${m.name}: ${why}`;
    this.omitted.set(key, (this.omitted.get(key) ?? 0) + 1);
  }
}
