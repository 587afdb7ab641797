/**
 * Decoding and encoding of measurement values. Expected values are computed here from the
 * bytes with BigInt arithmetic or written out by hand, never with the encoder under test.
 */
import assert from "node:assert/strict";
import {
  decodePacket,
  decodeRaw,
  decodeValue,
  encodeEngineering,
  encodeRaw,
  formatValue,
  limitState,
  loadConfig,
  type Measurement,
  type RawValue,
  toEngineering,
} from "../config/mod.ts";

function meas(p: Partial<Measurement> & Pick<Measurement, "type" | "size">): Measurement {
  return { index: 0, key: "X", name: "X", endianness: "big", packets: [0], ...p };
}

/** Unsigned value of bytes, most significant first when big-endian. */
function unsignedOf(bytes: Uint8Array, little: boolean): bigint {
  let v = 0n;
  const order = little ? [...bytes].reverse() : [...bytes];
  for (const b of order) v = v * 256n + BigInt(b);
  return v;
}

function signedOf(bytes: Uint8Array, little: boolean): bigint {
  const u = unsignedOf(bytes, little);
  const bits = BigInt(bytes.length * 8);
  return u >= 1n << (bits - 1n) ? u - (1n << bits) : u;
}

/** What decodeRaw returns for an integer of `bits` bits: number up to 48 bits, else bigint. */
function asRaw(v: bigint, bits: number): RawValue {
  return bits <= 48 ? Number(v) : v;
}

let seed = 12345;
function random(): number {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed / 2147483648;
}
function randomBytes(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, () => Math.floor(random() * 256));
}

Deno.test("integers: hand-written vectors", () => {
  const cases: [Partial<Measurement>, number[], RawValue][] = [
    [{ type: "int", size: 1 }, [0xff], -1],
    [{ type: "uint", size: 1 }, [0xff], 255],
    [{ type: "int", size: 2 }, [0xff, 0xfe], -2],
    [{ type: "int", size: 2, endianness: "little" }, [0xfe, 0xff], -2],
    [{ type: "uint", size: 2, endianness: "little" }, [0x34, 0x12], 0x1234],
    [{ type: "int", size: 3, endianness: "little" }, [0x00, 0x00, 0x80], -8388608],
    [{ type: "uint", size: 3 }, [0x01, 0x86, 0xa0], 100000],
    [{ type: "int", size: 4 }, [0x80, 0, 0, 0], -2147483648],
    [{ type: "uint", size: 4, endianness: "little" }, [0xff, 0xff, 0xff, 0xff], 4294967295],
    [{ type: "uint", size: 5 }, [1, 2, 3, 4, 5], 0x0102030405],
    [{ type: "int", size: 5, endianness: "little" }, [0xff, 0xff, 0xff, 0xff, 0xff], -1],
    [{ type: "int", size: 6 }, [0x80, 0, 0, 0, 0, 0], -(2 ** 47)],
    [{ type: "uint", size: 6, endianness: "little" }, [0, 0, 0, 0, 0, 0x80], 2 ** 47],
    [{ type: "int", size: 7 }, [0x80, 0, 0, 0, 0, 0, 0], -(2n ** 55n)],
    [{ type: "uint", size: 7, endianness: "little" }, [1, 0, 0, 0, 0, 0, 0x01], 2n ** 48n + 1n],
    [{ type: "int", size: 8 }, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe], -2n],
    [{ type: "uint", size: 8 }, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], 2n ** 64n - 1n],
    [{ type: "int", size: 8, endianness: "little" }, [0, 0, 0, 0, 0, 0, 0, 0x80], -(2n ** 63n)],
  ];
  for (const [p, bytes, expected] of cases) {
    const m = meas({ type: "int", size: bytes.length, ...p });
    assert.equal(decodeRaw(m, Uint8Array.from(bytes)), expected, JSON.stringify(p));
  }
});

