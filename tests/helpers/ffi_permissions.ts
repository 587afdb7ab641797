/**
 * Child: reports which Deno permissions it has, and that the one it needs works: the
 * cross-process tests rely on helpers running with nothing but the native library allowed.
 */
import { nativePath, realtimeNs } from "../../ffi/mod.ts";
import { emit } from "./ffi_link.ts";

const kinds = ["read", "write", "net", "env", "run", "sys"] as const;
const states = Object.fromEntries(
  kinds.map((name) => [name, Deno.permissions.querySync({ name }).state]),
);
let readError = "";
try {
  Deno.readTextFileSync("/etc/hostname");
} catch (e) {
  readError = (e as Error).name;
}
emit("permissions", {
  states,
  library: nativePath(),
  ffiLibrary: Deno.permissions.querySync({ name: "ffi", path: nativePath() }).state,
  ffiAnyOther: Deno.permissions.querySync({ name: "ffi", path: "/usr/lib/other.so" }).state,
  readError,
  clockWorks: realtimeNs() > 0n,
});
