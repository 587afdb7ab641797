/**
 * A private InfluxDB 1.x server for tests and benchmarks: Debian's `influxd` started on free
 * loopback ports with a generated config in a temporary directory (its meta, data and WAL
 * there too; no reporting, no monitor database, no system service). It starts in well under a
 * second. Disposing it kills the server and removes its directory, whatever the test did; the
 * server also dies with the process that started it (`setpriv --pdeathsig`).
 *
 * Query results keep every digit: numbers come back as their JSON source text (`"0.1"`,
 * `"9223372036854775807"`), so a test compares exactly what the server stored.
 */
import { freeTcpPort, sleep } from "./pipeline.ts";

export const INFLUXD = Deno.env.get("GSW_INFLUXD") ?? "/usr/bin/influxd";

/** A query result cell: numbers as their exact source text, then strings, booleans, null. */
export type Cell = string | boolean | null;

export interface Series {
  name: string;
  tags?: Record<string, string>;
  columns: string[];
  values: Cell[][];
}

export interface InfluxdOptions {
  /** Require a user name and password (the first user is created with `createAdmin`). */
  auth?: boolean;
  /** Largest request body the server takes (default the server's, 25 000 000 bytes). */
  maxBodySize?: number;
}

const START_TIMEOUT_MS = 15_000;

/** Whether influxd is installed (tests that need it say so rather than fail obscurely). */
export function haveInfluxd(): boolean {
  try {
    return Deno.statSync(INFLUXD).isFile;
  } catch {
    return false;
  }
}

