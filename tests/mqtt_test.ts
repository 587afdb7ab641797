/**
 * gsw over MQTT with a real mosquitto (a private instance per test): the bridge publishes what
 * decom receives; a decom with a `type: mqtt` source on a second pipeline receives it as if it
 * were there; plain MQTT clients (and the Go ground software's web UI, over WebSockets) read
 * the JSON; a broker that stops and comes back costs exactly the counted drops; bad credentials,
 * unreachable brokers and foreign messages are said clearly and never crash anything.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { decodePacket, jsonValue, type Packet } from "../config/mod.ts";
import { decodeRawPacket } from "../ffi/mqtt.ts";
import { openPackets, type RawPacket } from "../lib/packets.ts";
import { subscribe } from "../lib/subscription.ts";
import { logFiles } from "../logger/paths.ts";
import { readAll } from "../logger/format.ts";
import { createSimState, makePacket } from "../sim/generate.ts";
import { Mosquitto } from "./helpers/mosquitto.ts";
import { collect } from "./helpers/packets.ts";
import { eventually, eventuallyAsync, Pipeline, type Proc, sleep } from "./helpers/pipeline.ts";

/** A's config with its source received over MQTT instead of UDP (same packets and ports). */
function viaMqtt(a: Pipeline, url: string, extra = ""): string {
  const text = Deno.readTextFileSync(a.configPath);
  const out = text.replace(
    /sources:\n {2}- name: vehicle\n {4}bind: [^\n]*\n/,
    `sources:\n  - name: vehicle\n    type: mqtt\n    url: ${url}\n${extra}`,
  );
  assert(out !== text, "the example's sources section changed: update viaMqtt");
  return out;
}

/** Sends `rounds` of every packet type of the example to A, a few ms apart; returns them. */
async function sendFlight(
  p: Pipeline,
  rounds: number,
  perMs = 0.2,
): Promise<{ packet: Packet; bytes: Uint8Array }[]> {
  const state = createSimState(p.config, 7);
  const sent: { packet: Packet; bytes: Uint8Array }[] = [];
  const start = performance.now();
  for (let r = 0; r < rounds; r++) {
    for (const packet of p.config.packets) {
      const bytes = makePacket(p.config, packet, r * 0.1, state);
      sent.push({ packet, bytes });
      await p.send(packet.port, [bytes]);
    }
    // Paced, so the test is about the bridge and not about a burst.
    const due = start + (sent.length / perMs) / 1000 * 1000;
    const wait = due - performance.now();
    if (wait > 0) await sleep(wait);
  }
  return sent;
}

function bridge(p: Pipeline, mq: Mosquitto, args: string[] = []): Proc {
  return p.spawn("bridge", ["--config", p.configPath, "--mqtt", mq.url, ...args]);
}

/** The bridge's exit line, as numbers. */
function bridgeSummary(p: Proc): Record<string, number> {
  const line = p.lines.find((l) => / datagrams read: /.test(l));
  assert(line, `no summary from the bridge:\n${p.lines.join("\n")}`);
  const m = line.match(
    /(\d+) datagrams read: (\d+) sent, (\d+) dropped \(queue full\), (\d+) not sent at exit; (\d+) lost/,
  );
  assert(m, line);
  const [read, sent, dropped, queued, lost] = m.slice(1).map(Number);
  return { read, sent, dropped, queued, lost };
}

