/**
 * Invalid configs: each fixture in tests/fixtures/config/bad/ must fail with a message that
 * says what is wrong, at the exact line and column, and without unrelated follow-on errors.
 */
import assert from "node:assert/strict";
import {
  ConfigError,
  DEFAULT_CONFIG_PATH,
  type Diagnostic,
  loadConfig,
  parseConfig,
} from "../config/mod.ts";

const BAD = new URL("./fixtures/config/bad/", import.meta.url).pathname;

/** fixture, line, col, a distinctive part of the message, and how many errors in total. */
const CASES: [string, number, number, string, number?][] = [
  [
    "yaml-syntax.yaml",
    9,
    1,
    "YAML syntax error: Flow sequence in block collection must be sufficiently indented and end with a ]",
  ],
  ["empty.yaml", 1, 1, "the file is empty; a vehicle config needs name, measurements"],
  [
    "top-unknown-key.yaml",
    5,
    1,
    `unknown key "telemetry_packet" (did you mean "telemetry_packets"?)`,
    2,
  ],
  ["missing-name.yaml", 1, 1, `the config: missing required key "name"`],
  ["measurement-unknown-key.yaml", 6, 5, `unknown key "sise" (did you mean "size"?)`, 2],
  ["measurement-missing-type.yaml", 4, 3, `measurement "A": missing required key "type"`],
  [
    "measurement-bad-type.yaml",
    5,
    5,
    `type must be one of int, uint, float, bool, string, bytes, not the text "flaot" (did you mean "float"?)`,
  ],
  [
    "size-not-number.yaml",
    6,
    5,
    `size must be a whole number from 1 to 65507 bytes, not the text "four"`,
  ],
  [
    "float-2-bytes.yaml",
    6,
    5,
    `measurement "A" is a 2-byte float, which cannot be decoded: floats are 4 bytes (32-bit) or 8 bytes (64-bit); it is in packet "P". Set size to 4 or 8`,
  ],
  ["int-9-bytes.yaml", 6, 5, "is a 9-byte int, but integers are 1 to 8 bytes"],
  [
    "bits-too-wide.yaml",
    7,
    5,
    "bit field (offset 4, width 6) needs bits 4–9, but its 1-byte container has bits 0–7",
  ],
  ["bits-on-float.yaml", 7, 5, "bit fields must be int, uint or bool, not float"],
  ["endianness-bad.yaml", 7, 5, `endianness must be one of big, little, not the text "middle"`],
  ["unsigned-yes.yaml", 7, 5, `unsigned must be true or false, not the text "yes"`],
  ["unsigned-float.yaml", 7, 5, "only integers can be unsigned, and this is a float"],
  ["enum-out-of-range.yaml", 9, 7, "enum value 300 can never occur: the raw value is 0 to 255"],
  ["enum-duplicate-label.yaml", 10, 7, `enum label "ON" is used twice (also line 9)`],
  ["enum-with-scaling.yaml", 8, 5, "enum and scaling/polynomial exclude each other"],
  ["polynomial-not-numbers.yaml", 7, 23, "polynomial coefficients must be numbers"],
  ["scaling-and-polynomial.yaml", 8, 5, "use either scaling/offset or polynomial, not both"],
  [
    "limits-out-of-order.yaml",
    9,
    7,
    "limits out of order: alarm_high (8) must be at least warn_high (10)",
  ],
  ["limits-on-string.yaml", 7, 5, "limits apply to numeric values, not to string"],
  ["limits-unknown-key.yaml", 7, 15, `unknown key "warn_hi" (did you mean "warn_high"?)`],
  ["rate-negative.yaml", 8, 5, "rate_hz must be a number above 0, not the number -5"],
  [
    "dangling-reference.yaml",
    11,
    9,
    `refers to unknown measurement "VELOCTY" (did you mean "VELOCITY"?)`,
  ],
  [
    "duplicate-port.yaml",
    11,
    5,
    `port 45900 is also used by "P" (line 7); packets sharing a port need an id`,
    2,
  ],
  ["duplicate-packet-name.yaml", 10, 5, `packet "P" is defined twice (first at line 7)`],
  ["duplicate-measurement-key.yaml", 5, 3, `duplicate key "A" (first at line 4:3)`],
  ["name-collision.yaml", 6, 5, `"A" is already the key or name of measurement "A" (line 4)`],
  ["overlap.yaml", 11, 9, `measurement "B" (bytes 2–3) overlaps measurement "A" (bytes 0–3)`],
  [
    "bits-overlap.yaml",
    11,
    9,
    `measurement "F2" (bits 2–3 of byte 0) overlaps measurement "F1" (bit 3 of byte 0)`,
  ],
  [
    "offset-past-size.yaml",
    12,
    9,
    `measurement "B" (bytes 4–5) ends past the packet's size: 4 (line 9)`,
  ],
  ["id-collision.yaml", 13, 11, `id value 1 is already used by packet "P" on port 45900`],
  [
    "id-layout-mismatch.yaml",
    13,
    5,
    `its id (offset 2, 1 byte, big-endian) is not where packet "P" on port 45900 has its id (offset 0, 1 byte, big-endian)`,
  ],
  [
    "field-overlaps-id.yaml",
    9,
    20,
    "overlaps the packet's id (bytes 0–0); skip the id with {padding: 1}",
  ],
  ["unknown-source.yaml", 11, 5, `unknown source "radoi" (did you mean "radio"?)`],
  [
    "bad-multicast.yaml",
    5,
    5,
    `multicast must be an IPv4 multicast group address (224.0.0.0–239.255.255.255), not "10.1.2.3"`,
  ],
  ["bad-bind.yaml", 5, 5, `bind must be an IPv4 address of this machine`],
  ["ipv6-bind.yaml", 5, 5, `bind ::1 is IPv6, which decom does not receive yet`],
  [
    "ipv6-multicast.yaml",
    6,
    5,
    `multicast group ff02::1 is IPv6, which decom does not receive yet`,
  ],
  [
    "packet-without-source.yaml",
    9,
    5,
    `missing "source:"; with several sources each packet must say which one receives it (radio, umbilical)`,
  ],
  ["empty-packet.yaml", 11, 5, `packet "Q" has no measurements`],
  ["packet-missing-name.yaml", 7, 5, `packet #1: missing required key "name"`, 2],
  [
    "merge-cycle.yaml",
    7,
    5,
    `the merge key "<<" in measurement "A" refers to a map that contains it`,
  ],
  ["missing-port.yaml", 6, 5, `packet "P": missing "port"; add "port: N" (the UDP port)`],
  [
    "port-out-of-range.yaml",
    7,
    5,
    "port must be a whole number from 1 to 65535, not the number 70000",
  ],
  [
    "health-name-collision.yaml",
    4,
    3,
    `"default.packets" is the name of a health measurement that decom publishes for source "default"`,
  ],
  ["measurement-twice-in-packet.yaml", 10, 9, `measurement "A" is listed twice (first at line 9)`],
  [
    "padding-with-measurement.yaml",
    9,
    27,
    "an entry is either {padding: N} or {measurement: KEY, offset: N}, not both",
    2,
  ],
  [
    "measurement-not-map.yaml",
    4,
    3,
    `measurement "A" must be a map of "key: value" lines, not the number 4`,
  ],
  ["packet-name-with-dot.yaml", 6, 5, "a packet name may hold only letters, digits, _ and -"],
  ["duplicate-source.yaml", 5, 5, `source "radio" is defined twice (first at line 4)`],
  ["mqtt-no-url.yaml", 4, 5, `source "radio": missing required key "url"; add "url: mqtt://`],
  ["mqtt-bad-url.yaml", 6, 5, `url "http://broker:1883" must start with mqtt:// (or mqtts://`],
  ["mqtt-tls.yaml", 6, 5, `decom's MQTT source does not speak TLS (mqtts://) yet`],
  [
    "mqtt-bind.yaml",
    7,
    5,
    `unknown key "bind"; allowed keys: name, description, type, url, topic, qos, username`,
  ],
  ["mqtt-bad-topic.yaml", 7, 5, `topic "gsw/#/raw" is not a valid topic filter`],
  [
    "source-bad-type.yaml",
    5,
    5,
    `type must be one of udp, mqtt, serial, tcp, not the text "mqqt" (did you mean "mqtt"?)`,
  ],
  ["missing-size.yaml", 4, 3, `measurement "A": missing required key "size"`],
  [
    "merge-not-map.yaml",
    5,
    5,
    `the merge key "<<" in measurement "A" must be a map of "key: value" lines, not the text "bad"`,
  ],
];

