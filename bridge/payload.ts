/**
 * What the bridge publishes for one datagram, in each layout (docs/mqtt.md):
 *
 * - `gsw` (default): the raw packet on `<prefix>/<vehicle>/raw/<source>/<packet>` (binary:
 *   `encodeRawPacket`, so another machine decodes, logs and replays exactly this datagram), and
 *   its decoded values as one JSON object on `<prefix>/<vehicle>/<packet>`;
 * - `rit`: the Go ground software's topics, `<prefix>/<packet>/<measurement>`, each value as
 *   bare JSON (scaling applied, enums as their numbers), so its web UI works unchanged.
 *
 * Decoding is `decodePacket`'s, the same as decom's, export's and the dashboard's.
 */
import {
  type Config,
  decodePacket,
  jsonValue,
  type Measurement,
  type RawValue,
} from "../config/mod.ts";
import { rawTopic } from "../config/mqtt.ts";
import { encodeRawPacket } from "../ffi/mqtt.ts";
import type { RawPacket } from "../lib/packets.ts";

export type Layout = "gsw" | "rit";
export const LAYOUTS: readonly Layout[] = ["gsw", "rit"];

/** The last topic level of a datagram decom did not identify. */
export const UNKNOWN_PACKET = "_unknown";

export interface Message {
  topic: string;
  payload: Uint8Array;
  retain: boolean;
}

export interface PayloadOptions {
  layout: Layout;
  prefix: string;
  vehicle: string;
  /** gsw layout: publish raw packets. */
  raw: boolean;
  /** gsw layout: publish each packet's decoded values as JSON. */
  values: boolean;
}

const encoder = new TextEncoder();

/** Seconds since the epoch, to the microsecond, as JSON text. */
function seconds(ns: bigint): string {
  const s = ns / 1_000_000_000n;
  const us = (ns % 1_000_000_000n) / 1000n;
  return `${s}.${us.toString().padStart(6, "0")}`;
}

/** The value the Go ground software publishes: numbers (scaled), never enum labels. */
function ritValue(m: Measurement, raw: RawValue, value: RawValue): string {
  return m.enum ? jsonValue(raw) : jsonValue(value);
}

/** Builds the messages of each datagram for one layout. */
export class Payloads {
  readonly #topics: string[];
  readonly #rawTopics: Map<string, string[]>;
  readonly #ritTopics: string[][];

  constructor(readonly config: Config, readonly opts: PayloadOptions) {
    const { prefix, vehicle } = opts;
    this.#topics = config.packets.map((p) => `${prefix}/${vehicle}/${p.name}`);
    this.#rawTopics = new Map(config.sources.map((s) => [
      s.name,
      [
        ...config.packets.map((p) => rawTopic(prefix, vehicle, s.name, p.name)),
        rawTopic(prefix, vehicle, s.name, UNKNOWN_PACKET),
      ],
    ]));
    this.#ritTopics = config.packets.map((p) =>
      p.fields.map((f) => `${prefix}/${p.name}/${config.measurements[f.measurement].key}`)
    );
  }

  /** Appends the messages of one datagram to `out`. */
  build(p: RawPacket, out: Message[]): void {
    const { layout, raw, values } = this.opts;
    if (layout === "rit") {
      if (p.packet < 0) return;
      const topics = this.#ritTopics[p.packet];
      decodePacket(this.config, p.packet, p.bytes).forEach((f, i) => {
        out.push({
          topic: topics[i],
          payload: encoder.encode(ritValue(f.measurement, f.raw, f.value)),
          retain: false,
        });
      });
      return;
    }
    if (raw) {
      const topics = this.#rawTopics.get(p.source)!;
      out.push({
        topic: topics[p.packet < 0 ? topics.length - 1 : p.packet],
        payload: encodeRawPacket({
          seq: BigInt(p.seq),
          timestampNs: p.timestampNs,
          srcAddress: p.srcAddress,
          srcPort: p.srcPort,
          port: p.port,
          origLength: p.length,
          flags: p.flags,
          bytes: p.bytes,
        }),
        retain: false,
      });
    }
    if (values && p.packet >= 0) {
      let json = `{"t":${seconds(p.timestampNs)},"t_ns":${p.timestampNs},"seq":${p.seq},` +
        `"source":${JSON.stringify(p.source)},"values":{`;
      decodePacket(this.config, p.packet, p.bytes).forEach((f, i) => {
        json += `${i === 0 ? "" : ","}${JSON.stringify(f.measurement.key)}:${jsonValue(f.value)}`;
      });
      out.push({
        topic: this.#topics[p.packet],
        payload: encoder.encode(json + "}}"),
        retain: false,
      });
    }
  }
}

/** The retained latest-value message of one measurement (`--retain-latest`). */
export function latestMessage(
  opts: PayloadOptions,
  m: Measurement,
  value: RawValue,
  timestampNs: bigint,
): Message {
  return {
    topic: `${opts.prefix}/${opts.vehicle}/latest/${m.key}`,
    payload: encoder.encode(
      `{"t":${seconds(timestampNs)},"t_ns":${timestampNs},"value":${jsonValue(value)}${
        m.unit ? `,"unit":${JSON.stringify(m.unit)}` : ""
      }}`,
    ),
    retain: true,
  };
}
