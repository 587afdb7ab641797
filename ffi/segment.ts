/**
 * Channels from TypeScript: a `SegmentWriter` publishes values into the channels of one
 * shared-memory segment, a `SegmentReader` (in the same or another process, attached from the
 * three descriptors) takes the newest value of each. See `ffi/src/segment.rs` for the layout
 * and `ffi/src/protocol.rs` for why it never blocks and never tears.
 */
import { closedError, NativeObject } from "./handle.ts";
import { check, checkPtr, native, nativeError } from "./library.ts";
import type { Symbols } from "./symbols.ts";

/**
 * The library's symbols, bound once the first segment exists: the hot calls below read them
 * from here rather than through `native()` per call (a measurable share of a ~30 ns call).
 */
let S: Symbols;

/** Bytes before each value in a record written by the native reader. */
export const RECORD_HEADER_LEN = 32;

/** One channel of a segment: how many payload bytes it carries and the caller's tag. */
export interface ChannelSpec {
  capacity: number;
  /** Caller's identifier for the channel, e.g. a measurement index. */
  id: number;
}

/** Offsets in a record written by `takeInto` / `takePending` (all little-endian). */
export const RECORD = {
  /** u64: the writer's sequence number. */
  SEQ: 0,
  /** u64: the writer's timestamp, ns. */
  TIMESTAMP: 8,
  /** u64: updates skipped since the previous take. */
  SKIPPED: 16,
  /** u32: payload length. */
  LENGTH: 24,
  /** u32: channel index. */
  CHANNEL: 28,
  /** The payload starts here. */
  PAYLOAD: 32,
} as const;

/** One value taken from a channel. */
export interface Sample {
  channel: number;
  /** Writer's sequence number: increases by one per publish of this measurement. */
  seq: number;
  /** Writer's timestamp in nanoseconds (CLOCK_REALTIME receive time for telemetry). */
  timestampNs: bigint;
  /** Publishes since the previous value this reader took that it never saw. */
  skipped: number;
  /** The value's bytes (a copy, unless documented otherwise). */
  bytes: Uint8Array;
}

/** The three descriptors that make a segment, in the order they are passed around. */
export type SegmentFds = [data: number, control: number, doorbell: number];

/** Reads record `at` of `buf` (written by the native reader) without copying the payload. */
export function readRecord(
  view: DataView,
  buf: Uint8Array,
  at: number,
): { sample: Sample; next: number } {
  const len = view.getUint32(at + 24, true);
  const sample: Sample = {
    seq: Number(view.getBigUint64(at, true)),
    timestampNs: view.getBigUint64(at + 8, true),
    skipped: Number(view.getBigUint64(at + 16, true)),
    channel: view.getUint32(at + 28, true),
    bytes: buf.subarray(at + RECORD_HEADER_LEN, at + RECORD_HEADER_LEN + len),
  };
  return { sample, next: at + RECORD_HEADER_LEN + Math.ceil(len / 8) * 8 };
}

/** The writing side of a segment. Use from one thread. */
export class SegmentWriter extends NativeObject {
  readonly channels: number;
  readonly #stats = new BigUint64Array(3);
  /** The handle for the hot calls (null once closed: the library then refuses it). */
  #h: Deno.PointerObject | null;

  private constructor(ptr: Deno.PointerObject, channels: number) {
    super(ptr, (p) => native().gsw_writer_free(p), "segment writer");
    this.channels = channels;
    this.#h = ptr;
    S = native();
  }

  override close(): void {
    this.#h = null;
    super.close();
  }

  /** Creates a segment with one channel per spec (memfds sealed, doorbell eventfd). */
  static create(channels: readonly ChannelSpec[]): SegmentWriter {
    const caps = new Uint32Array(channels.map((c) => c.capacity));
    const ids = new Uint32Array(channels.map((c) => c.id));
    const ptr = checkPtr(
      native().gsw_writer_create(caps, ids, channels.length),
      "creating a shared-memory segment",
    );
    return new SegmentWriter(ptr, channels.length);
  }

  /** Descriptors to send to the reader (until `releaseFds`). */
  fds(): SegmentFds {
    const out = new Int32Array(3);
    check(native().gsw_writer_fds(this.handle, out), "segment descriptors");
    return [out[0], out[1], out[2]];
  }

  /** Closes this side's copies of the memfds once the reader has them. */
  releaseFds(): void {
    check(native().gsw_writer_release_fds(this.handle), "releasing segment descriptors");
  }

  /**
   * Publishes `bytes` as the newest value of `channel` and rings the reader's doorbell if it
   * may be asleep. Never blocks. Returns whether it rang.
   */
  publish(channel: number, bytes: Uint8Array, seq: bigint, timestampNs: bigint): boolean {
    const r = S.gsw_writer_publish(this.#h, channel, bytes, bytes.byteLength, seq, timestampNs);
    if (r < 0) throw this.#fail(r, "publish");
    return r === 1;
  }

  /** Publishes without ringing; call `ring()` once after a batch. */
  publishQuiet(channel: number, bytes: Uint8Array, seq: bigint, timestampNs: bigint): void {
    const r = S.gsw_writer_publish_quiet(
      this.#h,
      channel,
      bytes,
      bytes.byteLength,
      seq,
      timestampNs,
    );
    if (r < 0) throw this.#fail(r, "publish");
  }

  /** The error of a failed hot call: "already closed" if it was, else the library's. */
  #fail(r: number, op: string): Error {
    return this.#h === null ? closedError("segment writer") : nativeError(r, op);
  }

