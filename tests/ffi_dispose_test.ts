/**
 * Closing really releases everything: every wrapper kind, made and disposed 200 times (half
 * with `using`, half with `close()`), leaves this process's descriptors and gsw mappings
 * exactly as they were; native objects that hold a writer or reader keep it alive after its
 * own handle is closed, and release it when they are closed.
 */
import assert from "node:assert/strict";
import {
  Batch,
  Extractor,
  Fanout,
  GswError,
  LogQueue,
  META_LEN,
  monotonicNs,
  NONE,
  type SegmentFds,
  SegmentReader,
  SegmentWriter,
  UdpSocket,
  UnixConnection,
  UnixListener,
  Waitset,
} from "../ffi/mod.ts";
import { fdCount, mappings, tempRunDir } from "./helpers/ffi_child.ts";
import { acceptOne, Loopback } from "./helpers/ffi_link.ts";

const ROUNDS = 200;

interface Snapshot {
  fds: number;
  gswMaps: number;
  maps: number;
}

function snapshot(): Snapshot {
  const m = mappings();
  return { fds: fdCount(), gswMaps: m.gsw, maps: m.total };
}

function rssKiB(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)![1]);
}

/**
 * Runs `make` once to warm up, then ROUNDS times, each time disposing what it made: with
 * `using` on even rounds, `close()` on odd ones. Asserts that nothing stays behind.
 */
function churn(what: string, make: (dispose: "using" | "close") => void): void {
  make("close");
  const before = snapshot();
  for (let i = 0; i < ROUNDS; i++) make(i % 2 === 0 ? "using" : "close");
  const after = snapshot();
  assert.equal(after.fds, before.fds, `${what}: descriptors leaked`);
  assert.equal(after.gswMaps, before.gswMaps, `${what}: shared-memory mappings leaked`);
  // Other mappings come and go with V8's heap; a leak per round would be ≥ ROUNDS lines.
  assert.ok(after.maps - before.maps < ROUNDS / 4, `${what}: ${after.maps - before.maps} mappings`);
}

/** Disposes `objects` the way the round asks for. */
function release(how: "using" | "close", ...objects: (Disposable & { close(): void })[]): void {
  if (how === "using") {
    for (const o of objects) {
      using _ = o;
    }
  } else {
    for (const o of objects) o.close();
  }
}

const spec = (n: number) => Array.from({ length: n }, (_, i) => ({ capacity: 8 + i, id: i }));

Deno.test("making and disposing every wrapper 200 times leaks no descriptor and no mapping", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using listener = new UnixListener(`${dir.run}/conn.sock`);
  const fds = fdCount();
  const maps = mappings().gsw;

  churn("segment writers", (how) => {
    if (how === "using") {
      using w = SegmentWriter.create(spec(3));
      w.publish(2, new Uint8Array(10), 1n, 0n);
    } else {
      SegmentWriter.create(spec(3)).close();
    }
  });
  churn("segment readers", (how) => {
    const w = SegmentWriter.create(spec(3));
    const r = loop.reader(w);
    w.releaseFds();
    // Half the readers outlive their writer.
    if (how === "using") release(how, r, w);
    else release(how, w, r);
  });
  churn("waitsets watching descriptors", (how) => {
    const ws = new Waitset();
    ws.add(loop.client.fd, 1);
    ws.add(loop.server.fd, 2);
    release(how, ws);
  });
  let n = 0;
  churn("listeners", (how) => {
    const l = new UnixListener(`${dir.run}/l${n++}.sock`);
    release(how, l);
    assert.throws(() => Deno.statSync(l.path), Deno.errors.NotFound, "socket file left behind");
  });
  churn("connections, both ends", (how) => {
    const c = UnixConnection.connect(listener.path);
    const s = acceptOne(listener);
    assert.equal(s.peer?.pid, Deno.pid);
    release(how, c, s);
  });
  churn("UDP sockets and senders", (how) => {
    release(how, new UdpSocket({ bind: "127.0.0.1", port: 0 }), UdpSocket.sender());
  });
  churn("batches", (how) => release(how, new Batch(64)));
  churn("extractors holding a writer", (how) => {
    const w = SegmentWriter.create(spec(2));
    const e = new Extractor([{ packet: 0, measurement: 1, offset: 0, length: 4 }], 1, 2);
    e.addLink(w, new Uint32Array([NONE, 1]));
    e.publishValue(0, new Uint8Array(1), 0n);
    release(how, w, e);
  });
  churn("fanouts holding a reader and writers", (how) => {
    const src = SegmentWriter.create(spec(2));
    const r = loop.reader(src);
    const dst = SegmentWriter.create(spec(2));
    const f = new Fanout(r);
    f.add(0, dst, 1, 0n, monotonicNs());
    src.publish(0, new Uint8Array(8), 1n, 0n);
    assert.equal(f.pump(monotonicNs()).copied, 1);
    release(how, f, r, dst, src);
  });
  churn("log queues connected to a logger", (how) => {
    const q = new LogQueue(1, 1 << 16);
    q.connect(listener.path);
    const logger = acceptOne(listener);
    const meta = new Uint8Array(META_LEN);
    meta[0] = 4;
    assert.equal(q.forward(new Uint8Array(4), 4, meta, 1, 9), 0);
    release(how, q, logger);
  });
  churn("refused attaches and connects", () => {
    const w = SegmentWriter.create(spec(1));
    const [data, , bell] = w.fds();
    const copies = loop.copy([bell, data, bell]) as SegmentFds;
    assert.throws(() => SegmentReader.attach(copies), GswError);
    assert.throws(() => UnixConnection.connect(`${dir.run}/nobody.sock`), GswError);
    w.close();
  });

  assert.equal(fdCount(), fds);
  assert.equal(mappings().gsw, maps);
});

