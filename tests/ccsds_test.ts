/**
 * CCSDS space packets: packets identified by the primary header's APID (`apid: N`) instead of
 * (or besides) the port. Config rules at file:line:col, then a real decom: three APIDs on one
 * port decode to their own measurements, and a gap in one APID's sequence count is counted in
 * its `<source>.<packet>.seq_gaps` health measurement.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { ConfigError, decodeRaw, parseConfig } from "../config/mod.ts";
import { eventually, Pipeline } from "./helpers/pipeline.ts";
import { createSimState, makePacket } from "../sim/generate.ts";

/** Three CCSDS packets on one port, each with its header skipped by padding. */
const CONFIG = `name: cubesat
sources:
  - name: radio
    bind: 127.0.0.1
measurements:
  BATTERY_V: { type: float, size: 4, endianness: big, unit: V }
  MODE: { type: uint, size: 1 }
  TEMP_C: { type: int, size: 2, endianness: big, unit: C }
  SEQ: { type: uint, size: 2, endianness: big, bits: { offset: 0, width: 14 } }
telemetry_packets:
  - name: Power
    port: {PORT0}
    apid: 100
    measurements: [{ padding: 6 }, BATTERY_V]
  - name: Status
    port: {PORT0}
    apid: 0x101
    measurements: [{ padding: 6 }, MODE]
  - name: Thermal
    port: {PORT0}
    apid: 2047
    measurements: [{ padding: 2 }, SEQ, { padding: 2 }, TEMP_C]
`;

/** A space packet: version 0, telemetry, no secondary header, standalone, `data` after it. */
function spacePacket(apid: number, seq: number, data: number[]): Uint8Array {
  const b = new Uint8Array(6 + data.length);
  const v = new DataView(b.buffer);
  v.setUint16(0, apid & 0x7ff);
  v.setUint16(2, 0xc000 | (seq & 0x3fff));
  v.setUint16(4, data.length - 1);
  b.set(data, 6);
  return b;
}

function errors(text: string): string[] {
  try {
    parseConfig(text, "cubesat.yaml");
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.diagnostics.filter((d) => d.severity === "error").map((d) =>
      `${d.line}:${d.col}: ${d.message}`
    );
  }
  return [];
}

const withPort = (text: string) => text.replaceAll("{PORT0}", "9000");

Deno.test("ccsds config: apid is an id on the primary header; its mistakes are named", () => {
  const c = parseConfig(withPort(CONFIG), "cubesat.yaml");
  const byName = Object.fromEntries(c.packets.map((p) => [p.name, p]));
  assertEquals(byName.Power.apid, 100);
  assertEquals(byName.Status.apid, 0x101);
  assertEquals(byName.Power.id, {
    offset: 0,
    size: 2,
    endianness: "big",
    value: 100,
    mask: 0x7ff,
  });
  assertEquals([byName.Power.size, byName.Status.size, byName.Thermal.size], [10, 7, 8]);
  // The health measurement of each APID's sequence gaps, a counter.
  const gaps = c.measurements.find((m) => m.key === "radio.Thermal.seq_gaps");
  assert(gaps && gaps.type === "uint" && gaps.health?.what === "seq_gaps");

  const bad = (from: string, to: string) => errors(withPort(CONFIG.replace(from, to)));
  assert(/apid.*2047/.test(bad("apid: 2047", "apid: 2048").join()), "range said");
  assert(
    /has both apid and id; a CCSDS packet is told apart by its APID alone/.test(
      bad("apid: 100\n", "apid: 100\n    id: { value: 1 }\n").join(),
    ),
  );
  const overlap = bad("[{ padding: 6 }, BATTERY_V]", "[BATTERY_V]");
  assert(
    overlap.some((e) =>
      /^14:20: .*BATTERY_V.* overlaps the APID .*skip the header with \{padding: 6\}/.test(e)
    ),
    overlap.join("\n"),
  );
  const twice = bad("apid: 0x101", "apid: 100");
  assert(twice.some((e) => /id value 100 is already used by packet "Power"/.test(e)), twice.join());
  const mixed = bad("apid: 0x101", "id: { offset: 0, size: 2, value: 257 }");
  assert(mixed.some((e) => /not where packet "Power" .* has its id \(a CCSDS APID\)/.test(e)));
  const small = bad("measurements: [{ padding: 6 }, MODE]", "size: 4\n    measurements: []");
  assert(small.some((e) => /CCSDS primary header \(bytes 0–5\) ends past/.test(e)), small.join());
});

