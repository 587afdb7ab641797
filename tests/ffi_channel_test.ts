/**
 * Channel semantics through the TypeScript wrappers, writer and reader in one process (the
 * reader on its own copies of the descriptors, passed over a real UNIX socket): latest-value
 * takes, skipped counts, batch takes over many channels, refusals, and GswError's contents.
 */
import assert from "node:assert/strict";
import {
  GswError,
  RECORD,
  type SegmentReader,
  SegmentWriter,
  UnixConnection,
  UnixListener,
  Waitset,
} from "../ffi/mod.ts";
import { tempRunDir } from "./helpers/ffi_child.ts";
import { Loopback } from "./helpers/ffi_link.ts";

const bytes = (...b: number[]) => new Uint8Array(b);

function pair(
  capacities: number[],
  loop: Loopback,
): { writer: SegmentWriter; reader: SegmentReader } & Disposable {
  const writer = SegmentWriter.create(capacities.map((capacity, i) => ({ capacity, id: 100 + i })));
  const reader = loop.reader(writer);
  return {
    writer,
    reader,
    [Symbol.dispose]() {
      reader.close();
      writer.close();
    },
  };
}

/** Runs `f`, which must throw a GswError; returns it. */
function gswError(f: () => unknown): GswError {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof GswError, `expected a GswError, got ${e}`);
    return e;
  }
  assert.fail("expected a GswError, nothing was thrown");
}

Deno.test("publish, take and current: the newest value, taken once, with its header", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using p = pair([8, 100, 0], loop);
  const { writer, reader } = p;
  assert.equal(reader.channels, 3);
  assert.deepEqual(reader.channel(1), { capacity: 100, id: 101 });
  assert.throws(() => reader.channel(3), RangeError);

  assert.equal(reader.take(0), null, "nothing published yet");
  assert.equal(reader.current(0), null, "never took a value");
  assert.equal(writer.publish(1, bytes(1, 2, 3), 1n, 1234n), true, "the idle reader is rung");
  assert.equal(reader.take(0), null, "another channel's value");
  const s = reader.take(1);
  assert.deepEqual(s, {
    channel: 1,
    seq: 1,
    timestampNs: 1234n,
    skipped: 0,
    bytes: bytes(1, 2, 3),
  });
  assert.equal(reader.take(1), null, "a value is taken once");
  assert.deepEqual(reader.current(1), s, "current() repeats the value held");

  // A full-capacity value and an empty one (a zero-capacity channel carries only headers).
  const full = Uint8Array.from({ length: 100 }, (_, i) => i);
  writer.publish(1, full, 2n, 5n);
  writer.publish(2, new Uint8Array(0), 7n, 6n);
  assert.deepEqual(reader.take(1)?.bytes, full);
  assert.deepEqual(reader.take(2), {
    channel: 2,
    seq: 7,
    timestampNs: 6n,
    skipped: 0,
    bytes: new Uint8Array(0),
  });

  // The sample is a copy: the next publish does not change what the caller holds.
  writer.publish(0, bytes(9, 9, 9, 9, 9, 9, 9, 9), 1n, 0n);
  const held = reader.take(0)!;
  writer.publish(0, bytes(1, 1, 1, 1, 1, 1, 1, 1), 2n, 0n);
  assert.deepEqual(held.bytes, bytes(9, 9, 9, 9, 9, 9, 9, 9));
  assert.deepEqual(reader.take(0)?.bytes, bytes(1, 1, 1, 1, 1, 1, 1, 1));
  // Shorter values after longer ones report their own length, not the slot's.
  writer.publish(1, bytes(5), 3n, 0n);
  assert.deepEqual(reader.take(1)?.bytes, bytes(5));
});

