/**
 * The logger as a real process fed through the native decom → logger queue: what it records,
 * late start, rotation, several decoms, malformed input, SIGKILL and restart, write failures
 * and permissions.
 */
import assert from "node:assert/strict";
import { parseConfig } from "../config/mod.ts";
import { UnixConnection } from "../ffi/mod.ts";
import { type LogRecord, readAll, recordLength } from "../logger/format.ts";
import { encodeHello } from "../logger/queue.ts";
import denoConfig from "../deno.json" with { type: "json" };
import { eventually, LIBRARY, type Proc, REPO, sleep, spawn } from "./helpers/pipeline.ts";
import {
  type Datagram,
  exists,
  expectedRecord,
  FakeDecom,
  logFilesIn,
  numbered,
  runDirs,
  seqOf,
  startLogger,
  strip,
  tempDir,
} from "./logger_helpers.ts";

const T0 = 1_760_000_000_000_000_000n;

/** Datagram `seq` of a stream: length varies with seq; some are empty, huge or truncated. */
function datagram(seq: number, dstPort: number): Datagram {
  const length = seq === 5 ? 0 : seq === 7 ? 65507 : 4 + ((seq * 31) % 700);
  return {
    payload: numbered(seq, length),
    dstPort,
    timeNs: T0 + BigInt(seq) * 1000n,
    srcAddress: `192.168.${seq % 7}.${seq % 250}`,
    srcPort: 1024 + (seq % 60000),
    origLength: seq % 50 === 9 ? length + 1000 : undefined,
  };
}

/** The sequence numbers `datagram(first … first + n - 1)` carry (-1: datagram 5 is empty). */
function expectedSeqs(first: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => (first + i === 5 ? -1 : first + i));
}

/** Reads every log file of every run under `logDir`, per run. */
async function readRuns(logDir: string) {
  const out = [];
  for (const run of await runDirs(logDir)) {
    const files = await logFilesIn(run);
    out.push({ run, files, ...(await readAll(files)) });
  }
  return out;
}

Deno.test("logger: records exactly what decom forwards, with the config copied and named", async () => {
  await using dir = await tempDir("logger");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const logger = await startLogger(runDir, logDir);
  const decom = new FakeDecom(2, `${runDir}/logger.sock`);
  try {
    assert.ok(decom.tryConnect(), "the logger listens");
    const sent: LogRecord[] = [];
    let seq = 0;
    for (let b = 0; b < 120; b++) {
      const port = 45001 + (b % 3);
      const batch = Array.from({ length: 1 + (b % 40) }, () => datagram(seq++, port));
      assert.equal(decom.forward(batch), 0, "nothing dropped");
      sent.push(...batch.map((d) => expectedRecord(d, 2)));
      if (b % 10 === 0) await decom.drain();
    }
    await decom.drain();
    const status = await logger.stop("SIGTERM");
    assert.equal(status.code, 0, logger.stderr.text);
    assert.match(
      logger.stdout.text,
      new RegExp(
        `logger: stopped\\. 1 file, ${sent.length} records, .* 1 decom connection, 0 errors`,
      ),
    );
    assert.equal(await exists(`${runDir}/logger.sock`), false, "the socket is removed");

    const [run, ...others] = await readRuns(logDir);
    assert.equal(others.length, 0);
    assert.deepEqual(run.files.map((f) => f.slice(run.run.length)), ["/gsw-0001.gswlog"]);
    assert.match(run.run, /\/\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ$/);
    assert.equal(run.records.length, sent.length);
    assert.deepEqual(run.records.map(strip), sent);
    assert.equal(run.stats.corrupt + run.stats.truncated + run.stats.badFiles, 0);
    assert.ok(run.records.some((r) => r.payload.length === 65507));
    assert.ok(run.records.some((r) => r.payload.length === 0));
    assert.ok(run.records.some((r) => r.truncated && r.origLength > r.payload.length));

    // The log says which config decodes it, and carries that exact file.
    const original = await Deno.readFile(`${REPO}/examples/rocket.yaml`);
    const copy = await Deno.readFile(`${run.run}/config.yaml`);
    assert.deepEqual(copy, original);
    const h = run.headers[0].header;
    assert.equal(h.configHash, parseConfig(original, "rocket.yaml").hash);
    assert.equal(h.configName, "rocket");
    assert.equal(h.sequence, 1);
    assert.equal(h.clock, 0);
    assert.equal(h.gswVersion, denoConfig.version);
    assert.equal(h.host, (await Deno.readTextFile("/etc/hostname")).trim());
    const now = BigInt(Date.now()) * 1_000_000n;
    assert.ok(h.runStartNs <= h.startNs && now - h.startNs < 120_000_000_000n, "times are now");
  } finally {
    decom.close();
    await logger.stop("SIGKILL");
  }
});

