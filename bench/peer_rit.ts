/**
 * The `peer-rit` benchmark group: gsw and the Go ground software (RIT-Launch-Initiative/GSW)
 * side by side on that software's benchmark packet and writer, interleaved round by round
 * (`bench/peer-rit/round.sh`), with the medians and ratios as JSON metric lines. Started by
 * `bench/main.ts` with `--rit-dir DIR` (a checkout prepared by `bench/peer-rit/setup.sh`).
 *
 *   deno run -A bench/peer_rit.ts --rit-dir DIR [--rounds N]
 */
import { jsonLine, type Metric } from "./lib/report.ts";

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const ROUND = `${ROOT}/bench/peer-rit/round.sh`;

interface Round {
  p50: number;
  p99: number;
  lostPct: number;
  pssKb: number;
  cpuPct: number;
}

/** One round of one side: round.sh's single output line, parsed. */
async function round(side: "gsw" | "rit", ritDir: string): Promise<Round> {
  const out = await new Deno.Command("bash", {
    args: [ROUND, side],
    cwd: ROOT,
    env: { RIT_DIR: ritDir, GSW_DIR: ROOT },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).output();
  const line = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1) ?? "";
  const m = line.match(/^(gsw|rit) (\{.*\}) server_cpu_pct=([\d.]+) rss_kb=(\d+) pss_kb=(\d+)$/);
  if (!m) throw new Error(`round.sh ${side} printed no result: ${line || "(nothing)"}`);
  const r = JSON.parse(m[2]);
  if (!(r.received > 0)) throw new Error(`round.sh ${side}: the reader received nothing`);
  return {
    p50: Number(r.p50_us),
    p99: Number(r.p99_us),
    lostPct: Number(r.lost_pct),
    cpuPct: Number(m[3]),
    pssKb: Number(m[5]),
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
}

const r3 = (v: number) => Math.round(v * 1000) / 1000;

async function main(): Promise<void> {
  const i = Deno.args.indexOf("--rit-dir");
  const ritDir = i >= 0 ? Deno.args[i + 1] : undefined;
  const j = Deno.args.indexOf("--rounds");
  const rounds = j >= 0 ? Number(Deno.args[j + 1]) : 5;
  if (!ritDir) throw new Error("--rit-dir DIR is required");
  for (const f of ["bin/gsw_service", "bin/ipc_benchmark", "bin/p99reader", "shm-config"]) {
    try {
      Deno.statSync(`${ritDir}/${f}`);
    } catch {
      throw new Error(`${ritDir}/${f} is missing: run bench/peer-rit/setup.sh ${ritDir} first`);
    }
  }
  const got: Record<"gsw" | "rit", Round[]> = { gsw: [], rit: [] };
  for (let k = 0; k < rounds; k++) {
    for (const side of k % 2 ? ["gsw", "rit"] as const : ["rit", "gsw"] as const) {
      const r = await round(side, ritDir);
      got[side].push(r);
      console.error(
        `peer-rit: round ${k + 1}/${rounds} ${side}: p50 ${r.p50} us, p99 ${r.p99} us, ` +
          `lost ${r.lostPct}%, PSS ${(r.pssKb / 1024).toFixed(1)} MB, CPU ${r.cpuPct}%`,
      );
    }
  }
  const med = (side: "gsw" | "rit", f: (r: Round) => number) => median(got[side].map(f));
  const metrics: Metric[] = [];
  const push = (metric: string, value: number, unit: string, reference: number | null = null) =>
    metrics.push({
      bench: "peer-rit",
      metric,
      value: r3(value),
      unit,
      reference: reference === null ? null : r3(reference),
      ratio: reference ? r3(value / reference) : null,
    });
  const pair = (name: string, f: (r: Round) => number, unit: string) => {
    push(`peer_rit_gsw_${name}`, med("gsw", f), unit, med("rit", f));
    push(`peer_rit_rit_${name}`, med("rit", f), unit);
  };
  pair("p50_us", (r) => r.p50, "us");
  pair("p99_us", (r) => r.p99, "us");
  pair("lost_pct", (r) => r.lostPct, "%");
  pair("pss_mb", (r) => r.pssKb / 1024, "MB");
  pair("cpu_pct", (r) => r.cpuPct, "%");
  push("peer_rit_p50_ratio", med("gsw", (r) => r.p50) / med("rit", (r) => r.p50), "ratio");
  push("peer_rit_p99_ratio", med("gsw", (r) => r.p99) / med("rit", (r) => r.p99), "ratio");
  push("peer_rit_pss_ratio", med("gsw", (r) => r.pssKb) / med("rit", (r) => r.pssKb), "ratio");
  push(
    "peer_rit_lost_pct_diff",
    med("gsw", (r) => r.lostPct) - med("rit", (r) => r.lostPct),
    "points",
  );
  push("peer_rit_rounds", rounds, "count");
  for (const m of metrics) console.log(jsonLine(m));
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`bench/peer_rit.ts: ${(e as Error).message}`);
    Deno.exit(1);
  }
}
