/**
 * The `mqtt` benchmark group: gsw across two machines through a real mosquitto (Debian's, a
 * private instance on free ports; tests/helpers/mosquitto.ts), on loopback.
 *
 * - Latency: a datagram carrying its send time (CLOCK_REALTIME ns) goes by UDP to A's decom;
 *   A's bridge publishes it (QoS 0); B's decom (a `type: mqtt` source) receives it; a gsw library
 *   subscriber on B takes the value and subtracts. The reference, interleaved round by round: the
 *   same-size message published by a plain MQTT client straight to mosquitto and received by
 *   another (mosquitto's own publish → subscribe latency). 1 kHz, so no queue builds up.
 * - Throughput: the highest rate of datagrams the bridge sustains at QoS 0 (raw and JSON
 *   messages, its defaults) with none lost: every datagram read from decom's ring sent, none
 *   dropped, and every raw message counted by a subscriber. Rates rise until a step fails.
 * - decom's cost: its CPU per datagram at a fixed rate with the bridge running against without,
 *   in interleaved rounds (schedstat of every decom thread).
 *
 *   deno run --allow-all bench/mqtt.ts [--quick]
 */
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { realtimeNs, UdpSocket } from "../ffi/mod.ts";
import { Batch } from "../ffi/mod.ts";
import { brokerSocket, decomSocket } from "../control/rundir.ts";
import { Mosquitto } from "../tests/helpers/mosquitto.ts";
import { Pipeline, type Proc, REPO, sleep, taskArgs } from "../tests/helpers/pipeline.ts";
import { childOf, spawnDying } from "./lib/procs.ts";
import { jsonLine, type Metric, metric } from "./lib/report.ts";
import { summarize } from "./lib/stats.ts";
import { cpuNs, layOut, schedNs, sendPaced } from "./lib/send.ts";

const BENCH = "mqtt";
const quick = Deno.args.includes("--quick");
const ROUNDS = quick ? 2 : 5;
/** Samples per latency round, at 1 kHz. */
const SAMPLES = quick ? 1500 : 4000;
/** Samples dropped at the start of each round (the first value may be an old one). */
const WARMUP = 200;
const RATES = quick ? [10_000, 20_000] : [5_000, 10_000, 20_000, 30_000, 40_000];
const STEP_S = quick ? 1 : 3;
const COST_RATE = 5000;
const COST_S = quick ? 2 : 3;
const RECEIVER = `${REPO}/bench/mqtt/receiver.ts`;
const IGNORED_ENV = "LOG_TOKENS,LOG_STREAM,READABLE_STREAM,DEBUG,MQTTJS_SOCKS_PROXY," +
  "NODE_DEBUG,WS_NO_BUFFER_UTIL,WS_NO_UTF_8_VALIDATE";

/** A packet of a send time and ten floats: 48 bytes, a raw MQTT message of 88. */
const CONFIG = `
name: mqttbench
sources:
  - name: vehicle
    bind: 127.0.0.1
measurements:
  SEND_NS: { type: uint, size: 8, endianness: little }
${
  Array.from({ length: 10 }, (_, i) => `  M${i}: { type: float, size: 4, endianness: little }`)
    .join("\n")
}
telemetry_packets:
  - name: Probe
    port: {PORT0}
    measurements: [SEND_NS, ${Array.from({ length: 10 }, (_, i) => `M${i}`).join(", ")}]
`;
const PACKET_LEN = 48;

function say(line: string): void {
  console.error(`mqtt bench: ${line}`);
}

function receiver(p: Pipeline, args: string[]): Proc {
  return spawnDying(p, "receiver", [
    "run",
    "--allow-all",
    `--ignore-env=${IGNORED_ENV}`,
    RECEIVER,
    ...args,
  ]);
}