Deno.test("integers: every size, signedness and endianness against BigInt arithmetic", () => {
  for (let size = 1; size <= 8; size++) {
    for (const type of ["int", "uint"] as const) {
      for (const endianness of ["big", "little"] as const) {
        const m = meas({ type, size, endianness });
        const little = endianness === "little";
        const patterns = [
          new Uint8Array(size), // zero
          new Uint8Array(size).fill(0xff), // -1 / max
          Uint8Array.from({ length: size }, (_, i) => (i === (little ? size - 1 : 0) ? 0x80 : 0)),
          Uint8Array.from(
            { length: size },
            (_, i) => (i === (little ? size - 1 : 0) ? 0x7f : 0xff),
          ),
          ...Array.from({ length: 50 }, () => randomBytes(size)),
        ];
        for (const bytes of patterns) {
          const v = type === "int" ? signedOf(bytes, little) : unsignedOf(bytes, little);
          assert.deepEqual(
            decodeRaw(m, bytes),
            asRaw(v, size * 8),
            `${type}${size * 8} ${endianness} ${bytes}`,
          );
        }
      }
    }
  }
});

Deno.test("floats: 32 and 64 bits, both endiannesses", () => {
  const f32be = meas({ type: "float", size: 4 });
  const f32le = meas({ type: "float", size: 4, endianness: "little" });
  const f64be = meas({ type: "float", size: 8 });
  const f64le = meas({ type: "float", size: 8, endianness: "little" });
  assert.equal(decodeRaw(f32be, Uint8Array.from([0x3f, 0x80, 0, 0])), 1);
  assert.equal(decodeRaw(f32le, Uint8Array.from([0, 0, 0xc0, 0x3f])), 1.5);
  assert.equal(decodeRaw(f32be, Uint8Array.from([0xc1, 0x48, 0, 0])), -12.5);
  assert.equal(decodeRaw(f32be, Uint8Array.from([0x7f, 0x80, 0, 0])), Infinity);
  assert.ok(Number.isNaN(decodeRaw(f32le, Uint8Array.from([0, 0, 0xc0, 0x7f]))));
  const pi = [0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18];
  assert.equal(decodeRaw(f64be, Uint8Array.from(pi)), Math.PI);
  assert.equal(decodeRaw(f64le, Uint8Array.from(pi.toReversed())), Math.PI);
  assert.equal(decodeRaw(f64be, Uint8Array.from([0xc0, 0x59, 0, 0, 0, 0, 0, 0])), -100);
  assert.equal(decodeRaw(f32be, Uint8Array.from([0x41, 0x44, 0xcc, 0xcd])), Math.fround(12.3));
});

Deno.test("bit fields: hand-written vectors in big- and little-endian containers", () => {
  const bytes = Uint8Array.from([0x80, 0x03]);
  const field = (endianness: "big" | "little", offset: number, width: number, type = "uint") =>
    decodeRaw(
      meas({ type: type as "uint", size: 2, endianness, bits: { offset, width } }),
      bytes,
    );
  // Little-endian container: 0x0380. Bits 7..9 cross from the first byte into the second.
  assert.equal(field("little", 7, 3), 0b111);
  assert.equal(field("little", 8, 2), 0b11);
  assert.equal(field("little", 7, 3, "int"), -1);
  assert.equal(field("little", 0, 7), 0);
  // Big-endian container: 0x8003. Bit 0 is the lowest bit of the second byte.
  assert.equal(field("big", 0, 2), 0b11);
  assert.equal(field("big", 15, 1), 1);
  assert.equal(field("big", 14, 2, "int"), -2); // 0b10 as a 2-bit signed value
  assert.equal(field("big", 7, 3), 0);
  assert.equal(field("big", 1, 1, "bool"), true);
  assert.equal(field("big", 2, 13, "bool"), false);
});