  /** Rings the doorbell if some publish since the last ring found the reader idle. */
  ring(): boolean {
    return check(native().gsw_writer_ring(this.handle), "ringing the doorbell") === 1;
  }

  stats(): { publishes: number; rings: number } {
    check(native().gsw_writer_stats(this.handle, this.#stats), "writer stats");
    return { publishes: Number(this.#stats[0]), rings: Number(this.#stats[1]) };
  }
}

/** The reading side of a segment. Use from one thread. */
export class SegmentReader extends NativeObject {
  readonly channels: number;
  /** The doorbell eventfd: readable when the writer rang (for a waitset). */
  readonly doorbellFd: number;
  /** Bytes `takePending` needs to return every channel at once. */
  readonly batchCapacity: number;
  readonly #specs: ChannelSpec[];
  readonly #one: Uint8Array;
  readonly #oneView: DataView;
  #batch: Uint8Array;
  #batchView: DataView;
  /** The handle for the hot calls (null once closed: the library then refuses it). */
  #h: Deno.PointerObject | null;

  private constructor(ptr: Deno.PointerObject) {
    super(ptr, (p) => native().gsw_reader_free(p), "segment reader");
    this.#h = ptr;
    S = native();
    const info = new Uint32Array(3);
    check(native().gsw_reader_info(ptr, info), "segment info");
    this.channels = info[0];
    this.doorbellFd = info[1];
    this.batchCapacity = info[2];
    const ch = new Uint32Array(2);
    this.#specs = [];
    let largest = 0;
    for (let i = 0; i < this.channels; i++) {
      check(native().gsw_reader_channel(ptr, i, ch), "segment channel");
      this.#specs.push({ capacity: ch[0], id: ch[1] });
      largest = Math.max(largest, ch[0]);
    }
    this.#one = new Uint8Array(RECORD_HEADER_LEN + Math.ceil(largest / 8) * 8);
    this.#oneView = new DataView(this.#one.buffer);
    this.#batch = new Uint8Array(Math.max(this.batchCapacity, RECORD_HEADER_LEN));
    this.#batchView = new DataView(this.#batch.buffer);
  }

  /**
   * Attaches to a segment from its descriptors (as received over a socket), taking ownership
   * of all three. Refuses anything that is not a complete, sealed gsw segment.
   */
  static attach(fds: SegmentFds): SegmentReader {
    const ptr = checkPtr(
      native().gsw_reader_attach(fds[0], fds[1], fds[2]),
      "attaching to a shared-memory segment",
    );
    return new SegmentReader(ptr);
  }

  channel(index: number): ChannelSpec {
    const spec = this.#specs[index];
    if (!spec) throw new RangeError(`channel ${index} does not exist (${this.channels} channels)`);
    return spec;
  }

  override close(): void {
    this.#h = null;
    super.close();
  }

  /** The error of a failed hot call: "already closed" if it was, else the library's. */
  #fail(r: number, op: string): Error {
    return this.#h === null ? closedError("segment reader") : nativeError(r, op);
  }

  /**
   * Takes the newest value of `channel` into `record` without allocating: the record layout
   * is `RECORD` (header, then the payload at `RECORD.PAYLOAD`). Returns the payload length,
   * or -1 if nothing new was published. `record` needs `RECORD.PAYLOAD` + the channel's
   * capacity rounded up to 8 bytes; a smaller one is refused before anything is taken.
   */
  takeInto(channel: number, record: Uint8Array): number {
    const r = S.gsw_reader_take(this.#h, channel, record, record.byteLength);
    if (r < 0) throw this.#fail(r, "take");
    if (r === 0) return -1;
    return record[24] | (record[25] << 8) | (record[26] << 16) | (record[27] << 24);
  }

  /** Takes the newest value of `channel` if a new one was published; null otherwise. */
  take(channel: number): Sample | null {
    const r = native().gsw_reader_take(this.handle, channel, this.#one, this.#one.byteLength);
    return this.#copyOne(r, "take");
  }

  /** The newest value this reader has taken for `channel`, or null if it never took one. */
  current(channel: number): Sample | null {
    const r = native().gsw_reader_current(this.handle, channel, this.#one, this.#one.byteLength);
    return this.#copyOne(r, "current");
  }

  /** The sample a single-value call wrote into `#one` (copied out), or null if it wrote none. */
  #copyOne(result: number, op: string): Sample | null {
    if (check(result, op) === 0) return null;
    const { sample } = readRecord(this.#oneView, this.#one, 0);
    sample.bytes = sample.bytes.slice();
    return sample;
  }

  /**
   * Drains the doorbell and takes every channel with a new value, calling `visit` for each.
   * `sample.bytes` is a view valid only during the call. Returns how many values were taken;
   * zero means nothing is pending and the reader may sleep on the doorbell.
   */
  takePending(visit: (sample: Sample) => void): number {
    const n = S.gsw_reader_take_pending(this.#h, this.#batch, this.#batch.byteLength);
    if (n < 0) throw this.#fail(n, "take pending");
    let at = 0;
    for (let i = 0; i < n; i++) {
      const { sample, next } = readRecord(this.#batchView, this.#batch, at);
      visit(sample);
      at = next;
    }
    return n;
  }

  /**
   * Blocks the calling thread until the doorbell rings or `timeoutMs` passes (negative:
   * forever). For a dedicated worker; an event loop should use a Waitset instead.
   */
  waitSync(timeoutMs: number): boolean {
    return check(native().gsw_reader_wait(this.handle, timeoutMs), "wait") === 1;
  }
}
