/**
 * The batch forms of the pipeline's hot paths: `Extractor` (decom: publish every measurement
 * of a receive batch in one call), `Fanout` (broker: copy every new value to every subscriber
 * in one call) and `LogQueue` (decom → logger raw packets, never blocking).
 */
import { NativeObject } from "./handle.ts";
import { check, checkPtr, native, utf8 } from "./library.ts";
import type { SegmentReader, SegmentWriter } from "./segment.ts";
import type { BroadcastWriter } from "./broadcast.ts";

/** "No channel on this link" in a link map, and "skip this datagram" in a type list. */
export const NONE = 0xffff_ffff;

/** One measurement's bytes within one packet type. */
export interface ExtractField {
  packet: number;
  measurement: number;
  offset: number;
  length: number;
}

export class Extractor extends NativeObject {
  readonly measurements: number;

  constructor(fields: readonly ExtractField[], packets: number, measurements: number) {
    const table = new Uint32Array(fields.length * 4);
    fields.forEach((f, i) => table.set([f.packet, f.measurement, f.offset, f.length], i * 4));
    const ptr = checkPtr(
      native().gsw_extractor_new(table, fields.length, packets, measurements),
      "creating the extractor",
    );
    super(ptr, (p) => native().gsw_extractor_free(p), "extractor");
    this.measurements = measurements;
  }

  /**
   * Publishes to `writer` from now on: `channelOf[m]` is measurement m's channel in it (or
   * NONE). The latest known values are published to it at once.
   */
  addLink(writer: SegmentWriter, channelOf: Uint32Array): void {
    check(
      native().gsw_extractor_add_link(this.handle, writer.handle, channelOf, channelOf.length),
      "attaching a reader",
    );
  }

  removeLink(writer: SegmentWriter): number {
    return check(
      native().gsw_extractor_remove_link(this.handle, writer.handle),
      "detaching a reader",
    );
  }

  /**
   * Publishes to the source's broadcast segment from now on (every value, and every datagram
   * into its packet ring): `channelOf[m]` is measurement m's channel in it (or NONE). The
   * latest known values are published to it at once.
   */
  setBroadcast(writer: BroadcastWriter, channelOf: Uint32Array): void {
    check(
      native().gsw_extractor_set_broadcast(
        this.handle,
        writer.handle,
        channelOf,
        channelOf.length,
      ),
      "setting the broadcast segment",
    );
  }

  /**
   * Publishes a receive batch that arrived on `port`: datagram i (at `buf[i * slot]`,
   * metadata at `meta[i * 32]`) is of packet type `types[i]` (or NONE: not identified, only
   * the broadcast ring gets it). Rings each link and bell at most once. Returns the values
   * published.
   */
  publishBatch(
    buf: Uint8Array,
    slot: number,
    meta: Uint8Array,
    types: Uint32Array,
    n: number,
    port = 0,
  ): number {
    // The native side trusts `n` for the length of `types`: check it here.
    if (!(n >= 0 && n <= types.length)) {
      throw new RangeError(`publishBatch: ${n} datagrams but ${types.length} packet types`);
    }
    return check(
      native().gsw_extractor_publish_batch(
        this.handle,
        buf,
        buf.byteLength,
        slot,
        meta,
        meta.byteLength,
        types,
        n,
        port,
      ),
      "publishing a batch",
    );
  }

  /** Publishes one value of a measurement no packet carries (decom's health) and rings. */
  publishValue(measurement: number, bytes: Uint8Array, timestampNs: bigint): void {
    check(
      native().gsw_extractor_publish_value(
        this.handle,
        measurement,
        bytes,
        bytes.byteLength,
        timestampNs,
      ),
      "publishing a value",
    );
  }
}

export interface PumpResult {
  taken: number;
  copied: number;
  /** Monotonic ns when a rate-limited value becomes due (0: none held). */
  nextDueNs: bigint;
}

export class Fanout extends NativeObject {
  readonly #out = new BigUint64Array(3);

  /** A fanout reading from `source` (it keeps its own reference to it). */
  constructor(source: SegmentReader) {
    const ptr = checkPtr(native().gsw_fanout_new(source.handle), "creating a fanout");
    super(ptr, (p) => native().gsw_fanout_free(p), "fanout");
  }

  /**
   * Routes source channel `src` to channel `dst` of `writer`, at most once per
   * `minIntervalNs`; the current value (if any) is sent at once.
   */
  add(src: number, writer: SegmentWriter, dst: number, minIntervalNs: bigint, nowNs: bigint): void {
    check(
      native().gsw_fanout_add(this.handle, src, writer.handle, dst, minIntervalNs, nowNs),
      "adding a route",
    );
  }

