/** Valid configs: the legacy files, the embedded rocket, and each extension of the format. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  type Config,
  ConfigError,
  DEFAULT_CONFIG_PATH,
  findMeasurement,
  loadConfig,
  parseConfig,
  suggestMeasurement,
} from "../config/mod.ts";

const COMPAT = new URL("./fixtures/config/compat/", import.meta.url).pathname;

function measurement(config: Config, name: string) {
  const m = findMeasurement(config, name);
  assert.ok(m, `no measurement ${name}`);
  return m;
}

function packet(config: Config, name: string) {
  const p = config.packets.find((p) => p.name === name);
  assert.ok(p, `no packet ${name}`);
  return p;
}

/** name → offset of each field of a packet. */
function layout(config: Config, name: string): Record<string, number> {
  return Object.fromEntries(
    packet(config, name).fields.map((f) => [config.measurements[f.measurement].key, f.offset]),
  );
}

Deno.test("risk.yaml (legacy) loads with implicit offsets and big-endian default", async () => {
  const c = await loadConfig(COMPAT + "risk.yaml");
  assert.equal(c.name, "flight");
  assert.deepEqual(c.warnings, []);
  assert.deepEqual(layout(c, "GNSSCoordinates"), {
    LATITUDE: 0,
    LONGITUDE: 4,
    ALTITUDE: 8,
    SAT_COUNT: 12,
    FIX_STATUS: 14,
    FIX_QUALITY: 15,
    FLIGHT_STATE: 16,
  });
  assert.equal(packet(c, "GNSSCoordinates").size, 17);
  assert.equal(packet(c, "PowerModuleDownlink").size, 12);
  assert.equal(packet(c, "ReceiverStats").size, 3);
  const volt = measurement(c, "VOLT_BATT");
  assert.deepEqual(volt.conversion, { kind: "linear", scale: 0.001, offset: 0 });
  assert.equal(volt.type, "int");
  assert.equal(measurement(c, "SAT_COUNT").type, "uint");
  // The key and the name both find the measurement.
  assert.equal(measurement(c, "SNR"), measurement(c, "RCV_SNR"));
  assert.equal(measurement(c, "SNR").key, "SNR");
  assert.equal(measurement(c, "SNR").name, "RCV_SNR");
  assert.equal(c.sources.length, 1);
  assert.equal(c.sources[0].name, "default");
  assert.equal(c.sources[0].bind, "0.0.0.0");
  assert.deepEqual(c.sources[0].ports, [11020, 12005, 12006, 13020]);
});

Deno.test("risk-2025.yaml fails at the size of its 2-byte float, and says what to do", async () => {
  const err = await loadConfig(COMPAT + "risk-2025.yaml").catch((e) => e);
  assert.ok(err instanceof ConfigError);
  assert.equal(err.diagnostics.length, 1);
  const d = err.diagnostics[0];
  assert.deepEqual([d.line, d.col, d.severity], [148, 7, "error"]);
  assert.match(d.message, /"SNR" \(name "RCV_SNR"\) is a 2-byte float/);
  assert.match(d.message, /in packet "ReceiverStats"\. Set size to 4 or 8/);
  assert.equal(err.message, `${COMPAT}risk-2025.yaml:148:7: error: ${d.message}`);
});

Deno.test("backplane.yaml as shipped also puts SNR in a packet, so it fails the same way", async () => {
  const err = await loadConfig(COMPAT + "backplane.yaml").catch((e) => e);
  assert.ok(err instanceof ConfigError);
  assert.deepEqual(
    err.diagnostics.map((d) => [d.line, d.col, d.severity]),
    [[183, 7, "error"]],
  );
  assert.match(err.diagnostics[0].message, /2-byte float.*packet "ReceiverStats"/);
});

