/**
 * decom's raw-packet backlog for an absent logger is bounded in real memory: with a 1 MiB
 * bound and the logger away, a trickle of single-datagram batches leaves decom's resident memory
 * within the bound, and a flood keeps the backlog (`S.backlog_bytes`) within it, the rest
 * counted as dropped; a logger that starts afterwards gets every packet that was kept, in order.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { decodeRaw } from "../config/mod.ts";
import { LogReader } from "../logger/format.ts";
import { logFiles } from "../logger/paths.ts";
import { eventually, Pipeline, sleep } from "./helpers/pipeline.ts";

function rssKib(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(status.match(/VmRSS:\s+(\d+)/)![1]);
}

Deno.test("decom's logger backlog stays within its bound in real memory", async () => {
  await using p = Pipeline.create();
  const decom = await p.decom(["--log-buffer", "1", "--health-interval", "0.1"]);
  await p.broker();
  const sub = p.subscribeRaw(["vehicle.backlog_bytes", "vehicle.drops", "vehicle.packets"]);
  const latest = new Map<string, bigint>();
  const poll = () =>
    sub.reader.takePending((s) => {
      const m = sub.reply.channels[s.channel].measurement!;
      latest.set(m.key, decodeRaw(m, s.bytes) as bigint);
    });
  const port = p.config.packets.find((x) => x.name === "Nav")!.port;
  const nav = (k: number) => {
    const b = new Uint8Array(24);
    new DataView(b.buffer).setUint32(0, k, true);
    return b;
  };
  await sleep(500);
  const before = rssKib(decom.pid);
  // A trickle first: one datagram per receive batch, each more than decom's 10 ms gathering
  // window apart. Each once became a message of its own, allocated for 64 KiB while the bound
  // counted its ~100 bytes (the native unit test a_long_outage_at_a_low_rate_stays_within_the_
  // bound checks the accounting); now they gather in one message while no logger can take it.
  const TRICKLE = 400;
  for (let k = 1; k <= TRICKLE; k++) {
    await p.send(port, [nav(k)]);
    await sleep(11);
  }
  await eventually("decom to count the trickle", () => {
    poll();
    return latest.get("vehicle.packets") === BigInt(TRICKLE) ? true : undefined;
  });
  const grown = rssKib(decom.pid) - before;
  assert(grown < 12 * 1024, `decom's RSS grew ${grown} KiB holding ${TRICKLE} small batches`);
  // Then a flood far larger than the bound: the backlog stays within it, the rest is dropped
  // and counted.
  const N = 40_000;
  for (let k = TRICKLE; k < N; k += 10) {
    await p.send(port, Array.from({ length: 10 }, (_, j) => nav(k + j + 1)));
    if (k % 1000 === 0) await sleep(5);
  }
  await eventually("decom to count them all", () => {
    poll();
    return latest.get("vehicle.packets") === BigInt(N) ? true : undefined;
  });
  await sleep(300);
  poll();
  const held = latest.get("vehicle.backlog_bytes")!;
  const dropped = latest.get("vehicle.drops")!;
  assert(held > 0n && held <= 1n << 20n, `backlog ${held} bytes`);
  assert(dropped > 0n, "1 MiB cannot hold 40 000 records: some were dropped, and counted");

  // A logger that starts now gets every packet decom kept, in order, and nothing else.
  await p.logger();
  await eventually("the backlog to drain", () => {
    poll();
    return latest.get("vehicle.backlog_bytes") === 0n ? true : undefined;
  }, 15_000);
  decom.kill("SIGTERM");
  await decom.status;
  await sleep(500);
  const runs = [...Deno.readDirSync(`${p.dir}/logs`)].filter((e) => e.isDirectory);
  const files = await logFiles(runs.map((r) => `${p.dir}/logs/${r.name}`));
  const got: number[] = [];
  for await (const e of new LogReader(files).records()) {
    got.push(new DataView(e.payload.buffer, e.payload.byteOffset).getUint32(0, true));
  }
  assertEquals(BigInt(got.length) + dropped, BigInt(N), "logged + dropped = received");
  for (let i = 1; i < got.length; i++) assert(got[i] > got[i - 1], "in order");
  sub.reader.close();
  sub.conn.close();
});
