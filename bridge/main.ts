/**
 * `gsw bridge`: publishes every datagram decom receives, and its decoded values, to an MQTT
 * broker, so other machines (a second gsw, the Go ground software's web UI, COSMOS, scripts)
 * see the flight live. Run by hand it restarts itself with exactly the permissions it needs:
 * the network for the broker's host and port only.
 */
import { numberOption, parseCommand, runCommand, UsageError, UserError } from "../cli/args.ts";
import { followParent, LIBRARY, PARENT_OPTION, relaunch } from "../cli/relaunch.ts";
import { readPasswordEnv, readPasswordFile } from "../cli/secrets.ts";
import { loadCommandConfig } from "../cli/service.ts";
import { DEFAULT_CONFIG_PATH } from "../config/mod.ts";
import { DEFAULT_PREFIX, parseMqttUrl, topicLevelProblem } from "../config/mqtt.ts";
import { openRunDir } from "../control/rundir.ts";
import { type Layout, LAYOUTS } from "./payload.ts";

/** Default bound of the outgoing queue. */
export const DEFAULT_QUEUE_BYTES = 64 << 20;
/** Default QoS 1 messages awaiting the broker's acknowledgement. */
export const DEFAULT_MAX_INFLIGHT = 1000;
/** A stop that takes longer than this (it never should: close() is bounded) exits anyway. */
const STOP_DEADLINE_MS = 10_000;

const spec = {
  name: "bridge",
  usage: "bridge --mqtt URL [--config FILE] [--layout gsw|rit] [--prefix P] [--vehicle NAME] " +
    "[--qos 0|1] [--queue MIB] [--username U --password-file F|--password-env VAR] [--ca-file F]",
  help: `
Publishes to an MQTT broker (mosquitto, or any MQTT 3.1.1 broker) every datagram decom
receives and its decoded values, so other machines see the flight live: another gsw (a
"type: mqtt" source decodes, logs and shows exactly what this one received), the Go ground
software's web UI (--layout rit), or any MQTT client. It reads decom's packet ring, so it never
slows decom; a slow or absent broker fills a bounded queue, and what does not fit is dropped
and counted (bridge.dropped in the health message and the logs). It reconnects by itself.

topics (layout gsw, the default; P = --prefix, V = --vehicle):
  P/V/raw/SOURCE/PACKET  every datagram, binary (docs/mqtt.md); PACKET is _unknown when
                         decom did not identify it
  P/V/PACKET             its values: {"t": s, "t_ns": ns, "seq": n, "source": s,
                         "values": {"NAME": value, ...}}
  P/V/latest/NAME        with --retain-latest: the newest value, retained
  P/V/bridge/health      every --health-interval: sent, dropped, queue, connected ...
layout rit: P/PACKET/NAME with the bare value as JSON, as the Go ground software publishes.

options:
  --mqtt URL            the broker: mqtt://HOST:PORT (default port 1883) or mqtts://HOST:PORT
                        (TLS, default port 8883; see --ca-file)
  --config FILE         vehicle config (default ${DEFAULT_CONFIG_PATH})
  --layout gsw|rit      topics and payloads (default gsw)
  --prefix P            first topic level (default ${DEFAULT_PREFIX}); teams sharing a broker
                        use different --vehicle names or prefixes
  --vehicle NAME        second topic level (default: the config's name)
  --no-raw              gsw layout: do not publish raw datagrams
  --no-values           gsw layout: do not publish decoded values
  --retain-latest HZ    also publish each measurement's newest value, retained, at most HZ
                        times a second (default off)
  --qos 0|1             0 (default): fastest; 1: the broker acknowledges every message, and
                        nothing is lost uncounted across a reconnection
  --max-inflight N      QoS 1 messages awaiting acknowledgement at once (default ${DEFAULT_MAX_INFLIGHT})
  --queue MIB           the outgoing queue's bound, 1-4096 (default ${DEFAULT_QUEUE_BYTES >> 20})
  --username U          log in as U
  --password-file F     the password is the first line of F
  --password-env VAR    the password is in environment variable VAR
  --ca-file F           PEM certificate authority for mqtts:// (default: the system's)
  --client-id ID        MQTT client id (default gsw-bridge-<vehicle>-<pid>)
  --source NAME         only this source (repeatable; default every source)
  --health-interval S   seconds between health messages (default 1)
  --run-dir DIR         directory of gsw's control sockets
  -h, --help            this help

examples:
  deno task bridge --mqtt mqtt://127.0.0.1:1883
  deno task bridge --mqtt mqtt://192.168.1.10 --layout rit
  deno task bridge --mqtt mqtts://broker.example.org --username pad --password-file ~/.mqtt-pass`,
  options: {
    mqtt: { type: "string" },
    config: { type: "string" },
    layout: { type: "string" },
    prefix: { type: "string" },
    vehicle: { type: "string" },
    "no-raw": { type: "boolean" },
    "no-values": { type: "boolean" },
    "retain-latest": { type: "string" },
    qos: { type: "string" },
    "max-inflight": { type: "string" },
    queue: { type: "string" },
    username: { type: "string" },
    "password-file": { type: "string" },
    "password-env": { type: "string" },
    "ca-file": { type: "string" },
    "client-id": { type: "string" },
    source: { type: "string", multiple: true },
    "health-interval": { type: "string" },
    "run-dir": { type: "string" },
    ...PARENT_OPTION,
  },
} as const;

