/**
 * Serial and TCP sources, on real devices the kernel gives: a PTY pair from socat stands for a
 * USB radio, and real TCP sockets for a radio modem or a simulator. Packets are framed (COBS,
 * sync word, length prefix; CRCs), mixed with garbage, dropped bytes and bad CRCs: every good
 * packet is decoded, every bad one counted and logged; unplugging and reconnecting are said
 * and survived.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodeRaw } from "../config/mod.ts";
import { encodeFrame, type FramingOptions } from "../ffi/mod.ts";
import { openPackets } from "../lib/packets.ts";
import { collect } from "./helpers/packets.ts";
import { eventually, freeTcpPort, Pipeline, ptyPair, sleep } from "./helpers/pipeline.ts";

/** Two packets of 8 bytes told apart by their first byte; VALUE counts, SEQ numbers them. */
function config(source: string): string {
  return `name: radio
sources:
${source}
measurements:
  VALUE: { type: float, size: 4, endianness: little }
  SEQ: { type: uint, size: 2, endianness: little }
  FLAGS: { type: uint, size: 1 }
telemetry_packets:
  - name: Data
    id: { offset: 0, size: 1, value: 1 }
    measurements: [{ padding: 1 }, VALUE, SEQ, FLAGS]
  - name: Status
    id: { offset: 0, size: 1, value: 2 }
    measurements: [{ padding: 1 }, FLAGS, { padding: 6 }]
`;
}

function dataPacket(seq: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  b[0] = 1;
  v.setFloat32(1, seq * 0.5, true);
  v.setUint16(5, seq, true);
  b[7] = seq % 7;
  return b;
}

function framing(kind: FramingOptions["kind"], crc: FramingOptions["crc"]): FramingOptions {
  return {
    kind,
    sync: new Uint8Array([0xeb, 0x90]),
    size: 8,
    lengthBytes: 1,
    crc,
    crcBig: true,
    minLength: 8,
    maxLength: 8,
  };
}

/** Subscribes raw to `keys` on `p`; `poll()` returns the newest decoded values. */
function watch(p: Pipeline, keys: string[]) {
  const sub = p.subscribeRaw(keys);
  const latest = new Map<string, unknown>();
  return () => {
    sub.reader.takePending((s) => {
      const m = sub.reply.channels[s.channel].measurement!;
      latest.set(m.key, decodeRaw(m, s.bytes));
    });
    return latest;
  };
}

Deno.test({
  name:
    "tcp listen: senders' COBS packets decode; bad CRCs and garbage are counted; senders come and go",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const port = freeTcpPort();
    await using p = Pipeline.create({
      configText: config(
        `  - name: modem\n    type: tcp\n    listen: 127.0.0.1:${port}\n    framing: { type: cobs, crc: crc16-ccitt }`,
      ),
    });
    const decom = await p.decom(["--health-interval", "0.1"]);
    await p.broker();
    const poll = watch(p, ["VALUE", "SEQ", "modem.connected", "modem.errors", "modem.packets"]);
    const f = framing("cobs", "crc16-ccitt");
    const bad = encodeFrame(f, dataPacket(999));
    bad[3] ^= 0x40; // a bit flipped on the air
    const stream: number[] = [];
    for (let i = 1; i <= 100; i++) {
      stream.push(...encodeFrame(f, dataPacket(i)));
      if (i === 50) stream.push(...bad, 0x13, 0x37, 0x00); // a bad CRC, then garbage
    }
    const sender = await Deno.connect({ hostname: "127.0.0.1", port });
    await decom.waitFor(/127\.0\.0\.1:\d+ connected \(sender 1 now\)/);
    await sender.write(Uint8Array.from(stream));
    await eventually("every packet decoded and the rejections counted", () => {
      const v = poll();
      return v.get("SEQ") === 100 && v.get("modem.errors") === 2n &&
          v.get("modem.connected") === 1n ||
        undefined;
    });
    assertEquals(poll().get("VALUE"), 50);
    assertEquals(poll().get("modem.packets"), 102n, "100 packets, one bad frame, one of garbage");
    sender.close();
    await decom.waitFor(/sender 127\.0\.0\.1:\d+ left \(the other end closed it\); 0 connected/);
    await eventually(
      "connected to read 0",
      () => poll().get("modem.connected") === 0n || undefined,
    );
    // Another sender, later: decom never stopped listening.
    const again = await Deno.connect({ hostname: "127.0.0.1", port });
    await again.write(encodeFrame(f, dataPacket(101)));
    await eventually("the new sender's packet", () => poll().get("SEQ") === 101 || undefined);
    again.close();
    await decom.waitFor(
      /rejected bytes of TCP listening on 127\.0\.0\.1:\d+ .*: (bad CRC|unframed)/,
    );
  },
});

