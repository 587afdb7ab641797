/**
 * The MQTT source from TypeScript (`ffi/src/mqtt.rs`): a native subscribe-only MQTT 3.1.1
 * client that decom drives from its own waitset, so packets that arrive through an MQTT broker
 * take the same path as UDP datagrams, and nothing about the broker ever blocks decom. Also
 * the raw packet payload format the bridge publishes and the source reads (`docs/mqtt.md`).
 */
import { NativeObject } from "./handle.ts";
import { check, checkPtr, native } from "./library.ts";

/** "GSWR": the first bytes of a raw packet message. */
export const RAW_MAGIC = [0x47, 0x53, 0x57, 0x52];
export const RAW_VERSION = 1;
/** Bytes of header before the datagram in a raw packet message. */
export const RAW_HEADER_LEN = 40;
/** Metadata flag of a message on the source topic that is not a raw packet. */
export const FLAG_MALFORMED = 1 << 8;
/** What `watch()` asks the waitset to wait for. */
export const WANT_READ = 1;
export const WANT_WRITE = 2;

export interface MqttSourceOptions {
  host: string;
  port: number;
  clientId: string;
  username?: string;
  password?: Uint8Array;
  /** Topic filter of the raw packets, e.g. `gsw/rocket/raw/vehicle/#`. */
  topic: string;
  qos: 0 | 1;
  /** Seconds between keep-alive pings when nothing else is said (default 10). */
  keepaliveS?: number;
}

export interface MqttSourceStats {
  connected: boolean;
  /** Raw packets delivered. */
  messages: number;
  /** Messages on the topic that were not raw packets (delivered flagged FLAG_MALFORMED). */
  malformed: number;
  /** Packets missing from the publisher's sequence numbers. */
  gaps: number;
  /** Connections made. */
  connections: number;
  /** Times a stream's sequence numbers went back (its publisher restarted). */
  restarts: number;
}

export interface MqttWatch {
  /** The socket to watch, -1 while waiting to reconnect. */
  fd: number;
  /** WANT_READ | WANT_WRITE. */
  interest: number;
  /** Changes whenever a new socket is opened: its predecessor left the waitset when closed. */
  attempt: number;
}

/** A raw packet message, as the bridge publishes it. */
export interface RawPacketMessage {
  /** Per-source sequence number (1-based; lets a receiver count gaps). */
  seq: bigint;
  timestampNs: bigint;
  srcAddress: string;
  srcPort: number;
  /** Destination port on the first machine (0 for stream sources). */
  port: number;
  /** The datagram's length on the wire (more than `bytes` only if it was cut). */
  origLength: number;
  flags: number;
  bytes: Uint8Array;
}

function field(parts: Uint8Array[], value: Uint8Array | string | undefined): void {
  const len = new Uint8Array(4);
  if (value === undefined) {
    new DataView(len.buffer).setUint32(0, 0xffffffff, true);
    parts.push(len);
    return;
  }
  const bytes = typeof value === "string" ? new TextEncoder().encode(value) : value;
  new DataView(len.buffer).setUint32(0, bytes.byteLength, true);
  parts.push(len, bytes);
}

export class MqttSource extends NativeObject {
  readonly #watch = new Uint8Array(12);
  readonly #stats = new BigUint64Array(6);
  readonly #line = new Uint8Array(1024);

  constructor(opts: MqttSourceOptions) {
    const parts: Uint8Array[] = [];
    field(parts, opts.host);
    field(parts, opts.clientId);
    field(parts, opts.username);
    field(parts, opts.password);
    field(parts, opts.topic);
    const buf = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
    let at = 0;
    for (const p of parts) {
      buf.set(p, at);
      at += p.byteLength;
    }
    const ptr = checkPtr(
      native().gsw_mqtt_new(buf, buf.byteLength, opts.port, opts.qos, opts.keepaliveS ?? 10),
      "creating the MQTT source",
    );
    super(ptr, (p) => native().gsw_mqtt_free(p), "MQTT source");
  }

  /** Does what is due; returns the milliseconds until it must run again. */
  service(): number {
    return check(native().gsw_mqtt_service(this.handle), "servicing the MQTT source");
  }

  watch(): MqttWatch {
    check(native().gsw_mqtt_watch(this.handle, this.#watch), "reading the MQTT socket");
    const v = new DataView(this.#watch.buffer);
    return {
      fd: v.getInt32(0, true),
      interest: v.getUint32(4, true),
      attempt: v.getUint32(8, true),
    };
  }

  /**
   * Takes received raw packets into a batch laid out as `Batch.recv` lays it out, all of one
   * destination port (metadata offset 28). Returns how many (0: none).
   */
  recv(buf: Uint8Array, slot: number, meta: Uint8Array): number {
    return check(
      native().gsw_mqtt_recv(this.handle, buf, buf.byteLength, slot, meta, meta.byteLength),
      "receiving MQTT messages",
    );
  }

  stats(): MqttSourceStats {
    check(native().gsw_mqtt_stats(this.handle, this.#stats), "reading MQTT counters");
    const s = this.#stats;
    return {
      connected: s[0] !== 0n,
      messages: Number(s[1]),
      malformed: Number(s[2]),
      gaps: Number(s[3]),
      connections: Number(s[4]),
      restarts: Number(s[5]),
    };
  }

  /** Lines worth logging since the last call (connected, lost, refused…), oldest first. */
  events(): string[] {
    const out: string[] = [];
    for (;;) {
      const n = check(
        native().gsw_mqtt_next_event(this.handle, this.#line, this.#line.byteLength),
        "reading MQTT events",
      );
      if (n === 0) return out;
      out.push(new TextDecoder().decode(this.#line.subarray(0, n)));
    }
  }
}

/** Encodes a raw packet message (header, then the datagram). */
export function encodeRawPacket(p: RawPacketMessage): Uint8Array {
  const out = new Uint8Array(RAW_HEADER_LEN + p.bytes.byteLength);
  const v = new DataView(out.buffer);
  out.set(RAW_MAGIC, 0);
  out[4] = RAW_VERSION;
  out[5] = p.flags & 0xff;
  v.setBigUint64(8, p.seq, true);
  v.setBigUint64(16, p.timestampNs, true);
  const ip = p.srcAddress.split(".").map(Number);
  for (let i = 0; i < 4; i++) out[24 + i] = ip[i] ?? 0;
  v.setUint16(28, p.srcPort, true);
  v.setUint16(30, p.port, true);
  v.setUint32(32, Math.max(p.origLength, p.bytes.byteLength), true);
  out.set(p.bytes, RAW_HEADER_LEN);
  return out;
}

/** Decodes a raw packet message; undefined if it is not one. */
export function decodeRawPacket(msg: Uint8Array): RawPacketMessage | undefined {
  if (msg.byteLength < RAW_HEADER_LEN || msg[4] !== RAW_VERSION) return undefined;
  if (RAW_MAGIC.some((b, i) => msg[i] !== b)) return undefined;
  const v = new DataView(msg.buffer, msg.byteOffset, msg.byteLength);
  const bytes = msg.subarray(RAW_HEADER_LEN);
  const origLength = v.getUint32(32, true);
  if (origLength < bytes.byteLength) return undefined;
  return {
    flags: msg[5],
    seq: v.getBigUint64(8, true),
    timestampNs: v.getBigUint64(16, true),
    srcAddress: `${msg[24]}.${msg[25]}.${msg[26]}.${msg[27]}`,
    srcPort: v.getUint16(28, true),
    port: v.getUint16(30, true),
    origLength,
    bytes,
  };
}
