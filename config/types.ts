/**
 * The compiled vehicle config: the validated, position-free model that decom, broker, logger,
 * subscribers and the simulator consume. `config/load.ts` builds it from YAML.
 */

/** One problem found in a config file. `line` and `col` are 1-based. */
export interface Diagnostic {
  file: string;
  line: number;
  col: number;
  severity: "error" | "warning";
  /** What is wrong and what to do about it, in one sentence or two. */
  message: string;
}

// Optional fields of the model objects are present with the value undefined when absent, so
// that all objects of a kind share one shape (fast property reads in decode loops).

/** The raw value types a measurement can have. `uint` is `int` with `unsigned: true`. */
export type MeasurementType = "int" | "uint" | "float" | "bool" | "string" | "bytes";

export type Endianness = "big" | "little";

/** Raw value to engineering value. Polynomial: c0 + c1·x + c2·x² + … */
export type Conversion =
  | { kind: "linear"; scale: number; offset: number }
  | { kind: "polynomial"; coefficients: number[] };

/** Limits in engineering units; any subset may be present. */
export interface Limits {
  warnLow?: number;
  warnHigh?: number;
  alarmLow?: number;
  alarmHigh?: number;
}

/** What a synthetic health measurement counts (see `Measurement.health`). */
export type HealthKind =
  | "packets"
  | "bytes"
  | "errors"
  | "drops"
  | "kernel_drops"
  | "backlog_bytes"
  | "connected"
  | "gaps"
  | "packet_rate"
  | "age"
  | "seq_gaps";

export interface Measurement {
  /** Position in `Config.measurements`; stable for a given file, used as the channel id. */
  index: number;
  /** The map key under `measurements:` (for health measurements, equal to `name`). */
  key: string;
  /** The `name:` field, or the key when there is none. Subscribers may use either. */
  name: string;
  type: MeasurementType;
  /**
   * Bytes of the raw value as published on the measurement's channel: the value's own size,
   * or for a bit field the size of its container (the field is extracted when decoding).
   */
  size: number;
  endianness: Endianness;
  /** Bit field inside the `size`-byte container; bit 0 is the container's least significant bit. */
  bits?: { offset: number; width: number };
  /** Raw integer value (decimal string) → label. */
  enum?: Record<string, string>;
  conversion?: Conversion;
  unit?: string;
  limits?: Limits;
  /**
   * Updates per second to expect: the measurement's own `rate_hz`, else the sum of the rates of
   * the packets carrying it. Undefined when nothing says; stale-data detection then does nothing.
   */
  expectedRateHz?: number;
  description?: string;
  /**
   * Set only on the synthetic link-health measurements that decom publishes for each source.
   * `packet` is the packet index for `age`.
   */
  health?: { source: string; what: HealthKind; packet?: number };
  /** Indices of the packets carrying this measurement (empty for health measurements). */
  packets: number[];
}

/** Where a packet carries one measurement: `size` bytes at `offset`, copied as the raw value. */
export interface PacketField {
  measurement: number;
  offset: number;
  size: number;
}

/** An id field: the `size` bytes at `offset`, read as an unsigned integer, equal `value`. */
export interface PacketId {
  offset: number;
  size: number;
  endianness: Endianness;
  value: number;
  /** Only these bits of the field count (a CCSDS APID: 0x07FF of bytes 0–1); all when absent. */
  mask?: number;
}

export interface Packet {
  /** Position in `Config.packets`. */
  index: number;
  name: string;
  /** Name of the `Source` receiving it. */
  source: string;
  port: number;
  /** Exact expected datagram length in bytes; anything else is counted as an error. */
  size: number;
  /** Present when the packet must be told apart from others on its port (or wants checking). */
  id?: PacketId;
  /**
   * A CCSDS space packet's APID (0–2047), when the config identifies the packet by it: then `id`
   * is bits 0–10 of bytes 0–1 (big-endian), and decom counts gaps in the 14-bit sequence count
   * of bytes 2–3 (health measurement `<source>.<packet>.seq_gaps`).
   */
  apid?: number;
  /** Byte ranges to copy, sorted by offset (bit fields sharing a container stay in list order). */
  fields: PacketField[];
  /** Packets per second the vehicle sends; the simulator sends at this rate. */
  expectedRateHz?: number;
  description?: string;
}

/** How decom receives a source's packets. */
export type SourceKind = "udp" | "mqtt" | "serial" | "tcp";

/** How a serial or TCP source's byte stream is cut into packets (see docs/config.md). */
export interface FramingSettings {
  kind: "sync" | "length" | "cobs" | "slip";
  /** sync: the sync word's bytes and the packet size after it (every packet of the source's). */
  sync?: number[];
  size?: number;
  /** length: bytes of the length field (1, 2 or 4), big-endian unless false. */
  lengthBytes: number;
  lengthBig: boolean;
  crc: "none" | "crc16-ccitt" | "crc32c";
  crcBig: boolean;
  /** The source's shortest and longest packet: a length outside is garbage. */
  minLength: number;
  maxLength: number;
}

/** Where a `type: serial` or `type: tcp` source reads its bytes. */
export interface StreamSettings {
  /** serial: the device, e.g. /dev/ttyUSB0, and its line settings. */
  device?: string;
  baud: number;
  dataBits: number;
  parity: "none" | "even" | "odd";
  stopBits: number;
  flowControl: "none" | "rtscts" | "xonxoff";
  /** tcp: the address decom connects to, or listens on for senders. */
  connect?: { host: string; port: number };
  listen?: { host: string; port: number };
  framing: FramingSettings;
}

/** Where a `type: mqtt` source's decom subscribes (see docs/mqtt.md). */
export interface MqttSettings {
  /** As written, e.g. `mqtt://field-station.local:1883`. */
  url: string;
  host: string;
  port: number;
  /** Topic filter of the raw packets (default `gsw/<config name>/raw/<source name>/#`). */
  topic: string;
  qos: 0 | 1;
  username?: string;
  /** A file holding the password (its first line); never the password itself. */
  passwordFile?: string;
  /** Default `gsw-<config name>-<source>-<pid>`. */
  clientId?: string;
}

export interface Source {
  name: string;
  kind: SourceKind;
  /** For `type: mqtt` sources. */
  mqtt?: MqttSettings;
  /** For `type: serial` and `type: tcp` sources (their packets' port is 0). */
  stream?: StreamSettings;
  /** Local address decom binds (`0.0.0.0` by default; unused by mqtt sources). */
  bind: string;
  /** Multicast group decom joins, if any. */
  multicast?: string;
  /** Distinct ports of its packets, ascending. */
  ports: number[];
  /** Indices of its packets. */
  packets: number[];
}

export interface Config {
  name: string;
  description?: string;
  /** The path the config was loaded from, as given. */
  file: string;
  /** sha256 of the file bytes, hex: lets a log or a peer check it decodes with the same config. */
  hash: string;
  /** User measurements in file order, then the health measurements of each source. */
  measurements: Measurement[];
  packets: Packet[];
  sources: Source[];
  warnings: Diagnostic[];
}

/** Thrown by `loadConfig`/`parseConfig` when a config has errors; carries every diagnostic. */
export class ConfigError extends Error {
  override name = "ConfigError";
  constructor(readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map(formatDiagnostic).join("\n"));
  }
}

/** `file:line:col: severity: message`, the form editors and terminals link to. */
export function formatDiagnostic(d: Diagnostic): string {
  return `${d.file}:${d.line}:${d.col}: ${d.severity}: ${d.message}`;
}
