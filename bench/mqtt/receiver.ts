/**
 * The receiving end of the mqtt benchmark group, a process of its own. Prints "ready" once
 * subscribed, then, on SIGTERM, one JSON line and exits:
 *
 *   receiver.ts latency-mqtt URL TOPIC OFFSET  — an MQTT client; each payload carries its send
 *       time (u64 ns, CLOCK_REALTIME, little-endian) at OFFSET: {"latencies_ns": [...]}
 *   receiver.ts latency-gsw RUN_DIR MEASUREMENT — a gsw library subscriber of a measurement
 *       holding the send time: {"latencies_ns": [...]}
 *   receiver.ts count URL TOPIC — counts raw datagram messages and their distinct sequence
 *       numbers, printing {"count": n, "distinct": n} every 100 ms as well
 */
import mqtt from "mqtt";
import { realtimeNs } from "../../ffi/mod.ts";
import { decodeRawPacket } from "../../ffi/mqtt.ts";
import { subscribe } from "../../lib/subscription.ts";

const [mode, a, b, c] = Deno.args;
const latencies: number[] = [];
let result: () => unknown = () => ({ latencies_ns: latencies });
let stop: () => Promise<void> = async () => {};

if (mode === "latency-mqtt" || mode === "count") {
  const client = await mqtt.connectAsync(a, { reconnectPeriod: 0 });
  const offset = Number(c ?? 0);
  let count = 0;
  const seqs = new Set<bigint>();
  client.on("message", (_topic, payload) => {
    if (mode === "count") {
      count++;
      const raw = decodeRawPacket(payload);
      if (raw) seqs.add(raw.seq);
      return;
    }
    const sent = payload.readBigUInt64LE(offset);
    latencies.push(Number(realtimeNs() - sent));
  });
  await client.subscribeAsync(b, { qos: 0 });
  if (mode === "count") {
    result = () => ({ count, distinct: seqs.size });
    setInterval(() => console.log(JSON.stringify(result())), 100);
  }
  stop = () => client.endAsync(true);
} else if (mode === "latency-gsw") {
  const sub = subscribe(b, { runDir: a, client: "mqtt bench" });
  (async () => {
    for await (const u of sub) {
      latencies.push(Number(realtimeNs() - (u.value as bigint)));
    }
  })();
  stop = () => Promise.resolve(sub.close());
} else {
  console.error(`receiver: unknown mode ${mode}`);
  Deno.exit(2);
}
console.log("ready");
Deno.addSignalListener("SIGTERM", async () => {
  await stop();
  console.log(JSON.stringify(result()));
  Deno.exit(0);
});
