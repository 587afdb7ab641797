/**
 * A real gsw pipeline for subscriber tests: decom and broker as child processes on a private
 * run directory and a free loopback port, a UDP sender of hand-built packets, and line
 * readers over child output. Every child is killed and awaited on `stop()`.
 */
import { Batch, UdpSocket } from "../../ffi/mod.ts";

export const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
export const LIB = `${ROOT}target/release/libgsw.so`;

/** The permissions `deno task decom|broker|subscribe` run with. */
export const RUN_ARGS = [
  "run",
  `--allow-ffi=${LIB}`,
  "--allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR,GSW_LIB,HOME",
  "--allow-read",
  "--ignore-env=LOG_TOKENS,LOG_STREAM",
  "--no-prompt",
  "main.ts",
];

/** Layout of the test packet (big-endian unless said). */
export const PACKET_SIZE = 32;

export interface TestValues {
  counter: number; // COUNTER: uint32 at 0
  altitude: number; // ALTITUDE: float64 at 4, m
  big: bigint; // BIG: uint64 at 12
  mode: number; // MODE: uint8 enum at 20
  label: string; // LABEL: string[8] at 21
  tempRaw: number; // TEMP: int16 at 29, × 0.1 °C, warn above 50, alarm above 80
  beat?: number; // HEARTBEAT: uint8 at 31, expected at 20 Hz (stale after 150 ms)
}

export const MODES = ["SAFE", "ARMED", "FLIGHT"];

export function configText(port: number): string {
  return `
name: subtest
sources:
  - { name: loop, bind: 127.0.0.1 }
measurements:
  COUNTER: { type: uint, size: 4 }
  ALTITUDE: { type: float, size: 8, unit: m }
  BIG: { type: uint, size: 8 }
  MODE: { type: uint, size: 1, enum: { 0: SAFE, 1: ARMED, 2: FLIGHT } }
  LABEL: { type: string, size: 8 }
  TEMP:
    name: BOARD_TEMP
    type: int
    size: 2
    scaling: 0.1
    unit: C
    limits: { warn_high: 50, alarm_high: 80 }
  HEARTBEAT: { type: uint, size: 1, rate_hz: 20 }
telemetry_packets:
  - name: Main
    port: ${port}
    measurements: [COUNTER, ALTITUDE, BIG, MODE, LABEL, TEMP, HEARTBEAT]
`;
}

/** The packet carrying `v`, laid out by hand (independent of the config's encoders). */
export function packet(v: TestValues): Uint8Array {
  const buf = new Uint8Array(PACKET_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, v.counter);
  view.setFloat64(4, v.altitude);
  view.setBigUint64(12, v.big);
  view.setUint8(20, v.mode);
  buf.set(new TextEncoder().encode(v.label).subarray(0, 8), 21);
  view.setInt16(29, v.tempRaw);
  view.setUint8(31, v.beat ?? v.counter % 256);
  return buf;
}

/** Deterministic test values for packet number `i`; BIG needs all 64 bits. */
export function valuesFor(i: number): TestValues {
  return {
    counter: i,
    altitude: 1000 + i * 0.25,
    big: 0xfedc_ba98_7654_3210n + BigInt(i),
    mode: i % 3,
    label: `v${i}`,
    tempRaw: (i % 2 === 0 ? 1 : -1) * (i % 900),
  };
}

/** A UDP port that was free a moment ago. */
export function freePort(): number {
  const s = new UdpSocket({ bind: "127.0.0.1", port: 0 });
  const port = s.port;
  s.close();
  return port;
}

