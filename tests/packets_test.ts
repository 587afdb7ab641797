/**
 * The every-packet stream (`lib/packets.ts`) through a real decom: every datagram arrives in
 * order with its metadata and the packet type decom identified; a reader that stops longer
 * than the ring lasts is told exactly how many it lost; a decom that restarts is picked up.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodePacket } from "../config/mod.ts";
import { openPackets, type PacketStatus } from "../lib/packets.ts";
import { eventually, Pipeline, sleep } from "./helpers/pipeline.ts";
import { collect } from "./helpers/packets.ts";

/** A 24-byte Nav packet of the example whose bytes encode `k`. */
function nav(k: number): Uint8Array {
  const b = new Uint8Array(24);
  new DataView(b.buffer).setUint32(0, k, true);
  b[23] = k & 0x7f;
  return b;
}

Deno.test("packet stream: every datagram, in order, with its metadata", async () => {
  await using p = Pipeline.create();
  await p.decom();
  using stream = openPackets(p.config, { runDir: p.runDir });
  await eventually(
    "the ring attached",
    () => stream.connected[p.config.sources[0].name] || undefined,
  );
  const navIndex = p.config.packets.findIndex((x) => x.name === "Nav");
  const navPort = p.config.packets[navIndex].port;
  const N = 5000;
  const datagrams: Uint8Array[] = [];
  for (let k = 1; k <= N; k++) {
    datagrams.push(k % 100 === 0 ? new Uint8Array(7).fill(k & 0xff) : nav(k));
  }
  await p.send(navPort, datagrams);
  const { packets, lost } = await collect(stream, N);
  assertEquals(lost, 0);
  assertEquals(packets.length, N);
  const first = packets[0].seq;
  packets.forEach((got, i) => {
    const k = i + 1;
    assertEquals(got.seq, first + i, "datagram numbers follow each other");
    assertEquals(got.source, p.config.sources[0].name);
    assertEquals(got.port, navPort);
    assertEquals(got.srcAddress, "127.0.0.1");
    assertEquals(got.bytes, datagrams[i], `datagram ${k} byte for byte`);
    assertEquals(got.length, datagrams[i].byteLength);
    // Every 100th is 7 bytes long: decom identified no packet (wrong length), but it is here.
    assertEquals(got.packet, k % 100 === 0 ? -1 : navIndex);
    if (got.packet >= 0) {
      const time = decodePacket(p.config, got.packet, got.bytes)
        .find((f) => f.measurement.key === "MISSION_TIME")!;
      assertEquals(time.raw, k, "decoded as decom decodes it");
    }
    if (i > 0) assert(got.timestampNs >= packets[i - 1].timestampNs);
  });
  assert(Math.abs(Number(packets[0].timestampNs / 1_000_000n) - Date.now()) < 60_000);
});

Deno.test("packet stream: a reader left behind is told exactly how many it lost", async () => {
  await using p = Pipeline.create();
  // The smallest ring (256 KiB): a Nav record takes 80 bytes, so ~3 200 fit.
  await p.decom(["--packet-ring", "256"]);
  using stream = openPackets(p.config, { runDir: p.runDir });
  await eventually(
    "the ring attached",
    () => stream.connected[p.config.sources[0].name] || undefined,
  );
  const port = p.config.packets.find((x) => x.name === "Nav")!.port;
  const N = 20_000;
  // Sent while the stream reads nothing.
  await p.send(port, Array.from({ length: N }, (_, i) => nav(i + 1)));
  await sleep(200);
  const { packets, lost } = await collect(stream, N);
  assertEquals(packets.length + lost, N, "every datagram is read or counted lost");
  assert(lost > 0 && packets.length > 1000, `${packets.length} read, ${lost} lost`);
  // The ones read are the newest, whole and in order.
  packets.forEach((got, i) => {
    const k = N - packets.length + i + 1;
    assertEquals(got.bytes, nav(k), `datagram ${k}`);
  });
});

Deno.test("packet stream: decom restarted is picked up again", async () => {
  await using p = Pipeline.create();
  let decom = await p.decom();
  const status: PacketStatus[] = [];
  using stream = openPackets(p.config, { runDir: p.runDir, onStatus: (s) => status.push(s) });
  await eventually(
    "the ring attached",
    () => stream.connected[p.config.sources[0].name] || undefined,
  );
  const port = p.config.packets.find((x) => x.name === "Nav")!.port;
  const iterate = (async () => {
    const got: number[] = [];
    for await (const batch of stream) {
      for (const pkt of batch.packets) {
        got.push(new DataView(pkt.bytes.buffer, pkt.bytes.byteOffset).getUint32(0, true));
      }
      if (got.includes(2000)) return got;
    }
    return got;
  })();
  await p.send(port, Array.from({ length: 1000 }, (_, i) => nav(i + 1)));
  await eventually("the first thousand", () => status.length > 0 || undefined);
  await sleep(300);
  await decom.stop("SIGKILL");
  decom = await p.decom();
  await eventually(
    "reattached",
    () => (stream.connected[p.config.sources[0].name] && status.at(-1)?.connected) || undefined,
  );
  await p.send(port, Array.from({ length: 1000 }, (_, i) => nav(1001 + i)));
  const got = await iterate;
  for (let k = 1; k <= 2000; k++) assert(got.includes(k), `datagram ${k} was not read`);
  assert(
    status.some((s) => !s.connected && /went away/.test(s.message)),
    JSON.stringify(status),
  );
});