  /** Removes every route to `writer`. */
  remove(writer: SegmentWriter): number {
    return check(native().gsw_fanout_remove(this.handle, writer.handle), "removing routes");
  }

  /** Copies every new value to its routes and rings subscribers. */
  pump(nowNs: bigint): PumpResult {
    check(native().gsw_fanout_pump(this.handle, nowNs, this.#out), "pumping values");
    return {
      taken: Number(this.#out[0]),
      copied: Number(this.#out[1]),
      nextDueNs: this.#out[2],
    };
  }
}

export interface LogQueueStats {
  /** Packets handed to the kernel for the logger. */
  sent: number;
  /** Packets dropped because every buffer was full. */
  dropped: number;
  /** Bytes and packets held in the queue (the open message and unsent ones). */
  pendingBytes: number;
  pendingPackets: number;
  connected: boolean;
  /** Bytes of messages the kernel refused so far: wait for room, then `flush()`. */
  unsentBytes: number;
}

export class LogQueue extends NativeObject {
  readonly #out = new BigUint64Array(6);

  /**
   * A queue tagging records with `source`, buffering up to `maxPending` bytes itself, and
   * holding records at most `maxAgeMs` to send several batches in one message (0: send every
   * batch at once). Call `flushDue()` when that time is up.
   */
  constructor(source: number, maxPending: number, maxAgeMs = 0) {
    const ptr = checkPtr(
      native().gsw_logq_new(source, maxPending, maxAgeMs),
      "creating the log queue",
    );
    super(ptr, (p) => native().gsw_logq_free(p), "log queue");
  }

  /** Connects to the logger at `path` (throws if it is not there). */
  connect(path: string): void {
    const p = utf8(path);
    check(native().gsw_logq_connect(this.handle, p, p.byteLength), `connecting to ${path}`);
  }

  /**
   * Sets what the queue says first on every later connection (at most 4096 bytes): decom
   * tells the logger its source and config hash, so a logger recording with another config
   * says so.
   */
  setHello(payload: Uint8Array): void {
    check(
      native().gsw_logq_set_hello(this.handle, payload, payload.byteLength),
      "setting the log queue's hello",
    );
  }

  disconnect(): void {
    check(native().gsw_logq_disconnect(this.handle), "disconnecting the log queue");
  }

  /** The connection's descriptor, or null when not connected. */
  fd(): number | null {
    const r = native().gsw_logq_fd(this.handle);
    return r < 0 ? null : r;
  }

  /** Queues a receive batch for the logger; returns packets dropped now. Never blocks. */
  forward(
    buf: Uint8Array,
    slot: number,
    meta: Uint8Array,
    n: number,
    dstPort: number,
  ): number {
    return check(
      native().gsw_logq_forward(
        this.handle,
        buf,
        buf.byteLength,
        slot,
        meta,
        meta.byteLength,
        n,
        dstPort,
      ),
      "queueing raw packets",
    );
  }

  /** Sends buffered messages; returns bytes still buffered. */
  flush(): number {
    return check(native().gsw_logq_flush(this.handle), "flushing the log queue");
  }

  /**
   * Sends records held `maxAgeMs` and what the kernel can take of the buffered messages.
   * Returns the milliseconds until more records fall due (-1: none held), and whether the
   * kernel refused messages that wait for the socket to have room (then watch it for
   * writability and call `flush()`).
   */
  flushDue(): { dueMs: number; unsent: boolean } {
    const r = check(native().gsw_logq_flush_due(this.handle), "flushing the log queue");
    const ms = r & 0x3fff_ffff;
    return { dueMs: ms === 0x3fff_ffff ? -1 : ms, unsent: (r & (1 << 30)) !== 0 };
  }

  /** Sends everything held, now (at shutdown); returns bytes still buffered. */
  finish(): number {
    return check(native().gsw_logq_finish(this.handle), "flushing the log queue");
  }

  stats(): LogQueueStats {
    check(native().gsw_logq_stats(this.handle, this.#out), "log queue stats");
    const o = this.#out;
    return {
      sent: Number(o[0]),
      dropped: Number(o[1]),
      pendingBytes: Number(o[2]),
      pendingPackets: Number(o[3]),
      connected: o[4] === 1n,
      unsentBytes: Number(o[5]),
    };
  }
}