Deno.test({
  name:
    "tcp connect: decom reconnects to a sender that is killed and restarted; nothing decoded twice",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const port = freeTcpPort();
    await using p = Pipeline.create({
      configText: config(
        `  - name: sim\n    type: tcp\n    connect: 127.0.0.1:${port}\n    framing: { type: length, length_bytes: 1, crc: crc32c }`,
      ),
    });
    const decom = await p.decom(["--health-interval", "0.1"]);
    await decom.waitFor(/cannot open 127\.0\.0\.1:\d+: Connection refused/);
    const f = framing("length", "crc32c");
    using ring = openPackets(p.config, { runDir: p.runDir });
    await eventually("the ring attached", () => ring.connected.sim || undefined);
    const serve = async (from: number, to: number) => {
      const l = Deno.listen({ hostname: "127.0.0.1", port });
      const conn = await l.accept();
      const bytes: number[] = [];
      for (let i = from; i <= to; i++) bytes.push(...encodeFrame(f, dataPacket(i)));
      await conn.write(Uint8Array.from(bytes));
      await sleep(300);
      conn.close();
      l.close();
    };
    await serve(1, 40);
    await decom.waitFor(/connected to 127\.0\.0\.1:\d+/);
    await decom.waitFor(/lost the connection to 127\.0\.0\.1:\d+ \(the other end closed it\)/);
    await serve(41, 80);
    await decom.waitFor(/connected to 127\.0\.0\.1:\d+ again/);
    const got = await collect(ring, 80);
    assertEquals(got.lost, 0);
    const seqs = got.packets.map((r) => new DataView(r.bytes.buffer).getUint16(5, true));
    assertEquals(seqs, Array.from({ length: 80 }, (_, i) => i + 1));
    assert(got.packets.every((r) => r.port === 0 && r.packet === 0));
  },
});

Deno.test({
  name:
    "serial over a PTY at 921600 baud: sync + CRC framing survives garbage, dropped bytes, bad CRCs, and an unplug",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // The PTY lives in a directory of its own, named in the config.
    const ptys = Deno.makeTempDirSync({ prefix: "gsw-pty-" });
    await using p = Pipeline.create({
      configText: config(
        `  - name: radio\n    type: serial\n    device: ${ptys}/radio\n    baud: 921600\n` +
          '    framing: { type: sync, sync: "EB90", crc: crc16-ccitt }',
      ),
    });
    let socat = await ptyPair(ptys);
    const decom = await p.decom(["--health-interval", "0.1"]);
    await decom.waitFor(/opened .*\/radio at 921600 baud/);
    await p.broker();
    const poll = watch(p, ["SEQ", "radio.errors", "radio.connected"]);
    using ring = openPackets(p.config, { runDir: p.runDir });
    await eventually("the ring attached", () => ring.connected.radio || undefined);
    const f = framing("sync", "crc16-ccitt");
    const ground = await Deno.open(`${ptys}/ground`, { write: true });
    let good = 0;
    let bad = 0;
    const expected: number[] = [];
    for (let round = 0; round < 20; round++) {
      const bytes: number[] = [];
      for (let i = 0; i < 50; i++) {
        const seq = round * 50 + i + 1;
        const frame = encodeFrame(f, dataPacket(seq));
        if (i === 10) {
          bytes.push(0x00, 0xeb, 0x13, 0x90, 0x55); // garbage, with a false sync start
          bad++;
        }
        if (i === 20) {
          bytes.push(...frame.subarray(0, 5), ...frame.subarray(6)); // a byte the radio lost
          bad++;
          continue;
        }
        if (i === 30) {
          frame[6] ^= 0x01; // a flipped bit
          bytes.push(...frame);
          bad++;
          continue;
        }
        bytes.push(...frame);
        expected.push(seq);
        good++;
      }
      await ground.write(Uint8Array.from(bytes));
      await sleep(5);
    }
    const got = await collect(ring, good + bad);
    assertEquals(got.lost, 0);
    const decoded = got.packets.filter((r) => r.packet === 0);
    assertEquals(
      decoded.map((r) => new DataView(r.bytes.buffer).getUint16(5, true)),
      expected,
      "every good packet, in order",
    );
    assertEquals(got.packets.length - decoded.length, bad, "each bad stretch one rejected record");
    await eventually(
      "errors counted",
      () => poll().get("radio.errors") === BigInt(bad) || undefined,
    );

    // Unplugged: decom says so and keeps running; plugged back, it reopens the device.
    ground.close();
    socat.kill("SIGTERM");
    await socat.status;
    await decom.waitFor(/lost .*\/radio .*unplugged\?/);
    await eventually("connected reads 0", () => poll().get("radio.connected") === 0n || undefined);
    assertEquals(decom.exited, null);
    socat = await ptyPair(ptys);
    await decom.waitFor(/opened .*\/radio again at 921600 baud/, 15_000);
    const ground2 = await Deno.open(`${ptys}/ground`, { write: true });
    await ground2.write(encodeFrame(f, dataPacket(5000)));
    await eventually("a packet after the replug", () => poll().get("SEQ") === 5000 || undefined);
    ground2.close();
    socat.kill("SIGTERM");
    await socat.status;
    Deno.removeSync(ptys, { recursive: true });
  },
});
