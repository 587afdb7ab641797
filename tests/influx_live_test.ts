/**
 * `deno task influx` end to end: simulated packets → decom → the live writer (its own process,
 * relaunched with the network for the server only) → a real InfluxDB 1.x; every packet decom
 * logged is a point with the logged receive time and the decoded values. The 2.x API's request
 * (path, organization, bucket, token from an environment variable) is checked against a plain
 * HTTP server standing in for InfluxDB 2.x, which is not packaged for Debian.
 */
import assert from "node:assert/strict";
import { decodePacket } from "../config/mod.ts";
import { Identifier } from "../decom/identify.ts";
import { LogReader } from "../logger/format.ts";
import { logFiles } from "../logger/paths.ts";
import { createSimState, makePacket } from "../sim/generate.ts";
import { Influxd } from "./helpers/influxd.ts";
import { assertPoints, type ExpectedPoint } from "./helpers/influx_points.ts";
import { eventuallyAsync, Pipeline, type Proc, spawnGsw } from "./helpers/pipeline.ts";

/** Sends `rounds` rounds of every packet type, and one datagram of a wrong length per round. */
async function sendFlight(p: Pipeline, rounds: number): Promise<number> {
  const state = createSimState(p.config, 11);
  let good = 0;
  for (let r = 0; r < rounds; r += 50) {
    for (const packet of p.config.packets) {
      const batch = [];
      for (let k = r; k < Math.min(rounds, r + 50); k++) {
        batch.push(makePacket(p.config, packet, k / 50, state));
        good++;
      }
      if (packet.index === 0) batch.push(new Uint8Array(3)); // not a known packet
      await p.send(packet.port, batch);
    }
  }
  return good;
}

/** The pid of a process whose parent is `parent` and whose command line matches `re`. */
function childMatching(parent: number, re: RegExp): { pid: number; cmdline: string } | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const cmdline = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      if (ppid === parent && re.test(cmdline)) return { pid: Number(e.name), cmdline };
    } catch { /* gone */ }
  }
  return undefined;
}

async function startWriter(p: Pipeline, args: string[], env?: Record<string, string>) {
  const proc = env
    ? spawnGsw("influx", ["--config", p.configPath, ...args], "influx", {
      env: { GSW_RUN_DIR: p.runDir, ...env },
    })
    : p.spawn("influx", ["--config", p.configPath, ...args]);
  if (env) p.procs.push(proc);
  await proc.waitFor(/influx: reading every datagram of source "vehicle"/, 30_000);
  return proc;
}

async function stopWriter(proc: Proc): Promise<string> {
  const status = await proc.stop("SIGTERM", 10_000);
  assert.equal(status.code, 0, proc.output.text);
  return proc.output.lines.at(-1)!;
}

Deno.test("influx live: sim → decom → writer → InfluxDB, every packet as logged", async () => {
  await using p = Pipeline.create();
  await using influx = await Influxd.start();
  await influx.createDatabase("flight");
  await p.logger();
  const decom = await p.decom();
  const writer = await startWriter(p, [
    "--url",
    influx.url,
    "--db",
    "flight",
    "--status",
    "0.2",
  ]);
  // The writer proper runs with the network for this server only.
  const child = childMatching(writer.pid, /main\.ts influx /);
  assert.ok(child, "the relaunched writer");
  assert.match(child.cmdline, new RegExp(`--allow-net=127\\.0\\.0\\.1:${influx.httpPort} `));
  assert.doesNotMatch(child.cmdline, /--allow-all|--allow-net |--allow-write|--allow-run/);

  const rounds = 600;
  const good = await sendFlight(p, rounds);
  const bad = rounds / 50;
  await eventuallyAsync(
    "every packet in InfluxDB",
    async () => (await influx.rows("flight", "rocket")).length === good || undefined,
    30_000,
  );
  const summary = await stopWriter(writer);
  assert.equal(
    summary,
    `influx: ${good + bad} datagrams read (${bad} not a known packet); points: ${good} ` +
      "written, 0 not written at exit, 0 dropped (queue full), 0 refused by InfluxDB; " +
      "0 datagrams lost behind decom's ring",
  );
  assert.ok(writer.output.lines.some((l) => /influx: \d+ datagrams read/.test(l)), "status lines");

  // What decom logged, decoded independently of the writer: the same points, same times.
  await decom.stop("SIGTERM");
  await p.procs.find((x) => x.name === "logger")!.stop("SIGTERM");
  const runs = [...Deno.readDirSync(`${p.dir}/logs`)].map((e) => `${p.dir}/logs/${e.name}`);
  const files = await logFiles(runs);
  const ident = new Identifier(p.config);
  const expected: ExpectedPoint[] = [];
  for await (const r of new LogReader(files).records()) {
    const packet = ident.identify(r.dstPort, r.payload, 0, r.payload.length, r.truncated);
    if (packet < 0) continue;
    expected.push({
      timeNs: r.timeNs,
      packet: p.config.packets[packet].name,
      source: p.config.packets[packet].source,
      values: new Map(
        decodePacket(p.config, packet, r.payload).map((f) => [f.measurement.name, f.value]),
      ),
    });
  }
  assert.equal(expected.length, good);
  assertPoints(await influx.rows("flight", "rocket"), expected);
});

