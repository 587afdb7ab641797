/** `logger`: records every raw packet the decoms forward to numbered, rotated log files. */
import { resolve } from "node:path";
import {
  type CommandSpec,
  numberOption,
  parseCommand,
  runCommand,
  UsageError,
  UserError,
} from "../cli/args.ts";
import { type Config, ConfigError, DEFAULT_CONFIG_PATH, parseConfig } from "../config/mod.ts";
import { loggerSocket, openRunDir } from "../control/rundir.ts";
import {
  closeFd,
  GswError,
  HANGUP,
  nativePath,
  READABLE,
  realtimeNs,
  uid,
  type UnixConnection,
  UnixListener,
  Waitset,
} from "../ffi/mod.ts";
import denoConfig from "../deno.json" with { type: "json" };
import {
  claimedCount,
  convertMessage,
  type Hello,
  MAX_QUEUE_MESSAGE,
  maxConverted,
  readHello,
} from "./queue.ts";
import { bytesText, plural } from "./text.ts";
import { RunWriter } from "./writer.ts";

const SPEC: CommandSpec = {
  name: "logger",
  usage: "logger [--run-dir D] [--log-dir DIR] [--config FILE] [--max-file-mb N]",
  help: `
Records every datagram the decoms receive (known, unknown, short, oversize or garbage) with its
receive time, source and ports, to DIR/<UTC start time>/gsw-0001.gswlog, gsw-0002.gswlog, …
Starts a new file when one would pass --max-file-mb. Copies the config into the run directory
as config.yaml, so the log decodes later without guessing. Start it before or after decom:
decom buffers raw packets until the logger is there. Ctrl-C (or SIGTERM) stops it and prints
what it wrote. The format is described in docs/log-format.md.

Options:
  --run-dir D        run directory holding the sockets (default: $GSW_RUN_DIR,
                     else $XDG_RUNTIME_DIR/gsw, else /tmp/gsw-<uid>)
  --log-dir DIR      where runs are written (default: ./logs)
  --config FILE      vehicle config decom uses (default: examples/rocket.yaml)
  --max-file-mb N    largest log file in MiB (default: 256; fractions allowed)

Permissions: \`deno task logger\` may write only under ./logs. For another --log-dir, run the
\`deno run …\` line the logger prints when it is refused.

Examples:
  deno task logger
  deno task logger --config vehicles/payload.yaml --max-file-mb 64`,
  options: {
    "run-dir": { type: "string" },
    "log-dir": { type: "string" },
    config: { type: "string" },
    "max-file-mb": { type: "string" },
  },
};

const DEFAULT_LOG_DIR = "./logs";
/** fdatasync the current file this often while data arrives: what a power cut may lose. */
const SYNC_INTERVAL_MS = 1000;
/** Longest a stopping logger waits for connected decoms to send their last packets and go. */
const LINGER_MS = 1500;
/** How often a paused logger retries a failed write. */
const RETRY_MS = 1000;
/** Receive buffer: one queue message of the largest size, with room to spare. */
const RECEIVE_BUFFER = 2 * MAX_QUEUE_MESSAGE;
const LISTENER = 0;

export async function main(args: string[]): Promise<number> {
  return await runCommand(SPEC, async () => {
    const { values, help, positionals } = parseCommand(SPEC, args);
    if (help) return 0;
    if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
    // Listen for signals before the socket exists, so a stop during start-up still removes it.
    const stop = new StopSignal();
    try {
      return await start(values, stop);
    } finally {
      stop.close();
    }
  });
}

/**
 * SIGINT/SIGTERM as a flag and a wake-up, from the moment the logger starts. Also catches
 * SIGXFSZ, which the kernel sends on a write past the file size limit (`ulimit -f`) and which
 * kills by default: caught, that write fails with EFBIG instead, and the logger pauses and
 * moves to a new file as for any write failure.
 */