Deno.test({
  name: "mqtt: A (UDP) → bridge → mosquitto → B (mqtt source): every packet, value and record",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using mq = await Mosquitto.start();
    await using a = Pipeline.create();
    await using b = Pipeline.create({ configText: viaMqtt(a, mq.url) });
    await a.logger();
    const aDecom = await a.decom();
    await b.logger();
    const bDecom = await b.decom();
    await b.broker();
    await bDecom.waitFor(/connected, subscribed to "gsw\/rocket\/raw\/vehicle\/#"/);
    const br = bridge(a, mq);
    await br.waitFor(/connected to mqtt:/);
    await br.waitFor(/reading every datagram of source "vehicle"/);
    using aRing = openPackets(a.config, { runDir: a.runDir });
    using bRing = openPackets(b.config, { runDir: b.runDir });
    await eventually(
      "both rings attached",
      () => aRing.connected.vehicle && bRing.connected.vehicle || undefined,
    );
    const sent = await sendFlight(a, 200);
    const gotA = await collect(aRing, sent.length);
    const gotB = await collect(bRing, sent.length);
    assertEquals([gotA.lost, gotB.lost], [0, 0]);
    // Every datagram, in A's order, with A's receive time, ports, sender and packet type.
    const key = (p: RawPacket) => ({
      timestampNs: p.timestampNs,
      port: p.port,
      srcAddress: p.srcAddress,
      srcPort: p.srcPort,
      packet: p.packet,
      bytes: Array.from(p.bytes),
    });
    assertEquals(gotB.packets.map(key), gotA.packets.map(key));
    // The same values decode on B, and B's broker serves the newest of each.
    const lastNav = sent.findLast((s) => s.packet.name === "Nav")!;
    const expected = decodePacket(a.config, lastNav.packet.index, lastNav.bytes);
    using sub = subscribe(expected.map((f) => f.measurement.key), { runDir: b.runDir });
    for (const f of expected) {
      const u = await eventuallyAsync(
        `${f.measurement.key} on B`,
        () => Promise.resolve(sub.latest(f.measurement.key)),
      );
      assertEquals(jsonValue(u.value), jsonValue(f.value), f.measurement.key);
    }
    const health = subscribe(["vehicle.connected", "vehicle.gaps", "vehicle.errors"], {
      runDir: b.runDir,
    });
    try {
      const h = await eventuallyAsync("B's link health", () => {
        const v = ["vehicle.connected", "vehicle.gaps", "vehicle.errors"].map((n) =>
          health.latest(n)?.value
        );
        return Promise.resolve(v.every((x) => x !== undefined) ? v : undefined);
      });
      assertEquals(h, [1n, 0n, 0n]);
    } finally {
      health.close();
    }
    // The logs: stop decom first (it hands everything to its logger), then the logger.
    for (const [p, decom] of [[a, aDecom], [b, bDecom]] as const) {
      assertEquals((await decom.stop()).code, 0);
      const logger = p.procs.find((x) => x.name === "logger")!;
      assertEquals((await logger.stop()).code, 0);
    }
    const records = async (p: Pipeline) => {
      const runs = [...Deno.readDirSync(`${p.dir}/logs`)].map((e) => `${p.dir}/logs/${e.name}`);
      const { records } = await readAll(await logFiles(runs));
      return records.map((r) => ({
        timeNs: r.timeNs,
        dstPort: r.dstPort,
        srcAddress: r.srcAddress,
        srcPort: r.srcPort,
        flags: r.flags,
        origLength: r.origLength,
        payload: Array.from(r.payload),
      }));
    };
    const [logA, logB] = [await records(a), await records(b)];
    assertEquals(logA.length, sent.length);
    assertEquals(logB, logA, "B's logger holds exactly A's raw packets");
    await br.stop();
    const s = bridgeSummary(br);
    assertEquals([s.read, s.sent, s.dropped, s.queued, s.lost], [
      sent.length,
      sent.length,
      0,
      0,
      0,
    ]);
  },
});

/** An MQTT client that keeps every message it receives on `filter`. */
async function listen(
  url: string,
  filter: string,
  opts: mqtt.IClientOptions = {},
): Promise<{ client: mqtt.MqttClient; messages: { topic: string; payload: Buffer }[] }> {
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 200, ...opts });
  const messages: { topic: string; payload: Buffer }[] = [];
  client.on("message", (topic, payload) => messages.push({ topic, payload }));
  await client.subscribeAsync(filter, { qos: 1 });
  return { client, messages };
}

