/**
 * Simulated telemetry for any vehicle config: plausible values for every measurement (a flight
 * profile where names suggest one, sines, counters, toggling flags), packed into packets by a
 * pure function so tests can check packets without sockets.
 */
import { encodeEngineering, encodeRaw, integerBounds } from "../config/encode.ts";
import { convert, type RawValue } from "../config/decode.ts";
import type { Config, Measurement, Packet } from "../config/types.ts";
import { CCSDS_HEADER } from "../config/packets.ts";

/** Flight phases in order; enum labels with these names follow the simulated flight. */
export const PHASES = ["PAD", "BOOST", "COAST", "APOGEE", "DROGUE", "MAIN", "LANDED"] as const;

export interface FlightSample {
  /** Index into PHASES. */
  phase: number;
  altitude: number;
  velocity: number;
  /** What an axial accelerometer reads: kinematic acceleration plus 1 g. */
  acceleration: number;
}

const G = 9.81;
const PAD_TIME = 20;
const BURN_TIME = 3;
const BURN_ACCEL = 70;
const DROGUE_RATE = 30;
const MAIN_RATE = 7;
const MAIN_ALTITUDE = 300;
/** The flight repeats with this period, so a long simulation keeps showing every phase. */
export const FLIGHT_PERIOD = 180;

/** A simple ballistic flight: pad, 3 s boost, coast to apogee, drogue, main, landed. */
export function flightProfile(t: number): FlightSample {
  let s = ((t % FLIGHT_PERIOD) + FLIGHT_PERIOD) % FLIGHT_PERIOD;
  if (s < PAD_TIME) return { phase: 0, altitude: 0, velocity: 0, acceleration: G };
  s -= PAD_TIME;
  if (s < BURN_TIME) {
    return {
      phase: 1,
      altitude: (BURN_ACCEL * s * s) / 2,
      velocity: BURN_ACCEL * s,
      acceleration: BURN_ACCEL + G,
    };
  }
  s -= BURN_TIME;
  const burnoutV = BURN_ACCEL * BURN_TIME;
  const burnoutH = (BURN_ACCEL * BURN_TIME * BURN_TIME) / 2;
  const coastTime = burnoutV / G;
  const apogee = burnoutH + burnoutV * coastTime - (G * coastTime * coastTime) / 2;
  if (s < coastTime) {
    return {
      phase: 2,
      altitude: burnoutH + burnoutV * s - (G * s * s) / 2,
      velocity: burnoutV - G * s,
      // Drag decelerates the rocket beyond gravity; the accelerometer sees only the drag.
      acceleration: -0.02 * (burnoutV - G * s),
    };
  }
  s -= coastTime;
  if (s < 1) return { phase: 3, altitude: apogee, velocity: 0, acceleration: 0 };
  s -= 1;
  const drogueTime = (apogee - MAIN_ALTITUDE) / DROGUE_RATE;
  if (s < drogueTime) {
    return {
      phase: 4,
      altitude: apogee - DROGUE_RATE * s,
      velocity: -DROGUE_RATE,
      acceleration: G,
    };
  }
  s -= drogueTime;
  const mainTime = MAIN_ALTITUDE / MAIN_RATE;
  if (s < mainTime) {
    return {
      phase: 5,
      altitude: MAIN_ALTITUDE - MAIN_RATE * s,
      velocity: -MAIN_RATE,
      acceleration: G,
    };
  }
  return { phase: 6, altitude: 0, velocity: 0, acceleration: G };
}

/** Makes one measurement's value at time t: engineering units, or raw for counters. */
interface Generator {
  raw: boolean;
  value(t: number, state: SimState, sent: number): RawValue;
}

export interface SimState {
  /** Uniform [0, 1) from the seeded generator. */
  random(): number;
  /** Packets made so far, per packet index: counters count these. */
  sent: number[];
  /** One generator per measurement index (undefined for health measurements). */
  generators: (Generator | undefined)[];
}

/** Deterministic for a given seed, so a failing test or demo can be replayed. */
export function createSimState(config: Config, seed = 1): SimState {
  // mulberry32: tiny, fast, good enough for noise.
  let a = seed >>> 0;
  const random = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
  return {
    random,
    sent: config.packets.map(() => 0),
    generators: config.measurements.map((m) => (m.health ? undefined : generatorFor(m))),
  };
}

