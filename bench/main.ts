/**
 * `deno task bench`: gsw's benchmarks, each measured against its reference in the same run,
 * interleaved. One JSON line per metric on stdout
 * (`{"bench","metric","value","unit","reference","ratio"}`, plus one `{"bench":"machine",…}`
 * line), a short human table with the project's targets on stderr. See `bench/README.md`.
 *
 * It builds nothing: it runs `target/release/gsw-bench-native` (native writers and readers,
 * references, the old-scheme baseline, and the pipeline benchmarks, which start gsw's own
 * logger, decom and broker), `bench/deno/ffi.ts` (the TypeScript wrappers against no-op FFI
 * calls, in-process) and Deno readers and subscribers started by the native harness
 * (`bench/deno/reader.ts`, `bench/deno/subscriber.ts`). Every child process has a deadline
 * and is killed when it passes; the native harness's own children die with it.
 */
import { jsonLine, type Metric, table } from "./lib/report.ts";
import { BENCH_LIBRARY_FILE, releasePath } from "./lib/native.ts";

const usage = () =>
  `deno task bench [--only GROUPS] [--quick] [--no-pin] [--peer-rit DIR] [--help]

Runs gsw's benchmarks (foundation and pipeline) and prints one JSON line per metric on stdout
({"bench","metric","value","unit","reference","ratio"}) and a table with the targets on stderr.

  --only GROUPS  comma-separated subset of: ${GROUPS.map((g) => g.name).join(", ")}
  --quick        a fast smoke run (fewer samples, 2 s idle test): figures are indicative only
  --no-pin       do not pin the two sides of a benchmark to different CPUs
  --peer-rit DIR run the peer-rit group against the Go ground software prepared in DIR
                 (bench/peer-rit/setup.sh DIR; without it the group is skipped)
  --help         this text

Needs a release build first: cargo build --release  (target/release/libgsw.so,
gsw-bench-native and ${BENCH_LIBRARY_FILE}). The pipeline groups (ingest, e2e, fanout, rss)
start gsw's logger, decom and broker on a private run directory and free UDP ports; influx
also needs Debian's influxd (apt-get install influxdb), mqtt Debian's mosquitto, each started on
free ports; serial needs socat (a PTY pair stands for the radio).

Examples:
  deno task bench > bench.jsonl
  deno task bench --quick --only channel,ffi
  deno task bench --only ingest,e2e,fanout,rss
  deno task bench --only deno-wake 2>/dev/null | jq -c 'select(.metric|test("ratio"))'`;

const ROOT = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
const NATIVE = releasePath("gsw-bench-native");

interface Group {
  name: string;
  what: string;
  /** Commands to run: [executable, args] pairs, in order (`work`: a private directory). */
  commands(quick: boolean, pin: string[], work: string): [string, string[]][];
  /** Seconds before a command is killed (the native harness has its own watchdog too). */
  timeout: number;
}

