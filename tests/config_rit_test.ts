/**
 * Configs from the field: every config that RIT's Go ground software accepts
 * (tests/fixtures/config/rit/) loads in gsw with the same meaning — offsets, sizes, packet
 * sizes, ports, types, endianness, scaling — or is refused, at the measurement's position, for
 * exactly the measurements the Go interpreter cannot decode. One datagram per packet decodes to
 * what the Go software's own code decoded from it (go-golden.json, made by golden.go), and the
 * same datagrams sent to a real decom reach a real `subscribe` with the same values.
 */
import assert from "node:assert/strict";
import {
  type Config,
  ConfigError,
  decodePacket,
  type Diagnostic,
  parseConfig,
  type RawValue,
} from "../config/mod.ts";
import { Identifier, WRONG_LENGTH } from "../decom/identify.ts";
import { Pipeline, type Proc } from "./helpers/pipeline.ts";
import { parseExact } from "./helpers/json.ts";

const DIR = new URL("./fixtures/config/rit/", import.meta.url).pathname;

interface GoField {
  key: string;
  offset: number;
  size: number;
  value?: string;
  go_type?: string;
  error?: string;
}
interface GoPacket {
  name: string;
  port: number;
  size: number;
  datagram: string;
  fields: GoField[];
}
interface GoConfig {
  file: string;
  name: string;
  error?: string;
  packets: GoPacket[];
}

const GOLDEN: GoConfig[] = JSON.parse(await Deno.readTextFile(DIR + "go-golden.json"));

/**
 * The configs gsw refuses, with the one error each must give: a measurement the Go interpreter
 * cannot decode either. `fix` is the type the message suggests, to check the rest of the file.
 */
const REFUSED: Record<string, { line: number; col: number; message: string; fix: string }> = {
  "benchmark.yaml": {
    line: 38,
    col: 5,
    message: `measurement "OneKilobyte" is a 1008-byte int, but integers are 1 to 8 bytes; it is ` +
      `in packet "OneKbyte". Fix size, or use type: bytes for an opaque block`,
    fix: "bytes",
  },
  "backplane.yaml": {
    line: 183,
    col: 7,
    message: floatMessage(),
    fix: "int",
  },
  "641_final_project.yaml": {
    line: 94,
    col: 7,
    message: floatMessage(),
    fix: "int",
  },
};

function floatMessage(): string {
  return `measurement "SNR" (name "RCV_SNR") is a 2-byte float, which cannot be decoded: floats ` +
    `are 4 bytes (32-bit) or 8 bytes (64-bit); it is in packet "ReceiverStats". Set size to 4 ` +
    `or 8, or if the sender sends a 2-byte integer, use type: int (with scaling for fixed-point)`;
}

function hexBytes(hex: string): Uint8Array {
  return Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
}

function errorsOf(text: string, file: string): Diagnostic[] {
  try {
    parseConfig(text, file);
  } catch (e) {
    if (e instanceof ConfigError) return e.diagnostics.filter((d) => d.severity === "error");
    throw e;
  }
  return [];
}

/** The file with the `type:` on the line after line `sizeLine` (its `size:`) set to `type`. */
function withType(text: string, sizeLine: number, type: string): string {
  const lines = text.split("\n");
  assert.match(lines[sizeLine], /^\s+type: \w+\s*$/, `line ${sizeLine + 1} is the type`);
  lines[sizeLine] = lines[sizeLine].replace(/type: \w+/, `type: ${type}`);
  return lines.join("\n");
}

/** Loads a fixture as gsw must: exactly the expected refusal, then loading with the fix. */
async function load(file: string): Promise<Config> {
  const text = await Deno.readTextFile(DIR + file);
  const refused = REFUSED[file];
  if (!refused) {
    const config = parseConfig(text, file);
    assert.deepEqual(config.warnings, [], `${file} loads without warnings`);
    return config;
  }
  assert.deepEqual(
    errorsOf(text, file).map((d) => `${d.line}:${d.col}: ${d.message}`),
    [`${refused.line}:${refused.col}: ${refused.message}`],
    `${file} is refused for exactly the measurement Go cannot decode`,
  );
  return parseConfig(withType(text, refused.line, refused.fix), file);
}

