/**
 * `gsw start` runs the whole pipeline and, when it stops, leaves nothing behind: no process,
 * no socket in the run directory, nothing in /dev/shm.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { Pipeline, REPO, taskArgs } from "./helpers/pipeline.ts";

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

Deno.test("start runs sim → decom → broker (+ logger) and stops cleanly after --duration", async () => {
  await using p = Pipeline.create();
  const shmBefore = shm();
  const logDir = `${p.dir}/logs`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      ...taskArgs("start"),
      "--config",
      p.configPath,
      "--run-dir",
      p.runDir,
      "--log-dir",
      logDir,
      "--duration",
      "4",
      "--no-view",
    ],
    cwd: REPO,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stderr) + new TextDecoder().decode(out.stdout);
  assertEquals(out.code, 0, text);
  // Every part ran and was stopped by start.
  for (const part of ["decom[vehicle]", "broker", "sim", "logger"]) {
    assert(text.includes(`${part}:`), `${part} ran:\n${text}`);
  }
  assert(/decom\[vehicle\]: SIGTERM: stopping\. [1-9]\d* datagrams/.test(text), text);
  assert(/broker: attached to decom/.test(text), text);
  assert(text.includes("start: stopped"), text);
  // Nothing left behind.
  assertEquals([...Deno.readDirSync(p.runDir)].map((e) => e.name), [], "run directory");
  assertEquals(shm(), shmBefore, "/dev/shm");
  assertEquals(processesWith(p.configPath), [], "processes still running");
});
