/**
 * Byte-stream sources (`ffi/src/stream.rs`): a serial device, a TCP connection gsw makes, or
 * TCP senders it accepts, cut into packets by a framing, delivered in the UDP batch layout. And
 * the same framings for writing (replay, the simulator, tests).
 */
import type { FramingSettings } from "../config/types.ts";
import { NativeObject, OwnedFd } from "./handle.ts";
import { check, checkPtr, EAGAIN, GswError, native } from "./library.ts";
import { HANGUP, READABLE, Waitset, WRITABLE } from "./waitset.ts";

/** Metadata flags of delivered records (offset 22): bytes that were no packet. */
export const FLAG_BAD_CRC = 1 << 9;
export const FLAG_UNFRAMED = 1 << 10;

export type FramingKind = "sync" | "length" | "cobs" | "slip";
export type CrcKind = "none" | "crc16-ccitt" | "crc32c";

export interface FramingOptions {
  kind: FramingKind;
  /** sync: the sync word (1–8 bytes) and the packet's size after it. */
  sync?: Uint8Array;
  size?: number;
  /** length: bytes of the length field (1, 2 or 4) and its byte order. */
  lengthBytes?: number;
  lengthBig?: boolean;
  crc: CrcKind;
  crcBig: boolean;
  /** Shortest and longest packet the source knows (a length outside is garbage). */
  minLength: number;
  maxLength: number;
}

/** A source's framing as its config describes it (`source.stream.framing`). */
export function framingOptions(f: FramingSettings): FramingOptions {
  return {
    kind: f.kind,
    sync: f.sync ? Uint8Array.from(f.sync) : undefined,
    size: f.size,
    lengthBytes: f.lengthBytes,
    lengthBig: f.lengthBig,
    crc: f.crc,
    crcBig: f.crcBig,
    minLength: f.minLength,
    maxLength: f.maxLength,
  };
}

export type StreamEndpoint =
  | {
    kind: "serial";
    device: string;
    baud: number;
    dataBits: number;
    parity: "none" | "even" | "odd";
    stopBits: number;
    flowControl: "none" | "rtscts" | "xonxoff";
  }
  | { kind: "connect" | "listen"; host: string; port: number };

export interface StreamSourceStats {
  /** Open streams: the device or connection (0 or 1), or the accepted senders. */
  connected: number;
  packets: number;
  rejected: number;
  bytes: number;
  opens: number;
}

/** The settings block of `gsw_stream_new` and `gsw_frame_encode` (48 bytes). */
function spec(framing: FramingOptions, endpoint?: StreamEndpoint, deliverPort = 0): Uint8Array {
  const s = new Uint8Array(48);
  const v = new DataView(s.buffer);
  if (endpoint?.kind === "serial") {
    s[1] = endpoint.dataBits;
    s[2] = { none: 0, even: 1, odd: 2 }[endpoint.parity];
    s[3] = endpoint.stopBits;
    s[4] = { none: 0, rtscts: 1, xonxoff: 2 }[endpoint.flowControl];
    v.setUint32(8, endpoint.baud, true);
  } else if (endpoint) {
    s[0] = endpoint.kind === "connect" ? 1 : 2;
    v.setUint16(12, endpoint.port, true);
  }
  s[5] = { sync: 0, length: 1, cobs: 2, slip: 3 }[framing.kind];
  s[6] = { none: 0, "crc16-ccitt": 1, crc32c: 2 }[framing.crc];
  s[7] = framing.crcBig ? 1 : 0;
  v.setUint16(14, deliverPort, true);
  v.setUint32(16, framing.size ?? 0, true);
  s[20] = framing.lengthBytes ?? 2;
  s[21] = framing.lengthBig === false ? 0 : 1;
  const word = framing.sync ?? new Uint8Array();
  s[22] = Math.min(word.byteLength, 8);
  s.set(word.subarray(0, 8), 24);
  v.setUint32(32, framing.minLength, true);
  v.setUint32(36, framing.maxLength, true);
  return s;
}

export class StreamSource extends NativeObject {
  readonly #stats = new BigUint64Array(5);
  readonly #line = new Uint8Array(1024);
  /** The descriptor to watch for readability (the same for the source's life). */
  readonly fd: number;

  /** Delivers its packets with destination port `deliverPort`. A listen binds now. */
  constructor(endpoint: StreamEndpoint, framing: FramingOptions, deliverPort = 0) {
    const text = new TextEncoder().encode(
      endpoint.kind === "serial" ? endpoint.device : endpoint.host,
    );
    const s = spec(framing, endpoint, deliverPort);
    const ptr = checkPtr(
      native().gsw_stream_new(s, s.byteLength, text, text.byteLength),
      "opening the stream source",
    );
    super(ptr, (p) => native().gsw_stream_free(p), "stream source");
    this.fd = check(native().gsw_stream_fd(this.handle), "reading the stream source's descriptor");
  }

  /** Does what is due; returns the ms until it must run again (0: packets are waiting). */
  service(): number {
    return check(native().gsw_stream_service(this.handle), "servicing the stream source");
  }

  /** Takes packets into a batch laid out as `Batch.recv` lays it out. Returns how many. */
  recv(buf: Uint8Array, slot: number, meta: Uint8Array): number {
    return check(
      native().gsw_stream_recv(this.handle, buf, buf.byteLength, slot, meta, meta.byteLength),
      "receiving from the stream source",
    );
  }

