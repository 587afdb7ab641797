/**
 * `sim` driving stream sources through real decoms: TCP both ways (decom listening, decom
 * connecting), with decom restarted under it, and a serial source over a socat PTY pair. Every
 * packet it sends must decode (no framing or CRC errors at decom).
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { createSocket } from "node:dgram";
import { subscribe } from "../mod.ts";
import {
  eventually,
  freeTcpPort,
  Pipeline,
  type Proc,
  ptyPair,
  sleep,
} from "./helpers/pipeline.ts";

function config(sources: string, packets: string): string {
  return `name: streams
sources:
${sources}
measurements:
  A_COUNT: { type: uint, size: 4, endianness: little }
  A_VOLTS: { type: float, size: 4, unit: V }
  B_COUNT: { type: uint, size: 2, endianness: big }
  B_TEMP: { type: float, size: 4, unit: degC }
telemetry_packets:
${packets}
`;
}

/** The newest value of each of `keys`, read through the library while the test runs. */
function follow(runDir: string, keys: string[]) {
  const sub = subscribe(keys, { runDir });
  const latest = new Map<string, { raw: unknown; seq: bigint }>();
  const done = (async () => {
    for await (const u of sub) latest.set(u.measurement, { raw: u.raw, seq: BigInt(u.seq) });
  })();
  return {
    latest,
    async close() {
      sub.close();
      await done;
    },
  };
}

/** Waits until `key`'s sequence number has moved `by` past where it is now. */
async function advances(latest: Map<string, { seq: bigint }>, key: string, by: number) {
  const from = latest.get(key)?.seq ?? 0n;
  await eventually(
    `${key} advancing`,
    () => (latest.get(key)?.seq ?? 0n) >= from + BigInt(by) || undefined,
    10_000,
  );
}

async function stopSim(sim: Proc): Promise<string> {
  sim.kill("SIGINT");
  const status = await sim.status;
  assertEquals(status.code, 0, sim.output.text);
  return sim.output.text;
}

Deno.test({
  name: "sim: TCP sources both ways, framed; decom restarted under it, the sim sends again",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const [pa, pb] = [freeTcpPort(), freeTcpPort()];
    await using p = Pipeline.create({
      configText: config(
        `  - { name: modem, type: tcp, listen: "127.0.0.1:${pa}", framing: { type: cobs, crc: crc16-ccitt } }\n` +
          `  - { name: back, type: tcp, connect: "127.0.0.1:${pb}", framing: { type: length, length_bytes: 2, crc: crc32c } }`,
        "  - { name: A, source: modem, rate_hz: 50, measurements: [A_COUNT, A_VOLTS] }\n" +
          "  - { name: B, source: back, rate_hz: 20, measurements: [B_COUNT, B_TEMP] }",
      ),
    });
    // The simulator first, as `start` may order it: nothing is there to take its packets yet.
    const sim = p.spawn("sim", ["--config", p.configPath, "--rate-scale", "4"]);
    await sim.waitFor(/listening on 127\.0\.0\.1:\d+ for decom's source "back"/);
    await sim.waitFor(/source "modem": .*ECONNREFUSED.*trying every 1 s/);
    const decomA = await p.decom(["--source", "modem", "--health-interval", "0.2"]);
    const decomB = await p.decom(["--source", "back", "--health-interval", "0.2"]);
    await p.broker();
    const keys = ["A_COUNT", "A_VOLTS", "B_COUNT", "B_TEMP", "modem.errors", "back.errors"];
    const f = follow(p.runDir, keys);
    try {
      await advances(f.latest, "A_COUNT", 50);
      await advances(f.latest, "B_COUNT", 20);
      await sim.waitFor(/source "modem": sending to 127\.0\.0\.1:\d+/);
      await sim.waitFor(/source "back": sending to 127\.0\.0\.1:\d+/);

      // decom of the listening source goes away and comes back: the sim says so and reconnects.
      await decomA.stop("SIGKILL");
      await sim.waitFor(/source "modem": writing to .*; sending again once decom is back/);
      await p.decom(["--source", "modem", "--health-interval", "0.2"]);
      await eventually("modem's values again", () => {
        const lines = sim.output.lines.filter((l) => /source "modem": sending to/.test(l));
        return lines.length >= 2 || undefined;
      }, 10_000);
      await advances(f.latest, "A_COUNT", 50);

      // decom of the connecting source goes away and comes back: the sim serves it again.
      await decomB.stop("SIGKILL");
      await sim.waitFor(
        /source "back": (writing to .*; sending again once decom is back|no decom connected)/,
      );
      await p.decom(["--source", "back", "--health-interval", "0.2"]);
      await eventually("back's values again", () => {
        const lines = sim.output.lines.filter((l) => /source "back": sending to/.test(l));
        return lines.length >= 2 || undefined;
      }, 15_000);
      await advances(f.latest, "B_COUNT", 20);
      await sleep(500); // a health period, so the error counts are current
      assertEquals(f.latest.get("modem.errors")?.raw, 0n, "modem: every frame decoded");
      assertEquals(f.latest.get("back.errors")?.raw, 0n, "back: every frame decoded");
    } finally {
      await f.close();
    }
    const out = await stopSim(sim);
    assert(
      /source "modem": \d+ packets framed \(cobs\), \d+ not sent while nobody was connected/.test(
        out,
      ),
      out,
    );
    assert(/source "back": \d+ packets framed \(length\)/.test(out), out);
  },
});

