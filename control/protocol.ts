/**
 * The control-plane messages between gsw processes: small, versioned JSON messages over UNIX
 * SEQPACKET sockets, with a segment's three descriptors attached to the replies that hand
 * over channels. Every request gets exactly one reply; errors are explicit, with a code a
 * program can act on and a message a person can.
 *
 * - broker → decom (`decom.<source>.sock`): `attach` → the source's channels.
 * - anyone → decom: `open` → the source's broadcast segment (every value for direct readers,
 *   every datagram in its packet ring).
 * - subscriber → broker (`broker.sock` or `broker.m.<KEY>.sock`): `subscribe` → channels of
 *   the requested measurements, read directly from decom's broadcast segments where possible;
 *   `list` → what the broker serves.
 */
import type { Measurement } from "../config/mod.ts";

/** Version of these messages; a peer with another version gets a `version` error. */
export const PROTOCOL_VERSION = 1;

/**
 * Largest control message, either way. A SEQPACKET message must fit the sender's socket
 * buffer (212992 bytes by default on Linux), so this stays below it. A subscription reply
 * describes each measurement in ~150 bytes (more with enums), so about a thousand fit in one
 * subscription: a broker asked for more answers `too-large`, saying how many fit, and the
 * library asks for a long list in several subscriptions.
 */
export const MAX_CONTROL_MESSAGE = 200 * 1024;

/**
 * Most measurements one `subscribe` request may name (a longer list is a `bad-request`). The
 * library never asks for more than this in one request.
 */
export const MAX_SUBSCRIBE_NAMES = 4096;

/**
 * Lowest `maxRateHz` a subscription may ask for, other than 0 (every update): one value per
 * 1000 s. A lower rate is a `bad-request`: its interval would overflow the broker's timers.
 */
export const MIN_RATE_HZ = 0.001;

/** broker → decom: give me a segment with channels for these measurements (keys). */
export interface AttachRequest {
  v: number;
  op: "attach";
  /** sha256 of the config the broker loaded; decom refuses a different one. */
  configHash: string;
  /** Measurement keys wanted; omitted for every measurement of the source. */
  measurements?: string[];
  /** Who asks, for logs. */
  client: string;
}

/** anyone → decom: give me your broadcast segment. */
export interface OpenRequest {
  v: number;
  op: "open";
  /** sha256 of the config the client loaded; decom refuses a different one. */
  configHash: string;
  client: string;
}

/** subscriber → broker: give me a segment with channels for these measurements. */
export interface SubscribeRequest {
  v: number;
  op: "subscribe";
  /** Measurement keys or names. */
  measurements: string[];
  /**
   * At most this many updates per second per measurement (0 or omitted: every update);
   * otherwise at least MIN_RATE_HZ.
   */
  maxRateHz?: number;
  /**
   * Read decom's broadcast segments directly where possible (one hop, no copy by the broker);
   * ignored with a maxRateHz, which only the broker can enforce.
   */
  direct?: boolean;
  client: string;
}

/** Anyone → broker: which measurements do you serve, and which are live? */
export interface ListRequest {
  v: number;
  op: "list";
  client: string;
}

export type Request = AttachRequest | OpenRequest | SubscribeRequest | ListRequest;

/** One channel of a handed-over segment: which measurement it carries. */
export interface ChannelInfo {
  /** Channel index in the segment (-1 in a subscription reply when `direct` says where). */
  channel: number;
  /** The measurement's key in the config. */
  key: string;
  /**
   * The measurement, fully described (without its description text), so a subscriber can
   * decode without the config. Omitted in decom's replies: the broker has the config.
   */
  measurement?: Measurement;
  /** In decom's `open` reply: the bell its changes ring. */
  bell?: number;
  /** In a subscription reply: read it from direct source `source`, channel `channel`. */
  direct?: { source: number; channel: number };
}

/**
 * A broadcast segment handed over in a subscription reply. Its descriptors follow the
 * point-to-point segment's (if any channel uses one): data memfd, control memfd, a pidfd of
 * the decom writing it (readable when that decom exits), then the bells listed.
 */
export interface DirectSource {
  source: string;
  pid: number;
  bells: number[];
}

/** decom's answer to `open`: descriptors data memfd, control memfd, then bells 0…bells-1. */
export interface BroadcastReply {
  v: number;
  ok: true;
  configName: string;
  configHash: string;
  source: string;
  channels: ChannelInfo[];
  bells: number;
  ringBell: number;
  ringSize: number;
}

/** Reply carrying a segment (its descriptors are attached to the message). */
export interface ChannelsReply {
  v: number;
  ok: true;
  /** The config the channels' values follow. */
  configName: string;
  configHash: string;
  channels: ChannelInfo[];
  /** Sources read directly (subscription replies to a `direct` request). */
  direct?: DirectSource[];
  /**
   * Some channels go through the broker only because their decom is away: ask again later
   * to read them directly.
   */
  upgradable?: boolean;
}

export interface ListReply {
  v: number;
  ok: true;
  configName: string;
  configHash: string;
  measurements: { key: string; name: string; live: boolean }[];
}

