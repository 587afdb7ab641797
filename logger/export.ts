/** `export`: decodes logged packets with a vehicle config into CSV or JSON lines. */
import { dirname, resolve } from "node:path";
import { type CommandSpec, parseCommand, runCommand, UsageError, UserError } from "../cli/args.ts";
import {
  type Config,
  ConfigError,
  decodeValue,
  loadConfig,
  type Measurement,
  type RawValue,
} from "../config/mod.ts";
import { Identifier, type Rejection, REJECTION_NAMES } from "../decom/identify.ts";
import { type LogEntry, LogReader } from "./format.ts";
import { logFiles } from "./paths.ts";
import { plural } from "./text.ts";
import { CONFIG_COPY } from "./writer.ts";

const SPEC: CommandSpec = {
  name: "export",
  usage: "export [--config FILE] LOG… [--format csv|jsonl] [--output FILE]",
  help: `
Decodes a log with a vehicle config: each record is identified as decom does (port, id field,
exact length) and its measurements are decoded to engineering values (conversions applied,
enum labels). LOG is a log file or a run directory (all its gsw-NNNN.gswlog files, in order).
Records that are no known packet (unknown port or id, wrong length, oversize, damaged) are
counted on stderr, not exported.

CSV: a header row, then one row per packet: time_ns (receive time, ns since the Unix epoch),
time_utc (ISO 8601), packet, then one column per measurement, empty when the packet does not
carry it. JSONL: one object per packet: {"time_ns":"…","time_utc":"…","packet":"…",
"source":"…","measurements":{NAME: value, …}}; 64-bit integers are strings, as is time_ns,
so no value loses precision; NaN and infinities are the strings "NaN", "Infinity".

Options:
  --config FILE          vehicle config (default: the config.yaml the logger copied beside
                         the first log); a warning says if the log was recorded with another
  --format csv|jsonl     output format (default csv)
  --output FILE          write there instead of stdout (the export task may not write files:
                         redirect stdout, or run the deno line it prints)

Examples:
  deno task export logs/2025-06-01T14-03-12Z > flight.csv
  deno task export --config examples/rocket.yaml --format jsonl run/gsw-0001.gswlog`,
  options: {
    config: { type: "string" },
    format: { type: "string" },
    output: { type: "string" },
  },
  positionals: true,
};

/** Characters buffered before a write. */
const CHUNK = 1 << 16;

type Format = "csv" | "jsonl";

export async function main(args: string[]): Promise<number> {
  return await runCommand(SPEC, async () => {
    const { values, help, positionals } = parseCommand(SPEC, args);
    if (help) return 0;
    if (positionals.length === 0) {
      throw new UsageError("which log? give a log file or run directory");
    }
    const format: string = values.format ?? "csv";
    if (format !== "csv" && format !== "jsonl") {
      throw new UsageError(`--format takes csv or jsonl, not "${format}"`);
    }
    const files = await logFiles(positionals);
    const configPath: string = values.config ?? `${dirname(files[0])}/${CONFIG_COPY}`;
    let config: Config;
    try {
      config = await loadConfig(configPath);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      const hint = values.config ? "" : " (no config given: give one with --config FILE)";
      throw new UserError(`cannot use the config${hint}:\n${e.message}`);
    }
    const out = await openOutput(values.output, args);
    try {
      return await exportLog(files, config, format, out);
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

/** Where a packet's measurements go: column, measurement, bytes. */
interface Slot {
  column: number;
  /** The measurement's name as a JSON string. */
  key: string;
  m: Measurement;
  offset: number;
  size: number;
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

async function exportLog(
  files: string[],
  config: Config,
  format: Format,
  out: Output,
): Promise<number> {
  // One column per measurement some packet carries, in config order.
  const carried = config.measurements.filter((m) => m.packets.length > 0);
  const columnOf = new Map(carried.map((m, i) => [m.index, i]));
  const slots: Slot[][] = config.packets.map((p) =>
    p.fields.map((f) => ({
      column: columnOf.get(f.measurement)!,
      key: JSON.stringify(config.measurements[f.measurement].name),
      m: config.measurements[f.measurement],
      offset: f.offset,
      size: f.size,
    }))
  );
  // Each decom identifies only its own source's packets; a record's source says which.
  const bySource = config.sources.map((s) => new Identifier(config, s.name));
  const any = new Identifier(config);

  let text = "";
  const flush = async () => {
    const bytes = encoder.encode(text);
    for (let at = 0; at < bytes.length;) at += await out.write(bytes.subarray(at));
    text = "";
  };
  if (format === "csv") {
    text += ["time_ns", "time_utc", "packet", ...carried.map((m) => csvText(m.name))].join(",") +
      "\n";
  }

  const reader = new LogReader(files);
  const rejected = new Map<Rejection, number>();
  const warnedHashes = new Set<string>();
  let decoded = 0;
  const cells: string[] = new Array(carried.length);
  for await (const batch of reader.batches()) {
    for (const r of batch) {
      warnHash(r, config, warnedHashes);
      const ident = bySource[r.source] ?? any;
      const verdict = ident.identify(r.dstPort, r.payload, 0, r.payload.length, r.truncated);
      if (verdict < 0) {
        rejected.set(verdict as Rejection, (rejected.get(verdict as Rejection) ?? 0) + 1);
        continue;
      }
      const packet = config.packets[verdict];
      decoded++;
      if (format === "csv") {
        cells.fill("");
        for (const s of slots[verdict]) {
          cells[s.column] = csvCell(
            decodeValue(s.m, r.payload.subarray(s.offset, s.offset + s.size)),
          );
        }
        text += `${r.timeNs},${isoNs(r.timeNs)},${packet.name},${cells.join(",")}\n`;
      } else {
        const parts = slots[verdict].map((s) =>
          `${s.key}:${jsonValue(decodeValue(s.m, r.payload.subarray(s.offset, s.offset + s.size)))}`
        );
        text += `{"time_ns":"${r.timeNs}","time_utc":"${isoNs(r.timeNs)}","packet":${
          JSON.stringify(packet.name)
        },"source":${JSON.stringify(packet.source)},"measurements":{${parts.join(",")}}}\n`;
      }
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
