/**
 * The live writer's HTTP side (influx/writer.ts) against a real InfluxDB 1.x: batches arrive
 * whole and exact; a server that is down, killed or restarted loses nothing the queue holds; a
 * full queue drops and counts exactly; refused points are counted and not retried; bad
 * credentials, a missing database and a too-large request are said and recovered from.
 */
import assert from "node:assert/strict";
import { LineEncoder } from "../influx/line.ts";
import { InfluxWriter, type WriterOptions, type WriteTarget } from "../influx/writer.ts";
import { createSimState, makePacket } from "../sim/generate.ts";
import { CONFIG, encodedValues, T0 } from "./export_helpers.ts";
import { Influxd } from "./helpers/influxd.ts";
import { assertPoints, type ExpectedPoint } from "./helpers/influx_points.ts";
import { eventually, sleep } from "./helpers/pipeline.ts";
import { tempDir } from "./logger_helpers.ts";

/** `n` packets of the example flight, as lines and as the values Influx must hold. */
function flight(n: number): { lines: string[]; expected: ExpectedPoint[] } {
  const state = createSimState(CONFIG, 3);
  const encoder = new LineEncoder(CONFIG, {
    measurement: "{vehicle}",
    tags: [{ key: "source" }, { key: "packet" }],
    unsigned: "i",
  });
  const lines: string[] = [];
  const expected: ExpectedPoint[] = [];
  for (let i = 0; i < n; i++) {
    const p = CONFIG.packets[i % CONFIG.packets.length];
    const bytes = makePacket(CONFIG, p, i / 1000, state);
    const timeNs = T0 + BigInt(i) * 997_001n;
    lines.push(encoder.encode(p.index, bytes, timeNs));
    expected.push({
      timeNs,
      packet: p.name,
      source: p.source,
      values: encodedValues(CONFIG, p.index, bytes),
    });
  }
  return { lines, expected };
}

/** A server with the database "flight"; `stopped`: stopped again, to be restarted later. */
async function flightServer(opts: { stopped?: boolean; maxBodySize?: number } = {}) {
  const influx = await Influxd.start({ maxBodySize: opts.maxBodySize });
  await influx.createDatabase("flight");
  if (opts.stopped) await influx.stop();
  return influx;
}

function v1(influx: Influxd, db = "flight"): WriteTarget {
  return {
    url: `${influx.url}/write?db=${db}&precision=ns`,
    notFound: `create database ${db}`,
  };
}

/** A writer with small, quick settings; its log lines are kept in `said`. */
function writer(target: WriteTarget, opts: Partial<WriterOptions> = {}) {
  const said: string[] = [];
  const w = new InfluxWriter({
    target,
    queueBytes: 64 << 20,
    batchPoints: 500,
    batchBytes: 1 << 20,
    flushMs: 20,
    maxInflight: 2,
    timeoutMs: 5000,
    log: (l) => said.push(l),
    ...opts,
  });
  return { w, said };
}

async function settled(w: InfluxWriter, what: string, timeoutMs = 20_000): Promise<void> {
  await eventually(what, () => w.stats.queued === 0 || undefined, timeoutMs);
}

Deno.test("influx writer: every point arrives exactly, in batches", async () => {
  await using influx = await flightServer();
  const { lines, expected } = flight(3000);
  const { w, said } = writer(v1(influx));
  for (const l of lines) assert.ok(w.add(l));
  await settled(w, "all written");
  await w.close(1000);
  assert.deepEqual(said, []);
  assert.equal(w.stats.written, 3000);
  assert.equal(w.stats.dropped + w.stats.rejected + w.stats.retries, 0);
  // 500 points per request: 6 requests (added faster than the 20 ms flush).
  assert.ok(w.stats.requests >= 6 && w.stats.requests <= 8, `${w.stats.requests} requests`);
  assertPoints(await influx.rows("flight", "rocket"), expected);
});

Deno.test("influx writer: a server down at start, then killed and restarted, loses nothing", async () => {
  await using influx = await flightServer({ stopped: true });
  const { lines, expected } = flight(4000);
  const { w, said } = writer(v1(influx));
  for (const l of lines.slice(0, 1000)) w.add(l);
  await eventually("a retry", () => w.stats.retries >= 2 || undefined);
  assert.equal(w.stats.written, 0);
  assert.equal(w.stats.writing, false);
  assert.match(
    said[0],
    /cannot reach http:\/\/127\.0\.0\.1:\d+\/write\?db=flight&precision=ns: .*Connection refused.*; keeping the points/,
  );
  await influx.restart();
  await settled(w, "written after the restart");
  assert.ok(said.some((l) => /writing to .* again/.test(l)), said.join("\n"));

  // Killed while points flow: unacknowledged batches are sent again to the new server.
  const feeding = (async () => {
    for (let i = 1000; i < 4000; i++) {
      w.add(lines[i]);
      if (i % 50 === 0) await sleep(5);
    }
  })();
  await eventually("writes flowing", () => w.stats.written > 1500 || undefined);
  const retries = w.stats.retries;
  await influx.stop("SIGKILL");
  await sleep(100);
  await influx.restart();
  await feeding;
  assert.ok(w.stats.retries > retries, "points were sent while the server was dead");
  await settled(w, "written after the kill");
  await w.close(1000);
  assert.equal(w.stats.dropped, 0);
  assert.equal(w.stats.written, 4000);
  assertPoints(await influx.rows("flight", "rocket"), expected);
});