Deno.test("bit fields: every container size against BigInt arithmetic", () => {
  for (let size = 1; size <= 8; size++) {
    for (const endianness of ["big", "little"] as const) {
      for (let i = 0; i < 60; i++) {
        const width = 1 + Math.floor(random() * size * 8);
        const offset = Math.floor(random() * (size * 8 - width + 1));
        const type = random() < 0.5 ? "int" : "uint";
        const bytes = randomBytes(size);
        const container = unsignedOf(bytes, endianness === "little");
        let v = (container >> BigInt(offset)) & ((1n << BigInt(width)) - 1n);
        if (type === "int" && v >= 1n << BigInt(width - 1)) v -= 1n << BigInt(width);
        const m = meas({ type, size, endianness, bits: { offset, width } });
        assert.deepEqual(
          decodeRaw(m, bytes),
          asRaw(v, width),
          `${size} ${endianness} ${offset}+${width}`,
        );
      }
    }
  }
});

Deno.test("bool, string and bytes", () => {
  assert.equal(decodeRaw(meas({ type: "bool", size: 1 }), Uint8Array.from([0])), false);
  assert.equal(decodeRaw(meas({ type: "bool", size: 1 }), Uint8Array.from([2])), true);
  assert.equal(decodeRaw(meas({ type: "bool", size: 4 }), Uint8Array.from([0, 0, 1, 0])), true);
  const s = meas({ type: "string", size: 8 });
  assert.equal(decodeRaw(s, Uint8Array.from([0x48, 0x49, 0, 0x41, 0, 0, 0, 0])), "HI");
  assert.equal(decodeRaw(s, new TextEncoder().encode("ABCDEFGH")), "ABCDEFGH");
  assert.equal(decodeRaw(meas({ type: "string", size: 3 }), Uint8Array.from([0xc3, 0xa9, 0])), "é");
  const raw = Uint8Array.from([1, 2, 3]);
  const b = decodeRaw(meas({ type: "bytes", size: 3 }), raw) as Uint8Array;
  assert.deepEqual([...b], [1, 2, 3]);
  raw[0] = 9;
  assert.equal(b[0], 1, "bytes are copied, so the caller may reuse its buffer");
  assert.throws(() => decodeRaw(s, new Uint8Array(4)), RangeError);
});

Deno.test("engineering values: enum, linear, polynomial, big integers", () => {
  const state = meas({ type: "uint", size: 1, enum: { "0": "PAD", "2": "COAST" } });
  assert.equal(toEngineering(state, 2), "COAST");
  assert.equal(toEngineering(state, 7), "UNKNOWN(7)");
  assert.equal(decodeValue(state, Uint8Array.from([0])), "PAD");
  const volts = meas({
    type: "int",
    size: 2,
    conversion: { kind: "linear", scale: 0.001, offset: 0 },
  });
  assert.equal(decodeValue(volts, Uint8Array.from([0xfb, 0x2e])), -1.234); // -1234 mV
  const kelvin = meas({
    type: "uint",
    size: 1,
    conversion: { kind: "linear", scale: 2, offset: -273 },
  });
  assert.equal(toEngineering(kelvin, 150), 27);
  const temp = meas({
    type: "uint",
    size: 2,
    conversion: { kind: "polynomial", coefficients: [-50, 0.06, -0.000001] },
  });
  assert.ok(Math.abs((toEngineering(temp, 1500) as number) - 37.75) < 1e-9);
  const big = meas({
    type: "uint",
    size: 8,
    conversion: { kind: "linear", scale: 1e-6, offset: 0 },
  });
  assert.equal(toEngineering(big, 5_000_000n), 5);
  assert.equal(toEngineering(meas({ type: "uint", size: 8 }), 7n), 7n);
});

