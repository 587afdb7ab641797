/**
 * One-hop reads through real processes: subscribers read decom's broadcast segment directly,
 * woken by decom itself up to the broker's `--direct-wakes` seats and by the broker beyond
 * them; none misses a wake-up, a decom restart is followed, and a subscriber that first had
 * to go through the broker (decom away) reads directly once decom is back.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { subscribe, type Subscription, type Update } from "../mod.ts";
import { sleep } from "./helpers/pipeline.ts";
import { configText, packet, SubscribePipeline, valuesFor } from "./helpers/subscribe_pipeline.ts";
import { Pipeline } from "./helpers/pipeline.ts";

/** The next update of COUNTER from `sub` (async iteration), or a failure after `ms`. */
async function nextCounter(it: AsyncIterator<Update>, ms: number): Promise<number> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no update within ${ms} ms`)), ms);
  });
  try {
    for (;;) {
      const r = await Promise.race([it.next(), timeout]);
      if (r.done) throw new Error("the subscription ended");
      if (r.value.measurement === "COUNTER") return r.value.raw as number;
    }
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("direct reads: seats woken by decom, the rest by the broker, no wake-up lost", async () => {
  const p = await SubscribePipeline.start();
  const subs: Subscription[] = [];
  try {
    // One seat: the first subscriber is woken by decom, the other three by the broker.
    await p.broker!.stop("SIGTERM");
    const broker = await p.startBroker(["--direct-wakes", "1"]);
    for (let i = 0; i < 4; i++) subs.push(subscribe(["COUNTER"], { runDir: p.runDir }));
    const its = subs.map((s) => s[Symbol.asyncIterator]());
    for (let k = 1; k <= 100; k++) {
      await p.send(valuesFor(k));
      // Every subscriber sleeps between packets, so each round needs a wake-up of each.
      const got = await Promise.all(its.map((it) => nextCounter(it, 5000)));
      assertEquals(got, [k, k, k, k], `round ${k}`);
      if (k % 10 === 0) await sleep(20);
    }
    const lines = broker.lines.filter((l) => /follows 1 measurement/.test(l));
    assertEquals(lines.length, 4, lines.join("\n"));
    assertEquals(lines.filter((l) => /read directly from decom\)/.test(l)).length, 1);
    assertEquals(lines.filter((l) => /woken by this broker/.test(l)).length, 3);
    // A seat is given back when its subscriber leaves: the next one gets it.
    subs.shift()!.close();
    await sleep(200);
    subs.push(subscribe(["COUNTER"], { runDir: p.runDir }));
    await broker.waitFor(/follows 1 measurement \(1 read directly from decom\)/);
  } finally {
    subs.forEach((s) => s.close());
    await p.stop();
  }
});

Deno.test("direct reads: decom killed and restarted, subscribers resume", async () => {
  const p = await SubscribePipeline.start();
  using sub = subscribe(["COUNTER", "ALTITUDE"], { runDir: p.runDir });
  try {
    await p.send(valuesFor(1));
    const it = sub[Symbol.asyncIterator]();
    assertEquals(await nextCounter(it, 5000), 1);
    await p.decom.stop("SIGKILL");
    await sleep(100);
    // The last value stays, marked stale (its decom is gone).
    assertEquals(sub.latest("COUNTER")?.raw, 1);
    const decom = p.pipeline.spawn("decom", [
      "--config",
      p.config,
      "--run-dir",
      p.runDir,
      "--health-interval",
      "60",
    ]);
    await decom.stderr.waitFor(/serving/, 15_000);
    await p.broker!.waitFor(/attached to decom/);
    const t0 = performance.now();
    for (let k = 2;; k++) {
      await p.send(valuesFor(k));
      const got = await nextCounter(it, 200).catch(() => 0);
      if (got >= 2) break;
      assert(performance.now() - t0 < 5000, "values did not resume within 5 s");
    }
    assert(sub.connected);
  } finally {
    await p.stop();
  }
});

Deno.test("direct reads: a subscriber served by the broker while decom was away goes direct", async () => {
  await using pipeline = Pipeline.create({ configText: configText("{PORT0}") });
  const broker = await pipeline.broker();
  using sub = subscribe(["COUNTER"], { runDir: pipeline.runDir });
  await broker.waitFor(/follows 1 measurement$/);
  // A subscriber waiting for values, as subscribers do.
  const it = sub[Symbol.asyncIterator]();
  const first = nextCounter(it, 10_000);
  await pipeline.decom(["--health-interval", "60"]);
  // Within about a second of decom's arrival the library asks again and reads directly.
  await broker.waitFor(/follows 1 measurement \(1 read directly from decom\)/, 5000);
  await pipeline.send(pipeline.ports[0], [packet(valuesFor(7))]);
  assertEquals(await first, 7);
});
