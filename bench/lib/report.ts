/**
 * The project's benchmark output: one JSON object per metric per line,
 * `{"bench","metric","value","unit","reference","ratio"}` (`ratio = value / reference`, both
 * null when there is no same-run reference), and a short human table.
 */
import type { Summary } from "./stats.ts";

export interface Metric {
  bench: string;
  metric: string;
  value: number | null;
  unit: string;
  reference: number | null;
  ratio: number | null;
}

/** Rounds to at most 6 decimals (as the native side prints), keeping JSON free of float noise. */
export function round6(v: number): number {
  return Math.round(v * 1e6) / 1e6;
}

/** A metric; `ratio` is computed from a finite, non-zero reference. */
export function metric(
  bench: string,
  name: string,
  value: number | null,
  unit: string,
  reference: number | null = null,
): Metric {
  const finite = (v: number | null) => v !== null && Number.isFinite(v) ? round6(v) : null;
  const v = finite(value);
  const r = finite(reference);
  const ratio = v !== null && r !== null && r !== 0 ? round6(v / r) : null;
  return { bench, metric: name, value: v, unit, reference: r, ratio };
}

/** The JSON line of a metric, keys in the documented order. */
export function jsonLine(m: Metric): string {
  return JSON.stringify({
    bench: m.bench,
    metric: m.metric,
    value: m.value,
    unit: m.unit,
    reference: m.reference,
    ratio: m.ratio,
  });
}

/** `<prefix>_p50_ns`, `_p99_ns`, `_p999_ns`, `_max_ns` and `_samples` (as `Report::latency`). */
export function latency(bench: string, prefix: string, s: Summary, ref?: Summary): Metric[] {
  const rows: [string, (x: Summary) => number][] = [
    ["p50", (x) => x.p50],
    ["p99", (x) => x.p99],
    ["p999", (x) => x.p999],
    ["max", (x) => x.max],
  ];
  const out = rows.map(([n, get]) =>
    metric(bench, `${prefix}_${n}_ns`, get(s), "ns", ref ? get(ref) : null)
  );
  out.push(metric(bench, `${prefix}_samples`, s.count, "count"));
  return out;
}

function human(v: number | null): string {
  if (v === null) return "null";
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}

/** A human table of `metrics` (one section per bench), with optional notes per metric. */
export function table(metrics: Metric[], notes: Map<string, string> = new Map()): string {
  const width = Math.max(0, ...metrics.map((m) => m.metric.length));
  let out = "";
  let bench = "";
  for (const m of metrics) {
    if (m.bench !== bench) {
      bench = m.bench;
      out += `── ${bench} ──\n`;
    }
    let line = `  ${m.metric.padEnd(width)}  ${human(m.value).padStart(14)} ${m.unit.padEnd(9)}`;
    if (m.reference !== null && m.ratio !== null) {
      line += `  ref ${human(m.reference).padStart(12)}  ×${m.ratio.toFixed(2)}`;
    }
    const note = notes.get(m.metric);
    if (note) line += `  ${note}`;
    out += line.trimEnd() + "\n";
  }
  return out;
}
