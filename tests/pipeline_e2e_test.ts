/**
 * End to end through real processes: UDP datagrams → decom → broker → subscribers, every
 * value a subscriber sees equal to the value encoded in the datagram that carried it.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodeRaw, findMeasurement } from "../config/mod.ts";
import type { Sample } from "../ffi/mod.ts";
import { subscribe } from "../mod.ts";
import { eventually, Pipeline } from "./helpers/pipeline.ts";

/** A Nav packet (24 bytes) for sequence number k, encoded by hand (not with gsw's encoder). */
function navPacket(k: number): Uint8Array {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint32(0, k * 20, true); // MISSION_TIME, ms, little-endian
  v.setFloat32(4, k * 1.5, true); // ALTITUDE
  v.setFloat32(8, -k, true); // VELOCITY
  v.setInt16(12, -k % 3000, true); // ACCEL_X
  b[18] = k & 0xff; // BARO_PRESSURE, 24-bit little-endian
  b[19] = (k >> 8) & 0xff;
  b[20] = 1;
  v.setUint16(22, (k & 1) | ((k % 4) << 7), true); // IMU_OK bit 0, KALMAN_MODE bits 7-9
  return b;
}

Deno.test("every value a subscriber sees is the value its datagram carried", async () => {
  await using p = Pipeline.create();
  await p.decom();
  await p.broker();
  const names = ["MISSION_TIME", "ALTITUDE", "ACCEL_X", "BARO_PRESSURE", "IMU_OK", "KALMAN_MODE"];
  // Subscribers of every kind at once: the CLI (--json, its own process), the library, and
  // two raw-protocol readers (one rate-limited).
  const cli = p.spawn("subscribe", ["--json", ...names], "subscribe");
  using lib = subscribe(names, { runDir: p.runDir });
  const subs = [p.subscribeRaw(names), p.subscribeRaw(names), p.subscribeRaw(["ALTITUDE"], 20)];
  const ms = names.map((n) => findMeasurement(p.config, n)!);
  const expected = (key: string, k: number): unknown =>
    ({
      MISSION_TIME: k * 20,
      ALTITUDE: Math.fround(k * 1.5),
      ACCEL_X: -k % 3000,
      BARO_PRESSURE: (k & 0xffff) + (1 << 16),
      IMU_OK: (k & 1) === 1,
      KALMAN_MODE: k % 4,
    })[key];

  const N = 2000;
  const seen = subs.map(() => new Map<string, number>());
  const check = (i: number) => (s: Sample) => {
    const m = subs[i].reply.channels[s.channel].measurement!;
    const raw = decodeRaw(m, s.bytes);
    assertEquals(raw, expected(m.key, s.seq), `${m.key} seq ${s.seq}`);
    const last = seen[i].get(m.key) ?? 0;
    assert(s.seq > last, `${m.key}: seq ${s.seq} after ${last}`);
    assertEquals(s.skipped, last === 0 ? 0 : s.seq - last - 1);
    seen[i].set(m.key, s.seq);
  };
  for (let k = 1; k <= N; k += 50) {
    await p.send(p.ports[0], Array.from({ length: 50 }, (_, j) => navPacket(k + j)));
    subs.forEach((s, i) => s.reader.takePending(check(i)));
  }
  await eventually("every subscriber has the last value", () => {
    subs.forEach((s, i) => s.reader.takePending(check(i)));
    const done = seen.every((m, i) => (i < 2 ? ms : [ms[1]]).every((x) => m.get(x.key) === N));
    return done ? true : undefined;
  });
  // The library: every update it delivered carries its datagram's value.
  let libLast = 0;
  for (;;) {
    const u = lib.next(5000);
    assert(u, "the library subscriber got the values");
    assertEquals(u.raw, expected(u.measurement, u.seq), `library ${u.measurement} seq ${u.seq}`);
    if (u.measurement === "ALTITUDE") libLast = u.seq;
    if (libLast === N) break;
  }
  // The CLI: it reaches the last value of every measurement, and every JSON line printed
  // carries its datagram's value.
  for (const name of names) await cli.waitFor(new RegExp(`"measurement":"${name}".*"seq":${N},`));
  const printed = cli.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  assert(printed.length >= names.length, `the CLI printed updates:\n${cli.lines.join("\n")}`);
  for (const o of printed) {
    assertEquals(o.raw, expected(o.measurement, o.seq), `CLI ${o.measurement} seq ${o.seq}`);
  }
  for (const s of subs) {
    s.reader.close();
    s.conn.close();
  }
});
