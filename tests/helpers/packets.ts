/** Reading the every-packet stream in tests. */
import type { PacketStream, RawPacket } from "../../lib/packets.ts";
import { sleep } from "./pipeline.ts";

/** Reads batches until `n` packets (plus what `lost` says) have come, copying each. */
export async function collect(
  stream: PacketStream,
  n: number,
  timeoutMs = 15_000,
): Promise<{ packets: RawPacket[]; lost: number }> {
  const packets: RawPacket[] = [];
  let lost = 0;
  const deadline = Date.now() + timeoutMs;
  while (packets.length + lost < n) {
    if (Date.now() > deadline) {
      throw new Error(`only ${packets.length} packets and ${lost} lost of ${n}`);
    }
    const batch = stream.read();
    lost += batch.lost;
    for (const p of batch.packets) packets.push({ ...p, bytes: p.bytes.slice() });
    if (batch.packets.length === 0) await sleep(5);
  }
  return { packets, lost };
}
