/**
 * The decommutation process for one data source: batch-receives its UDP datagrams, hands
 * every one to the logger without blocking, identifies each, publishes every measurement of
 * the identified ones in one native call per batch, publishes its own link health, and
 * serves its channels to brokers. One synchronous waitset wait drives everything, so a
 * datagram wakes decom at native speed and nothing here ever waits for a reader.
 */
import type { Config, Measurement, Source } from "../config/mod.ts";
import { decomSocket, loggerSocket } from "../control/rundir.ts";
import {
  type BroadcastReply,
  errorReply,
  PROTOCOL_VERSION,
  type Request,
} from "../control/protocol.ts";
import { type Answer, type Client, ControlServer } from "../control/server.ts";
import {
  BroadcastWriter,
  DEFAULT_RING_SIZE,
  type ExtractField,
  Extractor,
  GswError,
  HANGUP,
  LogQueue,
  META_LEN,
  monotonicNs,
  NONE,
  READABLE,
  realtimeNs,
  SegmentWriter,
  takeSignals,
  Waitset,
  watchSignals,
  WRITABLE,
} from "../ffi/mod.ts";
import { encodeHello } from "../logger/queue.ts";
import { MALFORMED, OVERSIZE, type Rejection, REJECTION_NAMES } from "./identify.ts";
import { Identifier } from "./identify.ts";
import { type Input, MqttInput, SLOT, StreamInput, TOKENS_PER_INPUT, UdpInput } from "./inputs.ts";
/**
 * Bytes decom buffers for the logger itself when the logger is slow or absent, by default:
 * counted as allocated (`S.backlog_bytes`), so it bounds decom's real memory.
 */
export const DEFAULT_LOG_BUFFER = 64 << 20;
/**
 * Longest a raw packet waits in decom before going to the logger: batches are gathered into
 * one message (one send, one logger wake-up) per 10 ms or 64 KiB, instead of one per batch.
 */
const LOG_MAX_AGE_MS = 10;
/** Longest decom waits at exit for a logger to take the raw packets it still holds. */
const HANDOFF_MS = 3000;
/**
 * Bells of the broadcast segment for packet types: packets beyond this share bells (a reader
 * of one may wake for another, harmlessly). With the health and ring bells and the two
 * memfds, a source's descriptors fit one control message with room to spare.
 */
const PACKET_BELLS = 14;

const TOKEN_SIGNALS = 1;
const TOKEN_LOGGER = 2;
const TOKEN_INPUT = 1 << 16;
const TOKEN_SERVER = 1 << 20;

export interface DecomOptions {
  config: Config;
  source: Source;
  runDir: string;
  /** Datagrams per receive call (1..1024). */
  batch: number;
  /** Seconds between health publications. */
  healthInterval: number;
  /** Bytes of the every-packet ring in the broadcast segment (default DEFAULT_RING_SIZE). */
  ringSize?: number;
  /** Bytes held for an absent or slow logger (default DEFAULT_LOG_BUFFER). */
  logBuffer?: number;
  /** The password of a `type: mqtt` source with a password_file, read by the caller. */
  mqttPassword?: Uint8Array;
  log: (line: string) => void;
}

/** Counters decom publishes as its link-health measurements. */
export interface DecomStats {
  packets: number;
  bytes: number;
  errors: number;
  drops: number;
  /** Datagrams the kernel dropped before decom read them (receive buffer full). */
  kernelDrops: number;
  rejected: Record<string, number>;
  decoded: number;
}

interface Link {
  writer: SegmentWriter;
}

