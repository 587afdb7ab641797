/**
 * Broadcast segments from TypeScript (`ffi/src/broadcast.rs`): decom's `BroadcastWriter`
 * publishes every value and every datagram once, whatever the number of readers; a
 * `BroadcastReader` (attached from the descriptors, in any process) reads the latest values of
 * the channels it follows and the packet ring from its own cursor, and sleeps on the bells
 * through a Waitset (`addBell`).
 */
import { NativeObject, OwnedFd } from "./handle.ts";
import { check, checkPtr, native } from "./library.ts";
import { readRecord, RECORD_HEADER_LEN, type Sample } from "./segment.ts";
import type { Symbols } from "./symbols.ts";

/** Bound once the first reader exists, for the hot calls. */
let S: Symbols;

/** One channel of a broadcast segment. */
export interface BroadcastChannelSpec {
  capacity: number;
  /** Caller's identifier, e.g. a measurement index. */
  id: number;
  /** The bell its changes ring. */
  bell: number;
}

/** Default packet ring size: ~40 000 datagrams of 64 bytes, ~4 s of a 1 MB/s link. */
export const DEFAULT_RING_SIZE = 4 << 20;
/** Ring sizes a segment accepts: powers of two in this range. */
export const MIN_RING_SIZE = 1 << 18;
export const MAX_RING_SIZE = 1 << 30;

/** Offsets in a packet-ring record (all little-endian); the payload is padded to 8 bytes. */
export const RING_RECORD = {
  /** u64: the record's ring position. */
  POSITION: 0,
  /** u64: datagram number since decom started (1-based, one more per datagram). */
  SEQ: 8,
  /** u32: bytes of the whole record (header, payload, padding). */
  TOTAL: 16,
  /** u16: `FLAG_*` bits of the datagram (ffi/udp.ts). */
  FLAGS: 22,
  /** u64: receive time, ns since the epoch (CLOCK_REALTIME). */
  TIMESTAMP: 24,
  /** u32: payload bytes stored. */
  LENGTH: 32,
  /** u32: the datagram's true length (more than LENGTH if it was cut). */
  ORIG_LENGTH: 36,
  /** 4 bytes: the sender's IPv4 address as received (network order). */
  SRC_IP: 40,
  /** u16: the sender's port. */
  SRC_PORT: 44,
  /** u16: the port it arrived on (0 for stream sources). */
  DST_PORT: 46,
  /** u32: packet type decom identified, or NO_PACKET. */
  PACKET: 48,
  PAYLOAD: 56,
} as const;

/** `RING_RECORD.PACKET` of a datagram that matched no packet type. */
export const NO_PACKET = 0xffff_ffff;

/** What one `readRing` call produced. */
export interface RingRead {
  /** Bytes of records written to the output. */
  bytes: number;
  records: number;
  /** Datagrams overwritten before this reader copied them, since the previous call. */
  lost: number;
  /** True when the reader has read everything the writer wrote so far. */
  caughtUp: boolean;
}

/** The writing side (decom). Use from one thread. */
export class BroadcastWriter extends NativeObject {
  readonly #stats = new BigUint64Array(3);
  readonly #fdCount: number;

  private constructor(ptr: Deno.PointerObject, bells: number) {
    super(ptr, (p) => native().gsw_broadcast_free(p), "broadcast writer");
    this.#fdCount = 2 + bells;
  }

  /**
   * A segment with one channel per spec and `bells` bells, of which `ringBell` rings for the
   * packet ring of `ringSize` bytes (a power of two from 256 KiB to 1 GiB).
   */
  static create(
    channels: readonly BroadcastChannelSpec[],
    bells: number,
    ringBell: number,
    ringSize = DEFAULT_RING_SIZE,
  ): BroadcastWriter {
    const caps = new Uint32Array(channels.map((c) => c.capacity));
    const ids = new Uint32Array(channels.map((c) => c.id));
    const bellOf = new Uint32Array(channels.map((c) => c.bell));
    const ptr = checkPtr(
      native().gsw_broadcast_new(caps, ids, bellOf, channels.length, bells, ringBell, ringSize),
      "creating the broadcast segment",
    );
    return new BroadcastWriter(ptr, bells);
  }

