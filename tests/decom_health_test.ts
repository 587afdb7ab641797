/**
 * decom counts every datagram, rejects malformed ones without crashing, and publishes its
 * link health (packets, bytes, errors, drops, rate, age per packet type) as measurements.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodeRaw } from "../config/mod.ts";
import { readAll } from "../logger/format.ts";
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
    "vehicle.kernel_drops",
    "vehicle.backlog_bytes",
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
    // Each health value is its own channel, published one after another: wait for both.
    return latest.get("vehicle.packets") === BigInt(total) &&
        latest.get("vehicle.bytes") === BigInt(bytes)
      ? true
      : undefined;
  });
  // Counters are 8-byte unsigned integers, so they decode as bigint.
  assertEquals(latest.get("vehicle.bytes"), BigInt(bytes));
  assertEquals(latest.get("vehicle.errors"), BigInt(total - nav.length));
  assertEquals(latest.get("vehicle.drops"), 0n, "no logger yet, but nothing dropped: buffered");
  await eventually("the backlog to show the buffered packets", () => {
    poll();
    const held = latest.get("vehicle.backlog_bytes") as bigint | undefined;
    return held !== undefined && held >= BigInt(bytes) ? held : undefined;
  });
  assert((latest.get("vehicle.backlog_bytes") as bigint) < 64n << 20n, "within the bound");
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
  // No logger ever came: the summary says the raw packets were not logged, not "buffered".
  assert(
    decom.lines.some((l) => l.includes(`${total} NOT LOGGED (no logger took them before exit)`)),
    decom.lines.join("\n"),
  );
  sub.reader.close();
  sub.conn.close();
});

Deno.test("datagrams the kernel drops while decom is stopped are counted and reported", async () => {
  await using p = Pipeline.create();
  const decom = await p.decom(["--health-interval", "0.1"]);
  await p.broker();
  const sub = p.subscribeRaw(["vehicle.packets", "vehicle.kernel_drops"]);
  const latest = new Map<string, unknown>();
  const poll = () =>
    sub.reader.takePending((s) => {
      const m = sub.reply.channels[s.channel].measurement!;
      latest.set(m.key, decodeRaw(m, s.bytes));
    });
  try {
    // Stopped, decom cannot read: 30 000 datagrams overflow its 8 MiB receive buffer.
    const flood = Array.from({ length: 30_000 }, () => new Uint8Array(24));
    decom.kill("SIGSTOP");
    await p.send(p.ports[0], flood);
    decom.kill("SIGCONT");
    // The drop count rides on the datagrams that arrive after the drops: keep sending one now
    // and then (the first may meet a buffer still full) until every datagram sent is either
    // received or counted as dropped.
    let sent = flood.length;
    const accounted = () => {
      poll();
      const got = latest.get("vehicle.packets") as bigint | undefined;
      const dropped = latest.get("vehicle.kernel_drops") as bigint | undefined;
      return got !== undefined && dropped !== undefined && got + dropped === BigInt(sent);
    };
    for (const deadline = Date.now() + 10_000; !accounted();) {
      assert(
        Date.now() < deadline,
        `received ${latest.get("vehicle.packets")} + dropped ${
          latest.get("vehicle.kernel_drops")
        } of ${sent} sent`,
      );
      await p.send(p.ports[0], [new Uint8Array(24)]);
      sent++;
      await new Promise((r) => setTimeout(r, 150));
    }
    assert((latest.get("vehicle.kernel_drops") as bigint) > 0n, "the flood overflowed");
    await decom.waitFor(/port \d+: the kernel dropped \d+ datagrams .* these are lost/);
  } finally {
    decom.kill("SIGCONT");
    sub.reader.close();
    sub.conn.close();
  }
});

Deno.test("decom stopped while holding raw packets hands them to a logger that started meanwhile", async () => {
  await using p = Pipeline.create();
  // Health (and with it the reconnection to the logger) only once a minute: only the stop
  // itself can hand the packets over.
  const decom = await p.decom(["--health-interval", "60"]);
  const datagrams = Array.from({ length: 200 }, (_, k) => {
    const b = new Uint8Array(24);
    new DataView(b.buffer).setUint32(8, k, true);
    return b;
  });
  await p.send(p.ports[0], datagrams);
  const logger = await p.logger();
  await new Promise((r) => setTimeout(r, 200));
  assert(!logger.lines.some((l) => l.includes("decom connected")), "decom waited for its stop");
  decom.kill("SIGTERM");
  assertEquals((await decom.status).code, 0, decom.lines.join("\n"));
  assert(
    decom.lines.some((l) => /logger: 200 sent, 0 dropped$/.test(l)),
    decom.lines.join("\n"),
  );
  logger.kill("SIGTERM");
  assertEquals((await logger.status).code, 0, logger.lines.join("\n"));
  const [run] = [...Deno.readDirSync(`${p.dir}/logs`)].map((e) => `${p.dir}/logs/${e.name}`);
  const files = [...Deno.readDirSync(run)].filter((e) => e.name.endsWith(".gswlog"))
    .map((e) => `${run}/${e.name}`);
  const { records } = await readAll(files);
  assertEquals(
    records.map((r) => new DataView(r.payload.buffer, r.payload.byteOffset).getUint32(8, true)),
    datagrams.map((_, k) => k),
    "every raw packet is in the log, in order",
  );
});

Deno.test("Ctrl-C to decom and logger at once (a terminal's process group): every raw packet is logged", async () => {
  await using p = Pipeline.create();
  const logger = await p.logger();
  const decom = await p.decom();
  const datagrams = Array.from({ length: 300 }, (_, k) => {
    const b = new Uint8Array(24);
    new DataView(b.buffer).setUint32(8, k, true);
    return b;
  });
  await p.send(p.ports[0], datagrams);
  // The logger hears it first (a signal reaches the processes of a group in no set order), and
  // decom, within its 10 ms gathering window, sends its last message as it stops just after.
  logger.kill("SIGINT");
  await new Promise((r) => setTimeout(r, 30));
  decom.kill("SIGINT");
  assertEquals((await decom.status).code, 0, decom.lines.join("\n"));
  assertEquals((await logger.status).code, 0, logger.lines.join("\n"));
  assert(decom.lines.some((l) => /logger: 300 sent, 0 dropped$/.test(l)), decom.lines.join("\n"));
  assert(
    logger.lines.some((l) => /logger: stopped\. 1 file, 300 records/.test(l)),
    logger.lines.join("\n"),
  );
});
