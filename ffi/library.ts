/**
 * Finds and loads gsw's native library once per isolate, and turns its error codes into one
 * typed error class, `GswError`, that carries the OS error name and says what to do.
 */
import { ABI_VERSION, type Symbols, symbols } from "./symbols.ts";

/** File name of the native library built by `cargo build --release`. */
export const LIBRARY_FILE = "libgsw.so";

/** A failure reported by gsw's native library. */
export class GswError extends Error {
  override name = "GswError";
  constructor(
    /** The errno value (or gsw code above 1000). */
    readonly code: number,
    /** Symbolic name: `EAGAIN`, `ECONNREFUSED`, `EBADMAGIC`, … */
    readonly errno: string,
    message: string,
  ) {
    super(message);
  }
}

/** What to do about the errors a user can actually fix. */
const HINTS: Record<string, string> = {
  EMFILE: "too many open files: raise the limit (`ulimit -n 4096`) or serve fewer subscribers",
  ENFILE: "the system is out of file descriptors",
  ENOMEM: "out of memory for shared-memory segments",
  EACCES: "permission denied: check the run directory's owner and mode",
  EADDRINUSE: "", // messages from the library already say who holds it
  ENAMETOOLONG: "",
};

/** Where the library was looked for, in order, and why each failed (for the error message). */
interface Attempt {
  path: string;
  why: string;
}

function canReadEnv(name: string): boolean {
  try {
    return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted";
  } catch {
    return false;
  }
}

function envVar(name: string): string | undefined {
  return canReadEnv(name) ? Deno.env.get(name) : undefined;
}

/**
 * The places the library is looked for, in order:
 * 1. `$GSW_LIB` (a path to the library file): when set, the only place looked at, so an
 *    explicit choice never silently falls back to another build;
 * 2. the local build next to this module: `<repo>/target/release/libgsw.so`;
 * 3. `$HOME/.local/lib/libgsw.so` (where `deno task install-lib` puts it);
 * 4. `/usr/local/lib/libgsw.so`.
 */
export function libraryCandidates(): string[] {
  const out: string[] = [];
  const env = envVar("GSW_LIB");
  if (env) return [env];
  const local = new URL(`../target/release/${LIBRARY_FILE}`, import.meta.url);
  if (local.protocol === "file:") out.push(decodeURIComponent(local.pathname));
  const home = envVar("HOME");
  if (home) out.push(`${home}/.local/lib/${LIBRARY_FILE}`);
  out.push(`/usr/local/lib/${LIBRARY_FILE}`);
  return out;
}

let loaded: { path: string; symbols: Symbols } | undefined;

/** Loads the library (once) and returns its symbols. Throws an actionable error if absent. */
export function native(): Symbols {
  return (loaded ??= load()).symbols;
}

/** The path the library was loaded from. */
export function nativePath(): string {
  native();
  return loaded!.path;
}

function load(): { path: string; symbols: Symbols } {
  const attempts: Attempt[] = [];
  for (const path of libraryCandidates()) {
    // The version first, alone: a library of another ABI is named as such, not by whichever of
    // the newer calls it lacks.
    const version = open(path, VERSION_ONLY, (lib) => lib.symbols.gsw_abi_version());
    if (typeof version === "string") {
      attempts.push({ path, why: version });
      continue;
    }
    if (version !== ABI_VERSION) {
      attempts.push({
        path,
        why: `ABI version ${version}, these bindings need ${ABI_VERSION} (rebuild it)`,
      });
      continue;
    }
    const lib = open(path, symbols, (lib) => lib);
    if (typeof lib === "string") {
      attempts.push({ path, why: lib });
      continue;
    }
    return { path, symbols: lib.symbols };
  }
  const tried = attempts.map((a) => `  ${a.path}: ${a.why}`).join("\n");
  throw new GswError(
    2,
    "ENOENT",
    `gsw's native library (${LIBRARY_FILE}) could not be loaded. Tried:\n${tried}\n` +
      "Build it with `deno task build` (needs Rust: https://rustup.rs), or point GSW_LIB at it.",
  );
}

const VERSION_ONLY = { gsw_abi_version: symbols.gsw_abi_version } as const;

/**
 * Opens `path` with `table` and passes it to `use`, closing it afterwards unless `use` returns
 * it. Returns what `use` returns, or why the library could not be opened.
 */
