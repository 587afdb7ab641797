/**
 * `gsw influx`: writes every packet decom receives to InfluxDB as it arrives (1.x `/write`,
 * 2.x and 3.x `/api/v2/write`), one point per packet, the same points `export --format influx`
 * makes from the log. Run by hand it restarts itself with exactly the permissions it needs:
 * the network for the InfluxDB host and port only.
 */
import { numberOption, parseCommand, runCommand, UsageError } from "../cli/args.ts";
import { followParent, LIBRARY, PARENT_OPTION, relaunch } from "../cli/relaunch.ts";
import { readPasswordEnv, readPasswordFile } from "../cli/secrets.ts";
import { loadCommandConfig } from "../cli/service.ts";
import { type Config, DEFAULT_CONFIG_PATH } from "../config/mod.ts";
import { LINE_OPTIONS, lineEncoder, lineOptions, lineOptionsHelp } from "./options.ts";
import type { WriteTarget } from "./writer.ts";

/** Default bound of the queue: ~400 000 points of ~150 bytes, minutes of a busy link. */
export const DEFAULT_QUEUE_MIB = 64;
export const DEFAULT_BATCH_POINTS = 5000;
export const DEFAULT_FLUSH_MS = 100;
/** Requests at once: one being answered while the next is sent. */
const MAX_INFLIGHT = 2;
/** A batch is also cut at this many bytes, far below InfluxDB 1.x's 25 MB request limit. */
const BATCH_BYTES = 4 << 20;
const TIMEOUT_MS = 10_000;
/** Time the writer takes at exit to send what is queued. */
const EXIT_GRACE_MS = 5000;

const spec = {
  name: "influx",
  usage: "influx --url URL (--db NAME | --bucket NAME) [--config FILE] [--token-file F] " +
    "[options]",
  help: `
Writes every packet decom receives to InfluxDB while it arrives: one point per packet, its
measurements as fields, with decom's receive time (ns) — the points \`export --format influx\`
makes from the log afterwards. It reads decom's packet ring, so it never slows decom; points
go out in batches through a bounded queue. While InfluxDB is slow, down or refusing, the queue
fills and the writer retries with backoff; when it is full, new points are dropped and
counted. Points InfluxDB refuses as bad (a field that changed type) are counted and not
retried. A line every --status seconds says what was written, queued, dropped and lost.

InfluxDB 1.x: --db NAME (create it first: CREATE DATABASE). 2.x and 3.x: --bucket NAME, with
--org for 2.x, and a token. The raw log stays the system of record: what did not reach
InfluxDB can be exported from it later (docs/export.md).

options:
  --url URL              the server: http://HOST:PORT or https://HOST:PORT (a path prefix,
                         for a proxy, is kept)
  --db NAME              InfluxDB 1.x database (POST /write); also 2.x/3.x's 1.x API
  --rp POLICY            1.x retention policy (default: the database's default)
  --bucket NAME          InfluxDB 2.x or 3.x bucket (POST /api/v2/write)
  --org ORG              2.x organization
  --token-file F         the token is the first line of F (sent as "Authorization: Token …")
  --token-env VAR        the token is in environment variable VAR
  --username U           1.x user, with --password-file F or --password-env VAR
  --config FILE          vehicle config, the one decom runs with (default ${DEFAULT_CONFIG_PATH})
${lineOptionsHelp()}
  --batch N              points per request at most (default ${DEFAULT_BATCH_POINTS})
  --flush-ms MS          a batch waits at most this long for more points (default ${DEFAULT_FLUSH_MS})
  --queue MIB            bound of the points not yet written, 1-4096 MiB (default ${DEFAULT_QUEUE_MIB})
  --source NAME          only this source (repeatable; default every source)
  --status S             seconds between status lines (default 10; 0: none)
  --run-dir DIR          directory of gsw's control sockets
  -h, --help             this help

examples:
  deno task influx --url http://127.0.0.1:8086 --db flight
  deno task influx --url http://10.0.0.5:8086 --bucket telemetry --org team --token-file ~/.influx-token
  deno task influx --url http://127.0.0.1:8086 --db flight --tags source,packet,flight=F3`,
  options: {
    url: { type: "string" },
    db: { type: "string" },
    rp: { type: "string" },
    bucket: { type: "string" },
    org: { type: "string" },
    "token-file": { type: "string" },
    "token-env": { type: "string" },
    username: { type: "string" },
    "password-file": { type: "string" },
    "password-env": { type: "string" },
    config: { type: "string" },
    ...LINE_OPTIONS,
    batch: { type: "string" },
    "flush-ms": { type: "string" },
    queue: { type: "string" },
    source: { type: "string", multiple: true },
    status: { type: "string" },
    "run-dir": { type: "string" },
    ...PARENT_OPTION,
  },
} as const;

