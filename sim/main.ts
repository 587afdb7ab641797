/**
 * `sim`: sends simulated telemetry for every packet type of a vehicle config: over UDP to UDP
 * sources, framed over TCP (or a serial line given with `--serial`) to stream sources.
 */
import { createSocket, type Socket } from "node:dgram";
import { isIP } from "node:net";
import {
  type CommandSpec,
  numberOption,
  parseCommand,
  runCommand,
  UserError,
} from "../cli/args.ts";
import { DEFAULT_CONFIG_PATH, loadConfig } from "../config/load.ts";
import { type Config, ConfigError, type Packet } from "../config/types.ts";
import { createSimState, flightProfile, makePacket, PHASES } from "./generate.ts";
import { sleep } from "../cli/sleep.ts";
import { type TargetOption, targetOptions } from "../logger/replay_streams.ts";
import { SimStreams } from "./streams.ts";
import { GswError } from "../ffi/mod.ts";

const SPEC: CommandSpec = {
  name: "sim",
  usage:
    "sim [--config FILE] [--host H] [--duration S] [--rate-scale X] [--seed N] [--count N] [--serial [SOURCE=]DEV]",
  help: `
Sends simulated telemetry for every packet type of a vehicle config, each at its rate_hz (1 Hz
for packets without one): a repeating ~3-minute flight (pad, boost, coast, apogee, drogue, main,
landed) for altitude/velocity/acceleration-like measurements, sines within the limits, counters,
toggling flags. Runs until Ctrl-C, SIGTERM, --duration or --count.

Packets of UDP sources go as datagrams. Packets of TCP sources are framed as the source's
framing says and sent over TCP: to the address decom listens on (connecting again whenever decom
restarts), or from a listener at the address decom connects to. A serial source needs
--serial: its packets are written, framed, at its line settings.

Options:
  --config FILE     vehicle config (default: examples/rocket.yaml)
  --host H          where to send UDP datagrams (default: each source's bind address, or
                    127.0.0.1 when it binds all addresses)
  --duration S      stop after S seconds
  --rate-scale X    multiply every packet rate by X (e.g. 10 for a load test)
  --seed N          random seed for the noise (default 1), so runs can be repeated
  --count N         stop after sending N packets of each type
  --serial [SOURCE=]DEV
                    write a serial source's packets to DEV (the other end of a PTY pair whose
                    end decom opens, e.g. from socat; see docs/config.md); repeatable, SOURCE=
                    may be left out when the config has one stream source

Examples:
  deno task sim
  deno task sim --config vehicles/payload.yaml --rate-scale 5 --duration 60
  deno task sim --count 100 --host 127.0.0.1
  deno task sim --config radio.yaml --serial radio=/dev/pts/7`,
  options: {
    config: { type: "string" },
    host: { type: "string" },
    duration: { type: "string" },
    "rate-scale": { type: "string" },
    seed: { type: "string" },
    count: { type: "string" },
    serial: { type: "string", multiple: true },
  },
};

/** Seconds between status lines on a terminal. */
const STATUS_INTERVAL = 3;
/** How long stream writes still waiting for room at the end may take before they are dropped. */
const FLUSH_MS = 2000;
/** A sender that fell further behind than this skips ahead instead of bursting. */
const MAX_LAG = 1;

interface Target {
  packet: Packet;
  host: string;
  /** The UDP socket, or null for a packet of a stream source (sent through `streams`). */
  socket: Socket | null;
  /** Seconds between sends. */
  period: number;
  /** When the next send is due, in seconds since the start. */
  due: number;
  sent: number;
}

export async function main(args: string[]): Promise<number> {
  return await runCommand(SPEC, async () => {
    const { values, help } = parseCommand(SPEC, args);
    if (help) return 0;
    const duration = numberOption(values.duration, "duration", { min: 0 });
    const rateScale = numberOption(values["rate-scale"], "rate-scale", { min: 1e-6 }) ?? 1;
    const seed = numberOption(values.seed, "seed", { min: 0, max: 2 ** 32 - 1, integer: true });
    const count = numberOption(values.count, "count", { min: 1, integer: true });
    const file: string = values.config ?? DEFAULT_CONFIG_PATH;
    let config: Config;
    try {
      config = await loadConfig(file);
    } catch (e) {
      if (e instanceof ConfigError) throw new UserError(`cannot simulate:\n${e.message}`);
      throw e;
    }
    const serial = targetOptions({ serial: values.serial as string[] | undefined });
    try {
      return await simulate(config, {
        host: values.host,
        duration,
        rateScale,
        seed,
        count,
        serial,
      });
    } catch (e) {
      // A device or address that cannot be opened (in use, absent): its message says which.
      if (e instanceof GswError) throw new UserError(e.message);
      throw e;
    }
  });
}

