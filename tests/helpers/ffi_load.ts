/** Child: loads the native library and prints the error message if it cannot (or its path). */
import { nativePath } from "../../ffi/mod.ts";

try {
  console.log(nativePath());
} catch (e) {
  console.log((e as Error).message);
}
