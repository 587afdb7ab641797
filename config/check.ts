/** `check-config FILE`: validates a vehicle config and prints a summary, or every problem. */
import { type CommandSpec, parseCommand, runCommand, UsageError } from "../cli/args.ts";
import { loadConfig } from "./load.ts";
import { type Config, ConfigError, formatDiagnostic } from "./types.ts";

const SPEC: CommandSpec = {
  name: "check-config",
  usage: "check-config FILE",
  help: `
Validates a vehicle config (YAML) and prints a one-screen summary: sources and ports, packets
with their size and measurement count, and any warnings. When the config has errors, prints
every problem as FILE:LINE:COL: error: MESSAGE, one per line, on stderr.

Exit status: 0 valid (warnings may be printed), 1 the config has errors, 2 bad arguments.
The format is described in docs/config.md.

Examples:
  deno task check-config examples/rocket.yaml
  deno task check-config ../vehicles/payload.yaml`,
  options: {},
  positionals: true,
};

export async function main(args: string[]): Promise<number> {
  return await runCommand(SPEC, async () => {
    const { help, positionals } = parseCommand(SPEC, args);
    if (help) return 0;
    if (positionals.length !== 1) {
      throw new UsageError(
        positionals.length === 0
          ? "which config? give the file to check"
          : `check one file at a time (got ${positionals.length})`,
      );
    }
    try {
      console.log(summarize(await loadConfig(positionals[0])));
      return 0;
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      console.error(e.message);
      const errors = e.diagnostics.filter((d) => d.severity === "error").length;
      const warnings = e.diagnostics.length - errors;
      console.error(
        `${positionals[0]}: ${plural(errors, "error")}, ${plural(warnings, "warning")}`,
      );
      return 1;
    }
  });
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** The one-screen summary printed for a valid config. */
export function summarize(config: Config): string {
  const user = config.measurements.filter((m) => !m.health).length;
  const health = config.measurements.length - user;
  const lines = [
    `${config.name}: valid (${config.file}, sha256 ${config.hash.slice(0, 12)})`,
  ];
  if (config.description) lines.push(`  ${config.description}`);
  lines.push("sources:");
  for (const s of config.sources) {
    const group = s.multicast ? `  multicast ${s.multicast}` : "";
    const ports = `ports ${s.ports.join(", ") || "none"}`;
    const st = s.stream;
    const framing = st ? `${st.framing.kind} framing, CRC ${st.framing.crc}` : "";
    lines.push(
      s.mqtt
        ? `  ${s.name}  MQTT ${s.mqtt.url}  topic ${s.mqtt.topic}  QoS ${s.mqtt.qos}  (${ports})`
        : st?.device !== undefined
        ? `  ${s.name}  serial ${st.device}  ${st.baud} baud  ${st.dataBits}${
          st.parity[0].toUpperCase()
        }${st.stopBits}  ${framing}`
        : st
        ? `  ${s.name}  TCP ${st.connect ? "connect" : "listen"} ${
          (st.connect ?? st.listen)!.host
        }:${(st.connect ?? st.listen)!.port}  ${framing}`
        : `  ${s.name}  bind ${s.bind}${group}  ${ports}`,
    );
  }
  lines.push("packets:");
  const rows = config.packets.map((p) => [
    p.name,
    `port ${p.port}`,
    p.apid !== undefined ? `apid ${p.apid}` : p.id ? `id ${p.id.value}` : "",
    plural(p.size, "byte"),
    plural(p.fields.length, "measurement"),
    p.expectedRateHz === undefined ? "" : `${p.expectedRateHz} Hz`,
  ]);
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const row of rows) {
    lines.push(`  ${row.map((cell, i) => cell.padEnd(widths[i])).join("  ").trimEnd()}`);
  }
  lines.push(`measurements: ${user} (+${health} link health)`);
  if (config.warnings.length === 0) lines.push("warnings: none");
  else {
    lines.push(`warnings: ${config.warnings.length}`);
    for (const w of config.warnings) lines.push(`  ${formatDiagnostic(w)}`);
  }
  return lines.join("\n");
}
