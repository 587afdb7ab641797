/**
 * The command-line options that shape InfluxDB points, shared by `export --format influx` and
 * `gsw influx` so both take the same words and write the same points.
 */
import { UsageError, UserError } from "../cli/args.ts";
import type { Config } from "../config/types.ts";
import {
  DEFAULT_MEASUREMENT,
  DEFAULT_TAGS,
  LineEncoder,
  LineOptionError,
  type LineOptions,
  measurementProblem,
  parseTags,
} from "./line.ts";

export const LINE_OPTIONS = {
  measurement: { type: "string" },
  tags: { type: "string" },
  unsigned: { type: "string" },
} as const;

/** Their `--help` lines; `prefix` (e.g. "influx: ") says when they apply. */
export function lineOptionsHelp(prefix = ""): string {
  return `  --measurement NAME     ${prefix}the InfluxDB measurement (default ${DEFAULT_MEASUREMENT});
                         {vehicle} (the config's name), {packet} and {source} are filled in
  --tags LIST            ${prefix}tags of every point, comma-separated: source, packet,
                         vehicle, or KEY=VALUE constants (default ${DEFAULT_TAGS}; none: none)
  --unsigned i|u         ${prefix}unsigned integers as integers (i, default: every InfluxDB
                         takes them; a uint64 above 2^63-1 is then left out and counted) or
                         as unsigned integers (u: InfluxDB 2.x and 3.x only)`;
}

/** The options as given (defaults filled in); UsageError naming the option that is wrong. */
export function lineOptions(values: Record<string, unknown>): LineOptions {
  const measurement = (values.measurement as string | undefined) ?? DEFAULT_MEASUREMENT;
  const bad = measurementProblem(measurement);
  if (bad) throw new UsageError(`--measurement: ${bad}`);
  const tags = parseTags((values.tags as string | undefined) ?? DEFAULT_TAGS);
  if (typeof tags === "string") throw new UsageError(`--tags: ${tags}`);
  const unsigned = (values.unsigned as string | undefined) ?? "i";
  if (unsigned !== "i" && unsigned !== "u") {
    throw new UsageError(`--unsigned takes i or u, not "${unsigned}"`);
  }
  return { measurement, tags, unsigned };
}

/** The encoder for `config`; a UserError when a name it makes would not do in InfluxDB. */
export function lineEncoder(config: Config, opts: LineOptions): LineEncoder {
  try {
    return new LineEncoder(config, opts);
  } catch (e) {
    if (e instanceof LineOptionError) throw new UserError(e.message);
    throw e;
  }
}