/** Stops a receiver and returns the JSON line it printed last. */
async function result<T>(r: Proc): Promise<T> {
  await r.stop("SIGTERM", 5000);
  const line = r.stdout.lines.findLast((l) => l.startsWith("{"));
  if (!line) throw new Error(`the receiver printed nothing:\n${r.lines.join("\n")}`);
  return JSON.parse(line) as T;
}

/** A datagram of the probe packet with its send time. */
function probe(buf: Uint8Array, k: number): void {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let i = 0; i < 10; i++) v.setFloat32(8 + i * 4, k + i / 10, true);
}

/**
 * Calls `send(i)` SAMPLES times at 1 kHz on average. Timers, not a spin: the event loop must run
 * between sends (the MQTT client writes from it), and a spinning sender would take a CPU from
 * the processes measured. Each message carries the time it was sent, so jitter in the sending
 * schedule does not enter the latencies.
 */
async function paced(send: (i: number) => void): Promise<void> {
  const t0 = performance.now();
  for (let i = 0; i < SAMPLES; i++) {
    const wait = t0 + i - performance.now();
    await sleep(Math.max(0, wait));
    send(i);
  }
}

async function latencyRounds(a: Pipeline, b: Pipeline, mq: Mosquitto) {
  const e2e: number[] = [];
  const ref: number[] = [];
  const hop: number[] = [];
  const port = a.config.packets[0].port;
  const sender = UdpSocket.sender();
  const batch = new Batch(1);
  const dgram = new Uint8Array(PACKET_LEN);
  const view = new DataView(dgram.buffer);
  const lens = Uint32Array.of(PACKET_LEN);
  const pub = await mqtt.connectAsync(mq.url, { reconnectPeriod: 0 });
  const message = Buffer.alloc(40 + PACKET_LEN);
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // Reference: publish → subscribe through the same mosquitto.
      const r1 = receiver(a, ["latency-mqtt", mq.url, "bench/ref", "0"]);
      await r1.stdout.waitFor(/^ready$/, 20_000);
      await paced((i) => {
        message.writeUInt32LE(i, 8);
        message.writeBigUInt64LE(realtimeNs(), 0);
        pub.publish("bench/ref", message, { qos: 0 });
      });
      await sleep(300);
      const rr = await result<{ latencies_ns: number[] }>(r1);
      ref.push(...rr.latencies_ns.slice(WARMUP));
      // gsw: UDP → A's decom → bridge → mosquitto → B's decom → a library subscriber on B.
      const r2 = receiver(b, ["latency-gsw", b.runDir, "SEND_NS"]);
      await r2.stdout.waitFor(/^ready$/, 20_000);
      await sleep(200);
      await paced((i) => {
        probe(dgram, i);
        view.setBigUint64(0, realtimeNs(), true);
        batch.send(sender.fd, dgram, lens, "127.0.0.1", port);
      });
      await sleep(300);
      const rg = await result<{ latencies_ns: number[] }>(r2);
      e2e.push(...rg.latencies_ns.slice(WARMUP));
      // Where the time goes: the same path up to mosquitto's subscriber, without B.
      const r3 = receiver(a, ["latency-mqtt", mq.url, "gsw/mqttbench/raw/#", "40"]);
      await r3.stdout.waitFor(/^ready$/, 20_000);
      await paced((i) => {
        probe(dgram, i);
        view.setBigUint64(0, realtimeNs(), true);
        batch.send(sender.fd, dgram, lens, "127.0.0.1", port);
      });
      await sleep(300);
      const rh = await result<{ latencies_ns: number[] }>(r3);
      hop.push(...rh.latencies_ns.slice(WARMUP));
      say(
        `round ${round + 1}: broker p50 ${(summarize(rr.latencies_ns).p50 / 1000).toFixed(1)} µs ` +
          `(${rr.latencies_ns.length}), gsw p50 ${
            (summarize(rg.latencies_ns).p50 / 1000).toFixed(1)
          } µs (${rg.latencies_ns.length} of ${SAMPLES}), to a raw subscriber p50 ${
            (summarize(rh.latencies_ns).p50 / 1000).toFixed(1)
          } µs`,
      );
    }
  } finally {
    await pub.endAsync(true);
    batch.close();
    sender.close();
  }
  return { e2e: summarize(e2e), ref: summarize(ref), hop: summarize(hop), e2eCount: e2e.length };
}

