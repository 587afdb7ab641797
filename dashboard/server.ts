/**
 * The dashboard's server: the page and its assets (all served from here: the page works with
 * no internet), the config it describes, saved layouts, and one WebSocket per browser that
 * carries every sample of the measurements it plots (history on connect, then batches at
 * most once per display frame) and the newest value of every measurement. Read-only: nothing
 * a browser sends can change the pipeline. A browser that cannot keep up gets fewer, larger
 * batches, then is told it is behind and gets the window again; it never holds up the others.
 */
import { timingSafeEqual } from "node:crypto";
import type { Config } from "../config/types.ts";
import { Feed, plottable } from "./feed.ts";
import { APPEND, encodeFrame, type FrameSeries, HISTORY } from "./frames.ts";
import { History, HISTORY_MS } from "./history.ts";

/**
 * New samples go to a browser as soon as they arrive, but at most one batch per this many ms
 * per browser: one frame of a 120 Hz display (at high rates each batch carries many samples).
 * Waiting for a 60 Hz frame instead would add 0–16 ms to every sample at 100 Hz.
 */
export const FRAME_MS = 8;
/** Newest values go out this often. */
const VALUES_MS = 100;
/** A browser with more than this queued gets one batch per SLOW_FRAME_MS instead. */
export const SLOW_BYTES = 1 << 20;
const SLOW_FRAME_MS = 250;
/** …and nothing at all beyond this, until it has read some. */
export const STOP_BYTES = 8 << 20;
/** Samples kept for one browser that is not reading; beyond it, it is "behind". */
export const MAX_PENDING = 500_000;
/** Most measurements one browser may plot at once. */
const MAX_WATCH = 256;

export interface ServerOptions {
  config: Config;
  runDir: string;
  /** Directory of the page's files (index.html, app.js, vendor/…). */
  staticDir: string;
  /** Directory of saved layouts (`<name>.json`). */
  layoutsDir: string;
  /** Required on every request when set (non-loopback listens). */
  token: string | undefined;
  log: (line: string) => void;
}

interface Client {
  id: number;
  ws: WebSocket;
  /** Measurements it plots, and the time window it shows (ms). */
  watch: Set<number>;
  windowMs: number;
  columns: number;
  /** Samples not sent yet, per measurement. */
  pending: Map<number, { t: number[]; v: number[] }>;
  pendingCount: number;
  lastSent: number;
  /** Samples dropped while it was behind (it gets the window again when it catches up). */
  dropped: number;
  behind: boolean;
  /** It is sent the newest values only after its first watch (it has the config by then). */
  ready: boolean;
}

const CONTENT_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  json: "application/json",
  png: "image/png",
  svg: "image/svg+xml",
  txt: "text/plain; charset=utf-8",
};

const LAYOUT_NAME = /^[A-Za-z0-9_.-]{1,100}$/;

export class DashboardServer {
  readonly history = new History();
  readonly feed: Feed;
  readonly #clients = new Set<Client>();
  readonly #timers: ReturnType<typeof setInterval>[] = [];
  readonly #configJson: string;
  readonly #static = new Map<string, { body: Uint8Array<ArrayBuffer>; type: string }>();
  #nextId = 1;
  /** The next flush, when one is due. */
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  #rates = new Map<number, number>();
  #ratesAt = performance.now();

  constructor(readonly opts: ServerOptions) {
    this.#configJson = JSON.stringify(describeConfig(opts.config));
    this.#loadStatic(opts.staticDir, "");
    this.feed = new Feed(opts.config, opts.runDir, {
      onSamples: (t, samples) => this.#onSamples(t, samples),
      onLost: (n) => opts.log(`fell behind decom's packet ring: ${n} datagrams not plotted`),
      onStatus: (line) => opts.log(line),
    });
  }

  /** Starts reading the pipeline and the timers. */
  start(): void {
    this.feed.start();
    // Browsers held back (slow, stalled, behind) are looked at again even with no new samples.
    this.#timers.push(setInterval(() => this.#flushSoon(), SLOW_FRAME_MS));
    this.#timers.push(setInterval(() => this.#sendValues(), VALUES_MS));
    this.#timers.push(setInterval(() => this.history.trim(Date.now()), 5000));
  }

