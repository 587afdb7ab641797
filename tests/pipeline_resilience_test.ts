/**
 * The pipeline keeps going whatever order its parts start in and whichever part dies: start
 * order permutations, a SIGKILL crash matrix (decom, broker, logger, a subscriber) with
 * restarts, a stopped subscriber that must slow nobody, and idle processes that burn no CPU.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { brokerSocket, decomSocket, loggerSocket } from "../control/rundir.ts";
import { UnixConnection } from "../ffi/mod.ts";
import { subscribeWhenReady, type Update } from "../mod.ts";
import { eventually, Pipeline, type Proc } from "./helpers/pipeline.ts";

/** A Nav datagram whose ALTITUDE is `k` (hand-encoded: float32 little-endian at offset 4). */
function nav(k: number): Uint8Array {
  const b = new Uint8Array(24);
  new DataView(b.buffer).setFloat32(4, k, true);
  return b;
}

/** Sends one Nav datagram every `everyMs` (ALTITUDE = 1, 2, 3, …) until stopped. */
function feed(p: Pipeline, everyMs = 5): { stop: () => Promise<void>; sent: () => number } {
  let k = 0;
  let running = true;
  const done = (async () => {
    while (running) {
      await p.send(p.ports[0], [nav(++k)]);
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await done;
    },
    sent: () => k,
  };
}

/** JSON lines printed so far by a `subscribe --json` process. */
function updates(proc: Proc): { measurement: string; value: number; seq: number }[] {
  return proc.lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
}

function subscriber(p: Pipeline, ...names: string[]): Proc {
  return p.spawn("subscribe", ["--json", "--wait", ...names], "subscribe");
}

const ORDERS: string[][] = [
  ["decom", "broker", "subscriber"],
  ["decom", "subscriber", "broker"],
  ["broker", "decom", "subscriber"],
  ["broker", "subscriber", "decom"],
  ["subscriber", "decom", "broker"],
  ["subscriber", "broker", "decom"],
];

for (const order of ORDERS) {
  Deno.test(`start order ${order.join(" → ")}: values flow`, async () => {
    await using p = Pipeline.create();
    let sub: Proc | undefined;
    for (const what of order) {
      if (what === "decom") p.spawn("decom", ["--config", p.configPath]);
      if (what === "broker") p.spawn("broker", ["--config", p.configPath]);
      if (what === "subscriber") sub = subscriber(p, "ALTITUDE");
      await new Promise((r) => setTimeout(r, 300));
    }
    const f = feed(p);
    try {
      const line = await sub!.waitFor(/"measurement":"ALTITUDE"/, 15000);
      const u = JSON.parse(line);
      assert(u.value >= 1 && u.value <= f.sent(), `a value that was sent: ${line}`);
      // Ctrl-C ends it cleanly after waiting, as without --wait.
      sub!.kill("SIGINT");
      assertEquals((await sub!.status).code, 0, sub!.lines.join("\n"));
    } finally {
      await f.stop();
    }
  });
}

Deno.test("subscribe --wait: Ctrl-C while no broker is there yet exits 0", async () => {
  await using p = Pipeline.create();
  const sub = subscriber(p, "ALTITUDE");
  await sub.waitFor(/waiting for it/, 15000);
  sub.kill("SIGINT");
  const status = await sub.status;
  assertEquals(status.code, 0, `${status.signal ?? ""} ${sub.lines.join("\n")}`);
});

/** Waits for the next library update with ALTITUDE above `after`; returns it and when. */
async function nextAbove(
  iter: AsyncIterator<Update>,
  after: number,
  timeoutMs: number,
): Promise<{ update: Update; at: number }> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new Error(`no ALTITUDE above ${after} within ${timeoutMs} ms`);
    const r = await Promise.race([
      iter.next(),
      new Promise<null>((res) => setTimeout(() => res(null), left)),
    ]);
    if (r === null) continue;
    if (r.done) throw new Error("the subscription ended");
    if ((r.value.value as number) > after) return { update: r.value, at: performance.now() };
  }
}

