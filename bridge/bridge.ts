/**
 * The bridge: reads every datagram decom receives (the packet ring, so decom never waits for
 * it), turns each into MQTT messages (`payload.ts`) and publishes them to a broker through a
 * bounded queue. A slow or absent broker fills the queue; beyond its bound new datagrams are
 * dropped and counted, never blocking anything upstream. Reconnects with backoff and jitter.
 *
 * Accounting is per datagram: each is `received` from the ring (or `lost` there, if the
 * bridge fell a whole ring behind), then `sent` (every message of it written at QoS 0, or
 * acknowledged at QoS 1), `dropped` (queue full) or still `queued`.
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import type { Config, Measurement, RawValue } from "../config/mod.ts";
import { decodePacket } from "../config/mod.ts";
import { openPackets, type PacketStream } from "../lib/packets.ts";
import { latestMessage, type Message, type PayloadOptions, Payloads } from "./payload.ts";

/** Bytes counted per queued message beyond its topic and payload (objects, bookkeeping). */
const PER_MESSAGE = 96;
/** Socket bytes not yet taken by the kernel beyond which the bridge stops handing over more. */
const HIGH_WATER = 1 << 20;
const MIN_BACKOFF_MS = 250;
const MAX_BACKOFF_MS = 30_000;
/** How often a backed-up queue is tried again (the socket drained, acknowledgements came). */
const PUMP_RETRY_MS = 10;

export interface BridgeOptions {
  config: Config;
  runDir?: string;
  /** mqtt://host:port or mqtts://host:port. */
  url: string;
  clientId: string;
  username?: string;
  password?: Uint8Array;
  /** PEM of the certificate authority for mqtts://. */
  ca?: Uint8Array;
  payload: PayloadOptions;
  qos: 0 | 1;
  maxInflight: number;
  queueBytes: number;
  /** Publish each measurement's latest value, retained, at most this often (Hz); 0: never. */
  latestHz: number;
  /** Seconds between health messages and checks. */
  healthInterval: number;
  sources?: string[];
  log: (line: string) => void;
}

export interface BridgeStats {
  connected: boolean;
  connections: number;
  /** Datagrams read from decom's ring. */
  received: number;
  /** Datagrams decom received that the bridge's reader lost (fell a whole ring behind). */
  lost: number;
  /** Datagrams whose messages all went out (written at QoS 0, acknowledged at QoS 1). */
  sent: number;
  /** Datagrams dropped because the queue was full. */
  dropped: number;
  /** Datagrams waiting in the queue or in flight. */
  queue: number;
  queueBytes: number;
  /** Messages handed to the broker and not yet acknowledged (QoS 1). */
  inflight: number;
}

/** One datagram's messages, sent together or dropped together. */
interface Group {
  msgs: Message[];
  bytes: number;
  /** Messages of it not yet written (QoS 0) or acknowledged (QoS 1). */
  pending: number;
  /** A datagram (counted in the stats) or a bridge message (latest values). */
  datagram: boolean;
}

/** Refused at CONNACK for credentials: not worth retrying at start. */
export class BrokerRefused extends Error {
  override name = "BrokerRefused";
}

