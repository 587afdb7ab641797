/**
 * The control plane under abuse: malformed messages, wrong versions, unknown measurements,
 * descriptors pushed at the server, abrupt disconnects and another user's process. The broker
 * and decom must answer each with an explicit error (or refuse the peer) and keep serving.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { requestSync } from "../control/client.ts";
import { brokerSocket, decomSocket } from "../control/rundir.ts";
import {
  type AttachRequest,
  MAX_CONTROL_MESSAGE,
  MIN_RATE_HZ,
  parseReply,
} from "../control/protocol.ts";
import { closeFd, SegmentWriter, UnixConnection, Waitset } from "../ffi/mod.ts";
import { eventually, LIBRARY, Pipeline, sleep } from "./helpers/pipeline.ts";

/** Sends raw bytes and returns the parsed reply (or "closed"). */
function exchange(path: string, bytes: Uint8Array, fds: number[] = []) {
  using conn = UnixConnection.connect(path);
  assert(conn.send(bytes, fds));
  using ws = new Waitset();
  ws.add(conn.fd, 1);
  const buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    const got = conn.recv(buf);
    if (got === "closed") return "closed";
    if (got) return parseReply(buf.subarray(0, got.length));
    ws.waitSync(100);
  }
  throw new Error("no reply");
}

const text = (o: unknown) =>
  new TextEncoder().encode(typeof o === "string" ? o : JSON.stringify(o));