const deno = Deno.execPath();
const nativeCmd = (args: string[]): [string, string[]] => [NATIVE, args];
/** `taskset -c <the last allowed CPU>` in front of `cmd`, unless --no-pin or no taskset. */
function withTaskset(pin: string[], cmd: [string, string[]]): [string, string[]][] {
  const taskset = ["/usr/bin/taskset", "/bin/taskset"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (pin.length > 0 || !taskset || allowedCpus < 1) return [cmd];
  return [[taskset, ["-c", String(allowedCpus - 1), cmd[0], ...cmd[1]]]];
}

/** The Go ground software prepared for the peer-rit group (`--peer-rit DIR`). */
let peerRitDir: string | undefined;

/** CPUs this process may use, from the machine line (0: unknown). */
let allowedCpus = 0;

/** What the pipeline benchmarks need to start gsw's processes. */
const gsw = (work: string) => ["--deno", deno, "--root", ROOT, "--work-dir", work];

const GROUPS: Group[] = [
  {
    name: "channel",
    what: "publish / take from Rust vs the protocol floor",
    commands: (q, pin) => [
      nativeCmd(["channel", "--parts", "micro", ...(q ? ["--batches", "10000"] : []), ...pin]),
    ],
    timeout: 120,
  },
  {
    name: "ffi",
    what: "TypeScript wrappers vs no-op FFI calls",
    // Pinned to one CPU (all its threads) where `taskset` exists: per-call figures of an
    // unpinned process swing with migrations between the vCPUs.
    commands: (q, pin) =>
      withTaskset(pin, [deno, [
        "run",
        "--quiet",
        "--no-prompt",
        "--no-lock",
        "--allow-ffi",
        `${ROOT}/bench/deno/ffi.ts`,
        ...(q ? ["--batches", "10000"] : []),
      ]]),
    timeout: 180,
  },
  {
    name: "wake",
    what: "publish -> blocked native reader vs eventfd and the old scheme",
    commands: (q, pin) => [
      nativeCmd([
        "channel",
        "--parts",
        "wake",
        ...(q ? ["--samples", "10000", "--warmup", "1000"] : []),
        ...pin,
      ]),
    ],
    timeout: 180,
  },
  {
    name: "deno-wake",
    what: "native writer -> blocked Deno reader (sync, waitset)",
    commands: (q, pin) => [
      nativeCmd([
        "deno-wake",
        "--deno",
        deno,
        "--script",
        `${ROOT}/bench/deno/reader.ts`,
        ...(q ? ["--samples", "5000", "--warmup", "1000"] : []),
        ...pin,
      ]),
    ],
    timeout: 180,
  },
  {
    name: "throughput",
    what: "writer throughput with a reader attached, gsw vs the old scheme",
    commands: (q, pin) => [
      nativeCmd([
        "channel",
        "--parts",
        "throughput",
        ...(q ? ["--duration", "1", "--rounds", "4"] : []),
        ...pin,
      ]),
    ],
    timeout: 120,
  },
  {
    name: "idle",
    what: "CPU of readers blocked on their doorbell",
    commands: (q) => [
      nativeCmd([
        "idle",
        "--deno",
        deno,
        "--script",
        `${ROOT}/bench/deno/reader.ts`,
        "--duration",
        q ? "2" : "10",
      ]),
    ],
    timeout: 120,
  },
  {
    name: "references",
    what: "native floors: eventfd, cache line, old scheme, UDP",
    commands: (q, pin) => [
      nativeCmd([
        "eventfd-pingpong",
        ...(q ? ["--samples", "20000", "--warmup", "2000"] : []),
        ...pin,
      ]),
      nativeCmd([
        "cacheline-pingpong",
        ...(q ? ["--samples", "100000", "--warmup", "10000"] : []),
        ...pin,
      ]),
      nativeCmd([
        "baseline",
        ...(q ? ["--samples", "10000", "--warmup", "1000", "--duration", "1"] : []),
        ...pin,
      ]),
      nativeCmd([
        "udp-ingest",
        ...(q ? ["--count", "200000", "--duration", "2"] : []),
        ...pin,
      ]),
    ],
    timeout: 120,
  },
  {
    name: "ingest",
    what: "decom (logger, broker, subscriber running) fed flat out vs a native receiver",
    commands: (q, _pin, work) => [
      nativeCmd([
        "ingest",
        ...gsw(work),
        ...(q ? ["--count", "100000", "--rounds", "1", "--idle-secs", "2"] : []),
      ]),
    ],
    timeout: 200,
  },
  {
    name: "e2e",
    what:
      "UDP -> decom -> Deno library subscriber (one hop) vs a native 2-process chain; via the broker vs 3",
    commands: (q, _pin, work) => [
      nativeCmd([
        "e2e",
        ...gsw(work),
        "--script",
        `${ROOT}/bench/deno/subscriber.ts`,
        ...(q ? ["--samples", "10000", "--warmup", "2000"] : []),
      ]),
    ],
    timeout: 300,
  },
  {
    name: "direct-fanout",
    what: "a broadcast writer's CPU per batch with 4 and 64 direct readers asleep vs none",
    commands: (q) =>
      [4, 64].map((n) =>
        nativeCmd([
          "broadcast-fanout",
          "--readers",
          String(n),
          ...(q ? ["--window", "0.5", "--rounds", "1"] : []),
        ])
      ),
    timeout: 120,
  },
  {
    name: "fanout",
    what: "decom and broker CPU with 64 subscribers vs none",
    commands: (q, _pin, work) => [
      nativeCmd(["fanout", ...gsw(work), ...(q ? ["--window", "1", "--rounds", "1"] : [])]),
    ],
    timeout: 200,
  },
  {
    name: "peer-rit",
    what: "gsw vs the Go ground software on its own benchmark packet and writer, interleaved",
    commands: (q) =>
      peerRitDir === undefined ? [] : [[deno, [
        "run",
        "--allow-all",
        "--no-lock",
        `${ROOT}/bench/peer_rit.ts`,
        "--rit-dir",
        peerRitDir,
        "--rounds",
        q ? "1" : "5",
      ]]],
    timeout: 900,
  },
  {
    name: "influx",
    what: "the live InfluxDB writer's sustained points/s with no loss vs a plain fetch loop",
    commands: (q) => [[deno, [
      "run",
      "--allow-all",
      "--no-lock",
      `${ROOT}/bench/influx.ts`,
      ...(q ? ["--quick"] : []),
    ]]],
    timeout: 300,
  },
  {
    name: "serial",
    what:
      "decom reading a serial radio (PTY pair, 921600 baud line rate) vs the same packets over UDP",
    commands: (q) => [[deno, [
      "run",
      "--allow-all",
      "--no-lock",
      `${ROOT}/bench/serial.ts`,
      ...(q ? ["--quick"] : []),
    ]]],
    timeout: 300,
  },
  {
    name: "mqtt",
    what: "gsw across a private mosquitto: latency vs mosquitto's own, bridge rate, decom's cost",
    commands: (q) => [[deno, [
      "run",
      "--allow-all",
      "--no-lock",
      `${ROOT}/bench/mqtt.ts`,
      ...(q ? ["--quick"] : []),
    ]]],
    timeout: 420,
  },
  {
    name: "dashboard",
    what: "the web dashboard with 4 headless Chromium pages: latency, server CPU, sample loss",
    commands: (q) => [[deno, [
      "run",
      "--allow-all",
      "--no-lock",
      `${ROOT}/bench/dashboard.ts`,
      ...(q ? ["--quick"] : []),
    ]]],
    timeout: 600,
  },
  {
    name: "soak",
    what: "decom's RSS growth with no logger, then a logger, vs its backlog bound (2 x 120 s)",
    commands: (q, _pin, work) => [
      nativeCmd(["soak", ...gsw(work), ...(q ? ["--secs", "10"] : [])]),
    ],
    timeout: 400,
  },
  {
    name: "rss",
    what: "resident memory of decom + broker + logger, 300 measurements, 64 subscribers",
    commands: (q, _pin, work) => [nativeCmd(["rss", ...gsw(work), ...(q ? ["--secs", "1"] : [])])],
    timeout: 120,
  },
];

/** The targets, shown next to the figures (never a failure: machines are noisy). */
const TARGETS: Record<string, { op: "<=" | ">=" | "<"; bound: number }> = {
  publish_native_ns: { op: "<=", bound: 25 },
  read_native_ns: { op: "<=", bound: 25 },
  publish_deno_overhead_ratio: { op: "<=", bound: 1.5 },
  read_deno_overhead_ratio: { op: "<=", bound: 1.5 },
  wake_native_p50_ratio: { op: "<=", bound: 1.3 },
  wake_native_p99_ratio: { op: "<=", bound: 2 },
  wake_deno_sync_p50_ratio: { op: "<=", bound: 1.3 },
  wake_deno_sync_p99_ratio: { op: "<=", bound: 2 },
  wake_deno_waitset_p50_ratio: { op: "<=", bound: 1.5 },
  writer_vs_baseline_ratio: { op: ">=", bound: 10 },
  wake_p50_vs_baseline_ratio: { op: "<", bound: 1 },
  idle_reader_cpu_percent: { op: "<", bound: 0.1 },
  ingest_loss_pct: { op: "<=", bound: 0 },
  ingest_rate_vs_native_ratio: { op: ">=", bound: 0.9 },
  decom_ns_per_measurement: { op: "<=", bound: 40 },
  decom_idle_cpu_percent: { op: "<", bound: 0.1 },
  e2e_p50_vs_native_ratio: { op: "<=", bound: 1.15 },
  e2e_p99_vs_native_ratio: { op: "<=", bound: 3 },
  fanout_decom_cost_ratio_64: { op: "<=", bound: 1.05 },
  broker_ns_per_subscriber_update: { op: "<=", bound: 300 },
  pipeline_rss_mb: { op: "<=", bound: 200 },
  soak_rss_growth_no_logger_ratio: { op: "<=", bound: 1 },
  peer_rit_p50_ratio: { op: "<=", bound: 0.8 },
  peer_rit_p99_ratio: { op: "<=", bound: 1 },
  peer_rit_lost_pct_diff: { op: "<=", bound: 0 },
  serial_loss_pct: { op: "<=", bound: 0 },
  serial_rejected: { op: "<=", bound: 0 },
  decom_serial_vs_udp_cost_ratio: { op: "<=", bound: 1.5 },
  influx_writer_points_per_s: { op: ">=", bound: 100_000 },
  influx_writer_loss_pct_at_100k: { op: "<=", bound: 0 },
  mqtt_e2e_vs_broker_p50_ratio: { op: "<=", bound: 1.5 },
  mqtt_bridge_max_pps: { op: ">=", bound: 20_000 },
  fanout_decom_cost_ratio_bridge: { op: "<=", bound: 1.05 },
  dashboard_latency_p50_ms: { op: "<=", bound: 5 },
  dashboard_latency_p99_ms: { op: "<=", bound: 16.7 },
  dashboard_server_cpu_pct: { op: "<=", bound: 15 },
  dashboard_sample_loss_pct: { op: "<=", bound: 0 },
  fanout_decom_cost_ratio_dashboard: { op: "<=", bound: 1.05 },
};

/** The table on stderr is short: medians, per-call costs, rates, ratios (all lines go to stdout). */
const SHOWN =
  /^(?!.*_(p99|p999|max|mean)_ns$)(.*_p50_ns|publish_\w+_ns|read_\w+_ns|noop_\w+_ns|.*_ratio|.*_per_s|.*_pps|.*cpu_percent|.*loss_pct|(mqtt_)?e2e_p\d+_us|dashboard_(latency_p\d+_ms|server_cpu_pct)|.*_rss_mb|.*_ns_per_\w+)$/;

/** Metrics each group must produce (the list). */
const REQUIRED: Record<string, string[]> = {
  channel: ["publish_native_ns", "read_native_ns", "read_native_empty_ns"],
  ffi: [
    "publish_deno_ns",
    "read_deno_ns",
    "publish_deno_overhead_ratio",
    "read_deno_overhead_ratio",
  ],
  wake: ["wake_native_p50_ratio", "wake_native_p99_ratio", "wake_p50_vs_baseline_ratio"],
  "deno-wake": [
    "wake_deno_sync_p50_ratio",
    "wake_deno_sync_p99_ratio",
    "wake_deno_waitset_p50_ratio",
  ],
  throughput: ["writer_vs_baseline_ratio"],
  idle: ["idle_reader_cpu_percent"],
  references: [],
  ingest: [
    "ingest_loss_pct",
    "ingest_rate_vs_native_ratio",
    "decom_ns_per_measurement",
    "decom_idle_cpu_percent",
  ],
  e2e: ["e2e_p50_us", "e2e_p99_us", "e2e_p50_vs_native_ratio", "e2e_p99_vs_native_ratio"],
  "direct-fanout": ["bfanout_writer_cost_ratio_4", "bfanout_writer_cost_ratio_64"],
  fanout: ["fanout_decom_cost_ratio_64", "broker_ns_per_subscriber_update"],
  rss: ["pipeline_rss_mb"],
  soak: ["soak_rss_growth_no_logger_mb", "soak_rss_growth_logger_mb"],
  influx: ["influx_writer_points_per_s", "influx_post_points_per_s"],
  serial: [
    "serial_loss_pct",
    "serial_rejected",
    "decom_ns_per_measurement_serial",
    "decom_serial_vs_udp_cost_ratio",
  ],
  dashboard: [
    "dashboard_latency_p50_ms",
    "dashboard_latency_p99_ms",
    "dashboard_server_cpu_pct",
    "dashboard_sample_loss_pct",
    "fanout_decom_cost_ratio_dashboard",
  ],
  mqtt: [
    "mqtt_e2e_p50_us",
    "mqtt_e2e_p99_us",
    "mqtt_e2e_vs_broker_p50_ratio",
    "mqtt_bridge_max_pps",
    "fanout_decom_cost_ratio_bridge",
  ],
  "peer-rit": [
    "peer_rit_p50_ratio",
    "peer_rit_p99_ratio",
    "peer_rit_pss_ratio",
    "peer_rit_lost_pct_diff",
  ],
};

function meets(value: number, t: { op: string; bound: number }): boolean {
  return t.op === "<=" ? value <= t.bound : t.op === ">=" ? value >= t.bound : value < t.bound;
}

function parseArgs(argv: string[]): { only: Group[]; quick: boolean; pin: string[] } {
  let only = GROUPS;
  let quick = false;
  let pin: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--help" || a === "-h") {
      console.log(usage());
      Deno.exit(0);
    } else if (a === "--quick") {
      quick = true;
    } else if (a === "--peer-rit" || a.startsWith("--peer-rit=")) {
      peerRitDir = a.includes("=") ? a.slice(11) : argv[++i];
      if (!peerRitDir) usageError("--peer-rit needs the directory of the Go ground software");
    } else if (a === "--no-pin") {
      pin = ["--no-pin"];
    } else if (a === "--only" || a.startsWith("--only=")) {
      const v = a.includes("=") ? a.slice(7) : argv[++i];
      if (!v) usageError("--only needs a comma-separated list of groups");
      const names = v.split(",").map((s) => s.trim()).filter((s) => s);
      for (const n of names) {
        if (!GROUPS.some((g) => g.name === n)) {
          usageError(`unknown group '${n}' (groups: ${GROUPS.map((g) => g.name).join(", ")})`);
        }
      }
      only = GROUPS.filter((g) => names.includes(g.name));
    } else {
      usageError(`unknown option '${a}'`);
    }
  }
  return { only, quick, pin };
}