Deno.test("logger: started after decom buffered, it still gets every record in order", async () => {
  await using dir = await tempDir("logger-late");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  await Deno.mkdir(runDir, { mode: 0o700 });
  const decom = new FakeDecom(0, `${runDir}/logger.sock`);
  let logger: Proc | undefined;
  try {
    assert.equal(decom.tryConnect(), false, "no logger yet");
    let seq = 0;
    for (let b = 0; b < 50; b++) decom.forward([datagram(seq++, 45001), datagram(seq++, 45001)]);
    assert.equal(decom.queue.stats().pendingPackets, 100, "decom holds them");
    logger = await startLogger(runDir, logDir);
    assert.ok(decom.tryConnect());
    await decom.drain();
    for (let b = 0; b < 50; b++) decom.forward([datagram(seq++, 45002)]);
    await decom.drain();
    assert.equal((await logger.stop("SIGINT")).code, 0, logger.stderr.text);
    const [run] = await readRuns(logDir);
    assert.deepEqual(run.records.map((r) => seqOf(r.payload)), expectedSeqs(0, 150));
    assert.equal(decom.queue.stats().dropped, 0);
  } finally {
    decom.close();
    await logger?.stop("SIGKILL");
  }
});

Deno.test("logger: rotates at the size limit, between records, and numbers the files", async () => {
  await using dir = await tempDir("logger-rotate");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const limit = Math.round(0.02 * 1024 * 1024); // --max-file-mb 0.02
  const logger = await startLogger(runDir, logDir, ["--max-file-mb", "0.02"]);
  const decom = new FakeDecom(0, `${runDir}/logger.sock`);
  try {
    assert.ok(decom.tryConnect());
    const sent: number[] = [];
    for (let seq = 0; seq < 400; seq += 8) {
      decom.forward(Array.from({ length: 8 }, (_, i) => {
        sent.push(seq + i);
        return { payload: numbered(seq + i, 1000), dstPort: 45001, timeNs: T0 + BigInt(seq + i) };
      }));
    }
    await decom.drain();
    assert.equal((await logger.stop()).code, 0, logger.stderr.text);
    const [run] = await readRuns(logDir);
    assert.ok(run.files.length >= 20, `400 records of 1040 bytes in ${run.files.length} files`);
    run.files.forEach((f, i) =>
      assert.ok(f.endsWith(`/gsw-${String(i + 1).padStart(4, "0")}.gswlog`))
    );
    assert.deepEqual(run.headers.map((h) => h.header.sequence), run.files.map((_, i) => i + 1));
    assert.equal(new Set(run.headers.map((h) => h.header.runStartNs)).size, 1, "one run");
    for (const f of run.files) {
      const size = (await Deno.stat(f)).size;
      assert.ok(size <= limit, `${f} is ${size} bytes, limit ${limit}`);
      // Full: one more record would not have fit (except in the last file).
      if (f !== run.files.at(-1)) assert.ok(size + recordLength(1000) > limit, `${f} not full`);
    }
    assert.deepEqual(run.records.map((r) => seqOf(r.payload)), sent);
    assert.equal(run.stats.corrupt + run.stats.truncated, 0);
    assert.match(
      logger.stdout.text,
      new RegExp(`stopped\\. ${run.files.length} files, 400 records`),
    );
  } finally {
    decom.close();
    await logger.stop("SIGKILL");
  }
});