Deno.test({
  name:
    "mqtt: decoded JSON per packet and retained latest values; --layout rit as the Go UI reads it",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using mq = await Mosquitto.start({ websockets: true });
    await using a = Pipeline.create();
    await a.decom();
    const json = await listen(mq.url, "gsw/rocket/#");
    try {
      const br = bridge(a, mq, ["--retain-latest", "20", "--no-raw"]);
      await br.waitFor(/reading every datagram/);
      await br.waitFor(/connected to/);
      const sent = await sendFlight(a, 20);
      const navs = sent.filter((s) => s.packet.name === "Nav");
      await eventually(
        "every Nav as JSON",
        () =>
          json.messages.filter((m) => m.topic === "gsw/rocket/Nav").length >= navs.length ||
          undefined,
      );
      await sleep(300); // a latest-value round (20 Hz)
      const navJson = json.messages.filter((m) => m.topic === "gsw/rocket/Nav");
      assertEquals(navJson.length, navs.length);
      navJson.forEach((m, i) => {
        const text = m.payload.toString();
        const decoded = decodePacket(a.config, navs[i].packet.index, navs[i].bytes);
        const expected = `"values":{${
          decoded.map((f) => `${JSON.stringify(f.measurement.key)}:${jsonValue(f.value)}`).join(",")
        }}}`;
        assert(text.endsWith(expected), `${text}\n!= ...${expected}`);
        const obj = JSON.parse(text);
        assertEquals([obj.source, typeof obj.t, typeof obj.seq], ["vehicle", "number", "number"]);
        const t = text.match(/^\{"t":(\d+)\.(\d{6}),"t_ns":(\d+),/);
        assert(t, text);
        assertEquals(t[1] + t[2], t[3].slice(0, -3), "t is t_ns in seconds, to the µs");
      });
      assert(!json.messages.some((m) => m.topic.includes("/raw/")), "--no-raw");
      // Retained latest values: a client arriving now gets the newest of each at once.
      const late = await listen(mq.url, "gsw/rocket/latest/+");
      try {
        const lastNav = decodePacket(a.config, navs.at(-1)!.packet.index, navs.at(-1)!.bytes);
        for (const f of lastNav) {
          const m = await eventually(
            `retained ${f.measurement.key}`,
            () => late.messages.find((x) => x.topic === `gsw/rocket/latest/${f.measurement.key}`),
          );
          assert(
            m.payload.toString().includes(`"value":${jsonValue(f.value)}`),
            `${m.topic}: ${m.payload}`,
          );
        }
      } finally {
        await late.client.endAsync(true);
      }
      await br.stop();
      assertEquals(bridgeSummary(br).sent, sent.length);

      // The Go ground software's web UI: mqtt.js over WebSockets, "gsw/#", JSON.parse of every
      // message, a map of topic -> value (ui/src/stores.ts).
      const ui = new Map<string, unknown>();
      const uiErrors: string[] = [];
      const browser = await mqtt.connectAsync(`ws://127.0.0.1:${mq.wsPort}`);
      browser.on("message", (topic, body) => {
        try {
          ui.set(topic, JSON.parse(body.toString()));
        } catch (e) {
          uiErrors.push(`${topic}: ${(e as Error).message}`);
        }
      });
      try {
        await browser.subscribeAsync("gsw/#");
        const rit = bridge(a, mq, ["--layout", "rit"]);
        await rit.waitFor(/reading every datagram/);
        await rit.waitFor(/connected to/);
        ui.clear();
        uiErrors.length = 0;
        const more = await sendFlight(a, 5);
        const last = new Map<string, unknown>();
        for (const s of more) {
          for (const f of decodePacket(a.config, s.packet.index, s.bytes)) {
            const raw = f.measurement.enum ? f.raw : f.value;
            last.set(`gsw/${s.packet.name}/${f.measurement.key}`, JSON.parse(jsonValue(raw)));
          }
        }
        await eventually(
          "the UI's map holds every measurement",
          () => [...last.keys()].every((t) => ui.has(t)) || undefined,
        );
        await sleep(200);
        const ritTopics = [...ui.keys()].filter((t) => !t.startsWith("gsw/rocket/"));
        assertEquals(new Set(ritTopics), new Set(last.keys()));
        for (const [topic, value] of last) assertEquals(ui.get(topic), value, topic);
        assertEquals(uiErrors, [], "every rit message parses as JSON");
        await rit.stop();
      } finally {
        await browser.endAsync(true);
      }
    } finally {
      await json.client.endAsync(true);
    }
  },
});

