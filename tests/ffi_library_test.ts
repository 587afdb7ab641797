/**
 * Finding the native library: what a process told to use a file that is not gsw's library, or
 * one that is not there, is told; and that the library loads with nothing but its own path
 * allowed.
 */
import assert from "node:assert/strict";
import { ABI_VERSION } from "../ffi/symbols.ts";
import { LIBRARY, REPO, taskArgs } from "./helpers/pipeline.ts";

const LOAD = `${REPO}/tests/helpers/ffi_load.ts`;

/** Runs the loader child with `GSW_LIB=lib` and FFI allowed for `lib` alone. */
async function loadWith(lib: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", `--allow-ffi=${lib}`, "--allow-env=GSW_LIB", LOAD],
    env: { GSW_LIB: lib, NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  assert.equal(out.code, 0, d.decode(out.stderr));
  return d.decode(out.stdout);
}

function libc(): string {
  for (const dir of ["/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/lib64", "/usr/lib"]) {
    try {
      return Deno.realPathSync(`${dir}/libc.so.6`);
    } catch {
      // Not here.
    }
  }
  throw new Error("no libc.so.6 found to stand in for a foreign library");
}

Deno.test("library: gsw's own loads with only its path allowed", async () => {
  assert.equal((await loadWith(LIBRARY)).trim(), LIBRARY);
});

Deno.test("library: a foreign library or a missing file is named, with why and what to do", async () => {
  const foreign = libc();
  const a = await loadWith(foreign);
  assert.match(a, /^gsw's native library \(libgsw\.so\) could not be loaded\. Tried:\n/);
  assert.ok(a.includes(`  ${foreign}: not gsw's library (it has no gsw_abi_version)\n`), a);
  // GSW_LIB set: nowhere else is tried, not even the build next to the modules.
  assert.equal(a.match(/^ {2}\//gm)?.length, 1, a);
  assert.match(a, /Build it with `deno task build` .*, or point GSW_LIB at it\.\n$/);

  const b = await loadWith("/nonexistent/libgsw.so");
  assert.ok(
    b.includes("  /nonexistent/libgsw.so: /nonexistent/libgsw.so: cannot open shared object file"),
    b,
  );
});

Deno.test("library: one of another ABI, or of this ABI but other sources, says rebuild it", async () => {
  // Stand-ins built with the C compiler Rust links with: a library whose only call is
  // gsw_abi_version, returning the previous ABI version, then this one.
  const dir = Deno.makeTempDirSync({ prefix: "gsw-fake-lib-" });
  try {
    const fake = async (version: number) => {
      const src = `${dir}/v${version}.c`;
      Deno.writeTextFileSync(src, `unsigned gsw_abi_version(void) { return ${version}; }\n`);
      const lib = `${dir}/v${version}/libgsw.so`;
      Deno.mkdirSync(`${dir}/v${version}`);
      const cc = await new Deno.Command("cc", { args: ["-shared", "-fPIC", "-o", lib, src] })
        .output();
      assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
      return lib;
    };
    const old = await fake(ABI_VERSION - 1);
    const a = await loadWith(old);
    assert.ok(
      a.includes(
        `  ${old}: ABI version ${ABI_VERSION - 1}, these bindings need ${ABI_VERSION} ` +
          "(rebuild it)\n",
      ),
      a,
    );
    const partial = await fake(ABI_VERSION);
    const b = await loadWith(partial);
    assert.match(
      b,
      new RegExp(
        `  ${partial}: built from other gsw sources: it lacks gsw_\\w+ \\(rebuild it\\)\n`,
      ),
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("library: the tasks use the repository's build even when GSW_LIB names another", async () => {
  // GSW_LIB is for the user's own programs; the tasks may load only ./target/release/libgsw.so.
  const runDir = Deno.makeTempDirSync({ prefix: "gsw-lib-task-" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [...taskArgs("subscribe"), "ALTITUDE", "--run-dir", runDir],
      cwd: REPO,
      env: { GSW_LIB: "/nonexistent/libgsw.so", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const err = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 1, err);
    assert.match(err, /^gsw subscribe: no broker at .*broker\.sock: start one with/);
  } finally {
    Deno.removeSync(runDir, { recursive: true });
  }
});
