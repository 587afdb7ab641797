/**
 * The channel between real Deno processes: each helper in `tests/helpers/` runs with only
 * `--allow-ffi=<libgsw.so>` and sets its link up the way gsw does (private run directory,
 * SEQPACKET socket, descriptors passed with SCM_RIGHTS, `SegmentReader.attach`), so these
 * tests also prove all of that works under that one scoped permission.
 */
import assert from "node:assert/strict";
import {
  type Child,
  LIB,
  processState,
  tempRunDir,
  until,
  withChildren,
} from "./helpers/ffi_child.ts";
import { tornReason } from "./helpers/ffi_torn_pattern.ts";

/** Polls until `pid` is in state `want` (S sleeping, T stopped). */
function untilState(pid: number, want: string): Promise<void> {
  return until(() => processState(pid) === want, 5000, `process ${pid} in state ${want}`);
}

Deno.test("helper processes run with nothing but the native library allowed", async () => {
  await withChildren(async (spawn) => {
    const child = spawn("ffi_permissions.ts", {});
    const p = await child.next("permissions");
    await child.finish();
    assert.equal(p.library, LIB);
    assert.equal(p.ffiLibrary, "granted");
    assert.notEqual(p.ffiAnyOther, "granted");
    for (const [name, state] of Object.entries(p.states)) {
      assert.notEqual(state, "granted", `the child may use ${name}`);
    }
    assert.equal(p.readError, "NotCapable");
    assert.equal(p.clockWorks, true);
  });
});

Deno.test("the torn-value check itself catches torn, misplaced and mis-sized values", () => {
  // The cross-process test below passes only if this checker never fires, so show it can.
  const value = (seq: number, len: number, ch: number) => {
    const words = new Uint32Array(len / 4);
    for (let i = 0; i < len / 8; i++) words.set([seq, (ch << 24) | i], 2 * i);
    return new Uint8Array(words.buffer);
  };
  assert.equal(tornReason(2, 7, value(7, 4096, 2)), null);
  const torn = value(7, 4096, 2);
  torn.set(value(8, 4096, 2).subarray(2048), 2048);
  assert.match(tornReason(2, 7, torn)!, /word 256/);
  assert.match(tornReason(2, 7, value(7, 4096, 1))!, /word 0/);
  assert.match(tornReason(1, 7, value(7, 256, 1))!, /length 256, expected 64/);
});

Deno.test("a flat-out writer process and a reader process: no torn read, no sequence going back", async () => {
  using dir = tempRunDir();
  await withChildren(async (spawn) => {
    const writer = spawn("ffi_torn_writer.ts", { runDir: dir.run, durationMs: 2500 });
    const { path } = await writer.next("listening");
    const reader = spawn("ffi_torn_reader.ts", { path });
    const w = await writer.next("done", 20_000);
    const r = await reader.next("done", 20_000);
    await Promise.all([writer.finish(), reader.finish()]);
    console.log(
      `writer: ${w.publishes} publishes (${Math.round(w.publishes / w.elapsedMs)}k/s), ` +
        `${w.rings} rings; reader: ${r.reads.join("+")} values taken, ${r.waits} sleeps, ` +
        `torn ${r.torn}, backwards ${r.backwards}`,
    );
    assert.equal(r.firstProblem, null);
    assert.equal(r.torn, 0);
    assert.equal(r.backwards, 0);
    assert.equal(r.badSkipped, 0);
    assert.deepEqual(r.unaccounted, [0, 0, 0], "taken + skipped must cover every publish");
    // Each of the three channels got `last` values, plus one on the end channel.
    assert.equal(w.publishes, 3 * w.last + 1);
    // Meaningful only if the reader really read while the writer wrote.
    for (const n of r.reads) assert.ok(n > 100, `only ${n} of ${w.last} values taken`);
  });
});