function usageError(msg: string): never {
  console.error(`bench: ${msg} (see --help)`);
  Deno.exit(2);
}

/** One clear line and exit 1 if a build product is missing. */
function requireBuild(): void {
  for (const f of ["libgsw.so", "gsw-bench-native", BENCH_LIBRARY_FILE]) {
    const p = releasePath(f);
    try {
      Deno.statSync(p);
    } catch {
      console.error(`bench: ${p} is missing: run \`cargo build --release\` first`);
      Deno.exit(1);
    }
  }
}

let running: Deno.ChildProcess | null = null;

/** Runs one command; returns its stdout lines. Kills it (and fails) after `timeout` seconds. */
async function runCommand(exe: string, args: string[], timeout: number): Promise<string[]> {
  const child = new Deno.Command(exe, {
    args,
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  running = child;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }, timeout * 1000);
  try {
    const out = await child.output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    const name = `${exe.split("/").pop()} ${args[0] === "run" ? args.at(-1) ?? "" : args[0]}`;
    if (timedOut) {
      throw new Error(`${name} did not finish within ${timeout} s: killed it\n${tail(stderr)}`);
    }
    if (!out.success) {
      throw new Error(`${name} failed (exit ${out.code})\n${tail(stderr)}`);
    }
    return stdout.split("\n").filter((l) => l.trim());
  } finally {
    clearTimeout(timer);
    running = null;
  }
}

