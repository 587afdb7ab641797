/**
 * Batch datagram I/O from TypeScript: UDP sockets for telemetry and a reusable `Batch` that
 * receives (`recvmmsg`) many datagrams into one buffer with per-datagram metadata, or sends
 * many (`sendmmsg`) in one call. Deno's own UDP drops most of a fast burst; this does not.
 */
import { NativeObject, OwnedFd } from "./handle.ts";
import { check, checkPtr, native, utf8 } from "./library.ts";

/** Bytes of metadata per received datagram (layout in `ffi/src/udp.rs`). */
export const META_LEN = 32;
/** Metadata flag: the datagram was longer than its slot (see `origLength`). */
export const FLAG_TRUNCATED = 1;
/** Largest UDP payload over IPv4: a slot this large never truncates. */
export const MAX_DATAGRAM = 65507;

export interface UdpOptions {
  /** Local address to bind, e.g. "0.0.0.0" (all interfaces) or "127.0.0.1". */
  bind: string;
  /** Port, or 0 for any free port (see `port`). */
  port: number;
  /** Multicast group to join, if any. */
  multicast?: string;
  /** Kernel receive buffer to ask for, in bytes. */
  receiveBuffer?: number;
}

/** A bound, non-blocking UDP socket with kernel receive timestamps. */
export class UdpSocket extends OwnedFd {
  readonly port: number;

  constructor(opts: UdpOptions) {
    const bind = utf8(opts.bind);
    const group = utf8(opts.multicast ?? "");
    const fd = check(
      native().gsw_udp_open(
        bind,
        bind.byteLength,
        opts.port,
        group,
        group.byteLength,
        opts.receiveBuffer ?? 8 << 20,
      ),
      `opening UDP ${opts.bind}:${opts.port}`,
    );
    super(fd, `UDP socket ${opts.bind}:${opts.port}`);
    this.port = check(native().gsw_udp_local_port(fd), "reading the local port");
  }

  /**
   * The receive buffer the kernel granted, in bytes: the `receiveBuffer` asked for, or less
   * where `net.core.rmem_max` caps it (without privileges).
   */
  receiveBuffer(): number {
    return check(native().gsw_udp_receive_buffer(this.fd), "reading the receive buffer size");
  }

  /** An unbound socket for sending. */
  static sender(): OwnedFd {
    return new OwnedFd(check(native().gsw_udp_open_sender(), "opening a UDP sender"), "UDP sender");
  }
}

/** Metadata of datagram `i` of a received batch. */
export interface DatagramMeta {
  /** Bytes stored in the slot. */
  length: number;
  /** The datagram's real length (larger than `length` when truncated). */
  origLength: number;
  /** Kernel receive time, ns since the epoch (CLOCK_REALTIME). */
  timestampNs: bigint;
  /** Sender address as dotted quad, and port. */
  srcAddress: string;
  srcPort: number;
  truncated: boolean;
  /**
   * The socket's count of datagrams the kernel dropped (receive buffer full), as of this
   * datagram's arrival: it grows when datagrams were lost before this one.
   */
  kernelDrops: number;
}

export function datagramMeta(meta: DataView, i: number): DatagramMeta {
  const at = i * META_LEN;
  const flags = meta.getUint16(at + 22, true);
  return {
    length: meta.getUint32(at, true),
    origLength: meta.getUint32(at + 4, true),
    timestampNs: meta.getBigUint64(at + 8, true),
    srcAddress: `${meta.getUint8(at + 16)}.${meta.getUint8(at + 17)}.${meta.getUint8(at + 18)}.${
      meta.getUint8(at + 19)
    }`,
    srcPort: meta.getUint16(at + 20, true),
    truncated: (flags & FLAG_TRUNCATED) !== 0,
    kernelDrops: meta.getUint32(at + 24, true),
  };
}

/** Reusable scratch for batch receive and send, so a batch costs no allocation. */
export class Batch extends NativeObject {
  constructor(readonly max: number) {
    const ptr = checkPtr(native().gsw_batch_new(max), "creating a datagram batch");
    super(ptr, (p) => native().gsw_batch_free(p), "datagram batch");
  }

  /**
   * Receives up to `max` datagrams from `fd` without blocking: datagram i lands at
   * `buf[i * slot]`, its metadata at `meta[i * META_LEN]`. Returns how many (0: none).
   */
  recv(fd: number, buf: Uint8Array, slot: number, meta: Uint8Array): number {
    const r = native().gsw_batch_recv(
      this.handle,
      fd,
      buf,
      buf.byteLength,
      slot,
      meta,
      meta.byteLength,
    );
    return check(r, "receiving datagrams");
  }

  /**
   * Sends the datagrams laid out back to back in `buf` (lengths in `lens`) to `ip:port`, or
   * datagram i to `ip:ports[i]`. Returns how many the kernel took (fewer: buffer full).
   */
  send(
    fd: number,
    buf: Uint8Array,
    lens: Uint32Array,
    ip: string,
    port: number,
    ports?: Uint16Array,
  ): number {
    const addr = utf8(ip);
    const r = native().gsw_batch_send(
      this.handle,
      fd,
      buf,
      buf.byteLength,
      lens,
      lens.length,
      addr,
      addr.byteLength,
      port,
      ports ?? null,
      ports?.length ?? 0,
    );
    return check(r, `sending datagrams to ${ip}`);
  }
}
