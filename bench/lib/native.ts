/**
 * The benchmarks' own native library, `libgsw_bench_native.so` (`bench/native/src/ffi.rs`): a
 * clock that returns a `number`, and the descriptor and futex helpers a Deno reader of a
 * cross-process benchmark needs. Each symbol with its C prototype. (The no-op references the
 * FFI benchmarks compare gsw's hot calls with are `libgsw.so`'s own `gsw_bench_noop_*`.)
 */

/** Version of the table below (`BENCH_ABI_VERSION` in `bench/native/src/ffi.rs`). */
export const BENCH_ABI_VERSION = 2;

export const benchSymbols = {
  // uint32_t gsw_bench_abi_version(void)
  gsw_bench_abi_version: { parameters: [], result: "u32" },
  // double gsw_bench_now_ns(void)   CLOCK_MONOTONIC, exact below 2^53 ns
  gsw_bench_now_ns: { parameters: [], result: "f64" },
  // int32_t gsw_bench_dup(int fd)   close-on-exec duplicate, or -errno
  gsw_bench_dup: { parameters: ["i32"], result: "i32" },
  // uint8_t *gsw_bench_map(int fd, size_t len)   shared read-write mapping, null on failure
  gsw_bench_map: { parameters: ["i32", "usize"], result: "pointer" },
  // int32_t gsw_bench_unmap(uint8_t *ptr, size_t len)
  gsw_bench_unmap: { parameters: ["pointer", "usize"], result: "i32" },
  // int32_t gsw_bench_futex_wake(uint8_t *ptr, uint32_t offset)   FUTEX_WAKE all on that u32
  gsw_bench_futex_wake: { parameters: ["pointer", "u32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

export type BenchSymbols = Deno.DynamicLibrary<typeof benchSymbols>["symbols"];

/** `<repo>/target/release/<file>`, from this module's location. */
export function releasePath(file: string): string {
  return decodeURIComponent(new URL(`../../target/release/${file}`, import.meta.url).pathname);
}

/** File name of the benchmarks' native library. */
export const BENCH_LIBRARY_FILE = "libgsw_bench_native.so";

let loaded: BenchSymbols | undefined;

/** Loads `libgsw_bench_native.so` once (from `target/release`); throws one clear line if absent. */
export function bench(): BenchSymbols {
  if (loaded) return loaded;
  const path = releasePath(BENCH_LIBRARY_FILE);
  let lib: Deno.DynamicLibrary<typeof benchSymbols>;
  try {
    lib = Deno.dlopen(path, benchSymbols);
  } catch (e) {
    throw new Error(
      `cannot load ${path} (${(e as Error).message.split("\n")[0]}): run \`cargo build --release\``,
    );
  }
  const v = lib.symbols.gsw_bench_abi_version();
  if (v !== BENCH_ABI_VERSION) {
    lib.close();
    throw new Error(`${path} has bench ABI ${v}, expected ${BENCH_ABI_VERSION}: rebuild it`);
  }
  loaded = lib.symbols;
  return loaded;
}

/** CLOCK_MONOTONIC in nanoseconds, as the native side stamps its payloads. */
export function nowNs(): number {
  return bench().gsw_bench_now_ns();
}

/** A shared mapping of an inherited memfd (a benchmark's control page). */
export class ControlPage implements Disposable {
  readonly buffer: ArrayBuffer;
  readonly u32: Uint32Array;
  readonly f64: Float64Array;
  #ptr: Deno.PointerObject | null;

  constructor(fd: number, readonly length: number) {
    const p = bench().gsw_bench_map(fd, BigInt(length));
    if (p === null) throw new Error(`cannot map control page fd ${fd} (${length} bytes)`);
    this.#ptr = p;
    this.buffer = Deno.UnsafePointerView.getArrayBuffer(p, length);
    this.u32 = new Uint32Array(this.buffer);
    this.f64 = new Float64Array(this.buffer);
  }

  /** Wakes a native peer sleeping (`FUTEX_WAIT`) on the u32 at byte `offset`. */
  wake(offset: number): void {
    const r = bench().gsw_bench_futex_wake(this.#ptr, offset);
    if (r < 0) throw new Error(`futex wake at ${offset} failed (${r})`);
  }

  [Symbol.dispose](): void {
    if (this.#ptr === null) return;
    bench().gsw_bench_unmap(this.#ptr, BigInt(this.length));
    this.#ptr = null;
  }
}
