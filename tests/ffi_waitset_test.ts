/**
 * Waitsets from Deno: `wait()` parks one call on Deno's blocking pool and resolves with the
 * ready tokens and their events; `close()` during a wait cancels it and frees the waitset
 * afterwards; and one waitset over hundreds of doorbells still uses one pool thread.
 */
import assert from "node:assert/strict";
import {
  HANGUP,
  READABLE,
  type Ready,
  type SegmentFds,
  SegmentReader,
  SegmentWriter,
  UnixConnection,
  Waitset,
  WRITABLE,
} from "../ffi/mod.ts";
import {
  fdCount,
  newFds,
  openFds,
  sleep,
  tempRunDir,
  threadCount,
  threadsWaitingOn,
  until,
  withChildren,
  within,
} from "./helpers/ffi_child.ts";
import { acceptOne, listen, Loopback, receiveMessage } from "./helpers/ffi_link.ts";

const sorted = (ready: Ready[]) => [...ready].sort((a, b) => a.token - b.token);

/** A new waitset and the number of its epoll descriptor (found in /proc/self/fd). */
function waitsetWithEpfd(): { ws: Waitset; epfd: number } {
  const before = openFds();
  const ws = new Waitset();
  const epolls = newFds(before, openFds()).filter(([, what]) => what.includes("eventpoll"));
  assert.equal(epolls.length, 1, `new descriptors: ${epolls}`);
  return { ws, epfd: epolls[0][0] };
}

Deno.test("wait() resolves with the ready tokens and events while the event loop runs on", async () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using w1 = SegmentWriter.create([{ capacity: 8, id: 1 }]);
  using w2 = SegmentWriter.create([{ capacity: 8, id: 2 }]);
  using r1 = loop.reader(w1);
  using r2 = loop.reader(w2);
  using ws = new Waitset();
  ws.add(r1.doorbellFd, 11);
  ws.add(r2.doorbellFd, 22);
  assert.deepEqual(await ws.wait(0), []);

  const pending = ws.wait(5000);
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 5);
  await sleep(60);
  clearInterval(ticker);
  assert.ok(ticks >= 3, `the event loop ran only ${ticks} timer ticks during the wait`);
  w2.publish(0, new Uint8Array(8), 1n, 0n);
  assert.deepEqual(await within(pending, 5000, "wait"), [{ token: 22, events: READABLE }]);

  // Level-triggered: ready until drained.
  assert.deepEqual(await ws.wait(0), [{ token: 22, events: READABLE }]);
  assert.equal(r2.takePending(() => {}), 1);
  assert.deepEqual(await ws.wait(0), []);

  w1.publish(0, new Uint8Array(8), 1n, 0n);
  w2.publish(0, new Uint8Array(8), 2n, 0n);
  assert.deepEqual(sorted(await ws.wait(1000)), [
    { token: 11, events: READABLE },
    { token: 22, events: READABLE },
  ]);
  r1.takePending(() => {});
  r2.takePending(() => {});

  // Writability, changing interest, and removal.
  ws.add(loop.client.fd, 33, WRITABLE);
  assert.deepEqual(await ws.wait(0), [{ token: 33, events: WRITABLE }]);
  ws.modify(loop.client.fd, 34, READABLE);
  assert.deepEqual(await ws.wait(0), []);
  loop.server.send(new Uint8Array([1]));
  assert.deepEqual(await ws.wait(1000), [{ token: 34, events: READABLE }]);
  ws.remove(loop.client.fd);
  assert.deepEqual(await ws.wait(0), []);
  assert.equal((loop.client.recv(new Uint8Array(8)) as { length: number }).length, 1);

  // A timeout resolves with nothing, after (about) the timeout.
  const start = performance.now();
  assert.deepEqual(await ws.wait(50), []);
  assert.ok(performance.now() - start >= 40);
  const first = ws.wait(100);
  await assert.rejects(ws.wait(100), /a wait is already in progress on this waitset/);
  assert.deepEqual(await first, []);
});

Deno.test("HANGUP is reported when the peer process closes its connection or dies", async () => {
  using dir = tempRunDir();
  using listener = listen(dir.run, "hangup.sock");
  await withChildren(async (spawn) => {
    for (const how of ["close", "SIGKILL"]) {
      const peer = spawn("ffi_hangup_peer.ts", { path: listener.path });
      await peer.next("connected");
      using conn = acceptOne(listener);
      assert.equal(conn.peer?.pid, peer.pid);
      using ws = new Waitset();
      ws.add(conn.fd, 7);
      assert.deepEqual(await ws.wait(0), []);
      if (how === "close") {
        await peer.send("close");
        await peer.next("closed");
      } else {
        Deno.kill(peer.pid, "SIGKILL");
      }
      assert.deepEqual(await ws.wait(5000), [{ token: 7, events: READABLE | HANGUP }], how);
      assert.equal(conn.recv(new Uint8Array(8)), "closed");
    }
  });
});

