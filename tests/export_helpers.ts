/**
 * Logs for the export tests: the example config's packets as the simulator makes them, with
 * rejects mixed in, written as a real log file; and what each packet should decode to.
 */
import { type Config, decodeValue, parseConfig, type RawValue } from "../config/mod.ts";
import { encodeLog, type LogRecord } from "../logger/format.ts";
import { createSimState, makePacket } from "../sim/generate.ts";
import { REPO } from "./helpers/pipeline.ts";

export const T0 = 1_760_000_000_000_000_000n;
export const CONFIG_FILE = `${REPO}/examples/rocket.yaml`;
export const CONFIG_BYTES = await Deno.readFile(CONFIG_FILE);
export const CONFIG = parseConfig(CONFIG_BYTES, CONFIG_FILE);

export interface Sent {
  timeNs: bigint;
  packet: string;
  /** Measurement name → value decoded from the packet's bytes at the config's offsets. */
  values: Map<string, RawValue>;
}

/** What a packet encodes: each field decoded from its own bytes, as the config lays it out. */
export function encodedValues(config: Config, packetIndex: number, bytes: Uint8Array) {
  const values = new Map<string, RawValue>();
  for (const f of config.packets[packetIndex].fields) {
    const m = config.measurements[f.measurement];
    values.set(m.name, decodeValue(m, bytes.subarray(f.offset, f.offset + f.size)));
  }
  return values;
}

export function rec(timeNs: bigint, dstPort: number, payload: Uint8Array, flags = 0): LogRecord {
  return {
    timeNs,
    source: 0,
    dstPort,
    srcAddress: "127.0.0.1",
    srcPort: 40000,
    flags,
    origLength: flags ? payload.length + 50 : payload.length,
    payload,
  };
}

/** A log of 20 rounds of every packet type, with rejects mixed in; and what it should decode to. */
export async function writeLog(path: string): Promise<Sent[]> {
  const state = createSimState(CONFIG, 7);
  const records: LogRecord[] = [];
  const sent: Sent[] = [];
  for (let round = 0; round < 20; round++) {
    for (const p of CONFIG.packets) {
      const timeNs = T0 + BigInt(round) * 100_000_000n + BigInt(p.index) * 1_000_003n;
      const bytes = makePacket(CONFIG, p, round / 10, state);
      records.push(rec(timeNs, p.port, bytes));
      sent.push({ timeNs, packet: p.name, values: encodedValues(CONFIG, p.index, bytes) });
    }
    if (round % 5 === 0) {
      const nav = makePacket(CONFIG, CONFIG.packets[0], 0, state);
      records.push(rec(T0, 49999, new TextEncoder().encode("garbage"))); // unknown port
      records.push(rec(T0, 45001, nav.subarray(0, nav.length - 1))); // short
      records.push(rec(T0, 45004, new Uint8Array(31).fill(9))); // unknown id
      records.push(rec(T0, 45001, nav, 1)); // oversize: truncated by decom's buffer
    }
  }
  await Deno.writeFile(
    path,
    encodeLog({
      sequence: 1,
      startNs: T0,
      runStartNs: T0,
      configHash: CONFIG.hash,
      configName: CONFIG.name,
      configPath: CONFIG_FILE,
      host: "test",
      gswVersion: "0.1.0",
    }, records),
  );
  return sent;
}