type Values = Record<string, string | undefined>;

/** The server's URL, and `host:port` for `--allow-net`. */
function parseUrl(text: string | undefined): { base: URL; net: string } {
  if (text === undefined) {
    throw new UsageError("--url URL is required, e.g. --url http://127.0.0.1:8086");
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new UsageError(`--url takes http://HOST:PORT, not "${text}"`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new UsageError(`--url must start with http:// or https://, not "${url.protocol}//"`);
  }
  if (url.search || url.hash || url.username || url.password) {
    throw new UsageError(
      "--url takes no query, fragment or credentials (give credentials with --token-file, " +
        "--token-env, or --username and --password-file)",
    );
  }
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  const port = url.port || (url.protocol === "https:" ? "443" : "80");
  return { base: url, net: `${url.hostname}:${port}` };
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The credentials the options name: a token, or a 1.x user and password; where each is. */
function credentialOptions(v: Values): {
  file?: string;
  env?: string;
  kind: "none" | "token" | "password";
} {
  const given = (["token-file", "token-env", "password-file", "password-env"] as const)
    .filter((o) => v[o] !== undefined);
  if (given.length > 1) throw new UsageError(`give one of --${given.join(", --")}`);
  const env = v["token-env"] ?? v["password-env"];
  if (env !== undefined && !ENV_NAME.test(env)) {
    throw new UsageError(`--${given[0]} takes a variable name, not "${env}"`);
  }
  const password = given[0]?.startsWith("password");
  if (password && v.username === undefined) throw new UsageError("a password needs --username");
  if (!password && v.username !== undefined) {
    throw new UsageError("--username needs --password-file F or --password-env VAR");
  }
  return {
    file: v["token-file"] ?? v["password-file"],
    env,
    kind: given.length === 0 ? "none" : password ? "password" : "token",
  };
}

/** Where to write and what to say about a missing database or bucket. */
function writeTarget(v: Values, base: URL): Omit<WriteTarget, "authorization"> {
  if ((v.db === undefined) === (v.bucket === undefined)) {
    throw new UsageError("give --db NAME (InfluxDB 1.x) or --bucket NAME (2.x, 3.x)");
  }
  if (v.db !== undefined) {
    if (v.org !== undefined) throw new UsageError("--org goes with --bucket, not --db");
    const url = new URL("write", base);
    url.searchParams.set("db", v.db);
    if (v.rp !== undefined) url.searchParams.set("rp", v.rp);
    url.searchParams.set("precision", "ns");
    const query = new URL("query", base);
    return {
      url: url.href,
      notFound: `Is there a database "${v.db}"? Create it: curl -XPOST ${query.href} ` +
        `--data-urlencode 'q=CREATE DATABASE "${v.db}"'`,
    };
  }
  if (v.rp !== undefined) throw new UsageError("--rp goes with --db, not --bucket");
  const url = new URL("api/v2/write", base);
  if (v.org !== undefined) url.searchParams.set("org", v.org);
  url.searchParams.set("bucket", v.bucket!);
  url.searchParams.set("precision", "ns");
  return {
    url: url.href,
    notFound: `Is there a bucket "${v.bucket}"${
      v.org ? ` in organization "${v.org}"` : ""
    }, and may the token write to it? (influx bucket create --name ${v.bucket})`,
  };
}

/** The Authorization header, read from the file or variable each time it is asked for. */
function authorization(
  v: Values,
  cred: ReturnType<typeof credentialOptions>,
): (() => Promise<string | undefined>) | undefined {
  if (cred.kind === "none") return undefined;
  const what = `--${cred.kind}-${cred.file !== undefined ? "file" : "env"}`;
  const read = async () =>
    new TextDecoder().decode(
      cred.file !== undefined
        ? await readPasswordFile(cred.file, what, cred.kind)
        : readPasswordEnv(cred.env!, what, cred.kind),
    );
  if (cred.kind === "token") return async () => `Token ${await read()}`;
  return async () => {
    const bytes = new TextEncoder().encode(`${v.username}:${await read()}`);
    return `Basic ${btoa(String.fromCharCode(...bytes))}`;
  };
}

function checkSources(config: Config, names: string[]): void {
  for (const name of names) {
    if (!config.sources.some((s) => s.name === name)) {
      throw new UsageError(
        `config "${config.name}" has no source "${name}" (sources: ${
          config.sources.map((s) => s.name).join(", ")
        })`,
      );
    }
  }
}

export function main(args: string[]): Promise<number> {
  return runCommand(spec, async () => {
    const { values, help } = parseCommand(spec, args);
    if (help) return 0;
    const v = values as Values;
    const { base, net } = parseUrl(v.url);
    const target = writeTarget(v, base);
    const cred = credentialOptions(v);
    const line = lineOptions(v);
    const batch = numberOption(v.batch, "batch", { integer: true, min: 1, max: 1_000_000 }) ??
      DEFAULT_BATCH_POINTS;
    const flushMs = numberOption(v["flush-ms"], "flush-ms", { min: 0, max: 60_000 }) ??
      DEFAULT_FLUSH_MS;
    const queueMib = numberOption(v.queue, "queue", { min: 1, max: 4096 }) ?? DEFAULT_QUEUE_MIB;
    const status = numberOption(v.status, "status", { min: 0, max: 86_400 }) ?? 10;
    const config = await loadCommandConfig(v.config);
    const sources: string[] = values.source ?? [];
    checkSources(config, sources);
    const lines = lineEncoder(config, line);

    if (Deno.permissions.querySync({ name: "net", host: net }).state !== "granted") {
      // Run by hand (`deno task influx`): again, with the network for this server only.
      const files = [Deno.realPathSync(config.file)];
      if (cred.file !== undefined) files.push(cred.file);
      return await relaunch("influx", args, [
        `--allow-ffi=${LIBRARY}`,
        `--allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR${cred.env ? `,${cred.env}` : ""}`,
        "--ignore-env=LOG_TOKENS,LOG_STREAM",
        `--allow-read=${files.join(",")}`,
        `--allow-net=${net}`,
      ], "network access to the InfluxDB server");
    }
    if (!followParent(v.parent)) return 1;

    const auth = authorization(v, cred);
    await auth?.(); // a missing file or variable stops it now, not at the first write
    const { openRunDir } = await import("../control/rundir.ts");
    const { InfluxWriter } = await import("./writer.ts");
    const { writeLive } = await import("./live.ts");
    const log = (text: string) => console.error(`influx: ${text}`);
    const writer = new InfluxWriter({
      target: { ...target, authorization: auth },
      queueBytes: queueMib * (1 << 20),
      batchPoints: batch,
      batchBytes: BATCH_BYTES,
      flushMs,
      maxInflight: MAX_INFLIGHT,
      timeoutMs: TIMEOUT_MS,
      log,
    });
    const live = { received: 0, unidentified: 0, lost: 0 };
    const abort = new AbortController();
    const stopped = new Promise<string>((resolve) => {
      for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
        Deno.addSignalListener(s, () => {
          abort.abort();
          resolve(s);
        });
      }
    });
    const tags = line.tags.map((t) => t.value === undefined ? t.key : `${t.key}=${t.value}`);
    log(
      `writing every packet of ${
        sources.length ? `source ${sources.join(", ")}` : `"${config.name}"`
      } to ${target.url} as measurement "${line.measurement}"` +
        (tags.length ? `, tags ${tags.join(",")}` : "") +
        ` (queue bound ${queueMib} MiB)`,
    );
    let said = "";
    const timer = status > 0
      ? setInterval(() => {
        const text = statusLine(live, writer.stats);
        if (text !== said) log(text);
        said = text;
      }, status * 1000)
      : undefined;
    const reading = writeLive(config, lines, writer, live, {
      runDir: openRunDir(v["run-dir"]),
      sources: sources.length ? sources : undefined,
      signal: abort.signal,
      log,
    });
    const signal = await Promise.race([stopped, reading.then(() => "the stream ended")]);
    abort.abort();
    await reading;
    clearInterval(timer);
    log(`${signal}: stopping; sending what is queued (up to ${EXIT_GRACE_MS / 1000} s)`);
    await writer.close(EXIT_GRACE_MS);
    for (const [why, n] of lines.omitted) log(`${why}: ${n}`);
    log(statusLine(live, writer.stats, true));
    return 0;
  });
}

function statusLine(
  live: { received: number; unidentified: number; lost: number },
  w: { written: number; rejected: number; dropped: number; queued: number; writing: boolean },
  exit = false,
): string {
  return `${live.received} datagrams read` +
    (live.unidentified ? ` (${live.unidentified} not a known packet)` : "") +
    `; points: ${w.written} written, ${w.queued} ${exit ? "not written at exit" : "queued"}, ` +
    `${w.dropped} dropped (queue full), ${w.rejected} refused by InfluxDB; ` +
    `${live.lost} datagrams lost behind decom's ring` +
    (exit || w.writing || w.written + w.rejected === 0 ? "" : "; InfluxDB is not taking writes");
}
