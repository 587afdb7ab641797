/** The logger's command line: help, bad arguments, permissions, and a second logger refused. */
import assert from "node:assert/strict";
import { spawn } from "./helpers/pipeline.ts";
import {
  FakeDecom,
  listening,
  numbered,
  runDirs,
  runTask,
  startLogger,
  tempDir,
} from "./logger_helpers.ts";
import { readAll } from "../logger/format.ts";

Deno.test("logger CLI: --help exits 0; bad arguments give the usage line and exit 2", async () => {
  const help = await runTask("logger", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: logger \[--run-dir D\] \[--log-dir DIR\]/);
  for (
    const args of [["--max-file-mb", "lots"], ["--max-file-mb", "0"], ["--bogus"], ["extra"], [
      "--log-dir",
    ]]
  ) {
    const r = await runTask("logger", args);
    assert.equal(r.code, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, /^gsw logger: .+\nusage: logger /, `${args}`);
  }
});

Deno.test("logger CLI: a missing config is one clear line and exit 1", async () => {
  await using dir = await tempDir("logger-cli");
  const r = await runTask("logger", [
    "--run-dir",
    `${dir.path}/run`,
    "--config",
    `${dir.path}/nope.yaml`,
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^gsw logger: cannot read the config \S+nope\.yaml: No such file/);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
});

Deno.test("logger CLI: a log dir outside ./logs prints the deno run line that works", async () => {
  await using dir = await tempDir("logger-perm");
  const logDir = `${dir.path}/elsewhere`;
  const runDir = `${dir.path}/run`;
  // Exactly the task's permissions: writes only under ./logs.
  const refused = await runTask("logger", ["--run-dir", runDir, "--log-dir", logDir]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /may not write to \S+elsewhere: `deno task logger` is allowed/);
  const line = refused.stderr.split("\n").find((l) => l.startsWith("  deno run "));
  assert.ok(line, refused.stderr);
  assert.match(line, new RegExp(`--allow-write=${logDir} `));
  assert.ok(!(await Deno.stat(logDir).catch(() => null)), "nothing was created");

  // The printed line, run from another directory, works.
  const logger = spawn("logger", line.trim().split(" ").slice(1), { cwd: dir.path });
  const decom = new FakeDecom(0, `${runDir}/logger.sock`);
  try {
    await listening(logger);
    assert.ok(decom.tryConnect());
    decom.forward([{ payload: numbered(1, 10), dstPort: 45001, timeNs: 1n }]);
    await decom.drain();
    assert.equal((await logger.stop()).code, 0, logger.stderr.text);
    const [run] = await runDirs(logDir);
    assert.equal((await readAll([`${run}/gsw-0001.gswlog`])).records.length, 1);
  } finally {
    decom.close();
    await logger.stop("SIGKILL");
  }
});

Deno.test("logger CLI: a second logger on the same run directory is refused, the first unharmed", async () => {
  await using dir = await tempDir("logger-twice");
  const runDir = `${dir.path}/run`;
  const logDir = `${dir.path}/logs`;
  const first = await startLogger(runDir, logDir);
  try {
    const second = await runTask("logger", ["--run-dir", runDir, "--log-dir", logDir], logDir);
    assert.equal(second.code, 1, second.stderr);
    assert.match(second.stderr, /another process is already serving \S+logger\.sock/);
    assert.equal((await runDirs(logDir)).length, 1, "the refused logger leaves no run behind");
    // The first one still has its socket and still records.
    const decom = new FakeDecom(0, `${runDir}/logger.sock`);
    try {
      assert.ok(decom.tryConnect());
      decom.forward([{ payload: numbered(7, 10), dstPort: 45001, timeNs: 1n }]);
      await decom.drain();
    } finally {
      decom.close();
    }
    assert.equal((await first.stop()).code, 0, first.stderr.text);
    assert.match(first.stdout.text, /stopped\. 1 file, 1 record, /);
  } finally {
    await first.stop("SIGKILL");
  }
});