  stats(): StreamSourceStats {
    check(native().gsw_stream_stats(this.handle, this.#stats), "reading stream counters");
    const s = this.#stats;
    return {
      connected: Number(s[0]),
      packets: Number(s[1]),
      rejected: Number(s[2]),
      bytes: Number(s[3]),
      opens: Number(s[4]),
    };
  }

  /** Lines worth logging since the last call (opened, lost, refused…), oldest first. */
  events(): string[] {
    const out: string[] = [];
    for (;;) {
      const n = check(
        native().gsw_stream_next_event(this.handle, this.#line, this.#line.byteLength),
        "reading stream events",
      );
      if (n === 0) return out;
      out.push(new TextDecoder().decode(this.#line.subarray(0, n)));
    }
  }
}

/** Frames one packet as `framing` says (what a radio would send). */
export function encodeFrame(framing: FramingOptions, packet: Uint8Array): Uint8Array {
  const s = spec(framing);
  const out = new Uint8Array(2 * packet.byteLength + 32);
  const n = check(
    native().gsw_frame_encode(s, s.byteLength, packet, packet.byteLength, out, out.byteLength),
    "framing a packet",
  );
  return out.slice(0, n);
}

/**
 * Where a stream source's bytes are written, as its radio or modem would write them: the
 * serial device at its line settings (for a PTY pair, the end decom does not open), a TCP
 * connection to a decom that listens, or a TCP listener for a decom that connects (`ready()`
 * waits for that connection). Writes wait while the device or socket is full; nothing is
 * dropped. Used by `replay`.
 */
export class StreamOut implements Disposable {
  readonly #ws = new Waitset();
  #listener: OwnedFd | null = null;
  #fd: OwnedFd | null = null;
  /** The TCP port listened on (a listen endpoint), else 0. */
  readonly port: number = 0;
  /** Bytes written so far. */
  bytes = 0;
  /** Times a write found the device or socket full and waited. */
  waits = 0;

  constructor(readonly endpoint: StreamEndpoint) {
    const text = new TextEncoder().encode(
      endpoint.kind === "serial" ? endpoint.device : endpoint.host,
    );
    const s = spec(
      { kind: "cobs", crc: "none", crcBig: false, minLength: 0, maxLength: 0 },
      endpoint,
    );
    const fd = new OwnedFd(
      check(native().gsw_stream_out_open(s, s.byteLength, text, text.byteLength), this.where),
      this.where,
    );
    if (endpoint.kind === "listen") {
      this.#listener = fd;
      this.port = check(native().gsw_stream_out_port(fd.fd), "reading the listener's port");
      this.#ws.add(fd.fd, 0, READABLE);
    } else {
      this.#attach(fd);
    }
  }

  /** What this writes to, for messages: the device, or the TCP address. */
  get where(): string {
    const e = this.endpoint;
    return e.kind === "serial" ? e.device : `${e.host}:${this.port || e.port}`;
  }

  /** Whether there is a device or connection to write to (a listener: once one connected). */
  get connected(): boolean {
    return this.#fd !== null;
  }

  #attach(fd: OwnedFd): void {
    this.#fd = fd;
    this.#ws.add(fd.fd, 1, WRITABLE);
  }

  /** Waits for the connection a listener expects (at once for the other kinds). */
  async ready(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!this.accept()) {
      const left = deadline - performance.now();
      if (left <= 0) {
        throw new GswError(
          110,
          "ETIMEDOUT",
          `nobody connected to ${this.where} within ${timeoutMs / 1000} s`,
        );
      }
      if (signal?.aborted) throw signal.reason;
      await this.#ws.wait(Math.min(Math.ceil(left), 100));
    }
  }

  /** Takes a connection waiting on a listener, without waiting; true once connected. */
  accept(): boolean {
    if (this.#fd) return true;
    const r = native().gsw_stream_out_accept(this.#listener!.fd);
    if (r === EAGAIN) return false;
    this.#attach(new OwnedFd(check(r, `accepting on ${this.where}`), "connection"));
    this.#ws.remove(this.#listener!.fd);
    return true;
  }

  /**
   * Closes a connection whose other end went away. A listener goes back to waiting for the
   * next one (`accept`, `ready`); the other kinds have nothing left to write to.
   */
  drop(): void {
    if (!this.#fd) return;
    this.#ws.remove(this.#fd.fd);
    this.#fd.close();
    this.#fd = null;
    if (this.#listener) this.#ws.add(this.#listener.fd, 0, READABLE);
  }

  /** Writes all of `data`, waiting while the device or socket is full. */
  async write(data: Uint8Array, signal?: AbortSignal): Promise<void> {
    const fd = this.#fd;
    if (!fd) throw new GswError(107, "ENOTCONN", `nothing to write to yet at ${this.where}`);
    let at = 0;
    while (at < data.byteLength) {
      const part = data.subarray(at);
      const n = check(
        native().gsw_stream_out_write(fd.fd, part, part.byteLength),
        `writing to ${this.where}`,
      );
      at += n;
      this.bytes += n;
      if (at < data.byteLength) {
        if (signal?.aborted) throw signal.reason;
        this.waits++;
        const ready = await this.#ws.wait(100);
        if (ready.some((r) => r.events & HANGUP)) {
          throw new GswError(32, "EPIPE", `${this.where}: the other end went away`);
        }
      }
    }
  }

  close(): void {
    this.#ws.close();
    this.#fd?.close();
    this.#listener?.close();
    this.#fd = null;
    this.#listener = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
