/**
 * The logger when things go wrong under it: SIGKILL mid-stream (then a restart on the stale
 * socket), and files that stop accepting writes.
 */
import assert from "node:assert/strict";
import { readAll, recordLength } from "../logger/format.ts";
import { eventually, type Proc, sleep } from "./helpers/pipeline.ts";
import {
  exists,
  FakeDecom,
  logFilesIn,
  numbered,
  runDirs,
  seqOf,
  startLogger,
  tempDir,
} from "./logger_helpers.ts";

const T0 = 1_760_000_000_000_000_000n;

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from }, (_, i) => from + i);
}

/** Whether process `pid` ignores signal number `signo` (SIG_IGN, inherited across exec). */
function signalIgnored(pid: number, signo: number): boolean {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const mask = BigInt(`0x${status.match(/^SigIgn:\s*([0-9a-f]+)$/m)![1]}`);
  return (mask >> BigInt(signo - 1) & 1n) === 1n;
}

/** Sets RLIMIT_FSIZE of the running process `pid`, as `ulimit -f` does in a shell. */
async function setFileSizeLimit(pid: number, bytes: number): Promise<void> {
  const out = await new Deno.Command("prlimit", {
    args: [`--pid=${pid}`, `--fsize=${bytes}:${bytes}`],
    stdout: "null",
    stderr: "piped",
  }).output();
  assert.ok(out.success, `prlimit: ${new TextDecoder().decode(out.stderr)}`);
}

Deno.test("logger: SIGKILL mid-stream keeps a gapless prefix; a restart takes the stream over", async () => {
  await using dir = await tempDir("logger-kill");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const sock = `${runDir}/logger.sock`;
  const first = await startLogger(runDir, logDir);
  const decom = new FakeDecom(0, sock);
  let second: Proc | undefined;
  try {
    assert.ok(decom.tryConnect());
    let seq = 0;
    const length = (s: number) => 16 + (s % 64);
    const sendSome = () => {
      decom.forward(Array.from({ length: 20 }, () => {
        const s = seq++;
        return { payload: numbered(s, length(s)), dstPort: 45001, timeNs: T0 + BigInt(s) };
      }));
      decom.queue.flush();
    };
    // Stream until the logger has provably written a good part of it, then kill it mid-stream.
    const [run1] = await runDirs(logDir);
    const [file1] = await logFilesIn(run1);
    while ((await Deno.stat(file1)).size < 300_000) {
      sendSome();
      await sleep(1);
    }
    first.kill("SIGKILL");
    // Keep streaming: decom notices the loss on its next send, then buffers.
    let sentAtLoss: number | undefined;
    for (let i = 0; i < 100; i++) {
      sendSome();
      const stats = decom.queue.stats();
      if (sentAtLoss === undefined && !stats.connected) sentAtLoss = stats.sent;
      await sleep(1);
    }
    assert.equal((await first.status).signal, "SIGKILL");
    assert.ok(sentAtLoss !== undefined, "decom noticed the logger had gone");
    assert.ok(await exists(sock), "SIGKILL leaves the socket file behind");

    second = await startLogger(runDir, logDir);
    await eventually(
      "decom reconnecting to the new logger",
      () => decom.tryConnect() || undefined,
      5000,
    );
    for (let i = 0; i < 50; i++) sendSome();
    await decom.drain();
    assert.equal((await second.stop()).code, 0, second.stderr.text);
    assert.equal(decom.queue.stats().dropped, 0);

    const runs = await runDirs(logDir);
    assert.equal(runs.length, 2, "the restarted logger starts a new run");
    const [a, b] = await Promise.all(runs.map(async (r) => readAll(await logFilesIn(r))));
    assert.deepEqual((await logFilesIn(runs[1])).map((f) => f.slice(runs[1].length)), [
      "/gsw-0001.gswlog",
    ]);
    // Before the kill: records 0 … k-1 exactly, intact, where k is at most what decom had
    // handed to the kernel by then (the rest was in flight: socket buffer, logger memory).
    const k = a.records.length;
    assert.deepEqual(a.records.map((r) => seqOf(r.payload)), range(0, k));
    assert.ok(a.records.every((r, i) => r.payload.length === length(i)));
    assert.deepEqual(a.records.at(-1)!.payload, numbered(k - 1, length(k - 1)));
    // What was on disk before the kill (≥ 300 000 bytes) is all still there.
    const onDisk = a.records.reduce((n, r) => n + recordLength(r.payload.length), 0);
    assert.ok(onDisk >= 300_000 - 1000, `${onDisk} bytes of records survived`);
    assert.ok(k <= sentAtLoss, `${k} logged, ${sentAtLoss} handed over before the loss`);
    assert.equal(a.stats.corrupt, 0);
    assert.ok(a.stats.truncated <= 1, "at most the record being written is torn");
    // After it: everything decom still held, from the first message the dead socket refused.
    assert.deepEqual(b.records.map((r) => seqOf(r.payload)), range(sentAtLoss, seq));
    assert.equal(b.stats.corrupt + b.stats.truncated, 0);
  } finally {
    decom.close();
    await first.stop("SIGKILL");
    await second?.stop("SIGKILL");
  }
});

