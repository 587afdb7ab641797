/**
 * Shared by the logger, replay and export tests, on helpers/pipeline.ts: the logger started with
 * its task's permissions, commands run to completion, and a stand-in decom that frames datagrams
 * through the native log queue exactly as `Batch.recv` + `LogQueue.forward` do in decom.
 */
import assert from "node:assert/strict";
import { LogQueue, META_LEN } from "../ffi/mod.ts";
import type { LogRecord } from "../logger/format.ts";
import { eventually, type Proc, spawnGsw } from "./helpers/pipeline.ts";

/** Waits until the logger `p` says it listens (stderr in the error if it never does). */
export async function listening(p: Proc): Promise<void> {
  try {
    await p.stdout.waitFor(/listening on /);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nstderr:\n${p.stderr.text}`);
  }
}

/** Starts `main.ts logger` with the logger task's permissions (writes allowed in `logDir`). */
export async function startLogger(
  runDir: string,
  logDir: string,
  extra: string[] = [],
): Promise<Proc> {
  const p = spawnGsw("logger", ["--run-dir", runDir, "--log-dir", logDir, ...extra], "logger", {
    writeDir: logDir,
  });
  await listening(p);
  return p;
}

/** Runs a command to completion with the task's permissions (writes, if any, in `writeDir`). */
export async function runTask(
  task: "logger" | "replay" | "export",
  args: string[],
  writeDir?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = spawnGsw(task, args, task, { writeDir });
  const { code } = await p.status;
  return { code, stdout: p.stdout.text, stderr: p.stderr.text };
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** A datagram to send through a `FakeDecom`. */
export interface Datagram {
  payload: Uint8Array;
  dstPort: number;
  timeNs: bigint;
  srcAddress?: string;
  srcPort?: number;
  /** Real length when the payload is a truncated prefix. */
  origLength?: number;
}

/**
 * Stands in for decom's logger side: lays datagrams out as `Batch.recv` would (one slot per
 * datagram, a 32-byte metadata record each) and forwards them through the native LogQueue.
 */
export class FakeDecom {
  readonly queue: LogQueue;

  constructor(readonly source: number, readonly socketPath: string, maxPending = 64 << 20) {
    this.queue = new LogQueue(source, maxPending);
  }

  /** Connects if not connected; false when the logger is not there. */
  tryConnect(): boolean {
    if (this.queue.stats().connected) return true;
    try {
      this.queue.connect(this.socketPath);
      return true;
    } catch {
      return false;
    }
  }

  /** Forwards one receive batch (all to one destination port, as decom does per socket). */
  forward(batch: readonly Datagram[]): number {
    const slot = Math.max(8, ...batch.map((d) => d.payload.length));
    const buf = new Uint8Array(slot * batch.length);
    const meta = new Uint8Array(META_LEN * batch.length);
    const mv = new DataView(meta.buffer);
    batch.forEach((d, i) => {
      buf.set(d.payload, i * slot);
      const at = i * META_LEN;
      const orig = d.origLength ?? d.payload.length;
      mv.setUint32(at, d.payload.length, true);
      mv.setUint32(at + 4, orig, true);
      mv.setBigUint64(at + 8, d.timeNs, true);
      meta.set((d.srcAddress ?? "127.0.0.1").split(".").map(Number), at + 16);
      mv.setUint16(at + 20, d.srcPort ?? 40000, true);
      mv.setUint16(at + 22, orig > d.payload.length ? 1 : 0, true);
    });
    const ports = new Set(batch.map((d) => d.dstPort));
    assert.equal(ports.size, 1, "one destination port per batch, as in decom");
    return this.queue.forward(buf, slot, meta, batch.length, batch[0].dstPort);
  }

  /** Flushes until nothing is buffered (the logger must be connected). */
  async drain(ms = 10000): Promise<void> {
    await eventually("the logger to take the queued records", () => {
      return this.queue.flush() === 0 || undefined;
    }, ms);
  }

  close(): void {
    this.queue.close();
  }
}

/** A payload that says which datagram it is: `seq` in its first 4 bytes, then a pattern. */
export function numbered(seq: number, length: number): Uint8Array {
  const p = new Uint8Array(length);
  for (let i = 0; i < length; i++) p[i] = (seq * 7 + i * 13) & 0xff;
  if (length >= 4) new DataView(p.buffer).setUint32(0, seq, true);
  return p;
}

/** The sequence number `numbered` put in a payload (-1 when too short to hold one). */
export function seqOf(payload: Uint8Array): number {
  if (payload.length < 4) return -1;
  return new DataView(payload.buffer, payload.byteOffset).getUint32(0, true);
}

/** The record a logger should write for datagram `d` received by decom source `source`. */
export function expectedRecord(d: Datagram, source: number): LogRecord {
  const orig = d.origLength ?? d.payload.length;
  return {
    timeNs: d.timeNs,
    source,
    dstPort: d.dstPort,
    srcAddress: d.srcAddress ?? "127.0.0.1",
    srcPort: d.srcPort ?? 40000,
    flags: orig > d.payload.length ? 1 : 0,
    origLength: orig,
    payload: d.payload,
  };
}

/** The run directories a logger made under `logDir`, oldest first. */
export async function runDirs(logDir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(logDir)) if (e.isDirectory) out.push(`${logDir}/${e.name}`);
  return out.sort();
}

/** The log files of a run directory, in order. */
export async function logFilesIn(run: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(run)) {
    if (/^gsw-\d+\.gswlog$/.test(e.name)) out.push(`${run}/${e.name}`);
  }
  return out.sort();
}

/** A fresh temp directory, removed by the returned disposer. */
export async function tempDir(prefix: string): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix: `gsw-${prefix}-` });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true });
    },
  };
}

/** A record as written: a read-back entry without where it was read from. */
export function strip(r: LogRecord): LogRecord {
  return {
    timeNs: r.timeNs,
    source: r.source,
    dstPort: r.dstPort,
    srcAddress: r.srcAddress,
    srcPort: r.srcPort,
    flags: r.flags,
    origLength: r.origLength,
    payload: r.payload,
  };
}
