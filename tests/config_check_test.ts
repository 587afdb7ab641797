/** `check-config` as users run it: a real process, its output and its exit status. */
import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/config/", import.meta.url).pathname;

async function checkConfig(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--ignore-env=LOG_TOKENS,LOG_STREAM",
      "main.ts",
      "check-config",
      ...args,
    ],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("check-config: a valid config prints its summary and exits 0", async () => {
  const r = await checkConfig("examples/rocket.yaml");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^rocket: valid \(examples\/rocket\.yaml, sha256 [0-9a-f]{12}\)/);
  assert.match(r.stdout, /vehicle {2}bind 127\.0\.0\.1 {2}ports 45001, 45002, 45003, 45004/);
  assert.match(r.stdout, /GPS +port 45004 +id 1 +31 bytes +6 measurements +10 Hz/);
  assert.match(r.stdout, /measurements: 34 \(\+12 link health\)/);
  assert.match(r.stdout, /warnings: none/);
  assert.ok(r.stdout.split("\n").length < 25, "fits on one screen");
});

Deno.test("check-config: warnings are listed, and still exit 0", async () => {
  const r = await checkConfig(FIXTURES + "compat/backplane-unused-snr.yaml");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /warnings: 1\n {2}\S+backplane-unused-snr\.yaml:183:7: warning: /);
});

Deno.test("check-config: an invalid config prints every diagnostic and exits 1", async () => {
  const r = await checkConfig(FIXTURES + "bad/many-problems.yaml");
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 8, r.stderr);
  assert.match(lines[0], /many-problems\.yaml:6:5: error: measurement "ALT" is a 2-byte float/);
  assert.match(lines[7], /many-problems\.yaml: 7 errors, 0 warnings$/);
});

Deno.test("check-config: bad arguments print the usage line and exit 2", async () => {
  for (const args of [[], ["a.yaml", "b.yaml"], ["--strict", "a.yaml"]]) {
    const r = await checkConfig(...args);
    assert.equal(r.code, 2, `${args}: ${r.stderr}`);
    assert.match(r.stderr, /usage: check-config FILE/);
  }
  const help = await checkConfig("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^usage: check-config FILE\n/);
  assert.match(help.stdout, /Examples:/);
});
