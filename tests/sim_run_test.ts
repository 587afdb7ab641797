/** `sim` as a real process sending to real UDP sockets on loopback. */
import assert from "node:assert/strict";
import { createSocket, type Socket } from "node:dgram";
import { decodeValue, findMeasurement, parseConfig } from "../config/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const ARGS = [
  "run",
  "--allow-read",
  "--allow-net",
  "--ignore-env=LOG_TOKENS,LOG_STREAM",
  "main.ts",
  "sim",
];

interface Receiver {
  socket: Socket;
  port: number;
  packets: Uint8Array[];
}

/** A socket on a free loopback port that keeps what it receives. */
function receiver(): Promise<Receiver> {
  return new Promise((resolve, reject) => {
    const socket = createSocket("udp4");
    const r: Receiver = { socket, port: 0, packets: [] };
    socket.on("message", (msg: Uint8Array) => r.packets.push(new Uint8Array(msg)));
    socket.once("error", reject);
    socket.bind(0, "127.0.0.1", () => {
      r.port = socket.address().port;
      resolve(r);
    });
  });
}

function closeAll(receivers: Receiver[]): Promise<void[]> {
  return Promise.all(
    receivers.map((r) => new Promise<void>((done) => r.socket.close(() => done()))),
  );
}

function configFor(a: number, b: number): string {
  return `
name: simtest
sources:
  - { name: loop, bind: 127.0.0.1 }
measurements:
  SEQ: { type: uint, size: 4, endianness: little }
  ALTITUDE: { type: float, size: 4, unit: m }
  MODE: { type: uint, size: 1, enum: { 0: SAFE, 1: ARMED } }
telemetry_packets:
  - { name: Fast, port: ${a}, rate_hz: 50, measurements: [SEQ, ALTITUDE] }
  - { name: Slow, port: ${b}, rate_hz: 10, measurements: [MODE] }
`;
}

async function until(condition: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

Deno.test("sim --count sends exactly N packets of each type, decodable with the config", async () => {
  const receivers = [await receiver(), await receiver()];
  const dir = await Deno.makeTempDir({ prefix: "gsw-sim-test-" });
  try {
    const text = configFor(receivers[0].port, receivers[1].port);
    const file = `${dir}/vehicle.yaml`;
    await Deno.writeTextFile(file, text);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...ARGS, "--config", file, "--count", "7", "--rate-scale", "10", "--seed", "3"],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.match(new TextDecoder().decode(out.stdout), /sim: sent 14 packets in/);
    await until(() => receivers.every((r) => r.packets.length >= 7), 2000);
    await new Promise((r) => setTimeout(r, 100)); // would a stray eighth arrive?
    const [fast, slow] = receivers.map((r) => r.packets);
    assert.equal(fast.length, 7);
    assert.equal(slow.length, 7);
    const config = parseConfig(text, file);
    const seq = findMeasurement(config, "SEQ")!;
    assert.deepEqual(
      fast.map((p) => decodeValue(seq, p.subarray(0, 4))),
      [0, 1, 2, 3, 4, 5, 6],
    );
    for (const p of fast) assert.equal(p.length, 8);
    const mode = findMeasurement(config, "MODE")!;
    for (const p of slow) {
      assert.equal(p.length, 1);
      assert.ok(["SAFE", "ARMED"].includes(decodeValue(mode, p) as string));
    }
  } finally {
    await closeAll(receivers);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sim stops cleanly on SIGTERM and after --duration", async () => {
  const receivers = [await receiver(), await receiver()];
  const dir = await Deno.makeTempDir({ prefix: "gsw-sim-test-" });
  let child: Deno.ChildProcess | undefined;
  try {
    const file = `${dir}/vehicle.yaml`;
    await Deno.writeTextFile(file, configFor(receivers[0].port, receivers[1].port));
    child = new Deno.Command(Deno.execPath(), {
      args: [...ARGS, "--config", file],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    await until(() => receivers[0].packets.length > 0, 10_000);
    assert.ok(receivers[0].packets.length > 0, "the simulator sent nothing");
    child.kill("SIGTERM");
    const out = await child.output();
    child = undefined;
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stdout), /sim: sent \d+ packets/);

    const started = Date.now();
    const timed = await new Deno.Command(Deno.execPath(), {
      args: [...ARGS, "--config", file, "--duration", "0.5"],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.equal(timed.code, 0, new TextDecoder().decode(timed.stderr));
    assert.ok(Date.now() - started < 8000);
  } finally {
    if (child) {
      child.kill("SIGKILL");
      await child.output();
    }
    await closeAll(receivers);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sim: bad arguments exit 2 with the usage line; a bad config exits 1", async () => {
  const run = (...args: string[]) =>
    new Deno.Command(Deno.execPath(), {
      args: [...ARGS, ...args],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    })
      .output();
  for (const args of [["--rate-scale", "0"], ["--count", "1.5"], ["--bogus"], ["extra"]]) {
    const out = await run(...args);
    assert.equal(out.code, 2, args.join(" "));
    assert.match(new TextDecoder().decode(out.stderr), /usage: sim \[--config FILE\]/);
  }
  const bad = new URL("./fixtures/config/bad/duplicate-port.yaml", import.meta.url).pathname;
  const out = await run("--config", bad, "--count", "1");
  assert.equal(out.code, 1);
  assert.match(new TextDecoder().decode(out.stderr), /duplicate-port\.yaml:8:5: error:/);
});