async function simulate(
  config: Config,
  opts: {
    host?: string;
    duration?: number;
    rateScale: number;
    seed?: number;
    count?: number;
    serial: TargetOption[];
  },
): Promise<number> {
  const state = createSimState(config, opts.seed ?? 1);
  const sockets = new Map<string, Socket>();
  using streams = SimStreams.open(config, opts.serial, (line) => console.log(line));
  const targets: Target[] = [];
  for (const source of config.sources) {
    if (source.kind === "mqtt") {
      console.log(`sim: mqtt source "${source.name}" skipped: its packets come from a broker`);
      continue;
    }
    if (source.stream && !streams.has(source.name)) continue; // said by SimStreams
    const host = opts.host ?? sendAddress(source.bind);
    let socket: Socket | null = null;
    if (!source.stream) {
      const family = isIP(host) === 6 ? "udp6" : "udp4";
      socket = sockets.get(family) ?? createSocket(family);
      sockets.set(family, socket);
    }
    for (const i of source.packets) {
      const packet = config.packets[i];
      const period = 1 / ((packet.expectedRateHz ?? 1) * opts.rateScale);
      targets.push({ packet, host, socket, period, due: 0, sent: 0 });
    }
  }
  if (targets.length === 0) {
    throw new UserError(`nothing to simulate in ${config.file}: no UDP, TCP or --serial source`);
  }

  const stop = new AbortController();
  let failure: Error | undefined;
  // Stream writes still waiting for room are given up at a signal, or FLUSH_MS after the end.
  const writes = new AbortController();
  const onSignal = () => {
    stop.abort();
    writes.abort();
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  for (const socket of sockets.values()) {
    socket.on("error", (e: Error) => {
      failure = e;
      stop.abort();
    });
  }

  const tty = Deno.stdout.isTerminal();
  const udp = targets.filter((t) => t.socket);
  const hosts = [...new Set(udp.map((t) => t.host))].join(", ");
  const ports = [...new Set(udp.map((t) => t.packet.port))].join(", ");
  const where = [
    ...(udp.length ? [`${hosts} (ports ${ports})`] : []),
    ...streams.describe(),
  ].join(", ");
  console.log(
    `sim: ${config.name}: ${targets.length} packet types to ${where} at ` +
      `${opts.rateScale}× rate${tty ? "; Ctrl-C to stop" : ""}`,
  );
  const started = performance.now();
  let nextStatus = STATUS_INTERVAL;
  let total = 0;
  try {
    while (!stop.signal.aborted) {
      const now = (performance.now() - started) / 1000;
      if (opts.duration !== undefined && now >= opts.duration) break;
      const sends: Promise<void>[] = [];
      for (const t of targets) {
        if (now - t.due > MAX_LAG) t.due = now;
        while (t.due <= now && (opts.count === undefined || t.sent < opts.count)) {
          const bytes = makePacket(config, t.packet, t.due, state);
          if (t.socket) sends.push(send(t.socket, bytes, t.packet.port, t.host));
          else streams.send(t.packet.source, bytes, writes.signal);
          total++;
          t.sent++;
          t.due += t.period;
        }
      }
      // Waiting for this batch's sends keeps a fast rate from queueing without bound.
      await Promise.all(sends);
      const failed = streams.failed();
      if (failed) throw failed;
      if (opts.count !== undefined && targets.every((t) => t.sent >= opts.count!)) break;
      if (tty && now >= nextStatus) {
        nextStatus += STATUS_INTERVAL;
        const f = flightProfile(now);
        console.log(
          `sim: ${now.toFixed(0)} s, ${total - streams.unsent} packets ` +
            `(${((total - streams.unsent) / now).toFixed(0)}/s), ` +
            `flight ${PHASES[f.phase]}, altitude ${f.altitude.toFixed(0)} m`,
        );
      }
      const pending = targets.filter((t) => opts.count === undefined || t.sent < opts.count!);
      const wake = Math.min(...pending.map((t) => t.due), opts.duration ?? Infinity);
      const wait = wake - (performance.now() - started) / 1000;
      await sleep(Math.max(0, wait * 1000), stop.signal);
    }
  } catch (e) {
    failure ??= e as Error;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    for (const socket of sockets.values()) socket.close();
  }
  if (!failure) {
    const giveUp = setTimeout(() => writes.abort(), FLUSH_MS);
    await streams.flush();
    clearTimeout(giveUp);
    failure = streams.failed();
  }
  if (failure) throw new UserError(`sending failed: ${failure.message}`);
  const elapsed = (performance.now() - started) / 1000;
  for (const line of streams.summary()) console.log(line);
  console.log(`sim: sent ${total - streams.unsent} packets in ${elapsed.toFixed(1)} s`);
  return 0;
}

/** A wildcard bind address receives on every local address; send to loopback then. */
function sendAddress(bind: string): string {
  if (bind === "0.0.0.0") return "127.0.0.1";
  if (bind === "::") return "::1";
  return bind;
}

function send(socket: Socket, bytes: Uint8Array, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.send(bytes, port, host, (err) => (err ? reject(err) : resolve()));
  });
}