  close(): void {
    for (const t of this.#timers) clearInterval(t);
    clearTimeout(this.#flushTimer);
    for (const c of this.#clients) {
      try {
        c.ws.close(1001, "the dashboard is stopping");
      } catch { /* already closed */ }
    }
    this.feed.close();
  }

  get clients(): number {
    return this.#clients.size;
  }

  #loadStatic(dir: string, prefix: string): void {
    for (const e of Deno.readDirSync(dir)) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) this.#loadStatic(path, `${prefix}${e.name}/`);
      else if (e.isFile) {
        const ext = e.name.split(".").pop() ?? "";
        this.#static.set(`${prefix}${e.name}`, {
          body: Deno.readFileSync(path),
          type: CONTENT_TYPES[ext] ?? "application/octet-stream",
        });
      }
    }
  }

  /** Deno.serve's handler. */
  handle = (req: Request): Response => {
    const url = new URL(req.url);
    if (!this.#authorized(req, url)) return new Response(null, { status: 401 });
    const path = url.pathname;
    if (path === "/ws") return this.#upgrade(req);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("read-only", { status: 405 });
    }
    if (path === "/" || path === "/index.html") return this.#file("index.html", url);
    if (path.startsWith("/static/")) return this.#file(path.slice(8), url);
    if (path === "/api/config") return json(this.#configJson);
    if (path === "/api/layouts") return json(JSON.stringify(this.#layouts()));
    if (path.startsWith("/api/layouts/")) return this.#layout(decodeURIComponent(path.slice(13)));
    return new Response("not found", { status: 404 });
  };

  #authorized(req: Request, url: URL): boolean {
    const want = this.opts.token;
    if (want === undefined) return true;
    const cookie = req.headers.get("cookie")?.match(/(?:^|;\s*)gsw_token=([^;]+)/)?.[1];
    const bearer = req.headers.get("authorization")?.match(/^Bearer (.+)$/)?.[1];
    const given = url.searchParams.get("token") ?? bearer ?? cookie;
    return given !== undefined && sameSecret(given, want);
  }

  #file(name: string, url: URL): Response {
    const f = this.#static.get(name);
    if (!f) return new Response("not found", { status: 404 });
    const headers: Record<string, string> = {
      "content-type": f.type,
      "cache-control": "no-cache",
      // The page talks only to this server: nothing else may be loaded or contacted.
      "content-security-policy":
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
      "x-content-type-options": "nosniff",
    };
    // The page's own requests (assets, the WebSocket) then carry the token as a cookie.
    if (name === "index.html" && this.opts.token && url.searchParams.has("token")) {
      headers["set-cookie"] = `gsw_token=${this.opts.token}; Path=/; HttpOnly; SameSite=Strict`;
    }
    return new Response(f.body, { headers });
  }

  #layouts(): string[] {
    try {
      return [...Deno.readDirSync(this.opts.layoutsDir)]
        .filter((e) => e.isFile && e.name.endsWith(".json"))
        .map((e) => e.name.slice(0, -5))
        .filter((n) => LAYOUT_NAME.test(n))
        .sort();
    } catch {
      return [];
    }
  }

  #layout(name: string): Response {
    if (!LAYOUT_NAME.test(name)) return new Response("bad layout name", { status: 400 });
    try {
      const text = Deno.readTextFileSync(`${this.opts.layoutsDir}/${name}.json`);
      JSON.parse(text);
      return json(text);
    } catch (e) {
      const status = e instanceof Deno.errors.NotFound ? 404 : 400;
      const why = status === 404
        ? `no layout "${name}" in ${this.opts.layoutsDir}`
        : `layout "${name}" is not valid JSON`;
      return new Response(why, { status });
    }
  }

  #upgrade(req: Request): Response {
    if (req.headers.get("upgrade")?.toLowerCase() !== "websocket") {
      return new Response("expected a WebSocket", { status: 400 });
    }
    // A browser answers pings by itself; a connection that does not for a minute is dead.
    const { socket, response } = Deno.upgradeWebSocket(req, { idleTimeout: 60 });
    socket.binaryType = "arraybuffer";
    const c: Client = {
      id: this.#nextId++,
      ws: socket,
      watch: new Set(),
      windowMs: 60_000,
      columns: 1200,
      pending: new Map(),
      pendingCount: 0,
      lastSent: 0,
      dropped: 0,
      behind: false,
      ready: false,
    };
    socket.onopen = () => {
      this.#clients.add(c);
      this.opts.log(`browser ${c.id} connected (${this.#clients.size} in all)`);
    };
    socket.onmessage = (e) => this.#onMessage(c, e.data);
    socket.onclose = () => {
      if (this.#clients.delete(c)) {
        this.opts.log(`browser ${c.id} left (${this.#clients.size} in all)`);
      }
    };
    socket.onerror = () => {};
    return response;
  }

  #onMessage(c: Client, data: unknown): void {
    if (typeof data !== "string" || data.length > 64 * 1024) return;
    let msg: { type?: unknown; measurements?: unknown; windowMs?: unknown; columns?: unknown };
    try {
      msg = JSON.parse(data);
    } catch {
      return;
    }
    if (msg.type !== "watch" || !Array.isArray(msg.measurements)) return;
    const n = this.opts.config.measurements.length;
    const wanted = msg.measurements.filter((i): i is number =>
      Number.isInteger(i) && i >= 0 && i < n && plottable(this.opts.config.measurements[i])
    ).slice(0, MAX_WATCH);
    const windowMs = Number(msg.windowMs);
    c.windowMs = Number.isFinite(windowMs)
      ? Math.min(Math.max(windowMs, 1000), HISTORY_MS)
      : 60_000;
    const columns = Number(msg.columns);
    c.columns = Number.isFinite(columns) ? Math.min(Math.max(columns, 100), 8000) : 1200;
    c.watch = new Set(wanted);
    c.pending.clear();
    c.pendingCount = 0;
    c.ready = true;
    this.#sendHistory(c);
    this.#sendValues(c);
  }

  /** The window of every watched measurement, replacing what the browser has. */
  #sendHistory(c: Client): void {
    const now = Date.now();
    const from = now - c.windowMs;
    const series: FrameSeries[] = [];
    for (const m of c.watch) {
      const w = this.history.window(m, from, now, c.columns);
      series.push({ measurement: m, t: w.t, v: w.v, reduced: w.reduced });
    }
    this.#send(c, encodeFrame(HISTORY, series));
    c.lastSent = performance.now();
  }

  #onSamples(t: number, samples: readonly [number, number][]): void {
    for (const [m, v] of samples) this.history.add(m, t, v);
    for (const c of this.#clients) {
      if (c.behind) {
        c.dropped += samples.length;
        continue;
      }
      for (const [m, v] of samples) {
        if (!c.watch.has(m)) continue;
        let p = c.pending.get(m);
        if (!p) c.pending.set(m, p = { t: [], v: [] });
        p.t.push(t);
        p.v.push(v);
        c.pendingCount++;
      }
      if (c.pendingCount > MAX_PENDING) {
        // Not reading: stop keeping its samples; it gets the window again once it catches up.
        c.behind = true;
        c.dropped += c.pendingCount;
        c.pending.clear();
        c.pendingCount = 0;
      }
    }
    this.#flushSoon();
  }

  /** Flushes once the current batch of datagrams is handled, unless a flush is due already. */
  #flushSoon(): void {
    if (this.#flushTimer === undefined) this.#flushTimer = setTimeout(this.#onFlushTimer, 0);
  }

  #onFlushTimer = (): void => {
    this.#flushTimer = undefined;
    const wait = this.#flush();
    if (wait > 0) this.#flushTimer = setTimeout(this.#onFlushTimer, wait);
  };

  /**
   * Sends each browser what is pending, at most once per FRAME_MS (less when it is slow).
   * Returns the ms until a browser held back by FRAME_MS is due, 0 for none.
   */
  #flush(): number {
    const now = performance.now();
    let wait = Infinity;
    for (const c of this.#clients) {
      if (c.ws.readyState !== WebSocket.OPEN) continue;
      const queued = c.ws.bufferedAmount;
      if (c.behind) {
        if (queued > SLOW_BYTES) continue;
        this.#sendJson(c, {
          type: "behind",
          dropped: c.dropped,
          message:
            `this browser fell behind: ${c.dropped} samples were not sent to it; showing the window again`,
        });
        c.behind = false;
        c.dropped = 0;
        this.#sendHistory(c);
        continue;
      }
      if (c.pendingCount === 0 || queued > STOP_BYTES) continue;
      if (queued > SLOW_BYTES && now - c.lastSent < SLOW_FRAME_MS) continue;
      if (now - c.lastSent < FRAME_MS) {
        wait = Math.min(wait, c.lastSent + FRAME_MS - now);
        continue;
      }
      const series: FrameSeries[] = [];
      for (const [m, p] of c.pending) series.push({ measurement: m, t: p.t, v: p.v });
      c.pending.clear();
      c.pendingCount = 0;
      this.#send(c, encodeFrame(APPEND, series));
      c.lastSent = now;
    }
    return wait === Infinity ? 0 : Math.max(1, Math.ceil(wait));
  }

  /** The newest value, limit state, age and rate of every measurement. */
  #sendValues(only?: Client): void {
    const now = performance.now();
    const dt = (now - this.#ratesAt) / 1000;
    if (dt >= 1) {
      this.#rates = new Map([...this.feed.takeCounts()].map(([m, n]) => [m, n / dt]));
      this.#ratesAt = now;
    }
    const items: unknown[] = [];
    for (const m of this.opts.config.measurements) {
      const l = this.feed.latest.get(m.index);
      if (!l) continue;
      const rate = Math.round((this.#rates.get(m.index) ?? 0) * 10) / 10;
      items.push([m.index, l.value, l.limit, l.t, rate, this.feed.staleNow(m) ? 1 : 0]);
    }
    const msg = {
      type: "values",
      now: Date.now(),
      items,
      sources: Object.fromEntries(this.feed.sources),
      lost: this.feed.lost,
    };
    for (const c of only ? [only] : this.#clients) {
      if (c.ready && c.ws.bufferedAmount <= STOP_BYTES) this.#sendJson(c, msg);
    }
  }

  #sendJson(c: Client, msg: unknown): void {
    this.#send(c, JSON.stringify(msg));
  }

  #send(c: Client, data: string | Uint8Array): void {
    try {
      if (c.ws.readyState === WebSocket.OPEN) c.ws.send(data);
    } catch {
      this.#clients.delete(c);
    }
  }
}

