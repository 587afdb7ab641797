/**
 * The `dashboard` benchmark group: gsw's web dashboard (issue 8) with real browsers (headless
 * Chromium, tests/helpers/browser.ts) on a real decom and broker.
 *
 * - Latency: a 100-measurement packet at 100 Hz whose first field is its send time
 *   (CLOCK_REALTIME ns, u64); 4 browsers each show a page with 4 plots (16 measurements, the
 *   send time among them) and the values table of all 100. In every page a callback on the
 *   page's own data path (`gswDashboard.state.onAppend`, called once a batch of samples is in
 *   the plot data) stamps each send time with the page's clock (`performance.timeOrigin +
 *   performance.now()`: the machine's wall clock, as the sender's). Reference (same rounds):
 *   the floor of the path from Deno to a page's JavaScript — a WebSocket server in this
 *   process sends the same-size message, stamped, at the same rate to a bare page in each of
 *   the same browsers.
 * - The serving process's CPU (utime + stime of the dashboard's relaunched child) at that
 *   load with the 4 pages, against the same with no page open.
 * - decom's CPU per datagram (schedstat of every thread) with the dashboard and its 4 pages
 *   against no dashboard at all, interleaved phases in each round; the dashboard running with
 *   no page in between (the cost of its two readers alone).
 * - Loss: one measurement in a 10 kHz packet plotted in a page in each browser for 10 s (2 s
 *   with --quick); every sample sent (a sequence number) must be in each page's plot data.
 *
 * Every process it starts dies with it (`setpriv --pdeathsig KILL`, Chromium too).
 *
 *   deno run --allow-all bench/dashboard.ts [--quick]
 */
import type { Page } from "puppeteer-core";
import { brokerSocket, decomSocket } from "../control/rundir.ts";
import { realtimeNs } from "../ffi/mod.ts";
import { CHROMIUM, TestBrowser } from "../tests/helpers/browser.ts";
import { freeTcpPort, Pipeline, type Proc, sleep, taskArgs } from "../tests/helpers/pipeline.ts";
import {
  childOf,
  cpuOf,
  machineJiffies,
  processTree,
  spawnDying,
  voluntarySwitches,
} from "./lib/procs.ts";
import { jsonLine, type Metric, metric } from "./lib/report.ts";
import { cpuNs, layOut, schedNs, sendPaced } from "./lib/send.ts";
import { summarize } from "./lib/stats.ts";

const BENCH = "dashboard";
const quick = Deno.args.includes("--quick");
const ROUNDS = quick ? 2 : 5;
/** Seconds of sending per measured phase. */
const PHASE_S = quick ? 3 : 8;
/** Latency samples sent in a phase's first second are not counted (pages just opened). */
const WARMUP_MS = 1000;
const RATE_HZ = 100;
const BROWSERS = 4;
const LOSS_RATE = 10_000;
const LOSS_S = quick ? 2 : 10;
/** Bytes of the reference's WebSocket message: an APPEND frame of 16 series of one sample. */
const FLOOR_BYTES = 8 + 16 * 32;

const FLOATS = Array.from({ length: 99 }, (_, i) => `M${String(i + 1).padStart(2, "0")}`);
/** The packet: its send time and 99 floats (100 measurements, 404 bytes). */
const PROBE_LEN = 8 + 4 * FLOATS.length;
const CONFIG = `
name: dashbench
sources:
  - name: vehicle
    bind: 127.0.0.1
measurements:
  SEND_NS: { type: uint, size: 8, endianness: little }
${FLOATS.map((m) => `  ${m}: { type: float, size: 4, endianness: little }`).join("\n")}
  FAST_SEQ: { type: uint, size: 4, endianness: little }
telemetry_packets:
  - name: Probe
    port: {PORT0}
    measurements: [SEND_NS, ${FLOATS.join(", ")}]
  - name: Fast
    port: {PORT1}
    measurements: [FAST_SEQ]
`;
/** The latency pages' plots: the send time, and 15 floats in three plots of five. */
const PROBE_PANES = [["SEND_NS"], FLOATS.slice(0, 5), FLOATS.slice(5, 10), FLOATS.slice(10, 15)];
const LAYOUTS: Record<string, unknown> = {
  probe: { version: 1, windowMs: 60_000, panes: PROBE_PANES.map((m) => ({ measurements: m })) },
  fast: { version: 1, windowMs: 60_000, panes: [{ measurements: ["FAST_SEQ"] }] },
};

