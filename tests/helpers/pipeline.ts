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
import denoConfig from "../../deno.json" with { type: "json" };

export const REPO = decodeURIComponent(new URL("../..", import.meta.url).pathname).replace(
  /\/$/,
  "",
);
export const LIBRARY = `${REPO}/target/release/libgsw.so`;
const EXAMPLE = `${REPO}/examples/rocket.yaml`;
const EXAMPLE_PORTS = [45001, 45002, 45003, 45004];

/** The deno.json tasks that run a gsw command (`deno run … main.ts <command>`). */
export type GswTask =
  | "start"
  | "decom"
  | "broker"
  | "subscribe"
  | "logger"
  | "replay"
  | "export"
  | "sim"
  | "check-config"
  | "dashboard"
  | "bridge"
  | "influx";

/**
 * The `deno run` arguments of a deno.json task, read from deno.json and run from REPO as the
 * task is: tests run each command with exactly its task's permissions (and never a prompt). A
 * write permission, where the task has one, is moved to `writeDir`.
 */
export function taskArgs(task: GswTask, writeDir?: string): string[] {
  const [deno, run, ...words] = denoConfig.tasks[task].split(/\s+/);
  if (deno !== "deno" || run !== "run") throw new Error(`task ${task} is not a deno run`);
  return [
    run,
    "--no-prompt",
    ...words.map((w) =>
      writeDir !== undefined && w.startsWith("--allow-write=") ? `--allow-write=${writeDir}` : w
    ),
  ];
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** `n` consecutive UDP ports that are free now (bound and released to check). */
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

/** The lines of one or more streams (each split on its own), kept in the order they arrive. */
export class Lines {
  readonly lines: string[] = [];
  /** Resolves when every stream has ended. */
  readonly done: Promise<void>;
  #text = "";
  #read = 0;
  #ended = false;
  #waiters: (() => void)[] = [];

  /** `echo` prefixes each line copied to stderr when GSW_TEST_ECHO is set. */
  constructor(
    readonly name: string,
    streams: ReadableStream<Uint8Array>[],
    readonly echo?: string,
  ) {
    this.done = Promise.all(streams.map((s) => this.#collect(s))).then(() => {
      this.#ended = true;
      this.#wake();
    });
  }

  async #collect(stream: ReadableStream<Uint8Array>): Promise<void> {
    let rest = "";
    try {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        let nl;
        while ((nl = rest.indexOf("\n")) >= 0) {
          this.#push(rest.slice(0, nl), "\n");
          rest = rest.slice(nl + 1);
        }
        this.#wake();
      }
    } catch {
      // The stream broke off when the process was killed.
    }
    if (rest) this.#push(rest, "");
    this.#wake();
  }

  /** The output so far as written, newlines included (several streams: line by line). */
  get text(): string {
    return this.#text;
  }

  #push(line: string, end: string): void {
    this.lines.push(line);
    this.#text += line + end;
    if (this.echo && Deno.env.get("GSW_TEST_ECHO")) console.error(`${this.echo}${line}`);
  }

  #wake(): void {
    this.#waiters.splice(0).forEach((w) => w());
  }

  /** Resolves on a new line, at the end of the output, or after `ms`. */
  #change(ms: number): Promise<void> {
    if (this.#ended) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.#waiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** The next line not yet returned, or undefined if none comes within `ms`. */
  async next(ms: number): Promise<string | undefined> {
    const deadline = Date.now() + ms;
    while (this.#read >= this.lines.length) {
      const left = deadline - Date.now();
      if (left <= 0 || this.#ended) return undefined;
      await this.#change(left);
    }
    return this.lines[this.#read++];
  }

  /** Resolves with the first line matching `re` (already printed or to come). */
  async waitFor(re: RegExp, timeoutMs = 15000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit !== undefined) return hit;
      const left = deadline - Date.now();
      if (left <= 0 || this.#ended) {
        const when = this.#ended ? "before its output ended" : `within ${timeoutMs} ms`;
        throw new Error(
          `${this.name}: no line matching ${re} ${when}; output:\n${this.lines.join("\n")}`,
        );
      }
      await this.#change(left);
    }
  }
}

/** How long after a process exits its output may still be read. */
const OUTPUT_GRACE_MS = 5000;

/** A child process with its output collected, so tests can wait for a line. */
export class Proc {
  readonly stdout: Lines;
  readonly stderr: Lines;
  /** Both streams, in the order their lines arrived. */
  readonly output: Lines;
  /** Resolves once the process has exited and all its output is read. */
  readonly status: Promise<Deno.CommandStatus>;
  #exited: Deno.CommandStatus | null = null;