async function diagnosticsOf(file: string): Promise<Diagnostic[]> {
  try {
    await loadConfig(BAD + file);
  } catch (e) {
    if (e instanceof ConfigError) return e.diagnostics;
    throw e;
  }
  throw new assert.AssertionError({ message: `${file} loaded, but it is invalid` });
}

for (const [file, line, col, text, errors = 1] of CASES) {
  Deno.test(`bad config ${file}: ${line}:${col} ${text.slice(0, 40)}…`, async () => {
    const diagnostics = await diagnosticsOf(file);
    const found = diagnostics.find((d) => d.severity === "error" && d.message.includes(text));
    assert.ok(found, `no error containing ${JSON.stringify(text)} in:\n${show(diagnostics)}`);
    assert.deepEqual([found.line, found.col], [line, col], show(diagnostics));
    assert.equal(found.file, BAD + file);
    const count = diagnostics.filter((d) => d.severity === "error").length;
    assert.equal(count, errors, `expected ${errors} error(s):\n${show(diagnostics)}`);
  });
}

function show(ds: Diagnostic[]): string {
  return ds.map((d) => `${d.line}:${d.col} ${d.severity}: ${d.message}`).join("\n");
}

Deno.test("every fixture in bad/ is covered by a case", async () => {
  const files = [];
  for await (const e of Deno.readDir(BAD)) files.push(e.name);
  const covered = new Set([...CASES.map((c) => c[0]), "many-problems.yaml"]);
  assert.deepEqual(files.filter((f) => !covered.has(f)), []);
  assert.ok(CASES.length >= 30);
});