Deno.test("backplane with SNR unused loads; the impossible SNR is a warning and left out", async () => {
  const c = await loadConfig(COMPAT + "backplane-unused-snr.yaml");
  assert.equal(c.warnings.length, 1);
  const w = c.warnings[0];
  assert.deepEqual([w.line, w.col, w.severity], [183, 7, "warning"]);
  assert.match(w.message, /2-byte float.*no packet \(so it is left out\)/);
  assert.equal(findMeasurement(c, "SNR"), undefined);
  assert.equal(measurement(c, "RCV_RSSI").endianness, "big"); // no endianness: legacy default
  assert.equal(measurement(c, "VOLT_BATT").endianness, "little");
  assert.equal(layout(c, "SensorModule").TEMP_TMP117, 64);
  assert.equal(packet(c, "SensorModule").size, 68);
  assert.equal(packet(c, "ReceiverStats").size, 2);
  assert.deepEqual(layout(c, "GNSSCoordinates"), {
    LATITUDE: 0,
    LONGITUDE: 4,
    ALTITUDE: 8,
    SAT_COUNT: 12,
    FIX_STATUS: 14,
    FIX_QUALITY: 15,
  });
});

Deno.test("examples/rocket.yaml: the embedded default is valid and shows every feature", async () => {
  const c = await loadConfig(DEFAULT_CONFIG_PATH);
  assert.deepEqual(c.warnings, []);
  const bytes = await Deno.readFile(DEFAULT_CONFIG_PATH);
  assert.equal(c.hash, createHash("sha256").update(bytes).digest("hex"));
  const user = c.measurements.filter((m) => !m.health);
  assert.ok(user.length >= 28 && user.length <= 40, `${user.length} measurements`);
  assert.ok(c.packets.length >= 3 && c.packets.length <= 5);
  for (const p of c.packets) {
    assert.ok(p.port >= 10000 && p.port <= 65535);
    assert.ok(p.expectedRateHz! >= 10 && p.expectedRateHz! <= 50);
  }
  const shared = c.packets.filter((p) => p.port === c.packets[c.packets.length - 1].port);
  assert.equal(shared.length, 2);
  assert.notEqual(shared[0].id!.value, shared[1].id!.value);
  assert.equal(c.sources[0].bind, "127.0.0.1");
  const kalman = measurement(c, "KALMAN_MODE");
  assert.deepEqual(kalman.bits, { offset: 7, width: 3 });
  assert.equal(kalman.endianness, "little");
  assert.equal(measurement(c, "ARMED").endianness, "big");
  assert.ok(measurement(c, "FLIGHT_STATE").enum);
  assert.equal(measurement(c, "BOARD_TEMP").conversion?.kind, "polynomial");
  // Anchors and merge keys: ACCEL_Z takes ACCEL_X's definition and adds a description.
  const z = measurement(c, "ACCEL_Z");
  assert.equal(z.size, 2);
  assert.equal(z.unit, "m/s²");
  assert.equal(z.description, "Axial acceleration (along the rocket)");
  assert.equal(measurement(c, "ACCEL_X").description, undefined);
  // Status: implicit offsets after an explicit one, and trailing padding in the size.
  assert.deepEqual(layout(c, "Status").PACKET_SEQ, 3);
  assert.equal(packet(c, "Status").size, 8);
});

Deno.test("health measurements follow the user's, per source and packet", () => {
  const c = parseConfig(
    `
name: two
sources:
  - { name: radio, bind: 0.0.0.0, multicast: 239.1.2.3 }
  - { name: umbilical, bind: 127.0.0.1 }
measurements:
  A: { type: uint, size: 2 }
  B: { type: uint, size: 2 }
telemetry_packets:
  - { name: P, port: 45900, source: radio, measurements: [A] }
  - { name: Q, port: 45901, source: umbilical, measurements: [B] }
`,
    "two.yaml",
  );
  assert.deepEqual(c.measurements.map((m) => m.name), [
    "A",
    "B",
    "radio.packets",
    "radio.bytes",
    "radio.errors",
    "radio.drops",
    "radio.kernel_drops",
    "radio.backlog_bytes",
    "radio.packet_rate",
    "radio.P.age",
    "umbilical.packets",
    "umbilical.bytes",
    "umbilical.errors",
    "umbilical.drops",
    "umbilical.kernel_drops",
    "umbilical.backlog_bytes",
    "umbilical.packet_rate",
    "umbilical.Q.age",
  ]);
  c.measurements.forEach((m, i) => assert.equal(m.index, i));
  const age = measurement(c, "umbilical.Q.age");
  assert.deepEqual(age.health, { source: "umbilical", what: "age", packet: 1 });
  assert.deepEqual([age.type, age.size, age.endianness, age.unit], ["float", 8, "little", "s"]);
  const count = measurement(c, "radio.errors");
  assert.deepEqual([count.type, count.size, count.endianness], ["uint", 8, "little"]);
  assert.deepEqual(count.packets, []);
  assert.equal(measurement(c, "radio.packet_rate").unit, "Hz");
  assert.deepEqual(c.sources, [
    {
      name: "radio",
      kind: "udp",
      bind: "0.0.0.0",
      multicast: "239.1.2.3",
      ports: [45900],
      packets: [0],
    },
    {
      name: "umbilical",
      kind: "udp",
      bind: "127.0.0.1",
      multicast: undefined,
      ports: [45901],
      packets: [1],
    },
  ]);
});

