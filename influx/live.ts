/**
 * Where the live writer meets the packet stream (lib/packets.ts), and its only dependency on
 * it: every datagram decom receives, read from decom's packet ring (decom never waits for it),
 * each identified packet turned into one point and queued for InfluxDB.
 */
import type { Config } from "../config/types.ts";
import { openPackets } from "../lib/packets.ts";
import type { LineEncoder } from "./line.ts";
import type { InfluxWriter } from "./writer.ts";

export interface LiveStats {
  /** Datagrams read from decom's rings. */
  received: number;
  /** Datagrams decom identified as no packet (they are in the raw log, not in InfluxDB). */
  unidentified: number;
  /** Datagrams lost by falling a whole ring behind decom. */
  lost: number;
}

export interface LiveOptions {
  runDir?: string;
  sources?: string[];
  signal: AbortSignal;
  log: (line: string) => void;
}

/** The same problem is said again at most this often. */
const SAY_EVERY_MS = 10_000;

/** Reads every datagram of the config's sources into `writer` until `signal` aborts. */
export async function writeLive(
  config: Config,
  lines: LineEncoder,
  writer: InfluxWriter,
  stats: LiveStats,
  opts: LiveOptions,
): Promise<void> {
  using stream = openPackets(config, {
    runDir: opts.runDir,
    sources: opts.sources,
    signal: opts.signal,
    client: "influx",
    onStatus: (s) => opts.log(s.message),
  });
  let lostSaidAt = -Infinity;
  for await (const batch of stream) {
    if (batch.lost > 0) {
      stats.lost += batch.lost;
      const now = performance.now();
      if (now - lostSaidAt >= SAY_EVERY_MS) {
        lostSaidAt = now;
        opts.log(
          `fell behind decom's packet ring and lost ${batch.lost} datagrams (${stats.lost} in ` +
            "all); a larger decom --packet-ring gives the writer more time",
        );
      }
    }
    for (const p of batch.packets) {
      stats.received++;
      if (p.packet < 0) {
        stats.unidentified++;
        continue;
      }
      const line = lines.encode(p.packet, p.bytes, p.timestampNs);
      if (line !== "") writer.add(line);
    }
  }
}