function setprivPath(): string | undefined {
  for (const p of ["/usr/bin/setpriv", "/bin/setpriv"]) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

/** Parses a /query reply keeping numbers as their source text. */
function parseExact(text: string): unknown {
  return JSON.parse(
    text,
    // deno-lint-ignore no-explicit-any
    (_k, v, ctx?: any) => typeof v === "number" ? ctx.source as string : v,
  );
}

export class Influxd implements AsyncDisposable {
  #child: Deno.ChildProcess | null = null;
  #output = "";
  #outputDone: Promise<void> = Promise.resolve();
  /** Milliseconds the last start took, until /ping answered. */
  startMs = 0;

  private constructor(
    readonly dir: string,
    readonly httpPort: number,
    readonly rpcPort: number,
    readonly opts: InfluxdOptions,
  ) {}

  /** `http://127.0.0.1:<port>` */
  get url(): string {
    return `http://127.0.0.1:${this.httpPort}`;
  }

  /** What the server printed (warnings and errors only). */
  get output(): string {
    return this.#output;
  }

  get running(): boolean {
    return this.#child !== null;
  }

  /** Starts a server on free ports; tries other ports if one was taken meanwhile. */
  static async start(opts: InfluxdOptions = {}): Promise<Influxd> {
    if (!haveInfluxd()) {
      throw new Error(
        `${INFLUXD} not found: install Debian's influxdb package (apt-get install influxdb)`,
      );
    }
    let last: Error | undefined;
    for (let attempt = 0; attempt < 3; attempt++) {
      const dir = Deno.makeTempDirSync({ prefix: "gsw-influxd-" });
      const http = freeTcpPort();
      let rpc = freeTcpPort();
      while (rpc === http) rpc = freeTcpPort();
      const server = new Influxd(dir, http, rpc, opts);
      try {
        await server.restart();
        return server;
      } catch (e) {
        last = e as Error;
        await server[Symbol.asyncDispose]();
        if (!/address already in use/.test(last.message)) break;
      }
    }
    throw last;
  }

  #writeConfig(): string {
    const path = `${this.dir}/influxdb.conf`;
    Deno.writeTextFileSync(
      path,
      `reporting-disabled = true
bind-address = "127.0.0.1:${this.rpcPort}"
[meta]
  dir = "${this.dir}/meta"
[data]
  dir = "${this.dir}/data"
  wal-dir = "${this.dir}/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:${this.httpPort}"
  log-enabled = false
  auth-enabled = ${this.opts.auth === true}
${this.opts.maxBodySize ? `  max-body-size = ${this.opts.maxBodySize}\n` : ""}[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
  suppress-logo = true
`,
    );
    return path;
  }

  /** Starts the server (again, after `stop`) on the same ports and data; resolves when it answers. */
  async restart(): Promise<void> {
    if (this.#child) throw new Error("influxd is running");
    const config = this.#writeConfig();
    const setpriv = setprivPath();
    const args = ["run", "-config", config];
    const started = performance.now();
    const child = new Deno.Command(setpriv ?? INFLUXD, {
      args: setpriv ? ["--pdeathsig", "KILL", INFLUXD, ...args] : args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#child = child;
    this.#output = "";
    const collect = async (s: ReadableStream<Uint8Array>) => {
      for await (const t of s.pipeThrough(new TextDecoderStream())) this.#output += t;
    };
    this.#outputDone = Promise.all([collect(child.stdout), collect(child.stderr)]).then(() => {});
    let exited = false;
    child.status.then(() => exited = true);
    while (performance.now() - started < START_TIMEOUT_MS) {
      if (exited) {
        await this.#outputDone;
        this.#child = null;
        throw new Error(`influxd exited at start:\n${this.#output}`);
      }
      try {
        const r = await fetch(`${this.url}/ping`);
        await r.body?.cancel();
        if (r.status === 204) {
          this.startMs = performance.now() - started;
          return;
        }
      } catch { /* not listening yet */ }
      await sleep(10);
    }
    await this.stop("SIGKILL");
    throw new Error(`influxd did not answer within ${START_TIMEOUT_MS} ms:\n${this.#output}`);
  }

  /** Stops the server (SIGTERM: it closes its files cleanly) and waits for it. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<void> {
    const child = this.#child;
    if (!child) return;
    try {
      child.kill(signal);
    } catch { /* already gone */ }
    const timer = setTimeout(() => {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, 5000);
    await child.status;
    clearTimeout(timer);
    await this.#outputDone;
    this.#child = null;
  }

  /** Runs an InfluxQL statement; the reply's series (numbers as exact text). */
  async query(
    q: string,
    opts: { db?: string; auth?: [string, string] } = {},
  ): Promise<Series[]> {
    const params = new URLSearchParams({ q, epoch: "ns" });
    if (opts.db) params.set("db", opts.db);
    const headers: Record<string, string> = {};
    if (opts.auth) headers.authorization = `Basic ${btoa(opts.auth.join(":"))}`;
    const r = await fetch(`${this.url}/query`, { method: "POST", body: params, headers });
    const text = await r.text();
    if (!r.ok) throw new Error(`influxd /query ${r.status}: ${text}`);
    // deno-lint-ignore no-explicit-any
    const reply = parseExact(text) as any;
    const result = reply.results?.[0];
    if (result?.error) throw new Error(`influxd: ${result.error} (${q})`);
    return result?.series ?? [];
  }

  async createDatabase(name: string, auth?: [string, string]): Promise<void> {
    await this.query(`CREATE DATABASE "${name}"`, { auth });
  }

  /** With `auth`: the first user, an admin (allowed before any user exists). */
  async createAdmin(user: string, password: string): Promise<void> {
    await this.query(`CREATE USER "${user}" WITH PASSWORD '${password}' WITH ALL PRIVILEGES`);
  }

  /** Rows of `SELECT * FROM "<measurement>"` as objects keyed by column (time included). */
  async rows(db: string, from: string, auth?: [string, string]): Promise<Record<string, Cell>[]> {
    const series = await this.query(`SELECT * FROM "${from}"`, { db, auth });
    return series.flatMap((s) =>
      s.values.map((row) => Object.fromEntries(s.columns.map((c, i) => [c, row[i]])))
    );
  }

  /** Number of points in a measurement (counted over one field known to be in every point). */
  async count(db: string, from: string, field: string): Promise<number> {
    const series = await this.query(`SELECT count("${field}") FROM "${from}"`, { db });
    return series.length === 0 ? 0 : Number(series[0].values[0][1]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
    try {
      Deno.removeSync(this.dir, { recursive: true });
    } catch { /* already gone */ }
  }
}
