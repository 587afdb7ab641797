/**
 * The benchmarks' own native library, `libgsw_bench_native.so` (`bench/native/src/ffi.rs`):
 * no-op FFI references with exactly the parameter types of gsw's hot symbols, a clock that
 * returns a `number`, and the descriptor helpers a Deno reader of a cross-process benchmark
 * needs. Each symbol with its C prototype.
 */

/** Version of the table below (`BENCH_ABI_VERSION` in `bench/native/src/ffi.rs`). */
export const BENCH_ABI_VERSION = 1;

export const benchSymbols = {
  // uint32_t gsw_bench_abi_version(void)
  gsw_bench_abi_version: { parameters: [], result: "u32" },
  // double gsw_bench_now_ns(void)   CLOCK_MONOTONIC, exact below 2^53 ns
  gsw_bench_now_ns: { parameters: [], result: "f64" },
  // int32_t gsw_bench_noop_publish(const void *w, uint32_t ch, const uint8_t *data,
  //                                uint32_t len, uint64_t seq, uint64_t timestamp_ns)
  // Same parameter types as gsw_writer_publish / gsw_writer_publish_quiet; does nothing.
  gsw_bench_noop_publish: {
    parameters: ["pointer", "u32", "buffer", "u32", "u64", "u64"],
    result: "i32",
  },
  // int32_t gsw_bench_noop_take(const void *r, uint32_t ch, uint8_t *out, uint32_t len)
  // Same parameter types as gsw_reader_take; does nothing, returns 0 ("nothing new").
  gsw_bench_noop_take: { parameters: ["pointer", "u32", "buffer", "u32"], result: "i32" },
  // int32_t gsw_bench_noop_wait(const void *ws, uint8_t *out, uint32_t len, int32_t timeout_ms)
  // Same parameter types as gsw_waitset_wait, on Deno's blocking pool like
  // gsw_waitset_wait_async: the awaited round trip is Deno's floor for waking JavaScript.
  gsw_bench_noop_wait_async: {
    name: "gsw_bench_noop_wait",
    parameters: ["pointer", "buffer", "u32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  // int32_t gsw_bench_dup(int fd)   close-on-exec duplicate, or -errno
  gsw_bench_dup: { parameters: ["i32"], result: "i32" },
  // uint8_t *gsw_bench_map(int fd, size_t len)   shared read-write mapping, null on failure
  gsw_bench_map: { parameters: ["i32", "usize"], result: "pointer" },
  // int32_t gsw_bench_unmap(uint8_t *ptr, size_t len)
  gsw_bench_unmap: { parameters: ["pointer", "usize"], result: "i32" },
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

  [Symbol.dispose](): void {
    if (this.#ptr === null) return;
    bench().gsw_bench_unmap(this.#ptr, BigInt(this.length));
    this.#ptr = null;
  }
}