Deno.test("explicit offsets, padding, declared size, references by name, shared measurements", () => {
  const c = parseConfig(
    `
name: layout
measurements:
  TEMP_1:
    name: T1
    type: int
    size: 2
  FLAGS_LO: { type: uint, size: 2, endianness: little, bits: { offset: 0, width: 4 } }
  FLAGS_HI: { type: int, size: 2, endianness: little, bits: { offset: 12, width: 4 } }
  CALL: { type: string, size: 6 }
telemetry_packets:
  - name: P
    port: 45900
    size: 32
    rate_hz: 10
    measurements:
      - { padding: 2 }
      - T1                          # by name
      - { measurement: FLAGS_HI, offset: 10 }
      - { measurement: FLAGS_LO, offset: 10 }
      - CALL                        # right after the flags word
  - name: Q
    port: 45901
    rate_hz: 5
    measurements: [TEMP_1]          # by key
`,
    "layout.yaml",
  );
  const p = packet(c, "P");
  assert.equal(p.size, 32);
  // Sorted by offset; the two bit fields share bytes 10–11 and keep their list order.
  assert.deepEqual(
    p.fields.map((f) => [c.measurements[f.measurement].key, f.offset, f.size]),
    [["TEMP_1", 2, 2], ["FLAGS_HI", 10, 2], ["FLAGS_LO", 10, 2], ["CALL", 12, 6]],
  );
  const t = measurement(c, "T1");
  assert.deepEqual(t.packets, [0, 1]);
  assert.equal(t.expectedRateHz, 15, "updated by both packets");
  assert.equal(packet(c, "Q").size, 2);
});

Deno.test("enum keys may be hex, limits and rates are carried into the model", () => {
  const c = parseConfig(
    `
name: misc
measurements:
  MODE:
    type: uint
    size: 1
    enum: { 0x00: IDLE, 0x10: RUN, "2": STOP }
  V:
    type: uint
    size: 2
    scaling: 0.01
    offset: -5
    unit: V
    rate_hz: 2
    limits: { alarm_low: 0, warn_low: 1, warn_high: 9, alarm_high: 10 }
telemetry_packets:
  - { name: P, port: 45900, rate_hz: 20, measurements: [MODE, V] }
`,
    "misc.yaml",
  );
  assert.deepEqual(measurement(c, "MODE").enum, { "0": "IDLE", "16": "RUN", "2": "STOP" });
  const v = measurement(c, "V");
  assert.deepEqual(v.conversion, { kind: "linear", scale: 0.01, offset: -5 });
  assert.deepEqual(v.limits, { alarmLow: 0, warnLow: 1, warnHigh: 9, alarmHigh: 10 });
  assert.equal(v.expectedRateHz, 2, "the measurement's own rate overrides its packet's");
  assert.equal(measurement(c, "MODE").expectedRateHz, 20);
});

Deno.test("warnings: unused measurement and source, endianness on a string", () => {
  const c = parseConfig(
    `
name: warn
sources:
  - { name: radio }
  - { name: spare }
measurements:
  A: { type: uint, size: 2 }
  UNUSED: { type: uint, size: 2 }
  S: { type: string, size: 4, endianness: little }
telemetry_packets:
  - { name: P, port: 45900, source: radio, measurements: [A, S] }
`,
    "warn.yaml",
  );
  assert.deepEqual(
    c.warnings.map((w) => [w.line, w.col, w.severity, w.message.split(";")[0]]),
    [
      [5, 7, "warning", `source "spare" has no packets`],
      [8, 3, "warning", `measurement "UNUSED" is not in any packet, so it never updates`],
      [9, 31, "warning", `measurement "S": endianness has no effect on string`],
    ],
  );
  assert.ok(findMeasurement(c, "UNUSED"), "a valid unused measurement stays subscribable");
});