for (const mode of ["sync", "async"] as const) {
  const how = mode === "sync" ? "SegmentReader.waitSync" : "an async Waitset.wait";
  Deno.test(`10^4 publish → wake → acknowledge rounds between two processes (${how})`, async () => {
    using dir = tempRunDir();
    const rounds = 10_000;
    await withChildren(async (spawn) => {
      const opts = { runDir: dir.run, channels: 1, batches: rounds, mode, pattern: "all" };
      // The writer pauses 50 µs before each publish so the reader is asleep by then.
      const ping = spawn("ffi_ping.ts", { ...opts, pauseUs: 50 });
      const { path } = await ping.next("listening");
      const pong = spawn("ffi_pong.ts", { ...opts, path });
      // Each side fails by itself after a 5 s wait with nothing; this bounds the whole run.
      const w = await ping.next("done", 30_000);
      const r = await pong.next("done", 30_000);
      await Promise.all([ping.finish(), pong.finish()]);
      const netUs = (w.elapsedMs * 1000) / rounds - 50;
      console.log(
        `${rounds} rounds in ${w.elapsedMs.toFixed(0)} ms ` +
          `(${Math.round(rounds / (w.elapsedMs / 1000))} rounds/s; ` +
          `${netUs.toFixed(1)} µs per round trip beyond the 50 µs pause); ` +
          `reader slept ${r.sleeps} times, woke to nothing ${r.emptyWakes} times`,
      );
      assert.equal(r.values, rounds);
      // Every publish found the reader idle (it had taken everything); it rang unless the
      // reader was still awake (its awake word set), which its pre-sleep re-check covers.
      assert.ok(w.rings <= rounds && w.rings >= rounds / 2, `${w.rings} rings`);
      assert.equal(w.ringsReported, w.rings);
      // The test proves something only about rounds in which the reader really slept.
      assert.ok(r.sleeps >= rounds / 10, `the reader slept in only ${r.sleeps} rounds`);
    });
  });
}

Deno.test("a writer keeps publishing while its reader process is stopped, ringing once", async () => {
  using dir = tempRunDir();
  const N = 100_000;
  await withChildren(async (spawn) => {
    const writer = spawn("ffi_cmd_writer.ts", { runDir: dir.run, capacities: [64] });
    const { path } = await writer.next("listening");
    const reader: Child = spawn("ffi_stop_reader.ts", { path, until: 1 + N });
    await writer.next("served");
    await reader.next("waiting");
    await writer.send("publish 0 1");
    assert.equal((await writer.next("published")).rang, true);
    assert.deepEqual(await reader.next("took"), {
      event: "took",
      channel: 0,
      seq: 1,
      skipped: 0,
      intact: true,
    });
    await reader.next("waiting");
    await untilState(reader.pid, "S"); // asleep on its doorbell
    Deno.kill(reader.pid, "SIGSTOP");
    await untilState(reader.pid, "T");

    await writer.send(`burst 0 2 ${N}`);
    const burst = await writer.next("burst", 10_000);
    assert.equal(processState(reader.pid), "T", "the reader must still be stopped");
    assert.equal(burst.rings, 1, "one ring for the first publish after the reader went idle");
    await writer.send("stats");
    assert.deepEqual(await writer.next("stats"), { event: "stats", publishes: N + 1, rings: 2 });

    Deno.kill(reader.pid, "SIGCONT");
    assert.deepEqual(await reader.next("took"), {
      event: "took",
      channel: 0,
      seq: 1 + N,
      skipped: N - 1,
      intact: true,
    });
    await reader.finish();
    console.log(`${N} publishes in ${burst.elapsedMs.toFixed(1)} ms with the reader stopped`);
    await writer.send("quit");
    await writer.finish();
  });
});

Deno.test("333 channels behind one doorbell across processes: every update seen, at most one ring per batch", async () => {
  using dir = tempRunDir();
  const batches = 400;
  await withChildren(async (spawn) => {
    const opts = { runDir: dir.run, channels: 333, batches, mode: "async", pattern: "varied" };
    const ping = spawn("ffi_ping.ts", opts);
    const { path } = await ping.next("listening");
    const pong = spawn("ffi_pong.ts", { ...opts, path });
    const w = await ping.next("done", 30_000);
    const r = await pong.next("done", 30_000);
    await Promise.all([ping.finish(), pong.finish()]);
    console.log(
      `${batches} batches, ${w.publishes} values in ${w.elapsedMs.toFixed(0)} ms, ` +
        `${w.rings} rings; reader slept ${r.sleeps} times`,
    );
    // The reader checked each value (channel in the batch, next seq, nothing skipped) and
    // acknowledged each batch only once complete; here: nothing went missing in between.
    assert.equal(r.values, w.publishes);
    // At most one ring per batch (none when the reader was still awake when it came).
    assert.ok(w.rings >= 1 && w.rings <= batches, `${w.rings} rings for ${batches} batches`);
    assert.equal(w.ringsReported, w.rings, "ring() reported each of them");
  });
});
