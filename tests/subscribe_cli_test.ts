/**
 * `gsw subscribe` as a real process against a real decom and broker: every value a sender
 * encodes is printed (JSON exact to the last bit, text with units, limits and skips), read
 * live from the pipe; --count, --timeout, --rate; resuming after the broker is killed and
 * restarted; and the one-line errors with their exit codes.
 */
import assert from "node:assert/strict";
import { realtimeNs } from "../ffi/mod.ts";
import { isoTime } from "../subscribe/format.ts";
import { subscribe } from "../mod.ts";
import { eventually, type Proc, spawnGsw } from "./helpers/pipeline.ts";
import { parseExact } from "./helpers/json.ts";
import { MODES, SubscribePipeline, valuesFor } from "./helpers/subscribe_pipeline.ts";

const ALL = ["COUNTER", "ALTITUDE", "BIG", "MODE", "LABEL", "BOARD_TEMP"];

/** Reads the next `n` lines of a child's stdout, failing with its stderr if they do not come. */
async function lines(child: Proc, n: number, ms = 5000): Promise<string[]> {
  const out: string[] = [];
  while (out.length < n) {
    const line = await child.stdout.next(ms);
    if (line === undefined) {
      throw new Error(
        `got ${out.length} of ${n} lines from ${child.name}:\n${out.join("\n")}\nstderr:\n${
          child.stderr.lines.join("\n")
        }`,
      );
    }
    out.push(line);
  }
  return out;
}

function subscribeCli(p: SubscribePipeline, args: string[]): Proc {
  return spawnGsw("subscribe", [...args, "--run-dir", p.runDir]);
}

async function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = spawnGsw("subscribe", args);
  const status = await child.status;
  return {
    code: status.code,
    stdout: child.stdout.lines.join("\n"),
    stderr: child.stderr.lines.join("\n"),
  };
}

/** Sends packet `i` and waits until the broker holds it (a new subscriber gets it at once). */
async function sendHeld(p: SubscribePipeline, i: number): Promise<void> {
  using sub = subscribe("COUNTER", { runDir: p.runDir });
  await p.send(valuesFor(i));
  await eventually(`packet ${i} held`, () => sub.latest()?.value === i || undefined, 5000);
}

