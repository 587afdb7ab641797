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
import { voluntarySwitches } from "../bench/lib/procs.ts";

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
  // One iteration for the whole test, as an application runs it. (Racing `it.next()` against
  // a timer would leave a pending call behind at each timeout, and that orphan would take the
  // next update: the test would then miss values the subscription did deliver.)
  let counter = 0;
  const reading = (async () => {
    for await (const u of sub) if (u.measurement === "COUNTER") counter = u.raw as number;
  })();
  const until = async (want: number, ms: number, why: string) => {
    const t0 = performance.now();
    while (counter < want) {
      assert(performance.now() - t0 < ms, `${why} (newest COUNTER ${counter}, want ${want})`);
      await sleep(10);
    }
  };
  try {
    await p.send(valuesFor(1));
    await until(1, 5000, "no first value");
    await p.decom.stop("SIGKILL");
    await sleep(100);
    // The last value stays, marked stale (its decom is gone).
    assertEquals(sub.latest("COUNTER")?.raw, 1);
    assert(sub.latest("COUNTER")?.stale);
    const decom = p.pipeline.spawn("decom", [
      "--config",
      p.config,
      "--run-dir",
      p.runDir,
      "--health-interval",
      "60",
    ]);
    await decom.stderr.waitFor(/serving/, 15_000);
    const t0 = performance.now();
    for (let k = 2; counter < 2; k++) {
      assert(performance.now() - t0 < 5000, "values did not resume within 5 s");
      await p.send(valuesFor(k));
      await sleep(50);
    }
    assert(sub.connected);
    // Within about a second of decom's return it reads directly again (the broker may have
    // served it meanwhile), and every later value still arrives.
    const direct = () =>
      p.broker!.output.lines.filter((l) => /follows 2 measurements \(2 read directly/.test(l));
    const t1 = performance.now();
    while (direct().length < 2) {
      assert(performance.now() - t1 < 5000, `not direct again:\n${p.broker!.output.text}`);
      await sleep(20);
    }
    const next = counter + 1;
    await p.send(valuesFor(next));
    await until(next, 5000, "a value after the restart was not delivered");
  } finally {
    sub.close();
    await reading;
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

Deno.test("direct reads: the broker sleeps while every subscriber reads directly", async () => {
  const p = await SubscribePipeline.start();
  const broker = p.broker!;
  using direct = subscribe(["COUNTER"], { runDir: p.runDir });
  await broker.waitFor(/follows 1 measurement \(1 read directly from decom\)/);
  let counter = 0;
  const reading = (async () => {
    for await (const u of direct) counter = u.raw as number;
  })();
  let k = 0;
  /** Sends `n` packets, one at a time, each read by the direct subscriber before the next. */
  const burst = async (n: number) => {
    for (const end = k + n; k < end;) {
      await p.send(valuesFor(++k));
      const t0 = performance.now();
      while (counter < k) {
        assert(performance.now() - t0 < 5000, `value ${k} never reached the direct subscriber`);
        await sleep(1);
      }
    }
  };
  /** The broker's sleeps (voluntary switches) while `n` packets go by. */
  const brokerSleeps = async (n: number) => {
    const before = voluntarySwitches(broker.child.pid);
    await burst(n);
    return voluntarySwitches(broker.child.pid) - before;
  };
  try {
    await burst(5);
    const quiet = await brokerSleeps(200);
    // A subscriber through the broker (two hops) arrives: it starts from the current value
    // (taken from decom although the broker was not watching), then gets every new one.
    const twoHop = subscribe(["COUNTER"], { runDir: p.runDir, direct: false });
    const it = twoHop[Symbol.asyncIterator]();
    await broker.waitFor(/follows 1 measurement$/);
    assertEquals(await nextCounter(it, 5000), k);
    const busy = await brokerSleeps(200);
    assertEquals(await nextCounter(it, 5000), k, "the two-hop subscriber's newest value");
    twoHop.close();
    await broker.waitFor(/left/);
    const quietAgain = await brokerSleeps(200);
    // Woken for (nearly) every packet while it copies values, and not at all otherwise.
    assert(busy >= 150, `the broker slept ${busy} times in 200 packets it had to copy`);
    assert(quiet < 20, `the broker woke ${quiet} times in 200 packets nobody read through it`);
    assert(quietAgain < 20, `after the two-hop subscriber left: ${quietAgain} wake-ups`);
  } finally {
    direct.close();
    await reading;
    await p.stop();
  }
});
