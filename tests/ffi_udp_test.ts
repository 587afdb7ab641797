/**
 * Batch datagram I/O from Deno: a sender process (only `--allow-ffi`, so no `--allow-net`:
 * native code is not sandboxed) bursts datagrams with `Batch.send`, this process drains a
 * `UdpSocket` with `Batch.recv` behind a waitset and accounts for every one; plus the
 * truncation flag, original length, source address and kernel receive timestamps.
 */
import assert from "node:assert/strict";
import {
  Batch,
  datagramMeta,
  META_LEN,
  native,
  realtimeNs,
  UdpSocket,
  Waitset,
} from "../ffi/mod.ts";
import { withChildren } from "./helpers/ffi_child.ts";
import { datagramNumber, fillDatagram } from "./helpers/ffi_udp_pattern.ts";

const MAX = 1024;

Deno.test("an oversize datagram is flagged truncated with its original length", async () => {
  using rx = new UdpSocket({ bind: "127.0.0.1", port: 0 });
  using tx = UdpSocket.sender();
  using batch = new Batch(8);
  using ws = new Waitset();
  ws.add(rx.fd, 0);
  const lengths = [100, 1500, 1501, 4000, 0];
  const out = new Uint8Array(lengths.reduce((a, b) => a + b));
  let at = 0;
  lengths.forEach((len, k) => {
    fillDatagram(out.subarray(at, at + len), k);
    at += len;
  });
  const t0 = realtimeNs();
  assert.equal(batch.send(tx.fd, out, new Uint32Array(lengths), "127.0.0.1", rx.port), 5);
  const txPort = native().gsw_udp_local_port(tx.fd);

  const slot = 1500;
  const buf = new Uint8Array(8 * slot);
  const meta = new Uint8Array(8 * META_LEN);
  const view = new DataView(meta.buffer);
  let n = 0;
  for (let tries = 0; n < lengths.length && tries < 50; tries++) {
    await ws.wait(100);
    // Only the slots after those already filled: recv writes from slot 0 of what it is given.
    n += batch.recv(rx.fd, buf.subarray(n * slot), slot, meta.subarray(n * META_LEN));
  }
  const t1 = realtimeNs();
  assert.equal(n, lengths.length);
  at = 0;
  for (let k = 0; k < n; k++) {
    const m = datagramMeta(view, k);
    const len = lengths[k];
    assert.deepEqual(
      [m.length, m.origLength, m.truncated, m.srcAddress, m.srcPort],
      [Math.min(len, slot), len, len > slot, "127.0.0.1", txPort],
      `datagram ${k}`,
    );
    assert.deepEqual(buf.subarray(k * slot, k * slot + m.length), out.subarray(at, at + m.length));
    if (len >= 8 && !m.truncated) {
      assert.equal(datagramNumber(buf.subarray(k * slot, k * slot + len)), k);
    }
    assert.ok(m.timestampNs >= t0 && m.timestampNs <= t1, `timestamp ${m.timestampNs}`);
    at += len;
  }
  assert.equal(batch.recv(rx.fd, buf, slot, meta), 0, "nothing more");
});

interface Tally {
  received: number;
  duplicates: number;
  corrupt: number;
  outOfOrder: number;
  timeBackwards: number;
  worstBackNs: bigint;
  worstAgeNs: bigint;
  calls: number;
}

/**
 * Drains `rx` until the sender process says it is done and nothing more arrives for 200 ms;
 * checks every datagram against the pattern and its timestamp against `realtimeNs()`.
 */
async function drain(rx: UdpSocket, count: number, senderDone: Promise<unknown>): Promise<Tally> {
  using batch = new Batch(MAX);
  using ws = new Waitset();
  ws.add(rx.fd, 0);
  const slot = 128;
  const buf = new Uint8Array(MAX * slot);
  const meta = new Uint8Array(MAX * META_LEN);
  const view = new DataView(meta.buffer);
  const seen = new Uint8Array(count);
  const t: Tally = {
    received: 0,
    duplicates: 0,
    corrupt: 0,
    outOfOrder: 0,
    timeBackwards: 0,
    worstBackNs: 0n,
    worstAgeNs: 0n,
    calls: 0,
  };
  let done = false;
  senderDone.then(() => done = true, () => done = true);
  let last = -1;
  let lastTs = 0n;
  let quietSince = Date.now();
  const start = realtimeNs();
  while (!done || Date.now() - quietSince < 200) {
    await ws.wait(50);
    let n;
    while ((n = batch.recv(rx.fd, buf, slot, meta)) > 0) {
      t.calls++;
      const now = realtimeNs();
      quietSince = Date.now();
      for (let i = 0; i < n; i++) {
        const m = datagramMeta(view, i);
        const k = m.truncated ? -1 : datagramNumber(buf.subarray(i * slot, i * slot + m.length));
        if (k < 0 || k >= count) {
          t.corrupt++;
          continue;
        }
        if (seen[k]) t.duplicates++;
        seen[k] = 1;
        t.received++;
        if (k < last) t.outOfOrder++;
        last = k;
        assert.ok(m.timestampNs >= start && m.timestampNs <= now, `timestamp of ${k}`);
        if (now - m.timestampNs > t.worstAgeNs) t.worstAgeNs = now - m.timestampNs;
        if (m.timestampNs < lastTs) {
          t.timeBackwards++;
          if (lastTs - m.timestampNs > t.worstBackNs) t.worstBackNs = lastTs - m.timestampNs;
        }
        lastTs = m.timestampNs;
      }
    }
  }
  return t;
}

