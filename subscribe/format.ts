/**
 * How `gsw subscribe` prints an update: one aligned line for people, or one JSON object per
 * line for programs, with 64-bit integers written exactly.
 */
import { formatValue, jsonValue, limitState } from "../config/decode.ts";
import type { Measurement } from "../config/types.ts";
import type { Update } from "../lib/subscription.ts";

/** Receive time as ISO 8601 UTC with microseconds: `2026-11-26T14:11:21.123456Z`. */
export function isoTime(ns: bigint): string {
  const ms = ns / 1_000_000n;
  const micro = (ns / 1000n) % 1000n;
  return new Date(Number(ms)).toISOString().replace("Z", `${micro.toString().padStart(3, "0")}Z`);
}

/** `TIME  NAME  VALUE UNIT  [WARN|ALARM]  [(N skipped)]  [(stale)]`, NAME padded to `width`. */
export function textLine(u: Update, m: Measurement, width: number): string {
  let line = `${isoTime(u.timestampNs)}  ${u.name.padEnd(width)}  ${formatValue(m, u.value)}`;
  const limit = limitState(m, u.value);
  if (limit !== "ok") line += `  ${limit.toUpperCase()}`;
  if (u.skipped > 0) line += `  (${u.skipped} skipped)`;
  if (u.stale) line += "  (stale)";
  return line;
}

/**
 * One JSON object: `measurement` (key), `name`, `value`, `raw`, `unit` (null if none),
 * `seq`, `timestamp_ns` (exact integer), `time` (ISO), `skipped`, and `limit` for
 * measurements with limits, `stale: true` when stale.
 */
export function jsonLine(u: Update, m: Measurement): string {
  let s = `{"measurement":${JSON.stringify(u.measurement)},"name":${JSON.stringify(u.name)}` +
    `,"value":${jsonValue(u.value)},"raw":${jsonValue(u.raw)}` +
    `,"unit":${u.unit === undefined ? "null" : JSON.stringify(u.unit)}` +
    `,"seq":${u.seq},"timestamp_ns":${u.timestampNs},"time":"${isoTime(u.timestampNs)}"` +
    `,"skipped":${u.skipped}`;
  if (m.limits) s += `,"limit":"${limitState(m, u.value)}"`;
  if (u.stale) s += `,"stale":true`;
  return s + "}";
}