/** Error codes a program can act on. */
export type ErrorCode =
  | "version" // the peer speaks another protocol version
  | "bad-request" // malformed message
  | "unknown-measurement" // with `suggestion` when one is close
  | "config-mismatch" // the peers loaded different configs
  | "not-allowed" // another user
  | "too-many" // a limit (subscribers, channels) is reached: try again later
  | "too-large" // the reply would exceed MAX_CONTROL_MESSAGE: ask for fewer measurements at once
  | "internal";

export interface ErrorReply {
  v: number;
  ok: false;
  error: ErrorCode;
  message: string;
  /** For unknown-measurement: the closest known name. */
  suggestion?: string;
}

export type Reply = ChannelsReply | BroadcastReply | ListReply | ErrorReply;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encode(message: Request | Reply): Uint8Array {
  const bytes = encoder.encode(JSON.stringify(message));
  if (bytes.byteLength > MAX_CONTROL_MESSAGE) {
    throw new RangeError(`control message of ${bytes.byteLength} bytes exceeds the limit`);
  }
  return bytes;
}

/** A message that could not be understood; `reply` is what to send back. */
export class ProtocolError extends Error {
  override name = "ProtocolError";
  constructor(readonly reply: ErrorReply) {
    super(reply.message);
  }
}

export function errorReply(error: ErrorCode, message: string, suggestion?: string): ErrorReply {
  return suggestion === undefined
    ? { v: PROTOCOL_VERSION, ok: false, error, message }
    : { v: PROTOCOL_VERSION, ok: false, error, message, suggestion };
}

function parseObject(bytes: Uint8Array): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes));
  } catch {
    throw new ProtocolError(errorReply("bad-request", "the message is not UTF-8 JSON"));
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new ProtocolError(errorReply("bad-request", "the message is not a JSON object"));
  }
  const v = (value as Record<string, unknown>).v;
  if (v !== PROTOCOL_VERSION) {
    throw new ProtocolError(
      errorReply(
        "version",
        `protocol version ${
          JSON.stringify(v)
        } is not supported; this gsw speaks version ${PROTOCOL_VERSION}: run the same gsw version everywhere`,
      ),
    );
  }
  return value as Record<string, unknown>;
}

function isStringArray(x: unknown, max: number): x is string[] {
  return Array.isArray(x) && x.length <= max &&
    x.every((s) => typeof s === "string" && s.length <= 256);
}

/** Whether `rate` is a maxRateHz a subscription may ask for: 0, or finite and >= MIN_RATE_HZ. */
export function validRate(rate: unknown): rate is number {
  return rate === 0 || (typeof rate === "number" && rate >= MIN_RATE_HZ && isFinite(rate));
}

/** Parses and validates a request; throws ProtocolError with the reply to send otherwise. */
export function parseRequest(bytes: Uint8Array): Request {
  const m = parseObject(bytes);
  const client = typeof m.client === "string" ? m.client.slice(0, 100) : "unknown";
  const bad = (why: string) => new ProtocolError(errorReply("bad-request", why));
  switch (m.op) {
    case "attach": {
      if (typeof m.configHash !== "string") throw bad("attach needs configHash (a string)");
      if (m.measurements !== undefined && !isStringArray(m.measurements, 65536)) {
        throw bad("attach: measurements must be a list of names");
      }
      return {
        v: PROTOCOL_VERSION,
        op: "attach",
        configHash: m.configHash,
        measurements: m.measurements as string[] | undefined,
        client,
      };
    }
    case "open": {
      if (typeof m.configHash !== "string") throw bad("open needs configHash (a string)");
      return { v: PROTOCOL_VERSION, op: "open", configHash: m.configHash, client };
    }
    case "subscribe": {
      if (
        !isStringArray(m.measurements, MAX_SUBSCRIBE_NAMES) || m.measurements.length === 0
      ) {
        throw bad(
          `subscribe needs measurements: a non-empty list of at most ${MAX_SUBSCRIBE_NAMES} names`,
        );
      }
      const rate = m.maxRateHz;
      if (rate !== undefined && !validRate(rate)) {
        throw bad(
          `subscribe: maxRateHz must be 0 (every update) or a number from ${MIN_RATE_HZ} up, not ${
            JSON.stringify(rate)
          }`,
        );
      }
      return {
        v: PROTOCOL_VERSION,
        op: "subscribe",
        measurements: m.measurements,
        maxRateHz: rate as number | undefined,
        direct: m.direct === true,
        client,
      };
    }
    case "list":
      return { v: PROTOCOL_VERSION, op: "list", client };
    default:
      throw bad(`unknown op ${JSON.stringify(m.op)} (expected attach, open, subscribe or list)`);
  }
}

/** Parses a reply; throws ProtocolError if it is not one this version understands. */
export function parseReply(bytes: Uint8Array): Reply {
  const m = parseObject(bytes);
  if (m.ok === false) {
    if (typeof m.error !== "string" || typeof m.message !== "string") {
      throw new ProtocolError(errorReply("bad-request", "malformed error reply"));
    }
    return m as unknown as ErrorReply;
  }
  if (m.ok !== true || typeof m.configHash !== "string") {
    throw new ProtocolError(errorReply("bad-request", "malformed reply"));
  }
  if (!Array.isArray(m.channels) && !Array.isArray(m.measurements)) {
    throw new ProtocolError(
      errorReply("bad-request", "reply has neither channels nor measurements"),
    );
  }
  return m as unknown as Reply;
}