Deno.test("subscribe CLI: output, options, reconnection, errors", async (t) => {
  const p = await SubscribePipeline.start();
  let packet = 0;
  const step = p.steps(t);
  try {
    await step("--json prints every value a sender encodes, exactly, as it arrives", async () => {
      const N = 40;
      await sendHeld(p, ++packet);
      const cli = subscribeCli(p, [...ALL, "--json", "--count", String(ALL.length * (N + 1))]);
      try {
        // The values the broker held come first: the subscriber is connected.
        for (const line of await lines(cli, ALL.length, 15_000)) {
          assert.equal(parseExact(line).seq, packet);
        }
        const roundTrips: number[] = [];
        for (let n = 0; n < N; n++) {
          const i = ++packet;
          const v = valuesFor(i);
          const before = realtimeNs();
          const t0 = performance.now();
          await p.send(v);
          // Read live: the next packet goes out only once these lines are through the pipe.
          const got = (await lines(cli, ALL.length)).map(parseExact);
          roundTrips.push(performance.now() - t0);
          const after = realtimeNs();
          const by = new Map(got.map((o) => [o.measurement as string, o]));
          assert.deepEqual([...by.keys()].sort(), [...ALL.slice(0, 5), "TEMP"].sort());
          for (const o of got) {
            assert.equal(o.seq, i);
            assert.equal(o.skipped, 0);
            const ts = o.timestamp_ns as bigint;
            assert.equal(typeof ts, "bigint", "timestamp_ns is an exact integer");
            assert.ok(ts >= before && ts <= after, "receive time");
            assert.equal(o.time, isoTime(ts));
            assert.equal(o.stale, undefined);
          }
          const pick = (k: string) => {
            const o = by.get(k)!;
            return [o.value, o.raw, o.unit];
          };
          assert.deepEqual(pick("COUNTER"), [v.counter, v.counter, null]);
          assert.deepEqual(pick("ALTITUDE"), [v.altitude, v.altitude, "m"]);
          assert.deepEqual(pick("BIG"), [v.big, v.big, null]);
          assert.deepEqual(pick("MODE"), [MODES[v.mode], v.mode, null]);
          assert.deepEqual(pick("LABEL"), [v.label, v.label, null]);
          assert.deepEqual(pick("TEMP"), [v.tempRaw * 0.1, v.tempRaw, "C"]);
          assert.equal(by.get("TEMP")!.name, "BOARD_TEMP");
          assert.equal(by.get("TEMP")!.limit, "ok");
        }
        const status = await cli.status;
        assert.equal(status.code, 0, "--count reached");
        roundTrips.sort((a, b) => a - b);
        console.log(
          `  packet sent → 6 JSON lines read from the CLI's pipe: median ${
            (roundTrips[N >> 1] * 1000).toFixed(0)
          } µs, max ${(roundTrips[N - 1] * 1000).toFixed(0)} µs`,
        );
      } finally {
        await cli.stop("SIGKILL");
      }
    });

    await step("text: time, name, value with unit, limit state, skipped", async () => {
      await sendHeld(p, ++packet);
      const cli = subscribeCli(p, ["BOARD_TEMP", "MODE"]);
      try {
        await lines(cli, 2, 15_000);
        const warm = { ...valuesFor(++packet), tempRaw: 600 };
        const hot = { ...valuesFor(++packet), tempRaw: 900, mode: 2 };
        await p.send(warm);
        const [a, b] = await lines(cli, 2);
        const time = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z {2}/;
        assert.match(a, time);
        assert.deepEqual(
          [a, b].map((l) => l.replace(time, "")).sort(),
          ["BOARD_TEMP  60 C  WARN", `MODE        ${MODES[warm.mode]}`].sort(),
        );
        await p.send(hot);
        const hotLines = (await lines(cli, 2)).map((l) => l.replace(time, "")).sort();
        assert.deepEqual(hotLines, ["BOARD_TEMP  90 C  ALARM", "MODE        FLIGHT"]);
        // A burst the subscriber cannot see value by value: the skips are counted.
        const from = packet + 1;
        await p.send(...Array.from({ length: 60 }, () => valuesFor(++packet)));
        let shown = 0;
        let skipped = 0;
        for (;;) {
          const [line] = await lines(cli, 1);
          if (!line.includes("BOARD_TEMP")) continue;
          shown++;
          skipped += Number(/\((\d+) skipped\)$/.exec(line)?.[1] ?? 0);
          const temp = valuesFor(packet).tempRaw / 10;
          if (line.includes(`BOARD_TEMP  ${temp} C`)) break;
        }
        assert.equal(shown + skipped, packet - from + 1, "shown + skipped = published");
        assert.ok(skipped > 0, "a 60-packet burst skips some");
        assert.equal((await cli.stop("SIGINT")).code, 0, "Ctrl-C exits 0");
      } finally {
        await cli.stop("SIGKILL");
      }
    });

    await step("--rate: the broker sends at most HZ updates per second", async () => {
      await sendHeld(p, ++packet);
      const cli = subscribeCli(p, ["COUNTER", "--json", "--rate", "5"]);
      try {
        await lines(cli, 1, 15_000);
        const start = packet;
        const sender = setInterval(() => p.send(valuesFor(++packet)), 10);
        await new Promise((r) => setTimeout(r, 1000));
        clearInterval(sender);
        await new Promise((r) => setTimeout(r, 300)); // the last held value, when due
        const got = cli.stdout.lines.slice(1).map(parseExact);
        assert.ok(got.length >= 3 && got.length <= 8, `${got.length} updates in ~1.3 s at 5 Hz`);
        const accounted = got.reduce((n, o) => n + 1 + (o.skipped as number), 0);
        assert.equal(accounted, packet - start, "updates + skipped = published");
        assert.equal(got.at(-1)!.value, packet, "the newest value is sent last");
      } finally {
        await cli.stop("SIGKILL");
      }
    });

    await step("--timeout: exit 1 with one clear line when no update comes", async () => {
      // Start idle: the held value arrives at once, then nothing.
      const r = await run(["COUNTER", "--timeout", "0.4", "--run-dir", p.runDir]);
      assert.equal(r.code, 1);
      assert.equal(r.stdout.split("\n").filter(Boolean).length, 1, "the held value");
      assert.equal(r.stderr, "gsw subscribe: no update of COUNTER within 0.4 s");
    });

    await step("the broker killed and restarted: the CLI resumes within 1 s", async () => {
      await sendHeld(p, ++packet);
      const cli = subscribeCli(p, ["COUNTER", "--json"]);
      try {
        await lines(cli, 1, 15_000);
        await p.broker!.stop("SIGKILL");
        await cli.stderr.waitFor(/the broker went away; keeping the last values/, 5000);
        await p.startBroker();
        const up = performance.now();
        const last = packet;
        const sender = setInterval(() => p.send(valuesFor(++packet)), 10);
        try {
          const [line] = await lines(cli, 1, 3000);
          const resumedMs = performance.now() - up;
          const o = parseExact(line);
          assert.ok((o.value as number) > last);
          assert.ok(resumedMs < 1000, `resumed ${resumedMs.toFixed(0)} ms after the restart`);
          console.log(`  CLI resumed ${resumedMs.toFixed(0)} ms after the broker was back`);
        } finally {
          clearInterval(sender);
        }
        await cli.stderr.waitFor(/reconnected/, 1000);
        const status = await cli.stop("SIGTERM");
        assert.equal(status.code, 0, "SIGTERM exits 0");
        assert.equal(status.signal, null, "by itself, not killed by the signal");
      } finally {
        await cli.stop("SIGKILL");
      }
    });

    await step("errors: one line and exit 1", async () => {
      const unknown = await run(["MODE", "COUNTR", "--run-dir", p.runDir]);
      assert.deepEqual([unknown.code, unknown.stdout], [1, ""]);
      assert.equal(
        unknown.stderr,
        `gsw subscribe: no measurement "COUNTR" in "subtest"; did you mean "COUNTER"?`,
      );

      const empty = await Deno.makeTempDir({ prefix: "gsw-sub-empty-" });
      try {
        const none = await run(["COUNTER", "--run-dir", empty, "--config", p.config]);
        assert.deepEqual([none.code, none.stdout], [1, ""]);
        assert.equal(
          none.stderr,
          `gsw subscribe: no broker at ${empty}/broker.sock: start one with \`deno task broker\` (or \`deno task start\`)`,
        );
        // No broker to ask: the did-you-mean comes from the config.
        const typo = await run(["BORD_TEMP", "--run-dir", empty, "--config", p.config]);
        assert.equal(typo.code, 1);
        assert.equal(
          typo.stderr,
          `gsw subscribe: no measurement "BORD_TEMP" in ${p.config}; did you mean "BOARD_TEMP"?`,
        );
      } finally {
        await Deno.remove(empty, { recursive: true });
      }

      const usage = await run(["--count", "0", "COUNTER"]);
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /--count takes a whole number between 1 and ∞, not "0"/);
    });
  } finally {
    await p.stop();
  }
});
