/**
 * The loop the log exists for: a log replayed into a real decom, which forwards every datagram
 * to a real logger, gives back the same datagrams on the same ports, in order per port.
 */
import assert from "node:assert/strict";
import { encodeLog, type LogRecord, readAll } from "../logger/format.ts";
import { freePorts, spawnGsw } from "./helpers/pipeline.ts";
import { logFilesIn, numbered, runDirs, startLogger, tempDir } from "./logger_helpers.ts";

Deno.test("replay → decom → logger gives back every datagram, per port, byte for byte", async () => {
  await using dir = await tempDir("replay-pipeline");
  const [p1, p2] = freePorts(2);
  const config = `${dir.path}/vehicle.yaml`;
  await Deno.writeTextFile(
    config,
    `name: looptest
sources:
  - { name: loop, bind: 127.0.0.1 }
measurements:
  SEQ: { type: uint, size: 4, endianness: little }
  VALUE: { type: uint, size: 8 }
telemetry_packets:
  - { name: Fast, port: ${p1}, measurements: [SEQ, VALUE] }
  - { name: Slow, port: ${p2}, measurements: [SEQ] }
`,
  );
  // Known packets (12 and 4 bytes) and, every tenth, one decom must reject but still log.
  const records: LogRecord[] = Array.from({ length: 400 }, (_, i) => {
    const port = i % 3 === 0 ? p2 : p1;
    const length = i % 10 === 9 ? 7 : port === p1 ? 12 : 4;
    return {
      timeNs: 1_760_000_000_000_000_000n + BigInt(i) * 2_000_000n,
      source: 0,
      dstPort: port,
      srcAddress: "10.1.2.3",
      srcPort: 7000,
      flags: 0,
      origLength: length,
      payload: numbered(i, length),
    };
  });
  const original = `${dir.path}/original.gswlog`;
  await Deno.writeFile(
    original,
    encodeLog({
      sequence: 1,
      startNs: records[0].timeNs,
      runStartNs: records[0].timeNs,
      configHash: "00".repeat(32),
      configName: "looptest",
      configPath: config,
      host: "test",
      gswVersion: "0.1.0",
    }, records),
  );

  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const logger = await startLogger(runDir, logDir, ["--config", config]);
  const decom = spawnGsw("decom", ["--config", config, "--run-dir", runDir]);
  try {
    await logger.stdout.waitFor(/decom connected/, 15000);
    await decom.waitFor(/serving /, 15000);
    const replay = spawnGsw("replay", [original, "--speed", "8"]);
    assert.equal((await replay.status).code, 0, replay.stderr.text);
    assert.match(replay.stdout.text, /sent 400 packets/);
    // Decom forwards as it receives; wait until all 400 are on disk.
    const [run] = await runDirs(logDir);
    let got: LogRecord[] = [];
    const deadline = Date.now() + 15000;
    while (got.length < 400 && Date.now() < deadline) {
      got = (await readAll(await logFilesIn(run))).records;
      await new Promise((r) => setTimeout(r, 50));
    }
    for (const port of [p1, p2]) {
      const sent = records.filter((r) => r.dstPort === port).map((r) => r.payload);
      const logged = got.filter((r) => r.dstPort === port);
      assert.deepEqual(logged.map((r) => r.payload), sent, `port ${port}`);
      assert.ok(logged.every((r) => r.source === 0 && r.srcAddress === "127.0.0.1"));
    }
    assert.equal(got.length, 400);
  } finally {
    await decom.stop("SIGINT");
    await logger.stop("SIGINT");
  }
  assert.match(decom.stdout.text + decom.stderr.text, /\b400 datagrams\b/);
});