Deno.test("logger: a write failure (file size limit) is reported, and no record is lost", async () => {
  await using dir = await tempDir("logger-efbig");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  // RLIMIT_FSIZE of 64 KiB (what `ulimit -f 64` sets) makes writes past it fail with EFBIG, as
  // a full disk makes them fail with ENOSPC, without needing a small file system; the kernel
  // also sends SIGXFSZ, whose default action kills. The limit is set once the logger listens:
  // set before, it kills deno while it updates its own multi-MiB caches at start-up.
  const logger = await startLogger(runDir, logDir);
  const decom = new FakeDecom(0, `${runDir}/logger.sock`);
  try {
    assert.ok(!signalIgnored(logger.pid, 25), "SIGXFSZ is at its default, as for a user");
    await setFileSizeLimit(logger.pid, 64 * 1024);
    assert.ok(decom.tryConnect());
    const n = 1500;
    for (let s = 0; s < n; s += 10) {
      decom.forward(
        range(s, s + 10).map((q) => ({
          payload: numbered(q, 200),
          dstPort: 45001,
          timeNs: T0 + BigInt(q),
        })),
      );
      await decom.drain();
    }
    const [run] = await runDirs(logDir);
    let records = 0;
    const deadline = Date.now() + 30000;
    while (records < n && !logger.exited && Date.now() < deadline) {
      records = (await readAll(await logFilesIn(run))).records.length;
      await sleep(100);
    }
    assert.equal(logger.exited?.signal ?? null, null, "the logger was killed by a signal");
    assert.equal(records, n, logger.stderr.text);
    assert.equal((await logger.stop()).code, 0, logger.stderr.text);
    const files = await logFilesIn(run);
    const all = await readAll(files);
    assert.deepEqual(all.records.map((r) => seqOf(r.payload)), range(0, n));
    assert.equal(all.stats.corrupt + all.stats.truncated, 0, all.stats.problems.join("\n"));
    assert.ok(files.length >= 5, `${n} × 240 bytes need 6 files of 64 KiB, got ${files.length}`);
    for (const f of files) assert.ok((await Deno.stat(f)).size <= 64 * 1024);
    const stderr = logger.stderr.text;
    const failures = stderr.match(/cannot write \S+gsw-\d+\.gswlog: File too large/g) ?? [];
    assert.ok(failures.length >= 1, stderr);
    assert.equal(
      (stderr.match(/writing works again/g) ?? []).length,
      failures.length,
      "every failure is followed by recovery",
    );
    assert.doesNotMatch(stderr, /internal error|\n\s+at /, "no stack traces");
    assert.match(logger.stdout.text, new RegExp(`${files.length} files, ${n} records`));
  } finally {
    decom.close();
    await logger.stop("SIGKILL");
  }
});
