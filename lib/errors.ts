/**
 * The one error class the subscription library throws for things a caller can act on: no
 * broker, an unknown measurement (with the broker's did-you-mean), a broker that went away
 * when reconnecting is off, or a broker that refused the request.
 */
import type { ErrorCode } from "../control/protocol.ts";

/** Why a subscription failed. Protocol error codes come from the broker's reply. */
export type SubscribeErrorCode =
  | ErrorCode
  /** No broker listens where the measurement would be served. */
  | "no-broker"
  /** The broker hung up and `reconnect: false` was asked for. */
  | "broker-gone"
  /** The broker accepted the connection but did not answer in time. */
  | "no-reply";

/** A subscription failure with a message that says what to do. */
export class SubscribeError extends Error {
  override name = "SubscribeError";
  constructor(
    readonly code: SubscribeErrorCode,
    message: string,
    /** The broker socket concerned. */
    readonly path: string,
    /** For `unknown-measurement`: the closest known name, when one is close. */
    readonly suggestion?: string,
  ) {
    super(message);
  }
}

/** The single sentence printed when nothing listens at the broker socket. */
export function noBrokerMessage(path: string): string {
  return `no broker at ${path}: start one with \`deno task broker\` (or \`deno task start\`)`;
}