function say(line: string): void {
  console.error(`dashboard bench: ${line}`);
}

/** What the benchmark reads of a page (dashboard/static/app.js and the reference page). */
interface PageGlobals {
  gswDashboard: {
    state: {
      byKey: Map<string, { index: number }>;
      data: Map<number, { t: number[]; v: number[] }>;
      onAppend: ((index: number, t: Float64Array, v: Float64Array) => void)[];
    };
    plotData(key: string): { t: number[]; v: number[] };
  };
  /** (send time, decom's receive time, time the page had it) per sample, ms since the epoch. */
  gswBench: number[];
}

/** Records every send time of `key` as it reaches the page's plot data. */
function hookLatency(page: Page, key: string): Promise<void> {
  return page.evaluate((key) => {
    const g = globalThis as unknown as PageGlobals;
    const state = g.gswDashboard.state;
    const index = state.byKey.get(key)!.index;
    const rows: number[] = g.gswBench = [];
    state.onAppend.push((i, t, v) => {
      if (i !== index) return;
      const now = performance.timeOrigin + performance.now();
      for (let j = 0; j < v.length; j++) rows.push(v[j] / 1e6, t[j], now);
    });
  }, key);
}

async function takeRows(page: Page): Promise<number[]> {
  return await page.evaluate(() => (globalThis as unknown as PageGlobals).gswBench.splice(0));
}

/** The reference: a WebSocket server sending stamped messages to a bare page. */
class Floor implements AsyncDisposable {
  readonly sockets = new Set<WebSocket>();
  readonly #server: Deno.HttpServer<Deno.NetAddr>;

  constructor() {
    const page = `<!doctype html><title>floor</title><script>
      const rows = globalThis.gswBench = [];
      const ws = new WebSocket("ws://" + location.host + "/ws");
      ws.binaryType = "arraybuffer";
      ws.onopen = () => (globalThis.gswOpen = true);
      ws.onmessage = (e) => {
        const sent = Number(new DataView(e.data).getBigUint64(0, true)) / 1e6;
        rows.push(sent, sent, performance.timeOrigin + performance.now());
      };
    </script>`;
    this.#server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (req) => {
      if (new URL(req.url).pathname !== "/ws") {
        return new Response(page, { headers: { "content-type": "text/html" } });
      }
      const { socket, response } = Deno.upgradeWebSocket(req);
      socket.onopen = () => this.sockets.add(socket);
      socket.onclose = () => this.sockets.delete(socket);
      return response;
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.#server.addr.port}/`;
  }

  /** Sends each page a stamped message at RATE_HZ for `seconds`; returns the send times. */
  async send(seconds: number): Promise<number[]> {
    const msg = new Uint8Array(FLOOR_BYTES);
    const view = new DataView(msg.buffer);
    const sent: number[] = [];
    const t0 = performance.now();
    for (let i = 0; i < seconds * RATE_HZ; i++) {
      await sleep(Math.max(0, t0 + i * 1000 / RATE_HZ - performance.now()));
      for (const s of this.sockets) {
        const now = realtimeNs();
        view.setBigUint64(0, now, true);
        s.send(msg);
        sent.push(Number(now) / 1e6);
      }
    }
    return sent;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const s of this.sockets) s.close();
    await this.#server.shutdown();
  }
}

async function openFloor(b: TestBrowser, url: string): Promise<Page> {
  const page = await b.browser.newPage();
  await page.goto(url, { waitUntil: "load" });
  await page.waitForFunction(() => "gswOpen" in globalThis, { timeout: 15_000 });
  return page;
}