Deno.test("freed batches and extractors give their native memory back", () => {
  // Each Batch(1024) allocates ~160 KiB of native scratch, ~35 KiB of it touched: 2000
  // leaked ones add ~70 MiB to the resident set, freed ones reuse the same memory (a few
  // MiB of growth is V8's heap).
  const rounds = 2000;
  for (let i = 0; i < 50; i++) new Batch(1024).close();
  const before = rssKiB();
  for (let i = 0; i < rounds; i++) {
    using b = new Batch(1024);
    using e = new Extractor(
      Array.from({ length: 64 }, (_, m) => ({ packet: 0, measurement: m, offset: m, length: 1 })),
      1,
      64,
    );
    assert.ok(b.max === 1024 && e.measurements === 64);
  }
  const grewKiB = rssKiB() - before;
  console.log(`resident set: ${grewKiB >= 0 ? "+" : ""}${grewKiB} KiB after ${rounds} rounds`);
  assert.ok(grewKiB < 24 * 1024, `resident set grew by ${grewKiB} KiB`);
});

/** Descriptors and gsw mappings one writer holds: 2 memfds + doorbell, 2 mappings. */
/** What a wrapper holds that the kernel can count: descriptors and gsw mappings. */
function held(): { fds: number; gswMaps: number } {
  const { fds, gswMaps } = snapshot();
  return { fds, gswMaps };
}

function writerCost(w: SegmentWriter): { fds: number; maps: number } {
  const before = held();
  w.close();
  const after = held();
  return { fds: before.fds - after.fds, maps: before.gswMaps - after.gswMaps };
}

Deno.test("an extractor keeps its writers alive after their handles close, until it closes", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  assert.deepEqual(writerCost(SegmentWriter.create(spec(2))), { fds: 3, maps: 2 });

  const writer = SegmentWriter.create(spec(2));
  using reader = loop.reader(writer);
  const extractor = new Extractor([{ packet: 0, measurement: 0, offset: 0, length: 8 }], 1, 2);
  extractor.addLink(writer, new Uint32Array([0, 1]));
  const holding = held();
  writer.close();
  assert.deepEqual(held(), holding, "the extractor still holds the writer");
  assert.throws(() => writer.publish(0, new Uint8Array(1), 1n, 0n), GswError);

  // And the writer still works through the extractor: the reader gets its values.
  extractor.publishValue(1, new Uint8Array([4, 2]), 99n);
  assert.deepEqual(reader.take(1)?.bytes, new Uint8Array([4, 2]));
  const slot = 16;
  const buf = new Uint8Array(slot).fill(7);
  const meta = new Uint8Array(META_LEN);
  new DataView(meta.buffer).setUint32(0, 8, true);
  assert.equal(extractor.publishBatch(buf, slot, meta, new Uint32Array([0]), 1), 1);
  assert.deepEqual(reader.take(0)?.bytes, new Uint8Array(8).fill(7));

  extractor.close();
  const after = held();
  assert.equal(holding.fds - after.fds, 3, "closing the extractor frees the writer's descriptors");
  assert.equal(holding.gswMaps - after.gswMaps, 2, "and its mappings");
  // The reader has its own mapping: the last value stays readable.
  assert.deepEqual(reader.current(0)?.bytes, new Uint8Array(8).fill(7));
});

Deno.test("a fanout keeps its source reader and subscriber writers alive until it closes", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using source = SegmentWriter.create(spec(1));
  const sourceReader = loop.reader(source);
  source.releaseFds();
  const sub = SegmentWriter.create(spec(1));
  using subReader = loop.reader(sub);
  sub.releaseFds(); // the subscriber's writer now holds one descriptor: its doorbell
  const fanout = new Fanout(sourceReader);
  fanout.add(0, sub, 0, 0n, monotonicNs());

  const holding = held();
  sourceReader.close();
  sub.close();
  assert.deepEqual(held(), holding, "the fanout still holds both");

  source.publish(0, new Uint8Array([1, 2, 3]), 5n, 6n);
  assert.deepEqual(fanout.pump(monotonicNs()), { taken: 1, copied: 1, nextDueNs: 0n });
  const got = subReader.take(0);
  assert.deepEqual([got?.seq, got?.timestampNs, got?.bytes], [5, 6n, new Uint8Array([1, 2, 3])]);

  fanout.close();
  const after = held();
  // The source reader's doorbell and the subscriber writer's doorbell; two mappings each.
  assert.equal(holding.fds - after.fds, 2);
  assert.equal(holding.gswMaps - after.gswMaps, 4);
});
