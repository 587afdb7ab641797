/**
 * `gsw subscribe`: prints every new value of the named measurements as it arrives, for people
 * (aligned text) or programs (JSON lines). A dedicated process, so it blocks synchronously on
 * one waitset (doorbells, broker connections, signals) and wakes at native speed.
 */
import { numberOption, parseCommand, runCommand, UsageError, UserError } from "../cli/args.ts";
import { resolveRunDir } from "../control/rundir.ts";
import { MIN_RATE_HZ } from "../control/protocol.ts";
import { GswError, takeSignals, watchSignals } from "../ffi/mod.ts";

const STOP_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
import { noBrokerMessage, SubscribeError } from "../lib/errors.ts";
import { type LinkStatus, subscribe, type Subscription, WOKEN } from "../lib/subscription.ts";
import { subscribeWhenReady } from "../lib/wait.ts";
import { jsonLine, textLine } from "./format.ts";

const spec = {
  name: "subscribe",
  usage:
    "subscribe NAME… [--json] [--rate HZ] [--count N] [--timeout S] [--wait] [--run-dir DIR] [--config FILE]",
  help: `
Prints each new value of the named measurements (config keys or names) as the broker
delivers it: receive time (UTC, µs), name, engineering value with its unit, the limit state
when outside limits, and how many updates were skipped when the terminal (or pipe) could
not keep up or --rate held them back. Keeps running, and resumes by itself when the broker
restarts, until Ctrl-C (exit 0), --count, or --timeout.

options:
  --json          one JSON object per line: measurement, name, value, raw, unit, seq,
                  timestamp_ns (exact integer), time, skipped (+ limit, stale); 64-bit
                  integers are exact JSON numbers (see docs/library.md)
  --rate HZ       at most HZ updates per second per measurement (the newest is sent)
  --count N       exit 0 after N updates
  --timeout S     exit 1 if S seconds pass without an update (from start, or since the last)
  --wait          if no broker is running yet, wait for one instead of exiting 1
  --run-dir DIR   directory of the broker sockets (default: $GSW_RUN_DIR, else
                  $XDG_RUNTIME_DIR/gsw, else /tmp/gsw-<uid>)
  --config FILE   config to check names against when no broker is running (default: the
                  embedded example config); the broker's own config is used otherwise
  -h, --help      this help

exit status: 0 done (Ctrl-C, SIGTERM, --count), 1 no broker / unknown measurement /
--timeout / broker refused, 2 bad arguments.

examples:
  deno task subscribe ALTITUDE VELOCITY
  deno task subscribe ALTITUDE --json --count 10
  deno task subscribe BATT_VOLTAGE --rate 2 --timeout 5`,
  options: {
    json: { type: "boolean" },
    rate: { type: "string" },
    count: { type: "string" },
    timeout: { type: "string" },
    wait: { type: "boolean" },
    "run-dir": { type: "string" },
    config: { type: "string" },
  },
  positionals: true,
} as const;

const encoder = new TextEncoder();

/** Writes one line now (no buffering: the reader may be a live pipe). False if it closed. */
function writeLine(line: string): boolean {
  const bytes = encoder.encode(line + "\n");
  try {
    for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) return false;
    throw e;
  }
  return true;
}

function status(line: string): void {
  console.error(`gsw subscribe: ${line}`);
}

/**
 * With no broker to ask, checks the names against a config so a typo still gets its
 * did-you-mean. Returns the line to print, or undefined when every name is known (or no
 * config can be read: then "no broker" is the whole story).
 */
