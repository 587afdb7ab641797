/**
 * The supervisor behind `gsw start`, with stand-in children (`deno eval` scripts): a part that
 * fails on its first start stops the pipeline; one that ran and then fails fast on restart is
 * retried, never allowed to stop the others; stopping goes in reverse start order, one part
 * at a time.
 */
import { deepStrictEqual as assertEquals, ok as assert } from "node:assert/strict";
import { type LogLine, Supervisor } from "../start/supervisor.ts";
import { eventually } from "./helpers/pipeline.ts";

/** A child that runs `code` (with `Deno.env` of the supervisor's env). */
const script = (name: string, code: string) => ({ name, args: ["eval", code] });

Deno.test("supervisor: a part failing fast after a restart is retried, not fatal", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "gsw-supervisor-" });
  const lines: LogLine[] = [];
  let fatal = "";
  const sup = new Supervisor(Deno.execPath(), { DIR: dir }, (l) => lines.push(l), (why) => {
    fatal = why;
  });
  try {
    // First run: lives 2.5 s, then exits 1. Every later run: exits 1 at once.
    sup.start(script(
      "flaky",
      `const f = Deno.env.get("DIR") + "/ran";
       try { Deno.statSync(f); Deno.exit(1); } catch { Deno.writeTextFileSync(f, "1"); }
       await new Promise((r) => setTimeout(r, 2500)); Deno.exit(1);`,
    ));
    sup.start(script("steady", "setInterval(() => {}, 1000);"));
    await eventually(
      "two fast-failing restarts",
      () =>
        lines.filter((l) => /flaky exited with code 1; restarting/.test(l.text)).length >= 3 ||
        undefined,
      15_000,
    );
    assertEquals(fatal, "", "a restart that fails fast is not fatal");
    assert(sup.children().some((c) => c.name === "steady"), "the others keep running");
  } finally {
    await sup.stop();
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("supervisor: a part failing on its first start is fatal", async () => {
  let fatal = "";
  const sup = new Supervisor(Deno.execPath(), {}, () => {}, (why) => fatal = why);
  try {
    sup.start(script("broken", "Deno.exit(3);"));
    await eventually("the fatal report", () => fatal || undefined, 10_000);
    assert(/broken exited with code 3 right after starting/.test(fatal), fatal);
  } finally {
    await sup.stop();
  }
});

Deno.test("supervisor: stop goes in reverse start order, each part gone before the next", async () => {
  const dir = Deno.makeTempDirSync({ prefix: "gsw-supervisor-" });
  const sup = new Supervisor(Deno.execPath(), { DIR: dir }, () => {}, () => {});
  try {
    // Each records, at SIGTERM, the parts that had already recorded their own stop.
    for (const name of ["logger", "decom", "broker", "sim"]) {
      sup.start(script(
        name,
        `Deno.addSignalListener("SIGTERM", () => {
           const f = Deno.env.get("DIR") + "/order";
           let seen = ""; try { seen = Deno.readTextFileSync(f); } catch { /* first */ }
           Deno.writeTextFileSync(f, seen + "${name} ");
           setTimeout(() => Deno.exit(0), 300);
         });
         setInterval(() => {}, 1000);`,
      ));
    }
    await new Promise((r) => setTimeout(r, 1500)); // all listening for SIGTERM
  } finally {
    const t0 = performance.now();
    await sup.stop();
    // One at a time: each takes 300 ms to exit after its SIGTERM, so four take over 1.2 s.
    const took = performance.now() - t0;
    assert(took >= 1200, `stopped in ${took} ms: not one after the other`);
  }
  assertEquals(Deno.readTextFileSync(`${dir}/order`), "sim broker decom logger ");
  Deno.removeSync(dir, { recursive: true });
});
