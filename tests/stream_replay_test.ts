/**
 * Every framing over real PTY pairs (socat) at the line rate of 921 600 baud for 10 s, with
 * garbage, dropped bytes and flipped bits mixed in: every good packet decoded and logged, every
 * bad stretch counted and logged. Then the log replayed (`replay --serial`, `--tcp`,
 * `--tcp-listen`) into a fresh pipeline gives back the same packets.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { encodeFrame, FLAG_BAD_CRC, FLAG_UNFRAMED, type FramingOptions } from "../ffi/mod.ts";
import { type LogRecord, readAll } from "../logger/format.ts";
import { logFilesIn, runDirs } from "./logger_helpers.ts";
import { decodeRaw } from "../config/mod.ts";
import {
  eventually,
  eventuallyAsync,
  freeTcpPort,
  Pipeline,
  type Proc,
  ptyPair,
  sleep,
} from "./helpers/pipeline.ts";

const BAUD = 921_600;
/** 8N1: ten bits on the line per byte. */
const LINE_BYTES_PER_S = BAUD / 10;
const RUN_S = 10;

interface Kind {
  name: string;
  yaml: string;
  framing: FramingOptions;
}

const base = { crcBig: true, minLength: 9, maxLength: 9, size: 9 };
const KINDS: Kind[] = [
  {
    name: "sync",
    yaml: '{ type: sync, sync: "EB90", crc: crc16-ccitt }',
    framing: { ...base, kind: "sync", sync: new Uint8Array([0xeb, 0x90]), crc: "crc16-ccitt" },
  },
  {
    name: "length",
    yaml: "{ type: length, length_bytes: 1, crc: crc32c }",
    framing: { ...base, kind: "length", lengthBytes: 1, crc: "crc32c" },
  },
  {
    name: "cobs",
    yaml: "{ type: cobs, crc: crc16-ccitt }",
    framing: { ...base, kind: "cobs", crc: "crc16-ccitt" },
  },
  {
    name: "slip",
    yaml: "{ type: slip, crc: crc32c }",
    framing: { ...base, kind: "slip", crc: "crc32c" },
  },
];

/** One source per framing, each with its own 9-byte packet (id, SEQ u32, VALUE f32). */
function config(source: (k: Kind) => string, kinds = KINDS): string {
  const sources = kinds.map((k) => `  - name: ${k.name}\n${source(k)}\n    framing: ${k.yaml}`);
  const measurements = kinds.map((k) =>
    `  SEQ_${k.name}: { type: uint, size: 4, endianness: little }\n` +
    `  VALUE_${k.name}: { type: float, size: 4, endianness: little }`
  );
  const packets = kinds.map((k, i) =>
    `  - name: P_${k.name}\n    source: ${k.name}\n    id: { offset: 0, size: 1, value: ${
      i + 1
    } }\n` +
    `    measurements: [{ padding: 1 }, SEQ_${k.name}, VALUE_${k.name}]`
  );
  return `name: framings\nsources:\n${sources.join("\n")}\nmeasurements:\n${
    measurements.join("\n")
  }\ntelemetry_packets:\n${packets.join("\n")}\n`;
}

function packet(kind: number, seq: number): Uint8Array {
  const b = new Uint8Array(9);
  const v = new DataView(b.buffer);
  b[0] = kind + 1;
  v.setUint32(1, seq, true);
  v.setFloat32(5, seq * 0.25, true);
  return b;
}

const seqOf = (r: LogRecord) =>
  new DataView(r.payload.buffer).getUint32(r.payload.byteOffset + 1, true);

/**
 * Writes framed packets to `ground` at the line rate for `seconds`, with a bad stretch every
 * 50 packets in turn: garbage (with a false start of the framing), a frame missing a byte, a
 * frame with a flipped bit. Returns the good packets' sequence numbers and the bad stretches.
 */
async function radio(
  kind: number,
  ground: string,
  seconds: number,
): Promise<{ good: number[]; bad: number }> {
  const f = KINDS[kind].framing;
  const file = await Deno.open(ground, { write: true });
  const good: number[] = [];
  let bad = 0;
  let seq = 0;
  const t0 = performance.now();
  let sent = 0;
  try {
    while (performance.now() - t0 < seconds * 1000) {
      // What the line carried since the start, less what was written: write that much.
      const due = ((performance.now() - t0) / 1000) * LINE_BYTES_PER_S - sent;
      const bytes: number[] = [];
      while (bytes.length < due) {
        seq++;
        const frame = encodeFrame(f, packet(kind, seq));
        switch (seq % 50) {
          case 10:
            bytes.push(0x00, 0xeb, 0x13, 0x90, 0x55, 0xc0, 0x07); // garbage
            bad++;
            break;
          case 20:
            bytes.push(...frame.subarray(0, 4), ...frame.subarray(5)); // a byte lost
            bad++;
            continue;
          case 30:
            frame[frame.length - 4] ^= 0x08; // a flipped bit
            bytes.push(...frame);
            bad++;
            continue;
        }
        bytes.push(...frame);
        good.push(seq);
      }
      if (bytes.length > 0) {
        const chunk = Uint8Array.from(bytes);
        for (let at = 0; at < chunk.length;) at += await file.write(chunk.subarray(at));
        sent += bytes.length;
      }
      await sleep(10);
    }
  } finally {
    file.close();
  }
  return { good, bad };
}

