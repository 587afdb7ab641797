/**
 * The broker at its limits: out of file descriptors while clients keep connecting. It must
 * keep serving, and serve again once they leave.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { brokerSocket } from "../control/rundir.ts";
import { MAX_CONTROL_MESSAGE } from "../control/protocol.ts";
import { UnixConnection } from "../ffi/mod.ts";
import { eventually, Pipeline, sleep, spawn, taskArgs } from "./helpers/pipeline.ts";

const text = (o: unknown) => new TextEncoder().encode(JSON.stringify(o));

/** CPU time (user + system) of a process so far, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

Deno.test("a broker out of descriptors keeps running, delays new clients, and serves once they close", async () => {
  await using p = Pipeline.create();
  await p.decom();
  // The broker exactly as its task starts it, under a descriptor limit a few dozen clients reach.
  const broker = spawn("broker", [
    "-c",
    `ulimit -n 64 && exec "$0" "$@"`,
    Deno.execPath(),
    ...taskArgs("broker"),
    "--config",
    p.configPath,
  ], { cmd: "bash", env: { GSW_RUN_DIR: p.runDir, NO_COLOR: "1" } });
  p.procs.push(broker);
  await p.waitForSocket(brokerSocket(p.runDir), broker);
  await broker.waitFor(/attached to decom/);

  // More clients than descriptors: each asks for the list; the broker answers those it took.
  const conns: UnixConnection[] = [];
  for (let i = 0; i < 100; i++) {
    const c = UnixConnection.connect(brokerSocket(p.runDir));
    assert(c.send(text({ v: 1, op: "list", client: `crowd ${i}` })));
    conns.push(c);
  }
  await broker.waitFor(/EMFILE/, 5000);
  await sleep(200);
  assertEquals(broker.exited, null, `the broker exited:\n${broker.lines.join("\n")}`);
  // Out of the waitset while starved: no spinning on the listener the kernel says is ready.
  const ticks = cpuTicks(broker.pid);
  await sleep(1500);
  const spent = cpuTicks(broker.pid) - ticks;
  assert(spent < 30, `the starved broker used ${spent} ticks of CPU in 1.5 s`);
  const buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  const answered = conns.filter((c) => {
    const got = c.recv(buf);
    return got !== null && got !== "closed";
  }).length;
  assert(answered > 0 && answered < conns.length, `${answered} of ${conns.length} answered`);
  assertEquals(
    broker.lines.filter((l) => /EMFILE/.test(l)).length,
    1,
    `said once per episode:\n${broker.lines.join("\n")}`,
  );

  // Once they leave, a normal subscription is served.
  for (const c of conns) c.close();
  const good = await eventually("a subscription to be served", () => {
    try {
      return p.subscribeRaw(["ALTITUDE"]);
    } catch {
      return undefined;
    }
  }, 5000);
  assertEquals(good.reply.channels[0].key, "ALTITUDE");
  good.reader.close();
  good.conn.close();
  await broker.waitFor(/accepting connections again/, 5000);
  assertEquals(broker.exited, null, `the broker exited:\n${broker.lines.join("\n")}`);
});