Deno.test("ccsds: three APIDs on one port decode to their own measurements; a gap is counted", async () => {
  await using p = Pipeline.create({ configText: CONFIG });
  const decom = await p.decom(["--health-interval", "0.1"]);
  await p.broker();
  const keys = [
    "BATTERY_V",
    "MODE",
    "TEMP_C",
    "SEQ",
    "radio.Power.seq_gaps",
    "radio.Status.seq_gaps",
    "radio.Thermal.seq_gaps",
    "radio.errors",
  ];
  const sub = p.subscribeRaw(keys);
  const latest = new Map<string, unknown>();
  const poll = () =>
    sub.reader.takePending((s) => {
      const m = sub.reply.channels[s.channel].measurement!;
      latest.set(m.key, decodeRaw(m, s.bytes));
    });
  const float = (x: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, x);
    return [...b];
  };
  // Power: sequence 0..9, complete. Status: 5, 6, then 9 (2 missing), wrapping after 16383 to
  // 0 (none missing), then 0 again (a repeat: not a gap). Thermal: 16380, then 3 (6 missing).
  const power = Array.from({ length: 10 }, (_, k) => spacePacket(100, k, float(7.5 + k)));
  const status = [5, 6, 9, 16383, 0, 0].map((s, k) => spacePacket(0x101, s, [k + 1]));
  const thermal = [16380, 3].map((s, k) => spacePacket(2047, s, [0xff, k === 0 ? 0xf6 : 0xfb]));
  // Another APID on the same port, and a packet of a known APID but the wrong length.
  const stray = [spacePacket(5, 0, [1, 2, 3, 4]), spacePacket(100, 10, [1])];
  await p.send(p.ports[0], [...power, ...status, ...thermal, ...stray]);

  await eventually("every packet decoded and the gaps published", () => {
    poll();
    return latest.get("radio.Thermal.seq_gaps") === 6n && latest.get("radio.errors") === 2n ||
      undefined;
  });
  assertEquals(latest.get("BATTERY_V"), 16.5);
  assertEquals(latest.get("MODE"), 6);
  assertEquals(latest.get("TEMP_C"), -5);
  assertEquals(latest.get("SEQ"), 3, "a measurement may read the header's sequence count");
  assertEquals(latest.get("radio.Power.seq_gaps"), 0n);
  assertEquals(latest.get("radio.Status.seq_gaps"), 2n);
  await decom.waitFor(/unknown packet id \(10 bytes\)/);
  await decom.waitFor(/wrong length \(7 bytes\)/);
});

Deno.test("sim: a CCSDS packet carries its primary header, sequence count and data length", () => {
  const config = parseConfig(withPort(CONFIG), "cubesat.yaml");
  const state = createSimState(config, 1);
  for (const p of config.packets) {
    for (let n = 0; n < 3; n++) {
      const b = makePacket(config, p, n * 0.1, state);
      const v = new DataView(b.buffer);
      assertEquals(v.getUint16(0), p.apid, `${p.name}: version 0, telemetry, no secondary header`);
      assertEquals(v.getUint16(2), 0xc000 | n, `${p.name}: unsegmented, sequence count ${n}`);
      assertEquals(v.getUint16(4), b.length - 7, `${p.name}: data length`);
    }
  }
  // A measurement on the header's bits reads what the header says.
  const thermal = config.packets.find((p) => p.name === "Thermal")!;
  const b = makePacket(config, thermal, 1, state);
  assertEquals(new DataView(b.buffer).getUint16(2) & 0x3fff, 3);
});