Deno.test("formatValue and limitState", () => {
  const t = meas({
    type: "float",
    size: 4,
    unit: "°C",
    limits: { warnHigh: 60, alarmHigh: 80, alarmLow: -20 },
  });
  assert.equal(formatValue(t, Math.fround(12.3)), "12.3 °C");
  assert.equal(formatValue(t, 37.75), "37.75 °C");
  assert.equal(formatValue(t, 1234567.891), "1234568 °C");
  assert.equal(formatValue(t, 0.00001234), "1.234e-5 °C");
  assert.equal(formatValue(meas({ type: "uint", size: 8, unit: "µs" }), 12n), "12 µs");
  assert.equal(
    formatValue(meas({ type: "uint", size: 1, enum: { "1": "ARMED" } }), "ARMED"),
    "ARMED",
  );
  assert.equal(formatValue(meas({ type: "string", size: 4 }), "a b"), '"a b"');
  assert.equal(
    formatValue(meas({ type: "bytes", size: 2 }), Uint8Array.from([0x0a, 0xff])),
    "0a ff",
  );
  assert.equal(formatValue(meas({ type: "bool", size: 1 }), true), "true");
  assert.equal(limitState(t, 60), "ok");
  assert.equal(limitState(t, 60.5), "warn");
  assert.equal(limitState(t, 80.5), "alarm");
  assert.equal(limitState(t, -20), "ok");
  assert.equal(limitState(t, -21), "alarm");
  assert.equal(limitState(t, NaN), "alarm");
  assert.equal(limitState(meas({ type: "float", size: 4 }), 1e9), "ok");
});

/** A random raw value that a measurement can hold. */
function randomRaw(m: Measurement): RawValue {
  switch (m.type) {
    case "float":
      return m.size === 4 ? Math.fround((random() - 0.5) * 1e6) : (random() - 0.5) * 1e12;
    case "bool":
      return random() < 0.5;
    case "string":
      return "ab☃cdefgh".slice(0, Math.floor(random() * 4));
    case "bytes":
      return randomBytes(m.size);
  }
  const bits = m.bits?.width ?? m.size * 8;
  let v = unsignedOf(randomBytes(8), false) & ((1n << BigInt(bits)) - 1n);
  if (m.type === "int" && v >= 1n << BigInt(bits - 1)) v -= 1n << BigInt(bits);
  return asRaw(v, bits);
}

Deno.test("encode → decode round trips for every type and size, leaving other bytes alone", () => {
  const kinds: Partial<Measurement>[] = [
    { type: "float", size: 4 },
    { type: "float", size: 8 },
    { type: "bool", size: 1 },
    { type: "bool", size: 3 },
    { type: "string", size: 6 },
    { type: "bytes", size: 5 },
  ];
  for (let size = 1; size <= 8; size++) {
    kinds.push({ type: "int", size }, { type: "uint", size });
    const width = 1 + ((size * 5) % (size * 8));
    kinds.push({ type: "int", size, bits: { offset: size * 8 - width, width } });
    kinds.push({ type: "uint", size, bits: { offset: 0, width: Math.min(3, size * 8) } });
    kinds.push({ type: "bool", size, bits: { offset: size * 4, width: 1 } });
  }
  for (const kind of kinds) {
    for (const endianness of ["big", "little"] as const) {
      const m = meas({ type: "int", size: 1, ...kind, endianness });
      for (let i = 0; i < 40; i++) {
        const packet = randomBytes(m.size + 6);
        const before = packet.slice();
        const at = Math.floor(random() * 7);
        const raw = randomRaw(m);
        encodeRaw(m, raw, packet, at);
        const field = packet.subarray(at, at + m.size);
        const back = decodeRaw(m, field);
        const label = `${JSON.stringify(kind)} ${endianness} ${String(raw)}`;
        if (m.type === "bytes") {
          assert.deepEqual([...(back as Uint8Array)], [...(raw as Uint8Array)]);
        } else assert.deepEqual(back, raw, label);
        for (let j = 0; j < packet.length; j++) {
          if (j < at || j >= at + m.size) assert.equal(packet[j], before[j], `byte ${j} ${label}`);
        }
        if (m.bits) {
          // Outside the field, the container keeps its bits.
          const mask = ((1n << BigInt(m.bits.width)) - 1n) << BigInt(m.bits.offset);
          const little = endianness === "little";
          const was = unsignedOf(before.subarray(at, at + m.size), little);
          const now = unsignedOf(field, little);
          assert.equal(now & ~mask, was & ~mask, label);
        }
      }
    }
  }
});

