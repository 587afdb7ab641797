/**
 * `gsw decom`: runs the decommutation process for one data source of a vehicle config.
 */
import { numberOption, parseCommand, runCommand, UsageError } from "../cli/args.ts";
import { loadCommandConfig, runService } from "../cli/service.ts";
import { readPasswordFile } from "../cli/secrets.ts";
import { DEFAULT_CONFIG_PATH } from "../config/mod.ts";
import { openRunDir } from "../control/rundir.ts";
import { Decom, DEFAULT_LOG_BUFFER } from "./decom.ts";
import { DEFAULT_RING_SIZE, MAX_RING_SIZE, MIN_RING_SIZE } from "../ffi/broadcast.ts";

const spec = {
  name: "decom",
  usage:
    "decom [--config FILE] [--source NAME] [--run-dir DIR] [--batch N] [--packet-ring KIB] [--log-buffer MIB]",
  help: `
Receives the telemetry of one data source (UDP; a serial radio or a TCP stream, cut into
packets by its framing; or raw packets over MQTT from another machine's bridge), hands every
packet to the logger, and publishes each measurement to shared-memory channels that brokers attach to. Run one decom
per data source; it keeps publishing whether or not a broker or logger is running.

options:
  --config FILE     vehicle config (default ${DEFAULT_CONFIG_PATH})
  --source NAME     data source to receive (required when the config has several)
  --run-dir DIR     directory for the control sockets (default: $GSW_RUN_DIR, else
                    $XDG_RUNTIME_DIR/gsw, else /tmp/gsw-<uid>)
  --batch N         datagrams per receive call, 1-1024 (default 64)
  --health-interval S  seconds between link-health updates (default 1)
  --packet-ring KIB shared memory for the every-datagram ring that dashboards and bridges
                    read, a power of two from 256 to 1048576 KiB (default 4096: ~4 s of
                    1 MB/s); a reader that falls further behind loses the oldest datagrams
                    (it is told how many; the logger is not affected)
  --log-buffer MIB  memory for raw packets while the logger is away or slow, 1-2048 (default
                    64: about 10 minutes of a 100 kB/s link); beyond it packets are dropped
                    from the log (counted in <source>.drops; <source>.backlog_bytes shows it)
  -h, --help        this help

examples:
  deno task decom
  deno task decom --config vehicle.yaml --source downlink`,
  options: {
    config: { type: "string" },
    source: { type: "string" },
    "run-dir": { type: "string" },
    batch: { type: "string" },
    "health-interval": { type: "string" },
    "packet-ring": { type: "string" },
    "log-buffer": { type: "string" },
  },
} as const;

export function main(args: string[]): Promise<number> {
  return runCommand(spec, async () => {
    const { values, help } = parseCommand(spec, args);
    if (help) return 0;
    const batch = numberOption(values.batch, "batch", { integer: true, min: 1, max: 1024 }) ?? 64;
    const healthInterval =
      numberOption(values["health-interval"], "health-interval", { min: 0.05, max: 3600 }) ?? 1;
    const ringKib = numberOption(values["packet-ring"], "packet-ring", {
      integer: true,
      min: MIN_RING_SIZE >> 10,
      max: MAX_RING_SIZE >> 10,
    }) ?? DEFAULT_RING_SIZE >> 10;
    if ((ringKib & (ringKib - 1)) !== 0) {
      throw new UsageError(`--packet-ring takes a power of two (KiB), not ${ringKib}`);
    }
    const logMib = numberOption(values["log-buffer"], "log-buffer", {
      integer: true,
      min: 1,
      max: 2048,
    }) ?? DEFAULT_LOG_BUFFER >> 20;
    const config = await loadCommandConfig(values.config);
    const names = config.sources.map((s) => s.name);
    let source = config.sources[0];
    if (values.source !== undefined) {
      const found = config.sources.find((s) => s.name === values.source);
      if (!found) {
        throw new UsageError(
          `config "${config.name}" has no source "${values.source}" (sources: ${names.join(", ")})`,
        );
      }
      source = found;
    } else if (config.sources.length > 1) {
      throw new UsageError(
        `config "${config.name}" has ${names.length} sources: choose one with --source (${
          names.join(", ")
        })`,
      );
    }
    const mqttPassword = source.mqtt?.passwordFile === undefined
      ? undefined
      : await readPasswordFile(source.mqtt.passwordFile, `source "${source.name}"`);
    const log = (line: string) => console.error(`decom[${source.name}]: ${line}`);
    return runService(log, () => {
      const runDir = openRunDir(values["run-dir"]);
      return new Decom({
        config,
        source,
        runDir,
        batch,
        healthInterval,
        ringSize: ringKib << 10,
        logBuffer: logMib * 1024 * 1024,
        mqttPassword,
        log,
      });
    });
  });
}