function describe(t: Tally, sent: number, elapsedMs: number): string {
  const ms = (ns: bigint) => (Number(ns) / 1e6).toFixed(2);
  return `${sent} sent in ${elapsedMs.toFixed(0)} ms (${Math.round(sent / elapsedMs)}k/s), ` +
    `${t.received} received in ${t.calls} recv calls (${sent - t.received} lost), ` +
    `${t.outOfOrder} out of order, timestamps back ${t.timeBackwards}× (worst ${
      ms(t.worstBackNs)
    } ms), oldest ${ms(t.worstAgeNs)} ms old when drained`;
}

Deno.test("100,000 datagrams from a sender process at a paced rate: every one received", async () => {
  const count = 100_000;
  using rx = new UdpSocket({ bind: "127.0.0.1", port: 0 });
  await withChildren(async (spawn) => {
    const sender = spawn("ffi_udp_sender.ts", { port: rx.port, count, size: 64, rate: 50_000 });
    const done = sender.next("done", 30_000);
    const t = await drain(rx, count, done);
    const d = await done;
    await sender.finish();
    console.log(describe(t, d.sent, d.elapsedMs));
    assert.equal(d.sent, count);
    assert.equal(t.corrupt, 0);
    assert.equal(t.duplicates, 0);
    assert.equal(t.received, count, "no loss at a paced rate");
    // Receive timestamps follow arrival; a small step back can only come from two CPUs
    // queueing for the same socket.
    assert.ok(t.worstBackNs < 50_000_000n, `a timestamp went back ${t.worstBackNs} ns`);
    assert.ok(t.worstAgeNs < 5_000_000_000n, `a datagram waited ${t.worstAgeNs} ns`);
  });
});

Deno.test("100,000 datagrams flat out: what arrives is intact and counted", async () => {
  const count = 100_000;
  using rx = new UdpSocket({ bind: "127.0.0.1", port: 0 });
  await withChildren(async (spawn) => {
    const sender = spawn("ffi_udp_sender.ts", { port: rx.port, count, size: 64, rate: 0 });
    const done = sender.next("done", 30_000);
    const t = await drain(rx, count, done);
    const d = await done;
    await sender.finish();
    console.log(describe(t, d.sent, d.elapsedMs) + `; ${d.shortSends} short sends`);
    assert.equal(d.sent, count);
    assert.equal(t.corrupt, 0);
    assert.equal(t.duplicates, 0);
    assert.ok(t.received > 0 && t.received <= count);
    assert.ok(t.worstBackNs < 50_000_000n, `a timestamp went back ${t.worstBackNs} ns`);
  });
});

Deno.test("multicast: the group is joined on the interface of the bind address, and only its datagrams taken", async () => {
  // Group traffic on the loopback interface: a socket bound to 127.0.0.1 must join there
  // (joining on "any" interface would pick the default route's and hear nothing).
  const group = "239.77.7.7";
  using rx = new UdpSocket({ bind: "127.0.0.1", port: 0, multicast: group });
  using batch = new Batch(8);
  const buf = new Uint8Array(8 * 64);
  const meta = new Uint8Array(8 * META_LEN);
  const { createSocket } = await import("node:dgram");
  const tx = createSocket("udp4");
  await new Promise<void>((r) => tx.bind(0, "127.0.0.1", r));
  tx.setMulticastInterface("127.0.0.1");
  tx.setMulticastLoopback(true);
  const send = (text: string, to: string) =>
    new Promise<void>((r, j) => tx.send(text, rx.port, to, (e) => e ? j(e) : r()));
  try {
    for (let i = 0; i < 5; i++) await send(`group ${i}`, group);
    // Unicast to the same port is for other sockets: the group-bound one does not take it.
    await send("unicast", "127.0.0.1");
    await new Promise((r) => setTimeout(r, 100));
    const n = batch.recv(rx.fd, buf, 64, meta);
    const texts = Array.from({ length: n }, (_, i) => {
      const m = datagramMeta(new DataView(meta.buffer), i);
      return new TextDecoder().decode(buf.subarray(i * 64, i * 64 + m.length));
    });
    assert.deepEqual(texts, ["group 0", "group 1", "group 2", "group 3", "group 4"]);
  } finally {
    tx.close();
  }
});