  constructor(readonly name: string, readonly child: Deno.ChildProcess) {
    const [out, outToo] = child.stdout.tee();
    const [err, errToo] = child.stderr.tee();
    this.stdout = new Lines(`${name} stdout`, [out], `${name}> `);
    this.stderr = new Lines(`${name} stderr`, [err], `${name}! `);
    this.output = new Lines(name, [outToo, errToo]);
    this.status = child.status.then(async (s) => {
      this.#exited = s;
      // A process it started (a relaunched task) may outlive it and keep the pipes open: wait
      // for the rest of the output only so long, so a test fails on its assertions, not hangs.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const done = Promise.all([this.stdout.done, this.stderr.done, this.output.done]);
      const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), OUTPUT_GRACE_MS));
      if (await Promise.race([done, late]) === "late") {
        console.error(`${name}: exited, but its output is still open ${OUTPUT_GRACE_MS} ms later`);
      }
      clearTimeout(timer);
      return s;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Every line of output so far, stdout and stderr interleaved as they arrived. */
  get lines(): string[] {
    return this.output.lines;
  }

  /** The exit status, once the process has exited. */
  get exited(): Deno.CommandStatus | null {
    return this.#exited;
  }

  /** Resolves with the first line of either stream matching `re`. */
  waitFor(re: RegExp, timeoutMs = 15000): Promise<string> {
    return this.output.waitFor(re, timeoutMs);
  }

  /** Sends `signal` and returns at once (SIGSTOP and SIGCONT included). */
  kill(signal: Deno.Signal = "SIGKILL"): void {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  /** Sends `signal` unless it already exited, then waits for it (SIGKILL after `graceMs`). */
  async stop(signal: Deno.Signal = "SIGTERM", graceMs = 3000): Promise<Deno.CommandStatus> {
    if (this.#exited) return await this.status;
    this.kill(signal);
    const timer = setTimeout(() => this.kill("SIGKILL"), graceMs);
    try {
      return await this.status;
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface SpawnOptions {
  /** The program; default: deno. */
  cmd?: string;
  /** Default: the repository root. */
  cwd?: string;
  /** Added to this process's environment. */
  env?: Record<string, string>;
}

/** Starts `cmd args` (no stdin) with its output collected. */
export function spawn(name: string, args: string[], opts: SpawnOptions = {}): Proc {
  const child = new Deno.Command(opts.cmd ?? Deno.execPath(), {
    args,
    cwd: opts.cwd ?? REPO,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  return new Proc(name, child);
}

/**
 * Starts `gsw <command> <args>` from the repository root with the permissions its deno.json
 * task gives it (writes, if any, allowed in `writeDir`); `env` is added to this process's
 * environment.
 */
export function spawnGsw(
  command: GswTask,
  args: string[] = [],
  name: string = command,
  opts: { env?: Record<string, string>; writeDir?: string } = {},
): Proc {
  return spawn(name, [...taskArgs(command, opts.writeDir), ...args], {
    env: { NO_COLOR: "1", ...opts.env },
  });
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

  /**
   * Starts a gsw command (decom, broker, logger, subscribe, …) on this run directory, allowed to
   * write (if its task writes) only to the log directory, `logs` in this pipeline's directory.
   */
  spawn(command: GswTask, args: string[] = [], name: string = command): Proc {
    const proc = spawnGsw(command, args, name, {
      env: { GSW_RUN_DIR: this.runDir },
      writeDir: `${this.dir}/logs`,
    });
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
    const there = () => {
      try {
        Deno.statSync(path);
        return true;
      } catch {
        return undefined;
      }
    };
    try {
      await eventually(`a socket at ${path}`, there, timeoutMs);
    } catch (e) {
      if (!proc) throw e;
      throw new Error(`${(e as Error).message}; ${proc.name} said:\n${proc.lines.join("\n")}`);
    }
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
        if (n === 0) await sleep(1);
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
    await Promise.allSettled(this.procs.map((p) => p.stop("SIGKILL")));
    this.#sender?.close();
    this.#batch?.close();
    Deno.removeSync(this.dir, { recursive: true });
  }
}

/** A TCP port on 127.0.0.1 that is free now (bound and released to check). */
export function freeTcpPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
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
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(10);
  }
}

/** `eventually` for a check that has to wait (a browser, a request). */
export async function eventuallyAsync<T>(
  what: string,
  check: () => Promise<T | undefined>,
  timeoutMs = 10000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await sleep(50);
  }
}

/**
 * A PTY pair from socat in `dir`, standing for a serial line: decom opens `<prefix>radio`, the
 * writer (a test, `replay --serial`, `sim --serial`) writes to `<prefix>ground`.
 */
export async function ptyPair(dir: string, prefix = ""): Promise<Proc> {
  const socat = spawn(`socat ${prefix}radio`, [
    "-d",
    "-d",
    `pty,raw,echo=0,link=${dir}/${prefix}radio`,
    `pty,raw,echo=0,link=${dir}/${prefix}ground`,
  ], { cmd: "socat" });
  await socat.waitFor(/starting data transfer loop/, 10_000);
  return socat;
}