interface Dashboard {
  proc: Proc;
  url: string;
  /** The serving process (the task relaunches itself). */
  pid: number;
}

async function startDashboard(p: Pipeline, layouts: string): Promise<Dashboard> {
  const proc = spawnDying(p, "dashboard", [
    ...taskArgs("dashboard"),
    "--config",
    p.configPath,
    "--listen",
    `127.0.0.1:${freeTcpPort()}`,
    "--layouts",
    layouts,
  ]);
  const line = await proc.stdout.waitFor(/dashboard: open (\S+)/, 30_000);
  await proc.waitFor(/reading every datagram/, 30_000);
  // Its subscription of every measurement's newest value (no line says it is attached).
  await sleep(500);
  return { proc, url: line.match(/open (\S+)/)![1], pid: childOf(proc.pid) };
}

/** The probe datagram sent for the k-th time: its send time, then k mod 1000 + i / 4. */
function probeBatch(port: number, sent: number[]) {
  const batch = layOut([new Uint8Array(PROBE_LEN)], [port]);
  const view = new DataView(batch.buf.buffer);
  const fill = (k: number) => {
    for (let i = 0; i < FLOATS.length; i++) view.setFloat32(8 + 4 * i, (k % 1000) + i / 4, true);
    const now = realtimeNs();
    view.setBigUint64(0, now, true);
    sent.push(Number(now) / 1e6);
  };
  return { batch, fill };
}

type PhaseName = "none" | "idle" | "browsers";

interface Cost {
  datagrams: number;
  decomNs: number;
  decomSwitches: number;
  wallNs: number;
  serverNs: number;
  serverSwitches: number;
  browsersNs: number;
  busy: number;
  total: number;
}

const zeroCost = (): Cost => ({
  datagrams: 0,
  decomNs: 0,
  decomSwitches: 0,
  wallNs: 0,
  serverNs: 0,
  serverSwitches: 0,
  browsersNs: 0,
  busy: 0,
  total: 0,
});

/** The Chromium processes of the browsers (every page's renderer included). */
function chromiumTrees(browsers: TestBrowser[]): number[] {
  return browsers.flatMap((b) => processTree(b.browser.process()!.pid!));
}

/** Runs `send` and adds what decom, the server and the browsers spent meanwhile to `into`. */
async function measured(
  into: Cost,
  decomPid: number,
  serverPid: number | undefined,
  browsers: TestBrowser[],
  send: () => Promise<number>,
): Promise<void> {
  const chromium0 = cpuOf(chromiumTrees(browsers));
  const m0 = machineJiffies();
  const s0 = serverPid ? [cpuNs(serverPid), voluntarySwitches(serverPid)] : [0, 0];
  const d0 = [schedNs(decomPid), voluntarySwitches(decomPid)];
  const t0 = performance.now();
  const n = await send();
  await sleep(100); // decom and the server finish the last datagram
  const d1 = [schedNs(decomPid), voluntarySwitches(decomPid)];
  const s1 = serverPid ? [cpuNs(serverPid), voluntarySwitches(serverPid)] : [0, 0];
  into.wallNs += (performance.now() - t0) * 1e6;
  const m1 = machineJiffies();
  const chromium1 = cpuOf(chromiumTrees(browsers));
  into.datagrams += n;
  into.decomNs += d1[0] - d0[0];
  into.decomSwitches += d1[1] - d0[1];
  into.serverNs += s1[0] - s0[0];
  into.serverSwitches += s1[1] - s0[1];
  for (const [pid, ns] of chromium1) into.browsersNs += ns - (chromium0.get(pid) ?? 0);
  into.busy += m1.busy - m0.busy;
  into.total += m1.total - m0.total;
}

