/**
 * `gsw start`: the whole pipeline from one command — simulator, logger, one decom per data
 * source, broker and a live terminal view — on the embedded example or a given config, and
 * everything stopped and cleaned up on Ctrl-C or after `--duration`.
 */
import { numberOption, parseCommand, runCommand, UsageError, UserError } from "../cli/args.ts";
import { loadCommandConfig } from "../cli/service.ts";
import { textLines } from "../cli/lines.ts";
import { DEFAULT_CONFIG_PATH } from "../config/mod.ts";
import { brokerSocket, decomSocket, loggerSocket, openRunDir } from "../control/rundir.ts";
import { UnixConnection, unlinkPath } from "../ffi/mod.ts";
import { type ChildSpec, type LogLine, Supervisor } from "./supervisor.ts";
import { parseListen, servePermissions } from "../dashboard/main.ts";
import { bridgePermissions } from "../bridge/main.ts";
import { parseMqttUrl } from "../config/mqtt.ts";
import type { LiveView } from "./view.ts";

const spec = {
  name: "start",
  usage: "start [--config FILE] [--duration S] [--run-dir DIR] [--log-dir DIR] [--no-sim] " +
    "[--no-logger] [--no-view] [--no-dashboard] [--dashboard-listen HOST:PORT] [--mqtt URL]",
  help: `
Runs the whole pipeline: the simulator (standing in for the vehicle on UDP and TCP sources),
the logger, one decom per data source, the broker, the web dashboard (its URL is printed), the
MQTT bridge when --mqtt is given, and a live view of every measurement (value, unit, update
rate, age; stale values and limit violations stand out). Builds the native library first when
it is missing or its Rust sources changed (cargo). Ctrl-C (or --duration) stops every process
it started and removes their sockets.

Other terminals can join the same pipeline meanwhile, e.g. deno task subscribe ALTITUDE.

options:
  --config FILE    vehicle config (default ${DEFAULT_CONFIG_PATH})
  --duration S     stop after S seconds
  --run-dir DIR    directory for the control sockets (default: $GSW_RUN_DIR, else
                   $XDG_RUNTIME_DIR/gsw, else /tmp/gsw-<uid>)
  --log-dir DIR    where the logger writes (default ./logs)
  --no-sim         do not start the simulator (a real vehicle sends the packets)
  --no-logger      do not start the logger
  --no-view        no live view: print the processes' messages instead
  --no-dashboard   do not start the web dashboard
  --dashboard-listen HOST:PORT
                   where the dashboard serves (default 127.0.0.1:8080, or the next free
                   port); 0.0.0.0:PORT serves the field network, with an access token
  --mqtt URL       also run the bridge, publishing every packet and its values to this
                   MQTT broker (mqtt://HOST:PORT or mqtts://; docs/mqtt.md); for other
                   bridge options run deno task bridge yourself instead
  --mqtt-username U, --mqtt-password-file F, --mqtt-ca-file F
                   the bridge's login and TLS certificate authority
  -h, --help       this help

examples:
  deno task start
  deno task start --config vehicle.yaml --no-sim
  deno task start --mqtt mqtt://192.168.1.10:1883`,
  options: {
    config: { type: "string" },
    duration: { type: "string" },
    "run-dir": { type: "string" },
    "log-dir": { type: "string" },
    "no-sim": { type: "boolean" },
    "no-logger": { type: "boolean" },
    "no-view": { type: "boolean" },
    "no-dashboard": { type: "boolean" },
    "dashboard-listen": { type: "string" },
    mqtt: { type: "string" },
    "mqtt-username": { type: "string" },
    "mqtt-password-file": { type: "string" },
    "mqtt-ca-file": { type: "string" },
  },
} as const;

const LIBRARY = new URL("../target/release/libgsw.so", import.meta.url).pathname;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const REPO = new URL("..", import.meta.url).pathname;
const ENV_VARS = "GSW_RUN_DIR,XDG_RUNTIME_DIR";
/**
 * V8 settings of the long-lived hot processes (decom, broker), as their deno.json tasks have
 * them (and bench/native's pipeline): a 1 MiB young generation and no V8 helper threads.
 * Together they save ~13 MB of decom's and ~19 MB of the broker's resident memory; their heaps
 * are small, so the garbage collector's pauses stay short (bench/RESULTS.md).
 */
const HOT_V8_FLAGS = "--v8-flags=--max-semi-space-size=1,--single-threaded";

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether a process accepts connections on the UNIX socket at `path`. */
function answers(path: string): boolean {
  try {
    UnixConnection.connect(path).close();
    return true;
  } catch {
    return false; // absent, or a socket file nobody listens on any more
  }
}