async function unknownFromConfig(
  names: string[],
  configFlag: string | undefined,
): Promise<string | undefined> {
  // Loaded only here: the YAML parser is not needed while a broker answers.
  const { DEFAULT_CONFIG_PATH, findMeasurement, loadConfig, suggestMeasurement } = await import(
    "../config/mod.ts"
  );
  const path = configFlag ?? DEFAULT_CONFIG_PATH;
  if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") {
    if (configFlag) throw new UserError(`cannot read ${path}: run with --allow-read=${path}`);
    return undefined;
  }
  let config;
  try {
    config = await loadConfig(path);
  } catch (e) {
    if (configFlag) throw new UserError(`cannot use --config ${path}: ${(e as Error).message}`);
    return undefined;
  }
  for (const name of names) {
    if (findMeasurement(config, name)) continue;
    const s = suggestMeasurement(config, name);
    const which = configFlag ? path : `the default config (${path}; choose another with --config)`;
    return `no measurement "${name}" in ${which}${s ? `; did you mean "${s}"?` : ""}`;
  }
  return undefined;
}

export async function main(args: string[]): Promise<number> {
  return await runCommand(spec, async () => {
    const { values, positionals: names, help } = parseCommand(spec, args);
    if (help) return 0;
    if (names.length === 0) throw new UsageError("name at least one measurement");
    const rate = numberOption(values.rate, "rate", { min: MIN_RATE_HZ, max: 1e9 });
    const count = numberOption(values.count, "count", { integer: true, min: 1 });
    const timeoutS = numberOption(values.timeout, "timeout", { min: 0.001, max: 1e6 });
    const json: boolean = values.json ?? false;
    const runDir = resolveRunDir(values["run-dir"]);

    let sub: Subscription;
    const options = {
      runDir,
      maxRateHz: rate,
      client: "subscribe",
      onStatus: (s: LinkStatus) => status(`${s.message} (${s.broker})`),
      onWaiting: status,
    };
    // Ctrl-C while --wait waits for a broker ends it like Ctrl-C later: exit 0. (Deno's own
    // listeners while Deno's event loop runs; the native watch below once the loop is ours.)
    const interrupt = new AbortController();
    const onSignal = () => interrupt.abort();
    for (const sig of STOP_SIGNALS) Deno.addSignalListener(sig, onSignal);
    try {
      sub = values.wait
        ? await subscribeWhenReady(names, { ...options, signal: interrupt.signal })
        : subscribe(names, options);
    } catch (e) {
      if (interrupt.signal.aborted) return 0;
      if (e instanceof SubscribeError) {
        if (e.code === "no-broker") {
          const unknown = await unknownFromConfig(names, values.config);
          if (unknown) throw new UserError(unknown);
          throw new UserError(noBrokerMessage(e.path));
        }
        throw new UserError(e.message);
      }
      if (e instanceof GswError) throw new UserError(e.message);
      throw e;
    } finally {
      for (const sig of STOP_SIGNALS) Deno.removeSignalListener(sig, onSignal);
    }

    try {
      sub.watchFd(watchSignals());
      const width = Math.max(...sub.measurements.map((m) => m.name.length));
      const idleMs = timeoutS === undefined ? -1 : Math.round(timeoutS * 1000);
      let printed = 0;
      let lastUpdate = performance.now();
      while (count === undefined || printed < count) {
        const waitMs = idleMs < 0 ? -1 : Math.max(0, lastUpdate + idleMs - performance.now());
        let got;
        try {
          got = sub.nextOrWake(Math.ceil(waitMs));
        } catch (e) {
          if (e instanceof SubscribeError) throw new UserError(e.message);
          throw e;
        }
        if (got === WOKEN) {
          if (takeSignals().length > 0) return 0;
          continue;
        }
        if (got === undefined) {
          if (sub.closed) return 1;
          if (performance.now() - lastUpdate < idleMs) continue;
          throw new UserError(
            `no update of ${names.join(", ")} within ${timeoutS} s${
              sub.connected ? "" : " (the broker is away)"
            }`,
          );
        }
        lastUpdate = performance.now();
        const m = sub.describe(got.measurement)!;
        if (!writeLine(json ? jsonLine(got, m) : textLine(got, m, width))) return 0;
        printed++;
      }
      return 0;
    } finally {
      sub.close();
    }
  });
}