Deno.test("skipped counts the values a reader never saw", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using p = pair([8], loop);
  const { writer, reader } = p;
  const value = (n: number) => new Uint8Array(new Float64Array([n]).buffer);
  // The first value taken counts nothing as skipped: the reader was not there before it.
  for (let seq = 1; seq <= 5; seq++) writer.publish(0, value(seq), BigInt(seq), 0n);
  assert.deepEqual([reader.take(0)?.seq, reader.current(0)?.skipped], [5, 0]);
  for (let seq = 6; seq <= 1005; seq++) writer.publish(0, value(seq), BigInt(seq), 0n);
  const s = reader.take(0)!;
  assert.deepEqual([s.seq, s.skipped, new Float64Array(s.bytes.slice().buffer)[0]], [
    1005,
    999,
    1005,
  ]);
  writer.publish(0, value(1006), 1006n, 0n);
  assert.equal(reader.take(0)?.skipped, 0);
  // A sequence number going back means the writer restarted: nothing counts as skipped.
  writer.publish(0, value(3), 3n, 0n);
  assert.deepEqual([reader.take(0)?.seq, reader.current(0)?.skipped], [3, 0]);
});

Deno.test("takePending over 300 channels: only the changed ones, newest value, one ring", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  const capacities = Array.from({ length: 300 }, (_, i) => [1, 8, 64, 1000][i % 4]);
  using p = pair(capacities, loop);
  const { writer, reader } = p;
  const valueOf = (ch: number, round: number) =>
    Uint8Array.from({ length: capacities[ch] }, (_, i) => (ch + round + i) & 0xff);

  assert.equal(reader.takePending(() => assert.fail("nothing is pending")), 0);
  const seqs = capacities.map(() => 0);
  const taken = capacities.map(() => false);
  for (let round = 1; round <= 3; round++) {
    // Channels ≡ round (mod 3), and the last one, change; some of them several times.
    const changed = new Set(capacities.map((_, ch) => ch).filter((ch) => ch % 3 === round % 3));
    changed.add(299);
    const times = (ch: number) => 1 + (ch % 4);
    const before = writer.stats();
    for (const ch of changed) {
      for (let t = 1; t <= times(ch); t++) {
        seqs[ch]++;
        writer.publishQuiet(ch, valueOf(ch, seqs[ch]), BigInt(seqs[ch]), BigInt(ch));
      }
    }
    assert.equal(writer.ring(), true);
    assert.equal(writer.ring(), false, "one ring per batch");
    assert.equal(writer.stats().rings, before.rings + 1);

    const seen = new Map<number, { seq: number; skipped: number; ok: boolean }>();
    const n = reader.takePending((s) => {
      assert.ok(!seen.has(s.channel), `channel ${s.channel} twice`);
      const want = valueOf(s.channel, s.seq);
      seen.set(s.channel, {
        seq: s.seq,
        skipped: s.skipped,
        ok: s.bytes.length === want.length && s.bytes.every((b, i) => b === want[i]),
      });
    });
    assert.equal(n, changed.size);
    assert.deepEqual([...seen.keys()].sort((a, b) => a - b), [...changed].sort((a, b) => a - b));
    for (const [ch, got] of seen) {
      // Values published in the same batch were never seen, except on a first take.
      const skipped = taken[ch] ? times(ch) - 1 : 0;
      assert.deepEqual(got, { seq: seqs[ch], skipped, ok: true }, `channel ${ch}`);
      taken[ch] = true;
    }
    assert.equal(reader.takePending(() => assert.fail("taken already")), 0);
  }
});

Deno.test("a value larger than its channel is refused with EMSGSIZE and changes nothing", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using p = pair([4, 16], loop);
  const { writer, reader } = p;
  writer.publish(0, bytes(1, 2, 3, 4), 1n, 0n);
  for (
    const publish of [
      () => writer.publish(0, bytes(1, 2, 3, 4, 5), 2n, 0n),
      () => writer.publishQuiet(0, bytes(1, 2, 3, 4, 5), 2n, 0n),
    ]
  ) {
    const e = gswError(publish);
    assert.equal(e.errno, "EMSGSIZE");
    assert.equal(e.code, 90);
    assert.equal(e.name, "GswError");
    assert.match(e.message, /^publish: a 5-byte value does not fit channel 0 \(4 bytes\)/);
  }
  assert.deepEqual(reader.take(0)?.bytes, bytes(1, 2, 3, 4));
  assert.equal(reader.take(0), null, "the refused values were never published");
  assert.equal(writer.stats().publishes, 1);

  const e = gswError(() => writer.publish(2, bytes(1), 1n, 0n));
  assert.equal(e.errno, "EBADARG");
  assert.match(e.message, /channel 2 does not exist \(the segment has 2\)/);
  assert.equal(gswError(() => reader.take(5)).errno, "EBADARG");
});