/** Reads a stream line by line as it arrives, keeping every line. */
export class Lines {
  readonly lines: string[] = [];
  #read = 0;
  #waiters: (() => void)[] = [];
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>, readonly echo?: string) {
    this.done = (async () => {
      let rest = "";
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        let nl;
        while ((nl = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, nl);
          rest = rest.slice(nl + 1);
          this.lines.push(line);
          if (this.echo && Deno.env.get("GSW_TEST_ECHO")) console.error(`${this.echo}${line}`);
        }
        this.#wake();
      }
      if (rest) this.lines.push(rest);
      this.#wake();
    })();
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    w.forEach((f) => f());
  }

  /** The next line not yet returned, or undefined if none comes within `ms`. */
  async next(ms: number): Promise<string | undefined> {
    const deadline = Date.now() + ms;
    while (this.#read >= this.lines.length) {
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const ended = await Promise.race([
        this.done.then(() => true),
        new Promise<false>((r) => {
          this.#waiters.push(() => r(false));
          timer = setTimeout(() => r(false), left);
        }),
      ]);
      clearTimeout(timer);
      if (ended && this.#read >= this.lines.length) return undefined;
    }
    return this.lines[this.#read++];
  }

  /** Waits for a line (from any seen so far) matching `re`. */
  async waitFor(re: RegExp, ms: number): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.lines.find((l) => re.test(l));
      if (hit) return hit;
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no line matching ${re} within ${ms} ms; got:\n${this.lines.join("\n")}`);
      }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        this.done,
        new Promise<void>((r) => {
          this.#waiters.push(r);
          timer = setTimeout(r, Math.min(left, 50));
        }),
      ]);
      clearTimeout(timer);
    }
  }

  /** Lines from now on only (for waitFor after a restart). */
  forget(): void {
    this.lines.length = 0;
    this.#read = 0;
  }
}

/** A child process with its output read line by line. */
export class Child {
  readonly stdout: Lines;
  readonly stderr: Lines;
  readonly #status: Promise<Deno.CommandStatus>;
  #exited: Deno.CommandStatus | null = null;

  constructor(readonly name: string, readonly process: Deno.ChildProcess) {
    this.stdout = new Lines(process.stdout, `${name}> `);
    this.stderr = new Lines(process.stderr, `${name}! `);
    this.#status = process.status.then((s) => this.#exited = s);
  }

  get exited(): Deno.CommandStatus | null {
    return this.#exited;
  }

  /** Exit status and all output. */
  async status(): Promise<Deno.CommandStatus> {
    const s = await this.#status;
    await Promise.all([this.stdout.done, this.stderr.done]);
    return s;
  }

  /** Sends `signal` unless it already exited, then waits for it (SIGKILL after `graceMs`). */
  async kill(signal: Deno.Signal = "SIGTERM", graceMs = 3000): Promise<Deno.CommandStatus> {
    if (!this.#exited) {
      try {
        this.process.kill(signal);
      } catch {
        // Exited in the meantime.
      }
      const timer = setTimeout(() => {
        try {
          this.process.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, graceMs);
      try {
        return await this.status();
      } finally {
        clearTimeout(timer);
      }
    }
    return await this.status();
  }
}

/** Spawns `deno run … main.ts <args>` from the repository root. */
export function spawnGsw(name: string, args: string[], env?: Record<string, string>): Child {
  const process = new Deno.Command(Deno.execPath(), {
    args: [...RUN_ARGS, ...args],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env,
  }).spawn();
  return new Child(name, process);
}

/** decom + broker on a private run directory, and a sender of test packets. */
export class Pipeline {
  decom: Child | null = null;
  broker: Child | null = null;
  readonly #sender = UdpSocket.sender();
  readonly #batch = new Batch(64);
  #sent = 0;

  private constructor(readonly dir: string, readonly port: number, readonly config: string) {}

  /** Writes the config and starts decom and the broker (waits until both serve). */
  static async start(opts: { broker?: boolean } = {}): Promise<Pipeline> {
    const dir = await Deno.makeTempDir({ prefix: "gsw-sub-test-" });
    await Deno.chmod(dir, 0o700);
    const port = freePort();
    const config = `${dir}/vehicle.yaml`;
    await Deno.writeTextFile(config, configText(port));
    const p = new Pipeline(dir, port, config);
    try {
      p.decom = spawnGsw("decom", [
        "decom",
        "--config",
        config,
        "--run-dir",
        `${dir}/run`,
        "--health-interval",
        "60",
      ]);
      await p.decom.stderr.waitFor(/serving/, 15_000);
      if (opts.broker ?? true) await p.startBroker();
    } catch (e) {
      await p.stop();
      throw e;
    }
    return p;
  }

  get runDir(): string {
    return `${this.dir}/run`;
  }

  /** Starts the broker (`--measurement` keys for per-measurement sockets) and waits for it. */
  async startBroker(measurements: string[] = []): Promise<Child> {
    const args = ["broker", "--config", this.config, "--run-dir", this.runDir];
    for (const m of measurements) args.push("--measurement", m);
    const broker = spawnGsw("broker", args);
    this.broker = broker;
    await broker.stderr.waitFor(/attached to decom/, 15_000);
    return broker;
  }

  /** Sends packets built from `values`, in one batch. */
  send(...values: TestValues[]): void {
    const bytes = new Uint8Array(values.length * PACKET_SIZE);
    values.forEach((v, i) => bytes.set(packet(v), i * PACKET_SIZE));
    const lens = new Uint32Array(values.length).fill(PACKET_SIZE);
    const n = this.#batch.send(this.#sender.fd, bytes, lens, "127.0.0.1", this.port);
    if (n !== values.length) throw new Error(`sent ${n} of ${values.length} packets`);
    this.#sent += n;
  }

  get sent(): number {
    return this.#sent;
  }

  async stop(): Promise<void> {
    await Promise.all([this.broker?.kill(), this.decom?.kill()]);
    this.#batch.close();
    this.#sender.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/** Polls `f` until it returns something other than undefined, or throws after `ms`. */
export async function eventually<T>(
  f: () => T | undefined,
  ms: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
