/**
 * `gsw start` runs the whole pipeline and, when it stops, leaves nothing behind: no process,
 * no socket in the run directory, nothing in /dev/shm.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { UnixConnection } from "../ffi/mod.ts";
import { eventually, freeTcpPort, Pipeline, REPO, taskArgs } from "./helpers/pipeline.ts";

function shm(): string[] {
  try {
    return [...Deno.readDirSync("/dev/shm")].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** Pids of processes whose command line mentions `needle`. */
function processesWith(needle: string): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    try {
      const cmd = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).replaceAll("\0", " ");
      if (cmd.includes(needle)) pids.push(Number(e.name));
    } catch {
      // Gone meanwhile.
    }
  }
  return pids;
}

/**
 * Runs `gsw start` on the pipeline's config for `duration` seconds without the live view and
 * returns its exit code and output (stderr, then stdout).
 */
async function runStart(
  p: Pipeline,
  runDir: string,
  duration: number,
  env: Record<string, string> = {},
): Promise<{ code: number; text: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      ...taskArgs("start"),
      "--config",
      p.configPath,
      "--run-dir",
      runDir,
      "--log-dir",
      `${p.dir}/logs`,
      "--duration",
      String(duration),
      "--no-view",
      // Not 8080: tests run side by side.
      "--dashboard-listen",
      `127.0.0.1:${freeTcpPort()}`,
    ],
    cwd: REPO,
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, text: d.decode(out.stderr) + d.decode(out.stdout) };
}

Deno.test("start runs sim → decom → broker (+ logger) and stops cleanly after --duration", async () => {
  await using p = Pipeline.create();
  const shmBefore = shm();
  const { code, text } = await runStart(p, p.runDir, 4);
  assertEquals(code, 0, text);
  // Every part ran and was stopped by start.
  for (const part of ["decom[vehicle]", "broker", "sim", "logger", "dashboard"]) {
    assert(text.includes(`${part}:`), `${part} ran:\n${text}`);
  }
  assert(/dashboard: open http:\/\/127\.0\.0\.1:\d+\/ in a browser/.test(text), text);
  assert(/decom\[vehicle\]: SIGTERM: stopping\. [1-9]\d* datagrams/.test(text), text);
  assert(/broker: attached to decom/.test(text), text);
  assert(text.includes("start: stopped"), text);
  // Nothing left behind.
  assertEquals([...Deno.readDirSync(p.runDir)].map((e) => e.name), [], "run directory");
  assertEquals(shm(), shmBefore, "/dev/shm");
  assertEquals(processesWith(p.configPath), [], "processes still running");
});

Deno.test("start brings the native library up to date with cargo, and a failed rebuild does not stop it", async () => {
  await using p = Pipeline.create();
  // Stand-ins for cargo, first on PATH: one that rebuilds (says so), one that fails. The real
  // library stays where it is, so the pipeline runs on it either way.
  const bin = `${p.dir}/bin`;
  Deno.mkdirSync(bin);
  const run = async (script: string, runDir: string) => {
    Deno.writeTextFileSync(`${bin}/cargo`, `#!/bin/sh\n${script}\n`, { mode: 0o755 });
    const { code, text } = await runStart(p, runDir, 1, { PATH: `${bin}:${Deno.env.get("PATH")}` });
    assertEquals(code, 0, text);
    assert(text.includes("start: stopped"), text);
    return text;
  };
  const rebuilt = await run(
    `echo "   Compiling gsw-ffi v0.1.0 ($*)" >&2; echo "    Finished release" >&2`,
    `${p.dir}/run-a`,
  );
  assert(
    /start: rebuilding the native library: cargo found it out of date\n +Compiling gsw-ffi v0\.1\.0 \(build --release -p gsw-ffi\)\n +Finished release\n/
      .test(rebuilt),
    rebuilt,
  );
  const failed = await run(`echo "error: linker cc not found" >&2; exit 101`, `${p.dir}/run-b`);
  assert(
    /error: linker cc not found\nstart: could not rebuild the native library \(cargo's messages above\); using the one built before\n/
      .test(failed),
    failed,
  );
  const upToDate = await run(`echo "    Finished release" >&2`, `${p.dir}/run-c`);
  assert(!/Finished|rebuild/.test(upToDate), upToDate);
});

Deno.test("a second start on the same run directory is refused, and the first keeps its sockets", async () => {
  await using p = Pipeline.create();
  const first = runStart(p, p.runDir, 6);
  await eventually("the first pipeline's broker", () => {
    try {
      return Deno.statSync(`${p.runDir}/broker.sock`) ? true : undefined;
    } catch {
      return undefined;
    }
  }, 15_000);
  const second = await runStart(p, p.runDir, 1);
  assert(second.code !== 0, second.text);
  assert(
    second.text.includes(`a pipeline is already running in ${p.runDir}`) &&
      second.text.includes("--run-dir"),
    second.text,
  );
  assert(!/pipeline "rocket" in run directory/.test(second.text), "it started nothing");
  // The first pipeline still serves: its sockets are there and answer.
  for (const name of ["broker.sock", "logger.sock", "decom.vehicle.sock"]) {
    UnixConnection.connect(`${p.runDir}/${name}`).close();
  }
  const done = await first;
  assertEquals(done.code, 0, done.text);
});