export class Bridge {
  readonly #o: BridgeOptions;
  readonly #payloads: Payloads;
  readonly #client: mqtt.MqttClient;
  readonly #stream: PacketStream;
  readonly #abort = new AbortController();
  /** Groups not yet handed to the client, oldest first (`#head` is the first live one). */
  #queue: Group[] = [];
  #head = 0;
  readonly #stats: BridgeStats = {
    connected: false,
    connections: 0,
    received: 0,
    lost: 0,
    sent: 0,
    dropped: 0,
    queue: 0,
    queueBytes: 0,
    inflight: 0,
  };
  #backoff = MIN_BACKOFF_MS;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #pumpTimer: ReturnType<typeof setTimeout> | undefined;
  #healthTimer: ReturnType<typeof setInterval> | undefined;
  #latestTimer: ReturnType<typeof setInterval> | undefined;
  readonly #latest = new Map<Measurement, { value: RawValue; t: bigint }>();
  #droppedSaidAt = -Infinity;
  #lostSaid = 0;
  #lastError = "";
  #closed = false;
  /** Resolves when the first connection is made, rejects if the broker refuses the login. */
  readonly firstConnection: Promise<void>;

  constructor(opts: BridgeOptions) {
    this.#o = opts;
    this.#payloads = new Payloads(opts.config, opts.payload);
    this.#client = mqtt.connect(opts.url, {
      clientId: opts.clientId,
      username: opts.username,
      password: opts.password ? Buffer.from(opts.password) : undefined,
      ca: opts.ca ? Buffer.from(opts.ca) : undefined,
      protocolVersion: 4,
      clean: true,
      keepalive: 10,
      connectTimeout: 10_000,
      // Reconnection is the bridge's own, with backoff and jitter; nothing queues inside the
      // client while disconnected (the bridge's bounded queue does).
      reconnectPeriod: 0,
      queueQoSZero: false,
      resubscribe: false,
    });
    this.firstConnection = new Promise((resolve, reject) => {
      this.#client.once("connect", () => resolve());
      this.#client.on("error", (e: Error & { code?: number | string }) => {
        if (this.#stats.connections > 0) return;
        if (e.code === 4 || e.code === 5) reject(new BrokerRefused(refusal(e.code, opts)));
        if (isCertificateError(e)) reject(new BrokerRefused(untrusted(e, opts)));
      });
    });
    this.firstConnection.catch(() => {}); // observed by main; unhandled here is not an error
    this.#client.on("connect", () => this.#onConnect());
    this.#client.on("close", () => this.#onClose());
    this.#client.on("error", (e: Error) => this.#onError(e));
    this.#stream = openPackets(opts.config, {
      runDir: opts.runDir,
      sources: opts.sources,
      signal: this.#abort.signal,
      client: "bridge",
      onStatus: (s) => opts.log(s.message),
    });
    this.#healthTimer = setInterval(() => this.#health(), opts.healthInterval * 1000);
    if (opts.latestHz > 0) {
      this.#latestTimer = setInterval(() => this.#publishLatest(), 1000 / opts.latestHz);
    }
  }

  get stats(): Readonly<BridgeStats> {
    return this.#stats;
  }

  /** Reads decom's packets until `close()`. */
  async run(): Promise<void> {
    const out: Message[] = [];
    for await (const batch of this.#stream) {
      const s = this.#stats;
      if (batch.lost > 0) this.#onLost(batch.lost);
      for (const p of batch.packets) {
        s.received++;
        out.length = 0;
        this.#payloads.build(p, out);
        if (this.#o.latestHz > 0 && p.packet >= 0) {
          this.#keepLatest(p.packet, p.bytes, p.timestampNs);
        }
        if (out.length > 0) this.#enqueue(out.slice(), true);
        else s.sent++; // nothing to say about it in this layout (rit: not identified)
      }
      this.#pump();
    }
  }

  #enqueue(msgs: Message[], datagram: boolean): void {
    let bytes = 0;
    for (const m of msgs) bytes += m.topic.length + m.payload.byteLength + PER_MESSAGE;
    const s = this.#stats;
    if (s.queueBytes + bytes > this.#o.queueBytes) {
      if (datagram) this.#onDropped();
      return;
    }
    this.#queue.push({ msgs, bytes, pending: msgs.length, datagram });
    s.queueBytes += bytes;
    if (datagram) s.queue++;
  }

  /** Hands queued groups to the client while it is connected and keeping up. */
  #pump(): void {
    const c = this.#client;
    const s = this.#stats;
    // Our own flag, set on "connect", and not the client's `connected`: mqtt.js sets that as
    // soon as the broker answers, then re-sends the messages that were in flight when the last
    // connection broke, and only then says "connect". A message published in between takes a
    // message id the re-sent ones still hold, and their acknowledgements are never reported.
    while (this.#head < this.#queue.length && s.connected && c.connected) {
      if (this.#o.qos === 1 && s.inflight >= this.#o.maxInflight) break;
      // deno-lint-ignore no-explicit-any -- the socket of mqtt.js's client (a node Duplex)
      const stream = (c as any).stream as { writableLength?: number } | undefined;
      if ((stream?.writableLength ?? 0) > HIGH_WATER) {
        this.#pumpTimer ??= setTimeout(() => {
          this.#pumpTimer = undefined;
          this.#pump();
        }, PUMP_RETRY_MS);
        break;
      }
      const g = this.#queue[this.#head++];
      for (const m of g.msgs) {
        s.inflight++;
        c.publish(
          m.topic,
          Buffer.from(m.payload.buffer, m.payload.byteOffset, m.payload.byteLength),
          { qos: this.#o.qos, retain: m.retain },
          (err) => this.#onPublished(g, err),
        );
      }
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) {
      this.#queue = this.#queue.slice(this.#head);
      this.#head = 0;
    }
  }

  #onPublished(g: Group, err: Error | undefined): void {
    const s = this.#stats;
    s.inflight--;
    if (--g.pending > 0) return;
    s.queueBytes -= g.bytes;
    if (g.datagram) {
      s.queue--;
      // QoS 0 messages a closing connection could not take are lost: counted as dropped.
      if (err) s.dropped++;
      else s.sent++;
    }
    if (this.#o.qos === 1) this.#pump();
  }

  #onDropped(): void {
    const s = this.#stats;
    s.dropped++;
    const now = performance.now();
    if (now - this.#droppedSaidAt < 10_000) return;
    this.#droppedSaidAt = now;
    this.#o.log(
      `the outgoing queue is full (${this.#o.queueBytes >> 20} MiB, ${s.queue} datagrams): ` +
        `dropping new datagrams (${s.dropped} so far, counted in bridge.dropped) until the ` +
        `broker takes more${s.connected ? "" : "; the broker is not connected"}`,
    );
  }

  #onLost(n: number): void {
    this.#stats.lost += n;
    if (this.#stats.lost - this.#lostSaid < 1) return;
    this.#lostSaid = this.#stats.lost;
    this.#o.log(
      `fell behind decom's packet ring and lost ${n} datagrams (${this.#stats.lost} in all); ` +
        "a larger decom --packet-ring gives the bridge more time",
    );
  }

  #keepLatest(packet: number, bytes: Uint8Array, t: bigint): void {
    for (const f of decodePacket(this.#o.config, packet, bytes)) {
      this.#latest.set(f.measurement, { value: f.value, t });
    }
  }

  #publishLatest(): void {
    if (this.#latest.size === 0) return;
    const msgs = [...this.#latest].map(([m, v]) => latestMessage(this.#o.payload, m, v.value, v.t));
    this.#latest.clear();
    this.#enqueue(msgs, false);
    this.#pump();
  }

  #onConnect(): void {
    const s = this.#stats;
    s.connected = true;
    s.connections++;
    this.#backoff = MIN_BACKOFF_MS;
    this.#lastError = "";
    this.#o.log(
      `connected to ${this.#o.url}${s.connections > 1 ? " again" : ""}` +
        (s.queue > 0 ? `; sending the ${s.queue} datagrams queued meanwhile` : ""),
    );
    this.#health();
    this.#pump();
  }

  #onError(e: Error & { code?: number | string }): void {
    // A login or certificate refused before any connection ends the bridge with that message
    // (main.ts): neither gets better by trying again.
    const fatal = e.code === 4 || e.code === 5 || isCertificateError(e);
    if (fatal && this.#stats.connections === 0) return;
    const why = typeof e.code === "number"
      ? refusal(e.code, this.#o)
      : isCertificateError(e)
      ? untrusted(e, this.#o)
      : e.message;
    if (why !== this.#lastError) this.#o.log(`MQTT broker ${this.#o.url}: ${why}`);
    this.#lastError = why;
  }

  #onClose(): void {
    if (this.#closed) return;
    const s = this.#stats;
    if (s.connected) {
      this.#o.log(
        `lost the connection to ${this.#o.url}; queueing (up to ${
          this.#o.queueBytes >> 20
        } MiB) and reconnecting`,
      );
    }
    s.connected = false;
    if (this.#reconnectTimer !== undefined) return;
    // Full jitter on an exponential backoff: bridges of several stations do not all return
    // to a restarted broker at the same instant.
    const wait = this.#backoff / 2 + Math.random() * this.#backoff / 2;
    this.#backoff = Math.min(MAX_BACKOFF_MS, this.#backoff * 2);
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = undefined;
      // mqtt.js's reconnect() starts empty stores unless it is handed the old ones: then the
      // QoS 1 messages in flight when the connection broke would be forgotten, neither sent
      // nor reported. With them, it sends them again first (at least once, as QoS 1 allows).
      const c = this.#client;
      if (!this.#closed) {
        c.reconnect({ incomingStore: c.incomingStore, outgoingStore: c.outgoingStore });
      }
    }, wait);
  }

  #health(): void {
    const s = this.#stats;
    if (!s.connected) return;
    const o = this.#o.payload;
    const json = JSON.stringify({
      t: Date.now() / 1000,
      connected: s.connected,
      received: s.received,
      sent: s.sent,
      dropped: s.dropped,
      lost: s.lost,
      queue: s.queue,
      queue_bytes: s.queueBytes,
      inflight: s.inflight,
      connections: s.connections,
    });
    // Outside the queue and the counts: a health message is never worth a datagram's place.
    this.#client.publish(`${o.prefix}/${o.vehicle}/bridge/health`, json, { qos: 0, retain: true });
  }

  /** One line for the exit. */
  summary(): string {
    const s = this.#stats;
    return `${s.received} datagrams read: ${s.sent} sent, ${s.dropped} dropped (queue full), ` +
      `${s.queue} not sent at exit; ${s.lost} lost by falling behind decom's ring; ` +
      `${s.connections} connection${s.connections === 1 ? "" : "s"}`;
  }

  /** Stops reading; gives the broker up to `graceMs` to take what is queued; disconnects. */
  async close(graceMs = 2000): Promise<void> {
    if (this.#closed) return;
    this.#abort.abort();
    clearInterval(this.#healthTimer);
    clearInterval(this.#latestTimer);
    const deadline = performance.now() + graceMs;
    while (this.#stats.queue > 0 && this.#stats.connected && performance.now() < deadline) {
      this.#pump();
      await new Promise((r) => setTimeout(r, 20));
    }
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    clearTimeout(this.#pumpTimer);
    this.#health();
    // A graceful end waits for every QoS 1 acknowledgement, which a broker that went away (or
    // one that never answers) may never send: wait for it only until the grace time is up,
    // then close the socket. What was not acknowledged stays counted as not sent.
    const client = this.#client;
    if (this.#stats.connected) {
      const left = Math.max(0, deadline - performance.now());
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ended = await Promise.race([
        client.endAsync(false).then(() => true, () => true),
        new Promise<boolean>((r) => timer = setTimeout(() => r(false), left + 200)),
      ]);
      clearTimeout(timer);
      if (ended) return;
    }
    await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
  }
}

function refusal(code: number, o: BridgeOptions): string {
  switch (code) {
    case 4:
    case 5: // mosquitto answers "not authorised" to a wrong password too
      return `the broker refused the login: wrong user name or password, or not allowed${
        o.username ? ` (user "${o.username}")` : " (no --username given)"
      }`;
    default:
      return `the broker refused the connection (code ${code})`;
  }
}

/** A TLS failure to trust the broker's certificate (node:tls error codes). */
function isCertificateError(e: Error & { code?: number | string }): boolean {
  return typeof e.code === "string" &&
    /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|UNABLE_TO_GET_ISSUER/.test(e.code);
}

function untrusted(e: Error, o: BridgeOptions): string {
  return `the broker's TLS certificate is not trusted (${e.message}); ${
    o.ca
      ? "it is not signed by the --ca-file given"
      : "give its certificate authority with --ca-file"
  }`;
}
