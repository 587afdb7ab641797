/**
 * `export`: decodes logged packets with a vehicle config into CSV, JSON lines or InfluxDB line
 * protocol (docs/export.md).
 */
import { dirname, resolve } from "node:path";
import { type CommandSpec, parseCommand, runCommand, UsageError, UserError } from "../cli/args.ts";
import { type Config, decodePacket, type RawValue } from "../config/mod.ts";
import { Identifier, type Rejection, REJECTION_NAMES } from "../decom/identify.ts";
import type { LineOptions } from "../influx/line.ts";
import {
  LINE_OPTIONS,
  lineEncoder,
  lineOptions as parseLineOptions,
  lineOptionsHelp,
} from "../influx/options.ts";
import { type LogEntry, LogReader } from "./format.ts";
import { configForLog, logFiles } from "./paths.ts";
import { plural } from "./text.ts";
import { CONFIG_COPY } from "./writer.ts";

const SPEC: CommandSpec = {
  name: "export",
  usage: "export [--config FILE] LOG… [--format csv|jsonl|influx] [--fill] [--output FILE]",
  help: `
Decodes a log with a vehicle config: each record is identified as decom does (port, id field,
exact length) and its measurements are decoded to engineering values (conversions applied,
enum labels). LOG is a log file or a run directory (all its gsw-NNNN.gswlog files, in order).
Records that are no known packet (unknown port or id, wrong length, oversize, damaged) are
counted on stderr, not exported.

CSV: a header row, then one row per packet: time_ns (receive time, ns since the Unix epoch),
time_utc (ISO 8601), packet, then one column per measurement, empty when the packet does not
carry it; with --fill, each measurement's latest value so far instead (empty only before its
first packet), so a spreadsheet can plot any column against time.
JSONL: one object per packet: {"time_ns":"…","time_utc":"…","packet":"…","source":"…",
"measurements":{NAME: value, …}}; 64-bit integers are strings, as is time_ns, so no value
loses precision; NaN and infinities are the strings "NaN", "Infinity".
influx: InfluxDB line protocol, one point per packet, its measurements as fields, timestamps
in ns (load with precision=ns): enum labels and strings as strings, booleans, integers as
integers (64-bit ones exact), floats and converted values as floats with every digit. NaN
and infinities are left out (Influx stores neither) and counted on stderr.

Options:
  --config FILE          vehicle config (default: the config.yaml the logger copied beside
                         the first log); a warning says if the log was recorded with another
  --format csv|jsonl|influx   output format (default csv)
  --fill                 csv: fill every row with each measurement's latest value
${lineOptionsHelp("influx: ")}
  --output FILE          write there instead of stdout (the export task may not write files:
                         redirect stdout, or run the deno line it prints)

Examples:
  deno task export logs/2025-06-01T14-03-12Z > flight.csv
  deno task export --fill logs/2025-06-01T14-03-12Z > flight-filled.csv
  deno task export --format influx --tags source,packet,flight=F3 logs/2025-06-01T14-03-12Z > flight.lp
  deno task export --config examples/rocket.yaml --format jsonl run/gsw-0001.gswlog`,
  options: {
    config: { type: "string" },
    format: { type: "string" },
    fill: { type: "boolean" },
    ...LINE_OPTIONS,
    output: { type: "string" },
  },
  positionals: true,
};

/** Characters buffered before a write. */
const CHUNK = 1 << 16;

const FORMATS = ["csv", "jsonl", "influx"] as const;
type Format = typeof FORMATS[number];

interface ExportOptions {
  format: Format;
  /** csv: every row holds each measurement's latest value. */
  fill: boolean;
  influx: LineOptions;
}

/** The influx options from the command line; UsageError for wrong ones or the wrong format. */
function lineOptions(values: Record<string, string | undefined>, format: Format): LineOptions {
  if (format !== "influx") {
    const given = Object.keys(LINE_OPTIONS).find((o) => values[o] !== undefined);
    if (given) throw new UsageError(`--${given} is for --format influx`);
  }
  return parseLineOptions(values);
}

