/** Health measurements and the compiled model (`types.ts`) built from the checked definitions. */
import type { Config, HealthKind, Measurement, Packet, Source, SourceKind } from "./types.ts";
import type { Reader } from "./yaml_reader.ts";
import {
  HEALTH_COUNTERS,
  type MeasurementDef,
  MQTT_HEALTH,
  type PacketDef,
  type SourceDef,
} from "./defs.ts";
import { DEFAULT_PREFIX, rawTopicFilter } from "./mqtt.ts";
import { packetSize } from "./packets.ts";

export function healthNames(
  source: string,
  kind: SourceKind,
  packets: { name: string; apid?: number }[],
): [string, HealthKind, number?][] {
  return [
    ...HEALTH_COUNTERS.map((k) => [`${source}.${k}`, k] as [string, HealthKind]),
    ...(kind === "mqtt" ? MQTT_HEALTH : kind === "udp" ? [] : ["connected" as const]).map((k) =>
      [`${source}.${k}`, k] as [string, HealthKind]
    ),
    [`${source}.packet_rate`, "packet_rate"],
    ...packets.map((p, i) => [`${source}.${p.name}.age`, "age", i] as [string, HealthKind, number]),
    ...packets.flatMap((p, i) =>
      p.apid === undefined
        ? []
        : [[`${source}.${p.name}.seq_gaps`, "seq_gaps", i] as [string, HealthKind, number]]
    ),
  ];
}

export function checkHealthNames(
  r: Reader,
  defs: Map<string, MeasurementDef>,
  sources: SourceDef[],
  packets: PacketDef[],
): void {
  const reserved = new Map<string, string>();
  for (const s of sources) {
    const mine = packets.filter((p) => p.source === s.name);
    for (const [n] of healthNames(s.name, s.kind, mine)) reserved.set(n, s.name);
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

export function build(
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
    apid: p.apid,
    // Stable sort: bit fields sharing a container keep their list order.
    fields: p.fields
      .map((f) => ({ measurement: indexOf.get(f.def)!, offset: f.offset, size: f.def.size! }))
      .sort((a, b) => a.offset - b.offset),
    expectedRateHz: p.rateHz,
    description: p.description,
  }));
  const sources: Source[] = sourceDefs.map((s) => {
    const mine = packets.filter((p) => p.source === s.name);
    const source: Source = {
      name: s.name,
      kind: s.kind,
      bind: s.bind,
      multicast: s.multicast,
      ports: [...new Set(mine.map((p) => p.port))].sort((a, b) => a - b),
      packets: mine.map((p) => p.index),
    };
    if (s.stream) {
      const sizes = mine.map((p) => p.size);
      source.stream = {
        ...s.stream,
        framing: {
          ...s.stream.framing,
          size: s.stream.framing.size ?? (sizes.length ? Math.max(...sizes) : undefined),
          minLength: sizes.length ? Math.min(...sizes) : 1,
          maxLength: sizes.length ? Math.max(...sizes) : 65507,
        },
      };
    }
    if (s.mqtt) {
      source.mqtt = {
        ...s.mqtt,
        topic: s.mqtt.topic ?? rawTopicFilter(DEFAULT_PREFIX, name, s.name),
      };
    }
    return source;
  });
  for (const s of sources) {
    const mine = s.packets.map((i) => packets[i]);
    for (const [hname, what, packet] of healthNames(s.name, s.kind, mine)) {
      const isCounter = HEALTH_COUNTERS.includes(what) || MQTT_HEALTH.includes(what) ||
        what === "seq_gaps";
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
export function measurement(m: Measurement): Measurement {
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

export const HEALTH_DESCRIPTIONS: Record<HealthKind, string> = {
  packets: "datagrams received (identified or not)",
  bytes: "bytes received",
  errors: "datagrams rejected: unknown id, wrong length, or otherwise malformed",
  drops: "raw packets the logger queue could not take (decoded, but missing from the log)",
  kernel_drops:
    "datagrams the kernel dropped before decom read them (receive buffer full): lost entirely",
  backlog_bytes:
    "bytes of raw packets decom holds for the logger (absent or slow), counted as allocated; " +
    "at the bound (64 MiB) new packets are dropped and counted in drops",
  connected: "MQTT: 1 while the broker connection is up and subscribed, else 0; serial and tcp: " +
    "streams open (the device or connection: 0 or 1; senders connected to a tcp listen)",
  gaps: "packets missing from the sequence numbers of the raw packets received over MQTT " +
    "(the publishing bridge lost or dropped them)",
  packet_rate: "datagrams per second over the last interval",
  age: "seconds since this packet was last received",
  seq_gaps: "CCSDS space packets of this APID missing from its sequence count (counted from the " +
    "gaps between consecutive packets, modulo 16384)",
};
