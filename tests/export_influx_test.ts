/**
 * `export --format influx` against a real InfluxDB 1.x (Debian's influxd, private per test):
 * the line protocol is posted as a user would post it, queried back, and every value equals
 * the one sent — 64-bit integers near 2^63, floats that need 17 digits, -0, escaped strings,
 * booleans, enum labels — with the field types Influx was told.
 */
import assert from "node:assert/strict";
import { decodeRaw, encodeRaw, parseConfig, type RawValue } from "../config/mod.ts";
import { encodeLog, type LogRecord } from "../logger/format.ts";
import { CONFIG, CONFIG_FILE, encodedValues, rec, T0, writeLog } from "./export_helpers.ts";
import { Influxd } from "./helpers/influxd.ts";
import { assertPoints, type ExpectedPoint } from "./helpers/influx_points.ts";
import { runTask, tempDir } from "./logger_helpers.ts";

/** Posts line protocol as `curl --data-binary @file` would; the reply's status and text. */
async function post(influx: Influxd, db: string, body: string) {
  const r = await fetch(`${influx.url}/write?db=${db}&precision=ns`, { method: "POST", body });
  return { status: r.status, text: await r.text() };
}

Deno.test("export influx: the example flight loads into InfluxDB and reads back exactly", async () => {
  await using dir = await tempDir("export-influx");
  await using influx = await Influxd.start();
  const log = `${dir.path}/gsw-0001.gswlog`;
  const sent = await writeLog(log);
  const r = await runTask("export", ["--config", CONFIG_FILE, "--format", "influx", log]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trimEnd().split("\n");
  assert.equal(lines.length, sent.length, "one line per packet");
  assert.match(lines[0], /^rocket,packet=Nav,source=vehicle MISSION_TIME=0,ALTITUDE=/);

  await influx.createDatabase("flight");
  const w = await post(influx, "flight", r.stdout);
  assert.equal(w.status, 204, w.text);
  const packetOf = new Map(CONFIG.packets.map((p) => [p.name, p]));
  const expected: ExpectedPoint[] = sent.map((s) => ({
    ...s,
    source: packetOf.get(s.packet)!.source,
  }));
  assertPoints(await influx.rows("flight", "rocket"), expected);

  // The types Influx took: conversions are floats, raw integers integers (GPS_TIME is a uint64),
  // enums their labels.
  const types = Object.fromEntries(
    (await influx.query("SHOW FIELD KEYS", { db: "flight" }))[0].values,
  );
  assert.equal(types.MISSION_TIME, "float");
  assert.equal(types.PACKET_SEQ, "integer");
  assert.equal(types.GPS_TIME, "integer");
  assert.equal(types.FLIGHT_STATE, "string");
  assert.equal(types.ARMED, "boolean");
  assert.equal(types.LINK_STATUS, "string");
  assert.equal(types.RX_COUNT, "integer");

  // Exported twice into the same database: the same points, not twice as many.
  assert.equal((await post(influx, "flight", r.stdout)).status, 204);
  assert.equal(await influx.count("flight", "rocket", "PACKET_SEQ"), 20);
});

/** Every kind of value a field can hold, with the awkward cases of each. */
const EDGE_YAML = `
name: edge test
measurements:
  BIG_INT: { type: int, size: 8 }
  BIG_UINT: { type: uint, size: 8, endianness: little }
  U48: { type: uint, size: 6 }
  SMALL: { type: int, size: 3, endianness: little }
  F64: { type: float, size: 8 }
  F32: { type: float, size: 4, endianness: little }
  SCALED: { type: int, size: 2, scaling: 0.001 }
  FLAG: { type: bool, size: 1 }
  MODE: { type: uint, size: 1, enum: { 0: IDLE, 1: "RUN, FAST=1" } }
  TEXT: { type: string, size: 40 }
  RAW: { type: bytes, size: 3 }
  time: { type: uint, size: 2 }
telemetry_packets:
  - name: Edge
    port: 47001
    measurements: [BIG_INT, BIG_UINT, U48, SMALL, F64, F32, SCALED, FLAG, MODE, TEXT, RAW, time]
`;

const EDGE_VALUES: Record<string, RawValue>[] = [
  {
    BIG_INT: 9223372036854775806n,
    BIG_UINT: 9223372036854775807n,
    U48: 2 ** 48 - 1,
    SMALL: -8388608,
    F64: 0.1 + 0.2, // 0.30000000000000004: 17 significant digits
    F32: Math.fround(0.1),
    SCALED: -32768,
    FLAG: true,
    MODE: 1,
    TEXT: 'a "quoted" \\ back,slash=x\nline é',
    RAW: new Uint8Array([0, 0xab, 0xff]),
    time: 65535,
  },
  {
    BIG_INT: -9223372036854775808n,
    BIG_UINT: 18446744073709551615n, // above 2^63 - 1: no Influx 1.x integer holds it
    U48: 0,
    SMALL: 8388607,
    F64: -0,
    F32: -3.4028234663852886e38,
    SCALED: 12345,
    FLAG: false,
    MODE: 7, // no label: UNKNOWN(7)
    TEXT: "",
    RAW: new Uint8Array([1, 2, 3]),
    time: 0,
  },
  { F64: 5e-324, BIG_UINT: 0n, TEXT: "ends in a backslash \\" },
  { F64: 1.7976931348623157e308, TEXT: "\\" },
  { F64: Number.NaN, TEXT: "NaN is left out" },
  { F64: Number.POSITIVE_INFINITY },
  { F64: 1e21 },
  { F64: -1.2345678901234567e-7 },
  { F64: 123456789.12345679 },
];

Deno.test("export influx: every value type reads back exactly, what cannot be stored is counted", async () => {
  await using dir = await tempDir("export-influx-edge");
  await using influx = await Influxd.start();
  const configPath = `${dir.path}/edge.yaml`;
  await Deno.writeTextFile(configPath, EDGE_YAML);
  const config = parseConfig(EDGE_YAML, configPath);
  const packet = config.packets[0];
  const records: LogRecord[] = [];
  const expected: ExpectedPoint[] = [];
  EDGE_VALUES.forEach((values, i) => {
    const bytes = new Uint8Array(packet.size);
    for (const f of packet.fields) {
      const m = config.measurements[f.measurement];
      // Unlisted measurements take the first row's value.
      encodeRaw(m, values[m.name] ?? EDGE_VALUES[0][m.name], bytes, f.offset);
    }
    const timeNs = T0 + BigInt(i) * 1_000_000n + 7n;
    records.push(rec(timeNs, packet.port, bytes));
    // The test's own check that the packet carries the raw values it meant to send.
    for (const f of packet.fields) {
      const m = config.measurements[f.measurement];
      const raw = decodeRaw(m, bytes.subarray(f.offset, f.offset + f.size));
      assert.deepEqual(raw, values[m.name] ?? EDGE_VALUES[0][m.name], m.name);
    }
    const decoded = encodedValues(config, 0, bytes);
    expected.push({ timeNs, packet: "Edge", source: packet.source, values: decoded });
  });
  // Two packets in the same nanosecond: the second is moved by 1 ns so Influx keeps both.
  const lastBytes = records.at(-1)!.payload;
  const same = T0 + 999_000_000n;
  records.push(rec(same, packet.port, lastBytes), rec(same, packet.port, lastBytes));
  for (const t of [same, same + 1n]) {
    expected.push({
      timeNs: t,
      packet: "Edge",
      source: packet.source,
      values: encodedValues(config, 0, lastBytes),
    });
  }
  const log = `${dir.path}/gsw-0001.gswlog`;
  await Deno.writeFile(
    log,
    encodeLog({
      sequence: 1,
      startNs: T0,
      runStartNs: T0,
      configHash: config.hash,
      configName: config.name,
      configPath,
      host: "test",
      gswVersion: "0.1.0",
    }, records),
  );

  const r = await runTask("export", [
    "--config",
    configPath,
    "--format",
    "influx",
    "--measurement",
    "{vehicle} {packet}",
    log,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /export: measurement "time" written as field "time_"/);
  assert.match(r.stderr, /export: F64: NaN or infinite values left out .*: 2\n/);
  assert.match(r.stderr, /export: BIG_UINT: values above 9223372036854775807 left out .*: 1\n/);
  assert.match(r.stderr, /export: 1 packet received in the same nanosecond/);

  await influx.createDatabase("edge");
  const w = await post(influx, "edge", r.stdout);
  assert.equal(w.status, 204, w.text);
  assertPoints(
    await influx.rows("edge", "edge test Edge"),
    expected,
    (n) => n === "time" ? "time_" : n,
  );
  const types = Object.fromEntries(
    (await influx.query("SHOW FIELD KEYS", { db: "edge" }))[0].values,
  );
  assert.deepEqual(types, {
    BIG_INT: "integer",
    BIG_UINT: "integer",
    F32: "float",
    F64: "float",
    FLAG: "boolean",
    MODE: "string",
    RAW: "string",
    SCALED: "float",
    SMALL: "integer",
    TEXT: "string",
    U48: "integer",
    time_: "integer",
  });
});

Deno.test("export influx: --tags and --unsigned u shape the lines", async () => {
  await using dir = await tempDir("export-influx-tags");
  const log = `${dir.path}/gsw-0001.gswlog`;
  await writeLog(log);
  const r = await runTask("export", [
    "--config",
    CONFIG_FILE,
    "--format",
    "influx",
    "--measurement",
    "{packet}",
    "--tags",
    "vehicle,flight=F3 b",
    "--unsigned",
    "u",
    log,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const status = r.stdout.split("\n").find((l) => l.startsWith("Status,"))!;
  assert.match(
    status,
    /^Status,flight=F3\\ b,vehicle=rocket FLIGHT_STATE="[A-Z]+",ARMED=(true|false),/,
  );
  assert.match(status, /,PACKET_SEQ=0u,CPU_LOAD=\d+u \d{19}$/);
});
