/**
 * Sends lines of InfluxDB line protocol to a server over HTTP, in batches, through a bounded
 * queue: a slow, absent or refusing server fills the queue, and beyond its bound new points
 * are dropped and counted; nothing upstream ever waits. Failed requests are retried with
 * backoff; points InfluxDB refuses as bad are counted, never retried.
 *
 * Accounting is per point: each is `written` (acknowledged), `rejected` (InfluxDB refused it:
 * type conflict, bad line), `dropped` (the queue was full), or still `queued` (in the open
 * batch, waiting, or in a request not yet answered).
 */

/** Where and how to write: the whole URL (query included) and its headers. */
export interface WriteTarget {
  /** e.g. `http://127.0.0.1:8086/write?db=flight&precision=ns` */
  url: string;
  /** Authorization, if any; read again after a 401 or 403 (a token file replaced). */
  authorization?: () => Promise<string | undefined>;
  /** What to say when the server answers 404 (no such database or bucket). */
  notFound: string;
}

export interface WriterOptions {
  target: WriteTarget;
  /** Bound of the text of every point not yet acknowledged, in bytes (UTF-16 units). */
  queueBytes: number;
  /** A batch is sent when it holds this many points, */
  batchPoints: number;
  /** or this many bytes, */
  batchBytes: number;
  /** or when its first point is this old. */
  flushMs: number;
  /** Requests at once (one while the server is failing). */
  maxInflight: number;
  /** A request not answered in this time is abandoned and retried. */
  timeoutMs: number;
  log: (line: string) => void;
}

export interface WriterStats {
  /** Points acknowledged by the server. */
  written: number;
  /** Points the server refused (counted from its `dropped=N`, else the whole batch). */
  rejected: number;
  /** Points not taken because the queue was full. */
  dropped: number;
  /** Points waiting or in flight. */
  queued: number;
  queueBytes: number;
  requests: number;
  /** Requests that failed and were tried again. */
  retries: number;
  /** Whether the last request was answered (written or refused as bad data), not failed. */
  writing: boolean;
}

interface Batch {
  body: Uint8Array<ArrayBuffer>;
  points: number;
  /** What it counts in `queueBytes`. */
  bytes: number;
}

export const MIN_BACKOFF_MS = 250;
export const MAX_BACKOFF_MS = 30_000;
/** The same problem is said again at most this often while it lasts. */
const SAY_EVERY_MS = 10_000;

const encoder = new TextEncoder();
const NEWLINE = 10;