function open<T extends Deno.ForeignLibraryInterface, R>(
  path: string,
  table: T,
  use: (lib: Deno.DynamicLibrary<T>) => R,
): R | string {
  let lib: Deno.DynamicLibrary<T>;
  try {
    lib = Deno.dlopen(path, table);
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) return `not permitted (run with --allow-ffi=${path})`;
    const first = (e as Error).message.split("\n")[0];
    const missing = first.match(/Failed to register symbol (\w+)/)?.[1];
    if (missing === "gsw_abi_version") return "not gsw's library (it has no gsw_abi_version)";
    // Same ABI version, yet a call is missing: built from other sources than these bindings.
    if (missing) return `built from other gsw sources: it lacks ${missing} (rebuild it)`;
    return first.replace(/^(Could not open library: )+/, "");
  }
  const r = use(lib);
  if (r !== lib) lib.close();
  return r;
}

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();
const messageBuf = new Uint8Array(1024);
const nameBuf = new Uint8Array(32);

/**
 * The GswError for a negative result of a native call made while doing `op`. The library
 * keeps the message per thread; a call that ran on Deno's blocking pool (`nonblocking: true`)
 * passes `message`, read from where that call left it, instead.
 */
export function nativeError(ret: number, op: string, message?: string): GswError {
  const sym = native();
  const code = -ret;
  const nameLen = sym.gsw_error_name(code, nameBuf, BigInt(nameBuf.length));
  const errno = textDecoder.decode(nameBuf.subarray(0, Math.min(nameLen, nameBuf.length)));
  let detail = message;
  if (detail === undefined) {
    const msgLen = sym.gsw_last_error(messageBuf, BigInt(messageBuf.length));
    detail = textDecoder.decode(messageBuf.subarray(0, Math.min(msgLen, messageBuf.length)));
  }
  const hint = HINTS[errno] ? ` (${HINTS[errno]})` : "";
  return new GswError(code, errno, `${op}: ${detail || errno}${hint}`);
}

/** Returns `ret` if it is not negative; throws the matching GswError otherwise. */
export function check(ret: number, op: string): number {
  if (ret < 0) throw nativeError(ret, op);
  return ret;
}

/** Returns a non-null handle; throws the library's error otherwise. */
export function checkPtr(ptr: Deno.PointerValue, op: string): Deno.PointerObject {
  if (ptr === null) throw nativeError(-native().gsw_last_error_code(), op);
  return ptr;
}

/** Decodes the first `length` bytes a native call wrote into `buf` (clamped to it). */
export function decodeNative(buf: Uint8Array, length: number): string {
  return textDecoder.decode(buf.subarray(0, Math.min(Math.max(length, 0), buf.length)));
}

/** UTF-8 bytes of a string, for path and address parameters. */
export function utf8(s: string): Uint8Array<ArrayBuffer> {
  return textEncoder.encode(s);
}

/** -EAGAIN: "nothing now" from the non-blocking calls. */
export const EAGAIN = -11;

/** CLOCK_REALTIME in nanoseconds (the clock of receive timestamps). */
export function realtimeNs(): bigint {
  return BigInt(native().gsw_realtime_ns());
}

/** CLOCK_MONOTONIC in nanoseconds (for intervals and rate limits). */
export function monotonicNs(): bigint {
  return BigInt(native().gsw_monotonic_ns());
}

/** The effective user id of this process. */
export function uid(): number {
  return native().gsw_uid();
}

/**
 * Makes SIGINT, SIGTERM and SIGHUP readable on the returned descriptor (for a waitset)
 * instead of killing the process, for processes that block in `Waitset.waitSync` and so
 * never run Deno's own signal listeners. Call `takeSignals()` when it is readable.
 */
export function watchSignals(): number {
  return check(native().gsw_signals_watch(), "watching signals");
}

/** Names of the termination signals received since the last call (e.g. ["SIGINT"]). */
export function takeSignals(): string[] {
  const bits = BigInt(native().gsw_signals_take());
  const names: string[] = [];
  for (const [n, name] of [[1, "SIGHUP"], [2, "SIGINT"], [15, "SIGTERM"]] as const) {
    if (bits & (1n << BigInt(n))) names.push(name);
  }
  return names;
}
