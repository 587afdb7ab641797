/**
 * The logger's side of decom's raw-packet queue (`ffi/src/logq.rs`): checks each `GSWQ`
 * message and turns its records into sealed log records, in place in the output buffer.
 */
import { MAX_STORED, pad8, RECORD_HEADER_LEN, sealRecord } from "./format.ts";

/** "GSWQ" little-endian: the first word of every queue message. */
export const QUEUE_MAGIC = 0x51575347;
export const QUEUE_VERSION = 1;
/** Message header: magic u32, version u16, record count u16, source u16, kind u8, 5 reserved. */
export const QUEUE_HEADER_LEN = 16;
/** Header offset of the message kind: records, or the hello that opens a connection. */
const KIND_OFFSET = 10;
const KIND_HELLO = 1;
/** Largest hello payload (`MAX_HELLO` in logq.rs). */
const MAX_HELLO = 4096;
/** Record header: the 32 bytes a log record keeps at its offsets 8–39 (same layout). */
export const QUEUE_RECORD_HEADER_LEN = 32;
/** Largest message decom sends (`MAX_MESSAGE` in logq.rs). */
export const MAX_QUEUE_MESSAGE = 128 * 1024;

/** Bytes a log record adds to a queue record: its sync word and checksum. */
const GROWTH = RECORD_HEADER_LEN - QUEUE_RECORD_HEADER_LEN;

/** Output bytes a message of `len` bytes can need at most (each record grows by 8 bytes). */
export function maxConverted(len: number): number {
  return len + Math.ceil(len / QUEUE_RECORD_HEADER_LEN) * GROWTH;
}

export interface Converted {
  /** Offset in `out` after the last record written. */
  end: number;
  records: number;
  /** Why the rest of the message was refused, if it was. */
  error?: string;
}

/**
 * Converts queue message `msg[0..len)` into log records at `out[at..]` (which must have
 * `maxConverted(len)` bytes free). Records before a malformed one are kept; the reason the
 * rest was refused is returned, so one bad message costs only itself.
 */
export function convertMessage(
  msg: Uint8Array,
  msgView: DataView,
  len: number,
  out: Uint8Array,
  outView: DataView,
  at: number,
): Converted {
  if (len < QUEUE_HEADER_LEN) {
    return { end: at, records: 0, error: `a ${len}-byte message is shorter than its header` };
  }
  if (msgView.getUint32(0, true) !== QUEUE_MAGIC) {
    return { end: at, records: 0, error: "a message without the GSWQ magic" };
  }
  const version = msgView.getUint16(4, true);
  if (version !== QUEUE_VERSION) {
    return {
      end: at,
      records: 0,
      error: `queue message version ${version}, this logger reads ${QUEUE_VERSION} ` +
        "(run decom and logger from the same gsw)",
    };
  }
  const count = msgView.getUint16(6, true);
  let p = QUEUE_HEADER_LEN;
  for (let i = 0; i < count; i++) {
    if (p + QUEUE_RECORD_HEADER_LEN > len) {
      return { end: at, records: i, error: `message ends at record ${i} of ${count}` };
    }
    const stored = msgView.getUint32(p + 12, true);
    const size = QUEUE_RECORD_HEADER_LEN + pad8(stored);
    if (stored > MAX_STORED || p + size > len) {
      return { end: at, records: i, error: `record ${i} of ${count} runs past its message` };
    }
    // Offsets 8–39 of a log record are the queue record's 32 header bytes, and the padded
    // payload follows both: one copy, then the sync word and checksum.
    out.set(msg.subarray(p, p + size), at + 8);
    at += sealRecord(out, outView, at);
    p += size;
  }
  return { end: at, records: count };
}

/** Who a decom is, said in the first message of its connection (`KIND_HELLO` in logq.rs). */
export interface Hello {
  /** Its data source's name. */
  source: string;
  /** sha256 (hex) of the config file it decodes with. */
  configHash: string;
  configFile: string;
  configName: string;
}

/** The payload of decom's hello. */
export function encodeHello(h: Hello): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(h));
}

/**
 * Reads message `msg[0..len)` as a hello: the hello, null if it is a message of records, or an
 * error string if it is a malformed hello.
 */
export function readHello(msg: Uint8Array, msgView: DataView, len: number): Hello | null | string {
  if (len < QUEUE_HEADER_LEN || msgView.getUint32(0, true) !== QUEUE_MAGIC) return null;
  if (msg[KIND_OFFSET] !== KIND_HELLO) return null;
  if (len - QUEUE_HEADER_LEN > MAX_HELLO) return `a ${len}-byte hello (at most ${MAX_HELLO})`;
  let h: Partial<Hello>;
  try {
    h = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(msg.subarray(16, len)));
  } catch (e) {
    return `a hello that is not UTF-8 JSON (${(e as Error).message})`;
  }
  const fields = ["source", "configHash", "configFile", "configName"] as const;
  if (typeof h !== "object" || h === null || fields.some((f) => typeof h[f] !== "string")) {
    return `a hello without ${fields.join(", ")} as strings`;
  }
  return h as Hello;
}

/** The record count a message header claims (for counting what a refused message held). */
export function claimedCount(msgView: DataView, len: number): number {
  return len >= QUEUE_HEADER_LEN ? msgView.getUint16(6, true) : 0;
}