Deno.test("crash matrix: SIGKILL each part in turn; the rest run on, it rejoins, values resume within 1 s", async () => {
  await using p = Pipeline.create();
  const procs: Record<string, Proc> = {
    logger: await p.logger(),
    decom: await p.decom(),
    broker: await p.broker(),
    subscriber: subscriber(p, "ALTITUDE", "vehicle.drops"),
  };
  const f = feed(p);
  await using sub = await subscribeWhenReady(["ALTITUDE"], { runDir: p.runDir });
  const iter = sub[Symbol.asyncIterator]();
  try {
    await procs.subscriber.waitFor(/"measurement":"ALTITUDE"/);
    await nextAbove(iter, 0, 10000);
    const spawnOnly: Record<string, () => Proc> = {
      decom: () => p.spawn("decom", ["--config", p.configPath], "decom"),
      broker: () => p.spawn("broker", ["--config", p.configPath], "broker"),
      logger: () =>
        p.spawn("logger", ["--config", p.configPath, "--log-dir", `${p.dir}/logs`], "logger"),
      subscriber: () => subscriber(p, "ALTITUDE", "vehicle.drops"),
    };
    const socketOf: Record<string, string | undefined> = {
      decom: decomSocket(p.runDir, "vehicle"),
      broker: brokerSocket(p.runDir),
      logger: loggerSocket(p.runDir),
    };
    for (const victim of ["decom", "broker", "logger", "subscriber"]) {
      procs[victim].kill("SIGKILL");
      await procs[victim].status;
      // The socket file of a killed server stays behind: the restart must not trip on it.
      if (socketOf[victim]) assert(Deno.statSync(socketOf[victim]!).isSocket, victim);
      await new Promise((r) => setTimeout(r, 300));
      for (const [name, proc] of Object.entries(procs)) {
        if (name === victim) continue;
        const exited = await Promise.race([
          proc.status.then(() => true),
          new Promise((r) => setTimeout(() => r(false), 10)),
        ]);
        assert(!exited, `${name} must keep running when ${victim} dies:\n${proc.lines.join("\n")}`);
      }
      const before = f.sent();
      const spawned = performance.now();
      procs[victim] = spawnOnly[victim]();
      // "Back" is when the restarted process accepts connections on its socket again (the
      // killed one's file is still there, refusing them); a subscriber has no socket, so it
      // is back when spawned. Deno's start-up time is not gsw's to promise.
      const path = socketOf[victim];
      const up = path === undefined ? spawned : await eventually(
        `${victim} to listen again`,
        () => {
          try {
            UnixConnection.connect(path).close();
            return performance.now();
          } catch {
            return undefined;
          }
        },
        15000,
      );
      const { at } = await nextAbove(iter, before, 10000);
      const resumeMs = at - up;
      console.log(
        `${victim}: back ${(up - spawned).toFixed(0)} ms after the restart; library values ` +
          `resumed ${resumeMs.toFixed(0)} ms after that`,
      );
      assert(resumeMs < 1000, `values resumed ${resumeMs.toFixed(0)} ms after ${victim} was back`);
      await eventually(
        `the CLI subscriber to resume after ${victim}`,
        () =>
          updates(procs.subscriber).some((u) => u.measurement === "ALTITUDE" && u.value > before)
            ? true
            : undefined,
      );
    }
  } finally {
    await f.stop();
  }
  // The logger was killed mid-stream: decom buffered, so nothing was dropped.
  await eventually("decom's drop counter", () => {
    const drops = updates(procs.subscriber).filter((u) => u.measurement === "vehicle.drops");
    return drops.length ? drops[drops.length - 1].value : undefined;
  });
  const drops = updates(procs.subscriber).filter((u) => u.measurement === "vehicle.drops");
  assertEquals(drops[drops.length - 1].value, 0, "decom dropped raw packets for the logger");
});

Deno.test("a stopped subscriber slows neither decom nor the other subscribers", async () => {
  await using p = Pipeline.create();
  await p.decom(["--health-interval", "0.2"]);
  await p.broker();
  const stopped = subscriber(p, "ALTITUDE");
  await using other = await subscribeWhenReady(["ALTITUDE", "vehicle.packets"], {
    runDir: p.runDir,
  });
  const f = feed(p, 2);
  try {
    await stopped.waitFor(/"measurement":"ALTITUDE"/);
    stopped.kill("SIGSTOP");
    const iter = other[Symbol.asyncIterator]();
    const start = f.sent();
    // While it is stopped, the other subscriber sees the stream advance steadily.
    let last = start;
    for (let i = 0; i < 5; i++) {
      const { update } = await nextAbove(iter, last + 50, 10000);
      last = update.value as number;
    }
    const packets = other.latest("vehicle.packets");
    assert(
      packets && BigInt(packets.value as bigint) >= BigInt(last) - 200n,
      `decom kept counting: ${packets?.value} datagrams at ALTITUDE ${last}`,
    );
    stopped.kill("SIGCONT");
    const before = f.sent();
    await eventually(
      "the stopped subscriber to catch up",
      () => updates(stopped).some((u) => u.value > before) ? true : undefined,
    );
    const caught = updates(stopped).find((u) => u.value > before)!;
    assert(caught.seq > before, "it resumed on the newest values, not a backlog");
  } finally {
    await f.stop();
  }
});

/** CPU nanoseconds of each thread of a process so far (scheduler statistics, ns). */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      out.set(
        t.name,
        Number(Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/schedstat`).split(" ")[0]),
      );
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/** CPU seconds a process used between two snapshots (threads born meanwhile count whole). */
function cpuBetween(before: Map<string, number>, after: Map<string, number>): number {
  let ns = 0;
  for (const [tid, v] of after) ns += v - (before.get(tid) ?? 0);
  return ns / 1e9;
}

Deno.test("idle for 10 s, every process uses < 0.1 % CPU", async () => {
  await using p = Pipeline.create();
  const procs = [await p.logger(), await p.decom(), await p.broker(), subscriber(p, "ALTITUDE")];
  await p.send(p.ports[0], [nav(1)]);
  await procs[3].waitFor(/"measurement":"ALTITUDE"/);
  // Let start-up work (JIT, GC) settle before measuring.
  await new Promise((r) => setTimeout(r, 2000));
  const before = procs.map((x) => threadCpu(x.pid));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 10000));
  const wall = (performance.now() - t0) / 1000;
  const report = procs.map((x, i) => {
    const pct = (cpuBetween(before[i], threadCpu(x.pid)) / wall) * 100;
    return { name: x.name, pct };
  });
  console.log(report.map((r) => `${r.name} ${r.pct.toFixed(3)} %`).join(", "));
  for (const r of report) {
    assert(r.pct < 0.1, `${r.name} used ${r.pct.toFixed(3)} % CPU while idle`);
  }
});