function tail(s: string): string {
  const lines = s.trimEnd().split("\n").filter((l) => !l.startsWith("  ") && !l.startsWith("──"));
  return lines.slice(-8).join("\n");
}

function parseMetric(line: string): Metric | null {
  try {
    const o = JSON.parse(line);
    if (typeof o?.bench === "string" && typeof o?.metric === "string") return o as Metric;
  } catch { /* not a metric line */ }
  return null;
}

function targetNotes(metrics: Metric[]): Map<string, string> {
  const notes = new Map<string, string>();
  for (const m of metrics) {
    const t = TARGETS[m.metric];
    if (!t || m.value === null) continue;
    notes.set(m.metric, `target ${t.op} ${t.bound}: ${meets(m.value, t) ? "met" : "MISSED"}`);
  }
  return notes;
}

async function main(): Promise<number> {
  const { only, quick, pin } = parseArgs(Deno.args);
  requireBuild();
  const started = performance.now();
  // The pipeline benchmarks' private directories go here; removed whatever happens.
  const work = Deno.makeTempDirSync({ prefix: "gsw-bench-" });
  const cleanup = () => {
    try {
      Deno.removeSync(work, { recursive: true });
    } catch { /* already gone */ }
  };
  Deno.addSignalListener("SIGINT", () => {
    try {
      // Its own children (gsw's processes, Deno readers) die with it (PR_SET_PDEATHSIG).
      running?.kill("SIGKILL");
    } catch { /* already gone */ }
    cleanup();
    console.error("\nbench: interrupted");
    Deno.exit(130);
  });
  try {
    return await runGroups(only, quick, pin, work, started);
  } finally {
    cleanup();
  }
}