Deno.test("an invalid packet does not confuse what later packets report", async () => {
  const diagnostics = await diagnosticsOf("packet-missing-name.yaml");
  const found = diagnostics.find((d) => d.line === 5 && d.col === 21);
  assert.ok(found, show(diagnostics));
  assert.match(found.message, /"F" is a 2-byte float.*it is in packet "Q"/);
});

Deno.test("a config with several problems reports all of them, in file order", async () => {
  const diagnostics = await diagnosticsOf("many-problems.yaml");
  const errors = diagnostics.filter((d) => d.severity === "error");
  const expected: [number, number, string][] = [
    [6, 5, `measurement "ALT" is a 2-byte float`],
    [10, 5, `unknown key "colour"`],
    [14, 19, `enum label "A" is used twice`],
    [17, 5, `port 45900 is also used by "Q"`],
    [18, 36, `unknown measurement "SPEED"`],
    [20, 5, `port 45900 is also used by "P"`],
    [21, 5, `packet "Q" has no measurements`],
  ];
  assert.equal(errors.length, expected.length, show(diagnostics));
  expected.forEach(([line, col, text], i) => {
    assert.deepEqual([errors[i].line, errors[i].col], [line, col], show(errors));
    assert.ok(errors[i].message.includes(text), `${errors[i].message} lacks ${text}`);
  });
});

Deno.test("ConfigError's message is every diagnostic as file:line:col: severity: message", async () => {
  const err = await loadConfig(BAD + "duplicate-port.yaml").catch((e) => e);
  assert.ok(err instanceof ConfigError);
  const lines = err.message.split("\n");
  assert.equal(lines.length, err.diagnostics.length);
  assert.match(lines[0], /duplicate-port\.yaml:8:5: error: packet "P": port 45900 is also used/);
  assert.match(lines[1], /duplicate-port\.yaml:11:5: error: packet "Q": port 45900/);
});

Deno.test("mangled configs give diagnostics, never a crash", async () => {
  // Line deletions, duplications and replaced values: the loader must report, not throw.
  const lines = (await Deno.readTextFile(DEFAULT_CONFIG_PATH)).split("\n");
  const values = ["", "0", "-1", "70000", "x", "[]", "{}", "~", "1.5", "*nope", "'", "9", "Nav"];
  let state = 7;
  const random = (n: number) => (state = (state * 1103515245 + 12345) % 2147483648) % n;
  for (let i = 0; i < 150; i++) {
    const mangled = [...lines];
    for (let k = 0; k < 3; k++) {
      const j = random(mangled.length);
      const op = random(3);
      if (op === 0) mangled.splice(j, 1);
      else if (op === 1) mangled.splice(j, 0, mangled[random(mangled.length)]);
      else mangled[j] = mangled[j].replace(/:\s*.*$/, `: ${values[random(values.length)]}`);
    }
    try {
      parseConfig(mangled.join("\n"), "mangled.yaml");
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      assert.ok(e.diagnostics.some((d) => d.severity === "error"));
    }
  }
});
