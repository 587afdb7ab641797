/**
 * What a point read back from InfluxDB must hold for the values gsw decoded: written from the
 * decoded values and InfluxQL's reply alone, never from gsw's line-protocol encoder, so an
 * encoder that loses a digit, a sign or a type fails here.
 */
import assert from "node:assert/strict";
import type { RawValue } from "../../config/mod.ts";
import type { Cell } from "./influxd.ts";

const INT64_MAX = (1n << 63n) - 1n;

/** One packet as sent: its time, tags and decoded engineering values by measurement name. */
export interface ExpectedPoint {
  timeNs: bigint;
  packet: string;
  source: string;
  values: Map<string, RawValue>;
}

/**
 * The cell InfluxDB should return for a value: integers as their exact digits, floats as a
 * number that is the same double, strings and bytes (hex) as text, booleans as booleans;
 * null for what Influx cannot store (NaN, infinities, uint64 above 2^63 − 1 as integers).
 */
export function assertCell(got: Cell, v: RawValue, what: string): void {
  switch (typeof v) {
    case "bigint":
      if (v > INT64_MAX) return assert.equal(got, null, `${what}: ${v} cannot be an integer`);
      return assert.equal(got, v.toString(), what);
    case "number":
      if (!Number.isFinite(v)) return assert.equal(got, null, `${what}: ${v} is not stored`);
      assert.equal(typeof got, "string", `${what}: ${v} came back as ${got}`);
      // Object.is: -0 stays -0, and every digit of the double is there.
      return assert.ok(Object.is(Number(got), v), `${what}: sent ${v}, got ${got}`);
    case "boolean":
    case "string":
      return assert.equal(got, v, what);
  }
  assert.equal(got, Array.from(v, (b) => b.toString(16).padStart(2, "0")).join(""), what);
}

/**
 * Every expected point is a row with the same time, tags and values, and nothing else: other
 * fields null, no row more or less. `fieldOf` maps a measurement name to its field name.
 */
export function assertPoints(
  rows: Record<string, Cell>[],
  expected: ExpectedPoint[],
  fieldOf: (name: string) => string = (n) => n,
): void {
  assert.equal(rows.length, expected.length, "one point per packet");
  const byKey = new Map(rows.map((r) => [`${r.time} ${r.packet}`, r]));
  assert.equal(byKey.size, rows.length, "no two rows of one packet at one time");
  for (const e of expected) {
    const row = byKey.get(`${e.timeNs} ${e.packet}`);
    assert.ok(row, `no point of ${e.packet} at ${e.timeNs}`);
    assert.equal(row.source, e.source);
    const fields = new Set([...e.values.keys()].map(fieldOf));
    for (const [name, v] of e.values) assertCell(row[fieldOf(name)], v, `${e.packet}.${name}`);
    for (const [column, cell] of Object.entries(row)) {
      if (["time", "packet", "source"].includes(column) || fields.has(column)) continue;
      assert.equal(cell, null, `${e.packet} at ${e.timeNs} has no ${column}`);
    }
  }
}