Deno.test("malformed requests get explicit errors and never stop the broker or decom", async () => {
  await using p = Pipeline.create();
  const decom = await p.decom();
  const broker = await p.broker();
  for (const path of [brokerSocket(p.runDir), decomSocket(p.runDir, "vehicle")]) {
    const cases: [Uint8Array, string][] = [
      [text("not json at all"), "bad-request"],
      [new Uint8Array([0xff, 0xfe, 0x00, 0x01]), "bad-request"],
      [text([1, 2, 3]), "bad-request"],
      [text({ v: 99, op: "subscribe", measurements: ["ALTITUDE"] }), "version"],
      [text({ op: "subscribe", measurements: ["ALTITUDE"] }), "version"],
      [text({ v: 1, op: "fly" }), "bad-request"],
      [text({ v: 1, op: "subscribe", measurements: "ALTITUDE" }), "bad-request"],
      [text({ v: 1, op: "subscribe", measurements: [] }), "bad-request"],
      [text({ v: 1, op: "subscribe", measurements: ["ALTITUDE"], maxRateHz: -1 }), "bad-request"],
      // Below MIN_RATE_HZ: the interval would overflow the broker's timers.
      [text({ v: 1, op: "subscribe", measurements: ["ALTITUDE"], maxRateHz: 1e-7 }), "bad-request"],
      [text({ v: 1, op: "attach", measurements: [7] }), "bad-request"],
    ];
    for (const [bytes, code] of cases) {
      const reply = exchange(path, bytes);
      assert(reply !== "closed" && !reply.ok, `${path}: expected an error for ${bytes}`);
      assertEquals(reply.error, code, `${path}: ${reply.message}`);
      assert(reply.message.length > 10, "the message says what is wrong");
    }
  }
  // An oversize message is refused, not cut.
  const huge = exchange(brokerSocket(p.runDir), new Uint8Array(MAX_CONTROL_MESSAGE + 1000));
  assert(huge !== "closed" && !huge.ok && huge.error === "bad-request");

  // Descriptors pushed at the broker are closed by it, and the request still answered.
  using w = SegmentWriter.create([{ capacity: 8, id: 0 }]);
  const withFds = exchange(
    brokerSocket(p.runDir),
    text({ v: 1, op: "subscribe", measurements: ["ALTITUDE"], client: "t" }),
    w.fds(),
  );
  assert(withFds !== "closed" && withFds.ok);

  // Abrupt disconnects: connect and vanish, send half a conversation and vanish.
  for (let i = 0; i < 50; i++) {
    const c = UnixConnection.connect(brokerSocket(p.runDir));
    if (i % 2) c.send(text({ v: 1, op: "subscribe", measurements: ["ALTITUDE"] }));
    c.close();
  }

  // Unknown measurement: a did-you-mean.
  const unknown = exchange(
    brokerSocket(p.runDir),
    text({ v: 1, op: "subscribe", measurements: ["ALTITUDES"], client: "t" }),
  );
  assert(unknown !== "closed" && !unknown.ok);
  assertEquals(unknown.error, "unknown-measurement");
  assertEquals(unknown.suggestion, "ALTITUDE");

  // decom refuses a broker with another config.
  const mismatch = exchange(
    decomSocket(p.runDir, "vehicle"),
    text({ v: 1, op: "attach", configHash: "0".repeat(64), client: "t" }),
  );
  assert(mismatch !== "closed" && !mismatch.ok && mismatch.error === "config-mismatch");

  // One link per decom connection: a second attach on it is refused, and its descriptors are
  // all released when the connection goes (decom's open fds are back to what they were).
  const fdsOf = (pid: number) => [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
  const decomFds = fdsOf(decom.pid);
  for (let i = 0; i < 5; i++) {
    using conn = UnixConnection.connect(decomSocket(p.runDir, "vehicle"));
    const attach: AttachRequest = {
      v: 1,
      op: "attach",
      configHash: p.config.hash,
      measurements: ["ALTITUDE"],
      client: "twice",
    };
    const first = requestSync(conn, attach, 5000);
    assert(first.reply.ok, JSON.stringify(first.reply));
    first.fds.forEach(closeFd);
    const second = requestSync(conn, attach, 5000);
    assert(!second.reply.ok && second.reply.error === "bad-request", JSON.stringify(second.reply));
    assert(/already attached/.test(second.reply.message), second.reply.message);
    assertEquals(second.fds, []);
  }
  await eventually(
    "decom released every link",
    // (At most: the connections of the requests above may still have been open before.)
    () => fdsOf(decom.pid) <= decomFds || undefined,
    5000,
  );

  // Both still serve a well-formed subscription (at the lowest rate, values held back for
  // 1000 s), and neither has exited.
  const good = p.subscribeRaw(["ALTITUDE"], MIN_RATE_HZ);
  assertEquals(good.reply.channels[0].key, "ALTITUDE");
  for (let i = 1; i <= 3; i++) {
    await p.send(p.ports[0], [new Uint8Array(24).fill(i)]); // Nav: the second on are held
    await sleep(50);
  }
  good.reader.close();
  good.conn.close();
  const exited = await Promise.race([
    Promise.race([decom.status, broker.status]).then(() => true),
    new Promise((r) => setTimeout(() => r(false), 200)),
  ]);
  assert(!exited, "decom and the broker are still running");
});

Deno.test("a process of another user cannot subscribe", async () => {
  if (Deno.uid() !== 0) {
    console.log("skipped: needs root to run a process as another user");
    return;
  }
  await using p = Pipeline.create();
  await p.decom();
  await p.broker();
  // The run directory is private (0700): another user cannot even reach the socket.
  assertEquals(Deno.statSync(p.runDir).mode! & 0o777, 0o700);
  const script = `${p.dir}/intruder.ts`;
  Deno.writeTextFileSync(
    script,
    `import { UnixConnection } from "${new URL("../ffi/mod.ts", import.meta.url).href}";
import { requestSync } from "${new URL("../control/client.ts", import.meta.url).href}";
try {
  const c = UnixConnection.connect(Deno.args[0]);
  const { reply } = requestSync(c, { v: 1, op: "subscribe", measurements: ["ALTITUDE"], client: "intruder" }, 3000);
  console.log(JSON.stringify(reply));
} catch (e) { console.log("ERROR " + e.message); }`,
  );
  // Let the other user reach this test's files (but not the run directory) and the library.
  Deno.chmodSync(p.dir, 0o755);
  Deno.chmodSync(script, 0o644);
  const run = async () => {
    const out = await new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        Deno.execPath(),
        "run",
        "--no-lock",
        `--allow-ffi=${LIBRARY}`,
        `--allow-read`,
        script,
        brokerSocket(p.runDir),
      ],
      env: { DENO_DIR: `${p.dir}/deno-cache`, HOME: p.dir, NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  };
  Deno.mkdirSync(`${p.dir}/deno-cache`, { mode: 0o777 });
  Deno.chmodSync(`${p.dir}/deno-cache`, 0o777);
  const blocked = await run();
  assert(/EACCES/.test(blocked), `the private run directory must stop another user:\n${blocked}`);
  // Open the directory as a careless user might: the broker's own uid check still refuses.
  Deno.chmodSync(p.runDir, 0o755);
  Deno.chmodSync(brokerSocket(p.runDir), 0o777);
  const refused = await run();
  assert(/not-allowed/.test(refused), `the broker must refuse another uid:\n${refused}`);
});

Deno.test("a subscriber dropping its connection frees its channel at the broker", async () => {
  await using p = Pipeline.create();
  await p.decom();
  const broker = await p.broker();
  const fdCount = () => [...Deno.readDirSync(`/proc/${broker.pid}/fd`)].length;
  const subs = Array.from({ length: 20 }, () => p.subscribeRaw(["ALTITUDE", "VELOCITY"]));
  const withSubs = fdCount();
  for (const s of subs) {
    s.reader.close();
    s.conn.close();
  }
  const after = await eventually("the broker to close what the subscribers had", () => {
    const n = fdCount();
    return n <= withSubs - 20 ? n : undefined;
  });
  assert(after <= withSubs - 20, `fds before ${withSubs}, after ${after}`);
  using conn = UnixConnection.connect(brokerSocket(p.runDir));
  const good = requestSync(conn, { v: 1, op: "list", client: "t" }, 3000);
  assert(good.reply.ok);
});