export async function main(args: string[]): Promise<number> {
  return await runCommand(SPEC, async () => {
    const { values, help, positionals } = parseCommand(SPEC, args);
    if (help) return 0;
    if (positionals.length === 0) {
      throw new UsageError("which log? give a log file or run directory");
    }
    const format = (values.format ?? "csv") as Format;
    if (!FORMATS.includes(format)) {
      throw new UsageError(`--format takes ${FORMATS.join(", ")}, not "${values.format}"`);
    }
    if (values.fill && format !== "csv") throw new UsageError("--fill is for --format csv");
    const opts: ExportOptions = {
      format,
      fill: values.fill ?? false,
      influx: lineOptions(values, format),
    };
    const files = await logFiles(positionals);
    const config = await configForLog(files, values.config);
    const rows = formatRows(config, opts);
    const out = await openOutput(values.output, args);
    try {
      return await exportLog(files, config, rows, out);
    } catch (e) {
      // A reader that went away (`export … | head`) is not an error.
      if (e instanceof Deno.errors.BrokenPipe) return 0;
      throw e;
    } finally {
      if (out !== Deno.stdout) out.close();
    }
  });
}

type Output = { write(p: Uint8Array): Promise<number>; close(): void };

async function openOutput(path: string | undefined, args: string[]): Promise<Output> {
  if (path === undefined) return Deno.stdout;
  try {
    return await Deno.open(path, { write: true, create: true, truncate: true });
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) {
      const main = decodeURIComponent(new URL("../main.ts", import.meta.url).pathname);
      const rest = args.map((
        a,
      ) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replaceAll("'", `'\\''`)}'`));
      throw new UserError(
        `may not write ${path}: \`deno task export\` has no write permission. Redirect ` +
          `stdout instead (deno task export … > ${path}), or run:\n  deno run ` +
          `--ignore-env=LOG_TOKENS,LOG_STREAM --allow-read --allow-write=${resolve(path)} ` +
          `${main} export ${rest.join(" ")}`,
      );
    }
    throw new UserError(`cannot write ${path}: ${(e as Error).message}`);
  }
}

const encoder = new TextEncoder();

