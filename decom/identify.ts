/**
 * Which packet type a datagram is: by the port it arrived on, the id field (or CCSDS APID) when
 * several packet types share a port, and its exact length. Shared by decom (live), export and tests
 * (logged), so a log decodes exactly as the live stream did.
 */
import type { Config, Packet, PacketId } from "../config/mod.ts";

/** Why a datagram matched no packet type (negative, so a verdict fits one number). */
export const UNKNOWN_PORT = -1;
export const UNKNOWN_ID = -2;
export const WRONG_LENGTH = -3;
export const OVERSIZE = -4;
/** A message on an MQTT source's topic that is not a raw packet (see docs/mqtt.md). */
export const MALFORMED = -5;
/** Bytes of a serial or TCP stream that are no packet (garbage, a cut or broken frame). */
export const UNFRAMED = -6;
/** A COBS or SLIP frame of a serial or TCP stream whose CRC failed. */
export const BAD_CRC = -7;

export type Rejection =
  | typeof UNKNOWN_PORT
  | typeof UNKNOWN_ID
  | typeof WRONG_LENGTH
  | typeof OVERSIZE
  | typeof MALFORMED
  | typeof UNFRAMED
  | typeof BAD_CRC;

/** Human words for a rejection, for logs and counters. */
export const REJECTION_NAMES: Record<Rejection, string> = {
  [UNKNOWN_PORT]: "unknown port",
  [UNKNOWN_ID]: "unknown packet id",
  [WRONG_LENGTH]: "wrong length",
  [OVERSIZE]: "oversize (truncated by the receive buffer)",
  [MALFORMED]: "not a gsw raw packet",
  [UNFRAMED]: "unframed bytes (garbage, or a packet cut or failing its CRC)",
  [BAD_CRC]: "bad CRC",
};

/**
 * Flags of a record (decom's receive metadata, the log's flags field) set where it was
 * received: bit 0 truncated (`udp.rs`), bit 8 not a raw packet (`mqtt.rs`), bit 9 a stream
 * frame failing its CRC and bit 10 bytes of a stream that are no packet (`stream.rs`).
 */
const FLAG_TRUNCATED = 1;
const FLAG_MALFORMED = 1 << 8;
const FLAG_BAD_CRC = 1 << 9;
const FLAG_UNFRAMED = 1 << 10;

interface PortRule {
  /** Packets on this port without an id field (at most one, by config validation). */
  plain: Packet | undefined;
  /** Packets on this port told apart by an id field. */
  withId: Packet[];
}

function readId(id: PacketId, data: Uint8Array, offset: number): number {
  let v = 0;
  if (id.endianness === "big") {
    for (let i = 0; i < id.size; i++) v = v * 256 + data[offset + id.offset + i];
  } else {
    for (let i = id.size - 1; i >= 0; i--) v = v * 256 + data[offset + id.offset + i];
  }
  return v;
}

/**
 * Identifies datagrams for the packets of `sourceName` (or of every source when omitted).
 * `identify(port, data, offset, length, truncated)` returns the packet index, or a negative
 * Rejection. `data[offset .. offset + length]` is the datagram.
 */
export class Identifier {
  readonly #ports = new Map<number, PortRule>();

  constructor(config: Config, sourceName?: string) {
    for (const p of config.packets) {
      if (sourceName !== undefined && p.source !== sourceName) continue;
      let rule = this.#ports.get(p.port);
      if (!rule) this.#ports.set(p.port, rule = { plain: undefined, withId: [] });
      if (p.id) rule.withId.push(p);
      else rule.plain = p;
    }
  }

  /** Ports with at least one packet type. */
  get ports(): number[] {
    return [...this.#ports.keys()].sort((a, b) => a - b);
  }

  /** `identify` for a record with its flags: what its receiver already refused stays refused. */
  identifyRecord(
    port: number,
    data: Uint8Array,
    offset: number,
    length: number,
    flags: number,
  ): number {
    if (flags & FLAG_MALFORMED) return MALFORMED;
    if (flags & FLAG_UNFRAMED) return UNFRAMED;
    if (flags & FLAG_BAD_CRC) return BAD_CRC;
    return this.identify(port, data, offset, length, (flags & FLAG_TRUNCATED) !== 0);
  }

  identify(
    port: number,
    data: Uint8Array,
    offset: number,
    length: number,
    truncated: boolean,
  ): number {
    if (truncated) return OVERSIZE;
    const rule = this.#ports.get(port);
    if (!rule) return UNKNOWN_PORT;
    for (const p of rule.withId) {
      const id = p.id!;
      if (length < id.offset + id.size) continue;
      const v = readId(id, data, offset);
      // Masks cover at most 16 bits (a CCSDS APID), so the bitwise AND is exact.
      if ((id.mask === undefined ? v : v & id.mask) === id.value) {
        return length === p.size ? p.index : WRONG_LENGTH;
      }
    }
    if (rule.plain) return length === rule.plain.size ? rule.plain.index : WRONG_LENGTH;
    return UNKNOWN_ID;
  }
}