Deno.test({
  name: "sim --serial: a serial source's packets, framed at its line settings, over a PTY pair",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const ptys = Deno.makeTempDirSync({ prefix: "gsw-pty-" });
    await using p = Pipeline.create({
      configText: config(
        `  - { name: radio, type: serial, device: "${ptys}/radio", baud: 115200, framing: { type: slip, crc: crc16-ccitt } }`,
        "  - { name: A, source: radio, rate_hz: 50, id: { offset: 0, size: 1, value: 7 }, measurements: [{ padding: 1 }, A_COUNT, A_VOLTS] }\n" +
          "  - { name: B, source: radio, rate_hz: 20, id: { offset: 0, size: 1, value: 9 }, measurements: [{ padding: 1 }, B_COUNT, B_TEMP] }",
      ),
    });
    const socat = await ptyPair(ptys);
    try {
      // Without --serial there is nothing to simulate: one clear line, exit 1.
      const none = p.spawn("sim", ["--config", p.configPath], "sim-none");
      assertEquals((await none.status).code, 1);
      assert(
        /serial source "radio" .* skipped: give --serial radio=DEV/.test(none.output.text),
        none.output.text,
      );
      assert(/nothing to simulate/.test(none.output.text), none.output.text);

      await p.decom(["--health-interval", "0.2"]);
      await p.broker();
      const f = follow(p.runDir, ["A_COUNT", "B_COUNT", "radio.errors", "radio.packets"]);
      const sim = p.spawn("sim", ["--config", p.configPath, "--serial", `${ptys}/ground`]);
      try {
        await advances(f.latest, "A_COUNT", 50);
        await advances(f.latest, "B_COUNT", 20);
        await sleep(500);
        assertEquals(f.latest.get("radio.errors")?.raw, 0n, "every frame decoded");
      } finally {
        await f.close();
      }
      const out = await stopSim(sim);
      assert(/source "radio": \d+ packets framed \(slip\)/.test(out), out);
    } finally {
      socat.kill("SIGTERM");
      await socat.status;
      Deno.removeSync(ptys, { recursive: true });
    }
  },
});

Deno.test("sim --serial with a source that is not serial: usage error, exit 2", async () => {
  const port = freeTcpPort();
  await using p = Pipeline.create({
    configText: config(
      `  - { name: modem, type: tcp, listen: "127.0.0.1:${port}", framing: { type: cobs } }`,
      "  - { name: A, source: modem, measurements: [A_COUNT, A_VOLTS] }",
    ),
  });
  const sim = p.spawn("sim", ["--config", p.configPath, "--serial", "modem=/dev/null"]);
  assertEquals((await sim.status).code, 2, sim.output.text);
  assert(
    /--serial \/dev\/null: source "modem" is not serial/.test(sim.output.text),
    sim.output.text,
  );
  assert(/usage: sim/.test(sim.output.text), sim.output.text);
});

Deno.test("sim: an address already in use is one clear line, exit 1", async () => {
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = (taken.addr as Deno.NetAddr).port;
    await using p = Pipeline.create({
      configText: config(
        `  - { name: back, type: tcp, connect: "127.0.0.1:${port}", framing: { type: cobs } }`,
        "  - { name: B, source: back, measurements: [B_COUNT, B_TEMP] }",
      ),
    });
    const sim = p.spawn("sim", ["--config", p.configPath]);
    assertEquals((await sim.status).code, 1, sim.output.text);
    assert(
      /gsw sim: 127\.0\.0\.1:\d+: cannot listen on .*EADDRINUSE/.test(sim.output.text),
      sim.output.text,
    );
    assert(!/internal error|\n\s+at /.test(sim.output.text), sim.output.text);
  } finally {
    taken.close();
  }
});

Deno.test({
  name: "sim: a TCP peer that stops reading holds up nobody, and Ctrl-C still stops cleanly",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // A "decom" that accepts and never reads: the simulator's writes soon find no room.
    const stuck = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const conns: Deno.Conn[] = [];
    const accepting = (async () => {
      for await (const c of stuck) conns.push(c);
    })();
    const udp = createSocket("udp4");
    let datagrams = 0;
    udp.on("message", () => datagrams++);
    await new Promise<void>((done) => udp.bind(0, "127.0.0.1", () => done()));
    try {
      const tcpPort = (stuck.addr as Deno.NetAddr).port;
      const udpPort = udp.address().port;
      await using p = Pipeline.create({
        configText: `name: stall
sources:
  - { name: modem, type: tcp, listen: "127.0.0.1:${tcpPort}", framing: { type: length, length_bytes: 2 } }
  - { name: vehicle, bind: 127.0.0.1 }
measurements:
  IMAGE: { type: bytes, size: 4000 }
  COUNT: { type: uint, size: 4 }
telemetry_packets:
  - { name: Big, source: modem, rate_hz: 500, measurements: [IMAGE] }
  - { name: Small, source: vehicle, port: ${udpPort}, rate_hz: 100, measurements: [COUNT] }
`,
      });
      const sim = p.spawn("sim", ["--config", p.configPath, "--rate-scale", "10"]);
      await sim.waitFor(/is not taking packets as fast as they come/, 20_000);
      const before = datagrams;
      await sleep(1000);
      // 1000 datagrams/s are due; a loop held up by the stuck stream would send none.
      assert(
        datagrams - before > 300,
        `${datagrams - before} datagrams in 1 s of a stalled stream`,
      );
      const out = await stopSim(sim);
      assert(
        /source "modem": \d+ packets framed \(length\), \d+ not sent while 256 were waiting for room/
          .test(out),
        out,
      );
      assert(/sim: sent \d+ packets in/.test(out), out);
    } finally {
      stuck.close();
      await new Promise<void>((done) => udp.close(() => done()));
      await accepting.catch(() => {});
      conns.forEach((c) => c.close());
    }
  },
});
