/**
 * The test side of gsw's cross-process FFI tests: child Deno processes that run a helper
 * script with nothing but `--allow-ffi=<libgsw.so>`, speaking one JSON object per stdout
 * line, plus the /proc readings the tests assert on (descriptors, mappings, thread states).
 */

/** The repository root (where `target/release/libgsw.so` is built). */
export const ROOT = decodeURIComponent(new URL("../../", import.meta.url).pathname);
/** Absolute path of the native library: the only thing a child is allowed to touch. */
export const LIB = `${ROOT}target/release/libgsw.so`;
const HELPERS = decodeURIComponent(new URL("./", import.meta.url).pathname);

/** One line a child printed: `{"event": "...", ...}`. */
export interface Message {
  event: string;
  // deno-lint-ignore no-explicit-any
  [key: string]: any;
}

/** Resolves `p`, or rejects with `what` after `ms` (the timer never outlives the race). */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `condition` every few ms until it holds; fails with `what` after `ms`. */
export async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(2);
  }
}

/**
 * A helper script (in `tests/helpers/`) running in its own Deno process with only the
 * native library allowed. `--no-prompt` turns any other access into an immediate error
 * instead of a prompt, so a child that needed more than FFI would fail, not hang.
 */
export class Child {
  readonly proc: Deno.ChildProcess;
  readonly script: string;
  #messages: Message[] = [];
  #wake: (() => void) | null = null;
  #stdoutDone = false;
  #stderr = "";
  #pumps: Promise<void>;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #status: Deno.CommandStatus | null = null;
  readonly status: Promise<Deno.CommandStatus>;

