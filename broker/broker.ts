/**
 * The broker: attaches to each data source's decom, and copies every new value of the
 * measurements it serves into the channels of every subscriber that follows them, honouring
 * each subscriber's maximum rate. Subscribers that stop reading lose freshness for
 * themselves only; decom never notices them. One synchronous waitset wait drives it all.
 */
import type { Config, Measurement } from "../config/mod.ts";
import { findMeasurement, suggestMeasurement } from "../config/mod.ts";
import { decomSocket } from "../control/rundir.ts";
import { sendRequest } from "../control/client.ts";
import {
  type BroadcastReply,
  type ChannelInfo,
  type ChannelsReply,
  type DirectSource,
  encode,
  type ErrorReply,
  errorReply,
  MAX_CONTROL_MESSAGE,
  parseReply,
  PROTOCOL_VERSION,
  type Request,
} from "../control/protocol.ts";
import { type Answer, type Client, ControlServer, MAX_CLIENTS } from "../control/server.ts";
import {
  BroadcastReader,
  closeFd,
  dupFd,
  Fanout,
  GswError,
  HANGUP,
  MAX_FDS,
  monotonicNs,
  newEventFd,
  type OwnedFd,
  pidfdOpen,
  READABLE,
  type SegmentFds,
  SegmentReader,
  SegmentWriter,
  signalEventFd,
  takeSignals,
  UnixConnection,
  Waitset,
  watchSignals,
} from "../ffi/mod.ts";

/** How often to try reaching a decom that is not there (subscribers resume within 1 s). */
const RETRY_MS = 200;
/** How long to wait between attempts when decom refuses us (e.g. another config). */
const REFUSED_RETRY_MS = 5000;

const TOKEN_SIGNALS = 1;
const TOKEN_SOURCE_CONN = 1000;
const TOKEN_SOURCE_BELL = 2000;
/** Relayed bells: source index × RELAY_STRIDE + bell. */
const TOKEN_RELAY = 1 << 19;
const RELAY_STRIDE = 64;
const TOKEN_SERVERS = 1 << 20;
/** Longest wait the native waitset takes (its timeout is an i32 of milliseconds). */
const MAX_WAIT_MS = 2 ** 31 - 1;

export interface BrokerOptions {
  config: Config;
  runDir: string;
  /** Measurements to serve (every one of the config when empty). */
  measurements: Measurement[];
  /** Socket paths to listen on. */
  sockets: string[];
  /**
   * Direct subscribers per decom bell that decom wakes itself; the others are woken by this
   * broker relaying the bell (one more hop), so decom's cost stays bounded whatever the
   * number of subscribers. Default DEFAULT_DIRECT_WAKES.
   */
  directWakes?: number;
  log: (line: string) => void;
}

/**
 * Each direct subscriber decom wakes itself costs decom ~1.5 µs per batch (the kernel wakes
 * it inside decom's eventfd write; `gsw-bench-native broadcast-fanout`): 4 keep decom's
 * wake-ups within a few µs per datagram, and serve a dashboard, a bridge and two more at the
 * lowest latency.
 */
export const DEFAULT_DIRECT_WAKES = 4;

/** A decom's broadcast segment, held to hand its descriptors to direct subscribers. */
interface SourceBroadcast {
  /** Data memfd, control memfd, then every bell (ours: closed on detach). */
  fds: number[];
  /** decom's process, so direct readers notice when it exits. */
  pidfd: OwnedFd;
  pid: number;
  /** Measurement index → its channel and bell in the segment. */
  channelOf: Map<number, { channel: number; bell: number }>;
  /** Per bell: direct subscribers holding one of the seats decom wakes itself. */
  seats: number[];
  /** This broker's own reader of the segment, to relay bells (made when first needed). */
  relayReader: BroadcastReader | null;
  /** Per bell relayed: the eventfd the relayed subscribers watch, and how many they are. */
  relays: Map<number, { fd: OwnedFd; users: number }>;
}

/** A bell a direct subscriber holds: a seat decom wakes, or a relay. */
interface Held {
  source: SourceBroadcast;
  bell: number;
  relay: boolean;
}

