/**
 * decom counts every datagram, rejects malformed ones without crashing, and publishes its
 * link health (packets, bytes, errors, drops, rate, age per packet type) as measurements.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodeRaw } from "../config/mod.ts";
import { eventually, Pipeline } from "./helpers/pipeline.ts";

Deno.test("decom counts, rejects and reports link health as measurements", async () => {
  await using p = Pipeline.create();
  const decom = await p.decom(["--health-interval", "0.1"]);
  await p.broker();
  const health = [
    "vehicle.packets",
    "vehicle.bytes",
    "vehicle.errors",
    "vehicle.drops",
    "vehicle.packet_rate",
    "vehicle.Nav.age",
    "vehicle.GPS.age",
  ];
  const sub = p.subscribeRaw([...health, "ALTITUDE"]);
  const latest = new Map<string, unknown>();
  const poll = () =>
    sub.reader.takePending((s) => {
      const m = sub.reply.channels[s.channel].measurement!;
      latest.set(m.key, decodeRaw(m, s.bytes));
    });

  const nav = Array.from({ length: 100 }, (_, k) => {
    const b = new Uint8Array(24);
    new DataView(b.buffer).setFloat32(4, k, true);
    return b;
  });
  const wrongLength = Array.from({ length: 10 }, (_, k) => new Uint8Array(k)); // 0..9 bytes
  const unknownId = Array.from({ length: 5 }, () => new Uint8Array([0x7f, 1, 2, 3])); // port 4
  const huge = [new Uint8Array(60000).fill(0xab)];
  await p.send(p.ports[0], nav);
  await p.send(p.ports[0], wrongLength);
  await p.send(p.ports[3], unknownId);
  await p.send(p.ports[1], huge);
  const total = nav.length + wrongLength.length + unknownId.length + huge.length;
  const bytes = 100 * 24 + 45 + 5 * 4 + 60000;

  await eventually("health to count every datagram", () => {
    poll();
    return latest.get("vehicle.packets") === BigInt(total) ? true : undefined;
  });
  // Counters are 8-byte unsigned integers, so they decode as bigint.
  assertEquals(latest.get("vehicle.bytes"), BigInt(bytes));
  assertEquals(latest.get("vehicle.errors"), BigInt(total - nav.length));
  assertEquals(latest.get("vehicle.drops"), 0n, "no logger yet, but nothing dropped: buffered");
  assertEquals(latest.get("ALTITUDE"), 99, "the good packets were decoded");
  const age = latest.get("vehicle.Nav.age") as number;
  assert(age >= 0 && age < 5, `Nav age ${age} s`);
  assert(!latest.has("vehicle.GPS.age"), "no GPS packet yet: no age rather than a made-up one");
  await eventually("the packet rate to be published", () => {
    poll();
    return latest.has("vehicle.packet_rate") ? true : undefined;
  });

  // Each kind of rejection is reported, rate-limited, with the datagram's first bytes.
  await decom.waitFor(/wrong length \(\d+ bytes\)/);
  await decom.waitFor(/unknown packet id \(4 bytes\): 7f010203/);
  decom.kill("SIGTERM");
  const status = await decom.status;
  assertEquals(status.code, 0, decom.lines.join("\n"));
  assert(
    decom.lines.some((l) =>
      l.includes(`${total} datagrams`) && l.includes(`${total - 100} rejected`)
    ),
    `decom's exit summary:\n${decom.lines.join("\n")}`,
  );
  sub.reader.close();
  sub.conn.close();
});
