/**
 * A real pipeline for tests: a private run directory, the example config rewritten onto free
 * UDP ports, gsw processes started exactly as the tasks start them, a native UDP sender, and
 * cleanup that kills every process and removes every file, whatever the test did.
 */
import { type Config, parseConfig } from "../../config/mod.ts";
import { requestSync } from "../../control/client.ts";
import { brokerSocket, decomSocket, loggerSocket } from "../../control/rundir.ts";
import {
  Batch,
  type OwnedFd,
  prepareRunDir,
  type SegmentFds,
  SegmentReader,
  UdpSocket,
  UnixConnection,
} from "../../ffi/mod.ts";
import type { ChannelsReply } from "../../control/protocol.ts";

export const REPO = new URL("../..", import.meta.url).pathname.replace(/\/$/, "");
export const LIBRARY = `${REPO}/target/release/libgsw.so`;
export const MAIN = `${REPO}/main.ts`;
const EXAMPLE = `${REPO}/examples/rocket.yaml`;
const EXAMPLE_PORTS = [45001, 45002, 45003, 45004];

/** The permissions the deno.json tasks give each command. */
export function taskArgs(command: string): string[] {
  const base = [
    "run",
    `--allow-ffi=${LIBRARY}`,
    "--allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR,GSW_LIB,HOME",
    "--ignore-env=LOG_TOKENS,LOG_STREAM",
    "--allow-read",
  ];
  if (command === "logger") base.push("--allow-write");
  return [...base, MAIN, command];
}

/** Four consecutive UDP ports that are free now (bound and released to check). */
export function freePorts(n = 4): number[] {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 40000);
    const sockets: UdpSocket[] = [];
    try {
      for (let i = 0; i < n; i++) {
        sockets.push(new UdpSocket({ bind: "127.0.0.1", port: base + i }));
      }
      return sockets.map((s) => s.port);
    } catch {
      // Taken: try another range.
    } finally {
      sockets.forEach((s) => s.close());
    }
  }
  throw new Error("no free UDP port range found");
}

/** A child process with its output collected, so tests can wait for a line. */
export class Proc {
  readonly lines: string[] = [];
  readonly status: Promise<Deno.CommandStatus>;
  #waiters: (() => void)[] = [];

  constructor(readonly name: string, readonly child: Deno.ChildProcess) {
    this.status = child.status;
    this.#collect(child.stdout);
    this.#collect(child.stderr);
  }

