/**
 * Runnable library example: prints live values of the measurements named on the command line
 * until Ctrl-C, then the newest value of each. See docs/library.md for the permissions.
 *
 *   deno run --allow-ffi=./target/release/libgsw.so --allow-env=GSW_RUN_DIR,XDG_RUNTIME_DIR \
 *     examples/watch.ts ALTITUDE VELOCITY
 */
import { formatValue, subscribe, SubscribeError } from "../mod.ts";

const names = Deno.args.length > 0 ? Deno.args : ["ALTITUDE"];

let sub;
try {
  sub = subscribe(names, {
    onStatus: (s) => console.error(`watch: ${s.message} (${s.broker})`),
  });
} catch (e) {
  // No broker, or a misspelt name (the message carries the broker's did-you-mean).
  if (e instanceof SubscribeError) {
    console.error(`watch: ${e.message}`);
    Deno.exit(1);
  }
  throw e;
}

// Ctrl-C closes the subscription, which ends the loop below cleanly.
Deno.addSignalListener("SIGINT", () => sub.close());

using _ = sub;
for await (const u of sub) {
  const skipped = u.skipped > 0 ? ` (${u.skipped} skipped)` : "";
  console.log(`${u.name} = ${formatValue(sub.describe(u.measurement)!, u.value)}${skipped}`);
}
for (const m of sub.measurements) {
  const last = sub.latest(m.key);
  console.log(`last ${m.name}: ${last ? formatValue(m, last.value) : "(none)"}`);
}