Deno.test({
  name:
    "mqtt: the broker stops mid-stream: decom never stalls, the bridge reconnects, drops are exact",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // Persistence: what mosquitto accepted survives its stop for the subscriber's session, so
    // everything the bridge counts as sent must reach it.
    await using mq = await Mosquitto.start({ persistence: true });
    await using a = Pipeline.create();
    await a.decom();
    const sub = await listen(mq.url, "gsw/rocket/raw/#", {
      clientId: "gsw-test-keeper",
      clean: false,
    });
    try {
      // A small queue (~100 datagrams) and QoS 1, so a 2 s outage overflows it exactly.
      const br = bridge(a, mq, ["--qos", "1", "--queue", "0.06", "--health-interval", "0.2"]);
      await br.waitFor(/reading every datagram/);
      await br.waitFor(/connected to/);
      using ring = openPackets(a.config, { runDir: a.runDir });
      await eventually("the ring attached", () => ring.connected.vehicle || undefined);
      const sending = sendFlight(a, 120, 0.25); // 600 datagrams over ~2.4 s
      await sleep(500);
      await mq.stop("SIGTERM");
      await br.waitFor(/lost the connection/);
      const during = performance.now();
      await sleep(1200);
      await mq.restart();
      const sent = await sending;
      await br.waitFor(/connected to .* again/, 20_000);
      // decom kept receiving throughout: every datagram is in its ring, none lost, and the
      // ring shows no pause while the broker was away.
      const got = await collect(ring, sent.length);
      assertEquals(got.lost, 0);
      const t = got.packets.map((p) => Number(p.timestampNs / 1_000_000n));
      const outage = t.filter((x) => x >= Date.now() - (performance.now() - during) - 100);
      assert(outage.length > 100, "datagrams kept arriving while the broker was down");
      const gaps = t.slice(1).map((x, i) => x - t[i]);
      assert(Math.max(...gaps) < 250, `decom paused ${Math.max(...gaps)} ms`);
      await eventually(
        "the queue drained",
        () => br.lines.some((l) => / queue/.test(l)) || undefined,
      );
      await sleep(1500); // the bridge sends what it queued; the subscriber reconnects
      await br.stop();
      const s = bridgeSummary(br);
      assertEquals([s.read, s.lost, s.queued], [sent.length, 0, 0]);
      assert(s.dropped > 0, `the outage overflowed the queue: ${JSON.stringify(s)}`);
      assertEquals(s.sent + s.dropped, sent.length);
      assert(br.lines.some((l) => /the outgoing queue is full/.test(l)), "said so");
      // What the subscriber got: every datagram counted as sent, none counted as dropped.
      await eventually("the subscriber has everything sent", () => {
        const seqs = new Set(sub.messages.map((m) => decodeRawPacket(m.payload)!.seq));
        return seqs.size >= s.sent || undefined;
      }, 15_000);
      const seqs = new Set(sub.messages.map((m) => Number(decodeRawPacket(m.payload)!.seq)));
      const first = Math.min(...got.packets.map((p) => p.seq));
      const missing = got.packets.filter((p) => !seqs.has(p.seq)).length;
      assertEquals(seqs.size, s.sent, "each sent datagram arrived (once counted)");
      assertEquals(missing, s.dropped, "exactly the dropped ones are missing");
      assert(first >= 1);
    } finally {
      await sub.client.endAsync(true);
    }
  },
});