Deno.test("logger: several decoms at once, leaving, coming back and crashing", async () => {
  await using dir = await tempDir("logger-many");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const logger = await startLogger(runDir, logDir);
  const sock = `${runDir}/logger.sock`;
  const decoms = [0, 1, 2].map((s) => new FakeDecom(s, sock));
  // A decom in its own process that is SIGKILLed after sending 300 records.
  const crasher = spawn("fake decom", [
    "run",
    `--allow-ffi=${LIBRARY}`,
    "--allow-read",
    "--ignore-env=LOG_TOKENS,LOG_STREAM",
    `${REPO}/tests/logger_fake_decom.ts`,
    sock,
    "3",
    "300",
  ]);
  try {
    decoms.forEach((d) => assert.ok(d.tryConnect()));
    await crasher.stdout.waitFor(/^sent 300$/);
    const seqs = [0, 0, 0];
    const next = (s: number) => datagram(s * 100000 + seqs[s]++, 45001 + s);
    for (let round = 0; round < 60; round++) {
      decoms.forEach((d, s) => d.forward([next(s), next(s)]));
      if (round === 30) {
        // Decom 1 goes away cleanly, buffers meanwhile, and comes back on a new connection.
        await decoms[1].drain();
        decoms[1].queue.disconnect();
        decoms[1].forward([next(1)]);
        assert.ok(decoms[1].tryConnect());
        await crasher.stop("SIGKILL");
      }
    }
    await Promise.all(decoms.map((d) => d.drain()));
    await eventually(
      "disconnects",
      () => (logger.stdout.text.match(/disconnected/g) ?? []).length >= 2 || undefined,
      5000,
    );
    assert.equal((await logger.stop("SIGTERM")).code, 0, logger.stderr.text);
    const [run] = await readRuns(logDir);
    for (let s = 0; s < 3; s++) {
      const mine = run.records.filter((r) => r.source === s);
      assert.deepEqual(mine.map((r) => seqOf(r.payload)), expectedSeqs(s * 100000, seqs[s]));
      assert.ok(mine.every((r) => r.dstPort === 45001 + s));
    }
    const crashed = run.records.filter((r) => r.source === 3);
    assert.deepEqual(crashed.map((r) => seqOf(r.payload)), [...Array(300).keys()]);
    assert.match(logger.stdout.text, /decom pid \d+ \(source #3\) disconnected after 300 records/);
    assert.match(logger.stdout.text, /5 decom connections, 0 errors/);
  } finally {
    decoms.forEach((d) => d.close());
    await crasher.stop("SIGKILL");
    await logger.stop("SIGKILL");
  }
});

Deno.test("logger: malformed messages are refused and counted; the stream goes on", async () => {
  await using dir = await tempDir("logger-bad");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const logger = await startLogger(runDir, logDir);
  const decom = new FakeDecom(0, `${runDir}/logger.sock`);
  const stranger = UnixConnection.connect(`${runDir}/logger.sock`);
  try {
    assert.ok(decom.tryConnect());
    decom.forward([datagram(0, 45001)]);
    await decom.drain();
    const header = (magic: string, version: number, count: number) => {
      const m = new Uint8Array(16);
      m.set(new TextEncoder().encode(magic));
      new DataView(m.buffer).setUint16(4, version, true);
      new DataView(m.buffer).setUint16(6, count, true);
      return m;
    };
    // One valid record, then one whose length runs past the message: the first is kept.
    const halfGood = new Uint8Array(16 + 32 + 8 + 32);
    halfGood.set(header("GSWQ", 1, 2));
    const hv = new DataView(halfGood.buffer);
    hv.setBigUint64(16, T0, true);
    hv.setUint32(16 + 8, 3, true);
    hv.setUint32(16 + 12, 3, true);
    hv.setUint16(16 + 22, 45009, true);
    halfGood.set([1, 2, 3], 16 + 32);
    hv.setUint32(16 + 40 + 12, 500, true);
    for (
      const m of [
        new TextEncoder().encode("hello logger"),
        header("GSWQ", 9, 1),
        header("XXXX", 1, 0),
        new Uint8Array(3),
        halfGood,
      ]
    ) assert.ok(stranger.send(m));
    decom.forward([datagram(1, 45001)]);
    await decom.drain();
    await sleep(200);
    assert.equal((await logger.stop()).code, 0, logger.stderr.text);
    const [run] = await readRuns(logDir);
    // Connections are served as they become ready: order only holds within one.
    const fromDecom = run.records.filter((r) => r.dstPort === 45001);
    assert.deepEqual(fromDecom.map((r) => seqOf(r.payload)), [0, 1]);
    const fromStranger = run.records.filter((r) => r.dstPort !== 45001);
    assert.deepEqual(fromStranger.map((r) => [r.dstPort, ...r.payload]), [[45009, 1, 2, 3]]);
    assert.match(logger.stderr.text, /without the GSWQ magic/);
    assert.match(logger.stderr.text, /queue message version 9, this logger reads 1/);
    assert.match(logger.stderr.text, /record 1 of 2 runs past its message/);
    assert.match(logger.stderr.text, /refused 5 malformed messages/);
    assert.match(logger.stdout.text, /3 records, .* 5 errors/);
  } finally {
    stranger.close();
    decom.close();
    await logger.stop("SIGKILL");
  }
});

Deno.test("logger: a decom decoding with another config is named; its packets are recorded", async () => {
  await using dir = await tempDir("logger-hello");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const logger = await startLogger(runDir, logDir);
  const rocket = parseConfig(await Deno.readFile(`${REPO}/examples/rocket.yaml`), "rocket.yaml");
  const same = new FakeDecom(0, `${runDir}/logger.sock`);
  const other = new FakeDecom(1, `${runDir}/logger.sock`);
  const garbled = new FakeDecom(0, `${runDir}/logger.sock`);
  try {
    const hello = { source: rocket.sources[0].name, configName: "rocket" };
    same.queue.setHello(
      encodeHello({ ...hello, configHash: rocket.hash, configFile: "examples/rocket.yaml" }),
    );
    other.queue.setHello(
      encodeHello({ ...hello, configHash: "ab".repeat(32), configFile: "vehicles/v2.yaml" }),
    );
    garbled.queue.setHello(new TextEncoder().encode("{not json"));
    // Records buffered before the connection follow the hello.
    other.forward([datagram(1, 45002)]);
    for (const d of [same, other, garbled]) assert.ok(d.tryConnect());
    same.forward([datagram(0, 45001)]);
    other.forward([datagram(2, 45002)]);
    garbled.forward([datagram(3, 45003)]);
    for (const d of [same, other, garbled]) await d.drain();
    await logger.stderr.waitFor(/vehicles\/v2\.yaml/, 5000);
    await sleep(100);
    assert.equal((await logger.stop()).code, 0, logger.stderr.text);

    const [run] = await readRuns(logDir);
    const seqs = (port: number) =>
      run.records.filter((r) => r.dstPort === port).map((r) => seqOf(r.payload));
    assert.deepEqual([seqs(45001), seqs(45002), seqs(45003)], [[0], [1, 2], [3]]);
    assert.match(
      logger.stderr.text,
      new RegExp(
        `decom pid \\d+ \\(source ${hello.source}\\) decodes with vehicles/v2\\.yaml ` +
          `\\(rocket, sha256 abababababab\\), but this logger records .*rocket\\.yaml ` +
          `\\(rocket, sha256 ${rocket.hash.slice(0, 12)}\\).*export with --config ` +
          `vehicles/v2\\.yaml`,
      ),
    );
    assert.equal(logger.stderr.text.match(/decodes with/g)?.length, 1, "only the other config");
    assert.match(logger.stderr.text, /a hello that is not UTF-8 JSON/);
    assert.match(logger.stderr.text, /1 decom connection decoded with another config/);
    assert.match(logger.stdout.text, /4 records, .* 3 decom connections, 2 errors/);
  } finally {
    for (const d of [same, other, garbled]) d.close();
    await logger.stop("SIGKILL");
  }
});
