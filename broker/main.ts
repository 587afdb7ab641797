/**
 * `gsw broker`: serves a config's measurements (all, or the ones named) to subscribers.
 */
import { numberOption, parseCommand, runCommand, UsageError } from "../cli/args.ts";
import { loadCommandConfig, runService } from "../cli/service.ts";
import {
  DEFAULT_CONFIG_PATH,
  findMeasurement,
  type Measurement,
  suggestMeasurement,
} from "../config/mod.ts";
import { brokerSocket, measurementBrokerSocket, openRunDir } from "../control/rundir.ts";
import { Broker, DEFAULT_DIRECT_WAKES } from "./broker.ts";

const spec = {
  name: "broker",
  usage: "broker [--config FILE] [--measurement NAME]… [--run-dir DIR] [--direct-wakes N]",
  help: `
Attaches to every data source's decom and serves measurements to subscribers over
shared memory: each subscriber gets its own channels and doorbell, so a slow or stopped
subscriber never slows decom or the others.

By default one broker serves every measurement of the config (socket broker.sock). With
--measurement (repeatable) it serves only those, each on its own socket
(broker.m.<KEY>.sock), so you can run one broker per measurement, or split them.

options:
  --config FILE        vehicle config (default ${DEFAULT_CONFIG_PATH}); must be the one
                       decom runs with
  --measurement NAME   serve only this measurement (key or name; repeatable)
  --run-dir DIR        directory for the control sockets (default: $GSW_RUN_DIR, else
                       $XDG_RUNTIME_DIR/gsw, else /tmp/gsw-<uid>)
  --direct-wakes N     subscribers that read decom's memory directly are woken by decom
                       itself, up to N per packet type (default ${DEFAULT_DIRECT_WAKES}); more are woken by
                       this broker (one more hop), so decom's cost stays bounded. 0: the
                       broker wakes them all
  -h, --help           this help

examples:
  deno task broker
  deno task broker --measurement ALTITUDE --measurement VELOCITY`,
  options: {
    config: { type: "string" },
    measurement: { type: "string", multiple: true },
    "run-dir": { type: "string" },
    "direct-wakes": { type: "string" },
  },
} as const;

export function main(args: string[]): Promise<number> {
  return runCommand(spec, async () => {
    const { values, help } = parseCommand(spec, args);
    if (help) return 0;
    const directWakes = numberOption(values["direct-wakes"], "direct-wakes", {
      integer: true,
      min: 0,
      max: 1000,
    }) ?? DEFAULT_DIRECT_WAKES;
    const config = await loadCommandConfig(values.config);
    const names: string[] = values.measurement ?? [];
    const measurements: Measurement[] = [];
    for (const name of names) {
      const m = findMeasurement(config, name);
      if (!m) {
        const s = suggestMeasurement(config, name);
        throw new UsageError(
          `no measurement "${name}" in "${config.name}"${s ? `; did you mean "${s}"?` : ""}`,
        );
      }
      if (!measurements.includes(m)) measurements.push(m);
    }
    const log = (line: string) => console.error(`broker: ${line}`);
    return runService(log, () => {
      const runDir = openRunDir(values["run-dir"]);
      const sockets = measurements.length === 0
        ? [brokerSocket(runDir)]
        : measurements.map((m) => measurementBrokerSocket(runDir, m.key));
      return new Broker({
        config,
        runDir,
        measurements: measurements.length === 0 ? config.measurements : measurements,
        sockets,
        directWakes,
        log,
      });
    });
  });
}