Deno.test("close() during a pending wait() cancels it, then frees the waitset", async () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using writer = SegmentWriter.create([{ capacity: 8, id: 1 }]);
  using reader = loop.reader(writer);
  for (const how of ["close", "using"]) {
    const fds = fdCount();
    const { ws, epfd } = waitsetWithEpfd();
    ws.add(reader.doorbellFd, 1);
    let pending: Promise<Ready[]>;
    {
      using scoped = how === "using" ? ws : null;
      pending = ws.wait(60_000);
      await until(() => threadsWaitingOn(epfd).length > 0, 5000, "a pool thread in the wait");
      assert.equal(threadsWaitingOn(epfd).length, 1, "one pool thread blocked in the wait");
      if (!scoped) ws.close();
    }
    // The promise resolves at once with nothing (not after 60 s), and only then is the
    // waitset freed: its epoll descriptor and cancel eventfd are closed.
    assert.deepEqual(await within(pending, 2000, "the cancelled wait"), [], how);
    assert.equal(ws.closed, true);
    assert.equal(fdCount(), fds, `${how}: the waitset's descriptors are closed`);
    assert.deepEqual(threadsWaitingOn(epfd), []);
    assert.throws(() => ws.add(reader.doorbellFd, 2), /waitset is already closed/);
  }
  // The reader and writer it watched are untouched.
  writer.publish(0, new Uint8Array(8), 1n, 0n);
  assert.equal(reader.take(0)?.seq, 1);
});

Deno.test("500 doorbells of another process in one waitset, woken one by one: one pool thread", async () => {
  using dir = tempRunDir();
  const N = 500;
  await withChildren(async (spawn) => {
    const child = spawn("ffi_many_writer.ts", { runDir: dir.run, count: N });
    const { path } = await child.next("listening");
    using conn = UnixConnection.connect(path);
    const readers: SegmentReader[] = [];
    try {
      for (let i = 0; i < N; i++) {
        const { message, fds } = receiveMessage(conn);
        assert.equal(message.index, i);
        readers.push(SegmentReader.attach(fds as SegmentFds));
      }
      await child.next("served");
      const { ws, epfd } = waitsetWithEpfd();
      using _ws = ws;
      readers.forEach((r, i) => ws.add(r.doorbellFd, i));
      const threadsBefore = threadCount();
      const waiters = new Set<number>();

      for (let k = 0; k < N; k++) {
        const i = (k * 7) % N; // every doorbell once, in a scattered order
        const pending = ws.wait(5000);
        if (k % 50 === 0) {
          await until(() => threadsWaitingOn(epfd).length > 0, 5000, "a pool thread in the wait");
          const tids = threadsWaitingOn(epfd);
          assert.equal(tids.length, 1, `round ${k}: ${tids.length} threads wait on the set`);
          waiters.add(tids[0]);
        }
        await child.send(`ring ${i} ${k + 1}`);
        assert.deepEqual(await pending, [{ token: i, events: READABLE }], `round ${k}`);
        assert.equal((await child.next("rang")).rang, 1);
        const seqs: number[] = [];
        readers[i].takePending((s) => seqs.push(s.seq));
        assert.deepEqual(seqs, [k + 1]);
      }

      // All at once: more than one wait can return (256 events per call); none is lost.
      await child.send(`ring-all ${N + 1}`);
      assert.equal((await child.next("rang")).rang, N);
      const seen = new Set<number>();
      const sizes: number[] = [];
      while (seen.size < N) {
        const ready = await ws.wait(5000);
        assert.ok(ready.length > 0, `only ${seen.size} of ${N} doorbells reported`);
        sizes.push(ready.length);
        for (const { token, events } of ready) {
          assert.equal(events, READABLE);
          assert.ok(!seen.has(token), `doorbell ${token} reported after it was drained`);
          seen.add(token);
          const seqs: number[] = [];
          readers[token].takePending((s) => seqs.push(s.seq));
          assert.deepEqual(seqs, [N + 1]);
        }
      }
      const grew = threadCount() - threadsBefore;
      console.log(
        `${N} wakes, one at a time, then all at once in waits of ${sizes.join("+")}; ` +
          `pool threads seen waiting: ${waiters.size}; process threads grew by ${grew}`,
      );
      assert.ok(grew <= 2, `the process gained ${grew} threads`);
    } finally {
      readers.forEach((r) => r.close());
    }
  });
});