/** gsw's engineering value equals the value the Go interpreter gave, bit for bit. */
function assertSameValue(got: RawValue, go: GoField, where: string): void {
  const goType = go.go_type!;
  if (goType.startsWith("float")) {
    assert.equal(typeof got, "number", where);
    assert.ok(Object.is(got, Number(go.value)), `${where}: gsw ${got}, Go ${go.value}`);
  } else {
    assert.ok(typeof got === "number" || typeof got === "bigint", `${where}: ${got}`);
    assert.ok(Number.isInteger(Number(got)), where);
    assert.equal(BigInt(got as number | bigint), BigInt(go.value!), where);
  }
}

Deno.test("rit configs: the fixtures are exactly the configs the Go loader accepts", async () => {
  const files = [...Deno.readDirSync(DIR)].map((e) => e.name).filter((n) => n.endsWith(".yaml"));
  assert.deepEqual(files.sort(), GOLDEN.map((c) => c.file).sort());
  assert.ok(GOLDEN.every((c) => c.error === undefined), "Go accepts every fixture");
  assert.equal(GOLDEN.length, 8);
  for (const c of GOLDEN) await load(c.file);
});

Deno.test("rit configs: layouts and decoded values agree with the Go software's own code", async () => {
  let compared = 0;
  for (const go of GOLDEN) {
    const config = await load(go.file);
    const identifier = new Identifier(config);
    assert.equal(config.name, go.name, go.file);
    assert.deepEqual(config.packets.map((p) => p.name), go.packets.map((p) => p.name), go.file);
    for (const gp of go.packets) {
      const where = `${go.file} ${gp.name}`;
      const p = config.packets.find((q) => q.name === gp.name)!;
      assert.equal(p.port, gp.port, where);
      assert.equal(p.size, gp.size, `${where}: size`);
      assert.equal(p.id, undefined, where);
      assert.deepEqual(
        p.fields.map((f) => [config.measurements[f.measurement].key, f.offset, f.size]),
        gp.fields.map((f) => [f.key, f.offset, f.size]),
        `${where}: offsets and sizes`,
      );
      const bytes = hexBytes(gp.datagram);
      assert.equal(bytes.length, gp.size);
      assert.equal(identifier.identify(gp.port, bytes, 0, bytes.length, false), p.index, where);
      // The Go receiver would read the first bytes of a longer datagram; gsw refuses it.
      const longer = new Uint8Array(bytes.length + 1);
      longer.set(bytes);
      assert.equal(identifier.identify(gp.port, longer, 0, longer.length, false), WRONG_LENGTH);
      const decoded = decodePacket(config, p.index, bytes);
      gp.fields.forEach((gf, i) => {
        const m = decoded[i].measurement;
        if (gf.error !== undefined) {
          assert.ok(REFUSED[go.file], `${where}: Go cannot decode ${gf.key}: ${gf.error}`);
          return;
        }
        const w = `${where} ${gf.key} (Go ${gf.go_type})`;
        assert.equal(m.type === "uint", gf.go_type!.startsWith("uint"), `${w}: signedness`);
        assertSameValue(decoded[i].value, gf, w);
        compared++;
      });
    }
  }
  assert.equal(compared, 194, "every field Go can decode was compared");
});

/** key → [offset, size] of each field of a packet. */
function layout(config: Config, packet: string): Record<string, [number, number]> {
  const p = config.packets.find((q) => q.name === packet);
  assert.ok(p, `no packet ${packet}`);
  return Object.fromEntries(
    p.fields.map((f) => [config.measurements[f.measurement].key, [f.offset, f.size]]),
  );
}