/** The log's records per source index, once `expect` of them are on disk. */
async function logged(p: Pipeline, expect: number): Promise<LogRecord[][]> {
  let records: LogRecord[] = [];
  await eventuallyAsync(`${expect} records logged`, async () => {
    const [run] = await runDirs(`${p.dir}/logs`);
    records = run ? (await readAll(await logFilesIn(run))).records : [];
    return records.length >= expect || undefined;
  }, 30_000);
  return KINDS.map((_, i) => records.filter((r) => r.source === i));
}

const rejected = (r: LogRecord) => (r.flags & (FLAG_BAD_CRC | FLAG_UNFRAMED)) !== 0;

Deno.test({
  name:
    "serial over PTYs at 921600 baud for 10 s, every framing: good packets decoded and logged, bad ones counted; replayed, the same",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const ptys = Deno.makeTempDirSync({ prefix: "gsw-ptys-" });
    const socats: Proc[] = [];
    try {
      // -- live: four radios, four decoms, one logger ---------------------------------------
      const serial = (dir: string) => (k: Kind) =>
        `    type: serial\n    device: ${dir}/${k.name}.radio\n    baud: ${BAUD}`;
      await using p = Pipeline.create({ configText: config(serial(`${ptys}/a`)) });
      Deno.mkdirSync(`${ptys}/a`);
      Deno.mkdirSync(`${ptys}/b`);
      for (const k of KINDS) socats.push(await ptyPair(`${ptys}/a`, `${k.name}.`));
      await p.logger();
      const decoms = KINDS.map((k) =>
        p.spawn("decom", ["--config", p.configPath, "--source", k.name, "--health-interval", "0.1"])
      );
      for (const d of decoms) await d.waitFor(/opened .* at 921600 baud/);
      await p.broker();
      const health = p.subscribeRaw(KINDS.map((k) => `${k.name}.errors`));
      const sent = await Promise.all(
        KINDS.map((k, i) => radio(i, `${ptys}/a/${k.name}.ground`, RUN_S)),
      );
      const total = sent.reduce((n, s) => n + s.good.length + s.bad, 0);
      const live = await logged(p, total);
      const errors = new Map<string, bigint>();
      for (const [i, k] of KINDS.entries()) {
        const good = live[i].filter((r) => !rejected(r));
        assertEquals(good.map(seqOf), sent[i].good, `${k.name}: every good packet, in order`);
        const bad = live[i].filter(rejected);
        // Each bad stretch is at least one rejected record (a framing may cut one in two).
        assert(
          bad.length >= sent[i].bad && bad.length <= 2 * sent[i].bad,
          `${k.name}: ${bad.length} rejected records for ${sent[i].bad} bad stretches`,
        );
        // …and exactly what decom counted as errors.
        await eventually(`${k.name}.errors reads ${bad.length}`, () => {
          health.reader.takePending((s) => {
            const m = health.reply.channels[s.channel].measurement!;
            errors.set(m.key, decodeRaw(m, s.bytes) as bigint);
          });
          return errors.get(`${k.name}.errors`) === BigInt(bad.length) || undefined;
        });
        console.log(
          `${k.name}: ${good.length} packets, ${
            sent[i].bad
          } bad stretches → ${bad.length} rejected records`,
        );
      }
      for (const d of decoms) await d.stop("SIGINT");

      // -- replayed into a fresh pipeline, as fast as the PTYs take it ------------------------
      await using q = Pipeline.create({ configText: config(serial(`${ptys}/b`)) });
      for (const k of KINDS) socats.push(await ptyPair(`${ptys}/b`, `${k.name}.`));
      await q.logger();
      const again = KINDS.map((k) =>
        q.spawn("decom", ["--config", q.configPath, "--source", k.name])
      );
      for (const d of again) await d.waitFor(/opened .* at 921600 baud/);
      const [run] = await runDirs(`${p.dir}/logs`);
      const replay = q.spawn("replay", [
        run,
        "--as-fast-as-possible",
        ...KINDS.flatMap((k) => ["--serial", `${k.name}=${ptys}/b/${k.name}.ground`]),
      ]);
      assertEquals((await replay.status).code, 0, replay.output.text);
      for (const k of KINDS) {
        assert(
          new RegExp(`source "${k.name}": \\d+ packets framed`).test(replay.stdout.text),
          replay.stdout.text,
        );
      }
      const replayed = await logged(q, total);
      for (const [i, k] of KINDS.entries()) {
        assertEquals(
          replayed[i].filter((r) => !rejected(r)).map((r) => r.payload),
          live[i].filter((r) => !rejected(r)).map((r) => r.payload),
          `${k.name}: the replayed packets are the live ones`,
        );
        assert(replayed[i].some(rejected), `${k.name}: the bad stretches were replayed too`);
      }
      for (const d of again) await d.stop("SIGINT");
    } finally {
      for (const s of socats) {
        s.kill("SIGTERM");
        await s.status;
      }
      Deno.removeSync(ptys, { recursive: true });
    }
  },
});

