/**
 * Live measurement values for applications: `subscribe()` asks the broker(s) serving the
 * named measurements for channels, then reads them straight from shared memory, waiting with
 * one waitset per subscription (one async wait at a time, or a synchronous wait in a
 * dedicated worker), and reconnects on its own when a broker restarts.
 */
import { decodeRaw, toEngineering } from "../config/decode.ts";
import type { Measurement } from "../config/types.ts";
import {
  type ChannelsReply,
  encode,
  type ErrorReply,
  MAX_CONTROL_MESSAGE,
  MIN_RATE_HZ,
  parseReply,
  PROTOCOL_VERSION,
  ProtocolError,
  validRate,
} from "../control/protocol.ts";
import { brokerSocket, measurementBrokerSocket, resolveRunDir } from "../control/rundir.ts";
import { sendRequest } from "../control/client.ts";
import {
  closeFd,
  GswError,
  HANGUP,
  READABLE,
  type Sample,
  UnixConnection,
  Waitset,
} from "../ffi/mod.ts";
import { noBrokerMessage, SubscribeError } from "./errors.ts";
import { type LinkStatus, RETRY_MS, type SubscribeOptions, type Update } from "./updates.ts";

export type { LinkStatus, SubscribeOptions, Update, Value } from "./updates.ts";
export { RETRY_MS } from "./updates.ts";
import {
  attachReply,
  BUSY_RETRY_MS,
  connToken,
  decodeToken,
  drainLink,
  FATAL,
  type Followed,
  isAbsent,
  type Link,
  LINK_CHECK_MS,
  releaseLink,
  REPLY_TIMEOUT_MS,
  REQUEST_CHUNK,
  STALE_FLOOR_MS,
  STALE_PERIODS,
  takeOne,
  TOKEN_EXTRA,
  UPGRADE_MS,
  watchLink,
} from "./links.ts";

/**
 * Values of one or more measurements as they are published. Iterate it (`for await`), read
 * the newest value of any measurement at any time (`latest`), or block a dedicated worker
 * until the next update (`next`). Close it (or declare it with `using`) to release its
 * descriptors and shared memory.
 */
export class Subscription implements AsyncIterable<Update>, Disposable {
  readonly #runDir: string;
  readonly #maxRateHz: number;
  readonly #reconnect: boolean;
  readonly #direct: boolean;
  readonly #client: string;
  readonly #onStatus: ((s: LinkStatus) => void) | undefined;
  readonly #signal: AbortSignal | undefined;
  readonly #onAbort = () => this.close();
  readonly #ws: Waitset;
  readonly #buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  /** Every followed measurement, by each string it may be asked for by (request, key, name). */
  readonly #byName = new Map<string, Followed>();
  readonly #followed: Followed[] = [];
  #links: Link[] = [];
  #nextLinkId = 1;
  /** Updates taken but not yet delivered: at most one (the newest) per measurement. */
  readonly #queue = new Map<Followed, Update>();
  #inflight: Promise<void> | null = null;
  #fatal: SubscribeError | null = null;
  #nextLinkCheck = 0;
  /** Most measurements per request; halved each time a broker answers `too-large`. */
  #chunk = REQUEST_CHUNK;
  #closed = false;

  /** Use `subscribe()`. */
  constructor(names: readonly string[], options: SubscribeOptions = {}) {
    if (names.length === 0) throw new TypeError("subscribe needs at least one measurement name");
    const rate = options.maxRateHz;
    if (rate !== undefined && !validRate(rate)) {
      throw new RangeError(
        `maxRateHz must be 0 (every update) or a number from ${MIN_RATE_HZ} up, not ${rate}`,
      );
    }
    options.signal?.throwIfAborted();
    this.#runDir = options.runDir ?? resolveRunDir();
    this.#maxRateHz = rate ?? 0;
    this.#reconnect = options.reconnect ?? true;
    this.#direct = options.direct ?? true;
    this.#client = options.client ?? "library";
    this.#onStatus = options.onStatus;
    for (const request of new Set(names)) {
      const f: Followed = {
        request,
        spec: undefined,
        link: undefined,
        part: undefined,
        channel: -1,
        last: undefined,
        deliveredSeq: 0,
      };
      this.#followed.push(f);
      this.#byName.set(request, f);
    }
    this.#ws = new Waitset();
    try {
      this.#connectFirst();
    } catch (e) {
      this.close();
      throw e;
    }
    this.#signal = options.signal;
    this.#signal?.addEventListener("abort", this.#onAbort, { once: true });
  }