/**
 * One datagram of `packet` at `t` seconds into the simulation: every field encoded from its
 * generator, then the id. Advances the packet's counter and the random generator in `state`.
 */
export function makePacket(config: Config, packet: Packet, t: number, state: SimState): Uint8Array {
  const buf = new Uint8Array(packet.size);
  const sent = state.sent[packet.index]++;
  for (const f of packet.fields) {
    const m = config.measurements[f.measurement];
    const gen = state.generators[f.measurement]!;
    const v = gen.value(t, state, sent);
    encodeRaw(m, gen.raw ? v : encodeEngineering(m, v), buf, f.offset);
  }
  // Last, so a measurement publishing the id's own bytes cannot overwrite it.
  if (packet.apid !== undefined) {
    writeCcsdsHeader(buf, packet.apid, sent);
  } else if (packet.id) {
    const { offset, size, endianness, value } = packet.id;
    let v = value;
    for (let i = 0; i < size; i++) {
      buf[endianness === "little" ? offset + i : offset + size - 1 - i] = v % 256;
      v = Math.floor(v / 256);
    }
  }
  return buf;
}

/**
 * A CCSDS space packet's primary header (CCSDS 133.0-B-2), big-endian: version 0, telemetry,
 * no secondary header, the APID; unsegmented, the packet's 14-bit sequence count; the data
 * length (bytes after the header, minus one). As a vehicle sends it, so decom's `seq_gaps`
 * counts 0 for a simulated stream.
 */
function writeCcsdsHeader(buf: Uint8Array, apid: number, sent: number): void {
  const seq = sent % 0x4000;
  const dataLength = Math.max(0, buf.length - CCSDS_HEADER - 1);
  buf[0] = (apid >> 8) & 0x07;
  buf[1] = apid & 0xff;
  buf[2] = 0xc0 | (seq >> 8);
  buf[3] = seq & 0xff;
  buf[4] = (dataLength >> 8) & 0xff;
  buf[5] = dataLength & 0xff;
}

/** Roughly normal noise with standard deviation ~`sigma` (sum of three uniforms). */
function noise(state: SimState, sigma: number): number {
  return (state.random() + state.random() + state.random() - 1.5) * 2 * sigma;
}

/** A per-measurement phase and period, so measurements do not move in lockstep. */
function spread(m: Measurement): { phase: number; period: number } {
  return { phase: (m.index * 2.399) % (2 * Math.PI), period: 12 + ((m.index * 7) % 23) };
}

function generatorFor(m: Measurement): Generator {
  const name = m.name.toUpperCase();
  const { phase, period } = spread(m);
  if (m.type === "string") {
    return { raw: true, value: (_t, _s, sent) => `SIM ${sent}` };
  }
  if (m.type === "bytes") {
    return {
      raw: true,
      value: (_t, s) => Uint8Array.from({ length: m.size }, () => Math.floor(s.random() * 256)),
    };
  }
  if (m.enum) return enumGenerator(m, name);
  if (m.type === "bool") {
    // Health-looking flags stay mostly set with short dropouts; others toggle steadily.
    const healthy = /OK|LOCK|CONT|ARM|LOG|VALID|GOOD/.test(name);
    return {
      raw: false,
      value: (t) =>
        healthy
          ? (t + phase * 5) % 23 >= 0.5
          : Math.floor((t + phase) / (3 + (m.index % 5))) % 2 === 1,
    };
  }
  if (/SAT/.test(name)) {
    return { raw: false, value: (t) => 9 + Math.round(2 * Math.sin(t / 17 + phase)) };
  }
  if (/COUNT|SEQ|FRAME_NO/.test(name)) {
    const [, max] = integerBounds(m);
    return { raw: true, value: (_t, _s, sent) => narrowCounter(m, BigInt(sent) % (max + 1n)) };
  }
  if (/TIME|CLOCK|UPTIME|^MET$/.test(name)) {
    const perSecond = m.unit === "µs" || m.unit === "us" ? 1e6 : m.unit === "ms" ? 1e3 : 1;
    return { raw: false, value: (t) => t * perSecond };
  }
  if (/(^|_)ALT/.test(name)) {
    return { raw: false, value: (t, s) => flightProfile(t).altitude + noise(s, 0.5) };
  }
  if (/(^|_)VEL|SPEED/.test(name)) {
    return { raw: false, value: (t, s) => flightProfile(t).velocity + noise(s, 0.2) };
  }
  if (/(^|_)ACC/.test(name) && /(Z|AXIAL)$/.test(name)) {
    return { raw: false, value: (t, s) => flightProfile(t).acceleration + noise(s, 0.3) };
  }
  if (/(^|_)ACC/.test(name)) return { raw: false, value: (_t, s) => noise(s, 0.3) };
  if (/(^|_)LAT/.test(name)) {
    return { raw: false, value: (t) => 32.9903 + 0.001 * Math.sin(t / 60) };
  }
  if (/(^|_)LON/.test(name)) {
    return { raw: false, value: (t) => -106.9751 + 0.001 * Math.cos(t / 60) };
  }
  if (/PRESS|BARO/.test(name)) {
    // Barometric formula; kPa unless the unit says otherwise.
    const scale = m.unit === "Pa" ? 1000 : m.unit === "hPa" || m.unit === "mbar" ? 10 : 1;
    return {
      raw: false,
      value: (t, s) =>
        scale * 101.325 * (1 - 2.25577e-5 * flightProfile(t).altitude) ** 5.25588 + noise(s, 0.01),
    };
  }
  return waveGenerator(m, name, phase, period);
}

