/**
 * gsw's public library: live telemetry values for applications. `subscribe()` follows one or
 * more measurements through the broker and reads them from shared memory; see
 * `docs/library.md`.
 *
 * @module
 */
export {
  type LinkStatus,
  RETRY_MS,
  subscribe,
  type SubscribeOptions,
  Subscription,
  type Update,
  type Value,
  WOKEN,
} from "./lib/subscription.ts";
export { subscribeWhenReady, type WaitOptions } from "./lib/wait.ts";
export { SubscribeError, type SubscribeErrorCode } from "./lib/errors.ts";
export {
  openPackets,
  type PacketBatch,
  type PacketOptions,
  type PacketStatus,
  PacketStream,
  type RawPacket,
} from "./lib/packets.ts";
export type { Limits, Measurement, MeasurementType } from "./config/types.ts";
export {
  type DecodedField,
  decodePacket,
  formatValue,
  type LimitState,
  limitState,
  type RawValue,
} from "./config/decode.ts";
export { resolveRunDir } from "./control/rundir.ts";