Deno.test("findMeasurement and suggestMeasurement", async () => {
  const c = await loadConfig(DEFAULT_CONFIG_PATH);
  assert.equal(findMeasurement(c, "ALTITUDE")?.name, "ALTITUDE");
  assert.equal(findMeasurement(c, "vehicle.Nav.age")?.health?.what, "age");
  assert.equal(findMeasurement(c, "altitude"), undefined);
  assert.equal(suggestMeasurement(c, "altitude"), "ALTITUDE");
  assert.equal(suggestMeasurement(c, "ALTITUDE_"), "ALTITUDE");
  assert.equal(suggestMeasurement(c, "BATT_VOLTGAE"), "BATT_VOLTAGE");
  assert.equal(suggestMeasurement(c, "zzzzzz"), undefined);
});

Deno.test("parseConfig rejects text that is not UTF-8 and reports unreadable files", async () => {
  const err = (() => {
    try {
      parseConfig(Uint8Array.from([0x6e, 0x3a, 0xff]), "x.yaml");
    } catch (e) {
      return e;
    }
  })();
  assert.ok(err instanceof ConfigError);
  assert.match(err.message, /^x\.yaml:1:1: error: the file is not UTF-8 text/);
  const missing = await loadConfig("/nonexistent/vehicle.yaml").catch((e) => e);
  assert.ok(missing instanceof ConfigError);
  assert.match(missing.message, /cannot read the config file .*check the path/);
});

Deno.test("an MQTT source: broker, default topic, credentials file, its own health", () => {
  const c = parseConfig(
    `
name: rocket
sources:
  - name: radio
    type: mqtt
    url: mqtt://field-station.local
    qos: 1
    username: pad
    password_file: secrets/mqtt.txt
  - name: umbilical
    type: mqtt
    url: mqtt://10.0.0.2:11883
    topic: site/rocket/raw/umbilical/#
measurements:
  A: { type: uint, size: 2 }
  B: { type: uint, size: 2 }
telemetry_packets:
  - { name: P, port: 45900, source: radio, measurements: [A] }
  - { name: Q, port: 45901, source: umbilical, measurements: [B] }
`,
    "/srv/gsw/vehicle.yaml",
  );
  const [radio, umbilical] = c.sources;
  assert.equal(radio.kind, "mqtt");
  assert.deepEqual(radio.mqtt, {
    url: "mqtt://field-station.local",
    host: "field-station.local",
    port: 1883,
    topic: "gsw/rocket/raw/radio/#",
    qos: 1,
    username: "pad",
    passwordFile: "/srv/gsw/secrets/mqtt.txt",
    clientId: undefined,
  });
  assert.equal(umbilical.mqtt?.port, 11883);
  assert.equal(umbilical.mqtt?.topic, "site/rocket/raw/umbilical/#");
  assert.deepEqual(radio.ports, [45900], "packets keep the ports they had on the sending side");
  assert.equal(measurement(c, "radio.connected").type, "uint");
  assert.equal(measurement(c, "radio.gaps").type, "uint");
  assert.equal(findMeasurement(c, "radio.kernel_drops")?.health?.what, "kernel_drops");
  const udp = parseConfig(
    "name: v\nmeasurements:\n  A: { type: uint, size: 2 }\n" +
      "telemetry_packets:\n  - { name: P, port: 45900, measurements: [A] }\n",
    "v.yaml",
  );
  assert.equal(udp.sources[0].kind, "udp");
  assert.equal(findMeasurement(udp, "default.connected"), undefined, "UDP sources have no link");
});

Deno.test("an MQTT source's default topic needs a config name that fits in a topic", () => {
  assert.throws(
    () =>
      parseConfig(
        "name: a/b\nsources:\n  - { name: s, type: mqtt, url: 'mqtt://h' }\n" +
          "measurements:\n  A: { type: uint, size: 2 }\n" +
          "telemetry_packets:\n  - { name: P, port: 45900, measurements: [A] }\n",
        "v.yaml",
      ),
    (e: ConfigError) => {
      assert.match(e.message, /v\.yaml:3:7: error: source "s": the default topic .* "a\/b" holds/);
      return true;
    },
  );
});
