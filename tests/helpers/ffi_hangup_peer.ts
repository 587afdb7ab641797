/**
 * Child: connects to a UNIX socket and holds the connection until told "close" on stdin
 * (then closes it and exits), or until it is killed.
 */
import { UnixConnection } from "../../ffi/mod.ts";
import { emit, options, stdinLines } from "./ffi_link.ts";

const opts = options<{ path: string }>();
using conn = UnixConnection.connect(opts.path);
emit("connected");
for await (const line of stdinLines()) {
  if (line === "close") break;
}
conn.close();
emit("closed");