/** Latency samples (ms) of the rows pages recorded, for datagrams sent from `from` on. */
function latencies(rows: number[], from: number, out: { total: number[]; hop: number[] }) {
  for (let i = 0; i < rows.length; i += 3) {
    if (rows[i] < from) continue;
    out.total.push(rows[i + 2] - rows[i]);
    out.hop.push(rows[i + 2] - rows[i + 1]);
  }
}

async function main(): Promise<void> {
  await using p = Pipeline.create({ configText: CONFIG });
  const layouts = `${p.dir}/layouts`;
  Deno.mkdirSync(layouts);
  for (const [name, l] of Object.entries(LAYOUTS)) {
    Deno.writeTextFileSync(`${layouts}/${name}.json`, JSON.stringify(l));
  }
  // Chromium dies with this process too (its own children die with it).
  const chromium = `${p.dir}/chromium`;
  Deno.writeTextFileSync(
    chromium,
    `#!/bin/sh\nexec setpriv --pdeathsig KILL ${CHROMIUM} "$@"\n`,
  );
  Deno.chmodSync(chromium, 0o755);

  const decom = spawnDying(p, "decom", [...taskArgs("decom"), "--config", p.configPath]);
  await p.waitForSocket(decomSocket(p.runDir, "vehicle"), decom);
  const broker = spawnDying(p, "broker", [...taskArgs("broker"), "--config", p.configPath]);
  await p.waitForSocket(brokerSocket(p.runDir), broker);
  const [probePort, fastPort] = p.config.packets.map((x) => x.port);

  // decom's hot path optimised before anything is measured.
  const warm = probeBatch(probePort, []);
  await sendPaced(warm.batch, 5000, 2, warm.fill);

  const browsers: TestBrowser[] = [];
  await using floor = new Floor();
  try {
    for (let i = 0; i < BROWSERS; i++) browsers.push(await TestBrowser.launch(chromium));
    const cost: Record<PhaseName, Cost> = {
      none: zeroCost(),
      idle: zeroCost(),
      browsers: zeroCost(),
    };
    const lat = { total: [] as number[], hop: [] as number[] };
    const ref = { total: [] as number[], hop: [] as number[] };
    const udp: number[] = [];
    let expected = 0;
    let refExpected = 0;
    let checked = 0;

    const phase = async (name: PhaseName, dash: Dashboard | undefined) => {
      const pages = name === "browsers"
        ? await Promise.all(browsers.map((b) => b.open(`${dash!.url}?layout=probe`)))
        : [];
      await Promise.all(pages.map((pg) => hookLatency(pg, "SEND_NS")));
      await sleep(500);
      const sent: number[] = [];
      const probe = probeBatch(probePort, sent);
      await measured(
        cost[name],
        decom.pid,
        dash?.pid,
        browsers,
        () => sendPaced(probe.batch, RATE_HZ, PHASE_S, probe.fill),
      );
      if (pages.length === 0) return;
      await sleep(300);
      const from = sent[0] + WARMUP_MS;
      expected += pages.length * sent.filter((t) => t >= from).length;
      for (const pg of pages) {
        const rows = await takeRows(pg);
        latencies(rows, from, lat);
        for (let i = 0; i < rows.length; i += 3) {
          if (rows[i] >= from) udp.push(rows[i + 1] - rows[i]);
        }
        // Touch the data: the last datagram's values, as the page plots them.
        const k = sent.length - 1;
        for (const key of PROBE_PANES.flat().slice(1)) {
          const got = (await pg.evaluate(
            (key) => (globalThis as unknown as PageGlobals).gswDashboard.plotData(key).v.at(-1),
            key,
          ))!;
          const want = (k % 1000) + (Number(key.slice(1)) - 1) / 4;
          if (got !== want) throw new Error(`a page plots ${key} = ${got}, sent ${want}`);
          checked++;
        }
        await pg.close();
      }
      say(`${name}: ${sent.length} datagrams; pages had ${lat.total.length} of ${expected}`);
    };

    const floorPhase = async () => {
      const pages = await Promise.all(browsers.map((b) => openFloor(b, floor.url)));
      await sleep(500);
      const sent = await floor.send(PHASE_S);
      await sleep(300);
      const from = sent[0] + WARMUP_MS;
      refExpected += sent.filter((t) => t >= from).length;
      for (const pg of pages) {
        latencies(await takeRows(pg), from, ref);
        await pg.close();
      }
    };

    for (let round = 0; round < ROUNDS; round++) {
      const t0 = performance.now();
      const order: PhaseName[] = round % 2 === 0
        ? ["none", "idle", "browsers"]
        : ["browsers", "idle", "none"];
      if (round % 2 === 1) await floorPhase();
      let dash: Dashboard | undefined;
      for (const name of order) {
        if (name !== "none" && !dash) dash = await startDashboard(p, layouts);
        if (name === "none" && dash) {
          await dash.proc.stop("SIGTERM", 10_000);
          dash = undefined;
        }
        await phase(name, dash);
      }
      await dash?.proc.stop("SIGTERM", 10_000);
      if (round % 2 === 0) await floorPhase();
      say(`round ${round + 1} of ${ROUNDS} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    }

    // Loss: a 10 kHz measurement in a page in each browser.
    const dash = await startDashboard(p, layouts);
    const pages = await Promise.all(browsers.map((b) => b.open(`${dash.url}?layout=fast`)));
    await sleep(500);
    const CHUNK = 64;
    const fast = layOut(
      Array.from({ length: CHUNK }, () => new Uint8Array(4)),
      Array(CHUNK).fill(fastPort),
    );
    const fastView = new DataView(fast.buf.buffer);
    const lossCost = zeroCost();
    let lossSent = 0;
    await measured(lossCost, decom.pid, dash.pid, browsers, async () => {
      lossSent = await sendPaced(fast, LOSS_RATE, LOSS_S, (k) => {
        for (let j = 0; j < CHUNK; j++) fastView.setUint32(4 * j, k * CHUNK + j + 1, true);
      });
      return lossSent;
    });
    const held: { count: number; distinct: number; inOrder: boolean }[] = [];
    for (const pg of pages) {
      const t0 = performance.now();
      let got = { count: 0, distinct: 0, inOrder: false };
      while (performance.now() - t0 < 10_000) {
        got = await pg.evaluate((n) => {
          const d = (globalThis as unknown as PageGlobals).gswDashboard.plotData("FAST_SEQ");
          const seen = new Uint8Array(n + 1);
          let distinct = 0;
          let inOrder = true;
          for (let i = 0; i < d.v.length; i++) {
            const x = d.v[i];
            if (i > 0 && x <= d.v[i - 1]) inOrder = false;
            if (Number.isInteger(x) && x >= 1 && x <= n && !seen[x]) {
              seen[x] = 1;
              distinct++;
            }
          }
          return { count: d.v.length, distinct, inOrder };
        }, lossSent);
        if (got.distinct >= lossSent) break;
        await sleep(200);
      }
      held.push(got);
      await pg.close();
    }
    await dash.proc.stop("SIGTERM", 10_000);
    const notPlotted = dash.proc.lines.filter((l) => /not plotted|fell behind/.test(l));
    const worst = Math.min(...held.map((h) => h.distinct));
    say(
      `loss at ${LOSS_RATE}/s for ${LOSS_S} s: ${lossSent} sent; pages hold ${
        held.map((h) => `${h.distinct}${h.inOrder ? "" : " (out of order)"}`).join(", ")
      }${notPlotted.length ? `; the dashboard said: ${notPlotted.join(" / ")}` : ""}`,
    );
    const errors = browsers.flatMap((b) => b.errors);
    if (errors.length) throw new Error(`page errors: ${errors.join("; ")}`);

    // The figures.
    const s = summarize(lat.total);
    const r = summarize(ref.total);
    const hop = summarize(lat.hop);
    const u = summarize(udp);
    const perDg = (c: Cost) => c.decomNs / c.datagrams;
    const pct = (ns: number, c: Cost) => ns / c.wallNs * 100;
    const [none, idle, full] = [cost.none, cost.idle, cost.browsers];
    say(
      `decom ns per datagram: none ${perDg(none).toFixed(0)}, dashboard with no page ${
        perDg(idle).toFixed(0)
      }, with ${BROWSERS} pages ${perDg(full).toFixed(0)}; voluntary switches per datagram ${
        (none.decomSwitches / none.datagrams).toFixed(2)
      } / ${(idle.decomSwitches / idle.datagrams).toFixed(2)} / ${
        (full.decomSwitches / full.datagrams).toFixed(2)
      }; the server's ${(idle.serverSwitches / idle.datagrams).toFixed(2)} / ${
        (full.serverSwitches / full.datagrams).toFixed(2)
      }; machine busy ${(none.busy / none.total * 100).toFixed(0)} / ${
        (idle.busy / idle.total * 100).toFixed(0)
      } / ${(full.busy / full.total * 100).toFixed(0)} % (both CPUs); ${checked} values checked`,
    );
    const out: Metric[] = [
      metric(BENCH, "dashboard_latency_p50_ms", s.p50, "ms", r.p50),
      metric(BENCH, "dashboard_latency_p99_ms", s.p99, "ms", r.p99),
      metric(BENCH, "dashboard_latency_p999_ms", s.p999, "ms", r.p999),
      metric(BENCH, "dashboard_latency_max_ms", s.max, "ms", r.max),
      metric(BENCH, "dashboard_latency_min_ms", s.min, "ms", r.min),
      metric(BENCH, "dashboard_latency_samples", s.count, "count", expected),
      metric(BENCH, "dashboard_floor_samples", r.count, "count", refExpected),
      metric(BENCH, "dashboard_udp_to_decom_p50_ms", u.p50, "ms"),
      metric(BENCH, "dashboard_decom_to_page_p50_ms", hop.p50, "ms", r.p50),
      metric(BENCH, "dashboard_decom_to_page_p99_ms", hop.p99, "ms", r.p99),
      metric(
        BENCH,
        "dashboard_server_cpu_pct",
        pct(full.serverNs, full),
        "%",
        pct(idle.serverNs, idle),
      ),
      metric(BENCH, "dashboard_browsers_cpu_pct", pct(full.browsersNs, full), "%"),
      metric(
        BENCH,
        "dashboard_machine_busy_pct",
        full.busy / full.total * 100,
        "%",
        none.busy / none.total * 100,
      ),
      metric(BENCH, "fanout_decom_cost_ratio_dashboard", perDg(full) / perDg(none), "ratio"),
      metric(BENCH, "decom_ns_per_datagram_with_dashboard", perDg(full), "ns", perDg(none)),
      metric(BENCH, "decom_ns_per_datagram_dashboard_no_page", perDg(idle), "ns", perDg(none)),
      metric(
        BENCH,
        "decom_switches_per_datagram_with_dashboard",
        full.decomSwitches / full.datagrams,
        "count",
        none.decomSwitches / none.datagrams,
      ),
      metric(
        BENCH,
        "dashboard_server_switches_per_datagram",
        full.serverSwitches / full.datagrams,
        "count",
        idle.serverSwitches / idle.datagrams,
      ),
      metric(BENCH, "dashboard_sample_loss_pct", (lossSent - worst) / lossSent * 100, "%"),
      metric(BENCH, "dashboard_loss_samples_sent", lossSent, "count"),
      metric(BENCH, "dashboard_server_cpu_pct_at_10k", pct(lossCost.serverNs, lossCost), "%"),
      metric(BENCH, "decom_ns_per_datagram_at_10k", perDg(lossCost), "ns"),
    ];
    for (const m of out) console.log(jsonLine(m));
  } finally {
    for (const b of browsers) await b[Symbol.asyncDispose]();
  }
}

await main();
