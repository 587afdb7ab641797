/**
 * The `influx` benchmark group: the live writer's sustained rate with no loss, against what the
 * same InfluxDB takes from a plain fetch loop posting ready-made line protocol, interleaved.
 *
 * Writer steps: the example config's packets (all types in turn) are sent over UDP at a fixed
 * rate for a few seconds to a real decom (logger running), and `gsw influx` (its own process,
 * with the permissions its task computes) writes them to a private influxd (Debian's, on free
 * ports; tests/helpers/influxd.ts). A step holds when every datagram sent was read from
 * decom's ring and written (InfluxDB has every point within a second of the last send), none
 * lost, dropped or refused. Rates rise until a step fails. Between steps, the reference posts
 * the same number of points, encoded beforehand, 5000 per request, two requests at once.
 *
 *   deno run --allow-all bench/influx.ts [--quick]
 */
import { LineEncoder } from "../influx/line.ts";
import { cpuNs, type Datagrams, layOut, sendPaced } from "./lib/send.ts";
import { createSimState, makePacket } from "../sim/generate.ts";
import { Influxd } from "../tests/helpers/influxd.ts";
import { decomSocket, loggerSocket } from "../control/rundir.ts";
import { LIBRARY, Pipeline, REPO, sleep, taskArgs } from "../tests/helpers/pipeline.ts";
import { spawnDying } from "./lib/procs.ts";
import { jsonLine, type Metric, metric } from "./lib/report.ts";

const BENCH = "influx";
const quick = Deno.args.includes("--quick");
const RATES = quick ? [50_000, 100_000] : [25_000, 50_000, 100_000, 150_000, 200_000, 300_000];
const SECONDS = quick ? 1 : 3;
const TARGET_RATE = 100_000;
/** Datagrams per sendmmsg call. */
const CHUNK = 64;
/** Points per reference request, as the writer's default batch. */
const REF_BATCH = 5000;

function say(line: string): void {
  console.error(`influx bench: ${line}`);
}

/** One batch of CHUNK datagrams, every packet type in turn, with their ports. */
function mixedBatch(p: Pipeline): Datagrams {
  const state = createSimState(p.config, 5);
  const packets = Array.from(
    { length: CHUNK },
    (_, i) => p.config.packets[i % p.config.packets.length],
  );
  return layOut(
    packets.map((pk, i) => makePacket(p.config, pk, i / 100, state)),
    packets.map((pk) => pk.port),
  );
}

/** Sends at `rate` datagrams/s for `seconds`; returns how many the kernel took. */
function sendMixed(p: Pipeline, rate: number, seconds: number): Promise<number> {
  return sendPaced(mixedBatch(p), rate, seconds);
}

/** Points of measurement "rocket" in `db` (a field only its packet carries, per packet type). */
async function countPoints(influx: Influxd, db: string, fields: string[]): Promise<number> {
  const series = await influx.query(
    `SELECT ${fields.map((f) => `count("${f}")`).join(",")} FROM "rocket"`,
    { db },
  );
  if (series.length === 0) return 0;
  return series[0].values[0].slice(1).reduce((n: number, c) => n + Number(c ?? 0), 0);
}

interface Step {
  rate: number;
  sent: number;
  read: number;
  written: number;
  lost: number;
  dropped: number;
  refused: number;
  /** Seconds from the last send until InfluxDB had every point (Infinity: never). */
  drainS: number;
  cpuNsPerPoint: number;
  held: boolean;
}

async function writerStep(
  p: Pipeline,
  influx: Influxd,
  rate: number,
  db: string,
  fields: string[],
): Promise<Step> {
  await influx.createDatabase(db);
  // Started with exactly the permissions `deno task influx` relaunches it with.
  const writer = spawnDying(p, "influx", [
    "run",
    "--no-prompt",
    `--allow-ffi=${LIBRARY}`,
    "--allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR",
    "--ignore-env=LOG_TOKENS,LOG_STREAM",
    `--allow-read=${p.configPath}`,
    `--allow-net=127.0.0.1:${influx.httpPort}`,
    `${REPO}/main.ts`,
    "influx",
    "--config",
    p.configPath,
    "--url",
    influx.url,
    "--db",
    db,
    "--status",
    "0",
  ]);
  try {
    await writer.waitFor(/reading every datagram/, 30_000);
    const cpu0 = cpuNs(writer.pid);
    const sent = await sendMixed(p, rate, SECONDS);
    const sentAt = performance.now();
    let drainS = Infinity;
    while (performance.now() - sentAt < 5000 + SECONDS * 1000) {
      if (await countPoints(influx, db, fields) >= sent) {
        drainS = (performance.now() - sentAt) / 1000;
        break;
      }
      await sleep(100);
    }
    const cpu = cpuNs(writer.pid) - cpu0;
    const status = await writer.stop("SIGTERM", 15_000);
    const last = writer.lines.findLast((l) => /datagrams read/.test(l)) ?? "";
    const m = last.match(
      /(\d+) datagrams read.*points: (\d+) written, \d+ not written at exit, (\d+) dropped .*, (\d+) refused by InfluxDB; (\d+) datagrams lost/,
    );
    if (status.code !== 0 || !m) {
      throw new Error(`the writer failed (exit ${status.code}):\n${writer.lines.join("\n")}`);
    }
    const [read, written, dropped, refused, lost] = m.slice(1).map(Number);
    const held = read === sent && written === sent && lost + dropped + refused === 0 &&
      drainS <= 1;
    return {
      rate,
      sent,
      read,
      written,
      lost,
      dropped,
      refused,
      drainS,
      cpuNsPerPoint: written > 0 ? cpu / written : NaN,
      held,
    };
  } finally {
    await writer.stop("SIGKILL");
  }
}