Deno.test("rit benchmark.yaml: names starting with a digit, layouts derived by hand", async () => {
  const c = await load("benchmark.yaml");
  // Go: offsets are running sums of sizes in list order, packet size their total, big-endian.
  const stamps = { UdpSendTimestamp: [0, 8], Sequence: [8, 8] };
  assert.deepEqual(layout(c, "TimestampsOnly"), stamps);
  assert.deepEqual(layout(c, "9Bytes"), { ...stamps, EightBit: [16, 1] });
  assert.deepEqual(layout(c, "11Bytes"), { ...stamps, EightBit: [16, 1], SixteenBit: [17, 2] });
  assert.deepEqual(layout(c, "15Bytes"), {
    ...stamps,
    EightBit: [16, 1],
    SixteenBit: [17, 2],
    ThirtyTwoBit: [19, 4],
  });
  assert.deepEqual(layout(c, "23Bytes"), {
    ...stamps,
    EightBit: [16, 1],
    SixteenBit: [17, 2],
    ThirtyTwoBit: [19, 4],
    SixtyFourBit: [23, 8],
  });
  assert.deepEqual(layout(c, "OneKbyte"), { ...stamps, OneKilobyte: [16, 1008] });
  assert.deepEqual(
    c.packets.map((p) => [p.name, p.port, p.size]),
    [
      ["TimestampsOnly", 10000, 16],
      ["9Bytes", 10001, 17],
      ["11Bytes", 10002, 19],
      ["15Bytes", 10003, 23],
      ["23Bytes", 10004, 31],
      ["OneKbyte", 10005, 1024],
    ],
  );
  const m = (k: string) => c.measurements.find((x) => x.key === k)!;
  assert.deepEqual(
    ["UdpSendTimestamp", "EightBit", "SixteenBit", "ThirtyTwoBit", "SixtyFourBit"].map((k) => [
      m(k).type,
      m(k).endianness,
      m(k).conversion,
    ]),
    [
      ["uint", "big", undefined],
      ["int", "big", undefined],
      ["int", "big", undefined],
      ["int", "big", undefined],
      ["int", "big", undefined],
    ],
  );
  // Health names of a packet whose name starts with a digit.
  assert.ok(c.measurements.some((x) => x.key === "default.9Bytes.age"));
  // A 9Bytes datagram: send time 2^63 + 5 (unsigned), sequence 7, EightBit 0xfe = -2.
  const d = new Uint8Array(17);
  const v = new DataView(d.buffer);
  v.setBigUint64(0, (1n << 63n) + 5n);
  v.setBigUint64(8, 7n);
  d[16] = 0xfe;
  const p9 = c.packets.find((p) => p.name === "9Bytes")!;
  assert.deepEqual(decodePacket(c, p9.index, d).map((f) => f.value), [(1n << 63n) + 5n, 7n, -2]);
});