Deno.test("encodeRaw rejects what the field cannot hold", () => {
  const packet = new Uint8Array(4);
  assert.throws(() => encodeRaw(meas({ type: "uint", size: 1 }), 256, packet, 0), RangeError);
  assert.throws(() => encodeRaw(meas({ type: "int", size: 1 }), -129, packet, 0), RangeError);
  assert.throws(
    () => encodeRaw(meas({ type: "uint", size: 1, bits: { offset: 0, width: 3 } }), 8, packet, 0),
    RangeError,
  );
  assert.throws(() => encodeRaw(meas({ type: "uint", size: 2 }), 1, packet, 3), RangeError);
  assert.throws(() => encodeRaw(meas({ type: "uint", size: 2 }), 1.5, packet, 0), TypeError);
  // Strings are cut at a character boundary: "☃" (3 bytes) does not fit after "ab" in 4.
  encodeRaw(meas({ type: "string", size: 4 }), "ab☃", packet, 0);
  assert.deepEqual([...packet], [0x61, 0x62, 0, 0]);
});

Deno.test("encodeEngineering inverts conversions and enums, and clamps", () => {
  const volts = meas({
    type: "int",
    size: 2,
    conversion: { kind: "linear", scale: 0.001, offset: 0 },
  });
  assert.equal(encodeEngineering(volts, 7.4), 7400);
  assert.equal(encodeEngineering(volts, 1000), 32767);
  assert.equal(encodeEngineering(volts, -1000), -32768);
  const temp = meas({
    type: "uint",
    size: 2,
    conversion: { kind: "polynomial", coefficients: [-50, 0.06, -0.000001] },
  });
  for (const celsius of [-20, 0, 25, 60]) {
    const raw = encodeEngineering(temp, celsius) as number;
    // One count is ~0.06 °C, so the round trip is within half of that.
    assert.ok(
      Math.abs((toEngineering(temp, raw) as number) - celsius) < 0.04,
      `${celsius} → ${raw}`,
    );
  }
  const state = meas({ type: "uint", size: 1, enum: { "0": "PAD", "4": "DROGUE" } });
  assert.equal(encodeEngineering(state, "DROGUE"), 4);
  assert.throws(() => encodeEngineering(state, "ORBIT"), RangeError);
  assert.equal(encodeEngineering(meas({ type: "uint", size: 8 }), 1e30), 2n ** 64n - 1n);
  assert.equal(encodeEngineering(meas({ type: "int", size: 8 }), -5n), -5n);
  assert.equal(encodeEngineering(meas({ type: "float", size: 4 }), 1.25), 1.25);
});

Deno.test("decodePacket: every field of a packet inside a larger buffer, as decodeRaw reads it", async () => {
  const config = await loadConfig(new URL("../examples/rocket.yaml", import.meta.url).pathname);
  for (const p of config.packets) {
    for (let round = 0; round < 50; round++) {
      // At an odd offset of a larger buffer, as packets come from decom's packet ring.
      const big = randomBytes(p.size + 7);
      const bytes = big.subarray(3, 3 + p.size);
      const fields = decodePacket(config, p.index, bytes);
      assert.equal(fields.length, p.fields.length);
      fields.forEach((f, i) => {
        const pf = p.fields[i];
        const m = config.measurements[pf.measurement];
        assert.equal(f.measurement, m);
        const alone = bytes.slice(pf.offset, pf.offset + pf.size);
        assert.deepEqual(f.raw, decodeRaw(m, alone), `${p.name}.${m.name}`);
        assert.deepEqual(f.value, decodeValue(m, alone), `${p.name}.${m.name}`);
      });
    }
    // Too short for its last field (padding after it may be missing: nothing reads it).
    const last = p.fields.at(-1)!;
    const short = new Uint8Array(last.offset + last.size - 1);
    assert.throws(() => decodePacket(config, p.index, short), RangeError);
  }
  assert.throws(() => decodePacket(config, config.packets.length, new Uint8Array(64)), RangeError);
});
