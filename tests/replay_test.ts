/** `replay` as a real process sending to native UDP receivers in the test: bytes, ports, pace. */
import assert from "node:assert/strict";
import { Batch, META_LEN, UdpSocket } from "../ffi/mod.ts";
import { encodeLog, type FileHeader, type LogRecord, recordLength } from "../logger/format.ts";
import { type Proc, sleep, spawnGsw } from "./helpers/pipeline.ts";
import { numbered, runTask, seqOf, tempDir } from "./logger_helpers.ts";

const T0 = 1_760_000_000_000_000_000n;
const HEADER: Omit<FileHeader, "version" | "clock"> = {
  sequence: 1,
  startNs: T0,
  runStartNs: T0,
  configHash: "ab".repeat(32),
  configName: "test",
  configPath: "test.yaml",
  host: "test",
  gswVersion: "0.1.0",
};

interface Arrival {
  payload: Uint8Array;
  /** Kernel receive time, ms since the epoch (not when this test got round to reading it). */
  at: number;
}

/** A native UDP receiver on a free loopback port that keeps every datagram, in order. */
class Receiver implements Disposable {
  readonly socket = new UdpSocket({ bind: "127.0.0.1", port: 0, receiveBuffer: 32 << 20 });
  readonly #batch = new Batch(64);
  readonly #slot = 65536;
  readonly #buf = new Uint8Array(64 * this.#slot);
  readonly #meta = new Uint8Array(64 * META_LEN);
  readonly got: Arrival[] = [];

  get port(): number {
    return this.socket.port;
  }