  /** The descriptors a reader needs: data memfd, control memfd, then every bell in order. */
  fds(): number[] {
    const out = new Int32Array(this.#fdCount);
    const n = check(
      native().gsw_broadcast_fds(this.handle, out, out.length),
      "broadcast descriptors",
    );
    return Array.from(out.subarray(0, n));
  }

  /**
   * Wakes the packet ring's readers if a wake-up was held back and is due (they are woken at
   * most once per millisecond). Returns the milliseconds until one is due, -1 if none: the
   * writer's loop must come back by then.
   */
  flushDue(): number {
    const ms = check(native().gsw_broadcast_flush_due(this.handle), "waking ring readers");
    return ms === 0x7fffffff ? -1 : ms;
  }

  stats(): { publishes: number; records: number; rings: number } {
    check(native().gsw_broadcast_stats(this.handle, this.#stats), "broadcast stats");
    const [publishes, records, rings] = Array.from(this.#stats, Number);
    return { publishes, records, rings };
  }
}

/** The reading side. Use from one thread (its bells may be in a waitset on another). */
export class BroadcastReader extends NativeObject {
  readonly channels: number;
  readonly ringBell: number;
  readonly ringSize: number;
  readonly #specs: BroadcastChannelSpec[] = [];
  readonly #ringResult = new BigUint64Array(3);
  #batch: Uint8Array;
  #batchView: DataView;
  #one: Uint8Array;
  #oneView: DataView;
  #h: Deno.PointerObject | null;

  private constructor(ptr: Deno.PointerObject) {
    super(ptr, (p) => native().gsw_broadcast_reader_free(p), "broadcast reader");
    this.#h = ptr;
    S = native();
    const info = new Uint32Array(3);
    check(native().gsw_broadcast_reader_info(ptr, info), "broadcast info");
    [this.channels, this.ringBell, this.ringSize] = info;
    const ch = new Uint32Array(3);
    let largest = 0;
    for (let i = 0; i < this.channels; i++) {
      check(native().gsw_broadcast_reader_channel(ptr, i, ch), "broadcast channel");
      this.#specs.push({ capacity: ch[0], id: ch[1], bell: ch[2] });
      largest = Math.max(largest, ch[0]);
    }
    this.#one = new Uint8Array(RECORD_HEADER_LEN + Math.ceil(largest / 8) * 8);
    this.#oneView = new DataView(this.#one.buffer);
    this.#batch = this.#one;
    this.#batchView = this.#oneView;
  }

  /**
   * Attaches from the data and control memfds and the bells handed over (`index` as the
   * writer numbered them), taking ownership of every descriptor (closed on failure too).
   */
  static attach(
    data: number,
    control: number,
    bells: readonly { index: number; fd: number }[],
  ): BroadcastReader {
    const fds = new Int32Array([data, control, ...bells.map((b) => b.fd)]);
    const indices = new Uint32Array(bells.map((b) => b.index));
    const ptr = checkPtr(
      native().gsw_broadcast_attach(fds, indices, fds.length),
      "attaching to a broadcast segment",
    );
    return new BroadcastReader(ptr);
  }

  override close(): void {
    this.#h = null;
    super.close();
  }

  channel(index: number): BroadcastChannelSpec {
    const spec = this.#specs[index];
    if (!spec) throw new RangeError(`channel ${index} does not exist (${this.channels} channels)`);
    return spec;
  }

  /** The descriptor of a bell handed to this reader (to remove it from a waitset). */
  bellFd(bell: number): number {
    return check(native().gsw_broadcast_reader_bell_fd(this.handle, bell), "broadcast bell");
  }

  /**
   * Follows these channels (replacing any earlier set): the next `readChanged` returns the
   * current value of each, then only newer ones.
   */
  follow(channels: readonly number[]): void {
    const list = new Uint32Array(channels);
    check(native().gsw_broadcast_reader_follow(this.handle, list, list.length), "follow");
    const bytes = channels.reduce(
      (sum, c) => sum + RECORD_HEADER_LEN + Math.ceil(this.channel(c).capacity / 8) * 8,
      0,
    );
    if (bytes > this.#batch.byteLength) {
      this.#batch = new Uint8Array(bytes);
      this.#batchView = new DataView(this.#batch.buffer);
    }
  }

  /**
   * Reads every followed channel with a newer value than the one last read, calling `visit`
   * for each (`sample.bytes` is a view valid only during the call). Returns how many.
   */
  readChanged(visit: (sample: Sample) => void): number {
    const n = S.gsw_broadcast_reader_read(this.#h, this.#batch, this.#batch.byteLength);
    check(n, "read broadcast values");
    let at = 0;
    for (let i = 0; i < n; i++) {
      const { sample, next } = readRecord(this.#batchView, this.#batch, at);
      visit(sample);
      at = next;
    }
    return n;
  }

  /**
   * Marks bell `bell` as processed up to now; true if the writer touched it since the last
   * mark. For a relay (the broker) that passes a bell's rings on without reading values.
   */
  markSeen(bell: number): boolean {
    return check(native().gsw_broadcast_reader_mark_seen(this.handle, bell), "mark seen") === 1;
  }

  /** The newest value of `channel` (read or not), or null if it has none yet. */
  current(channel: number): Sample | null {
    const r = native().gsw_broadcast_reader_current(
      this.handle,
      channel,
      this.#one,
      this.#one.byteLength,
    );
    if (check(r, "current broadcast value") === 0) return null;
    const { sample } = readRecord(this.#oneView, this.#one, 0);
    sample.bytes = sample.bytes.slice();
    return sample;
  }

  /**
   * Copies packet-ring records from this reader's cursor into `out` (layout `RING_RECORD`,
   * back to back), stopping when `out` is full or the reader has caught up.
   */
  readRing(out: Uint8Array): RingRead {
    const r = this.#ringResult;
    const bytes = check(
      S.gsw_broadcast_reader_ring(this.#h, out, out.byteLength, r),
      "read the packet ring",
    );
    return { bytes, records: Number(r[0]), lost: Number(r[1]), caughtUp: r[2] === 1n };
  }
}

/** A new eventfd (non-blocking), e.g. a broker's relay bell. */
export function newEventFd(): OwnedFd {
  return new OwnedFd(check(native().gsw_eventfd(), "eventfd"), "eventfd");
}

/** Adds one to an eventfd: wakes whoever watches it. Never blocks. */
export function signalEventFd(fd: number): void {
  check(native().gsw_eventfd_signal(fd), "eventfd write");
}

/** A duplicate of `fd` that the caller owns. */
export function dupFd(fd: number): number {
  return check(native().gsw_dup(fd), `dup(${fd})`);
}

/**
 * Has this process receive SIGTERM when its parent (pid `parent`) exits, so a process another
 * one started never outlives it. Returns false if the parent is already gone.
 */
export function dieWithParent(parent: number): boolean {
  return check(native().gsw_die_with_parent(parent, 15), "PR_SET_PDEATHSIG") === 0;
}

/** A pidfd for process `pid`: readable (in a waitset) once the process exits. */
export function pidfdOpen(pid: number): OwnedFd {
  return new OwnedFd(check(native().gsw_pidfd_open(pid), `pidfd_open(${pid})`), "pidfd");
}