/** The link to one data source's decom. */
interface SourceLink {
  name: string;
  index: number;
  /** Served measurements this source publishes. */
  measurements: Measurement[];
  conn: UnixConnection | null;
  /** Set once decom answered the attach request. */
  reader: SegmentReader | null;
  /** Set once decom answered the open request that follows the attach. */
  broadcast: SourceBroadcast | null;
  fanout: Fanout | null;
  /** Measurement index → channel in decom's segment. */
  channelOf: Map<number, number>;
  retryAt: number;
  /** Why the last attempt failed, so an outage is reported once, not every retry. */
  lastProblem: string;
  /** Monotonic ns when a rate-limited value becomes due (0n: none). */
  dueNs: bigint;
  /** Routes from this source to subscribers' segments (the fanout's, counted here). */
  routes: number;
  /**
   * Whether decom's doorbell for us is in the waitset. Only while some route needs it: with
   * every subscriber reading directly, decom's publishes find our channels untaken and stop
   * ringing, so decom makes no wake-up for us and we sleep (see `#watch`).
   */
  watching: boolean;
}

interface Subscriber {
  client: Client;
  /** Its point-to-point segment (null when every measurement is read directly). */
  writer: SegmentWriter | null;
  /** (measurement, channel in the subscriber's segment) pairs. */
  routes: { measurement: Measurement; channel: number }[];
  minIntervalNs: bigint;
  label: string;
  /** Seats and relays its direct sources use, given back when it leaves. */
  held: Held[];
}

export class Broker {
  readonly #opts: BrokerOptions;
  readonly #ws = new Waitset();
  readonly #servers: ControlServer[] = [];
  readonly #sources: SourceLink[] = [];
  readonly #sourceOf = new Map<number, SourceLink>();
  readonly #served: Set<number>;
  readonly #subscribers = new Map<string, Subscriber>();
  readonly #buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  readonly #directWakes: number;
  #copied = 0;
  #closed = false;

