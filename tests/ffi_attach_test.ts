/**
 * What a peer can and cannot do with a segment's descriptors: `SegmentReader.attach` refuses
 * anything that is not a whole gsw segment (closing what it was given), and a process holding
 * the reader's descriptors can neither write nor resize the writer's data.
 *
 * That such a peer cannot map the data memfd writable (mmap PROT_WRITE, which Deno cannot
 * call) is proven natively by `reader_cannot_write_or_resize_data` in ffi/src/segment.rs;
 * here the same seals are shown from another process through /proc/self/fd.
 */
import assert from "node:assert/strict";
import {
  GswError,
  type SegmentFds,
  SegmentReader,
  SegmentWriter,
  UnixConnection,
} from "../ffi/mod.ts";
import { fdCount, mappings, tempRunDir, withChildren } from "./helpers/ffi_child.ts";
import { Loopback, receiveMessage } from "./helpers/ffi_link.ts";

function attachError(fds: number[]): GswError {
  try {
    SegmentReader.attach(fds as SegmentFds).close();
  } catch (e) {
    assert.ok(e instanceof GswError, `not a GswError: ${e}`);
    return e;
  }
  assert.fail(`attach accepted ${fds}`);
}

Deno.test("attach refuses descriptors that are not one gsw segment and closes all three", () => {
  using dir = tempRunDir();
  using loop = new Loopback(dir.run);
  using a = SegmentWriter.create([{ capacity: 8, id: 1 }, { capacity: 100, id: 2 }]);
  using twin = SegmentWriter.create([{ capacity: 8, id: 1 }, { capacity: 100, id: 2 }]);
  using b = SegmentWriter.create([{ capacity: 8, id: 1 }]);
  const [aData, aCtrl, aBell] = a.fds();
  const [bData, bCtrl, bBell] = b.fds();
  const [, twinCtrl] = twin.fds();

  const cases: { name: string; fds: number[]; errno: string | null; message: RegExp }[] = [
    {
      name: "an eventfd where the data memfd belongs",
      fds: [aBell, aCtrl, aBell],
      errno: "EBADMAGIC",
      message: /not a gsw segment: 0\/\d+ bytes is too small to hold a header/,
    },
    {
      name: "a socket where the control memfd belongs",
      fds: [aData, loop.client.fd, aBell],
      errno: "EBADMAGIC",
      message: /not a gsw segment/,
    },
    {
      name: "data and control memfds of two segments of the same shape",
      fds: [aData, twinCtrl, aBell],
      errno: "EBADLAYOUT",
      message: /data and control memfds belong to different links/,
    },
    {
      name: "data and control memfds of two segments of different shapes",
      fds: [aData, bCtrl, bBell],
      errno: "EBADLAYOUT",
      message: /channel count 2 \(control says 1\)/,
    },
    {
      name: "two data memfds",
      fds: [aData, bData, bBell],
      errno: "EBADMAGIC",
      message: /the control descriptor is not a gsw control segment/,
    },
    {
      name: "data and control swapped",
      fds: [aCtrl, aData, aBell],
      errno: "EBADMAGIC",
      message: /the data descriptor is not a gsw data segment/,
    },
  ];
  for (const c of cases) {
    const fdsBefore = fdCount();
    const mapsBefore = mappings().gsw;
    const e = attachError(loop.copy(c.fds));
    if (c.errno) assert.equal(e.errno, c.errno, `${c.name}: ${e.message}`);
    assert.match(e.message, /^attaching to a shared-memory segment: /, c.name);
    assert.match(e.message, c.message, c.name);
    assert.ok(e.code > 0, c.name);
    assert.equal(fdCount(), fdsBefore, `${c.name}: a descriptor leaked`);
    assert.equal(mappings().gsw, mapsBefore, `${c.name}: a mapping leaked`);
  }

  // A descriptor number that cannot be one: the two real ones given with it are closed too.
  const fdsBefore = fdCount();
  const [d, ctl] = loop.copy([aData, aCtrl]);
  const bad = attachError([d, ctl, -1]);
  assert.equal(bad.errno, "EBADF");
  assert.match(bad.message, /invalid file descriptor/);
  assert.equal(fdCount(), fdsBefore, "the valid descriptors given with -1 must be closed");

  // And the real thing attaches, keeping one descriptor (its doorbell).
  const reader = loop.reader(a);
  assert.equal(fdCount(), fdsBefore + 1);
  reader.close();
  assert.equal(fdCount(), fdsBefore);
});

Deno.test("a peer process holding the reader's descriptors can neither write nor resize the data", async () => {
  using dir = tempRunDir();
  await withChildren(async (spawn) => {
    const writer = spawn("ffi_cmd_writer.ts", { runDir: dir.run, capacities: [64] });
    const { path } = await writer.next("listening");
    using conn = UnixConnection.connect(path);
    const { fds } = receiveMessage(conn);
    await writer.next("served");
    const [data, ctrl] = fds;
    const size = (fd: number) => Deno.statSync(`/proc/self/fd/${fd}`).size;
    const dataSize = size(data);
    const ctrlSize = size(ctrl);

    // Reopening through /proc gives a new read-write open file: the seals still hold.
    const file = Deno.openSync(`/proc/self/fd/${data}`, { read: true, write: true });
    try {
      const attempts: [string, () => unknown][] = [
        ["write", () => file.writeSync(new Uint8Array([0xff]))],
        ["shrink", () => file.truncateSync(0)],
        ["grow", () => file.truncateSync(dataSize + 4096)],
      ];
      for (const [what, attempt] of attempts) {
        assert.throws(attempt, (e: Error & { code?: string }) => {
          assert.equal(e.code, "EPERM", `${what}: ${e}`);
          return true;
        }, `${what} of the data memfd must fail`);
      }
    } finally {
      file.close();
    }
    // The control memfd is shared read-write by design (the control words), but it cannot
    // be resized either, so neither side can make the other fault.
    const ctrlFile = Deno.openSync(`/proc/self/fd/${ctrl}`, { read: true, write: true });
    try {
      for (const len of [0, ctrlSize + 4096]) {
        assert.throws(() => ctrlFile.truncateSync(len), /Operation not permitted/);
      }
    } finally {
      ctrlFile.close();
    }
    assert.equal(size(data), dataSize);
    assert.equal(size(ctrl), ctrlSize);

    // The writer's data is intact: a reader on the same descriptors sees exactly its value.
    using reader = SegmentReader.attach(fds as SegmentFds);
    await writer.send("publish 0 42");
    await writer.next("published");
    const got = reader.take(0);
    assert.ok(got);
    assert.equal(got.seq, 42);
    assert.deepEqual([...new Float64Array(got.bytes.slice().buffer)], new Array(8).fill(42));
    await writer.send("quit");
    await writer.finish();
  });
});