Deno.test("influx live: the 2.x API with a token from the environment", async () => {
  await using p = Pipeline.create();
  const requests: { url: URL; auth: string | null; body: string }[] = [];
  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      requests.push({
        url: new URL(req.url),
        auth: req.headers.get("authorization"),
        body: await req.text(),
      });
      return new Response(null, { status: 204 });
    },
  );
  await p.decom();
  const writer = await startWriter(p, [
    "--url",
    `http://127.0.0.1:${server.addr.port}/proxy`,
    "--bucket",
    "telemetry",
    "--org",
    "team",
    "--token-env",
    "GSW_TEST_INFLUX_TOKEN",
    "--measurement",
    "{packet}",
    "--tags",
    "vehicle,flight=F3",
  ], { GSW_TEST_INFLUX_TOKEN: "s3cret-token" });
  const good = await sendFlight(p, 100);
  await eventuallyAsync(
    "every point posted",
    () =>
      Promise.resolve(
        requests.reduce((n, r) => n + r.body.split("\n").filter((l) => l).length, 0) === good ||
          undefined,
      ),
    30_000,
  );
  const summary = await stopWriter(writer);
  assert.match(summary, new RegExp(`points: ${good} written, 0 not written at exit`));
  for (const r of requests) {
    assert.equal(r.url.pathname, "/proxy/api/v2/write");
    assert.deepEqual(Object.fromEntries(r.url.searchParams), {
      org: "team",
      bucket: "telemetry",
      precision: "ns",
    });
    assert.equal(r.auth, "Token s3cret-token");
  }
  const lines = requests.flatMap((r) => r.body.split("\n").filter((l) => l));
  assert.ok(lines.some((l) => /^Nav,flight=F3,vehicle=rocket MISSION_TIME=/.test(l)));
  assert.ok(lines.every((l) => /^\w+,flight=F3,vehicle=rocket [^ ].* \d{19}$/.test(l)), lines[0]);
  // The token is read from the environment: on no command line.
  assert.ok(!childMatching(writer.pid, /s3cret/));
});

Deno.test("influx CLI: help, usage errors (exit 2), unreadable credentials (exit 1)", async () => {
  await using p = Pipeline.create();
  const run = async (args: string[]) => {
    const proc = spawnGsw("influx", args, "influx", { env: { GSW_RUN_DIR: p.runDir } });
    const status = await proc.status;
    return { code: status.code, out: proc.stdout.text, err: proc.stderr.text };
  };
  const help = await run(["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.out, /^usage: influx --url URL \(--db NAME \| --bucket NAME\)/);
  assert.match(help.out, /--token-file F/);
  const url = ["--url", "http://127.0.0.1:8086"];
  for (
    const [args, said] of [
      [[], /--url URL is required/],
      [["--url", "ftp://x", "--db", "a"], /must start with http/],
      [["--url", "http://u:p@h:1", "--db", "a"], /no query, fragment or credentials/],
      [[...url], /give --db NAME .* or --bucket NAME/],
      [[...url, "--db", "a", "--bucket", "b"], /give --db NAME/],
      [[...url, "--db", "a", "--org", "o"], /--org goes with --bucket/],
      [[...url, "--db", "a", "--token-file", "f", "--token-env", "T"], /give one of/],
      [[...url, "--db", "a", "--password-file", "f"], /a password needs --username/],
      [[...url, "--db", "a", "--tags", "x"], /--tags: "x" is no built-in tag/],
      [[...url, "--db", "a", "--queue", "0"], /--queue takes a number between 1 and 4096/],
      [[...url, "--db", "a", "--source", "nope"], /has no source "nope"/],
      [[...url, "--db", "a", "--token", "s3cret"], /Unknown option '--token'/],
    ] as [string[], RegExp][]
  ) {
    const r = await run(["--config", p.configPath, ...args]);
    assert.equal(r.code, 2, `${args.join(" ")}: ${r.err}`);
    assert.match(r.err, said, args.join(" "));
    assert.match(r.err, /\nusage: influx /);
  }
  const missing = await run([
    "--config",
    p.configPath,
    ...url,
    "--db",
    "a",
    "--token-file",
    `${p.dir}/none`,
  ]);
  assert.equal(missing.code, 1, missing.err);
  assert.match(missing.err, /--token-file: cannot read the token file .*\/none: /);
});
