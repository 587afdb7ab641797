/**
 * A subscription's links to brokers and what a broker hands over on each: a point-to-point
 * segment the broker copies values into, and broadcast segments read straight from decom
 * (one hop: decom's shared memory, decom's bells, decom's pidfd to notice its exit). Here:
 * the link model, its waitset tokens, attaching a reply's descriptors, reading, releasing.
 */
import type { Measurement } from "../config/types.ts";
import type { ChannelsReply, ErrorCode } from "../control/protocol.ts";
import {
  BroadcastReader,
  closeFd,
  GswError,
  OwnedFd,
  READABLE,
  type Sample,
  type SegmentFds,
  SegmentReader,
  type UnixConnection,
  type Waitset,
} from "../ffi/mod.ts";
import type { Update } from "./updates.ts";

/** One measurement the subscription follows. */
export interface Followed {
  /** The name or key as the caller wrote it (what brokers are asked for). */
  request: string;
  /** Its description from the broker (set once a broker answered). */
  spec: Measurement | undefined;
  link: Link | undefined;
  /** Where the link reads it: a broadcast segment (direct), else the point-to-point one. */
  part: DirectPart | undefined;
  channel: number;
  /** Newest value taken (kept while the broker is away). */
  last: Update | undefined;
  /** Sequence number of the last update delivered by iteration or `next()` (0: none). */
  deliveredSeq: number;
}

export type LinkState = "connecting" | "live" | "down";

/** One data source's broadcast segment, read directly. */
export interface DirectPart {
  source: string;
  reader: BroadcastReader;
  /** decom's process: readable when it exits (the segment then gets no new values). */
  pidfd: OwnedFd;
  bells: number[];
  /** Channel → measurement. */
  byChannel: Map<number, Followed>;
}

/** One connection to one broker socket and the segments it handed over. */
export interface Link {
  id: number;
  path: string;
  followed: Followed[];
  conn: UnixConnection | null;
  /** The broker's point-to-point segment (null when everything is read directly). */
  reader: SegmentReader | null;
  /** Channel index → measurement, for `reader`. */
  byChannel: Followed[];
  direct: DirectPart[];
  state: LinkState;
  /** When the request was sent (connecting) or the next attempt is due (down); ms. */
  at: number;
  /** Made after an outage: its first reply is a reconnection worth reporting. */
  after: boolean;
  /** …unless it only replaces a live link to read directly (nothing was lost). */
  quiet: boolean;
  /** When to ask again to read directly what the broker serves only while a decom is away. */
  upgradeAt: number;
}

/** Waitset tokens per link: its segment's doorbell, its connection, then per direct part
 * its bells and its pidfd. */
const TOKENS_PER_LINK = 64;
/** Most direct parts (data sources) one link can watch with its tokens. */
export const MAX_DIRECT_PARTS = (TOKENS_PER_LINK - 2) / 2;

export const bellToken = (l: Link) => l.id * TOKENS_PER_LINK;
export const connToken = (l: Link) => l.id * TOKENS_PER_LINK + 1;
const partBellToken = (l: Link, j: number) => l.id * TOKENS_PER_LINK + 2 + 2 * j;
const partExitToken = (l: Link, j: number) => l.id * TOKENS_PER_LINK + 3 + 2 * j;

/** What a token of some link means. */
export function decodeToken(
  token: number,
): { linkId: number; what: "bell" | "conn" | "exit"; part: number } {
  const k = token % TOKENS_PER_LINK;
  const linkId = Math.floor(token / TOKENS_PER_LINK);
  if (k === 1) return { linkId, what: "conn", part: -1 };
  if (k >= 2 && k % 2 === 1) return { linkId, what: "exit", part: (k - 3) / 2 };
  return { linkId, what: "bell", part: k >= 2 ? (k - 2) / 2 : -1 };
}

/**
 * Attaches the segments of a broker's reply: the point-to-point segment (first three
 * descriptors, if any channel is on it), then each direct source's data and control memfds,
 * decom's pidfd and its bells. Takes ownership of `fds` (closed on failure). Throws with a
 * sentence for people if the reply and descriptors disagree.
 */
