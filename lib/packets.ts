/**
 * Every datagram decom receives, in order, for programs that need every sample rather than
 * the newest value (plots, bridges, live writers): `openPackets()` attaches to each source's
 * packet ring in decom's broadcast segment and reads it from its own cursor. decom never
 * waits for it; a reader that falls more than the ring behind loses the oldest datagrams and
 * is told exactly how many. Decode the packets with `decodePacket` (config/decode.ts).
 */
import type { Config } from "../config/types.ts";
import { requestSync } from "../control/client.ts";
import { PROTOCOL_VERSION } from "../control/protocol.ts";
import { decomSocket, resolveRunDir } from "../control/rundir.ts";
import {
  BroadcastReader,
  closeFd,
  GswError,
  HANGUP,
  NO_PACKET,
  READABLE,
  RING_RECORD,
  UnixConnection,
  Waitset,
} from "../ffi/mod.ts";

/** One datagram as decom received it. */
export interface RawPacket {
  /** The config source that received it. */
  source: string;
  /** Its number among the datagrams this decom received (1-based; restarts with decom). */
  seq: number;
  /** Receive time, ns since the epoch (CLOCK_REALTIME). */
  timestampNs: bigint;
  /** The port it arrived on (0 for stream sources). */
  port: number;
  srcAddress: string;
  srcPort: number;
  /** `FLAG_*` bits of the datagram (ffi/udp.ts), e.g. FLAG_TRUNCATED. */
  flags: number;
  /** Index of the packet type decom identified in `config.packets`, or -1 for none. */
  packet: number;
  /** The datagram's true length (more than `bytes.length` if it was cut). */
  length: number;
  /** The bytes: a view valid only until the next batch is read. Copy it to keep it. */
  bytes: Uint8Array;
}

/** The datagrams read in one go, from every source. */
export interface PacketBatch {
  packets: RawPacket[];
  /** Datagrams decom received that this reader lost (overwritten before it read them). */
  lost: number;
}

/** A change in the link to one source's decom. */
export interface PacketStatus {
  source: string;
  connected: boolean;
  /** One line for people: "decom for source x went away; reconnecting". */
  message: string;
}

export interface PacketOptions {
  /** The run directory of the decom sockets (default: as every gsw process finds it). */
  runDir?: string;
  /** Sources to read (default: every source of the config). */
  sources?: readonly string[];
  /** Aborting it closes the stream (a pending iteration ends). */
  signal?: AbortSignal;
  /** Called when a decom is reached, goes away or comes back. */
  onStatus?: (status: PacketStatus) => void;
  /** Who is asking, as decom logs it. */
  client?: string;
}

/** How often a source whose decom is not there is tried again. */
export const PACKET_RETRY_MS = 200;
/** Longest a (re)connection waits for decom's reply; decom answers in microseconds. */
const OPEN_TIMEOUT_MS = 1000;
/** Bytes read from one ring per call: at least a few hundred typical datagrams. */
const READ_BYTES = 1 << 20;

interface Source {
  name: string;
  index: number;
  conn: UnixConnection | null;
  reader: BroadcastReader | null;
  retryAt: number;
  /** Last problem reported, so an outage is said once. */
  said: string;
  /** decom hung up: read what is left in its ring, then let go and wait for it. */
  gone: boolean;
}

const tokenOf = (s: Source, what: "bell" | "conn") => s.index * 2 + (what === "bell" ? 0 : 1);

/**
 * Every datagram of the chosen sources, as batches (`for await (const batch of stream)`).
 * Sources whose decom is not running yet are waited for; a decom that restarts is picked up
 * again. Close it (or `using`) to release everything.
 */
export class PacketStream implements AsyncIterable<PacketBatch>, Disposable {
  readonly #config: Config;
  readonly #runDir: string;
  readonly #client: string;
  readonly #onStatus: ((s: PacketStatus) => void) | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.close();
  readonly #ws = new Waitset();
  readonly #sources: Source[];
  readonly #buf = new Uint8Array(READ_BYTES);
  readonly #view = new DataView(this.#buf.buffer);
  #closed = false;

