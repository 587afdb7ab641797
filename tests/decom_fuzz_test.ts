/**
 * Fuzz: a million random datagrams of random lengths, to every port decom listens on (so some
 * happen to have a valid length and most are garbage). decom must keep running, count every
 * one, and hand every one to the logger, which must have each, byte for byte, in order.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodeRaw } from "../config/mod.ts";
import { LogReader } from "../logger/format.ts";
import { logFiles } from "../logger/paths.ts";
import { eventually, Pipeline } from "./helpers/pipeline.ts";

const TOTAL = 1_000_000;
const MAX_LEN = 100;

/** FNV-1a over (length, bytes) of each datagram in order: equal iff the streams are equal. */
class StreamHash {
  h = 0x811c9dc5;
  count = 0;
  add(d: Uint8Array): void {
    let h = Math.imul(this.h ^ d.length, 0x01000193);
    for (let i = 0; i < d.length; i++) h = Math.imul(h ^ d[i], 0x01000193);
    this.h = h >>> 0;
    this.count++;
  }
}

Deno.test("a million random datagrams: decom counts every one and the log has every one", async () => {
  await using p = Pipeline.create();
  await p.logger();
  const decom = await p.decom(["--health-interval", "0.2"]);
  await p.broker();
  const sub = p.subscribeRaw(["vehicle.packets", "vehicle.errors", "vehicle.drops"]);
  const health = new Map<string, bigint>();
  const poll = () =>
    sub.reader.takePending((s) => {
      const m = sub.reply.channels[s.channel].measurement!;
      health.set(m.key, decodeRaw(m, s.bytes) as bigint);
    });

  const sent = new Map(p.ports.map((port) => [port, new StreamHash()]));
  const random = new Uint8Array(64 * 1024);
  const chunk = 2048;
  for (let done = 0; done < TOTAL; done += chunk) {
    crypto.getRandomValues(random);
    const byPort = new Map<number, Uint8Array[]>(p.ports.map((port) => [port, []]));
    for (let i = 0, at = 0; i < chunk && done + i < TOTAL; i++) {
      const port = p.ports[random[at] & 3];
      const len = random[at + 1] % (MAX_LEN + 1);
      if (at + len > random.length) at = 0;
      const d = random.slice(at, at + len);
      at += len + 2;
      byPort.get(port)!.push(d);
      sent.get(port)!.add(d);
    }
    for (const [port, ds] of byPort) await p.send(port, ds);
    // Paced below what decom and the logger sustain on a loaded 2-core machine, so a drop
    // would be a gsw bug, not the kernel's socket buffer overflowing.
    await new Promise((r) => setTimeout(r, 15));
    poll();
  }

  await eventually("decom to count every datagram", () => {
    poll();
    return health.get("vehicle.packets") === BigInt(TOTAL) ? true : undefined;
  }, 60000);
  assert(health.get("vehicle.errors")! > BigInt(TOTAL / 2), "most random datagrams are rejected");
  assertEquals(health.get("vehicle.drops") ?? 0n, 0n, "nothing dropped on the way to the logger");
  const exited = await Promise.race([
    decom.status.then(() => true),
    new Promise((r) => setTimeout(() => r(false), 10)),
  ]);
  assert(!exited, "decom is still running");

  // Every datagram is in the log, byte for byte and in order per port.
  const logged = new Map(p.ports.map((port) => [port, new StreamHash()]));
  const deadline = Date.now() + 60000;
  for (;;) {
    logged.forEach((h) => (h.h = 0x811c9dc5, h.count = 0));
    const runs = [...Deno.readDirSync(`${p.dir}/logs`)].filter((e) => e.isDirectory);
    assertEquals(runs.length, 1, "one logger run");
    const reader = new LogReader(await logFiles([`${p.dir}/logs/${runs[0].name}`]));
    for await (const batch of reader.batches()) {
      for (const r of batch) logged.get(r.dstPort)!.add(r.payload);
    }
    const count = [...logged.values()].reduce((a, h) => a + h.count, 0);
    if (count === TOTAL || Date.now() > deadline) {
      assertEquals(reader.stats.corrupt, 0, "no damaged region in the log");
      break;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  for (const port of p.ports) {
    assertEquals(logged.get(port)!.count, sent.get(port)!.count, `records on port ${port}`);
    assertEquals(logged.get(port)!.h, sent.get(port)!.h, `bytes on port ${port}`);
  }
  sub.reader.close();
  sub.conn.close();
});
