/**
 * What a subscription hands its user: the updates, link statuses and options of
 * `subscribe()` (lib/subscription.ts).
 */
import type { RawValue } from "../config/decode.ts";

/** A measurement's engineering value: an enum label, a converted number, or the raw value. */
export type Value = RawValue;

/** One new value of a followed measurement. */
export interface Update {
  /** The measurement's key in the config. */
  measurement: string;
  /** Its display name (the key when the config gives none). */
  name: string;
  /** Engineering value: converted number, enum label, or the raw value when neither applies. */
  value: Value;
  /** The raw value as sent (integers wider than 48 bits are bigints). */
  raw: RawValue;
  /** Unit of `value`, if the config gives one. */
  unit: string | undefined;
  /** decom's sequence number for this measurement: one more per value it published. */
  seq: number;
  /** When decom received the packet (CLOCK_REALTIME, ns since the epoch). */
  timestampNs: bigint;
  /** Values of this measurement published since the previous update delivered, never seen. */
  skipped: number;
  /**
   * Present (true) when the value may no longer be current: its broker is away (from
   * `latest()`), or it is older than three expected update periods of the measurement.
   */
  stale?: true;
}

/** What happened to the link with a broker (for status lines; never needed for values). */
export interface LinkStatus {
  /** The broker socket. */
  broker: string;
  connected: boolean;
  /** One line for people: "broker went away; reconnecting", "reconnected". */
  message: string;
}

export interface SubscribeOptions {
  /** The run directory holding the broker sockets (default: as every gsw process finds it). */
  runDir?: string;
  /**
   * At most this many updates per second per measurement; the broker sends the newest. 0 (the
   * default) for every update, else at least MIN_RATE_HZ (0.001: one per 1000 s).
   */
  maxRateHz?: number;
  /** Reconnect when a broker goes away and comes back (default true). */
  reconnect?: boolean;
  /** Aborting it closes the subscription (a pending iteration ends). */
  signal?: AbortSignal;
  /** Called when a broker goes away or comes back. */
  onStatus?: (status: LinkStatus) => void;
  /** Who is asking, as brokers log it (default "library"). */
  client?: string;
  /**
   * Read values straight from decom's shared memory (one hop: decom wakes this process
   * itself) wherever the broker can hand them over — the default. False asks the broker to
   * copy every value into a segment of its own (two hops), as a `maxRateHz` always does.
   */
  direct?: boolean;
}

/** How often a subscription tries a broker that went away (updates resume within 1 s). */
export const RETRY_MS = 150;
