/**
 * What the config sections share: the keys each may hold, the name rules, and the definitions
 * read from the file before they are compiled into the model (`types.ts`).
 */
import type {
  Conversion,
  Endianness,
  HealthKind,
  Limits,
  MeasurementType,
  MqttSettings,
  PacketId,
  SourceKind,
  StreamSettings,
} from "./types.ts";
import type { Pos } from "./yaml_reader.ts";

/** Largest UDP payload over IPv4: no packet can be bigger. */
export const MAX_DATAGRAM = 65507;

export const TOP_KEYS = ["name", "description", "measurements", "telemetry_packets", "sources"];
export const MEASUREMENT_KEYS = [
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
export const BITS_KEYS = ["offset", "width"];
export const LIMIT_KEYS = ["warn_low", "warn_high", "alarm_low", "alarm_high"];
export const PACKET_KEYS = [
  "name",
  "description",
  "port",
  "source",
  "size",
  "apid",
  "id",
  "rate_hz",
  "measurements",
];
export const FIELD_KEYS = ["measurement", "offset", "padding"];
export const ID_KEYS = ["offset", "size", "endianness", "value"];
export const SOURCE_KEYS = ["name", "description", "type", "bind", "multicast"];
/** Keys of a `type: mqtt` source (instead of bind and multicast). */
export const MQTT_SOURCE_KEYS = [
  "name",
  "description",
  "type",
  "url",
  "topic",
  "qos",
  "username",
  "password_file",
  "client_id",
];
export const SOURCE_KINDS: readonly SourceKind[] = ["udp", "mqtt", "serial", "tcp"];
/** Keys of a `type: serial` source. */
export const SERIAL_SOURCE_KEYS = [
  "name",
  "description",
  "type",
  "device",
  "baud",
  "data_bits",
  "parity",
  "stop_bits",
  "flow_control",
  "framing",
];
/** Keys of a `type: tcp` source: one of connect and listen. */
export const TCP_SOURCE_KEYS = ["name", "description", "type", "connect", "listen", "framing"];
export const FRAMING_KEYS = [
  "type",
  "sync",
  "size",
  "length_bytes",
  "length_endianness",
  "crc",
  "crc_endianness",
];
export const TYPES: readonly MeasurementType[] = [
  "int",
  "uint",
  "float",
  "bool",
  "string",
  "bytes",
];
export const ENDIANNESS: readonly Endianness[] = ["big", "little"];
export const HEALTH_COUNTERS: readonly HealthKind[] = [
  "packets",
  "bytes",
  "errors",
  "drops",
  "kernel_drops",
  "backlog_bytes",
];

/** Health measurements of `type: mqtt` sources only. */
export const MQTT_HEALTH: readonly HealthKind[] = ["connected", "gaps"];

/**
 * Measurement keys and names: what users type in `subscribe`, so no spaces or quotes, and no
 * leading `-` (it would read as an option) or `.`/`:`. A leading digit is fine (`9Bytes`).
 */
export const MEASUREMENT_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.:-]*$/;
/** `MEASUREMENT_NAME` in words, for error messages. */
export const MEASUREMENT_NAME_RULE =
  "may hold only letters, digits and _ . : - and must start with a letter, a digit or _";
/**
 * Packet and source names: no dots, so that a health measurement `source.packet.age` splits one
 * way only, and no leading `-`, because a source name starts health names typed in `subscribe`.
 * A leading digit is fine: the Go ground software's benchmark has a packet `9Bytes`.
 */
export const PLAIN_NAME = /^[A-Za-z0-9_][A-Za-z0-9_-]*$/;
/** `PLAIN_NAME` in words, for error messages. */
export const PLAIN_NAME_RULE = "may hold only letters, digits, _ and - (no dots: health " +
  "measurements are named source.packet.age) and must start with a letter, a digit or _";

/** The name of the source holding every packet when a config has no `sources:` list. */
export const DEFAULT_SOURCE = "default";

/** A measurement as read from the file, before it has an index. */
export interface MeasurementDef {
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

export interface FieldDef {
  def: MeasurementDef;
  offset: number;
  pos: Pos;
}

export interface PacketDef {
  index: number;
  name: string;
  pos: Pos;
  port?: number;
  portPos: Pos;
  source?: string;
  sourcePos: Pos;
  declaredSize?: { size: number; pos: Pos };
  id?: PacketId;
  /** CCSDS APID (see `Packet.apid`); `id` is then the APID's bits. */
  apid?: number;
  idPos: Pos;
  idValuePos: Pos;
  rateHz?: number;
  description?: string;
  fields: FieldDef[];
  /** Where the last `{padding: N}` entry ends: trailing padding makes the packet longer. */
  paddingEnd?: { end: number; pos: Pos };
}

export interface SourceDef {
  name: string;
  pos: Pos;
  kind: SourceKind;
  bind: string;
  multicast?: string;
  /** For `type: mqtt`; the topic is undefined when it takes the default. */
  mqtt?: Omit<MqttSettings, "topic"> & { topic?: string };
  /** For `type: serial` and `type: tcp`; the packet lengths are filled in later. */
  stream?: StreamSettings;
}