Deno.test({
  name: "replay over TCP: --tcp to a listening decom, --tcp-listen for a connecting one",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    // Recorded: two TCP sources fed by the test (decom listens for both).
    const ports = [freeTcpPort(), freeTcpPort()];
    const tcp2 = KINDS.slice(0, 2);
    const text = (src: (i: number) => string) =>
      config((k) => `    type: tcp\n    ${src(KINDS.indexOf(k))}`, tcp2);
    await using p = Pipeline.create({ configText: text((i) => `listen: 127.0.0.1:${ports[i]}`) });
    await p.logger();
    const decoms = tcp2.map((k) =>
      p.spawn("decom", ["--config", p.configPath, "--source", k.name])
    );
    for (const d of decoms) await d.waitFor(/serving/);
    const expected: Uint8Array[][] = [];
    for (const [i, k] of tcp2.entries()) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port: ports[i] });
      const packets = Array.from({ length: 2000 }, (_, s) => packet(i, s + 1));
      const bytes = packets.flatMap((pk) => [...encodeFrame(k.framing, pk)]);
      for (let at = 0; at < bytes.length;) at += await conn.write(Uint8Array.from(bytes.slice(at)));
      conn.close();
      expected.push(packets);
    }
    const live = await logged(p, 4000);
    for (const d of decoms) await d.stop("SIGINT");
    assertEquals(live.slice(0, 2).map((rs) => rs.map((r) => r.payload)), expected);

    // Replayed: "sync" to a decom that listens, "length" from a decom that connects.
    const [listenPort, connectPort] = [freeTcpPort(), freeTcpPort()];
    await using q = Pipeline.create({
      configText: text((i) =>
        i === 0 ? `listen: 127.0.0.1:${listenPort}` : `connect: 127.0.0.1:${connectPort}`
      ),
    });
    await q.logger();
    const again = tcp2.map((k) => q.spawn("decom", ["--config", q.configPath, "--source", k.name]));
    for (const d of again) await d.waitFor(/serving/);
    const [run] = await runDirs(`${p.dir}/logs`);
    const replay = q.spawn("replay", [
      run,
      "--speed",
      "50",
      "--tcp",
      `sync=127.0.0.1:${listenPort}`,
      "--tcp-listen",
      `length=127.0.0.1:${connectPort}`,
    ]);
    await replay.stdout.waitFor(/listening on 127\.0\.0\.1:\d+ for decom's source "length"/);
    assertEquals((await replay.status).code, 0, replay.output.text);
    const replayed = await logged(q, 4000);
    assertEquals(replayed.slice(0, 2).map((rs) => rs.map((r) => r.payload)), expected);
    for (const d of again) await d.stop("SIGINT");
  },
});

Deno.test("replay: stream options name a serial or TCP source; records without one are counted", async () => {
  await using p = Pipeline.create({
    configText: config(() => `    type: tcp\n    listen: 127.0.0.1:${freeTcpPort()}`),
  });
  // A log with one record, of a TCP source (it has no port).
  const log = `${p.dir}/one.gswlog`;
  const { encodeLog } = await import("../logger/format.ts");
  Deno.writeFileSync(
    log,
    encodeLog({
      sequence: 1,
      startNs: 1n,
      runStartNs: 1n,
      configHash: "00".repeat(32),
      configName: "framings",
      configPath: p.configPath,
      host: "test",
      gswVersion: "0.1.0",
    }, [{
      timeNs: 1n,
      source: 0,
      dstPort: 0,
      srcAddress: "127.0.0.1",
      srcPort: 1,
      flags: 0,
      origLength: 9,
      payload: packet(0, 1),
    }]),
  );
  const run = async (args: string[]) => {
    const r = p.spawn("replay", [log, ...args]);
    return { code: (await r.status).code, out: r.output.text };
  };
  const which = await run(["--config", p.configPath, "--tcp", "127.0.0.1:9"]);
  assertEquals(which.code, 2, which.out);
  assert(
    /which source\? write SOURCE=.*\(the config's serial and TCP sources: sync, length, cobs, slip\)/
      .test(which.out),
    which.out,
  );
  const unknown = await run(["--config", p.configPath, "--serial", "nope=/dev/null"]);
  assertEquals(unknown.code, 2, unknown.out);
  assert(/"nope" is not a serial or TCP source/.test(unknown.out), unknown.out);
  const port = await run(["--config", p.configPath, "--tcp", "sync=127.0.0.1:http"]);
  assertEquals(port.code, 2, port.out);
  const skipped = await run([]);
  assertEquals(skipped.code, 0, skipped.out);
  assert(/records of serial or TCP sources skipped .*: 1/.test(skipped.out), skipped.out);
  const refused = await run(["--config", p.configPath, "--tcp", `sync=127.0.0.1:${freeTcpPort()}`]);
  assertEquals(refused.code, 1, refused.out);
  assert(/cannot connect to 127\.0\.0\.1:\d+/.test(refused.out), refused.out);
});
