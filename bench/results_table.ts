/**
 * Turns the JSON lines of `deno task bench` into the Markdown tables of `bench/RESULTS.md`
 * (one table per benchmark, every metric with its value, same-run reference and ratio).
 *
 *   deno task bench > bench.jsonl && deno run bench/results_table.ts < bench.jsonl > t.md
 *   deno fmt t.md   # the project formats its Markdown with deno fmt
 */
import type { Metric } from "./lib/report.ts";

function cell(v: number | null, unit = ""): string {
  if (v === null) return "";
  const s = Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(3);
  return unit ? `${s} ${unit}` : s;
}

const text = await new Response(Deno.stdin.readable).text();
const byBench = new Map<string, Metric[]>();
for (const line of text.split("\n")) {
  if (!line.trim()) continue;
  const o = JSON.parse(line);
  if (o.bench === "machine") {
    console.log("```text\n" + line + "\n```\n");
    continue;
  }
  const m = o as Metric;
  if (!byBench.has(m.bench)) byBench.set(m.bench, []);
  byBench.get(m.bench)!.push(m);
}
for (const [bench, ms] of byBench) {
  console.log(`#### ${bench}\n`);
  console.log("| metric | value | reference | ratio |");
  console.log("|---|---:|---:|---:|");
  for (const m of ms) {
    console.log(
      `| \`${m.metric}\` | ${cell(m.value, m.unit)} | ${cell(m.reference)} | ${
        m.ratio === null ? "" : m.ratio.toFixed(3)
      } |`,
    );
  }
  console.log("");
}