Deno.test("every wrapper throws a GswError after close(), and close() twice is harmless", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  const writer = SegmentWriter.create([{ capacity: 8, id: 0 }]);
  const reader = loop.reader(writer);
  const ws = new Waitset();
  const listener = new UnixListener(`${dir.run}/closed.sock`);
  const conn = UnixConnection.connect(listener.path);
  writer.publish(0, bytes(7), 1n, 0n);
  for (const thing of [writer, reader, ws, listener, conn]) {
    thing.close();
    thing.close();
    assert.equal(thing.closed, true);
  }
  const uses: [string, () => unknown][] = [
    ["segment writer", () => writer.publish(0, bytes(1), 2n, 0n)],
    ["segment writer", () => writer.stats()],
    ["segment writer", () => writer.fds()],
    ["segment reader", () => reader.take(0)],
    ["segment reader", () => reader.takePending(() => {})],
    ["segment reader", () => reader.waitSync(0)],
    ["waitset", () => ws.add(0, 1)],
    ["waitset", () => ws.waitSync(0)],
    [listener.path, () => listener.accept()],
    ["UNIX connection", () => conn.send(bytes(1))],
  ];
  for (const [what, use] of uses) {
    const e = gswError(use);
    assert.equal(e.errno, "EBADHANDLE");
    assert.equal(e.message, `${what} is already closed`);
  }
});

Deno.test("a GswError says what failed, where, and the OS error", () => {
  using dir = tempRunDir();
  const missing = `${dir.run}/nobody-listens.sock`;
  Deno.mkdirSync(dir.run, { mode: 0o700 });
  const e = gswError(() => UnixConnection.connect(missing));
  assert.equal(e.code, 2);
  assert.equal(e.errno, "ENOENT");
  assert.equal(
    e.message,
    `connecting to ${missing}: cannot connect to ${missing}: ENOENT (No such file or directory)`,
  );
  assert.ok(e instanceof Error);

  // A stale socket file is replaced; a live one is refused, naming the path.
  using first = new UnixListener(`${dir.run}/taken.sock`);
  const busy = gswError(() => new UnixListener(first.path));
  assert.equal(busy.errno, "EADDRINUSE");
  assert.match(busy.message, /another process is already serving .*taken\.sock/);

  const bad = gswError(() => SegmentWriter.create([{ capacity: 2 << 20, id: 0 }]));
  assert.equal(bad.errno, "EBADARG");
  assert.match(bad.message, /^creating a shared-memory segment: channel 0 asks for 2097152 bytes/);
});

Deno.test("takeInto: the newest value into the caller's record, no allocation, -1 when nothing new", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using p = pair([13], loop);
  const record = new Uint8Array(RECORD.PAYLOAD + 16);
  const view = new DataView(record.buffer);
  assert.equal(p.reader.takeInto(0, record), -1);
  p.writer.publish(0, bytes(9, 8, 7), 5n, 1234567890123456789n);
  assert.equal(p.reader.takeInto(0, record), 3);
  assert.equal(view.getBigUint64(RECORD.SEQ, true), 5n);
  assert.equal(view.getBigUint64(RECORD.TIMESTAMP, true), 1234567890123456789n);
  assert.equal(view.getUint32(RECORD.CHANNEL, true), 0);
  assert.deepEqual(record.subarray(RECORD.PAYLOAD, RECORD.PAYLOAD + 3), bytes(9, 8, 7));
  assert.equal(p.reader.takeInto(0, record), -1, "taken once");
  const small = new Uint8Array(RECORD.PAYLOAD + 2);
  p.writer.publish(0, bytes(1, 2, 3), 6n, 0n);
  assert.equal(gswError(() => p.reader.takeInto(0, small)).errno, "EBADARG");
  assert.equal(p.reader.takeInto(0, record), 3, "a refused take loses nothing");
  assert.equal(view.getBigUint64(RECORD.SEQ, true), 6n);
});