  constructor(script: string, options: unknown) {
    this.script = script;
    this.proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-ffi=${LIB}`,
        `${HELPERS}${script}`,
        JSON.stringify(options),
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    this.#stdin = this.proc.stdin.getWriter();
    this.status = this.proc.status.then((s) => this.#status = s);
    this.#pumps = Promise.all([this.#readStdout(), this.#readStderr()]).then(() => {});
  }

  get pid(): number {
    return this.proc.pid;
  }

  async #readStdout(): Promise<void> {
    let rest = "";
    const decoder = new TextDecoder();
    try {
      for await (const chunk of this.proc.stdout) {
        rest += decoder.decode(chunk, { stream: true });
        let nl;
        while ((nl = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, nl).trim();
          rest = rest.slice(nl + 1);
          if (line) this.#push(line);
        }
      }
    } finally {
      this.#stdoutDone = true;
      this.#wake?.();
    }
  }

  #push(line: string): void {
    let msg: Message;
    try {
      msg = JSON.parse(line);
    } catch {
      msg = { event: "garbage", line };
    }
    this.#messages.push(msg);
    this.#wake?.();
  }

  async #readStderr(): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of this.proc.stderr) this.#stderr += decoder.decode(chunk);
  }

  /** What the child said on stderr so far (its uncaught error, if it failed). */
  get stderr(): string {
    return this.#stderr;
  }

  #describe(): string {
    const status = this.#status ? `exited with code ${this.#status.code}` : "still running";
    return `${this.script} (pid ${this.pid}, ${status}); stderr:\n${this.#stderr || "(empty)"}`;
  }

  /**
   * The next message, which must be `event`. Fails with the child's stderr if it sends
   * something else, exits, or stays silent for `ms`.
   */
  async next(event: string, ms = 10_000): Promise<Message> {
    const deadline = Date.now() + ms;
    while (this.#messages.length === 0) {
      if (this.#stdoutDone) {
        await within(this.#pumps, 2000, "child output").catch(() => {});
        throw new Error(`waiting for "${event}": ${this.#describe()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no "${event}" within ${ms} ms from ${this.#describe()}`);
      await within(new Promise<void>((resolve) => this.#wake = resolve), left, event)
        .catch(() => {})
        .finally(() => this.#wake = null);
    }
    const msg = this.#messages.shift()!;
    if (msg.event !== event) {
      throw new Error(
        `expected "${event}", got ${JSON.stringify(msg)} from ${this.#describe()}`,
      );
    }
    return msg;
  }

  /** Writes one line to the child's stdin. */
  async send(line: string): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode(line + "\n"));
  }

  /** Waits for the child to exit by itself; it must exit with code 0 within `ms`. */
  async finish(ms = 10_000): Promise<void> {
    const status = await within(this.status, ms, `${this.script} to exit`);
    await within(this.#pumps, 2000, `${this.script} output`);
    if (status.code !== 0) throw new Error(`child failed: ${this.#describe()}`);
  }

  /** Kills the child if it still runs (SIGKILL also ends a stopped process) and reaps it. */
  async kill(): Promise<void> {
    if (this.#status === null) {
      try {
        this.proc.kill("SIGKILL");
      } catch {
        // It exited between the check and the kill.
      }
    }
    await this.status;
    await this.#stdin.close().catch(() => {});
    await this.#pumps.catch(() => {});
  }
}

/**
 * Runs `body` with a factory for children; every child it made is killed and reaped when
 * the body ends, whether it passed or failed.
 */
export async function withChildren<T>(
  body: (spawn: (script: string, options: unknown) => Child) => Promise<T>,
): Promise<T> {
  const children: Child[] = [];
  try {
    return await body((script, options) => {
      const child = new Child(script, options);
      children.push(child);
      return child;
    });
  } finally {
    await Promise.all(children.map((c) => c.kill()));
  }
}

/** A fresh private directory for one test's sockets; the child calls `prepareRunDir` on it. */
export function tempRunDir(): { base: string; run: string; [Symbol.dispose](): void } {
  const base = Deno.makeTempDirSync({ prefix: "gsw-ffi-test-" });
  return {
    base,
    run: `${base}/run`,
    [Symbol.dispose]() {
      Deno.removeSync(base, { recursive: true });
    },
  };
}

/** Open descriptors of this process, excluding the one used to list them. */
export function openFds(): Map<number, string> {
  const fds = new Map<number, string>();
  for (const entry of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.set(Number(entry.name), Deno.readLinkSync(`/proc/self/fd/${entry.name}`));
    } catch {
      // The listing's own directory descriptor is gone by the time we look at it.
    }
  }
  return fds;
}

export function fdCount(): number {
  return openFds().size;
}

/** Lines of /proc/self/maps: all of them, and those mapping gsw's memfds. */
export function mappings(): { total: number; gsw: number } {
  const lines = Deno.readTextFileSync("/proc/self/maps").split("\n").filter((l) => l);
  return { total: lines.length, gsw: lines.filter((l) => l.includes("/memfd:gsw-")).length };
}

/** Descriptors opened between two `openFds()` readings (number → what it is). */
export function newFds(
  before: Map<number, string>,
  after: Map<number, string>,
): [number, string][] {
  return [...after].filter(([fd, what]) => before.get(fd) !== what);
}

/** The state letter of a process in /proc/<pid>/stat: R, S, T (stopped), Z, … */
export function processState(pid: number): string {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[0];
}

/** x86_64 and aarch64 syscall numbers of the epoll waits. */
const EPOLL_WAITS = Deno.build.arch === "x86_64" ? [232, 281, 441] : [22, 441];

/**
 * Threads of this process blocked in an epoll wait on descriptor `epfd` right now (from
 * /proc/self/task/<tid>/syscall: the syscall number, then its first argument).
 */
export function threadsWaitingOn(epfd: number): number[] {
  const tids: number[] = [];
  for (const task of Deno.readDirSync("/proc/self/task")) {
    let line: string;
    try {
      line = Deno.readTextFileSync(`/proc/self/task/${task.name}/syscall`);
    } catch {
      continue; // the thread exited
    }
    const [nr, arg0] = line.trim().split(" ");
    if (EPOLL_WAITS.includes(Number(nr)) && Number(arg0) === epfd) tids.push(Number(task.name));
  }
  return tids;
}

export function threadCount(): number {
  return [...Deno.readDirSync("/proc/self/task")].length;
}