/** Number of lines (points) in a body of newline-terminated lines. */
function countLines(body: Uint8Array): number {
  let n = 0;
  for (let i = body.indexOf(NEWLINE); i >= 0; i = body.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

export class InfluxWriter {
  readonly #o: WriterOptions;
  readonly stats: WriterStats = {
    written: 0,
    rejected: 0,
    dropped: 0,
    queued: 0,
    queueBytes: 0,
    requests: 0,
    retries: 0,
    writing: false,
  };
  /** Lines of the batch being filled. */
  #open: string[] = [];
  #openBytes = 0;
  #flushTimer: ReturnType<typeof setTimeout> | undefined;
  /** Closed batches, oldest first. */
  #ready: Batch[] = [];
  #inflight = 0;
  readonly #aborts = new Set<AbortController>();
  #backoff = MIN_BACKOFF_MS;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Whether the last attempt failed (then one request at a time, and waits between). */
  #failing = false;
  #authorization: string | undefined;
  #authLoaded = false;
  readonly #said = new Map<string, number>();
  #droppedSaidAt = -Infinity;
  #closed = false;
  /** Resolves whenever a request finishes (close waits on it). */
  #settled: (() => void)[] = [];

  constructor(opts: WriterOptions) {
    this.#o = opts;
  }

  /**
   * Queues one line (one point, ending in "\n"). False, and counted in `dropped`, when the
   * queue is full or the writer is closed.
   */
  add(line: string): boolean {
    const s = this.stats;
    if (this.#closed || s.queueBytes + line.length > this.#o.queueBytes) {
      this.#onDropped();
      return false;
    }
    this.#open.push(line);
    this.#openBytes += line.length;
    s.queueBytes += line.length;
    s.queued++;
    if (this.#open.length >= this.#o.batchPoints || this.#openBytes >= this.#o.batchBytes) {
      this.flush();
    } else if (this.#open.length === 1) {
      this.#flushTimer = setTimeout(() => this.flush(), this.#o.flushMs);
    }
    return true;
  }

  /** Closes the batch being filled and sends what can be sent. */
  flush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#open.length > 0) {
      this.#ready.push({
        body: encoder.encode(this.#open.join("")),
        points: this.#open.length,
        bytes: this.#openBytes,
      });
      this.#open = [];
      this.#openBytes = 0;
    }
    this.#pump();
  }

  #pump(): void {
    const limit = this.#failing ? 1 : this.#o.maxInflight;
    while (this.#ready.length > 0 && this.#inflight < limit && this.#retryTimer === undefined) {
      this.#send(this.#ready.shift()!);
    }
  }

  async #send(batch: Batch): Promise<void> {
    this.#inflight++;
    this.stats.requests++;
    const abort = new AbortController();
    this.#aborts.add(abort);
    const timer = setTimeout(() => abort.abort(new Error("no answer")), this.#o.timeoutMs);
    let verdict: Verdict;
    try {
      if (!this.#authLoaded) {
        try {
          this.#authorization = await this.#o.target.authorization?.();
          this.#authLoaded = true;
        } catch (e) {
          throw new CredentialError((e as Error).message);
        }
      }
      const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" };
      if (this.#authorization) headers.authorization = this.#authorization;
      const r = await fetch(this.#o.target.url, {
        method: "POST",
        body: batch.body,
        headers,
        signal: abort.signal,
      });
      verdict = judge(r.status, await r.text(), r.headers.get("retry-after"), this.#o.target);
    } catch (e) {
      const why = e instanceof CredentialError
        ? e.message
        : `cannot reach ${this.#o.target.url}: ${
          abort.signal.aborted
            ? (this.#closed ? "stopped" : `no answer within ${this.#o.timeoutMs} ms`)
            : describeError(e)
        }`;
      verdict = { kind: "retry", why };
    } finally {
      clearTimeout(timer);
      this.#aborts.delete(abort);
      this.#inflight--;
    }
    this.#apply(batch, verdict);
    this.#settled.splice(0).forEach((f) => f());
  }

  #apply(batch: Batch, v: Verdict): void {
    const s = this.stats;
    if (v.kind === "retry" || (v.kind === "split" && batch.points > 1)) {
      if (v.kind === "split") {
        this.#ready.unshift(...split(batch));
        this.#o.log(`${v.why}: sending the batch in two halves`);
        this.#pump();
        return;
      }
      s.retries++;
      s.writing = false;
      this.#ready.unshift(batch);
      if (v.reauth) this.#authLoaded = false;
      this.#failing = true;
      if (this.#closed) return; // close() tries again at its own pace
      this.#say(
        v.why,
        `${v.why}; keeping the points (queue bound ${mib(this.#o.queueBytes)}) and trying again`,
      );
      // Both requests in flight may fail: one wait, one doubling.
      if (this.#retryTimer !== undefined) return;
      const wait = v.retryAfterMs ?? this.#backoff / 2 + Math.random() * this.#backoff / 2;
      this.#backoff = Math.min(MAX_BACKOFF_MS, this.#backoff * 2);
      this.#retryTimer = setTimeout(() => {
        this.#retryTimer = undefined;
        this.#pump();
      }, Math.min(wait, MAX_BACKOFF_MS));
      return;
    }
    s.queued -= batch.points;
    s.queueBytes -= batch.bytes;
    s.writing = true;
    if (this.#failing) {
      this.#failing = false;
      this.#said.clear();
      this.#o.log(`writing to ${this.#o.target.url} again`);
    }
    this.#backoff = MIN_BACKOFF_MS;
    if (v.kind === "ok") {
      s.written += batch.points;
    } else {
      // Refused: retrying cannot help. Influx says how many of the batch it dropped, if not all.
      const refused = v.kind === "refused"
        ? Math.min(v.dropped ?? batch.points, batch.points)
        : batch.points;
      s.rejected += refused;
      s.written += batch.points - refused;
      this.#say(
        `refused ${v.why.slice(0, 80)}`,
        `InfluxDB refused ${refused} of ${batch.points} points: ${v.why}`,
      );
    }
    this.#pump();
  }

  #onDropped(): void {
    this.stats.dropped++;
    const now = performance.now();
    if (now - this.#droppedSaidAt < SAY_EVERY_MS) return;
    this.#droppedSaidAt = now;
    this.#o.log(
      `the queue is full (${mib(this.#o.queueBytes)}, ${this.stats.queued} points): dropping ` +
        `new points (${this.stats.dropped} so far) until InfluxDB takes more`,
    );
  }

  /** Logs `line` the first time `key` happens, then at most every SAY_EVERY_MS. */
  #say(key: string, line: string): void {
    const now = performance.now();
    if (now - (this.#said.get(key) ?? -Infinity) < SAY_EVERY_MS) return;
    this.#said.set(key, now);
    this.#o.log(line);
  }

  /**
   * Takes no more points; sends what is queued, for up to `graceMs`, then abandons what is
   * left (still counted in `queued`).
   */
  async close(graceMs: number): Promise<void> {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    const deadline = performance.now() + graceMs;
    while (this.#inflight > 0 || this.#ready.length > 0) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      if (this.#inflight === 0) {
        if (this.#failing) await this.#settle(Math.min(left, 200)); // not a tight loop
        // A backoff wait is cut short: there is no time left for it.
        clearTimeout(this.#retryTimer);
        this.#retryTimer = undefined;
        this.#pump();
      }
      await this.#settle(Math.min(deadline - performance.now(), 200));
    }
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    for (const a of this.#aborts) a.abort(new Error("stopped"));
    while (this.#inflight > 0) await this.#settle(1000);
  }

  /** Resolves when a request finishes, or after `ms`. */
  #settle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, ms));
      this.#settled.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** The credentials could not be read (a token or password file). */
class CredentialError extends Error {}

/** What to do with a batch after the server's answer. */
type Verdict =
  | { kind: "ok" }
  | { kind: "refused"; why: string; dropped?: number }
  | { kind: "split"; why: string }
  | { kind: "retry"; why: string; retryAfterMs?: number; reauth?: boolean };

/** The server's answer to a write, as InfluxDB 1.x, 2.x and 3.x give it. */
export function judge(
  status: number,
  body: string,
  retryAfter: string | null,
  target: WriteTarget,
): Verdict {
  if (status >= 200 && status < 300) return { kind: "ok" };
  const message = errorText(body);
  const said = `InfluxDB answered ${status}${message ? `: ${message}` : ""}`;
  if (status === 401 || status === 403) {
    return {
      kind: "retry",
      why: `${said} (check the credentials; a token or password file is read again)`,
      reauth: true,
    };
  }
  if (status === 404) return { kind: "retry", why: `${said}. ${target.notFound}` };
  if (status === 413) return { kind: "split", why: said };
  if (status === 429 || status === 503 || status >= 500) {
    const seconds = Number(retryAfter);
    return {
      kind: "retry",
      why: said,
      retryAfterMs: retryAfter !== null && Number.isFinite(seconds) ? seconds * 1000 : undefined,
    };
  }
  // 400 and the rest: the data is wrong; 1.x and 2.x say "dropped=N" after a partial write.
  const dropped = message.match(/dropped=(\d+)/);
  return {
    kind: "refused",
    why: message || said,
    dropped: dropped ? Number(dropped[1]) : undefined,
  };
}

/** The message of an error reply: `{"error": …}` (1.x), `{"message": …}` (2.x, 3.x), or text. */
function errorText(body: string): string {
  try {
    const o = JSON.parse(body);
    const m = o?.error ?? o?.message;
    if (typeof m === "string") return m;
  } catch { /* not JSON */ }
  return body.trim().slice(0, 300);
}

/** The useful end of a fetch error: "Connection refused (os error 111)". */
function describeError(e: unknown): string {
  const err = e as Error & { cause?: Error };
  const text = err.cause?.message ?? err.message ?? String(e);
  return text.split(": ").at(-1)!;
}

/** A batch as two, cut at the line boundary nearest its middle. */
function split(b: Batch): Batch[] {
  let cut = b.body.indexOf(NEWLINE, b.body.length >> 1) + 1;
  if (cut <= 0 || cut >= b.body.length) cut = b.body.indexOf(NEWLINE) + 1;
  const one = b.body.subarray(0, cut);
  const two = b.body.subarray(cut);
  const points = countLines(one);
  const bytes = Math.round(b.bytes * one.length / b.body.length);
  return [
    { body: one, points, bytes },
    { body: two, points: b.points - points, bytes: b.bytes - bytes },
  ];
}

function mib(bytes: number): string {
  return `${Math.round(bytes / (1 << 20) * 10) / 10} MiB`;
}