function csvText(s: string): string {
  return /[",\r\n]|^\s|\s$/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

function hex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** A value as a CSV cell: numbers in full precision, so nothing is lost. */
function csvCell(v: RawValue): string {
  switch (typeof v) {
    case "number":
    case "bigint":
    case "boolean":
      return String(v);
    case "string":
      return csvText(v);
  }
  return hex(v);
}

/** A value as JSON: finite numbers as numbers, 64-bit integers and non-finite ones as strings. */
function jsonValue(v: RawValue): string {
  switch (typeof v) {
    case "number":
      return Number.isFinite(v) ? JSON.stringify(v) : `"${v}"`;
    case "bigint":
      return `"${v}"`;
    case "boolean":
      return String(v);
    case "string":
      return JSON.stringify(v);
  }
  return `"${hex(v)}"`;
}

/**
 * ISO 8601 UTC with all nine digits of the nanoseconds. The date and time up to the second
 * are cached: packets come many per second, and formatting a Date is the slow part.
 */
const isoNs = (() => {
  let second = -1n;
  let prefix = "";
  return (ns: bigint): string => {
    const s = ns / 1_000_000_000n;
    if (s !== second) {
      second = s;
      prefix = new Date(Number(s) * 1000).toISOString().slice(0, 19);
    }
    return `${prefix}.${(ns % 1_000_000_000n).toString().padStart(9, "0")}Z`;
  };
})();

/** One output format: its first lines, the text of each identified packet, notes for stderr. */
interface Rows {
  header: string;
  row(r: LogEntry, packet: number): string;
  notes(): string[];
}

function csvRows(config: Config, fill: boolean): Rows {
  // One column per measurement some packet carries, in config order.
  const carried = config.measurements.filter((m) => m.packets.length > 0);
  const columnOf = new Map(carried.map((m, i) => [m.index, i]));
  const columns = config.packets.map((p) => p.fields.map((f) => columnOf.get(f.measurement)!));
  const cells: string[] = new Array(carried.length).fill("");
  return {
    header: ["time_ns", "time_utc", "packet", ...carried.map((m) => csvText(m.name))].join(",") +
      "\n",
    row(r, packet) {
      // Without --fill a row holds only its own packet's values; with it, the latest of each.
      if (!fill) cells.fill("");
      const col = columns[packet];
      decodePacket(config, packet, r.payload).forEach((f, i) => cells[col[i]] = csvCell(f.value));
      return `${r.timeNs},${isoNs(r.timeNs)},${config.packets[packet].name},${cells.join(",")}\n`;
    },
    notes: () => [],
  };
}

function jsonlRows(config: Config): Rows {
  const keys = config.packets.map((p) =>
    p.fields.map((f) => JSON.stringify(config.measurements[f.measurement].name))
  );
  const heads = config.packets.map((p) =>
    `,"packet":${JSON.stringify(p.name)},"source":${JSON.stringify(p.source)},"measurements":{`
  );
  return {
    header: "",
    row(r, packet) {
      const k = keys[packet];
      const parts = decodePacket(config, packet, r.payload).map((f, i) =>
        `${k[i]}:${jsonValue(f.value)}`
      );
      return `{"time_ns":"${r.timeNs}","time_utc":"${isoNs(r.timeNs)}"${heads[packet]}${
        parts.join(",")
      }}}\n`;
    },
    notes: () => [],
  };
}

function influxRows(config: Config, opts: LineOptions): Rows {
  const lines = lineEncoder(config, opts);
  return {
    header: "",
    row: (r, packet) => lines.encode(packet, r.payload, r.timeNs),
    notes: () => [
      ...lines.renamed.map((n) =>
        `measurement "${n}" written as field "${n}_" (InfluxDB refuses "${n}")`
      ),
      ...[...lines.omitted].map(([why, n]) => `${why}: ${n}`),
      ...(lines.nudged
        ? [
          `${
            plural(lines.nudged, "packet")
          } received in the same nanosecond as the one before of its series written 1 ns later, so that InfluxDB keeps both`,
        ]
        : []),
    ],
  };
}

/** The rows of the chosen format; a UserError when the options cannot work with this config. */
function formatRows(config: Config, opts: ExportOptions): Rows {
  switch (opts.format) {
    case "csv":
      return csvRows(config, opts.fill);
    case "jsonl":
      return jsonlRows(config);
  }
  return influxRows(config, opts.influx);
}

async function exportLog(
  files: string[],
  config: Config,
  rows: Rows,
  out: Output,
): Promise<number> {
  // Each decom identifies only its own source's packets; a record's source says which.
  const bySource = config.sources.map((s) => new Identifier(config, s.name));
  const any = new Identifier(config);

  let text = rows.header;
  const flush = async () => {
    const bytes = encoder.encode(text);
    for (let at = 0; at < bytes.length;) at += await out.write(bytes.subarray(at));
    text = "";
  };

  const reader = new LogReader(files);
  const rejected = new Map<Rejection, number>();
  const warnedHashes = new Set<string>();
  let decoded = 0;
  for await (const batch of reader.batches()) {
    for (const r of batch) {
      warnHash(r, config, warnedHashes);
      const ident = bySource[r.source] ?? any;
      const verdict = ident.identifyRecord(r.dstPort, r.payload, 0, r.payload.length, r.flags);
      if (verdict < 0) {
        rejected.set(verdict as Rejection, (rejected.get(verdict as Rejection) ?? 0) + 1);
        continue;
      }
      decoded++;
      text += rows.row(r, verdict);
    }
    if (text.length >= CHUNK) await flush();
  }
  await flush();

  const s = reader.stats;
  const nRejected = [...rejected.values()].reduce((a, b) => a + b, 0);
  const why = [...rejected].map(([k, n]) => `${n} ${REJECTION_NAMES[k]}`).join(", ");
  console.error(
    `export: ${plural(decoded, "packet")} decoded from ${plural(s.files, "file")}` +
      (nRejected ? `; records that are no known packet: ${nRejected} (${why})` : "") +
      (s.corrupt ? `; damaged regions skipped: ${s.corrupt} (${s.corruptBytes} bytes)` : "") +
      (s.truncated ? `; files ending in a truncated record: ${s.truncated}` : ""),
  );
  for (const n of rows.notes()) console.error(`export: ${n}`);
  for (const p of s.problems) console.error(`export: ${p}`);
  return s.badFiles > 0 ? 1 : 0;
}

function warnHash(r: LogEntry, config: Config, warned: Set<string>): void {
  const h = r.header.configHash;
  if (h === config.hash || warned.has(h)) return;
  warned.add(h);
  console.error(
    `export: warning: ${r.file} was recorded with config "${r.header.configName}" ` +
      `(sha256 ${h.slice(0, 12)}), not ${config.file} (sha256 ${config.hash.slice(0, 12)}); ` +
      `values may decode wrongly. The recorded config is ${dirname(r.file)}/${CONFIG_COPY}.`,
  );
}
