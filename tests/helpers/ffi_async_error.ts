/**
 * Child: makes a waitset's wait fail (its epoll descriptor closed behind its back) after
 * another call failed on the JavaScript thread, and reports the GswError of the async
 * `wait()` and then of `waitSync()`. In a child because it closes a descriptor it does not
 * own; the process exits without freeing the waitset.
 */
import { closeFd, type GswError, SegmentWriter, Waitset } from "../../ffi/mod.ts";
import { emit } from "./ffi_link.ts";

// Descriptors are allocated lowest first: the waitset's epoll descriptor takes the number
// the probe's data memfd had.
const probe = SegmentWriter.create([{ capacity: 8, id: 0 }]);
const [epfd] = probe.fds();
probe.close();
const ws = new Waitset();

using other = SegmentWriter.create([{ capacity: 4, id: 0 }]);
let earlier = "";
try {
  other.publish(0, new Uint8Array(5), 1n, 0n);
} catch (e) {
  earlier = (e as GswError).message;
}
closeFd(epfd);
const report = (e: unknown) => ({ errno: (e as GswError).errno, message: (e as GswError).message });
let asyncError = null;
try {
  await ws.wait(0);
} catch (e) {
  asyncError = report(e);
}
let syncError = null;
try {
  ws.waitSync(0);
} catch (e) {
  syncError = report(e);
}
emit("errors", { earlier, asyncError, syncError });
Deno.exit(0);
