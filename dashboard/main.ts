/**
 * `gsw dashboard`: serves the web dashboard — live values and plots of every sample — to any
 * browser on this machine, or on the field network with an access token. Run by hand it
 * restarts itself with exactly the permissions it needs (network for the listen address only).
 */
import { parseCommand, runCommand, UsageError, UserError } from "../cli/args.ts";
import { followParent, LIBRARY, PARENT_OPTION, relaunch } from "../cli/relaunch.ts";
import { loadCommandConfig } from "../cli/service.ts";
import { DEFAULT_CONFIG_PATH } from "../config/mod.ts";
import { openRunDir } from "../control/rundir.ts";

const spec = {
  name: "dashboard",
  usage:
    "dashboard [--config FILE] [--listen HOST:PORT] [--token TOKEN] [--layouts DIR] [--run-dir DIR]",
  help: `
Serves the web dashboard: every measurement's newest value, unit and limit state grouped by
packet, the link health of each source, and plots of every sample decom received (not only the
newest), with a window of 10 s to 30 min, pause, zoom and an exact read-out under the cursor.
The page needs no internet: everything it loads comes from this server. It is read-only: a
browser can change nothing in the pipeline.

On this machine only (the default, 127.0.0.1) no token is needed. To serve the field network,
listen on 0.0.0.0 (or one address of this machine): every request then needs the access token,
printed in the URL at start (or give your own with --token). Without it: 401.

options:
  --config FILE        vehicle config (default ${DEFAULT_CONFIG_PATH})
  --listen HOST:PORT   where to serve (default 127.0.0.1:8080; if 8080 is taken and no port
                       was given, the next free one up to 8099, said on start)
  --token TOKEN        the access token (default: generated when the listen is not loopback)
  --layouts DIR        saved layouts, one <name>.json each, opened with ?layout=<name>
                       (default: layouts/ beside the config)
  --run-dir DIR        directory of gsw's control sockets (default: $GSW_RUN_DIR, else
                       $XDG_RUNTIME_DIR/gsw, else /tmp/gsw-<uid>)
  -h, --help           this help

examples:
  deno task dashboard
  deno task dashboard --config vehicle.yaml --listen 0.0.0.0:8080`,
  options: {
    config: { type: "string" },
    listen: { type: "string" },
    token: { type: "string" },
    layouts: { type: "string" },
    "run-dir": { type: "string" },
    // Internal: the launcher's pid, so the server it started stops with it.
    ...PARENT_OPTION,
  },
} as const;

export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_PORT = 8080;
/** Ports tried after the default one when it is taken (and no port was given). */
const PORT_TRIES = 20;

const STATIC_DIR = decodeURIComponent(new URL("./static", import.meta.url).pathname);