  get pid(): number {
    return this.child.pid;
  }

  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let pending = "";
    try {
      for await (const chunk of stream) {
        pending += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
          this.lines.push(pending.slice(0, nl));
          pending = pending.slice(nl + 1);
          this.#waiters.splice(0).forEach((w) => w());
        }
      }
    } catch {
      // Stream closed when the process was killed.
    }
    if (pending) this.lines.push(pending);
    this.#waiters.splice(0).forEach((w) => w());
  }

  /** Resolves with the first line matching `re` (already printed or to come). */
  async waitFor(re: RegExp, timeoutMs = 15000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${this.name}: no line matching ${re} within ${timeoutMs} ms; output:\n${
            this.lines.join("\n")
          }`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 100));
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
  }
}

export interface PipelineOptions {
  /** Config text; `{PORT0}`…`{PORT3}` are replaced by free ports. Default: the example. */
  configText?: string;
}

export class Pipeline implements AsyncDisposable {
  readonly procs: Proc[] = [];
  #sender: OwnedFd | null = null;
  #batch: Batch | null = null;

  private constructor(
    readonly dir: string,
    readonly runDir: string,
    readonly configPath: string,
    readonly config: Config,
    readonly ports: number[],
  ) {}

  /** A fresh run directory and the example config on free ports. */
  static create(opts: PipelineOptions = {}): Pipeline {
    const dir = Deno.makeTempDirSync({ prefix: "gsw-test-" });
    const runDir = `${dir}/run`;
    prepareRunDir(runDir);
    const ports = freePorts();
    let text = opts.configText ?? Deno.readTextFileSync(EXAMPLE);
    if (opts.configText === undefined) {
      EXAMPLE_PORTS.forEach((p, i) => text = text.replaceAll(String(p), `{PORT${i}}`));
    }
    ports.forEach((p, i) => text = text.replaceAll(`{PORT${i}}`, String(p)));
    const configPath = `${dir}/vehicle.yaml`;
    Deno.writeTextFileSync(configPath, text);
    return new Pipeline(dir, runDir, configPath, parseConfig(text, configPath), ports);
  }

  /** Starts a gsw command (decom, broker, logger, subscribe, …) as the tasks would. */
  spawn(command: string, args: string[] = [], name = command): Proc {
    const child = new Deno.Command(Deno.execPath(), {
      args: [...taskArgs(command), ...args],
      env: { GSW_RUN_DIR: this.runDir, NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const proc = new Proc(name, child);
    this.procs.push(proc);
    return proc;
  }

  /** Starts decom and waits until it serves its socket. */
  async decom(args: string[] = []): Promise<Proc> {
    const p = this.spawn("decom", ["--config", this.configPath, ...args], "decom");
    await this.waitForSocket(decomSocket(this.runDir, this.config.sources[0].name), p);
    return p;
  }

  /** Starts the broker and waits until it serves its socket. */
  async broker(args: string[] = []): Promise<Proc> {
    const p = this.spawn("broker", ["--config", this.configPath, ...args], "broker");
    await this.waitForSocket(brokerSocket(this.runDir), p);
    return p;
  }

  /** Starts the logger (writing under this pipeline's directory) and waits for its socket. */
  async logger(args: string[] = []): Promise<Proc> {
    const p = this.spawn(
      "logger",
      ["--config", this.configPath, "--log-dir", `${this.dir}/logs`, ...args],
      "logger",
    );
    await this.waitForSocket(loggerSocket(this.runDir), p);
    return p;
  }

  async waitForSocket(path: string, proc?: Proc, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        Deno.statSync(path);
        return;
      } catch {
        // Not there yet.
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(
      `no socket at ${path} after ${timeoutMs} ms${
        proc ? `; ${proc.name} said:\n${proc.lines.join("\n")}` : ""
      }`,
    );
  }

  /** Sends datagrams to one port on 127.0.0.1, all of them, retrying while the buffer is full. */
  async send(port: number, datagrams: Uint8Array[]): Promise<void> {
    this.#sender ??= UdpSocket.sender();
    this.#batch ??= new Batch(64);
    for (let i = 0; i < datagrams.length; i += 64) {
      const chunk = datagrams.slice(i, i + 64);
      const lens = new Uint32Array(chunk.map((d) => d.byteLength));
      const buf = new Uint8Array(lens.reduce((a, b) => a + b, 0));
      let at = 0;
      for (const d of chunk) {
        buf.set(d, at);
        at += d.byteLength;
      }
      let sent = 0;
      while (sent < chunk.length) {
        const off = lens.subarray(0, sent).reduce((a, b) => a + b, 0);
        const n = this.#batch.send(
          this.#sender.fd,
          buf.subarray(off),
          lens.subarray(sent),
          "127.0.0.1",
          port,
        );
        sent += n;
        if (n === 0) await new Promise((r) => setTimeout(r, 1));
      }
    }
  }

  /** Subscribes over the raw protocol (no library): the reply and an attached reader. */
  subscribeRaw(
    measurements: string[],
    maxRateHz?: number,
  ): { reply: ChannelsReply; reader: SegmentReader; conn: UnixConnection } {
    const conn = UnixConnection.connect(brokerSocket(this.runDir));
    const { reply, fds } = requestSync(conn, {
      v: 1,
      op: "subscribe",
      measurements,
      maxRateHz,
      client: "test",
    }, 5000);
    if (!reply.ok || !("channels" in reply)) {
      conn.close();
      throw new Error(`subscribe refused: ${JSON.stringify(reply)}`);
    }
    return { reply, reader: SegmentReader.attach(fds as SegmentFds), conn };
  }

  /** Kills every process it started (SIGKILL) and removes its files. */
  async [Symbol.asyncDispose](): Promise<void> {
    for (const p of this.procs) p.kill("SIGKILL");
    await Promise.allSettled(this.procs.map((p) => p.status));
    this.#sender?.close();
    this.#batch?.close();
    Deno.removeSync(this.dir, { recursive: true });
  }
}

/** Polls `check` until it returns a value other than undefined, or fails after `timeoutMs`. */
export async function eventually<T>(
  what: string,
  check: () => T | undefined,
  timeoutMs = 10000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
