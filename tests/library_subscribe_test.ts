/**
 * The public library (`mod.ts`) against a real decom and broker: every value a sender
 * encodes arrives decoded, `latest()` and `next()`, bursts account for skipped values,
 * reconnection after the broker is killed, per-measurement brokers, errors, releasing every
 * descriptor and mapping, and use from a URL under scoped permissions.
 */
import assert from "node:assert/strict";
import { type LinkStatus, subscribe, SubscribeError, type Update } from "../mod.ts";
import { realtimeNs } from "../ffi/mod.ts";
import { eventually, LIBRARY, REPO, spawn, spawnGsw } from "./helpers/pipeline.ts";
import { MODES, SubscribePipeline, valuesFor } from "./helpers/subscribe_pipeline.ts";

const ALL = ["COUNTER", "ALTITUDE", "BIG", "MODE", "LABEL", "BOARD_TEMP"];

/** Checks that `u` is exactly what packet `i` carried. */
function assertUpdate(u: Update, i: number): void {
  const v = valuesFor(i);
  const expected: Record<string, [unknown, unknown, string | undefined]> = {
    COUNTER: [v.counter, v.counter, undefined],
    ALTITUDE: [v.altitude, v.altitude, "m"],
    BIG: [v.big, v.big, undefined],
    MODE: [MODES[v.mode], v.mode, undefined],
    LABEL: [v.label, v.label, undefined],
    TEMP: [v.tempRaw * 0.1, v.tempRaw, "C"],
  };
  const [value, raw, unit] = expected[u.measurement];
  assert.deepEqual([u.value, u.raw, u.unit], [value, raw, unit], `${u.measurement} of packet ${i}`);
}

/**
 * This process's open descriptors of the kinds a subscription uses (epoll sets, eventfds,
 * sockets, memfds: files, pipes and pidfds come and go with Deno's caches and the test's own
 * children) and its shared-memory (memfd) mappings, listed by a child: Deno denies
 * /proc/self to a process without every permission, and tests run so.
 */
async function resources(): Promise<{ fds: string[]; memfdMaps: number }> {
  const pid = Deno.pid;
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      `grep -c memfd: /proc/${pid}/maps; ls -l /proc/${pid}/fd | grep -- '->' |` +
      ` grep -e 'eventpoll' -e 'eventfd' -e 'pidfd' -e 'socket:' -e 'memfd:' | sed 's/.* \\([0-9]*\\) -> \\(.*\\)/\\1 \\2/'`,
    ],
    stdin: "null",
  }).output();
  const [maps, ...fds] = new TextDecoder().decode(out.stdout).trim().split("\n");
  return { fds, memfdMaps: Number(maps) };
}

