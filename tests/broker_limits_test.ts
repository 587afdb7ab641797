/**
 * The broker at its limits: out of file descriptors while clients keep connecting, and a
 * subscription whose reply would not fit in one control message. It must keep serving, and
 * tell a client plainly what went wrong.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { subscribe } from "../mod.ts";
import { requestSync } from "../control/client.ts";
import { brokerSocket } from "../control/rundir.ts";
import { MAX_CONTROL_MESSAGE } from "../control/protocol.ts";
import { closeFd, UnixConnection } from "../ffi/mod.ts";
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

/**
 * A config of one-byte measurements, all in one packet on {PORT0}. The first `fat` have an
 * enum long enough that the library's usual request (512 measurements) does not fit in one
 * reply.
 */
function bigConfig(keys: string[], fat: number): string {
  const labels = Array.from({ length: 30 }, (_, v) => `${200 + v}: STATE_${v}`).join(", ");
  return [
    "name: big",
    "sources:",
    "  - { name: vehicle, bind: 127.0.0.1 }",
    "measurements:",
    ...keys.map((k, i) =>
      `  ${k}: { type: uint, size: 1, unit: V${i < fat ? `, enum: { ${labels} }` : ""} }`
    ),
    "telemetry_packets:",
    "  - name: P",
    "    port: {PORT0}",
    `    measurements: [${keys.join(", ")}]`,
    "",
  ].join("\n");
}

Deno.test("a subscription too large for one reply: the broker says how many fit, the library splits it", async () => {
  // More than one request may even name (4096), and far more than one reply describes.
  const keys = Array.from({ length: 4500 }, (_, i) => `M${String(i).padStart(4, "0")}`);
  await using p = Pipeline.create({ configText: bigConfig(keys, 600) });
  await p.decom();
  const broker = await p.broker();
  await broker.waitFor(/attached to decom/);

  // Over the raw protocol: an explicit answer, not a hang-up.
  using conn = UnixConnection.connect(brokerSocket(p.runDir));
  const { reply, fds } = requestSync(conn, {
    v: 1,
    op: "subscribe",
    measurements: keys.slice(0, 4000),
    client: "t",
  }, 5000);
  assertEquals(fds, []);
  assert(!reply.ok, JSON.stringify(reply).slice(0, 200));
  assertEquals(reply.error, "too-large");
  const fit = Number(/at most (\d+) of them/.exec(reply.message)?.[1]);
  assert(fit > 100 && fit < 512, reply.message);

  // The same connection still serves what fits.
  const ok = requestSync(conn, {
    v: 1,
    op: "subscribe",
    measurements: keys.slice(0, fit),
    client: "t",
  }, 5000);
  assert(ok.reply.ok && "channels" in ok.reply, JSON.stringify(ok.reply).slice(0, 200));
  assertEquals(ok.reply.channels.length, fit);
  ok.fds.forEach(closeFd);

  // The library asks in as many pieces as it takes; values of every piece arrive.
  using sub = subscribe(keys, { runDir: p.runDir });
  assertEquals(sub.measurements.map((m) => m.key), keys);
  assertEquals(sub.describe(keys[1])?.enum?.["203"], "STATE_3");
  const packet = Uint8Array.from(keys, (_, i) => (i * 7) % 256);
  const sender = setInterval(() => p.send(p.ports[0], [packet]), 50);
  try {
    for (const i of [0, fit, keys.length - 1]) {
      await eventually(
        `${keys[i]} = ${packet[i]}`,
        () => sub.latest(keys[i])?.raw === packet[i] || undefined,
        5000,
      );
    }
  } finally {
    clearInterval(sender);
  }
  assertEquals(broker.exited, null);
  console.log(broker.lines.filter((l) => /follows/.test(l)).join("\n"));
});