  constructor(opts: BrokerOptions) {
    this.#opts = opts;
    this.#directWakes = opts.directWakes ?? DEFAULT_DIRECT_WAKES;
    const { config } = opts;
    this.#served = new Set(opts.measurements.map((m) => m.index));
    for (const source of config.sources) {
      const measurements = opts.measurements.filter((m) => sourceOf(config, m) === source.name);
      if (measurements.length === 0) continue;
      const link: SourceLink = {
        name: source.name,
        index: this.#sources.length,
        measurements,
        conn: null,
        reader: null,
        broadcast: null,
        fanout: null,
        channelOf: new Map(),
        retryAt: 0,
        lastProblem: "",
        dueNs: 0n,
        routes: 0,
        watching: false,
      };
      this.#sources.push(link);
      for (const m of measurements) this.#sourceOf.set(m.index, link);
    }
    try {
      this.#ws.add(watchSignals(), TOKEN_SIGNALS, READABLE);
      opts.sockets.forEach((path, i) => {
        this.#servers.push(
          new ControlServer(path, this.#ws, TOKEN_SERVERS + i * (MAX_CLIENTS + 1), {
            onRequest: (client, req) => this.#onRequest(i, client, req),
            onClose: (client) => this.#onClose(i, client),
          }, opts.log),
        );
      });
    } catch (e) {
      this.close();
      throw e;
    }
    for (const s of this.#sources) this.#connect(s);
  }

  describe(): string {
    const { measurements, config, sockets } = this.#opts;
    const what = measurements.length === config.measurements.length
      ? `all ${measurements.length} measurements`
      : `${measurements.length} measurement${measurements.length > 1 ? "s" : ""} (${
        measurements.slice(0, 5).map((m) => m.key).join(", ")
      }${measurements.length > 5 ? ", …" : ""})`;
    return `serving ${what} of "${config.name}" from ${this.#sources.length} source${
      this.#sources.length === 1 ? "" : "s"
    } on ${sockets.join(", ")}`;
  }

  /** Runs until SIGINT, SIGTERM or SIGHUP; returns the signals that stopped it. */
  run(): string[] {
    for (;;) {
      const nowMs = performance.now();
      let timeout = -1;
      for (const s of this.#sources) {
        if (!s.conn && !s.reader) {
          if (nowMs >= s.retryAt) this.#connect(s);
          if (!s.conn && !s.reader) timeout = minTimeout(timeout, Math.ceil(s.retryAt - nowMs));
        }
      }
      const dueNs = this.#earliestDue();
      if (dueNs > 0n) {
        const left = Number(dueNs - monotonicNs()) / 1e6;
        timeout = minTimeout(timeout, Math.max(0, Math.ceil(left)));
      }
      // A listener paused for want of descriptors goes back into the waitset when due.
      for (const server of this.#servers) {
        const ms = server.poll();
        if (ms >= 0) timeout = minTimeout(timeout, ms);
      }
      const ready = this.#ws.waitSync(timeout);
      for (const { token, events } of ready) {
        if (token >= TOKEN_SOURCE_BELL && token < TOKEN_SOURCE_BELL + this.#sources.length) {
          this.#pump(this.#sources[token - TOKEN_SOURCE_BELL]);
        } else if (
          token >= TOKEN_SOURCE_CONN && token < TOKEN_SOURCE_CONN + this.#sources.length
        ) {
          this.#onSourceEvent(this.#sources[token - TOKEN_SOURCE_CONN], events);
        } else if (token >= TOKEN_RELAY && token < TOKEN_SERVERS) {
          this.#relay(token - TOKEN_RELAY);
        } else if (token === TOKEN_SIGNALS) {
          const signals = takeSignals();
          if (signals.length > 0) return signals;
        } else if (token >= TOKEN_SERVERS) {
          const i = Math.floor((token - TOKEN_SERVERS) / (MAX_CLIENTS + 1));
          this.#servers[i]?.handle(token, events);
        }
      }
      if (dueNs > 0n && monotonicNs() >= dueNs) {
        for (const s of this.#sources) if (s.dueNs > 0n) this.#pump(s);
      }
    }
  }

  #earliestDue(): bigint {
    let due = 0n;
    for (const s of this.#sources) {
      if (s.dueNs > 0n && (due === 0n || s.dueNs < due)) due = s.dueNs;
    }
    return due;
  }

  #pump(s: SourceLink): void {
    if (!s.fanout) return;
    const r = s.fanout.pump(monotonicNs());
    s.dueNs = r.nextDueNs;
    this.#copied += r.copied;
  }

  // -- decom links ------------------------------------------------------------------------

  #connect(s: SourceLink): void {
    const path = decomSocket(this.#opts.runDir, s.name);
    let conn: UnixConnection;
    try {
      conn = UnixConnection.connect(path);
    } catch (e) {
      const why = e instanceof GswError ? e.errno : (e as Error).message;
      this.#problem(
        s,
        `decom for source "${s.name}" is not running (${why} at ${path}); waiting for it`,
        RETRY_MS,
      );
      return;
    }
    const sent = sendRequest(
      conn,
      encode({
        v: PROTOCOL_VERSION,
        op: "attach",
        configHash: this.#opts.config.hash,
        measurements: s.measurements.map((m) => m.key),
        client: "broker",
      }),
    );
    if (!sent) {
      conn.close();
      this.#problem(s, `decom for source "${s.name}" is not reading its socket`, RETRY_MS);
      return;
    }
    s.conn = conn;
    this.#ws.add(conn.fd, TOKEN_SOURCE_CONN + s.index, READABLE);
  }

  /** Logs a problem with a source once per outage and schedules the next attempt. */
  #problem(s: SourceLink, message: string, retryMs: number): void {
    if (message !== s.lastProblem) this.#opts.log(message);
    s.lastProblem = message;
    s.retryAt = performance.now() + retryMs;
  }

  #onSourceEvent(s: SourceLink, events: number): void {
    if (!s.conn) return;
    if (events & READABLE && (!s.reader || !s.broadcast)) {
      const got = s.conn.recv(this.#buf);
      if (got !== null && got !== "closed") {
        if (!s.reader) this.#onAttachReply(s, got.length, got.fds);
        else this.#onOpenReply(s, got.length, got.fds);
        return;
      }
    }
    if (events & HANGUP) this.#detach(s, `decom for source "${s.name}" went away`);
  }

  #onAttachReply(s: SourceLink, length: number, fds: number[]): void {
    let refused: ErrorReply | null = null;
    try {
      const reply = parseReply(this.#buf.subarray(0, length));
      if (!reply.ok) {
        refused = reply;
      } else if (!("channels" in reply) || fds.length !== 3) {
        throw new Error("decom's reply carries no channels");
      } else {
        const reader = SegmentReader.attach(fds as SegmentFds);
        fds = [];
        s.reader = reader;
        s.fanout = new Fanout(reader);
        s.channelOf = new Map();
        for (const ch of reply.channels) {
          const m = this.#opts.config.measurements.find((x) => x.key === ch.key);
          if (m) s.channelOf.set(m.index, ch.channel);
        }
        const now = monotonicNs();
        for (const sub of this.#subscribers.values()) this.#route(s, sub, now);
        s.lastProblem = "";
        // Then its broadcast segment, for direct subscribers; "attached" is said once that
        // has been answered, so whoever waits for the line finds direct reads ready.
        const open = encode({
          v: PROTOCOL_VERSION,
          op: "open",
          configHash: this.#opts.config.hash,
          client: "broker",
        });
        if (!sendRequest(s.conn!, open)) this.#attached(s, "decom did not take the open request");
        return;
      }
    } catch (e) {
      fds.forEach(closeFd);
      this.#detach(s, `bad reply from decom for source "${s.name}": ${(e as Error).message}`);
      return;
    }
    fds.forEach(closeFd);
    this.#detach(s, `decom for source "${s.name}" refused: ${refused.message}`, REFUSED_RETRY_MS);
  }

  /**
   * decom's broadcast segment: kept (the descriptors, and a pidfd of decom opened while its
   * connection proves it is alive) to hand to direct subscribers. Without it (an older decom,
   * or a refusal) subscribers are served through this broker as before.
   */
  #onOpenReply(s: SourceLink, length: number, fds: number[]): void {
    let pidfd: OwnedFd | null = null;
    try {
      const reply = parseReply(this.#buf.subarray(0, length));
      if (!reply.ok || !("bells" in reply)) {
        throw new Error(reply.ok ? "no broadcast segment in the reply" : reply.message);
      }
      const b = reply as BroadcastReply;
      if (fds.length !== 2 + b.bells) {
        throw new Error(`${fds.length} descriptors for ${b.bells} bells`);
      }
      const pid = s.conn!.peerCred().pid;
      pidfd = pidfdOpen(pid);
      const channelOf = new Map<number, { channel: number; bell: number }>();
      for (const ch of b.channels) {
        const m = this.#opts.config.measurements.find((x) => x.key === ch.key);
        if (m && ch.bell !== undefined) {
          channelOf.set(m.index, { channel: ch.channel, bell: ch.bell });
        }
      }
      s.broadcast = {
        fds,
        pidfd,
        pid,
        channelOf,
        seats: Array(b.bells).fill(0),
        relayReader: null,
        relays: new Map(),
      };
      this.#attached(s, "");
    } catch (e) {
      fds.forEach(closeFd);
      pidfd?.close();
      this.#attached(s, (e as Error).message);
    }
  }

  /** Says a source is attached: with direct reads, or (`why` not) through this broker only. */
  #attached(s: SourceLink, why: string): void {
    this.#opts.log(
      `attached to decom for source "${s.name}" (${s.channelOf.size} channels; ${
        why
          ? `no direct reads: ${why}; its subscribers are served through the broker`
          : "direct reads"
      })`,
    );
  }

  #detach(s: SourceLink, why: string, retryMs = RETRY_MS): void {
    if (s.conn) {
      this.#ws.remove(s.conn.fd);
      s.conn.close();
      s.conn = null;
    }
    if (s.reader) {
      if (s.watching) this.#ws.remove(s.reader.doorbellFd);
      s.watching = false;
      s.routes = 0;
      s.fanout?.close();
      s.reader.close();
      s.fanout = null;
      s.reader = null;
      s.dueNs = 0n;
    }
    this.#dropBroadcast(s);
    this.#problem(s, why, retryMs);
  }

  #dropBroadcast(s: SourceLink): void {
    const b = s.broadcast;
    if (!b) return;
    for (const [bell, relay] of b.relays) {
      this.#ws.remove(b.relayReader!.bellFd(bell));
      relay.fd.close();
    }
    b.relays.clear();
    b.relayReader?.close();
    b.fds.forEach(closeFd);
    b.pidfd.close();
    s.broadcast = null;
  }

  /** Adds routes from source `s` to subscriber `sub` for the measurements it follows. */
  #route(s: SourceLink, sub: Subscriber, nowNs: bigint): void {
    if (!s.fanout || !sub.writer) return;
    try {
      for (const r of sub.routes) {
        const src = s.channelOf.get(r.measurement.index);
        if (src === undefined || this.#sourceOf.get(r.measurement.index) !== s) continue;
        // Not watching: our channels hold whatever we last took. Take decom's newest first, so
        // the route starts from the current value (`add` sends what we hold).
        if (!s.watching && s.routes === 0) this.#pump(s);
        s.fanout.add(src, sub.writer, r.channel, sub.minIntervalNs, nowNs);
        s.routes++;
      }
    } finally {
      // Whatever routes were added are watched, even if a later one failed.
      this.#watch(s);
    }
  }

  /**
   * Watches decom's doorbell while some route needs our copy of its values, and stops when
   * none does. Stopped, we take nothing, so decom's next publish of each channel finds it
   * untaken and rings no more (one last ring at most, while the waitset had us awake: none):
   * a subscriber reading directly costs decom one wake-up per batch, not two. Started again,
   * the waitset's check before sleeping finds what decom marked pending meanwhile.
   */
  #watch(s: SourceLink): void {
    const want = s.reader !== null && s.routes > 0;
    if (want === s.watching) return;
    if (want) this.#ws.addReader(s.reader!, TOKEN_SOURCE_BELL + s.index);
    else this.#ws.remove(s.reader!.doorbellFd);
    s.watching = want;
  }

  // -- subscribers --------------------------------------------------------------------------

  #onRequest(server: number, client: Client, req: Request): Answer {
    const { config } = this.#opts;
    const ok = {
      v: PROTOCOL_VERSION,
      ok: true as const,
      configName: config.name,
      configHash: config.hash,
    };
    if (req.op === "list") {
      return {
        reply: {
          ...ok,
          measurements: this.#opts.measurements.map((m) => ({
            key: m.key,
            name: m.name,
            live: this.#sourceOf.get(m.index)?.reader != null,
          })),
        },
      };
    }
    if (req.op !== "subscribe") {
      return { reply: errorReply("bad-request", `the broker serves "subscribe" and "list"`) };
    }
    const wanted: Measurement[] = [];
    for (const name of req.measurements) {
      const m = findMeasurement(config, name);
      if (!m) {
        const suggestion = suggestMeasurement(config, name);
        return {
          reply: errorReply(
            "unknown-measurement",
            `no measurement "${name}" in "${config.name}"${
              suggestion ? `; did you mean "${suggestion}"?` : ""
            }`,
            suggestion,
          ),
        };
      }
      if (!this.#served.has(m.index)) {
        return {
          reply: errorReply(
            "unknown-measurement",
            `this broker does not serve "${name}"; start one that does: deno task broker --measurement ${m.key}`,
          ),
        };
      }
      if (!wanted.includes(m)) wanted.push(m);
    }
    const rate = req.maxRateHz ?? 0;
    const plan = req.direct && rate === 0 ? this.#planDirect(wanted) : null;
    const classic = wanted.filter((m) => !plan?.entries.has(m));
    const channels: ChannelInfo[] = [];
    let next = 0;
    for (const m of wanted) {
      const d = plan?.entries.get(m);
      const measurement = { ...m, description: undefined };
      channels.push(
        d
          ? { channel: -1, key: m.key, measurement, direct: d }
          : { channel: next++, key: m.key, measurement },
      );
    }
    const reply: ChannelsReply = { ...ok, channels };
    if (plan) {
      reply.direct = plan.sources;
      // Served here only because their decom is away now: worth asking again later.
      reply.upgradable = classic.some((m) => !this.#sourceOf.get(m.index)?.broadcast);
    }
    const tooLarge = tooLargeReply(reply);
    if (tooLarge) return { reply: tooLarge };
    const writer = classic.length > 0
      ? SegmentWriter.create(classic.map((m) => ({ capacity: m.size, id: m.index })))
      : null;
    const sub: Subscriber = {
      client,
      writer,
      routes: classic.map((measurement, channel) => ({ measurement, channel })),
      minIntervalNs: rate > 0 ? BigInt(Math.round(1e9 / rate)) : 0n,
      label: `${req.client} (pid ${client.peer.pid})`,
      held: plan?.held ?? [],
    };
    return {
      reply,
      fds: [...(writer?.fds() ?? []), ...(plan?.fds ?? [])],
      done: (sent) => {
        if (!sent) {
          writer?.close();
          for (const h of sub.held) this.#hold(h, -1);
          return;
        }
        writer?.releaseFds();
        // A client that subscribes again on the same connection replaces its subscription.
        this.#onClose(server, client);
        this.#subscribers.set(`${server}:${client.id}`, sub);
        const now = monotonicNs();
        for (const s of this.#sources) this.#route(s, sub, now);
        const directly = wanted.length - classic.length;
        const relayed = sub.held.some((h) => h.relay) ? ", woken by this broker" : "";
        this.#opts.log(
          `${sub.label} follows ${wanted.length} measurement${wanted.length === 1 ? "" : "s"}${
            rate > 0 ? ` at most ${rate} Hz` : ""
          }${directly > 0 ? ` (${directly} read directly from decom${relayed})` : ""}`,
        );
      },
    };
  }

  /**
   * Which of `wanted` a subscriber can read straight from decom's broadcast segments: those
   * of sources whose segment we hold, as long as every descriptor fits one message (data,
   * control, decom's pidfd and the bells of the measurements asked for, per source; room is
   * kept for a point-to-point segment). The rest go through this broker.
   */
  #planDirect(wanted: Measurement[]): {
    entries: Map<Measurement, { source: number; channel: number }>;
    sources: DirectSource[];
    fds: number[];
    held: Held[];
  } {
    const bySource = new Map<SourceLink, Measurement[]>();
    for (const m of wanted) {
      const s = this.#sourceOf.get(m.index);
      if (s?.broadcast?.channelOf.has(m.index)) bySource.set(s, [...(bySource.get(s) ?? []), m]);
    }
    const entries = new Map<Measurement, { source: number; channel: number }>();
    const sources: DirectSource[] = [];
    const fds: number[] = [];
    const held: Held[] = [];
    let room = MAX_FDS - 3;
    for (const [s, ms] of bySource) {
      const b = s.broadcast!;
      const bells = [...new Set(ms.map((m) => b.channelOf.get(m.index)!.bell))].sort((x, y) =>
        x - y
      );
      if (3 + bells.length > room) continue;
      room -= 3 + bells.length;
      for (const m of ms) {
        entries.set(m, { source: sources.length, channel: b.channelOf.get(m.index)!.channel });
      }
      sources.push({ source: s.name, pid: b.pid, bells });
      fds.push(b.fds[0], b.fds[1], b.pidfd.fd);
      for (const bell of bells) {
        // A seat decom wakes itself while there is one, else this broker's relay of the bell.
        const seat = b.seats[bell] < this.#directWakes;
        const relay = seat ? null : this.#relayOf(s, bell);
        fds.push(relay ? relay.fd.fd : b.fds[2 + bell]);
        const h = { source: b, bell, relay: !seat };
        this.#hold(h, +1);
        held.push(h);
      }
    }
    return { entries, sources, fds, held };
  }

  #onClose(server: number, client: Client): void {
    const key = `${server}:${client.id}`;
    const sub = this.#subscribers.get(key);
    if (!sub) return;
    this.#subscribers.delete(key);
    for (const h of sub.held) this.#hold(h, -1);
    if (sub.writer) {
      for (const s of this.#sources) {
        if (!s.fanout) continue;
        s.routes -= s.fanout.remove(sub.writer);
        this.#watch(s);
      }
      sub.writer.close();
    }
    this.#opts.log(`${sub.label} left`);
  }

  /** Takes (+1) or gives back (-1) a seat or a relay of a bell. */
  #hold(h: Held, delta: number): void {
    if (!h.relay) {
      h.source.seats[h.bell] += delta;
      return;
    }
    const relay = h.source.relays.get(h.bell);
    if (!relay) return; // the source went away meanwhile: everything was released then
    relay.users += delta;
    if (relay.users > 0) return;
    this.#ws.remove(h.source.relayReader!.bellFd(h.bell));
    relay.fd.close();
    h.source.relays.delete(h.bell);
  }

  /**
   * The relay of bell `bell` of source `s`: an eventfd this broker signals whenever decom
   * rings the bell (or touched it while the broker was busy), watched edge-triggered by the
   * subscribers beyond decom's seats. They count themselves as sleepers in decom's segment as
   * usual, so decom rings whenever one may sleep; only this broker is woken by it.
   */
  #relayOf(s: SourceLink, bell: number): { fd: OwnedFd; users: number } {
    const b = s.broadcast!;
    const known = b.relays.get(bell);
    if (known) return known;
    b.relayReader ??= BroadcastReader.attach(
      dupFd(b.fds[0]),
      dupFd(b.fds[1]),
      b.fds.slice(2).map((fd, index) => ({ index, fd: dupFd(fd) })),
    );
    const relay = { fd: newEventFd(), users: 0 };
    b.relays.set(bell, relay);
    b.relayReader.markSeen(bell);
    this.#ws.addBell(b.relayReader, bell, TOKEN_RELAY + s.index * RELAY_STRIDE + bell);
    return relay;
  }

  /** decom rang (or touched) a relayed bell: pass it on to its relayed subscribers. */
  #relay(k: number): void {
    const s = this.#sources[Math.floor(k / RELAY_STRIDE)];
    const bell = k % RELAY_STRIDE;
    const relay = s?.broadcast?.relays.get(bell);
    if (relay && s.broadcast!.relayReader!.markSeen(bell)) signalEventFd(relay.fd.fd);
  }

  summary(): string {
    return `${this.#subscribers.size} subscribers at exit, ${this.#copied} values copied`;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const server of this.#servers) server.close();
    for (const s of this.#sources) {
      s.fanout?.close();
      s.reader?.close();
      s.conn?.close();
      this.#dropBroadcast(s);
    }
    for (const sub of this.#subscribers.values()) sub.writer?.close();
    this.#subscribers.clear();
    this.#ws.close();
  }
}