/** Waits until `path` exists, `timeoutMs` passes, or `abandon()` says to stop waiting. */
async function socketAppears(
  path: string,
  timeoutMs: number,
  abandon: () => boolean,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline && !abandon() && !exists(path)) {
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Builds the native library with cargo when it is missing, and brings it up to date when it is
 * there (a no-op taking ~0.1 s when nothing changed): after a `git pull` the bindings may need a
 * newer library than the one built before. Without cargo, an existing library is used as is
 * (the bindings refuse one of another ABI version with a message saying so).
 */
async function ensureLibrary(say: (s: string) => void): Promise<void> {
  const present = exists(LIBRARY);
  if (!present) {
    say(`building the native library (${LIBRARY}) with cargo; this takes a minute the first time`);
  }
  let child;
  try {
    child = new Deno.Command("cargo", {
      args: ["build", "--release", "-p", "gsw-ffi"],
      cwd: REPO,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    if (present) return;
    throw new UserError(
      "the native library is not built and cargo is not installed: install Rust " +
        "(https://rustup.rs), then run deno task start again",
    );
  }
  // cargo's progress goes to stderr. Up to date, it says only "Finished": show nothing then;
  // once it compiles (or fails), show every line, so a rebuild is never a silent pause.
  const seen: string[] = [];
  let showing = !present;
  for await (const line of textLines(child.stderr)) {
    if (showing) {
      console.error(line);
    } else if (/^\s*(Compiling|error|warning)/.test(line)) {
      say("rebuilding the native library: cargo found it out of date");
      [...seen, line].forEach((l) => console.error(l));
      showing = true;
    } else seen.push(line);
  }
  const status = await child.status;
  if (status.success && exists(LIBRARY)) return;
  if (!showing) seen.forEach((l) => console.error(l));
  if (present) {
    // Keep going with the library there is: a failed rebuild must not stop a launch day.
    say(
      "could not rebuild the native library (cargo's messages above); using the one built before",
    );
    return;
  }
  throw new UserError("building the native library failed (see cargo's messages above)");
}

/** The bridge as a child of start: its own permissions (the broker's host and port only). */
function bridgeChild(
  values: Record<string, string | undefined>,
  configPath: string,
): ChildSpec {
  const broker = parseMqttUrl(values.mqtt!);
  if (typeof broker === "string") throw new UsageError(`--mqtt: ${broker}`);
  const files = [values["mqtt-password-file"], values["mqtt-ca-file"]].filter((f) =>
    f !== undefined
  );
  const opt = (name: string, value: string | undefined) => value === undefined ? [] : [name, value];
  return {
    name: "bridge",
    args: [
      "run",
      ...bridgePermissions(broker.host, broker.port, [configPath, ...files]),
      MAIN,
      "bridge",
      "--config",
      configPath,
      "--mqtt",
      values.mqtt!,
      ...opt("--username", values["mqtt-username"]),
      ...opt("--password-file", values["mqtt-password-file"]),
      ...opt("--ca-file", values["mqtt-ca-file"]),
    ],
  };
}

export function main(args: string[]): Promise<number> {
  return runCommand(spec, async () => {
    const { values, help } = parseCommand(spec, args);
    if (help) return 0;
    const duration = numberOption(values.duration, "duration", { min: 0 });
    for (const o of ["mqtt-username", "mqtt-password-file", "mqtt-ca-file"]) {
      if (values[o] !== undefined && values.mqtt === undefined) {
        throw new UsageError(`--${o} is for the bridge: give --mqtt URL too`);
      }
    }
    const config = await loadCommandConfig(values.config);
    // Children get read access to exactly this file, so name it absolutely.
    const configPath = Deno.realPathSync(config.file);
    const say = (s: string) => console.error(`start: ${s}`);
    await ensureLibrary(say);
    const runDir = openRunDir(values["run-dir"]);
    const logDir = values["log-dir"] ?? `${Deno.cwd()}/logs`;

    const ffi = `--allow-ffi=${LIBRARY}`;
    const env = `--allow-env=${ENV_VARS}`;
    const read = `--allow-read=${configPath}`;
    const quiet = "--ignore-env=LOG_TOKENS,LOG_STREAM";
    const v8 = HOT_V8_FLAGS;
    const children: ChildSpec[] = [];
    if (!values["no-logger"]) {
      children.push({
        name: "logger",
        socket: loggerSocket(runDir),
        args: [
          "run",
          ffi,
          env,
          quiet,
          // The config (copied next to the logs) and the host name for the log headers.
          `--allow-read=${configPath},/etc/hostname`,
          `--allow-write=${logDir}`,
          MAIN,
          "logger",
          "--config",
          configPath,
          "--log-dir",
          logDir,
        ],
      });
    }
    for (const source of config.sources) {
      // A source over MQTT reads its broker password (a file the config names).
      const password = source.mqtt?.passwordFile;
      children.push({
        name: `decom[${source.name}]`,
        socket: decomSocket(runDir, source.name),
        args: [
          "run",
          v8,
          ffi,
          env,
          quiet,
          password ? `${read},${password}` : read,
          MAIN,
          "decom",
          "--config",
          configPath,
          "--source",
          source.name,
        ],
      });
    }
    children.push({
      name: "broker",
      socket: brokerSocket(runDir),
      args: ["run", v8, ffi, env, quiet, read, MAIN, "broker", "--config", configPath],
    });
    if (!values["no-dashboard"]) {
      const listen = parseListen(values["dashboard-listen"]);
      const layouts = `${configPath.slice(0, configPath.lastIndexOf("/"))}/layouts`;
      children.push({
        name: "dashboard",
        args: [
          "run",
          ...servePermissions(configPath, layouts, listen),
          MAIN,
          "dashboard",
          "--config",
          configPath,
          ...(values["dashboard-listen"] ? ["--listen", values["dashboard-listen"]] : []),
        ],
      });
    }
    if (values.mqtt !== undefined) children.push(bridgeChild(values, configPath));
    const udp = config.sources.filter((s) => s.kind === "udp");
    const tcp = config.sources.filter((s) => s.kind === "tcp");
    if (!values["no-sim"] && udp.length + tcp.length === 0) {
      say(
        "no UDP or TCP source in this config: not starting the simulator" +
          (config.sources.some((s) => s.kind === "serial")
            ? ` (a serial source: \`deno task sim --serial SOURCE=DEV\` writes to the other end of a PTY pair, see docs/config.md)`
            : ""),
      );
    } else if (!values["no-sim"]) {
      const hosts = [
        ...new Set(udp.map((s) => s.bind === "0.0.0.0" ? "127.0.0.1" : s.bind)),
      ];
      children.push({
        name: "sim",
        args: [
          "run",
          read,
          // node:dgram binds to 0.0.0.0 first; TCP streams are written by the native library.
          ...(udp.length ? [`--allow-net=0.0.0.0,${hosts.join(",")}`] : []),
          ...(tcp.length ? [ffi, env] : []),
          quiet,
          MAIN,
          "sim",
          "--config",
          configPath,
        ],
      });
    }

    // Another pipeline on this run directory would lose its sockets to this one (and its
    // ports to this one's decoms): refuse before starting anything.
    const ours = children.flatMap((c) => c.socket ? [c.socket] : []);
    const live = ours.find(answers);
    if (live) {
      throw new UserError(
        `a pipeline is already running in ${runDir} (${live} answers): stop it first, or ` +
          "give this one its own run directory with --run-dir DIR (or GSW_RUN_DIR)",
      );
    }

    const useView = !values["no-view"] && Deno.stdout.isTerminal();
    let view: LiveView | null = null;
    const onLine = (line: LogLine) => {
      // Children name themselves on each line ("decom[vehicle]: …"); prefix only the rest.
      const named = line.text.startsWith(`${line.from}:`) ? { ...line, from: "" } : line;
      if (view) view.log(named);
      else console.error(named.from ? `${named.from}: ${named.text}` : named.text);
    };
    let stop!: (why: string) => void;
    const stopped = new Promise<string>((resolve) => stop = resolve);
    // "deno" from PATH, which --allow-run=deno permits (Deno.execPath() is the resolved
    // binary, which that permission does not name).
    const supervisor = new Supervisor(
      "deno",
      // Children's output is shown prefixed (or inside the view): no colour codes in it.
      { GSW_RUN_DIR: runDir, NO_COLOR: "1" },
      onLine,
      (why) => stop(why),
    );

    say(`pipeline "${config.name}" in run directory ${runDir}; logs in ${logDir}`);
    const onSignal = () => stop("interrupted");
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
    // Each part may start in any order, but starting each once the one it feeds is listening
    // keeps the first seconds free of "not running yet" messages and of lost first packets.
    let early: string | undefined;
    stopped.then((why) => early = why);
    for (const c of children) {
      supervisor.start(c);
      if (c.socket) await socketAppears(c.socket, 10_000, () => early !== undefined);
      if (early !== undefined) break;
    }
    const timer = duration !== undefined
      ? setTimeout(() => stop(`--duration ${duration} s reached`), duration * 1000)
      : undefined;
    if (useView) {
      const { LiveView } = await import("./view.ts");
      view = new LiveView(config, runDir);
      view.start();
    }

    const why = await stopped;
    if (timer !== undefined) clearTimeout(timer);
    view?.close();
    view = null;
    say(`${why}: stopping ${supervisor.stopOrder().join(", ")}`);
    await supervisor.stop();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    // A child that had to be killed could not remove its socket: remove it for it, if nothing
    // answers there (a socket another process serves is not ours to remove).
    const removed = ours.filter((path) => {
      try {
        return !answers(path) && unlinkPath(path);
      } catch {
        return false;
      }
    });
    if (removed.length > 0) say(`removed sockets left by killed processes: ${removed.join(", ")}`);
    say("stopped");
    if (supervisor.fatal) throw new UserError(supervisor.fatal);
    return 0;
  });
}