/**
 * Variables the MQTT client's npm dependencies look up at load; ignored (as unset) rather than
 * granted, so the bridge reads no environment beyond its own.
 */
export const IGNORED_ENV = [
  "LOG_TOKENS",
  "LOG_STREAM",
  "READABLE_STREAM",
  "DEBUG",
  "MQTTJS_SOCKS_PROXY",
  "NODE_DEBUG",
  "WS_NO_BUFFER_UTIL",
  "WS_NO_UTF_8_VALIDATE",
];

/**
 * The permissions of the bridge proper: its broker's host and port, the library, the run
 * directory's variables (and the password's, if named), and reading the files it was given.
 */
export function bridgePermissions(
  host: string,
  port: number,
  files: string[],
  passwordEnv?: string,
): string[] {
  const net = `${host.includes(":") ? `[${host}]` : host}:${port}`;
  return [
    `--allow-ffi=${LIBRARY}`,
    `--allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR${passwordEnv ? `,${passwordEnv}` : ""}`,
    `--ignore-env=${IGNORED_ENV.join(",")}`,
    `--allow-read=${files.join(",")}`,
    `--allow-net=${net}`,
  ];
}

export function main(args: string[]): Promise<number> {
  return runCommand(spec, async () => {
    const { values, help } = parseCommand(spec, args);
    if (help) return 0;
    if (values.mqtt === undefined) {
      throw new UsageError("--mqtt URL is required, e.g. --mqtt mqtt://127.0.0.1:1883");
    }
    const broker = parseMqttUrl(values.mqtt);
    if (typeof broker === "string") throw new UsageError(`--mqtt: ${broker}`);
    const layout = (values.layout ?? "gsw") as Layout;
    if (!LAYOUTS.includes(layout)) {
      throw new UsageError(`--layout takes ${LAYOUTS.join(" or ")}, not "${values.layout}"`);
    }
    const qos = numberOption(values.qos, "qos", { integer: true, min: 0, max: 1 }) ?? 0;
    const maxInflight = numberOption(values["max-inflight"], "max-inflight", {
      integer: true,
      min: 1,
      max: 65535,
    }) ?? DEFAULT_MAX_INFLIGHT;
    const queueMib = numberOption(values.queue, "queue", { min: 1 / 1024, max: 4096 }) ??
      DEFAULT_QUEUE_BYTES / (1 << 20);
    const latestHz = numberOption(values["retain-latest"], "retain-latest", {
      min: 0.01,
      max: 1000,
    }) ?? 0;
    const healthInterval =
      numberOption(values["health-interval"], "health-interval", { min: 0.05, max: 3600 }) ?? 1;
    if (values["password-file"] !== undefined && values["password-env"] !== undefined) {
      throw new UsageError("give --password-file or --password-env, not both");
    }
    const passwordEnv: string | undefined = values["password-env"];
    if (passwordEnv !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(passwordEnv)) {
      throw new UsageError(`--password-env takes a variable name, not "${passwordEnv}"`);
    }
    const config = await loadCommandConfig(values.config);
    const prefix: string = values.prefix ?? DEFAULT_PREFIX;
    const vehicle: string = values.vehicle ?? config.name;
    for (const [what, level] of [["--prefix", prefix], ["--vehicle", vehicle]]) {
      const bad = topicLevelProblem(level);
      if (bad) {
        throw new UsageError(
          `${what} "${level}" ${bad}${
            what === "--vehicle" && values.vehicle === undefined
              ? " (it is the config's name): give --vehicle NAME"
              : ""
          }`,
        );
      }
    }
    for (const name of values.source ?? []) {
      if (!config.sources.some((s) => s.name === name)) {
        throw new UsageError(
          `config "${config.name}" has no source "${name}" (sources: ${
            config.sources.map((s) => s.name).join(", ")
          })`,
        );
      }
    }
    const net = `${broker.host.includes(":") ? `[${broker.host}]` : broker.host}:${broker.port}`;
    if (Deno.permissions.querySync({ name: "net", host: net }).state !== "granted") {
      // Run by hand (`deno task bridge`): again, with the network for the broker only.
      return await relaunch(
        "bridge",
        args,
        bridgePermissions(
          broker.host,
          broker.port,
          [
            Deno.realPathSync(config.file),
            ...[values["password-file"], values["ca-file"]].filter((f) => f !== undefined),
          ],
          passwordEnv,
        ),
        "network access to its broker",
      );
    }
    if (!followParent(values.parent)) return 1;
    const password = values["password-file"] !== undefined
      ? await readPasswordFile(values["password-file"], "--password-file")
      : passwordEnv !== undefined
      ? readPasswordEnv(passwordEnv, "--password-env")
      : undefined;
    if (password && values.username === undefined) {
      throw new UsageError("a password needs --username too");
    }
    let ca: Uint8Array | undefined;
    if (values["ca-file"] !== undefined) {
      if (!broker.tls) throw new UsageError("--ca-file is for mqtts:// brokers");
      try {
        ca = await Deno.readFile(values["ca-file"]);
      } catch (e) {
        throw new UserError(`--ca-file: cannot read ${values["ca-file"]}: ${(e as Error).message}`);
      }
    }
    const { Bridge, BrokerRefused } = await import("./bridge.ts");
    const log = (line: string) => console.error(`bridge: ${line}`);
    const runDir = openRunDir(values["run-dir"]);
    const bridge = new Bridge({
      config,
      runDir,
      url: `${broker.tls ? "mqtts" : "mqtt"}://${net}`,
      clientId: values["client-id"] ?? `gsw-bridge-${vehicle}-${Deno.pid}`,
      username: values.username,
      password,
      ca,
      payload: {
        layout,
        prefix,
        vehicle,
        raw: !values["no-raw"],
        values: !values["no-values"],
      },
      qos: qos as 0 | 1,
      maxInflight,
      queueBytes: Math.round(queueMib * (1 << 20)),
      latestHz,
      healthInterval,
      sources: values.source,
      log,
    });
    const what = layout === "rit"
      ? `${prefix}/<packet>/<measurement> (Go ground software layout)`
      : `${prefix}/${vehicle}/...`;
    log(`publishing ${what} to ${values.mqtt} at QoS ${qos}`);
    const stop = new Promise<string>((resolve) => {
      for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
        Deno.addSignalListener(s, () => resolve(s));
      }
    });
    const refused = bridge.firstConnection.then(() => new Promise<never>(() => {}));
    const running = bridge.run();
    try {
      const signal = await Promise.race([stop, refused]);
      log(`${signal}: stopping`);
      // close() is bounded; this is the promise that a stop never hangs, whatever hangs inside.
      const watchdog = setTimeout(() => {
        log(`still stopping ${STOP_DEADLINE_MS / 1000} s later: exiting now; ${bridge.summary()}`);
        Deno.exit(1);
      }, STOP_DEADLINE_MS);
      Deno.unrefTimer(watchdog);
    } catch (e) {
      if (!(e instanceof BrokerRefused)) throw e;
      await bridge.close(0);
      await running;
      throw new UserError(`${values.mqtt}: ${e.message}`);
    }
    await bridge.close();
    await running;
    log(bridge.summary());
    return 0;
  });
}
