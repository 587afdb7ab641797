/**
 * One epoll set per process over every descriptor it waits on. `wait()` parks a single call
 * on Deno's blocking pool (never one per subscription) and resolves with everything ready;
 * `waitSync()` blocks the thread instead, for dedicated workers.
 */
import { NativeObject } from "./handle.ts";
import type { SegmentReader } from "./segment.ts";
import type { BroadcastReader } from "./broadcast.ts";
import { check, checkPtr, decodeNative, native, nativeError } from "./library.ts";

/** Readiness bits, as in `ffi/src/waitset.rs`. */
export const READABLE = 1;
export const WRITABLE = 2;
export const HANGUP = 4;

export interface Ready {
  token: number;
  /** `READABLE | WRITABLE | HANGUP` bits. */
  events: number;
}

const MAX_EVENTS = 256;

export class Waitset extends NativeObject {
  readonly #out = new Uint32Array(MAX_EVENTS * 2);
  #pending: Promise<number> | null = null;
  #closing = false;

  constructor() {
    const ptr = checkPtr(native().gsw_waitset_new(), "creating a waitset");
    super(ptr, (p) => native().gsw_waitset_free(p), "waitset");
  }

  /** Watches `fd` for `interest` (READABLE and/or WRITABLE; hang-ups always reported). */
  add(fd: number, token: number, interest = READABLE): void {
    check(native().gsw_waitset_add(this.handle, fd, token, interest), "waitset add");
  }

  /**
   * Watches a segment reader's doorbell as `token`, and lets its writer skip the doorbell
   * while this process is awake: each wait tells the segment when the process sleeps. Use
   * this rather than `add(reader.doorbellFd, …)` for readers drained with `takePending`;
   * `remove(reader.doorbellFd)` before closing the reader.
   */
  addReader(reader: SegmentReader, token: number): void {
    check(
      native().gsw_waitset_add_reader(this.handle, reader.handle, token),
      "waitset add reader",
    );
  }

  /**
   * Watches bell `bell` of a broadcast reader as `token`, edge-triggered: a ring is reported
   * once to every waitset watching the bell and nobody reads it. Each wait counts this process
   * as asleep on the bell and re-checks first, so the writer rings only when needed. Remove
   * it with `remove(reader.bellFd(bell))` before closing the reader.
   */
  addBell(reader: BroadcastReader, bell: number, token: number): void {
    check(
      native().gsw_waitset_add_bell(this.handle, reader.handle, bell, token),
      "waitset add bell",
    );
  }

  modify(fd: number, token: number, interest: number): void {
    check(native().gsw_waitset_modify(this.handle, fd, token, interest), "waitset modify");
  }

  remove(fd: number): void {
    check(native().gsw_waitset_remove(this.handle, fd), "waitset remove");
  }

  #collect(n: number): Ready[] {
    const ready: Ready[] = [];
    for (let i = 0; i < n; i++) {
      ready.push({ token: this.#out[2 * i], events: this.#out[2 * i + 1] });
    }
    return ready;
  }

  /**
   * Waits on Deno's blocking pool until something is ready, `timeoutMs` passes (negative:
   * forever) or `cancel()` is called; the event loop keeps running meanwhile. Resolves with
   * the ready tokens (empty on timeout or cancel). One wait at a time.
   */
  async wait(timeoutMs: number): Promise<Ready[]> {
    if (this.#pending) throw new Error("a wait is already in progress on this waitset");
    const out = this.#out;
    const p = native().gsw_waitset_wait_async(this.handle, out, out.byteLength, timeoutMs);
    this.#pending = p;
    let n: number;
    try {
      n = await p;
    } finally {
      this.#pending = null;
      if (this.#closing) super.close();
    }
    if (this.closed) return [];
    if (n < 0) {
      // The wait ran on a pool thread, so its message is kept with the waitset, not ours.
      const buf = new Uint8Array(1024);
      const len = native().gsw_waitset_last_error(this.handle, buf, BigInt(buf.length));
      throw nativeError(n, "waitset wait", decodeNative(buf, len));
    }
    return this.#collect(n);
  }

  /** Blocks this thread until something is ready or `timeoutMs` passes. */
  waitSync(timeoutMs: number): Ready[] {
    if (this.#pending) throw new Error("an async wait is in progress on this waitset");
    const out = this.#out;
    const n = native().gsw_waitset_wait(this.handle, out, out.byteLength, timeoutMs);
    return this.#collect(check(n, "waitset wait"));
  }

  /** Makes a wait in progress (or the next one) return at once. */
  cancel(): void {
    check(native().gsw_waitset_cancel(this.handle), "waitset cancel");
  }

  /** Frees the waitset; a wait in progress is cancelled first and the free happens after it. */
  override close(): void {
    if (this.closed) return;
    if (this.#pending) {
      this.#closing = true;
      this.cancel();
      return;
    }
    super.close();
  }
}