export function attachReply(link: Link, reply: ChannelsReply, fds: number[]): void {
  const direct = reply.direct ?? [];
  const classic = reply.channels.some((c) => c.channel >= 0);
  const expected = (classic ? 3 : 0) + direct.reduce((n, d) => n + 3 + d.bells.length, 0);
  if (fds.length !== expected || direct.length > MAX_DIRECT_PARTS) {
    fds.forEach(closeFd);
    throw new Error(
      `the reply carries ${fds.length} descriptors for ${expected} (${direct.length} direct sources)`,
    );
  }
  let at = 0;
  try {
    if (classic) {
      at = 3; // handed over even if attaching fails: the native side closes them then
      link.reader = SegmentReader.attach(fds.slice(0, 3) as SegmentFds);
    }
    for (const d of direct) {
      const [data, control, pid] = fds.slice(at, at + 3);
      const bellFds = fds.slice(at + 3, at + 3 + d.bells.length);
      at += 3 + d.bells.length;
      const pidfd = new OwnedFd(pid, "pidfd");
      let reader: BroadcastReader;
      try {
        reader = BroadcastReader.attach(
          data,
          control,
          d.bells.map((index, i) => ({ index, fd: bellFds[i] })),
        );
      } catch (e) {
        pidfd.close();
        throw e;
      }
      link.direct.push({ source: d.source, reader, pidfd, bells: d.bells, byChannel: new Map() });
    }
  } catch (e) {
    fds.slice(at).forEach(closeFd);
    throw e;
  }
}

/**
 * Starts reading: each direct part follows its measurements' channels; every doorbell, bell
 * and pidfd goes into the waitset.
 */
export function watchLink(ws: Waitset, link: Link): void {
  if (link.reader) ws.addReader(link.reader, bellToken(link));
  link.direct.forEach((p, j) => {
    p.reader.follow([...p.byChannel.keys()]);
    for (const bell of p.bells) ws.addBell(p.reader, bell, partBellToken(link, j));
    ws.add(p.pidfd.fd, partExitToken(link, j), READABLE);
  });
}

/** Takes every new value of a link's segments. */
export function drainLink(link: Link, accept: (f: Followed, s: Sample) => void): void {
  link.reader?.takePending((s) => accept(link.byChannel[s.channel], s));
  for (const p of link.direct) p.reader.readChanged((s) => accept(p.byChannel.get(s.channel)!, s));
}

/** The newest value of one followed measurement, if there is a new one (never waits). */
export function takeOne(f: Followed): Sample | null {
  const link = f.link!;
  if (f.part) return f.part.reader.current(f.channel);
  return link.reader!.take(f.channel);
}

/** Closes a link's connection and segments (its values stay in `Followed.last`). */
export function releaseLink(ws: Waitset, link: Link): void {
  const quietly = (f: () => void) => {
    try {
      f();
    } catch {
      // Not in the set (or the set is closing): closing the descriptor is what matters.
    }
  };
  if (link.reader) {
    const reader = link.reader;
    quietly(() => ws.remove(reader.doorbellFd));
    reader.close();
    link.reader = null;
  }
  for (const p of link.direct) {
    for (const bell of p.bells) quietly(() => ws.remove(p.reader.bellFd(bell)));
    quietly(() => ws.remove(p.pidfd.fd));
    p.reader.close();
    p.pidfd.close();
  }
  link.direct = [];
  if (link.conn) {
    const conn = link.conn;
    quietly(() => ws.remove(conn.fd));
    conn.close();
    link.conn = null;
  }
}

// Timing and verdicts of a subscription's links to brokers (used by lib/subscription.ts).

/** How long a broker may take to answer a subscription before it counts as absent. */
export const REPLY_TIMEOUT_MS = 2000;
/** After a broker says it is overloaded (`too-many`, `internal`), try again this much later. */
export const BUSY_RETRY_MS = 1000;
/**
 * Most measurements asked of a broker on one connection: a reply describes each in ~150 bytes,
 * and must fit in one control message (the request too, names up to 256 characters). A broker
 * that still finds its reply too large says so (`too-large`), and the subscription asks again
 * in halves.
 */
export const REQUEST_CHUNK = 512;
/** `latest()` looks for hung-up brokers at most this often (it never waits). */
export const LINK_CHECK_MS = 100;
/** An update older than this many expected periods is stale. */
export const STALE_PERIODS = 3;
/** …but never stale within this long: scheduling jitter is not staleness. */
export const STALE_FLOOR_MS = 50;
/** Waitset tokens of descriptors the owner adds (`watchFd`), above every link's tokens. */
export const TOKEN_EXTRA = 0x4000_0000;
/**
 * A link served through the broker only because a decom was away asks again this much later,
 * to read directly once that decom is back.
 */
export const UPGRADE_MS = 1000;

/** Broker answers that no retry can fix. */
export const FATAL: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "version",
  "bad-request",
  "unknown-measurement",
  "config-mismatch",
  "not-allowed",
  "too-large", // for one measurement; more are asked for in smaller requests
]);

export function isAbsent(e: unknown): boolean {
  return e instanceof GswError &&
    ["ENOENT", "ECONNREFUSED", "ENOTDIR", "ENOTSOCK", "EPROTOTYPE"].includes(e.errno);
}
