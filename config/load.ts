/**
 * Turns a vehicle config file (YAML) into the validated `Config` model, reporting every problem
 * in the file at once with its line and column. The format is documented in docs/config.md.
 */
import { createHash } from "node:crypto";
import { type Config, ConfigError } from "./types.ts";
import { type Pos, Reader } from "./yaml_reader.ts";
import { DEFAULT_SOURCE, type PacketDef, type SourceDef, TOP_KEYS } from "./defs.ts";
import { readMeasurements } from "./measurements.ts";
import { readSources } from "./sources.ts";
import { topicLevelProblem } from "./mqtt.ts";
import { checkPorts, packetSize, readPackets } from "./packets.ts";
import { build, checkHealthNames } from "./model.ts";

/** Path of the embedded default vehicle config, `examples/rocket.yaml`. */
export const DEFAULT_CONFIG_PATH: string = decodeURIComponent(
  new URL("../examples/rocket.yaml", import.meta.url).pathname,
);

/** Reads and validates the config at `path`; throws `ConfigError` listing every problem. */
export async function loadConfig(path: string): Promise<Config> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    const reason = e instanceof Error ? e.message : String(e);
    throw new ConfigError([{
      file: path,
      line: 1,
      col: 1,
      severity: "error",
      message: `cannot read the config file (${reason}); check the path and permissions`,
    }]);
  }
  return parseConfig(bytes, path);
}

/**
 * Validates config text (or the file's bytes) as if read from `file`, the name diagnostics use.
 * Returns the compiled config, whose `warnings` may be non-empty; throws `ConfigError` on errors.
 */
export function parseConfig(source: string | Uint8Array, file: string): Config {
  const bytes = typeof source === "string" ? new TextEncoder().encode(source) : source;
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError([{
      file,
      line: 1,
      col: 1,
      severity: "error",
      message: "the file is not UTF-8 text; save it as UTF-8",
    }]);
  }
  const r = new Reader(file, text);
  const config = compile(r);
  const diagnostics = r.diagnostics.sort((a, b) => a.line - b.line || a.col - b.col);
  if (!config || diagnostics.some((d) => d.severity === "error")) {
    throw new ConfigError(diagnostics);
  }
  config.hash = createHash("sha256").update(bytes).digest("hex");
  config.warnings = diagnostics;
  return config;
}

function compile(r: Reader): Config | undefined {
  if (r.hasErrors()) return undefined; // YAML syntax errors: the tree is not worth checking.
  const start: Pos = { line: 1, col: 1 };
  if (r.root === null) {
    r.error(
      start,
      "the file is empty; a vehicle config needs name, measurements and telemetry_packets " +
        "(see docs/config.md)",
    );
    return undefined;
  }
  const top = r.map(r.root, "the config", r.pos(r.root));
  if (!top) return undefined;
  r.allowOnly(top, TOP_KEYS, "the config");
  const what = "the config";
  const name = r.string(
    r.require(top, "name", what, start, 'add "name: <vehicle name>" at the top'),
    what,
  );
  const description = r.string(top.get("description"), what);

  const defs = readMeasurements(r, top, start);
  const sources = readSources(r, top);
  const packets = readPackets(r, top, start, defs, sources);
  checkPorts(r, packets);
  checkSyncSizes(r, sources ?? [], packets);

  const sourceList: SourceDef[] = sources ??
    [{ name: DEFAULT_SOURCE, pos: start, kind: "udp", bind: "0.0.0.0" }];
  for (const s of sourceList) {
    const bad = name === undefined ? undefined : topicLevelProblem(name);
    if (s.mqtt && s.mqtt.topic === undefined && bad) {
      r.error(
        s.pos,
        `source "${s.name}": the default topic gsw/<config name>/raw/${s.name}/# cannot be ` +
          `made: the config name "${name}" ${bad}; add "topic: <the raw packet topic filter>"`,
      );
    }
  }
  checkHealthNames(r, defs, sourceList, packets);
  for (const s of sources ?? []) {
    if (!packets.some((p) => p.source === s.name)) {
      r.warning(
        s.pos,
        `source "${s.name}" has no packets; remove it or add "source: ${s.name}" to its packets`,
      );
    }
  }
  for (const d of defs.values()) {
    if (d.sizeProblem) {
      if (d.packets.length > 0) {
        const users = d.packets.map((i) => `"${packets[i].name}"`).join(", ");
        r.error(d.sizeProblem.pos, d.sizeProblem.message.replace("{used}", `packet ${users}`));
      } else {
        r.warning(
          d.sizeProblem.pos,
          d.sizeProblem.message.replace("{used}", "no packet (so it is left out)"),
        );
      }
    } else if (d.size !== undefined && d.type !== undefined && d.packets.length === 0) {
      r.warning(
        d.pos,
        `${d.label} is not in any packet, so it never updates; add it to a packet or remove it`,
      );
    }
  }
  if (r.hasErrors() || name === undefined) return undefined;
  return build(name, description, r.file, defs, packets, sourceList);
}

/** A sync framing carries packets of one size: every packet of the source has it. */
function checkSyncSizes(r: Reader, sources: SourceDef[], packets: PacketDef[]): void {
  for (const s of sources) {
    const f = s.stream?.framing;
    if (f?.kind !== "sync") continue;
    const mine = packets.filter((p) => p.source === s.name);
    const size = f.size ?? (mine.length ? packetSize(mine[0]) : undefined);
    for (const p of mine) {
      if (packetSize(p) !== size) {
        r.error(
          p.pos,
          `packet "${p.name}" is ${packetSize(p)} bytes, but source "${s.name}"'s sync framing ` +
            `carries ${size}-byte packets${
              f.size === undefined ? ` (the size of "${mine[0].name}")` : ""
            }; ` +
            `give them one size, or use a length, cobs or slip framing`,
        );
      }
    }
  }
}
