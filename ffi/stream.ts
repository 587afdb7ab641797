/**
 * Byte-stream sources (`ffi/src/stream.rs`): a serial device, a TCP connection gsw makes, or
 * TCP senders it accepts, cut into packets by a framing, delivered in the UDP batch layout. And
 * the same framings for writing (replay, the simulator, tests).
 */
import { NativeObject } from "./handle.ts";
import { check, checkPtr, native } from "./library.ts";

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