Deno.test("library: values, latest/next, bursts, reconnection, brokers, errors, release", async (t) => {
  const p = await SubscribePipeline.start();
  let packet = 0;
  const step = p.steps(t);
  try {
    await step(
      "no update before the first packet; every encoded value arrives, decoded",
      async () => {
        using sub = subscribe(ALL, { runDir: p.runDir });
        assert.equal(sub.latest("COUNTER"), undefined);
        assert.equal(sub.next(0), undefined);
        assert.deepEqual(sub.measurements.map((m) => m.key), [
          "COUNTER",
          "ALTITUDE",
          "BIG",
          "MODE",
          "LABEL",
          "TEMP",
        ]);
        assert.equal(sub.describe("BOARD_TEMP")?.unit, "C");
        const it = sub[Symbol.asyncIterator]();
        let lastSeq = 0;
        for (let n = 0; n < 60; n++) {
          const i = ++packet;
          const before = realtimeNs();
          await p.send(valuesFor(i));
          const got = new Map<string, Update>();
          while (got.size < ALL.length) {
            const r = await it.next();
            assert.ok(!r.done);
            assert.ok(!got.has(r.value.measurement), `two updates of ${r.value.measurement}`);
            got.set(r.value.measurement, r.value);
          }
          const after = realtimeNs();
          for (const u of got.values()) {
            assertUpdate(u, i);
            assert.equal(u.skipped, 0);
            assert.equal(u.stale, undefined);
            assert.ok(u.timestampNs >= before && u.timestampNs <= after, "receive time");
            assert.equal(u.seq, got.get("COUNTER")!.seq);
          }
          if (lastSeq) assert.equal(got.get("COUNTER")!.seq, lastSeq + 1);
          lastSeq = got.get("COUNTER")!.seq;
        }
        const big = sub.latest("BIG")!;
        assert.equal(typeof big.value, "bigint");
        assert.equal(big.value, valuesFor(packet).big, "64-bit values keep every bit");
      },
    );

    await step("latest() never waits and does not hide values from next()", async () => {
      using sub = subscribe(["COUNTER", "MODE"], { runDir: p.runDir });
      // The broker hands a new subscriber the value it holds.
      const held = await eventually("the held value", () => sub.latest("COUNTER"), 2000);
      assert.equal(held.value, packet);
      assert.throws(() => sub.latest(), /needs a measurement name/);
      assert.throws(() => sub.latest("ALTITUDE"), /does not follow "ALTITUDE"/);
      const i = ++packet;
      await p.send(valuesFor(i));
      const u = await eventually("latest() to show the new value", () => {
        const l = sub.latest("COUNTER");
        return l?.value === i ? l : undefined;
      }, 2000);
      assert.equal(u.skipped, 0);
      // next() still delivers what latest() took, then times out when nothing is new.
      const seen = new Map<string, Update>();
      for (let u2; (u2 = sub.next(1000));) seen.set(u2.measurement, u2);
      assert.equal(seen.get("COUNTER")?.value, i);
      assert.equal(seen.get("MODE")?.value, MODES[i % 3]);
      const t0 = performance.now();
      assert.equal(sub.next(80), undefined);
      assert.ok(performance.now() - t0 >= 75, "next(80) waits about 80 ms");
    });

    await step("a burst: the last value arrives and skipped counts every other one", async () => {
      using sub = subscribe("COUNTER", { runDir: p.runDir });
      const first = await eventually("the held value", () => sub.next(0), 2000);
      const from = packet + 1;
      for (let b = 0; b < 20; b++) {
        await p.send(...Array.from({ length: 50 }, () => valuesFor(++packet)));
      }
      let accounted = 0;
      let last: Update | undefined;
      for await (const u of sub) {
        accounted += 1 + u.skipped;
        last = u;
        if (u.value === packet) break;
      }
      assert.equal(last!.seq - first.seq, packet - from + 1);
      assert.equal(accounted, packet - from + 1, "updates + skipped = values published");
    });

    await step("the broker killed and restarted: iteration resumes within 1 s", async () => {
      const statuses: LinkStatus[] = [];
      using sub = subscribe(["COUNTER", "MODE"], {
        runDir: p.runDir,
        onStatus: (s) => statuses.push(s),
      });
      const i = ++packet;
      await p.send(valuesFor(i));
      const it = sub[Symbol.asyncIterator]();
      // Take everything up to packet i (the broker first hands over the values it held).
      const seen = new Set<string>();
      while (seen.size < 2) {
        const u = (await it.next()).value!;
        if (u.value === i || u.value === MODES[i % 3]) seen.add(u.measurement);
      }
      await p.broker!.stop("SIGKILL");
      // An iteration waiting on the pool notices the hang-up by itself.
      const pending = it.next();
      await eventually("the disconnect", () => statuses.find((s) => !s.connected), 2000);
      assert.equal(sub.connected, false);
      const kept = sub.latest("COUNTER")!;
      assert.equal(kept.value, i);
      assert.equal(kept.stale, true, "values kept while the broker is away are stale");
      const broker = await p.startBroker();
      const up = performance.now();
      let next = i;
      const sender = setInterval(() => p.send(valuesFor(++next)), 10);
      try {
        const r = await pending;
        const resumedMs = performance.now() - up;
        assert.ok(!r.done);
        assert.ok(r.value.value === MODES[i % 3] || (r.value.value as number) > i, "a new value");
        assert.ok(resumedMs < 1000, `resumed ${resumedMs.toFixed(0)} ms after the restart`);
        console.log(`  library resumed ${resumedMs.toFixed(0)} ms after the broker was back`);
      } finally {
        clearInterval(sender);
      }
      packet = next;
      assert.ok(statuses.some((s) => s.connected && s.message === "reconnected"));
      assert.equal(sub.connected, true);
      assert.equal(sub.latest("COUNTER")?.stale, undefined);
      assert.ok(broker === p.broker);
    });

    await step("per-measurement brokers first, the default broker for the rest", async () => {
      const single = spawnGsw("broker", [
        "--config",
        p.config,
        "--run-dir",
        p.runDir,
        "--measurement",
        "COUNTER",
      ], "broker-m");
      try {
        await single.stderr.waitFor(/attached to decom/, 15_000);
        using sub = subscribe(["COUNTER", "MODE"], { runDir: p.runDir });
        // The default broker hands over the MODE value it holds a moment after its reply.
        await eventually("the held MODE value", () => sub.latest("MODE"), 2000);
        // With the default broker gone, COUNTER still flows through its own broker.
        await p.broker!.stop("SIGKILL");
        await eventually("the disconnect", () => sub.connected ? undefined : true, 2000);
        const i = ++packet;
        await p.send(valuesFor(i));
        const u = await eventually(`COUNTER = ${i} through its own broker`, () => {
          const l = sub.latest("COUNTER");
          return l?.value === i ? l : undefined;
        }, 2000);
        assert.equal(u.stale, undefined);
        assert.equal(sub.latest("MODE")?.stale, true);
        // And when its own broker goes, it falls back to the default one once that is back.
        await single.stop("SIGKILL");
        await p.startBroker();
        await eventually("reconnection", () => sub.connected || undefined, 2000);
        const j = ++packet;
        await p.send(valuesFor(j));
        await eventually("COUNTER", () => sub.latest("COUNTER")?.value === j || undefined, 2000);
        await eventually(
          "MODE",
          () => sub.latest("MODE")?.value === MODES[j % 3] || undefined,
          2000,
        );
      } finally {
        await single.stop("SIGKILL");
      }
    });

    await step("values older than three expected periods are stale", async () => {
      // HEARTBEAT is expected at 20 Hz: stale once older than 150 ms.
      const i = ++packet;
      await p.send(valuesFor(i));
      using sub = subscribe("HEARTBEAT", { runDir: p.runDir });
      const fresh = await eventually("the new HEARTBEAT", () => {
        const l = sub.latest();
        return l?.value === i % 256 ? l : undefined;
      }, 2000);
      assert.equal(fresh.stale, undefined);
      await new Promise((r) => setTimeout(r, 250));
      assert.equal(sub.latest()?.stale, true, "250 ms without the 20 Hz heartbeat");
      // A subscriber arriving now gets the held value already marked.
      using late = subscribe("HEARTBEAT", { runDir: p.runDir });
      const held = await eventually("the held HEARTBEAT", () => late.next(0), 2000);
      assert.deepEqual([held.value, held.stale], [i % 256, true]);
      await p.send(valuesFor(++packet));
      const next = late.next(2000)!;
      assert.deepEqual([next.value, next.stale], [packet % 256, undefined]);
    });

    await step("no broker, and unknown measurements, are clear errors", async () => {
      const empty = await Deno.makeTempDir({ prefix: "gsw-sub-empty-" });
      try {
        assert.throws(
          () => subscribe("COUNTER", { runDir: empty }),
          (e: unknown) =>
            e instanceof SubscribeError && e.code === "no-broker" &&
            e.message ===
              `no broker at ${empty}/broker.sock: start one with \`deno task broker\` (or \`deno task start\`)`,
        );
      } finally {
        await Deno.remove(empty, { recursive: true });
      }
      // A rate so low its interval would overflow the broker's timers is refused up front.
      assert.throws(
        () => subscribe("COUNTER", { runDir: p.runDir, maxRateHz: 1e-7 }),
        (e: unknown) => e instanceof RangeError && /from 0\.001 up/.test(e.message),
      );
      assert.throws(
        () => subscribe(["MODE", "COUNTR"], { runDir: p.runDir }),
        (e: unknown) =>
          e instanceof SubscribeError && e.code === "unknown-measurement" &&
          e.suggestion === "COUNTER" && /did you mean "COUNTER"/.test(e.message),
      );
    });

    await step("close() ends a pending iteration and releases everything", async () => {
      const before = await resources();
      const kinds = (fds: string[]) => {
        const count: Record<string, number> = {};
        for (const fd of fds) {
          const kind = fd.split(" ")[1].replace(/\[\d+\]/, "");
          count[kind] = (count[kind] ?? 0) + 1;
        }
        return count;
      };
      const added = (during: string[]) => {
        const [b, d] = [kinds(before.fds), kinds(during)];
        return Object.fromEntries(
          Object.keys(d).map((k) => [k, d[k] - (b[k] ?? 0)]).filter(([, n]) => n !== 0),
        );
      };
      for (const direct of [false, true]) {
        {
          using sub = subscribe(ALL, { runDir: p.runDir, direct });
          const during = await resources();
          // epoll + its cancel eventfd and the broker connection, then: through the broker,
          // its segment's doorbell and the waitset's own duplicate of it (drained before each
          // sleep); directly, decom's bell (one packet carries them all: one bell) and a pidfd
          // of decom. Two mappings either way.
          assert.deepEqual(
            added(during.fds),
            direct
              ? {
                "anon_inode:[eventpoll]": 1,
                "anon_inode:[eventfd]": 2,
                "socket:": 1,
                "anon_inode:[pidfd]": 1,
              }
              : { "anon_inode:[eventpoll]": 1, "anon_inode:[eventfd]": 3, "socket:": 1 },
            during.fds.join("\n"),
          );
          assert.equal(during.memfdMaps, before.memfdMaps + 2);
          const it = sub[Symbol.asyncIterator]();
          while (sub.next(0)); // drain what the broker handed over
          const pending = it.next();
          setTimeout(() => sub.close(), 50);
          assert.deepEqual(await pending, { done: true, value: undefined });
          assert.equal(sub.next(10), undefined);
        }
        assert.deepEqual(await resources(), before, "descriptors and mappings after close");
      }

      const ac = new AbortController();
      const sub = subscribe("COUNTER", { runDir: p.runDir, signal: ac.signal });
      while (sub.next(0));
      const pending = sub[Symbol.asyncIterator]().next();
      ac.abort();
      assert.equal((await pending).done, true);
      assert.equal(sub.closed, true);
      assert.deepEqual(await resources(), before, "descriptors and mappings after abort");
    });

    await step("imported from a URL with --allow-ffi scoped to the library", async () => {
      const ac = new AbortController();
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
        async (req) => {
          const path = decodeURIComponent(new URL(req.url).pathname);
          try {
            const body = await Deno.readFile(`${REPO}${path}`);
            return new Response(body, { headers: { "content-type": "application/typescript" } });
          } catch {
            return new Response("not found", { status: 404 });
          }
        },
      );
      const home = await Deno.makeTempDir({ prefix: "gsw-sub-url-" });
      const origin = `127.0.0.1:${server.addr.port}`;
      const watch = spawn("watch", [
        "run",
        `--allow-import=${origin}`,
        `--allow-ffi=${LIBRARY}`,
        "--allow-env=GSW_LIB,GSW_RUN_DIR,XDG_RUNTIME_DIR,HOME",
        "--no-prompt",
        `http://${origin}/examples/watch.ts`,
        "COUNTER",
        "MODE",
      ], {
        // Outside the repository, with its own cache: nothing local to lean on.
        cwd: home,
        env: { GSW_LIB: LIBRARY, GSW_RUN_DIR: p.runDir, DENO_DIR: `${home}/cache` },
      });
      try {
        const i = ++packet;
        const sender = setInterval(() => p.send(valuesFor(i)), 50);
        try {
          await watch.stdout.waitFor(new RegExp(`^COUNTER = ${i}$`), 20_000);
        } catch (e) {
          throw new Error(`${(e as Error).message}\nstderr:\n${watch.stderr.lines.join("\n")}`);
        } finally {
          clearInterval(sender);
        }
        const status = await watch.stop("SIGINT");
        assert.equal(status.code, 0, watch.stderr.lines.join("\n"));
        assert.ok(watch.stdout.lines.includes(`last COUNTER: ${i}`), watch.stdout.lines.join("\n"));
      } finally {
        await watch.stop("SIGKILL");
        ac.abort();
        await server.finished;
        await Deno.remove(home, { recursive: true });
      }
    });
  } finally {
    await p.stop();
  }
});