class StopSignal {
  requested = false;
  /** Called on a signal: cancels the waitset's wait once there is one. */
  wake = () => {};
  readonly #on = () => {
    this.requested = true;
    this.wake();
  };
  readonly #fileTooLarge = () => {};

  constructor() {
    Deno.addSignalListener("SIGINT", this.#on);
    Deno.addSignalListener("SIGTERM", this.#on);
    Deno.addSignalListener("SIGXFSZ", this.#fileTooLarge);
  }

  close(): void {
    Deno.removeSignalListener("SIGINT", this.#on);
    Deno.removeSignalListener("SIGTERM", this.#on);
    Deno.removeSignalListener("SIGXFSZ", this.#fileTooLarge);
  }
}

// deno-lint-ignore no-explicit-any
async function start(values: Record<string, any>, stop: StopSignal): Promise<number> {
  const maxMb = numberOption(values["max-file-mb"], "max-file-mb", { min: 0.001 }) ?? 256;
  const configPath: string = values.config ?? DEFAULT_CONFIG_PATH;
  const logDir: string = values["log-dir"] ?? DEFAULT_LOG_DIR;
  const { config, bytes } = await readConfig(configPath);
  let socketPath: string;
  try {
    socketPath = loggerSocket(openRunDir(values["run-dir"]));
  } catch (e) {
    if (e instanceof GswError) throw new UserError(e.message);
    throw e;
  }

  // The socket first: a second logger on this run directory stops here, before it makes a
  // run directory of its own.
  let listener: UnixListener;
  try {
    listener = new UnixListener(socketPath);
  } catch (e) {
    if (e instanceof GswError) throw new UserError(e.message);
    throw e;
  }

  let writer: RunWriter;
  try {
    writer = RunWriter.create({
      logDir,
      maxFileBytes: Math.round(maxMb * 1024 * 1024),
      configBytes: bytes,
      configPath,
      configName: config.name,
      configHash: config.hash,
      host: hostName(),
      gswVersion: denoConfig.version,
      nowNs: realtimeNs,
    });
  } catch (e) {
    listener.close();
    if (e instanceof Deno.errors.NotCapable) {
      throw new UserError(
        `may not write to ${logDir}: \`deno task logger\` is allowed to write only under ` +
          `./logs. Run it with write permission for that directory:\n  ` +
          permittedCommand(values, logDir),
      );
    }
    throw new UserError(
      `cannot create a run directory in ${logDir}: ${(e as Error).message}; ` +
        "check that the directory exists or can be created, is writable and has free space",
    );
  }

  return await new Logger(listener, writer, config, stop).run();
}

async function readConfig(path: string): Promise<{ config: Config; bytes: Uint8Array }> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new UserError(`cannot read the config ${path}: ${(e as Error).message}`);
  }
  try {
    // Parse the very bytes that are copied into the log, so the recorded hash is theirs.
    return { config: parseConfig(bytes, path), bytes };
  } catch (e) {
    if (e instanceof ConfigError) throw new UserError(`the config has errors:\n${e.message}`);
    throw e;
  }
}

/**
 * The host name, from /etc/hostname because `--allow-read` covers it (Deno.hostname needs
 * --allow-sys, and Deno demands --allow-all for /proc/sys).
 */
function hostName(): string {
  try {
    const name = Deno.readTextFileSync("/etc/hostname").trim();
    if (name) return name;
    throw new Error("empty");
  } catch {
    try {
      return Deno.hostname();
    } catch {
      return "unknown";
    }
  }
}

/** `path` made absolute, or as given where this process may not read the working directory. */
function absolute(path: string): string {
  try {
    return resolve(path);
  } catch {
    return path;
  }
}

function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
}

/**
 * The `deno run` line with the task's permissions plus write access to `logDir`, with every
 * path made absolute so it works from any directory.
 */
// deno-lint-ignore no-explicit-any
function permittedCommand(values: Record<string, any>, logDir: string): string {
  const main = decodeURIComponent(new URL("../main.ts", import.meta.url).pathname);
  const args = ["--log-dir", absolute(logDir)];
  if (values["run-dir"]) args.push("--run-dir", absolute(values["run-dir"]));
  if (values.config) args.push("--config", absolute(values.config));
  if (values["max-file-mb"]) args.push("--max-file-mb", values["max-file-mb"]);
  return [
    "deno",
    "run",
    `--allow-ffi=${nativePath()}`,
    "--allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR,GSW_LIB,HOME",
    "--ignore-env=LOG_TOKENS,LOG_STREAM",
    "--allow-read",
    `--allow-write=${absolute(logDir)}`,
    main,
    "logger",
    ...args,
  ].map(shellQuote).join(" ");
}

interface Peer {
  token: number;
  conn: UnixConnection;
  pid: number;
  /** Source index from its first message. */
  source: number | undefined;
  /** What it said in its hello (decoms before the hello say nothing). */
  hello?: Hello;
  records: number;
  /** Whether it is in the waitset (not while writing is paused). */
  watched: boolean;
}

class Logger {
  readonly #ws = new Waitset();
  readonly #peers = new Map<number, Peer>();
  readonly #rx = new Uint8Array(RECEIVE_BUFFER);
  readonly #rxView = new DataView(this.#rx.buffer);
  #nextToken = 1;
  #paused = false;
  #syncFailureSaid = false;
  /** Connections accepted, refused, and messages refused (malformed). */
  #connections = 0;
  #refusedPeers = 0;
  #badMessages = 0;
  #badRecords = 0;
  /** Connections from decoms decoding with another config than the one recorded. */
  #configMismatches = 0;

  constructor(
    readonly listener: UnixListener,
    readonly writer: RunWriter,
    readonly config: Config,
    readonly stop: StopSignal,
  ) {}

  async run(): Promise<number> {
    this.stop.wake = () => this.#ws.cancel();
    console.log(
      `logger: recording to ${this.writer.dir}/ (config ${this.config.name}, sha256 ` +
        `${this.config.hash.slice(0, 12)}); listening on ${this.listener.path}`,
    );
    try {
      this.#ws.add(this.listener.fd, LISTENER, READABLE);
      while (!this.stop.requested) {
        const timeout = this.#paused ? RETRY_MS : this.writer.unsynced ? SYNC_INTERVAL_MS : -1;
        const ready = await this.#ws.wait(timeout);
        if (this.stop.requested) break;
        for (const r of ready) {
          if (r.token === LISTENER) this.#acceptAll();
          else {
            const peer = this.#peers.get(r.token);
            if (peer) this.#drain(peer, (r.events & HANGUP) !== 0);
          }
        }
        this.#write();
        if (!this.writer.maybeSync(SYNC_INTERVAL_MS) && !this.#syncFailureSaid) {
          this.#syncFailureSaid = true; // once: it would repeat every second
          console.error(`logger: ${this.writer.error}; records may be lost if power fails`);
        }
      }
      return this.#shutdown();
    } finally {
      this.stop.wake = () => {};
      this.listener.close();
      for (const p of this.#peers.values()) p.conn.close();
      this.#ws.close();
    }
  }

  #acceptAll(): void {
    for (let conn = this.listener.accept(); conn; conn = this.listener.accept()) {
      const peer = conn.peer!;
      if (peer.uid !== uid()) {
        // The run directory is private already; this guards a directory made public by hand.
        this.#refusedPeers++;
        console.error(`logger: refused a connection from uid ${peer.uid} (pid ${peer.pid})`);
        conn.close();
        continue;
      }
      const p: Peer = {
        token: this.#nextToken++,
        conn,
        pid: peer.pid,
        source: undefined,
        records: 0,
        watched: false,
      };
      this.#peers.set(p.token, p);
      this.#connections++;
      if (!this.#paused) this.#watch(p, true);
      console.log(`logger: decom connected (pid ${p.pid})`);
    }
  }

  #watch(p: Peer, on: boolean): void {
    if (p.watched === on) return;
    if (on) this.#ws.add(p.conn.fd, p.token, READABLE);
    else this.#ws.remove(p.conn.fd);
    p.watched = on;
  }

  /**
   * Moves this peer's waiting messages into the write buffer, until none is left or the
   * buffer is full (the waitset reports the peer again: it is level-triggered).
   */
  #drain(p: Peer, hangup: boolean): void {
    const w = this.writer;
    for (;;) {
      if (w.room < maxConverted(this.#rx.length)) return;
      let got;
      try {
        got = p.conn.recv(this.#rx);
      } catch (e) {
        // A message bigger than the buffer was refused by the kernel: count it, go on.
        this.#badMessages++;
        console.error(`logger: decom pid ${p.pid}: ${(e as Error).message}`);
        if (e instanceof GswError && e.errno === "EMSGSIZE") continue;
        got = "closed" as const;
      }
      if (got === null) {
        if (hangup) this.#close(p);
        return;
      }
      if (got === "closed") {
        this.#close(p);
        return;
      }
      got.fds.forEach(closeFd); // decom never sends any; do not leak what a stranger sends
      const hello = readHello(this.#rx, this.#rxView, got.length);
      if (hello !== null) {
        this.#onHello(p, hello);
        continue;
      }
      const r = convertMessage(this.#rx, this.#rxView, got.length, w.buffer, w.view, w.length);
      w.length = r.end;
      p.records += r.records;
      if (p.source === undefined && r.records > 0) p.source = this.#rxView.getUint16(8, true);
      if (r.error) {
        this.#badMessages++;
        this.#badRecords += Math.max(0, claimedCount(this.#rxView, got.length) - r.records);
        if (this.#badMessages <= 10) console.error(`logger: decom pid ${p.pid}: ${r.error}`);
      }
    }
  }

  /** Checks that a decom decodes with the config this logger records (the log decodes with it). */
  #onHello(p: Peer, hello: Hello | string): void {
    if (typeof hello === "string") {
      this.#badMessages++;
      console.error(`logger: decom pid ${p.pid}: ${hello}`);
      return;
    }
    p.hello = hello;
    p.source = this.config.sources.findIndex((s) => s.name === hello.source);
    if (p.source < 0) p.source = undefined;
    const mine = this.config;
    if (hello.configHash === mine.hash) return;
    this.#configMismatches++;
    console.error(
      `logger: decom pid ${p.pid} (source ${hello.source}) decodes with ${hello.configFile} ` +
        `(${hello.configName}, sha256 ${hello.configHash.slice(0, 12)}), but this logger ` +
        `records ${mine.file} (${mine.name}, sha256 ${mine.hash.slice(0, 12)}) as the config ` +
        `of ${this.writer.dir}/. Its packets are recorded all the same; to decode them, ` +
        `export with --config ${hello.configFile}, and restart the logger with ` +
        `--config ${hello.configFile} so later runs record the right one.`,
    );
  }

  #close(p: Peer): void {
    if (p.watched) this.#watch(p, false);
    p.conn.close();
    this.#peers.delete(p.token);
    const source = p.source === undefined
      ? ""
      : ` (source ${this.config.sources[p.source]?.name ?? `#${p.source}`})`;
    console.log(
      `logger: decom pid ${p.pid}${source} disconnected after ${plural(p.records, "record")}`,
    );
  }

  /** Writes the buffer; pauses reading on failure (decom buffers meanwhile) and resumes. */
  #write(): void {
    const w = this.writer;
    if (w.length === 0 && !this.#paused) return;
    if (w.commit()) {
      if (this.#paused) {
        this.#paused = false;
        console.error(`logger: writing works again (${w.currentFile})`);
        for (const p of this.#peers.values()) this.#watch(p, true);
      }
      return;
    }
    if (!this.#paused) {
      this.#paused = true;
      console.error(
        `logger: ${w.error}. Holding ${w.pendingRecords} records and pausing: decom buffers ` +
          "raw packets meanwhile (and counts drops once its buffer is full). Retrying every " +
          "second; free disk space or fix the directory's permissions.",
      );
      for (const p of this.#peers.values()) this.#watch(p, false);
    }
  }

  /**
   * At a stop, waits (at most LINGER_MS) for connected decoms to hang up, writing what they
   * send meanwhile: a Ctrl-C reaches every process of the terminal at once, and a decom that
   * stops sends its last raw packets as it goes. A decom that keeps running keeps its packets
   * buffered for the next logger.
   */
  #linger(): void {
    const deadline = performance.now() + LINGER_MS;
    while (this.#peers.size > 0 && !this.#paused) {
      const left = Math.ceil(deadline - performance.now());
      if (left <= 0) break;
      for (const r of this.#ws.waitSync(left)) {
        const peer = this.#peers.get(r.token);
        if (peer) this.#drain(peer, (r.events & HANGUP) !== 0);
      }
      this.#write();
    }
  }

  #shutdown(): number {
    // Take in connections still waiting to be accepted (their messages are already queued),
    // then no more; write what every decom had sent.
    this.#acceptAll();
    this.#ws.remove(this.listener.fd);
    this.listener.close();
    if (!this.#paused) {
      for (const p of [...this.#peers.values()]) {
        while (this.#peers.has(p.token)) {
          const before = this.writer.length;
          this.#drain(p, false);
          if (this.writer.length === before) break;
          if (!this.writer.commit()) break;
        }
      }
      this.#linger();
    }
    const lost = this.writer.close();
    const w = this.writer;
    const errors = w.failures + this.#badMessages + this.#refusedPeers + this.#configMismatches;
    const parts = [
      plural(w.files, "file"),
      plural(w.records, "record"),
      bytesText(w.bytes),
      plural(this.#connections, "decom connection"),
      plural(errors, "error"),
    ];
    console.log(`logger: stopped. ${parts.join(", ")}; logs in ${w.dir}/`);
    if (this.#badMessages > 0) {
      console.error(
        `logger: refused ${this.#badMessages} malformed messages (${this.#badRecords} records)`,
      );
    }
    if (this.#configMismatches > 0) {
      console.error(
        `logger: ${plural(this.#configMismatches, "decom connection")} decoded with another ` +
          `config than ${this.config.file}, the one recorded`,
      );
    }
    if (lost > 0 || w.error) {
      console.error(`logger: ${lost} records could not be written: ${w.error}`);
      return 1;
    }
    return 0;
  }
}
