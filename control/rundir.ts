/**
 * Where a pipeline's sockets live: one private run directory per user (or per pipeline, with
 * `--run-dir`/`GSW_RUN_DIR`, so several pipelines can run side by side), and the socket
 * names inside it.
 */
import { prepareRunDir, uid } from "../ffi/mod.ts";

function envVar(name: string): string | undefined {
  try {
    if (Deno.permissions.querySync({ name: "env", variable: name }).state !== "granted") {
      return undefined;
    }
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * The run directory: `--run-dir` if given, else `$GSW_RUN_DIR`, else
 * `$XDG_RUNTIME_DIR/gsw`, else `/tmp/gsw-<uid>`. Environment variables are consulted only
 * where the process may read them.
 */
export function resolveRunDir(flag?: string): string {
  if (flag) return flag;
  const env = envVar("GSW_RUN_DIR");
  if (env) return env;
  const xdg = envVar("XDG_RUNTIME_DIR");
  if (xdg) return `${xdg}/gsw`;
  return `/tmp/gsw-${uid()}`;
}

/** Resolves the run directory and makes sure it exists, is ours and is private (0700). */
export function openRunDir(flag?: string): string {
  const dir = resolveRunDir(flag);
  prepareRunDir(dir);
  return dir;
}

/** A file name part that is safe whatever the measurement or source is called. */
function safeName(name: string): string {
  return /^[A-Za-z0-9_.-]+$/.test(name) && !name.startsWith(".")
    ? name
    : `x-${
      Array.from(new TextEncoder().encode(name), (b) => b.toString(16).padStart(2, "0")).join("")
    }`;
}

/** Socket where decom serves the channels of data source `source`. */
export function decomSocket(dir: string, source: string): string {
  return `${dir}/decom.${safeName(source)}.sock`;
}

/** Socket of the broker serving every measurement (the default broker). */
export function brokerSocket(dir: string): string {
  return `${dir}/broker.sock`;
}

/** Socket of a broker started for one measurement (`broker --measurement KEY`). */
export function measurementBrokerSocket(dir: string, measurementKey: string): string {
  return `${dir}/broker.m.${safeName(measurementKey)}.sock`;
}

/** Socket where the logger receives raw packets. */
export function loggerSocket(dir: string): string {
  return `${dir}/logger.sock`;
}