Deno.test("rit risk.yaml: a flight config's layout and values derived by hand", async () => {
  const c = await load("risk.yaml");
  const two = (o: number): [number, number] => [o, 2];
  assert.deepEqual(layout(c, "PowerModuleDownlink"), {
    VOLT_BATT: two(0),
    CURR_BATT: two(2),
    PWER_BATT: two(4),
    VOLT_3V3: two(6),
    CURR_3V3: two(8),
    PWER_3V3: two(10),
  });
  assert.deepEqual(layout(c, "SensorModuleDownlink"), {
    PRESS: two(0),
    TEMP: two(2),
    ACCEL_X: two(4),
    ACCEL_Y: two(6),
    ACCEL_Z: two(8),
    GYRO_X: two(10),
    GYRO_Y: two(12),
    GYRO_Z: two(14),
  });
  assert.deepEqual(layout(c, "GNSSCoordinates"), {
    LATITUDE: [0, 4],
    LONGITUDE: [4, 4],
    ALTITUDE: [8, 4],
    SAT_COUNT: [12, 2],
    FIX_STATUS: [14, 1],
    FIX_QUALITY: [15, 1],
    FLIGHT_STATE: [16, 1],
  });
  assert.deepEqual(layout(c, "ReceiverStats"), { RSSI: two(0), SNR: [2, 1] });
  assert.deepEqual(
    c.packets.map((p) => [p.name, p.port, p.size]),
    [
      ["PowerModuleDownlink", 11020, 12],
      ["SensorModuleDownlink", 13020, 16],
      ["GNSSCoordinates", 12005, 17],
      ["ReceiverStats", 12006, 3],
    ],
  );
  // Little-endian int16 millivolts, scaled as Go does: float64(raw) * 0.001.
  const power = Uint8Array.of(0xe8, 0x1c, 0x06, 0xff, 0, 0, 0x80, 0, 0xff, 0xff, 0x01, 0x80);
  const pm = c.packets.find((p) => p.name === "PowerModuleDownlink")!.index;
  assert.deepEqual(decodePacket(c, pm, power).map((f) => f.value), [
    7400 * 0.001,
    -250 * 0.001,
    0,
    128 * 0.001,
    -1 * 0.001,
    -32767 * 0.001,
  ]);
  // float32 little-endian coordinates, then uint16, uint8, int-but-unsigned fields.
  const gnss = new Uint8Array(17);
  const g = new DataView(gnss.buffer);
  g.setFloat32(0, 43.0845, true);
  g.setFloat32(4, -77.6749, true);
  g.setFloat32(8, 1234.5, true);
  g.setUint16(12, 0xfffe, true);
  gnss.set([0xff, 3, 2], 14);
  const gi = c.packets.find((p) => p.name === "GNSSCoordinates")!.index;
  assert.deepEqual(decodePacket(c, gi, gnss).map((f) => f.value), [
    Math.fround(43.0845),
    Math.fround(-77.6749),
    1234.5,
    65534,
    255,
    3,
    2,
  ]);
  // RSSI (key) is RCV_RSSI (name): a signed little-endian int16, SNR a signed int8.
  const ri = c.packets.find((p) => p.name === "ReceiverStats")!.index;
  assert.deepEqual(
    decodePacket(c, ri, Uint8Array.of(0x9c, 0xff, 0xf6)).map((f) => [f.measurement.name, f.value]),
    [["RCV_RSSI", -100], ["RCV_SNR", -10]],
  );
});

Deno.test("names: the rules are stated exactly, and a leading digit is fine", () => {
  const config = (packet: string, key = "A", source?: string) =>
    `name: t\n${source ? `sources: [{ name: "${source}" }]\n` : ""}measurements:\n` +
    `  "${key}": { type: uint, size: 1 }\ntelemetry_packets:\n` +
    `  - { name: "${packet}", port: 5000, measurements: ["${key}"] }\n`;
  const ok = parseConfig(config("9Bytes", "1st", "2nd"), "t.yaml");
  assert.deepEqual(ok.measurements.map((m) => m.key).filter((k) => k.includes("9Bytes")), [
    "2nd.9Bytes.age",
  ]);
  assert.equal(ok.sources[0].name, "2nd");
  const rule = "may hold only letters, digits, _ and - (no dots: health measurements are named " +
    "source.packet.age) and must start with a letter, a digit or _; rename it";
  const cases: [string, string][] = [
    [config("-fast"), `5:7: packet "-fast": a packet name ${rule}`],
    [config("nav.fast"), `5:7: packet "nav.fast": a packet name ${rule}`],
    [config("P", "A", "-radio"), `2:13: source "-radio": a source name ${rule}`],
    [
      config("P", "-A"),
      `3:3: measurement "-A": a key may hold only letters, digits and _ . : - and must start ` +
      "with a letter, a digit or _; rename it",
    ],
    [
      config("P", ".A"),
      `3:3: measurement ".A": a key may hold only letters, digits and _ . : - and must start ` +
      "with a letter, a digit or _; rename it",
    ],
  ];
  for (const [text, expected] of cases) {
    const errors = errorsOf(text, "t.yaml").map((d) => `${d.line}:${d.col}: ${d.message}`);
    assert.ok(errors.includes(expected), `expected ${expected}\ngot ${errors.join("\n")}`);
  }
  // YAML reads an unquoted 11 as a number: the message says to quote it.
  const numeric = config("P").replace('name: "P"', "name: 11");
  assert.deepEqual(errorsOf(numeric, "t.yaml").map((d) => d.message), [
    `packet #1: name must be some text, not the number 11; write it in quotes ("11") to make it text`,
  ]);
});