function json(text: string): Response {
  return new Response(text, {
    headers: { "content-type": "application/json", "cache-control": "no-cache" },
  });
}

/** Compares two secrets in time that does not depend on where they differ. */
export function sameSecret(given: string, want: string): boolean {
  const a = new TextEncoder().encode(given);
  const b = new TextEncoder().encode(want);
  // Equal lengths for timingSafeEqual; a different length still costs one full comparison.
  return timingSafeEqual(a.length === b.length ? a : b, b) && a.length === b.length;
}

/** What the page needs to know of the config (no file paths). */
export function describeConfig(config: Config): unknown {
  return {
    name: config.name,
    description: config.description,
    historyMs: HISTORY_MS,
    sources: config.sources.map((s) => ({ name: s.name })),
    packets: config.packets.map((p) => ({
      index: p.index,
      name: p.name,
      source: p.source,
      rateHz: p.expectedRateHz,
      measurements: [...new Set(p.fields.map((f) => f.measurement))],
    })),
    measurements: config.measurements.map((m) => ({
      index: m.index,
      key: m.key,
      name: m.name,
      type: m.type,
      unit: m.unit,
      enum: m.enum,
      limits: m.limits,
      rateHz: m.expectedRateHz,
      health: m.health ? { source: m.health.source, what: m.health.what } : undefined,
      plottable: plottable(m),
      description: m.description,
    })),
  };
}