Deno.test({
  name: "mqtt: a wrong password, an unreachable broker, a foreign message: said clearly, no crash",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using mq = await Mosquitto.start({ user: { name: "pad", password: "right" } });
    await using a = Pipeline.create();
    await a.decom();
    const wrong = `${a.dir}/wrong-password`;
    Deno.writeTextFileSync(wrong, "wrong\n");
    const right = `${a.dir}/password`;
    Deno.writeTextFileSync(right, "right\n");

    // The bridge: refused at login → one line, exit 1.
    const refused = bridge(a, mq, ["--username", "pad", "--password-file", wrong]);
    const status = await refused.status;
    assertEquals(status.code, 1, refused.lines.join("\n"));
    assert(
      refused.lines.some((l) =>
        /gsw bridge: mqtt:\/\/127\.0\.0\.1:\d+: the broker refused the login: wrong user name or password, or not allowed \(user "pad"\)/
          .test(l)
      ),
      refused.lines.join("\n"),
    );
    // The password never appears on a command line: from a file or the environment only.
    const env = a.spawn("bridge", [
      "--config",
      a.configPath,
      "--mqtt",
      mq.url,
      "--username",
      "pad",
      "--password-env",
      "GSW_TEST_MQTT_PASSWORD",
    ]);
    assertEquals((await env.status).code, 1);
    assert(env.lines.some((l) => /environment variable GSW_TEST_MQTT_PASSWORD is not set/.test(l)));

    // Unreachable: keeps trying, says so once, decom unaffected; stops cleanly.
    const nowhere = a.spawn("bridge", [
      "--config",
      a.configPath,
      "--mqtt",
      `mqtt://127.0.0.1:${mq.port + 1 === mq.wsPort ? mq.port + 2 : mq.port + 1}`,
    ]);
    await nowhere.waitFor(/ECONNREFUSED|connection refused|refused/i, 10_000);
    await a.send(a.config.packets[0].port, [new Uint8Array(24)]);
    await sleep(1500);
    assertEquals(nowhere.exited, null, "still running, trying again");
    const refusedLines = nowhere.lines.filter((l) => /refused/i.test(l));
    assertEquals(refusedLines.length, 1, `said once:\n${nowhere.lines.join("\n")}`);
    assertEquals((await nowhere.stop()).code, 0);
    assert(
      nowhere.lines.some((l) => /1 datagrams read: 0 sent, 0 dropped/.test(l)),
      nowhere.lines.join("\n"),
    );

    // The right password works.
    const ok = bridge(a, mq, ["--username", "pad", "--password-file", right]);
    await ok.waitFor(/connected to/);
    await ok.stop();

    // A decom with an MQTT source: a wrong password is said (and retried), never a crash; a
    // message that is not a raw packet is rejected, counted and logged raw.
    const bWrong = Pipeline.create({
      configText: viaMqtt(a, mq.url, `    username: pad\n    password_file: ${wrong}\n`),
    });
    await using _bWrong = bWrong;
    const decomWrong = await bWrong.decom();
    await decomWrong.waitFor(/bad user name or password|not authorised/);
    assertEquals(decomWrong.exited, null);
    await decomWrong.stop();

    await using b = Pipeline.create({
      configText: viaMqtt(a, mq.url, `    username: pad\n    password_file: ${right}\n`),
    });
    await b.logger();
    const bDecom = await b.decom();
    await bDecom.waitFor(/connected, subscribed/);
    const pub = await mqtt.connectAsync(mq.url, { username: "pad", password: "right" });
    try {
      await pub.publishAsync("gsw/rocket/raw/vehicle/Nav", "not a packet at all", { qos: 1 });
      const cut = Buffer.from("GSWR\x01\x00\x00\x00 too short");
      await pub.publishAsync("gsw/rocket/raw/vehicle/Nav", cut, { qos: 1 });
    } finally {
      await pub.endAsync(true);
    }
    await bDecom.waitFor(/rejected an MQTT message .*: not a gsw raw packet \(19 bytes\)/);
    assertEquals((await bDecom.stop()).code, 0);
    assert(
      bDecom.lines.some((l) => /2 datagrams .* 2 rejected \(2 not a gsw raw packet\)/.test(l)),
      bDecom.lines.join("\n"),
    );
    await b.procs.find((p) => p.name === "logger")!.stop();
    const runs = [...Deno.readDirSync(`${b.dir}/logs`)].map((e) => `${b.dir}/logs/${e.name}`);
    const { records } = await readAll(await logFiles(runs));
    assertEquals(
      records.map((r) => new TextDecoder().decode(r.payload)),
      ["not a packet at all", "GSWR\x01\x00\x00\x00 too short"],
      "kept raw in the log",
    );
  },
});