  constructor(config: Config, options: PacketOptions = {}) {
    this.#config = config;
    this.#runDir = options.runDir ?? resolveRunDir();
    this.#client = options.client ?? "packet stream";
    this.#onStatus = options.onStatus;
    const names = options.sources ?? config.sources.map((s) => s.name);
    for (const name of names) {
      if (!config.sources.some((s) => s.name === name)) {
        throw new RangeError(
          `config "${config.name}" has no source "${name}" (sources: ${
            config.sources.map((s) => s.name).join(", ")
          })`,
        );
      }
    }
    this.#sources = names.map((name, index) => ({
      name,
      index,
      conn: null,
      reader: null,
      retryAt: 0,
      said: "",
      gone: false,
    }));
    for (const s of this.#sources) this.#connect(s);
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** Whether each source's decom is attached now. */
  get connected(): Record<string, boolean> {
    return Object.fromEntries(this.#sources.map((s) => [s.name, s.reader !== null]));
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * What has arrived since the last read, without waiting (an empty batch when nothing).
   * `bytes` of each packet stay valid until the next read.
   */
  read(): PacketBatch {
    this.#service();
    const packets: RawPacket[] = [];
    let lost = 0;
    let at = 0;
    for (const s of this.#sources) {
      if (!s.reader) continue;
      // Read until caught up or the buffer is full; a lapped reader resumes and reads on.
      for (let tries = 0; tries < 8 && at < this.#buf.byteLength; tries++) {
        const got = s.reader.readRing(this.#buf.subarray(at));
        lost += got.lost;
        this.#parse(s.name, at, got.bytes, packets);
        at += got.bytes;
        if (got.caughtUp || (got.records === 0 && got.bytes === 0 && got.lost === 0 && tries > 0)) {
          break;
        }
      }
      if (s.gone) {
        // What decom wrote before it went away has just been read: let go of it.
        this.#release(s);
        s.retryAt = performance.now() + PACKET_RETRY_MS;
      }
    }
    return { packets, lost };
  }

  /** Batches as they arrive; one wait on Deno's blocking pool serves every source. */
  async *[Symbol.asyncIterator](): AsyncGenerator<PacketBatch, void, undefined> {
    while (!this.#closed) {
      const batch = this.read();
      if (batch.packets.length > 0 || batch.lost > 0) {
        yield batch;
        continue;
      }
      const ready = await this.#ws.wait(this.#timeout());
      if (this.#closed) return;
      for (const { token, events } of ready) {
        const s = this.#sources[token >> 1];
        if (s?.reader && token % 2 === 1 && events & (HANGUP | READABLE)) {
          s.gone = true;
          this.#say(s, `decom for source "${s.name}" went away; waiting for it to come back`);
        }
      }
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const s of this.#sources) this.#release(s);
    this.#ws.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #parse(source: string, from: number, bytes: number, out: RawPacket[]): void {
    const v = this.#view;
    const buf = this.#buf;
    let at = from;
    const end = from + bytes;
    while (at < end) {
      const total = v.getUint32(at + RING_RECORD.TOTAL, true);
      const len = v.getUint32(at + RING_RECORD.LENGTH, true);
      const packet = v.getUint32(at + RING_RECORD.PACKET, true);
      const ip = at + RING_RECORD.SRC_IP;
      out.push({
        source,
        seq: Number(v.getBigUint64(at + RING_RECORD.SEQ, true)),
        timestampNs: v.getBigUint64(at + RING_RECORD.TIMESTAMP, true),
        port: v.getUint16(at + RING_RECORD.DST_PORT, true),
        srcAddress: `${buf[ip]}.${buf[ip + 1]}.${buf[ip + 2]}.${buf[ip + 3]}`,
        srcPort: v.getUint16(at + RING_RECORD.SRC_PORT, true),
        flags: v.getUint16(at + RING_RECORD.FLAGS, true),
        packet: packet === NO_PACKET ? -1 : packet,
        length: v.getUint32(at + RING_RECORD.ORIG_LENGTH, true),
        bytes: buf.subarray(at + RING_RECORD.PAYLOAD, at + RING_RECORD.PAYLOAD + len),
      });
      at += total;
    }
  }

  /** The next wait's timeout: until the next reconnection is due (forever if none). */
  #timeout(): number {
    const now = performance.now();
    let t = -1;
    for (const s of this.#sources) {
      if (s.reader) continue;
      const ms = Math.max(1, Math.ceil(s.retryAt - now));
      t = t < 0 ? ms : Math.min(t, ms);
    }
    return t;
  }

  #service(): void {
    const now = performance.now();
    for (const s of this.#sources) if (!s.reader && now >= s.retryAt) this.#connect(s);
  }

  /** Opens source `s`'s packet ring; on failure, schedules another try and says why once. */
  #connect(s: Source): void {
    if (this.#closed) return;
    const path = decomSocket(this.#runDir, s.name);
    let conn: UnixConnection | null = null;
    let fds: number[] = [];
    try {
      conn = UnixConnection.connect(path);
      const got = requestSync(conn, {
        v: PROTOCOL_VERSION,
        op: "open",
        configHash: this.#config.hash,
        client: this.#client,
      }, OPEN_TIMEOUT_MS);
      fds = got.fds;
      const reply = got.reply;
      if (!reply.ok) throw new Error(`decom refused: ${reply.message}`);
      if (!("ringBell" in reply) || fds.length !== 2 + reply.bells) {
        throw new Error("decom's reply carries no broadcast segment");
      }
      // Only the ring's bell is needed; the others are closed.
      fds.slice(2).forEach((fd, i) => i !== reply.ringBell && closeFd(fd));
      const reader = BroadcastReader.attach(fds[0], fds[1], [{
        index: reply.ringBell,
        fd: fds[2 + reply.ringBell],
      }]);
      fds = [];
      s.reader = reader;
      s.conn = conn;
      s.gone = false;
      this.#ws.addBell(reader, reply.ringBell, tokenOf(s, "bell"));
      this.#ws.add(conn.fd, tokenOf(s, "conn"), READABLE);
      this.#onStatus?.({
        source: s.name,
        connected: true,
        message: `reading every datagram of source "${s.name}"`,
      });
      s.said = "";
    } catch (e) {
      fds.forEach(closeFd);
      if (s.reader) this.#release(s);
      else conn?.close();
      const absent = e instanceof GswError &&
        ["ENOENT", "ECONNREFUSED", "ENOTSOCK", "EPROTOTYPE"].includes(e.errno);
      const why = absent
        ? `decom for source "${s.name}" is not running (${path}); waiting for it`
        : `cannot read source "${s.name}": ${(e as Error).message}; trying again`;
      this.#say(s, why);
      s.retryAt = performance.now() + PACKET_RETRY_MS;
    }
  }

  #say(s: Source, message: string): void {
    if (message === s.said) return;
    s.said = message;
    this.#onStatus?.({ source: s.name, connected: false, message });
  }

  #release(s: Source): void {
    if (s.reader) {
      try {
        this.#ws.remove(s.reader.bellFd(s.reader.ringBell));
      } catch {
        // Not in the set, or the set is closing: closing the reader is what matters.
      }
      s.reader.close();
      s.reader = null;
    }
    if (s.conn) {
      try {
        this.#ws.remove(s.conn.fd);
      } catch {
        // As above.
      }
      s.conn.close();
      s.conn = null;
    }
  }
}

/** Every datagram decom receives for the config's sources; see `PacketStream`. */
export function openPackets(config: Config, options?: PacketOptions): PacketStream {
  return new PacketStream(config, options);
}