  /** The run directory whose brokers this subscription talks to. */
  get runDir(): string {
    return this.#runDir;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Whether every followed measurement's broker is connected now. Never waits. */
  get connected(): boolean {
    this.#housekeep();
    return !this.#closed && this.#links.every((l) => l.state === "live");
  }

  /** The followed measurements as their brokers describe them, in subscription order. */
  get measurements(): Measurement[] {
    return this.#followed.map((f) => f.spec!);
  }

  /** The config description of a followed measurement (by key or name), from its broker. */
  describe(name?: string): Measurement | undefined {
    return this.#find(name, "describe").spec;
  }

  /**
   * The newest value of a followed measurement (by key or name; optional when only one is
   * followed), or undefined before its first value. Never waits: it takes the value straight
   * from shared memory. While its broker is away it returns the last value, marked stale.
   * Taking a value here does not hide it from iteration or `next()`.
   */
  latest(name?: string): Update | undefined {
    const f = this.#find(name, "latest");
    if (this.#closed) return f.last && this.#withStale(f, f.last, false);
    this.#housekeep();
    const link = f.link;
    if (link?.state === "live") {
      const sample = takeOne(f);
      if (sample) this.#accept(f, sample);
    }
    return f.last && this.#withStale(f, f.last, link?.state === "live");
  }

  /**
   * Blocks the calling thread until the next update (of any followed measurement) or until
   * `timeoutMs` passes (default: forever); undefined on timeout or once closed. For a
   * dedicated Worker or process: it wakes at native speed but stops the event loop meanwhile.
   * Throws SubscribeError when a broker refuses a reconnection, or went away and
   * `reconnect` is off.
   */
  next(timeoutMs?: number): Update | undefined {
    const got = this.#nextSync(timeoutMs ?? -1, false);
    return got === WOKEN ? undefined : got;
  }

  /**
   * `next()` that also returns `WOKEN` when a descriptor added with `watchFd` becomes
   * readable (e.g. `watchSignals()` in a CLI). For gsw's own commands.
   */
  nextOrWake(timeoutMs: number): Update | undefined | typeof WOKEN {
    return this.#nextSync(timeoutMs, true);
  }

  /** Adds a descriptor (owned by the caller) whose readiness `nextOrWake` reports. */
  watchFd(fd: number, slot = 0): void {
    this.#ws.add(fd, TOKEN_EXTRA + slot, READABLE);
  }

  /**
   * Updates as they arrive, across all followed measurements: each is the newest value of
   * its measurement when delivered (`skipped` says how many were missed). One async wait on
   * Deno's blocking pool serves the whole subscription; everything ready is taken per wake.
   * Ends when the subscription is closed; leaving the loop early does not close it.
   */
  async *[Symbol.asyncIterator](): AsyncGenerator<Update, void, undefined> {
    for (;;) {
      const u = this.#shift();
      if (u) {
        yield u;
        continue;
      }
      if (this.#closed) return;
      if (this.#fatal) throw this.#fatal;
      await (this.#inflight ??= this.#waitAsync().finally(() => this.#inflight = null));
    }
  }

  /** Releases every descriptor and mapping; a pending iteration ends, `next()` returns undefined. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    for (const l of this.#links) this.#release(l);
    this.#links = [];
    this.#queue.clear();
    // A wait in progress on the blocking pool is cancelled; the waitset is freed after it.
    this.#ws?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  // -- delivering --------------------------------------------------------------------------

  #find(name: string | undefined, what: string): Followed {
    if (name === undefined) {
      if (this.#followed.length === 1) return this.#followed[0];
      throw new TypeError(
        `${what}() needs a measurement name: this subscription follows ${this.#followed.length}`,
      );
    }
    const f = this.#byName.get(name);
    if (!f) {
      const known = this.#followed.map((x) => x.request).join(", ");
      throw new RangeError(`this subscription does not follow "${name}" (it follows ${known})`);
    }
    return f;
  }

  #shift(): Update | undefined {
    for (const [f, u] of this.#queue) {
      this.#queue.delete(f);
      f.deliveredSeq = u.seq;
      return u;
    }
    return undefined;
  }

  /** Records a value taken from a channel; it becomes the next update of its measurement. */
  #accept(f: Followed, s: Sample): void {
    const spec = f.spec!;
    const last = f.last;
    // A broker we reconnected to first sends the value it holds, which may be the one we
    // already have: not an update.
    if (last && s.seq === last.seq && s.timestampNs === last.timestampNs) return;
    const base = f.deliveredSeq;
    // A sequence number that goes back means decom restarted: nothing was skipped.
    const skipped = base > 0 && s.seq > base ? s.seq - base - 1 : 0;
    const raw = decodeRaw(spec, s.bytes);
    const u: Update = {
      measurement: spec.key,
      name: spec.name,
      value: toEngineering(spec, raw),
      raw,
      unit: spec.unit,
      seq: s.seq,
      timestampNs: s.timestampNs,
      skipped,
    };
    if (this.#aged(spec, s.timestampNs)) u.stale = true;
    f.last = u;
    // Latest-value semantics: a newer value replaces an undelivered one, and moves to the
    // back so updates come out roughly in arrival order.
    this.#queue.delete(f);
    this.#queue.set(f, u);
  }

  /** Older than three expected periods (at the rate the broker sends it to us)? */
  #aged(spec: Measurement, timestampNs: bigint): boolean {
    let hz = spec.expectedRateHz;
    if (!hz) return false;
    if (this.#maxRateHz > 0) hz = Math.min(hz, this.#maxRateHz);
    const limitMs = Math.max(STALE_FLOOR_MS, (STALE_PERIODS * 1000) / hz);
    return Date.now() - Number(timestampNs / 1_000_000n) > limitMs;
  }

  #withStale(f: Followed, u: Update, live: boolean): Update {
    const stale = !live || this.#aged(f.spec!, u.timestampNs);
    if (stale === (u.stale === true)) return u;
    if (stale) return { ...u, stale: true };
    const { stale: _, ...fresh } = u;
    return fresh;
  }

  /** Takes every new value of every connected link. */
  #drain(): void {
    for (const l of this.#links) if (l.state === "live") this.#drainLink(l);
  }

  #drainLink(l: Link): void {
    drainLink(l, (f, s) => this.#accept(f, s));
  }

  // -- waiting -----------------------------------------------------------------------------

  /** One async wait: take what is ready, or sleep on the waitset until something is. */
  async #waitAsync(): Promise<void> {
    this.#service(performance.now());
    this.#drain();
    if (this.#queue.size > 0 || this.#fatal || this.#closed) return;
    const ready = await this.#ws.wait(this.#waitTimeout(-1));
    if (this.#closed) return;
    this.#handle(ready);
    this.#drain();
  }

  #nextSync(timeoutMs: number, wake: boolean): Update | undefined | typeof WOKEN {
    if (this.#inflight) {
      throw new Error(
        "next() cannot wait while an async iteration of this subscription is waiting: use one or the other",
      );
    }
    const deadline = timeoutMs < 0 ? Infinity : performance.now() + timeoutMs;
    for (;;) {
      const u = this.#shift();
      if (u) return u;
      if (this.#closed) return undefined;
      if (this.#fatal) throw this.#fatal;
      const now = performance.now();
      this.#service(now);
      this.#drain();
      if (this.#queue.size > 0 || this.#fatal) continue;
      const left = deadline - now;
      if (left <= 0) return undefined;
      const ready = this.#ws.waitSync(
        this.#waitTimeout(left === Infinity ? -1 : Math.ceil(left)),
      );
      if (this.#handle(ready) && wake) return WOKEN;
    }
  }

  /** The wait's timeout: the caller's, shortened to the next reconnection chore. */
  #waitTimeout(callerMs: number): number {
    let t = callerMs;
    const now = performance.now();
    for (const l of this.#links) {
      const due = l.state === "down"
        ? l.at
        : l.state === "connecting"
        ? l.at + REPLY_TIMEOUT_MS
        : l.upgradeAt;
      if (due === Infinity) continue;
      const ms = Math.max(0, Math.ceil(due - now));
      t = t < 0 ? ms : Math.min(t, ms);
    }
    return t;
  }

  /** Acts on ready tokens; returns whether one of the owner's descriptors was among them. */
  #handle(ready: { token: number; events: number }[]): boolean {
    let woken = false;
    for (const { token, events } of ready) {
      if (token >= TOKEN_EXTRA) {
        woken = true;
        continue;
      }
      // Doorbells and bells need nothing here: the drain that follows takes their values.
      const { linkId, what, part } = decodeToken(token);
      if (what === "bell") continue;
      const link = this.#links.find((l) => l.id === linkId);
      if (!link) continue;
      if (what === "conn") this.#onConnEvent(link, events);
      else if (link.state === "live") {
        const source = link.direct[part]?.source ?? "?";
        this.#down(link, `decom for source "${source}" exited`);
      }
    }
    return woken;
  }

  // -- links to brokers --------------------------------------------------------------------

  /**
   * Connects every followed measurement to its broker: the one started for it
   * (`broker --measurement KEY`) if there is one, else the default broker, with at most
   * `#chunk` measurements per connection. Returns the new links, with requests sent, and the
   * measurements no broker is there for.
   */
  #open(
    followed: Followed[],
    after: boolean,
    quiet = false,
  ): { links: Link[]; absent: Followed[] } {
    const conns = new Map<string, UnixConnection | null>();
    const byPath = new Map<string, Followed[]>();
    const absent: Followed[] = [];
    const tryPath = (path: string): boolean => {
      if (!conns.has(path)) {
        try {
          conns.set(path, UnixConnection.connect(path));
        } catch (e) {
          if (!isAbsent(e)) {
            for (const c of conns.values()) c?.close();
            throw e;
          }
          conns.set(path, null);
        }
      }
      return conns.get(path) !== null;
    };
    for (const f of followed) {
      const paths = [measurementBrokerSocket(this.#runDir, f.request), brokerSocket(this.#runDir)];
      const path = paths.find(tryPath);
      if (path === undefined) absent.push(f);
      else byPath.set(path, [...(byPath.get(path) ?? []), f]);
    }
    const links: Link[] = [];
    try {
      for (const [path, fs] of byPath) {
        for (let i = 0; i < fs.length; i += this.#chunk) {
          let conn = conns.get(path);
          conns.delete(path);
          conn ??= UnixConnection.connect(path);
          links.push(this.#request(path, fs.slice(i, i + this.#chunk), conn, after, quiet));
        }
      }
    } catch (e) {
      links.forEach((l) => this.#release(l));
      throw e;
    } finally {
      for (const c of conns.values()) c?.close();
    }
    for (const l of links) for (const f of l.followed) f.link = l;
    return { links, absent };
  }

  /**
   * A link that asks the broker at `path` (connected on `conn`) for `followed`; a `quiet`
   * one does not report its first reply as a reconnection.
   */
  #request(
    path: string,
    followed: Followed[],
    conn: UnixConnection,
    after: boolean,
    quiet: boolean,
  ): Link {
    const link: Link = {
      id: this.#nextLinkId++,
      path,
      followed,
      conn,
      reader: null,
      byChannel: [],
      direct: [],
      state: "connecting",
      at: performance.now(),
      after,
      quiet,
      upgradeAt: Infinity,
    };
    try {
      this.#ws.add(conn.fd, connToken(link), READABLE);
    } catch (e) {
      conn.close();
      throw e;
    }
    const request = encode({
      v: PROTOCOL_VERSION,
      op: "subscribe",
      measurements: followed.map((f) => f.request),
      maxRateHz: this.#maxRateHz || undefined,
      direct: this.#direct || undefined,
      client: this.#client,
    });
    if (!sendRequest(conn, request)) this.#down(link, "the broker is not reading its socket");
    return link;
  }

  /** The first connection: everything must be served, or the caller hears why not. */
  #connectFirst(): void {
    const { links, absent } = this.#open(this.#followed, false);
    this.#links = links;
    if (absent.length > 0) {
      throw new SubscribeError(
        "no-broker",
        noBrokerMessage(brokerSocket(this.#runDir)),
        brokerSocket(this.#runDir),
      );
    }
    const deadline = performance.now() + REPLY_TIMEOUT_MS;
    while (this.#links.some((l) => l.state === "connecting")) {
      const left = deadline - performance.now();
      if (left <= 0) {
        const l = this.#links.find((l) => l.state === "connecting")!;
        throw new SubscribeError(
          "no-reply",
          `the broker at ${l.path} did not answer within ${REPLY_TIMEOUT_MS} ms: is it stuck? restart it`,
          l.path,
        );
      }
      this.#handle(this.#ws.waitSync(Math.ceil(left)));
      if (this.#fatal) throw this.#fatal;
      const down = this.#links.find((l) => l.state === "down");
      if (down) {
        throw new SubscribeError(
          "no-broker",
          `the broker at ${down.path} hung up before answering: is it shutting down? ${
            noBrokerMessage(down.path).replace(/^no broker at \S+: /, "")
          }`,
          down.path,
        );
      }
    }
  }

  #onConnEvent(link: Link, events: number): void {
    if (!link.conn) return;
    if (events & READABLE) {
      let got;
      try {
        got = link.conn.recv(this.#buf);
      } catch (e) {
        this.#down(link, `unreadable message from the broker: ${(e as Error).message}`);
        return;
      }
      if (got === "closed") {
        this.#down(link, "the broker went away");
        return;
      }
      if (got !== null) {
        if (link.state === "connecting") this.#onReply(link, got.length, got.fds);
        // Brokers send nothing unasked; anything else is ignored (and its descriptors closed).
        else got.fds.forEach(closeFd);
        return;
      }
    }
    if (events & HANGUP) this.#down(link, "the broker went away");
  }

  #onReply(link: Link, length: number, fds: number[]): void {
    let reply;
    try {
      reply = parseReply(this.#buf.subarray(0, length));
    } catch (e) {
      fds.forEach(closeFd);
      const r = e instanceof ProtocolError ? e.reply : undefined;
      this.#refused(
        link,
        r ?? {
          v: PROTOCOL_VERSION,
          ok: false,
          error: "bad-request",
          message: `the broker at ${link.path} sent an unreadable reply: ${(e as Error).message}`,
        },
      );
      return;
    }
    if (!reply.ok) {
      fds.forEach(closeFd);
      this.#refused(link, reply);
      return;
    }
    if (!("channels" in reply) || "bells" in reply) {
      fds.forEach(closeFd);
      this.#refused(link, {
        v: PROTOCOL_VERSION,
        ok: false,
        error: "bad-request",
        message:
          `the broker at ${link.path} replied without channels (is another program listening there?)`,
      });
      return;
    }
    try {
      attachReply(link, reply, fds);
    } catch (e) {
      if (!link.after) {
        this.#release(link);
        throw e;
      }
      this.#down(link, `could not attach: ${(e as Error).message}`);
      return;
    }
    const missing = this.#map(link, reply);
    if (missing) {
      this.#refused(link, {
        v: PROTOCOL_VERSION,
        ok: false,
        error: "bad-request",
        message: `the broker at ${link.path} handed over no channel for "${missing}"`,
      });
      return;
    }
    watchLink(this.#ws, link);
    link.state = "live";
    if ((reply as ChannelsReply).upgradable) link.upgradeAt = performance.now() + UPGRADE_MS;
    if (link.after && !link.quiet) {
      this.#onStatus?.({ broker: link.path, connected: true, message: "reconnected" });
    }
    link.quiet = false;
  }

  /**
   * Ties each channel of a reply to the followed measurement it carries. Returns the name of
   * one the reply left out (a broker bug), if any.
   */
  #map(link: Link, reply: ChannelsReply): string | undefined {
    link.byChannel = [];
    for (const ch of reply.channels) {
      const m = ch.measurement;
      if (!m) continue;
      const f = link.followed.find((x) => x.request === m.key || x.request === m.name);
      if (!f) continue;
      // A new description (the broker may run a newer config) keeps the values we have.
      f.spec = m;
      const part = ch.direct ? link.direct[ch.direct.source] : undefined;
      if (ch.direct && !part) continue;
      f.part = part;
      f.channel = ch.direct ? ch.direct.channel : ch.channel;
      if (part) part.byChannel.set(f.channel, f);
      else link.byChannel[ch.channel] = f;
      this.#byName.set(m.key, f).set(m.name, f);
      // Asked for by key and by name: the broker serves it once; both names read it.
      for (const g of link.followed) {
        if (g !== f && (g.request === m.key || g.request === m.name)) {
          g.spec = m;
          this.#followed.splice(this.#followed.indexOf(g), 1);
          this.#byName.set(g.request, f);
        }
      }
    }
    link.followed = link.followed.filter((f) => this.#followed.includes(f));
    return link.followed.find((f) =>
      (f.part ? f.part.byChannel.get(f.channel) : link.byChannel[f.channel]) !== f
    )?.request;
  }

  #refused(link: Link, reply: ErrorReply): void {
    if (reply.error === "too-large" && link.followed.length > 1) {
      // Ask again at once, in halves (and every later request no larger).
      this.#chunk = Math.min(this.#chunk, Math.ceil(link.followed.length / 2));
      this.#release(link);
      link.state = "down";
      this.#reopen(link, performance.now(), link.after);
      return;
    }
    const fatal = FATAL.has(reply.error) || !link.after;
    let message = reply.message;
    if (reply.suggestion && !message.includes(reply.suggestion)) {
      message += ` (did you mean "${reply.suggestion}"?)`;
    }
    const error = new SubscribeError(reply.error, message, link.path, reply.suggestion);
    this.#release(link);
    link.state = "down";
    if (fatal) {
      this.#fatal ??= error;
      link.at = Infinity;
      return;
    }
    link.at = performance.now() + BUSY_RETRY_MS;
  }

  /** Closes a link's connection and segments (its values stay in `Followed.last`). */
  #release(link: Link): void {
    releaseLink(this.#ws, link);
  }

  /** A link lost its broker: keep the values, and try again soon (or give up if asked to). */
  #down(link: Link, why: string): void {
    const wasLive = link.state === "live";
    // Values published before the hang-up are still in shared memory: keep them.
    if (link.state === "live") this.#drainLink(link);
    this.#release(link);
    link.state = "down";
    link.at = performance.now() + RETRY_MS;
    if (!link.after && !wasLive) return; // first connection: #connectFirst reports it
    if (!this.#reconnect) {
      link.at = Infinity;
      this.#fatal ??= new SubscribeError(
        "broker-gone",
        `the broker at ${link.path} went away (${why}) and reconnecting is off`,
        link.path,
      );
    }
    if (wasLive) {
      this.#onStatus?.({
        broker: link.path,
        connected: false,
        message: `${why}; keeping the last values, reconnecting every ${RETRY_MS} ms`,
      });
    }
  }

  /**
   * For callers that never wait (`latest()`, `connected`): notices hung-up brokers and
   * reconnects, at most every LINK_CHECK_MS so that reading stays a few atomic operations.
   */
  #housekeep(): void {
    const now = performance.now();
    if (this.#closed || now < this.#nextLinkCheck) return;
    this.#nextLinkCheck = now + LINK_CHECK_MS;
    // An async wait in progress reports hang-ups itself.
    if (!this.#inflight) {
      for (const l of [...this.#links]) {
        if (l.state !== "down" && l.conn) this.#onConnEvent(l, READABLE);
      }
    }
    this.#service(now);
  }

  /** Retries links whose broker went away, and gives up on replies that never came. */
  #service(now: number): void {
    if (this.#closed || !this.#reconnect) return;
    for (const l of [...this.#links]) {
      if (l.state === "connecting" && now >= l.at + REPLY_TIMEOUT_MS) {
        this.#down(l, "the broker did not answer");
      }
      if (l.state === "live" && now >= l.upgradeAt) {
        // Its decom may be back: ask again, to read it directly. Quietly: nothing was lost.
        this.#drainLink(l);
        this.#release(l);
        l.state = "down";
        l.upgradeAt = Infinity;
        this.#reopen(l, now, true, true);
        continue;
      }
      if (l.state !== "down" || now < l.at) continue;
      this.#reopen(l, now, true);
    }
  }

  /**
   * Replaces a link that is down by new ones for its measurements. On the first connection
   * (`after` false) a failure is the caller's; later, the link stays down and is tried again.
   */
  #reopen(l: Link, now: number, after: boolean, quiet = false): void {
    let opened;
    try {
      opened = this.#open(l.followed, after, quiet);
    } catch (e) {
      // Not "absent" (EMFILE, EACCES…): keep the values and keep trying, slower.
      l.at = now + BUSY_RETRY_MS;
      if (!(e instanceof GswError) || !after) throw e;
      return;
    }
    const { links, absent } = opened;
    const i = this.#links.indexOf(l);
    if (absent.length === 0) {
      this.#links.splice(i, 1, ...links);
    } else {
      // Keep the unresolved ones on the old link, which stays down until the next try.
      l.followed = absent;
      for (const f of absent) f.link = l;
      l.at = now + RETRY_MS;
      this.#links.splice(i + 1, 0, ...links);
    }
  }
}

/** Returned by `nextOrWake` when one of the owner's descriptors became readable. */
export const WOKEN: unique symbol = Symbol("woken");

/**
 * Subscribes to one or more measurements (config keys or names). Connects synchronously:
 * throws SubscribeError at once if no broker is running ("no-broker") or a name is unknown
 * ("unknown-measurement", with the broker's did-you-mean in `suggestion`).
 */
export function subscribe(
  names: string | readonly string[],
  options?: SubscribeOptions,
): Subscription {
  return new Subscription(typeof names === "string" ? [names] : names, options);
}
