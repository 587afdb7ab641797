/**
 * A decom stand-in in its own process, for the logger tests: connects to the logger socket
 * given, sends N numbered records tagged with a source index, says so, then waits to be killed.
 * Usage: logger_fake_decom.ts SOCKET SOURCE N
 */
import { sleep } from "./helpers/pipeline.ts";
import { FakeDecom, numbered } from "./logger_helpers.ts";

// Guarded: `deno test tests/logger_*.ts` imports this file too.
if (import.meta.main) {
  const [socket, source, count] = Deno.args;
  const decom = new FakeDecom(Number(source), socket);
  while (!decom.tryConnect()) await sleep(10);
  const n = Number(count);
  for (let seq = 0; seq < n; seq += 10) {
    decom.forward(Array.from({ length: Math.min(10, n - seq) }, (_, i) => ({
      payload: numbered(seq + i, 40),
      dstPort: 46000,
      timeNs: BigInt(Date.now()) * 1_000_000n,
    })));
  }
  await decom.drain();
  console.log(`sent ${n}`);
  await sleep(60_000);
}
