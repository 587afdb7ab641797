/**
 * What the FFI test helpers share: the JSON line protocol to the test process, and a
 * writer→reader link set up the way gsw does it (a SEQPACKET socket in a private run
 * directory, the segment's descriptors passed with SCM_RIGHTS). Uses nothing but the
 * native library, so it works in a child that has only `--allow-ffi`.
 */
import {
  closeFd,
  prepareRunDir,
  type SegmentFds,
  SegmentReader,
  type SegmentWriter,
  UnixConnection,
  UnixListener,
  Waitset,
  WRITABLE,
} from "../../ffi/mod.ts";

/** Prints one message for the test process: a JSON object on one stdout line. */
export function emit(event: string, data: Record<string, unknown> = {}): void {
  console.log(JSON.stringify({ event, ...data }));
}

/** The child's options: one JSON argument. */
export function options<T>(): T {
  return JSON.parse(Deno.args[0] ?? "{}") as T;
}

/** Blocks this thread until `fd` is ready for `interest`, or fails after `ms`. */
function waitFor(fd: number, ms: number, what: string, interest?: number): void {
  using ws = new Waitset();
  ws.add(fd, 0, interest);
  if (ws.waitSync(ms).length === 0) throw new Error(`timed out after ${ms} ms ${what}`);
}

/** Prepares `runDir` (0700) and listens on `<runDir>/<name>`. */
export function listen(runDir: string, name: string): UnixListener {
  prepareRunDir(runDir);
  return new UnixListener(`${runDir}/${name}`);
}

export function acceptOne(listener: UnixListener, ms = 10_000): UnixConnection {
  const deadline = Date.now() + ms;
  for (;;) {
    const conn = listener.accept();
    if (conn) return conn;
    waitFor(listener.fd, Math.max(1, deadline - Date.now()), `for a connection`);
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Sends one JSON message with descriptors, waiting (bounded) while the peer's queue is full. */
export function sendMessage(
  conn: UnixConnection,
  message: unknown,
  fds: readonly number[] = [],
  ms = 10_000,
): void {
  const bytes = encoder.encode(JSON.stringify(message));
  const deadline = Date.now() + ms;
  while (!conn.send(bytes, fds)) {
    waitFor(conn.fd, Math.max(1, deadline - Date.now()), "for room to send", WRITABLE);
  }
}

const inbox = new Uint8Array(64 * 1024);

/** Receives one JSON message and the descriptors that came with it (now owned by the caller). */
export function receiveMessage(
  conn: UnixConnection,
  ms = 10_000,
): { message: Record<string, unknown>; fds: number[] } {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = conn.recv(inbox);
    if (got === "closed") throw new Error("the peer closed the connection");
    if (got !== null) {
      return { message: JSON.parse(decoder.decode(inbox.subarray(0, got.length))), fds: got.fds };
    }
    waitFor(conn.fd, Math.max(1, deadline - Date.now()), "for a message");
  }
}

/** Hands a writer's segment to the peer, then closes this side's copies of the memfds. */
export function sendSegment(conn: UnixConnection, writer: SegmentWriter, tag = "segment"): void {
  sendMessage(conn, { tag }, writer.fds());
  writer.releaseFds();
}

/** Receives a segment's three descriptors and attaches a reader to them. */
export function receiveSegment(conn: UnixConnection, ms = 10_000): SegmentReader {
  const { message, fds } = receiveMessage(conn, ms);
  if (fds.length !== 3) {
    fds.forEach(closeFd);
    throw new Error(`expected a segment (3 descriptors), got ${JSON.stringify(message)}`);
  }
  return SegmentReader.attach(fds as SegmentFds);
}

/**
 * A connected pair of UNIX connections inside one process, for passing descriptors to
 * ourselves: a descriptor sent and received comes back as a new, independently owned copy
 * (what a reader in another process would get).
 */
export class Loopback implements Disposable {
  readonly client: UnixConnection;
  readonly server: UnixConnection;
  readonly #listener: UnixListener;

  constructor(runDir: string) {
    this.#listener = listen(runDir, `loop-${Math.random().toString(36).slice(2, 8)}.sock`);
    this.client = UnixConnection.connect(this.#listener.path);
    this.server = acceptOne(this.#listener);
  }

  /** New copies of `fds`, owned by the caller. */
  copy(fds: readonly number[]): number[] {
    sendMessage(this.client, {}, fds);
    return receiveMessage(this.server).fds;
  }

  /** A reader attached to copies of `writer`'s descriptors (the writer keeps its own). */
  reader(writer: SegmentWriter): SegmentReader {
    return SegmentReader.attach(this.copy(writer.fds()) as SegmentFds);
  }

  [Symbol.dispose](): void {
    this.client.close();
    this.server.close();
    this.#listener.close();
  }
}

/**
 * The channels batch `b` (from 1) of the ping/pong helpers updates. "all": every channel.
 * "varied": most channels, some batches only one (often the last, in the last pending
 * word), every 50th batch all of them; never empty.
 */
export function batchChannels(b: number, channels: number, pattern: "all" | "varied"): number[] {
  const all = Array.from({ length: channels }, (_, i) => i);
  if (pattern === "all" || b % 50 === 1) return all;
  if (b % 10 === 5) return [channels - 1];
  if (b % 10 === 0) return [(b * 37) % channels];
  return all.filter((ch) => (ch * 7 + b) % 5 !== 0);
}

/** Lines from stdin, as they arrive. */
export async function* stdinLines(): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let rest = "";
  for await (const chunk of Deno.stdin.readable) {
    rest += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = rest.indexOf("\n")) >= 0) {
      yield rest.slice(0, nl).trim();
      rest = rest.slice(nl + 1);
    }
  }
}