/** Pre-encoded bodies of `n` points of the example flight, REF_BATCH per body. */
function referenceBodies(p: Pipeline, n: number): Uint8Array<ArrayBuffer>[] {
  const lines = new LineEncoder(p.config, {
    measurement: "{vehicle}",
    tags: [{ key: "source" }, { key: "packet" }],
    unsigned: "i",
  });
  const state = createSimState(p.config, 9);
  const samples = p.config.packets.map((pk) =>
    Array.from({ length: 50 }, (_, i) => makePacket(p.config, pk, i / 10, state))
  );
  const t0 = BigInt(Date.now()) * 1_000_000n;
  const bodies: Uint8Array<ArrayBuffer>[] = [];
  const enc = new TextEncoder();
  for (let at = 0; at < n; at += REF_BATCH) {
    let text = "";
    for (let i = at; i < Math.min(n, at + REF_BATCH); i++) {
      const k = i % p.config.packets.length;
      text += lines.encode(k, samples[k][i % 50], t0 + BigInt(i) * 1000n);
    }
    bodies.push(enc.encode(text));
  }
  return bodies;
}

/** Posts `bodies` two at a time; points per second until the last is acknowledged. */
async function referenceRun(
  influx: Influxd,
  db: string,
  bodies: Uint8Array<ArrayBuffer>[],
  n: number,
) {
  await influx.createDatabase(db);
  const url = `${influx.url}/write?db=${db}&precision=ns`;
  let next = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (next < bodies.length) {
      const body = bodies[next++];
      const r = await fetch(url, { method: "POST", body });
      const text = await r.text();
      if (r.status !== 204) throw new Error(`reference write: ${r.status} ${text}`);
    }
  };
  await Promise.all([lane(), lane()]);
  return n / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
}

async function main(): Promise<void> {
  await using influx = await Influxd.start();
  say(`influxd started in ${Math.round(influx.startMs)} ms`);
  await using p = Pipeline.create();
  const logger = spawnDying(p, "logger", [
    ...taskArgs("logger", `${p.dir}/logs`),
    "--config",
    p.configPath,
    "--log-dir",
    `${p.dir}/logs`,
  ]);
  await p.waitForSocket(loggerSocket(p.runDir), logger);
  const decom = spawnDying(p, "decom", [...taskArgs("decom"), "--config", p.configPath]);
  await p.waitForSocket(decomSocket(p.runDir, p.config.sources[0].name), decom);
  const fields = p.config.packets.map((pk) => p.config.measurements[pk.fields[0].measurement].name);
  const steps: Step[] = [];
  const refs: number[] = [];
  for (const [i, rate] of RATES.entries()) {
    const step = await writerStep(p, influx, rate, `w${i}`, fields);
    steps.push(step);
    say(
      `writer at ${rate}/s: ${step.sent} sent, ${step.read} read, ${step.written} written, ` +
        `${step.lost} lost, ${step.dropped} dropped, ${step.refused} refused, all in InfluxDB ` +
        `${step.drainS.toFixed(2)} s after the last send, ${Math.round(step.cpuNsPerPoint)} ` +
        `ns CPU per point: ${step.held ? "held" : "NOT held"}`,
    );
    const n = Math.max(step.sent, 50_000);
    const ref = await referenceRun(influx, `r${i}`, referenceBodies(p, n), n);
    refs.push(ref);
    say(`reference: ${n} points posted at ${Math.round(ref)}/s`);
    if (!step.held) break;
  }
  const held = steps.filter((s) => s.held);
  const best = held.at(-1);
  const target = steps.find((s) => s.rate === TARGET_RATE);
  const out: Metric[] = [
    metric(BENCH, "influx_writer_points_per_s", best?.rate ?? 0, "points/s", median(refs)),
    metric(BENCH, "influx_post_points_per_s", median(refs), "points/s"),
    metric(BENCH, "influx_writer_cpu_ns_per_point", best?.cpuNsPerPoint ?? null, "ns"),
    metric(
      BENCH,
      "influx_writer_loss_pct_at_100k",
      target ? (target.sent - target.written) / target.sent * 100 : null,
      "%",
    ),
  ];
  for (const m of out) console.log(jsonLine(m));
}

await main();