function startBridge(a: Pipeline, mq: Mosquitto): Proc {
  return spawnDying(a, "bridge", [
    ...taskArgs("bridge"),
    "--config",
    a.configPath,
    "--mqtt",
    mq.url,
  ]);
}

function bridgeSummary(br: Proc): number[] {
  const line = br.lines.find((l) => / datagrams read: /.test(l)) ?? "";
  const m = line.match(
    /(\d+) datagrams read: (\d+) sent, (\d+) dropped \(queue full\), (\d+) not sent at exit; (\d+) lost/,
  );
  if (!m) throw new Error(`no summary from the bridge:\n${br.lines.join("\n")}`);
  return m.slice(1).map(Number);
}

interface Step {
  rate: number;
  sent: number;
  held: boolean;
  bridgeCpuNsPerDatagram: number;
}

async function throughputStep(a: Pipeline, mq: Mosquitto, rate: number): Promise<Step> {
  const counter = receiver(a, ["count", mq.url, "gsw/mqttbench/raw/#"]);
  await counter.stdout.waitFor(/^ready$/, 20_000);
  const br = startBridge(a, mq);
  try {
    await br.waitFor(/reading every datagram/, 30_000);
    await br.waitFor(/connected to/, 30_000);
    const pid = childOf(br.pid);
    const dgrams = Array.from({ length: 64 }, (_, k) => {
      const d = new Uint8Array(PACKET_LEN);
      probe(d, k);
      return d;
    });
    const cpu0 = cpuNs(pid);
    const sent = await sendPaced(
      layOut(dgrams, dgrams.map(() => a.config.packets[0].port)),
      rate,
      STEP_S,
    );
    const last = performance.now();
    let counted = 0;
    while (performance.now() - last < 2000) {
      const line = counter.stdout.lines.findLast((l) => l.startsWith("{"));
      counted = line ? JSON.parse(line).count : 0;
      if (counted >= sent) break;
      await sleep(50);
    }
    const cpu = cpuNs(pid) - cpu0;
    await br.stop("SIGTERM", 10_000);
    const [read, out, dropped, queued, lost] = bridgeSummary(br);
    const got = await result<{ count: number; distinct: number }>(counter);
    const held = read === sent && out === sent && dropped + queued + lost === 0 &&
      got.count === sent && got.distinct === sent;
    say(
      `bridge at ${rate}/s: ${sent} sent to decom, ${read} read, ${out} published, ${dropped} ` +
        `dropped, ${lost} lost; the subscriber counted ${got.count} (${got.distinct} distinct) ` +
        `within 2 s: ${held ? "held" : "NOT held"}; ${Math.round(cpu / sent)} ns CPU per datagram`,
    );
    return { rate, sent, held, bridgeCpuNsPerDatagram: cpu / sent };
  } finally {
    await br.stop("SIGKILL");
    await counter.stop("SIGKILL");
  }
}