function narrowCounter(m: Measurement, v: bigint): RawValue {
  return (m.bits?.width ?? m.size * 8) <= 48 ? Number(v) : v;
}

/** State-like enums follow the flight; others step through their values every few seconds. */
function enumGenerator(m: Measurement, name: string): Generator {
  const values = Object.keys(m.enum!).map(Number).sort((a, b) => a - b);
  const labels = values.map((v) => m.enum![String(v)].toUpperCase());
  if (/STATE|PHASE|MODE/.test(name)) {
    const byPhase = PHASES.map((p, i) => {
      const exact = labels.indexOf(p);
      return values[exact >= 0 ? exact : Math.floor((i * values.length) / PHASES.length)];
    });
    return { raw: true, value: (t) => narrowCounter(m, BigInt(byPhase[flightProfile(t).phase])) };
  }
  return {
    raw: true,
    value: (t) => narrowCounter(m, BigInt(values[Math.floor(t / 7 + m.index) % values.length])),
  };
}

/**
 * A slow sine with noise, centred inside the warning limits (or the raw range), and a short
 * excursion into the warning band about every 100 s, so limit displays get exercised.
 */
function waveGenerator(m: Measurement, name: string, phase: number, period: number): Generator {
  const { center, amplitude, excursion } = band(m, name);
  return {
    raw: false,
    value: (t, s) => {
      if (excursion !== undefined && (t + phase * 10) % 97 < 2) return excursion;
      return center + amplitude * Math.sin((2 * Math.PI * t) / period + phase) +
        noise(s, amplitude * 0.05);
    },
  };
}

function band(
  m: Measurement,
  name: string,
): { center: number; amplitude: number; excursion?: number } {
  const l = m.limits ?? {};
  const lo = l.warnLow ?? l.alarmLow;
  const hi = l.warnHigh ?? l.alarmHigh;
  const excursion = hi !== undefined && l.alarmHigh !== undefined && l.warnHigh !== undefined
    ? (l.warnHigh + l.alarmHigh) / 2
    : lo !== undefined && l.alarmLow !== undefined && l.warnLow !== undefined
    ? (l.warnLow + l.alarmLow) / 2
    : undefined;
  if (lo !== undefined && hi !== undefined) {
    return { center: (lo + hi) / 2, amplitude: ((hi - lo) / 2) * 0.6, excursion };
  }
  if (lo !== undefined) {
    const center = lo + Math.max(Math.abs(lo) * 0.2, 1);
    return { center, amplitude: (center - lo) * 0.4, excursion };
  }
  if (hi !== undefined) {
    const center = hi > 0 ? hi / 2 : hi - 10;
    return { center, amplitude: (hi - center) * 0.5, excursion };
  }
  if (/TEMP/.test(name)) return { center: 20, amplitude: 5 };
  if (m.type === "float") return { center: 0, amplitude: 10 };
  // Integers: the middle half of the raw range, in engineering units.
  const [min, max] = integerBounds(m).map(Number);
  const toEng = (x: number) => (m.conversion ? convert(m.conversion, x) : x);
  const a = toEng(min + (max - min) * 0.25);
  const b = toEng(min + (max - min) * 0.75);
  return { center: (a + b) / 2, amplitude: Math.abs(b - a) / 2 };
}