/** `HOST:PORT` (or `HOST`, or `:PORT`) with the defaults; `explicitPort` if a port was given. */
export function parseListen(
  text: string | undefined,
): { host: string; port: number; explicitPort: boolean } {
  if (text === undefined) return { host: DEFAULT_HOST, port: DEFAULT_PORT, explicitPort: false };
  const m = text.match(/^(\[[0-9a-fA-F:]+\]|[^:]*)(?::(\d+))?$/);
  const host = m?.[1] ? m[1].replace(/^\[|\]$/g, "") : DEFAULT_HOST;
  const port = m?.[2] === undefined ? DEFAULT_PORT : Number(m[2]);
  if (!m || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new UsageError(`--listen takes HOST:PORT, like 0.0.0.0:8080, not "${text}"`);
  }
  return { host, port, explicitPort: m[2] !== undefined };
}

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function newToken(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * The permissions the serving process needs: the library, the run directory's variables, its
 * page, the config and layouts, and the network for the listen host (every port of it when
 * the next free one may be taken).
 */
export function servePermissions(
  configPath: string,
  layoutsDir: string,
  listen: { host: string; port: number; explicitPort: boolean },
): string[] {
  const net = netGrant(listen);
  return [
    `--allow-ffi=${LIBRARY}`,
    "--allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR",
    "--ignore-env=LOG_TOKENS,LOG_STREAM",
    `--allow-read=${STATIC_DIR},${configPath},${layoutsDir}`,
    `--allow-net=${net}`,
    "--allow-sys=networkInterfaces",
  ];
}

/** What `--allow-net` grants the server: the listen address, or its host when the port may move. */
function netGrant(listen: { host: string; port: number; explicitPort: boolean }): string {
  return listen.explicitPort
    ? `${hostForUrl(listen.host)}:${listen.port}`
    : hostForUrl(listen.host);
}

function hostForUrl(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

export function main(args: string[]): Promise<number> {
  return runCommand(spec, async () => {
    const { values, help } = parseCommand(spec, args);
    if (help) return 0;
    const listen = parseListen(values.listen);
    const config = await loadCommandConfig(values.config);
    const configPath = Deno.realPathSync(config.file);
    const layoutsDir = values.layouts ??
      `${configPath.slice(0, configPath.lastIndexOf("/"))}/layouts`;
    if (Deno.permissions.querySync({ name: "net", host: netGrant(listen) }).state !== "granted") {
      // Run by hand (`deno task dashboard`): again, with the network for this host only.
      return await relaunch(
        "dashboard",
        args,
        servePermissions(configPath, layoutsDir, listen),
        "network access for its listen address",
      );
    }
    let token: string | undefined = values.token;
    if (token !== undefined && !/^[\x21-\x7e]{8,200}$/.test(token)) {
      throw new UsageError("--token takes 8 to 200 printable characters, no spaces");
    }
    if (!isLoopback(listen.host)) token ??= newToken();
    if (!followParent(values.parent)) return 1;
    const { DashboardServer } = await import("./server.ts");
    const log = (line: string) => console.error(`dashboard: ${line}`);
    const server = new DashboardServer({
      config,
      runDir: openRunDir(values["run-dir"]),
      staticDir: STATIC_DIR,
      layoutsDir,
      token,
      log,
    });
    const ac = new AbortController();
    const http = serve(server.handle, listen, ac.signal);
    server.start();
    const urls = addresses(listen.host).map((h) =>
      `http://${hostForUrl(h)}:${http.addr.port}/${token ? `?token=${token}` : ""}`
    );
    console.log(`dashboard: open ${urls[0]} in a browser`);
    for (const u of urls.slice(1)) console.log(`dashboard:   or ${u}`);
    if (http.addr.port !== listen.port) {
      console.log(`dashboard: port ${listen.port} was taken; serving on ${http.addr.port}`);
    }
    if (token) log("every request needs the token (in the URL above, or the cookie it sets)");
    const stop = new Promise<string>((resolve) => {
      for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
        Deno.addSignalListener(s, () => resolve(s));
      }
    });
    const signal = await stop;
    log(`${signal}: stopping (${server.clients} browsers connected)`);
    server.close();
    ac.abort();
    await http.finished;
    return 0;
  });
}

/** Deno.serve on the listen address, or the next free port if it is taken and may move. */
function serve(
  handler: (req: Request) => Response,
  listen: { host: string; port: number; explicitPort: boolean },
  signal: AbortSignal,
): Deno.HttpServer<Deno.NetAddr> {
  const tries = listen.explicitPort ? 1 : PORT_TRIES;
  for (let i = 0; i < tries; i++) {
    try {
      return Deno.serve(
        { hostname: listen.host, port: listen.port + i, signal, onListen() {} },
        handler,
      );
    } catch (e) {
      if (!(e instanceof Deno.errors.AddrInUse)) throw e;
    }
  }
  throw new UserError(
    listen.explicitPort
      ? `${listen.host}:${listen.port} is in use: another dashboard (or program) serves it; stop it or choose another --listen`
      : `ports ${listen.port}-${
        listen.port + tries - 1
      } on ${listen.host} are all in use: choose one with --listen`,
  );
}

/** Addresses a browser can use: the host itself, or this machine's IPv4 addresses for 0.0.0.0. */
function addresses(host: string): string[] {
  if (host !== "0.0.0.0") return [host];
  try {
    const own = Deno.networkInterfaces()
      .filter((i) => i.family === "IPv4" && !i.address.startsWith("127."))
      .map((i) => i.address);
    return own.length > 0 ? [...own, "127.0.0.1"] : ["127.0.0.1"];
  } catch {
    return ["<this machine's address>"];
  }
}