/** A fixture with its ports (in order of appearance) replaced by the pipeline's `{PORTn}`. */
function onFreePorts(text: string, ports: number[]): string {
  ports.forEach((port, i) => text = text.replaceAll(`port: ${port}`, `port: {PORT${i}}`));
  return text;
}

/** Every JSON line `subscribe` prints for `names`, one per name, as name → value. */
async function subscribeValues(
  p: Pipeline,
  names: string[],
): Promise<Map<string, unknown>> {
  const sub: Proc = p.spawn("subscribe", [
    ...names,
    "--json",
    "--count",
    String(names.length),
    "--timeout",
    "10",
    "--run-dir",
    p.runDir,
  ]);
  const status = await sub.status;
  assert.equal(status.code, 0, sub.lines.join("\n"));
  const out = new Map<string, unknown>();
  for (const line of sub.stdout.lines) {
    const j = parseExact(line);
    out.set(j.name as string, j.value);
  }
  return out;
}

Deno.test("rit risk.yaml: Go's datagrams through a real decom reach subscribe as Go decoded them", async () => {
  const go = GOLDEN.find((c) => c.file === "risk.yaml")!;
  const text = onFreePorts(
    await Deno.readTextFile(DIR + "risk.yaml"),
    go.packets.map((p) => p.port),
  );
  await using p = Pipeline.create({ configText: text });
  await p.decom();
  await p.broker();
  for (const [i, gp] of go.packets.entries()) await p.send(p.ports[i], [hexBytes(gp.datagram)]);
  const names = go.packets.flatMap((gp) => gp.fields.map((f) => f.key));
  const got = await subscribeValues(p, [...names, "default.GNSSCoordinates.age"]);
  for (const gp of go.packets) {
    for (const f of gp.fields) {
      const m = p.config.measurements.find((x) => x.key === f.key)!;
      assertSameValue(got.get(m.name) as number, f, `${gp.name} ${f.key} through decom`);
    }
  }
  const age = got.get("default.GNSSCoordinates.age") as number;
  assert.ok(age >= 0 && age < 10, `age ${age}`);
});

Deno.test("rit benchmark.yaml: packet 9Bytes through a real decom, its health by name", async () => {
  const go = GOLDEN.find((c) => c.file === "benchmark.yaml")!;
  // Four of its six packets (the pipeline has four free ports), OneKilobyte as bytes.
  const kept = go.packets.slice(0, 4);
  let text = withType(await Deno.readTextFile(DIR + "benchmark.yaml"), 38, "bytes");
  text = text.slice(0, text.indexOf("  - name: 23Bytes"));
  await using p = Pipeline.create({ configText: onFreePorts(text, kept.map((gp) => gp.port)) });
  await p.decom();
  await p.broker();
  const nine = kept[1];
  assert.equal(nine.name, "9Bytes");
  await p.send(p.ports[1], [hexBytes(nine.datagram)]);
  const got = await subscribeValues(p, [...nine.fields.map((f) => f.key), "default.9Bytes.age"]);
  for (const f of nine.fields) assertSameValue(got.get(f.key) as number, f, `9Bytes ${f.key}`);
  const age = got.get("default.9Bytes.age") as number;
  assert.ok(typeof age === "number" && age >= 0 && age < 10, `age ${age}`);
});