Deno.test({
  name:
    "mqtt: the bridge over TLS (mqtts://) with --ca-file; an untrusted broker is refused clearly",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using mq = await Mosquitto.start({ tls: true });
    await using a = Pipeline.create();
    await a.decom();
    const url = `mqtts://127.0.0.1:${mq.tlsPort}`;
    const untrusted = a.spawn("bridge", ["--config", a.configPath, "--mqtt", url]);
    assertEquals((await untrusted.status).code, 1);
    assert(
      untrusted.lines.some((l) =>
        /gsw bridge: mqtts:.*: the broker's TLS certificate is not trusted .*give its certificate authority with --ca-file/
          .test(l)
      ),
      untrusted.lines.join("\n"),
    );
    const listener = await listen(url, "gsw/rocket/Nav", {
      ca: Deno.readTextFileSync(mq.caFile),
    });
    try {
      const br = a.spawn("bridge", [
        "--config",
        a.configPath,
        "--mqtt",
        url,
        "--ca-file",
        mq.caFile,
      ]);
      await br.waitFor(/connected to mqtts:/);
      await br.waitFor(/reading every datagram/);
      const sent = await sendFlight(a, 5);
      await eventually(
        "the values, over TLS",
        () =>
          listener.messages.length === sent.filter((s) => s.packet.name === "Nav").length ||
          undefined,
      );
      await br.stop();
      assertEquals(bridgeSummary(br).sent, sent.length);
    } finally {
      await listener.client.endAsync(true);
    }
  },
});

Deno.test({
  name: "mqtt: start --mqtt on the field station, start on a laptop whose config reads MQTT",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await using mq = await Mosquitto.start();
    await using a = Pipeline.create();
    await using b = Pipeline.create({ configText: viaMqtt(a, mq.url) });
    const start = (p: Pipeline, extra: string[]) =>
      p.spawn("start", [
        "--config",
        p.configPath,
        "--run-dir",
        p.runDir,
        "--log-dir",
        `${p.dir}/logs`,
        "--no-view",
        "--no-dashboard",
        "--duration",
        "8",
        ...extra,
      ]);
    const laptop = start(b, []);
    await laptop.waitFor(/decom\[vehicle\]: MQTT broker .*: connected, subscribed/, 20_000);
    const station = start(a, ["--mqtt", mq.url]);
    await station.waitFor(/bridge: connected to mqtt:/, 20_000);
    assertEquals((await station.status).code, 0, station.lines.join("\n"));
    assertEquals((await laptop.status).code, 0, laptop.lines.join("\n"));
    const said = laptop.lines.join("\n");
    assert(said.includes("no UDP or TCP source in this config: not starting the simulator"), said);
    const s = bridgeSummary(station);
    assert(s.read > 100 && s.sent === s.read, JSON.stringify(s));
    // The laptop's decom decoded and logged what the station's bridge sent while it ran.
    const m = said.match(/decom\[vehicle\]: SIGTERM: stopping\. (\d+) datagrams .* 0 rejected/);
    assert(m && Number(m[1]) > 100, said);
  },
});
