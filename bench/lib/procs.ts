/** Processes a benchmark group starts, and what /proc says about them. */
import { type Pipeline, type Proc, spawn } from "../../tests/helpers/pipeline.ts";
import { cpuNs } from "./send.ts";

/**
 * Starts `deno <args>` on `p`'s run directory, dying with this process (`setpriv --pdeathsig
 * KILL`): if `deno task bench` kills the benchmark at its deadline, nothing is left running.
 */
export function spawnDying(p: Pipeline, name: string, args: string[]): Proc {
  const proc = spawn(name, ["--pdeathsig", "KILL", Deno.execPath(), ...args], {
    cmd: "setpriv",
    env: { GSW_RUN_DIR: p.runDir },
  });
  p.procs.push(proc);
  return proc;
}

/** The first child of a process: the serving process of a task that relaunches itself. */
export function childOf(pid: number): number {
  return childrenOf(pid)[0];
}

/** The children of every thread of a process. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const kids = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/children`).trim();
      if (kids) out.push(...kids.split(" ").map(Number));
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/** A process and all its descendants, living now. */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      out.push(...childrenOf(out[i]));
    } catch {
      // It ended meanwhile.
    }
  }
  return out;
}

/** utime + stime (ns, 10 ms ticks) of each of `pids` still running. */
export function cpuOf(pids: number[]): Map<number, number> {
  const m = new Map<number, number>();
  for (const pid of pids) {
    try {
      m.set(pid, cpuNs(pid));
    } catch {
      // It ended meanwhile.
    }
  }
  return m;
}

/** Voluntary context switches of every thread of a process (how often it went to sleep). */
export function voluntarySwitches(pid: number): number {
  let sum = 0;
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    try {
      const s = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/status`);
      sum += Number(s.match(/^voluntary_ctxt_switches:\s+(\d+)/m)?.[1] ?? 0);
    } catch {
      // The thread ended meanwhile.
    }
  }
  return sum;
}

/** Busy and total jiffies of the whole machine (/proc/stat), for its load over a window. */
export function machineJiffies(): { busy: number; total: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
    .map(Number);
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - f[3] - f[4], total };
}