  poll(): void {
    for (;;) {
      const n = this.#batch.recv(this.socket.fd, this.#buf, this.#slot, this.#meta);
      if (n === 0) return;
      const mv = new DataView(this.#meta.buffer);
      for (let i = 0; i < n; i++) {
        const len = mv.getUint32(i * META_LEN, true);
        const at = Number(mv.getBigUint64(i * META_LEN + 8, true)) / 1e6;
        this.got.push({ payload: this.#buf.slice(i * this.#slot, i * this.#slot + len), at });
      }
    }
  }

  [Symbol.dispose](): void {
    this.#batch.close();
    this.socket.close();
  }
}

/** Runs replay with the task's permissions while the receivers drain their sockets. */
async function replay(args: string[], receivers: Receiver[]): Promise<Proc> {
  const p = spawnGsw("replay", args);
  while (p.exited === null) {
    receivers.forEach((r) => r.poll());
    await sleep(1);
  }
  await p.status;
  await sleep(50); // the last datagrams are already queued on loopback
  receivers.forEach((r) => r.poll());
  return p;
}

function record(seq: number, dstPort: number, payload: Uint8Array, ms = seq): LogRecord {
  return {
    timeNs: T0 + BigInt(ms) * 1_000_000n,
    source: 0,
    dstPort,
    srcAddress: "10.0.0.1",
    srcPort: 5000,
    flags: 0,
    origLength: payload.length,
    payload,
  };
}

Deno.test("replay: every payload reaches its recorded port (+ offset) byte for byte, in order", async () => {
  await using dir = await tempDir("replay");
  using a = new Receiver();
  using b = new Receiver();
  const offset = 1000;
  const records: LogRecord[] = [];
  for (let seq = 0; seq < 600; seq++) {
    const length = seq === 3 ? 0 : seq === 10 ? 65507 : 4 + ((seq * 53) % 1400);
    const port = (seq % 3 === 0 ? a.port : b.port) - offset;
    records.push(record(seq, port, numbered(seq, length)));
  }
  // Stored truncated: 100 of 300 bytes. Replay sends 300, zero-filled, as decom received it.
  records.push({ ...record(600, a.port - offset, numbered(600, 100)), flags: 1, origLength: 300 });
  // Beyond port 65535 once offset: skipped and reported, not wrapped around.
  records.push(record(601, 65000, numbered(601, 8)));
  const bytes = encodeLog(HEADER, records);
  // Damage record 20: replay skips it and says so.
  let at = bytes.length - records.reduce((n, r) => n + recordLength(r.payload.length), 0);
  for (let i = 0; i < 20; i++) at += recordLength(records[i].payload.length);
  bytes[at + 45] ^= 0xff;
  const file = `${dir.path}/run.gswlog`;
  await Deno.writeFile(file, bytes);

  const p = await replay([file, "--as-fast-as-possible", "--port-offset", String(offset)], [a, b]);
  assert.equal(p.exited!.code, 0, p.stderr.text);
  const expected = records.filter((_, i) => i !== 20 && i !== 601);
  const want = (r: Receiver) =>
    expected.filter((e) => e.dstPort + offset === r.port).map((e) =>
      e.origLength > e.payload.length
        ? Uint8Array.from({ length: e.origLength }, (_, i) => e.payload[i] ?? 0)
        : e.payload
    );
  for (const r of [a, b]) {
    assert.equal(r.got.length, want(r).length, `port ${r.port}`);
    assert.deepEqual(r.got.map((g) => g.payload), want(r), `port ${r.port}`);
  }
  assert.match(
    p.stdout.text,
    /^replay: sent 600 packets \(.+\) to 127\.0\.0\.1 \(ports \+1000\) from 1 file/,
  );
  assert.match(p.stdout.text, /truncated records sent zero-filled to their original length: 1\n/);
  assert.match(p.stdout.text, /records skipped because their port plus offset is not 1–65535: 1\n/);
  assert.match(p.stdout.text, /damaged regions skipped: 1 \(1\.1 kB\)\n/);
});

Deno.test("replay: --speed paces the records, in order and complete", async () => {
  await using dir = await tempDir("replay-speed");
  using r = new Receiver();
  // 40 records 25 ms apart: 0.975 s of log, 0.4875 s at --speed 2.
  const records = Array.from({ length: 40 }, (_, i) => record(i, r.port, numbered(i, 32), i * 25));
  const file = `${dir.path}/paced.gswlog`;
  await Deno.writeFile(file, encodeLog(HEADER, records));
  const p = await replay([file, "--speed", "2"], [r]);
  assert.equal(p.exited!.code, 0, p.stderr.text);
  assert.deepEqual(r.got.map((g) => seqOf(g.payload)), [...Array(40).keys()]);
  // Pacing can only make it later than scheduled, never earlier: a lower bound is safe to
  // assert on a busy machine (an upper bound would not be).
  const spread = r.got.at(-1)!.at - r.got[0].at;
  assert.ok(spread >= 487.5 * 0.9, `39 gaps of 12.5 ms took ${spread.toFixed(0)} ms`);
  const half = r.got[20].at - r.got[0].at;
  assert.ok(half >= 250 * 0.9, `the first 20 gaps took ${half.toFixed(0)} ms`);
  assert.match(p.stdout.text, /log time 1\.0 s, 2× speed/);
});

Deno.test("replay: time restarts at each run, so runs hours apart replay back to back", async () => {
  await using dir = await tempDir("replay-runs");
  using r = new Receiver();
  const hour = 3600n * 1_000_000_000n;
  const first = Array.from({ length: 5 }, (_, i) => record(i, r.port, numbered(i, 16), i * 10));
  const second = first.map((rec, i) => ({
    ...rec,
    timeNs: rec.timeNs + hour,
    payload: numbered(5 + i, 16),
  }));
  await Deno.writeFile(`${dir.path}/a.gswlog`, encodeLog(HEADER, first));
  await Deno.writeFile(
    `${dir.path}/b.gswlog`,
    encodeLog({ ...HEADER, runStartNs: T0 + hour, startNs: T0 + hour }, second),
  );
  const started = performance.now();
  const p = await replay([`${dir.path}/a.gswlog`, `${dir.path}/b.gswlog`], [r]);
  assert.equal(p.exited!.code, 0, p.stderr.text);
  assert.deepEqual(r.got.map((g) => seqOf(g.payload)), [...Array(10).keys()]);
  assert.ok(performance.now() - started < 60_000, "did not wait out the hour between runs");
  assert.match(p.stdout.text, /sent 10 packets .* from 2 files .*\(log time 0\.1 s/);
});

Deno.test("replay CLI: help, usage errors (exit 2), a missing or foreign log (exit 1)", async () => {
  await using dir = await tempDir("replay-cli");
  const help = await runTask("replay", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: replay LOG… \[--speed X \| --as-fast-as-possible\]/);
  for (
    const args of [
      [],
      ["x.gswlog", "--speed", "0"],
      ["x.gswlog", "--speed", "fast"],
      ["x.gswlog", "--speed", "2", "--as-fast-as-possible"],
      ["x.gswlog", "--host", "localhost"],
      ["x.gswlog", "--port-offset", "1.5"],
      ["x.gswlog", "--loop"],
    ]
  ) {
    const r = await runTask("replay", args);
    assert.equal(r.code, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, /^gsw replay: .+\nusage: replay LOG…/, `${args}`);
  }
  const missing = await runTask("replay", [`${dir.path}/missing.gswlog`]);
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr,
    `gsw replay: cannot open log ${dir.path}/missing.gswlog: no such file or directory\n`,
  );
  await Deno.writeTextFile(`${dir.path}/notes.txt`, "not a log at all\n");
  const foreign = await runTask("replay", [`${dir.path}/notes.txt`]);
  assert.equal(foreign.code, 1);
  assert.match(foreign.stdout, /sent 0 packets/);
  assert.match(foreign.stderr, /notes\.txt: not a gsw log/);
});
