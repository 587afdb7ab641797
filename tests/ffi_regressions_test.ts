/**
 * Regression tests for bugs the FFI tests found in ffi/ (all fixed): each proves the
 * behaviour the bindings must have at an edge the other tests do not reach.
 */
import assert from "node:assert/strict";
import {
  Batch,
  closeFd,
  Extractor,
  GswError,
  META_LEN,
  type SegmentFds,
  SegmentReader,
  SegmentWriter,
  UdpSocket,
  Waitset,
} from "../ffi/mod.ts";
import { tempRunDir, withChildren } from "./helpers/ffi_child.ts";
import { Loopback } from "./helpers/ffi_link.ts";

Deno.test({
  name: "Batch.send refuses a ports array shorter than the datagrams",
  fn: async () => {
    using a = new UdpSocket({ bind: "127.0.0.1", port: 0 });
    using b = new UdpSocket({ bind: "127.0.0.1", port: 0 });
    using tx = UdpSocket.sender();
    using batch = new Batch(8);
    // The caller's ports array has one entry; the memory after it holds b's port.
    const ports = new Uint16Array([a.port, b.port]).subarray(0, 1);
    const twoDatagrams = new Uint32Array([1, 1]);
    let sent = -1;
    try {
      sent = batch.send(tx.fd, new Uint8Array(2), twoDatagrams, "127.0.0.1", 0, ports);
    } catch (e) {
      assert.ok(e instanceof RangeError || e instanceof GswError, `${e}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
    const got = batch.recv(b.fd, new Uint8Array(64), 64, new Uint8Array(META_LEN));
    assert.equal(
      got,
      0,
      `send took ${sent} datagrams for 1 port and one reached port ${b.port}, which the caller ` +
        "never passed: the native side read the ports array's neighbour",
    );
    assert.equal(sent, -1, "send must refuse fewer ports than datagrams");
  },
});

Deno.test({
  name: "Extractor.publishBatch refuses n larger than its types array",
  fn: () => {
    using extractor = new Extractor([{ packet: 0, measurement: 0, offset: 0, length: 1 }], 1, 1);
    using writer = SegmentWriter.create([{ capacity: 8, id: 0 }]);
    extractor.addLink(writer, new Uint32Array([0]));
    const n = 100;
    const buf = new Uint8Array(n * 16);
    const meta = new Uint8Array(n * META_LEN);
    for (let i = 0; i < n; i++) new DataView(meta.buffer).setUint32(i * META_LEN, 4, true);
    // One type for 100 datagrams; the 99 words after it (zeros: "packet type 0") are not
    // the caller's.
    const types = new Uint32Array(n).subarray(0, 1);
    let published = -1;
    try {
      published = extractor.publishBatch(buf, 16, meta, types, n);
    } catch (e) {
      assert.ok(e instanceof RangeError || e instanceof GswError, `${e}`);
    }
    assert.equal(
      published,
      -1,
      `publishBatch published ${published} values from ${types.length} packet type: the ` +
        "native side read past the types array",
    );
  },
});

Deno.test({
  name: "an error from an async Waitset.wait carries its own message",
  fn: async () => {
    await withChildren(async (spawn) => {
      const child = spawn("ffi_async_error.ts", {});
      const { earlier, asyncError, syncError } = await child.next("errors");
      await child.finish();
      // The setup did what it meant to: the waitset's epoll descriptor is gone.
      assert.deepEqual(syncError, {
        errno: "EBADF",
        message: "waitset wait: epoll_wait failed: EBADF (Bad file descriptor)",
      });
      assert.equal(asyncError?.errno, "EBADF");
      assert.ok(
        !asyncError.message.includes(earlier.replace(/^publish: /, "")),
        `the async wait's error reads "${asyncError.message}": the message of an earlier ` +
          "failed call on the JavaScript thread, not the pool thread's epoll_wait error",
      );
      assert.match(asyncError.message, /epoll_wait failed: EBADF/);
    });
  },
});

Deno.test({
  name: "attach refuses a doorbell that is not an eventfd",
  fn: () => {
    using dir = tempRunDir();
    using loop = new Loopback(dir.run);
    using writer = SegmentWriter.create([{ capacity: 8, id: 0 }]);
    const [data, ctrl] = writer.fds();
    let reader: SegmentReader | null = null;
    try {
      reader = SegmentReader.attach(loop.copy([data, ctrl, data]) as SegmentFds);
    } catch (e) {
      assert.ok(e instanceof GswError);
      return;
    }
    try {
      // What such a reader does: its "doorbell" (a memfd) is always readable, so every
      // wait returns at once and a reader loop spins; a waitset cannot watch it at all.
      const woke = reader.waitSync(1000);
      let waitsetError = "";
      try {
        using ws = new Waitset();
        ws.add(reader.doorbellFd, 0);
      } catch (e) {
        waitsetError = (e as GswError).errno;
      }
      assert.fail(
        `attached with a memfd as its doorbell: waitSync returned ${woke} with nothing ` +
          `published; Waitset.add gave ${waitsetError || "no error"}`,
      );
    } finally {
      reader.close();
    }
  },
});

Deno.test({
  name: "attach names a wrong memfd clearly (not EPERM from mmap)",
  fn: () => {
    using dir = tempRunDir();
    using loop = new Loopback(dir.run);
    using a = SegmentWriter.create([{ capacity: 8, id: 0 }]);
    using b = SegmentWriter.create([{ capacity: 8, id: 0 }]);
    const [aData, aCtrl, aBell] = a.fds();
    const [bData, , bBell] = b.fds();
    const cases: [string, number[]][] = [
      ["two data memfds", [aData, bData, bBell]],
      ["data and control swapped", [aCtrl, aData, aBell]],
    ];
    for (const [what, fds] of cases) {
      let error: GswError | null = null;
      try {
        SegmentReader.attach(loop.copy(fds) as SegmentFds).close();
      } catch (e) {
        error = e as GswError;
      }
      assert.ok(error instanceof GswError, `${what}: attached`);
      // EPERM ("Operation not permitted") from mmap sends a user looking at permissions;
      // what is wrong is that the control descriptor is not a control memfd.
      assert.ok(["EBADMAGIC", "EBADLAYOUT"].includes(error.errno), `${what}: ${error.message}`);
    }
  },
});

Deno.test({
  name: "empty UNIX messages are refused, not read as a hang-up",
  fn: () => {
    using dir = tempRunDir();
    using loop = new Loopback(dir.run);
    using writer = SegmentWriter.create([{ capacity: 8, id: 0 }]);
    const buf = new Uint8Array(16);
    for (const fds of [[], [writer.fds()[2]]]) {
      let sent: boolean;
      try {
        sent = loop.client.send(new Uint8Array(0), fds);
      } catch (e) {
        assert.ok(e instanceof GswError);
        continue; // refusing to send an empty message is a fix too
      }
      assert.ok(sent);
      const got = loop.server.recv(buf);
      if (got !== null && got !== "closed") got.fds.forEach(closeFd);
      assert.deepEqual(
        got === null || got === "closed" ? got : { length: got.length, fds: got.fds.length },
        { length: 0, fds: fds.length },
        `an empty message with ${fds.length} descriptors, received on a connection that is ` +
          "still open",
      );
    }
  },
});