async function costRounds(a: Pipeline, mq: Mosquitto, decomPid: number) {
  const cost = [[0, 0], [0, 0]]; // [phase][cpu ns, datagrams]; phase 0: no bridge
  const dgrams = Array.from({ length: 16 }, (_, k) => {
    const d = new Uint8Array(PACKET_LEN);
    probe(d, k);
    return d;
  });
  const batch = layOut(dgrams, dgrams.map(() => a.config.packets[0].port));
  for (let round = 0; round < ROUNDS; round++) {
    for (const phase of [0, 1]) {
      const br = phase === 1 ? startBridge(a, mq) : undefined;
      try {
        if (br) {
          await br.waitFor(/reading every datagram/, 30_000);
          await br.waitFor(/connected to/, 30_000);
        }
        await sleep(200);
        const c0 = schedNs(decomPid);
        const n = await sendPaced(batch, COST_RATE, COST_S);
        await sleep(100);
        cost[phase][0] += schedNs(decomPid) - c0;
        cost[phase][1] += n;
      } finally {
        await br?.stop("SIGTERM", 10_000);
      }
    }
  }
  const [none, bridge] = cost.map(([ns, n]) => ns / n);
  say(`decom: ${none.toFixed(0)} ns per datagram alone, ${bridge.toFixed(0)} with the bridge`);
  return { none, bridge };
}

async function main(): Promise<void> {
  await using mq = await Mosquitto.start();
  await using a = Pipeline.create({ configText: CONFIG });
  const bText = Deno.readTextFileSync(a.configPath).replace(
    /bind: 127\.0\.0\.1\n/,
    `type: mqtt\n    url: ${mq.url}\n`,
  );
  await using b = Pipeline.create({ configText: bText });
  const decomA = spawnDying(a, "decom", [...taskArgs("decom"), "--config", a.configPath]);
  await a.waitForSocket(decomSocket(a.runDir, "vehicle"), decomA);
  const decomB = spawnDying(b, "decom", [...taskArgs("decom"), "--config", b.configPath]);
  await b.waitForSocket(decomSocket(b.runDir, "vehicle"), decomB);
  const brokerB = spawnDying(b, "broker", [...taskArgs("broker"), "--config", b.configPath]);
  await b.waitForSocket(brokerSocket(b.runDir), brokerB);
  await decomB.waitFor(/connected, subscribed/, 20_000);

  const bridge = startBridge(a, mq);
  await bridge.waitFor(/reading every datagram/, 30_000);
  await bridge.waitFor(/connected to/, 30_000);
  const lat = await latencyRounds(a, b, mq);
  await bridge.stop("SIGTERM", 10_000);

  const steps: Step[] = [];
  for (const rate of RATES) {
    const step = await throughputStep(a, mq, rate);
    steps.push(step);
    if (!step.held) break;
  }
  const best = steps.filter((s) => s.held).at(-1);
  const cost = await costRounds(a, mq, decomA.pid);

  const us = (ns: number) => ns / 1000;
  const out: Metric[] = [
    metric(BENCH, "mqtt_e2e_p50_us", us(lat.e2e.p50), "us", us(lat.ref.p50)),
    metric(BENCH, "mqtt_e2e_p99_us", us(lat.e2e.p99), "us", us(lat.ref.p99)),
    metric(BENCH, "mqtt_broker_p50_us", us(lat.ref.p50), "us"),
    metric(BENCH, "mqtt_broker_p99_us", us(lat.ref.p99), "us"),
    metric(BENCH, "mqtt_bridge_hop_p50_us", us(lat.hop.p50), "us", us(lat.ref.p50)),
    metric(BENCH, "mqtt_e2e_vs_broker_p50_ratio", lat.e2e.p50 / lat.ref.p50, "ratio"),
    metric(BENCH, "mqtt_e2e_samples", lat.e2eCount, "count", (SAMPLES - WARMUP) * ROUNDS),
    metric(BENCH, "mqtt_bridge_max_pps", best?.rate ?? 0, "datagrams/s"),
    metric(
      BENCH,
      "mqtt_bridge_cpu_ns_per_datagram",
      best?.bridgeCpuNsPerDatagram ?? null,
      "ns",
    ),
    metric(BENCH, "fanout_decom_cost_ratio_bridge", cost.bridge / cost.none, "ratio"),
    metric(BENCH, "decom_ns_per_datagram_with_bridge", cost.bridge, "ns", cost.none),
  ];
  for (const m of out) console.log(jsonLine(m));
}

await main();
