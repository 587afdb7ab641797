/**
 * Runs the pipeline's processes for `gsw start`: each child with only the permissions it
 * needs, its output prefixed and kept, restarted if it dies while the pipeline runs, and all
 * of them stopped (SIGTERM, then SIGKILL after a grace period) when the pipeline stops.
 */
import { textLines } from "../cli/lines.ts";

export interface ChildSpec {
  /** Short name shown before each of its lines (e.g. "decom[vehicle]"). */
  name: string;
  /** Arguments to `deno` (permissions, main.ts, command, options). */
  args: string[];
  /** The socket it serves once ready, if any (the next part starts after it appears). */
  socket?: string;
}

/** A line of a child's output, or of the supervisor itself. */
export interface LogLine {
  from: string;
  text: string;
}

interface Running {
  spec: ChildSpec;
  child: Deno.ChildProcess;
  started: number;
  restarts: number;
  exited: Promise<Deno.CommandStatus>;
}

/** A child that exits this soon after starting is failing, not crashing: do not loop. */
const FAST_FAILURE_MS = 2000;
const GRACE_MS = 3000;

export class Supervisor {
  readonly #running = new Map<string, Running>();
  /** Child names in the order they were first started (restarts keep their place). */
  readonly #order: string[] = [];
  #stopping = false;
  /** Set when a child fails at start: the pipeline cannot run, say why and stop. */
  fatal: string | null = null;

  constructor(
    readonly deno: string,
    readonly env: Record<string, string>,
    readonly onLine: (line: LogLine) => void,
    readonly onFatal: (why: string) => void,
  ) {}

  start(spec: ChildSpec, restarts = 0): void {
    const child = new Deno.Command(this.deno, {
      args: spec.args,
      env: this.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const running: Running = {
      spec,
      child,
      started: performance.now(),
      restarts,
      exited: child.status,
    };
    this.#running.set(spec.name, running);
    if (!this.#order.includes(spec.name)) this.#order.push(spec.name);
    this.#pump(spec.name, child.stdout);
    this.#pump(spec.name, child.stderr);
    running.exited.then((status) => this.#onExit(running, status));
  }

  async #pump(from: string, stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const text of textLines(stream)) this.onLine({ from, text });
  }

  #onExit(r: Running, status: Deno.CommandStatus): void {
    if (this.#running.get(r.spec.name) === r) this.#running.delete(r.spec.name);
    if (this.#stopping) return;
    const how = status.signal ? `killed by ${status.signal}` : `exited with code ${status.code}`;
    // Fatal only the first time: a part that ran once and now fails fast on restart (a client
    // crashing the broker again, say) is retried with backoff, never allowed to stop the
    // others (decom and the logger must keep recording).
    if (r.restarts === 0 && performance.now() - r.started < FAST_FAILURE_MS && !status.signal) {
      this.fatal = `${r.spec.name} ${how} right after starting (see its message above)`;
      this.onFatal(this.fatal);
      return;
    }
    const delay = Math.min(5000, 250 * 2 ** Math.min(r.restarts, 4));
    this.onLine({ from: "start", text: `${r.spec.name} ${how}; restarting in ${delay} ms` });
    setTimeout(() => {
      if (!this.#stopping) this.start(r.spec, r.restarts + 1);
    }, delay);
  }

  /** Names of the running children in the order `stop()` stops them. */
  stopOrder(): string[] {
    return [...this.#order].reverse().filter((name) => this.#running.has(name));
  }

  /** Names and pids of the running children. */
  children(): { name: string; pid: number; restarts: number }[] {
    return [...this.#running.values()].map((r) => ({
      name: r.spec.name,
      pid: r.child.pid,
      restarts: r.restarts,
    }));
  }

  /**
   * Stops every child, one at a time in reverse start order (the simulator, then the broker
   * and decoms, the logger last, so each can still hand what it holds to the next): SIGTERM,
   * then SIGKILL if it is still running after the grace period. Resolves when all have exited.
   */
  async stop(): Promise<void> {
    this.#stopping = true;
    for (const name of this.stopOrder()) {
      const r = this.#running.get(name);
      if (!r) continue;
      try {
        r.child.kill("SIGTERM");
      } catch {
        continue; // Already exited.
      }
      const timer = setTimeout(() => {
        try {
          r.child.kill("SIGKILL");
          this.onLine({ from: "start", text: `${r.spec.name} did not stop in time: killed` });
        } catch {
          // Exited meanwhile.
        }
      }, GRACE_MS);
      await r.exited.catch(() => {});
      clearTimeout(timer);
    }
  }
}