/** The data source that publishes `m` (its health source, or the source of its packets). */
export function sourceOf(config: Config, m: Measurement): string | undefined {
  if (m.health) return m.health.source;
  const first = m.packets[0];
  return first === undefined ? undefined : config.packets[first].source;
}

/**
 * `current` (negative: none yet) shortened to `candidate` ms (negative: overdue, 0), never
 * beyond the longest wait a waitset takes: however far off a chore is, the wait is valid.
 */
function minTimeout(current: number, candidate: number): number {
  const c = Math.min(MAX_WAIT_MS, Math.max(0, candidate));
  return current < 0 ? c : Math.min(current, c);
}

const encoder = new TextEncoder();
const bytes = (o: unknown) => encoder.encode(JSON.stringify(o)).byteLength;

/**
 * The `too-large` error to send instead of a subscription reply that would not fit in one
 * control message (null if it fits), saying how many of the measurements would.
 */
function tooLargeReply(reply: ChannelsReply): ErrorReply | null {
  const size = bytes(reply);
  if (size <= MAX_CONTROL_MESSAGE) return null;
  let used = bytes({ ...reply, channels: [] });
  let fit = 0;
  for (const ch of reply.channels) {
    used += bytes(ch) + 1; // and a comma
    if (used > MAX_CONTROL_MESSAGE) break;
    fit++;
  }
  const n = reply.channels.length;
  return errorReply(
    "too-large",
    `the description of these ${n} measurements takes ${Math.ceil(size / 1024)} KiB, more than ` +
      `one reply holds (${MAX_CONTROL_MESSAGE / 1024} KiB): at most ${fit} of them fit in one ` +
      `subscription; subscribe to them in several (gsw's library does so by itself)`,
  );
}