async function runGroups(
  only: Group[],
  quick: boolean,
  pin: string[],
  work: string,
  started: number,
): Promise<number> {
  const machine = await runCommand(NATIVE, ["machine"], 30);
  for (const l of machine) {
    console.log(l);
    try {
      allowedCpus = Number(JSON.parse(l).allowed_cpus) || 0;
    } catch { /* not JSON */ }
  }
  const metrics: Metric[] = [];
  const failed: string[] = [];
  for (const g of only) {
    const t0 = performance.now();
    const commands = g.commands(quick, pin, work);
    if (commands.length === 0) {
      console.error(
        `bench: ${g.name} skipped: no --peer-rit DIR given (see bench/peer-rit/README.md)`,
      );
      continue;
    }
    console.error(`bench: ${g.name}: ${g.what} …`);
    const got: Metric[] = [];
    try {
      for (const [exe, args] of commands) {
        for (const line of await runCommand(exe, args, g.timeout)) {
          const m = parseMetric(line);
          if (m === null) continue;
          got.push(m);
          console.log(jsonLine(m));
        }
      }
      const missing = REQUIRED[g.name].filter((n) => !got.some((m) => m.metric === n));
      if (missing.length) throw new Error(`did not report ${missing.join(", ")}`);
    } catch (e) {
      console.error(`bench: ${g.name} FAILED: ${(e as Error).message}`);
      failed.push(g.name);
    }
    metrics.push(...got);
    console.error(`bench: ${g.name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const shown = metrics.filter((m) => TARGETS[m.metric] !== undefined || SHOWN.test(m.metric));
  console.error("\n" + table(shown, targetNotes(metrics)));
  const t = Object.entries(TARGETS).filter(([n]) => metrics.some((m) => m.metric === n));
  const missed = t.filter(([n, tt]) => {
    const v = metrics.find((m) => m.metric === n)?.value;
    return v === null || v === undefined || !meets(v, tt);
  });
  console.error(
    `bench: ${t.length - missed.length}/${t.length} targets met` +
      (missed.length ? ` (missed: ${missed.map(([n]) => n).join(", ")})` : "") +
      `; ${((performance.now() - started) / 1000).toFixed(0)} s` +
      (quick ? " (--quick: indicative only)" : ""),
  );
  if (failed.length) {
    console.error(`bench: failed groups: ${failed.join(", ")}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await main());
}
