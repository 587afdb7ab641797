/**
 * For commands whose permissions depend on their arguments (the dashboard's listen address, the
 * bridge's MQTT broker): run by hand through a deno task, they start themselves again with
 * exactly the permissions those arguments need, and stop with the process that started them.
 */
import { UserError } from "./args.ts";
import { dieWithParent } from "../ffi/mod.ts";

const MAIN = decodeURIComponent(new URL("../main.ts", import.meta.url).pathname);
/** The native library, for `--allow-ffi=` of a relaunched command. */
export const LIBRARY = decodeURIComponent(
  new URL("../target/release/libgsw.so", import.meta.url).pathname,
);

/** The option that tells a relaunched command the pid of the process that started it. */
export const PARENT_OPTION = { parent: { type: "string" } } as const;

/**
 * Runs `gsw <command> <args>` again with `permissions`, forwarding signals; resolves with its
 * exit code. `why` says what the permissions are for, should spawning be refused.
 */
export async function relaunch(
  command: string,
  args: string[],
  permissions: string[],
  why: string,
): Promise<number> {
  let child: Deno.ChildProcess;
  try {
    // "deno" from PATH, which --allow-run=deno permits (Deno.execPath() is the resolved path).
    child = new Deno.Command("deno", {
      args: ["run", ...permissions, MAIN, command, ...args, "--parent", String(Deno.pid)],
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) {
      throw new UserError(`the ${command} needs ${why}: run it with \`deno task ${command}\``);
    }
    throw e;
  }
  for (const s of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    Deno.addSignalListener(s, () => {
      try {
        child.kill(s);
      } catch { /* already gone */ }
    });
  }
  return (await child.status).code;
}

/**
 * In a relaunched command (`--parent PID` given): stop (SIGTERM) when that process exits, even
 * if it is killed. False if it is already gone.
 */
export function followParent(parent: string | undefined): boolean {
  return parent === undefined || dieWithParent(Number(parent));
}
