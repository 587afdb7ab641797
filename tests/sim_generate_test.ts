/** The simulator's packet generator, without sockets: sizes, ids, and plausible values. */
import assert from "node:assert/strict";
import {
  type Config,
  decodeRaw,
  decodeValue,
  DEFAULT_CONFIG_PATH,
  findMeasurement,
  limitState,
  loadConfig,
  type RawValue,
} from "../config/mod.ts";
import {
  createSimState,
  FLIGHT_PERIOD,
  flightProfile,
  makePacket,
  PHASES,
} from "../sim/generate.ts";

const rocket = await loadConfig(DEFAULT_CONFIG_PATH);

/** Every field of every packet at times 0, step, 2·step, … over one flight. */
function* samples(config: Config, step: number) {
  const state = createSimState(config, 7);
  for (let t = 0; t < FLIGHT_PERIOD; t += step) {
    for (const p of config.packets) {
      const bytes = makePacket(config, p, t, state);
      yield { t, p, bytes };
    }
  }
}

function value(config: Config, bytes: Uint8Array, name: string): RawValue {
  const m = findMeasurement(config, name)!;
  const p = config.packets[m.packets[0]];
  const f = p.fields.find((f) => f.measurement === m.index)!;
  return decodeValue(m, bytes.subarray(f.offset, f.offset + f.size));
}

Deno.test("makePacket: right size and id, values decode within alarm limits, enums labelled", () => {
  const states = { ok: 0, warn: 0, alarm: 0 };
  for (const { t, p, bytes } of samples(rocket, 0.25)) {
    assert.equal(bytes.length, p.size, p.name);
    if (p.id) assert.equal(bytes[p.id.offset], p.id.value);
    for (const f of p.fields) {
      const m = rocket.measurements[f.measurement];
      const v = decodeValue(m, bytes.subarray(f.offset, f.offset + f.size));
      if (m.enum) assert.ok(!String(v).startsWith("UNKNOWN"), `${m.name} = ${v} at ${t}`);
      if (typeof v === "number") assert.ok(Number.isFinite(v), `${m.name} = ${v}`);
      const state = limitState(m, v);
      states[state]++;
      assert.notEqual(state, "alarm", `${m.name} = ${v} at t=${t}`);
    }
  }
  // Mostly within limits, with occasional warnings so limit displays get exercised.
  assert.ok(states.warn > 0);
  assert.ok(states.warn < states.ok * 0.05, JSON.stringify(states));
});

Deno.test("makePacket: the flight state goes through every phase in order", () => {
  const status = rocket.packets.find((p) => p.name === "Status")!;
  const state = createSimState(rocket, 1);
  const seen: RawValue[] = [];
  for (let t = 0; t < FLIGHT_PERIOD; t += 0.1) {
    const v = value(rocket, makePacket(rocket, status, t, state), "FLIGHT_STATE");
    if (seen[seen.length - 1] !== v) seen.push(v);
  }
  assert.deepEqual(seen, [...PHASES]);
});

Deno.test("makePacket: altitude follows a flight to a plausible apogee and back", () => {
  const nav = rocket.packets.find((p) => p.name === "Nav")!;
  const state = createSimState(rocket, 1);
  let apogee = 0;
  for (let t = 0; t < FLIGHT_PERIOD; t += 0.5) {
    const alt = value(rocket, makePacket(rocket, nav, t, state), "ALTITUDE") as number;
    assert.ok(Math.abs(alt - flightProfile(t).altitude) < 5, `t=${t}: ${alt}`);
    apogee = Math.max(apogee, alt);
  }
  assert.ok(apogee > 1500 && apogee < 4000, `apogee ${apogee}`);
  assert.equal(value(rocket, makePacket(rocket, nav, 0, state), "ACCEL_Z") as number > 8, true);
});

Deno.test("makePacket: counters count packets, flags toggle, time advances", () => {
  const status = rocket.packets.find((p) => p.name === "Status")!;
  const nav = rocket.packets.find((p) => p.name === "Nav")!;
  const state = createSimState(rocket, 1);
  const seq = [];
  const imuOk = new Set<RawValue>();
  for (let i = 0; i < 400; i++) {
    const t = i * 0.1;
    seq.push(value(rocket, makePacket(rocket, status, t, state), "PACKET_SEQ"));
    const navBytes = makePacket(rocket, nav, t, state);
    imuOk.add(value(rocket, navBytes, "IMU_OK"));
    const time = value(rocket, navBytes, "MISSION_TIME") as number;
    assert.ok(Math.abs(time - t) < 0.0011, `${time} vs ${t}`);
  }
  assert.deepEqual(seq.slice(0, 5), [0, 1, 2, 3, 4]);
  assert.equal(seq[399], 399);
  assert.deepEqual([...imuOk].sort(), [false, true]);
});

Deno.test("makePacket: deterministic for a seed, different for another", () => {
  const p = rocket.packets[0];
  const a = makePacket(rocket, p, 3, createSimState(rocket, 5));
  const b = makePacket(rocket, p, 3, createSimState(rocket, 5));
  const c = makePacket(rocket, p, 3, createSimState(rocket, 6));
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

Deno.test("makePacket works for the legacy configs too", async () => {
  const risk = await loadConfig(
    new URL("./fixtures/config/compat/risk.yaml", import.meta.url).pathname,
  );
  for (const { p, bytes } of samples(risk, 5)) {
    assert.equal(bytes.length, p.size);
    for (const f of p.fields) {
      const m = risk.measurements[f.measurement];
      const raw = decodeRaw(m, bytes.subarray(f.offset, f.offset + f.size));
      assert.ok(typeof raw === "number" && Number.isFinite(raw), `${m.name} ${raw}`);
    }
  }
});
