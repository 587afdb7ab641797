/** Turns the LOG… arguments of replay and export into log files: files as given, run dirs expanded. */
import { dirname } from "node:path";
import { UserError } from "../cli/args.ts";
import { type Config, ConfigError, loadConfig } from "../config/mod.ts";
import { CONFIG_COPY } from "./writer.ts";

const LOG_FILE = /^gsw-(\d+)\.gswlog$/;

/**
 * The log files named by `args`, in order: a file as it is, a run directory as its
 * `gsw-NNNN.gswlog` files by number. Throws a one-line UserError for a missing or empty one.
 */
export async function logFiles(args: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const arg of args) {
    let info: Deno.FileInfo;
    try {
      info = await Deno.stat(arg);
    } catch (e) {
      const why = e instanceof Deno.errors.NotFound
        ? "no such file or directory"
        : (e as Error).message;
      throw new UserError(`cannot open log ${arg}: ${why}`);
    }
    if (!info.isDirectory) {
      out.push(arg);
      continue;
    }
    const found: { n: number; path: string }[] = [];
    for await (const entry of Deno.readDir(arg)) {
      const m = LOG_FILE.exec(entry.name);
      if (m && entry.isFile) found.push({ n: Number(m[1]), path: `${arg}/${entry.name}` });
    }
    if (found.length === 0) {
      throw new UserError(
        `${arg} holds no gsw-NNNN.gswlog files; give a run directory (like ` +
          "logs/2025-06-01T14-03-12Z) or log files",
      );
    }
    out.push(...found.sort((a, b) => a.n - b.n).map((f) => f.path));
  }
  return out;
}

/** Total size of `files` in bytes (for progress), 0 for any that cannot be read. */
export async function totalSize(files: readonly string[]): Promise<number> {
  let n = 0;
  for (const f of files) {
    try {
      n += (await Deno.stat(f)).size;
    } catch {
      // The reader reports it.
    }
  }
  return n;
}

/**
 * The config to read `files` with: `given`, else the copy the logger wrote beside the first
 * file. Throws a UserError with the config's own message (file:line:col) when it cannot load.
 */
export async function configForLog(files: string[], given?: string): Promise<Config> {
  const path = given ?? `${dirname(files[0])}/${CONFIG_COPY}`;
  try {
    return await loadConfig(path);
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    const hint = given ? "" : " (no config given: give one with --config FILE)";
    throw new UserError(`cannot use the config${hint}:\n${e.message}`);
  }
}