Deno.test("influx writer: a full queue drops new points and counts each one", async () => {
  await using influx = await flightServer({ stopped: true });
  const { lines } = flight(2000);
  const { w, said } = writer(v1(influx), { queueBytes: 40_000 });
  let taken = 0;
  for (const l of lines) if (w.add(l)) taken++;
  assert.ok(taken > 50 && taken < 2000, `${taken} taken`);
  assert.equal(w.stats.dropped, 2000 - taken);
  assert.ok(w.stats.queueBytes <= 40_000);
  assert.equal(said.filter((l) => /the queue is full/.test(l)).length, 1, said.join("\n"));
  await influx.restart();
  await settled(w, "the queue written");
  await w.close(1000);
  assert.equal(w.stats.written, taken);
  const rows = await influx.rows("flight", "rocket");
  assert.equal(rows.length, taken);
  // What was kept is the oldest, without a hole: the first `taken` points.
  assert.deepEqual(
    rows.map((r) => r.time),
    lines.slice(0, taken).map((l) => l.trimEnd().split(" ").at(-1)),
  );
});

Deno.test("influx writer: points InfluxDB refuses are counted, not retried; the rest written", async () => {
  await using influx = await flightServer();
  // ALTITUDE is a float; a string first (in the same shard: the same week) makes every later
  // float ALTITUDE a type conflict.
  const first = await fetch(`${influx.url}/write?db=flight&precision=ns`, {
    method: "POST",
    body: `rocket,source=vehicle,packet=Nav ALTITUDE="up" ${T0 - 1n}\n`,
  });
  assert.equal(first.status, 204);
  const { lines } = flight(1000);
  const nav = lines.filter((l) => l.startsWith("rocket,packet=Nav,")).length;
  const status = lines.filter((l) => l.startsWith("rocket,packet=Status,")).length;
  const { w, said } = writer(v1(influx));
  for (const l of lines) w.add(l);
  await settled(w, "answered");
  await w.close(1000);
  assert.equal(w.stats.rejected, nav);
  assert.equal(w.stats.written, 1000 - nav);
  assert.equal(w.stats.retries, 0);
  assert.match(
    said.join("\n"),
    /InfluxDB refused \d+ of 500 points: partial write: field type conflict/,
  );
  assert.equal(await influx.count("flight", "rocket", "PACKET_SEQ"), status);
});

Deno.test("influx writer: a missing database is said, retried, and written once created", async () => {
  await using influx = await Influxd.start();
  const { lines, expected } = flight(200);
  const { w, said } = writer(v1(influx, "later"));
  for (const l of lines) w.add(l);
  await eventually("the 404 said", () => said.length > 0 || undefined);
  assert.match(
    said[0],
    /InfluxDB answered 404: database not found: "later"\. create database later/,
  );
  await influx.createDatabase("later");
  await settled(w, "written");
  await w.close(1000);
  assert.equal(w.stats.written, 200);
  assertPoints(await influx.rows("later", "rocket"), expected);
});

Deno.test("influx writer: credentials are read again after a 401", async () => {
  await using dir = await tempDir("influx-auth");
  await using influx = await Influxd.start({ auth: true });
  await influx.createAdmin("pad", "right");
  await influx.createDatabase("flight", ["pad", "right"]);
  const file = `${dir.path}/password`;
  await Deno.writeTextFile(file, "wrong\n");
  const target: WriteTarget = {
    ...v1(influx),
    authorization: async () =>
      `Basic ${btoa(`pad:${(await Deno.readTextFile(file)).split("\n")[0]}`)}`,
  };
  const { lines, expected } = flight(300);
  const { w, said } = writer(target);
  for (const l of lines) w.add(l);
  await eventually("the 401 said", () => said.length > 0 || undefined);
  assert.match(said[0], /InfluxDB answered 401: authorization failed \(check the credentials/);
  assert.equal(w.stats.written, 0);
  await Deno.writeTextFile(file, "right\n");
  await settled(w, "written with the new password");
  await w.close(1000);
  assert.equal(w.stats.written, 300);
  assertPoints(await influx.rows("flight", "rocket", ["pad", "right"]), expected);
});

Deno.test("influx writer: a request too large for the server is split until it fits", async () => {
  await using influx = await flightServer({ maxBodySize: 20_000 });
  const { lines, expected } = flight(1000);
  const { w, said } = writer(v1(influx), { batchPoints: 1000 });
  for (const l of lines) w.add(l);
  await settled(w, "written in pieces");
  await w.close(1000);
  assert.equal(w.stats.written, 1000);
  assert.equal(w.stats.rejected, 0);
  assert.ok(said.some((l) => /answered 413.*two halves/.test(l)), said.join("\n"));
  assertPoints(await influx.rows("flight", "rocket"), expected);
});

Deno.test("influx writer: close gives up after its grace time and says what is left", async () => {
  await using influx = await flightServer({ stopped: true });
  const { lines } = flight(100);
  const { w } = writer(v1(influx));
  for (const l of lines) w.add(l);
  const t0 = performance.now();
  await w.close(600);
  const took = performance.now() - t0;
  assert.ok(took >= 500 && took < 3000, `close took ${took} ms`);
  assert.equal(w.stats.queued, 100);
  assert.equal(w.stats.written, 0);
  assert.equal(w.add(lines[0]), false, "a closed writer takes nothing");
});