export class Decom {
  readonly #opts: DecomOptions;
  readonly #ws = new Waitset();
  readonly #input: Input;
  readonly #buf: Uint8Array;
  readonly #meta: Uint8Array;
  readonly #metaView: DataView;
  readonly #types: Uint32Array;
  readonly #identifier: Identifier;
  readonly #extractor: Extractor;
  readonly #logq: LogQueue;
  readonly #logBuffer: number;
  readonly #server: ControlServer;
  readonly #links = new Map<number, Link>();
  /** Every value and every datagram, for any number of direct readers (`open`). */
  readonly #broadcast: BroadcastWriter;
  readonly #broadcastReply: Omit<BroadcastReply, "v" | "ok">;
  /** Measurements this source publishes: packet fields, then its health measurements. */
  readonly #served: Measurement[];
  readonly #health: Measurement[];
  readonly #lastSeen: Float64Array;
  /** Per packet type: 1 for a CCSDS packet (identified by APID), whose sequence count is kept. */
  readonly #ccsds: Uint8Array;
  /** Per packet type: the last CCSDS sequence count seen, -1 before the first. */
  readonly #seqLast: Int32Array;
  /** Per packet type: CCSDS packets missing from the sequence count. */
  readonly #seqGaps: Float64Array;
  readonly #stats: DecomStats = {
    packets: 0,
    bytes: 0,
    errors: 0,
    drops: 0,
    kernelDrops: 0,
    rejected: {},
    decoded: 0,
  };
  #loggerWatched = false;
  #loggerWritable = false;
  #loggerAbsentSaid = false;
  #lastHealthPackets = 0;
  #lastHealthNs = 0n;
  /** Reject lines printed per kind in the current 10 s window (so each kind shows up). */
  #rejectLines = new Map<string, number>();
  #rejectLinesWindow = 0;
  #closed = false;

  constructor(opts: DecomOptions) {
    this.#opts = opts;
    this.#logBuffer = opts.logBuffer ?? DEFAULT_LOG_BUFFER;
    const { config, source } = opts;
    this.#identifier = new Identifier(config, source.name);
    const packets = source.packets.map((i) => config.packets[i]);
    const fields: ExtractField[] = packets.flatMap((p) =>
      p.fields.map((f) => ({
        packet: p.index,
        measurement: f.measurement,
        offset: f.offset,
        length: f.size,
      }))
    );
    const carried = new Set(fields.map((f) => f.measurement));
    this.#health = config.measurements.filter((m) => m.health?.source === source.name);
    this.#served = [
      ...config.measurements.filter((m) => carried.has(m.index)),
      ...this.#health,
    ];
    this.#lastSeen = new Float64Array(config.packets.length);
    this.#ccsds = Uint8Array.from(config.packets, (p) => p.apid === undefined ? 0 : 1);
    this.#seqLast = new Int32Array(config.packets.length).fill(-1);
    this.#seqGaps = new Float64Array(config.packets.length);
    this.#extractor = new Extractor(fields, config.packets.length, config.measurements.length);
    // Broadcast bells: one per packet type (up to PACKET_BELLS), then health, then the ring.
    // A measurement rings the bell of the first packet carrying it, whichever packet brought
    // the value: a reader of it watches that one bell.
    const packetBells = Math.min(PACKET_BELLS, source.packets.length);
    const healthBell = packetBells;
    const ringBell = packetBells + 1;
    const bellOf = (m: Measurement) =>
      m.health ? healthBell : source.packets.findIndex((p) => m.packets.includes(p)) % packetBells;
    this.#broadcast = BroadcastWriter.create(
      this.#served.map((m) => ({ capacity: m.size, id: m.index, bell: bellOf(m) })),
      ringBell + 1,
      ringBell,
      opts.ringSize ?? DEFAULT_RING_SIZE,
    );
    const broadcastOf = new Uint32Array(config.measurements.length).fill(NONE);
    this.#served.forEach((m, ch) => broadcastOf[m.index] = ch);
    this.#extractor.setBroadcast(this.#broadcast, broadcastOf);
    this.#broadcastReply = {
      configName: config.name,
      configHash: config.hash,
      source: source.name,
      channels: this.#served.map((m, channel) => ({ channel, key: m.key, bell: bellOf(m) })),
      bells: ringBell + 1,
      ringBell,
      ringSize: opts.ringSize ?? DEFAULT_RING_SIZE,
    };
    this.#buf = new Uint8Array(SLOT * opts.batch);
    this.#meta = new Uint8Array(META_LEN * opts.batch);
    this.#metaView = new DataView(this.#meta.buffer);
    this.#types = new Uint32Array(opts.batch);
    const sourceIndex = config.sources.findIndex((s) => s.name === source.name);
    this.#logq = new LogQueue(sourceIndex, this.#logBuffer, LOG_MAX_AGE_MS);
    // Said first on every connection, so a logger recording with another config says so.
    this.#logq.setHello(encodeHello({
      source: source.name,
      configHash: config.hash,
      configFile: config.file,
      configName: config.name,
    }));

    try {
      this.#ws.add(watchSignals(), TOKEN_SIGNALS, READABLE);
      const intake = {
        buf: this.#buf,
        meta: this.#meta,
        max: opts.batch,
        ingest: (n: number, port: number) => this.#ingest(n, port),
        log: opts.log,
      };
      this.#input = source.kind === "mqtt"
        ? new MqttInput(source, opts.mqttPassword, intake)
        : source.stream
        ? new StreamInput(source, intake)
        : new UdpInput(source, intake);
      this.#input.register(this.#ws, TOKEN_INPUT);
      this.#server = new ControlServer(
        decomSocket(opts.runDir, source.name),
        this.#ws,
        TOKEN_SERVER,
        {
          onRequest: (client, req) => this.#onRequest(client, req),
          onClose: (client) => this.#onClose(client),
        },
        (line) => opts.log(line),
      );
    } catch (e) {
      this.close();
      throw e;
    }
    this.#connectLogger();
    this.#publishHealth(realtimeNs());
  }

  get stats(): Readonly<DecomStats> {
    this.#stats.kernelDrops = this.#input.kernelDrops();
    return this.#stats;
  }

  /** Describes what decom listens on, for its start-up line. */
  describe(): string {
    const { source, runDir } = this.#opts;
    return `source "${source.name}": ${this.#input.describe()}; ${this.#served.length} ` +
      `measurements; serving ${decomSocket(runDir, source.name)}`;
  }

  /**
   * Runs until SIGINT, SIGTERM or SIGHUP (or `stop()` from a test). Returns the signal names
   * that stopped it.
   */
  run(): string[] {
    const intervalNs = BigInt(Math.round(this.#opts.healthInterval * 1e9));
    // Scheduled on the monotonic clock: a wall clock stepped back (GPS fix, `date -s` on a Pi
    // without an RTC) must not stop health publication and logger reconnection until it
    // catches up. Values keep wall-clock timestamps, like the packets'.
    let nextHealth = monotonicNs() + intervalNs;
    for (;;) {
      const now = monotonicNs();
      if (now >= nextHealth) {
        this.#publishHealth(realtimeNs());
        if (!this.#logq.stats().connected) this.#connectLogger();
        nextHealth = now + intervalNs;
      }
      // Raw packets held for the logger go out when due; the next wait ends by then.
      const log = this.#logq.flushDue();
      if (log.unsent && this.#loggerWatched && !this.#loggerWritable) this.#watchLogger(true);
      let timeoutMs = Math.max(1, Math.ceil(Number(nextHealth - monotonicNs()) / 1e6));
      if (log.dueMs >= 0) timeoutMs = Math.min(timeoutMs, Math.max(1, log.dueMs));
      // A listener paused for want of descriptors (EMFILE) comes back when due.
      const acceptMs = this.#server.poll();
      if (acceptMs >= 0) timeoutMs = Math.min(timeoutMs, Math.max(1, acceptMs));
      const inputMs = this.#input.poll();
      if (inputMs >= 0) timeoutMs = Math.min(timeoutMs, Math.max(1, inputMs));
      // Ring readers are woken at most once per millisecond: a held-back wake-up is due soon.
      const ringMs = this.#broadcast.flushDue();
      if (ringMs >= 0) timeoutMs = Math.min(timeoutMs, Math.max(1, ringMs));
      for (const { token, events } of this.#ws.waitSync(timeoutMs)) {
        if (token >= TOKEN_INPUT && token < TOKEN_INPUT + TOKENS_PER_INPUT) {
          this.#input.ready(token - TOKEN_INPUT);
        } else if (token === TOKEN_SIGNALS) {
          const signals = takeSignals();
          if (signals.length > 0) {
            this.#handOffToLogger();
            return signals;
          }
        } else if (token === TOKEN_LOGGER) {
          this.#onLoggerEvent(events);
        } else {
          this.#server.handle(token, events);
        }
      }
    }
  }

  /** Takes a received batch of `n` datagrams sent to `port`: identify, publish, log. */
  #ingest(n: number, port: number): void {
    const view = this.#metaView;
    const stats = this.#stats;
    for (let i = 0; i < n; i++) {
      const at = i * META_LEN;
      const length = view.getUint32(at, true);
      const flags = view.getUint16(at + 22, true);
      stats.packets++;
      stats.bytes += view.getUint32(at + 4, true);
      const verdict = this.#identifier.identifyRecord(port, this.#buf, i * SLOT, length, flags);
      if (verdict >= 0) {
        this.#types[i] = verdict;
        // Receive time as a double (no BigInt per datagram): ~256 ns resolution is plenty for ages.
        this.#lastSeen[verdict] = view.getUint32(at + 12, true) * 4294967296 +
          view.getUint32(at + 8, true);
        if (this.#ccsds[verdict]) this.#countSequence(verdict, i * SLOT);
      } else {
        this.#types[i] = NONE;
        this.#reject(port, i, verdict as Rejection);
      }
    }
    stats.decoded += this.#extractor.publishBatch(
      this.#buf,
      SLOT,
      this.#meta,
      this.#types,
      n,
      port,
    );
    stats.drops += this.#logq.forward(this.#buf, SLOT, this.#meta, n, port);
  }

  /**
   * A CCSDS packet's 14-bit sequence count (bytes 2–3): a jump forward of d counts d − 1 missing
   * packets. A jump back of more than half the range (a repeat, a reordering, or the sender's
   * counter restarting) is not a gap: the count starts again from there.
   */
  #countSequence(packet: number, at: number): void {
    const seq = ((this.#buf[at + 2] & 0x3f) << 8) | this.#buf[at + 3];
    const last = this.#seqLast[packet];
    this.#seqLast[packet] = seq;
    if (last < 0) return;
    const missing = (seq - last - 1) & 0x3fff;
    if (missing < 0x2000) this.#seqGaps[packet] += missing;
  }

  /** Counts a rejected datagram and reports it (rate-limited); the logger has it raw. */
  #reject(port: number, i: number, why: Rejection): void {
    const stats = this.#stats;
    stats.errors++;
    const name = REJECTION_NAMES[why];
    stats.rejected[name] = (stats.rejected[name] ?? 0) + 1;
    const window = Math.floor(performance.now() / 10_000);
    if (window !== this.#rejectLinesWindow) {
      this.#rejectLinesWindow = window;
      this.#rejectLines.clear();
    }
    const printed = (this.#rejectLines.get(name) ?? 0) + 1;
    this.#rejectLines.set(name, printed);
    if (printed > 5) {
      if (printed === 6) {
        this.#opts.log(`more datagrams rejected (${name}); counting them silently for now`);
      }
      return;
    }
    const at = i * META_LEN;
    const length = this.#metaView.getUint32(at, true);
    const orig = this.#metaView.getUint32(at + 4, true);
    const from = `${this.#meta[at + 16]}.${this.#meta[at + 17]}.${this.#meta[at + 18]}.${
      this.#meta[at + 19]
    }:${this.#metaView.getUint16(at + 20, true)}`;
    const head = Array.from(
      this.#buf.subarray(i * SLOT, i * SLOT + Math.min(length, 32)),
      (b) => b.toString(16).padStart(2, "0"),
    ).join("");
    const size = why === OVERSIZE ? `${orig} bytes` : `${length} bytes`;
    const what = why === MALFORMED
      ? `an MQTT message on ${this.#input.describe()}`
      : this.#input instanceof StreamInput
      ? `bytes of ${this.#input.describe()}`
      : `a datagram on port ${port} from ${from}`;
    this.#opts.log(
      `rejected ${what}: ${name} (${size}): ${head}${length > 32 ? "…" : ""} (kept raw in the log)`,
    );
  }

  #publishHealth(nowNs: bigint): void {
    const s = this.#stats;
    const dt = this.#lastHealthNs === 0n ? 0 : Number(nowNs - this.#lastHealthNs) / 1e9;
    const rate = dt > 0 ? (s.packets - this.#lastHealthPackets) / dt : 0;
    this.#lastHealthNs = nowNs;
    this.#lastHealthPackets = s.packets;
    s.drops = this.#logq.stats().dropped;
    const bytes = new Uint8Array(8);
    const view = new DataView(bytes.buffer);
    for (const m of this.#health) {
      const h = m.health!;
      switch (h.what) {
        case "packets":
        case "bytes":
        case "errors":
        case "drops":
          view.setBigUint64(0, BigInt(s[h.what]), true);
          break;
        case "kernel_drops":
          view.setBigUint64(0, BigInt(this.stats.kernelDrops), true);
          break;
        case "connected":
          if (this.#input instanceof StreamInput) {
            view.setBigUint64(0, BigInt(this.#input.stats().connected), true);
            break;
          }
          // falls through: an MQTT source
        case "gaps": {
          const mqtt = (this.#input as MqttInput).stats();
          view.setBigUint64(
            0,
            h.what === "gaps" ? BigInt(mqtt.gaps) : mqtt.connected ? 1n : 0n,
            true,
          );
          break;
        }
        case "backlog_bytes":
          view.setBigUint64(0, BigInt(this.#logq.stats().pendingBytes), true);
          break;
        case "packet_rate":
          view.setFloat64(0, rate, true);
          break;
        case "seq_gaps":
          view.setBigUint64(0, BigInt(this.#seqGaps[h.packet!]), true);
          break;
        case "age": {
          const last = this.#lastSeen[h.packet!];
          if (last === 0) continue; // never seen: no value rather than a made-up one
          view.setFloat64(0, (Number(nowNs) - last) / 1e9, true);
          break;
        }
      }
      this.#extractor.publishValue(m.index, bytes, nowNs);
    }
  }

  #connectLogger(): void {
    const path = loggerSocket(this.#opts.runDir);
    try {
      this.#logq.connect(path);
    } catch (e) {
      if (!this.#loggerAbsentSaid) {
        const why = e instanceof GswError ? e.errno : (e as Error).message;
        this.#opts.log(
          `logger not reachable at ${path} (${why}); buffering raw packets (up to ${
            this.#logBuffer >> 20
          } MiB) until it starts`,
        );
        this.#loggerAbsentSaid = true;
      }
      return;
    }
    this.#loggerAbsentSaid = false;
    this.#opts.log(`logger connected at ${path}`);
    this.#loggerWatched = false;
    this.#watchLogger(this.#logq.flush() > 0);
  }

  /** Watches the logger connection for hang-up, and for room when data is buffered. */
  #watchLogger(writable: boolean): void {
    const fd = this.#logq.fd();
    if (fd === null) return;
    const interest = READABLE | (writable ? WRITABLE : 0);
    if (this.#loggerWatched) this.#ws.modify(fd, TOKEN_LOGGER, interest);
    else this.#ws.add(fd, TOKEN_LOGGER, interest);
    this.#loggerWatched = true;
    this.#loggerWritable = writable;
  }

  #onLoggerEvent(events: number): void {
    if (events & HANGUP) {
      const fd = this.#logq.fd();
      if (fd !== null) this.#ws.remove(fd);
      this.#loggerWatched = false;
      this.#logq.disconnect();
      this.#opts.log("logger disconnected; buffering raw packets until it is back");
      return;
    }
    if (events & WRITABLE) {
      const left = this.#logq.flush();
      if (!this.#logq.stats().connected) {
        this.#loggerWatched = false;
        return;
      }
      this.#watchLogger(left > 0);
    }
  }

  #onRequest(client: Client, req: Request): Answer {
    const { config } = this.#opts;
    if (req.op !== "attach" && req.op !== "open") {
      return {
        reply: errorReply(
          "bad-request",
          `decom serves only "attach" and "open"; subscribers connect to the broker`,
        ),
      };
    }
    if (req.configHash !== config.hash) {
      return {
        reply: errorReply(
          "config-mismatch",
          `decom decodes with config "${config.name}" (${config.file}, sha256 ${
            config.hash.slice(0, 12)
          }) but ${req.client} loaded sha256 ${
            req.configHash.slice(0, 12)
          }: start both with the same --config`,
        ),
      };
    }
    if (req.op === "open") {
      // The writer keeps its descriptors: every reader gets its own copies in the message.
      return {
        reply: { v: PROTOCOL_VERSION, ok: true, ...this.#broadcastReply },
        fds: this.#broadcast.fds(),
      };
    }
    let wanted = this.#served;
    if (req.measurements) {
      const byName = new Map<string, Measurement>();
      for (const m of this.#served) byName.set(m.key, m).set(m.name, m);
      wanted = [];
      for (const name of req.measurements) {
        const m = byName.get(name);
        if (!m) {
          return {
            reply: errorReply(
              "unknown-measurement",
              `source "${this.#opts.source.name}" does not publish "${name}"`,
            ),
          };
        }
        wanted.push(m);
      }
    }
    if (wanted.length === 0) {
      return { reply: errorReply("bad-request", "attach asked for no measurements") };
    }
    if (this.#links.has(client.id)) {
      // One link per connection: its hang-up is what releases the link.
      return {
        reply: errorReply(
          "bad-request",
          "this connection is already attached; open another connection for another link",
        ),
      };
    }
    const writer = SegmentWriter.create(wanted.map((m) => ({ capacity: m.size, id: m.index })));
    const channelOf = new Uint32Array(config.measurements.length).fill(NONE);
    wanted.forEach((m, ch) => channelOf[m.index] = ch);
    return {
      reply: {
        v: PROTOCOL_VERSION,
        ok: true,
        configName: config.name,
        configHash: config.hash,
        channels: wanted.map((m, channel) => ({ channel, key: m.key })),
      },
      fds: writer.fds(),
      done: (sent) => {
        if (!sent) {
          writer.close();
          return;
        }
        writer.releaseFds();
        this.#extractor.addLink(writer, channelOf);
        this.#links.set(client.id, { writer });
        this.#opts.log(
          `${req.client} (pid ${client.peer.pid}) attached to ${wanted.length} measurements`,
        );
      },
    };
  }

  #onClose(client: Client): void {
    const link = this.#links.get(client.id);
    if (!link) return;
    this.#links.delete(client.id);
    this.#extractor.removeLink(link.writer);
    link.writer.close();
    this.#opts.log(`pid ${client.peer.pid} detached`);
  }

  /**
   * At a stop: gives the logger every raw packet still held, connecting to it if it has
   * started meanwhile, waiting at most HANDOFF_MS for it to take them.
   */
  #handOffToLogger(): void {
    if (this.#logq.stats().pendingPackets === 0) return;
    if (!this.#logq.stats().connected) this.#connectLogger();
    const deadline = performance.now() + HANDOFF_MS;
    let left = this.#logq.finish();
    const fd = this.#logq.fd();
    if (left === 0 || fd === null) return;
    using ws = new Waitset();
    ws.add(fd, 0, WRITABLE);
    while (left > 0 && this.#logq.stats().connected) {
      const ms = Math.ceil(deadline - performance.now());
      if (ms <= 0) break;
      ws.waitSync(ms);
      left = this.#logq.flush();
    }
  }

  /** A one-line summary of what decom did, for its exit. */
  summary(): string {
    const s = this.stats;
    const q = this.#logq.stats();
    const rejected = Object.entries(s.rejected).map(([k, v]) => `${v} ${k}`).join(", ");
    const lost = s.kernelDrops > 0
      ? `, ${s.kernelDrops} dropped by the kernel before decom read them (lost)`
      : "";
    const unlogged = q.pendingPackets > 0
      ? `, ${q.pendingPackets} NOT LOGGED (no logger took them before exit)`
      : "";
    return `${s.packets} datagrams (${s.bytes} bytes), ${s.decoded} values decoded, ${s.errors} rejected${
      rejected ? ` (${rejected})` : ""
    }${lost}; logger: ${q.sent} sent, ${q.dropped} dropped${unlogged}`;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    // Give the logger what is held and buffered, if it is there to take it (run() waited
    // for it already when stopped by a signal).
    if (this.#logq.stats().connected) this.#logq.finish();
    this.#server?.close();
    for (const link of this.#links.values()) link.writer.close();
    this.#links.clear();
    this.#input?.close();
    this.#extractor.close();
    this.#broadcast.close();
    this.#logq.close();
    this.#ws.close();
  }
}
