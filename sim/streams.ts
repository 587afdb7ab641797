/**
 * Where the simulator sends the packets of serial and TCP sources, framed as their radio or
 * modem would frame them (the source's `framing`, CRC included):
 * - a TCP source decom listens on (`listen:`): the simulator connects to it, and connects again
 *   whenever decom (re)starts;
 * - a TCP source decom connects to (`connect:`): the simulator listens there and serves each
 *   connection decom makes;
 * - a serial source: only with `--serial [SOURCE=]DEV` (the other end of a PTY pair, or a USB
 *   serial adapter looped to the radio port); without it the source is skipped.
 * While nobody is connected a stream's packets are not sent, and are counted as such.
 */
import type { Config, Source } from "../config/types.ts";
import {
  encodeFrame,
  type FramingOptions,
  framingOptions,
  GswError,
  type StreamEndpoint,
  StreamOut,
} from "../ffi/mod.ts";
import { endpointOf, type TargetOption, targetSource } from "../logger/replay_streams.ts";
import { UsageError } from "../cli/args.ts";

/** How often to try a decom that refused the connection (it may not be up yet). */
export const RECONNECT_MS = 1000;
/**
 * Packets of one stream waiting for room (decom not reading, a line slower than the packets):
 * beyond this many, newer ones are counted as not sent instead of queueing without bound.
 */
export const MAX_QUEUED = 256;

interface Stream {
  source: Source;
  endpoint: StreamEndpoint;
  framing: FramingOptions;
  /** Open (a listener, or a device or connection); null while waiting to connect again. */
  out: StreamOut | null;
  /** When to try connecting again (performance.now() ms). */
  retryAt: number;
  /** The last problem said, so an outage is told once. */
  said: string;
  sent: number;
  /** Packets not sent because nobody was connected. */
  unsent: number;
  /** Packets not sent because too many were already waiting for room (`MAX_QUEUED`). */
  behind: number;
  /** Packets given up because the simulator stopped while they waited for room. */
  cut: number;
  /** Packets handed to `send` and not yet written or given up. */
  queued: number;
  /** The last write queued: writes of one stream go one after another, never interleaved. */
  busy: Promise<void>;
}

/** The serial and TCP sources the simulator writes to, by source name. */
export class SimStreams implements Disposable {
  readonly #streams = new Map<string, Stream>();
  #failure: Error | undefined;

  private constructor(readonly say: (line: string) => void) {}

  /**
   * Opens what can be opened now: the listeners and `--serial` devices. Connections to a decom
   * that listens are made (and remade) as packets come. Throws UsageError for a `--serial`
   * that names no serial source.
   */
  static open(config: Config, serial: TargetOption[], say: (line: string) => void): SimStreams {
    const streams = new SimStreams(say);
    try {
      const devices = new Map<Source, TargetOption>();
      for (const t of serial) {
        const source = targetSource(t, config);
        if (source.kind !== "serial") {
          throw new UsageError(`--serial ${t.value}: source "${source.name}" is not serial`);
        }
        if (devices.has(source)) {
          throw new UsageError(`source "${source.name}" is given two devices`);
        }
        devices.set(source, t);
      }
      for (const source of config.sources) {
        const st = source.stream;
        if (!st) continue;
        let endpoint: StreamEndpoint;
        if (source.kind === "serial") {
          const t = devices.get(source);
          if (!t) {
            say(
              `sim: serial source "${source.name}" (${st.device}) skipped: give --serial ${source.name}=DEV, the other end of its line`,
            );
            continue;
          }
          endpoint = endpointOf(t, source);
        } else if (st.listen) {
          endpoint = { kind: "connect", ...st.listen };
        } else {
          endpoint = { kind: "listen", ...st.connect! };
        }
        const s: Stream = {
          source,
          endpoint,
          framing: framingOptions(st.framing),
          out: null,
          retryAt: 0,
          said: "",
          sent: 0,
          unsent: 0,
          behind: 0,
          cut: 0,
          queued: 0,
          busy: Promise.resolve(),
        };
        streams.#streams.set(source.name, s);
        // A device or a listener opens now (a failure is the user's to fix: thrown); a
        // connection to decom is made when the first packet is due.
        if (endpoint.kind !== "connect") {
          s.out = new StreamOut(endpoint);
          if (endpoint.kind === "listen") {
            say(`sim: listening on ${s.out.where} for decom's source "${source.name}"`);
          }
        }
      }
    } catch (e) {
      streams.close();
      throw e;
    }
    return streams;
  }

  /** Whether packets of this source go through here. */
  has(source: string): boolean {
    return this.#streams.has(source);
  }

  /** The TCP addresses and devices written to, for the start line. */
  describe(): string[] {
    return [...this.#streams.values()].map((s) => {
      const e = s.endpoint;
      // Devices and listeners are open (StreamOut names them); a connection is made later.
      const where = (e.kind === "listen" ? "listening on " : "") +
        (s.out?.where ?? (e.kind === "connect" ? `${e.host}:${e.port}` : ""));
      return `${s.source.name} (${s.source.kind}, ${s.framing.kind}) ${where}`;
    });
  }

  /**
   * Queues one packet of `source` to be framed and written, without waiting: a stream that
   * cannot take it now (decom not reading, a slow line) holds up neither the other sources nor
   * the simulator. A packet due while nobody is connected, or with `MAX_QUEUED` already
   * waiting, is counted, not sent; a connection that breaks is said once and made again. A
   * device that fails ends the simulation (`failed()` says why).
   */
  send(source: string, packet: Uint8Array, signal: AbortSignal): void {
    const s = this.#streams.get(source)!;
    if (s.queued >= MAX_QUEUED) {
      s.behind++;
      this.#problem(
        s,
        `${
          s.out?.where ?? "the stream"
        } is not taking packets as fast as they come; counting the ones beyond ${MAX_QUEUED} as not sent`,
      );
      return;
    }
    s.queued++;
    s.busy = s.busy.then(() => this.#send(s, packet, signal)).catch((e) => {
      this.#failure ??= e as Error;
    }).finally(() => s.queued--);
  }

  /** Why a stream cannot go on (a device failed), if one cannot. */
  failed(): Error | undefined {
    return this.#failure;
  }

  /** Waits for every queued write (those still waiting when their signal aborts are cut). */
  async flush(): Promise<void> {
    await Promise.all([...this.#streams.values()].map((s) => s.busy));
  }

  async #send(s: Stream, packet: Uint8Array, signal: AbortSignal): Promise<void> {
    if (signal.aborted) {
      s.cut++;
      return;
    }
    if (!this.#connected(s)) {
      s.unsent++;
      return;
    }
    try {
      await s.out!.write(encodeFrame(s.framing, packet), signal);
      s.sent++;
      if (s.said) {
        this.say(`sim: source "${s.source.name}": sending to ${s.out!.where}`);
        s.said = "";
      }
    } catch (e) {
      if (signal.aborted) {
        s.cut++; // stopping: a write cut short is not a failure
        return;
      }
      if (!(e instanceof GswError)) throw e;
      if (s.endpoint.kind === "serial") throw e; // a device that fails does not come back by itself
      s.unsent++;
      this.#problem(s, `${e.message}; sending again once decom is back`);
      if (s.endpoint.kind === "listen") s.out!.drop();
      else this.#closeConnection(s);
    }
  }

  #connected(s: Stream): boolean {
    if (s.endpoint.kind === "listen") {
      try {
        if (s.out!.accept()) return true;
      } catch (e) {
        if (!(e instanceof GswError)) throw e;
        this.#problem(s, `${e.message}; waiting for the next connection`);
        return false;
      }
      this.#problem(s, `no decom connected to ${s.out!.where} yet`);
      return false;
    }
    if (s.out) return true;
    if (performance.now() < s.retryAt) return false;
    try {
      s.out = new StreamOut(s.endpoint);
      return true;
    } catch (e) {
      if (!(e instanceof GswError)) throw e;
      this.#problem(s, `${e.message}; trying every ${RECONNECT_MS / 1000} s`);
      return false;
    } finally {
      // After the attempt: a connect that took its whole timeout is not retried at once.
      s.retryAt = performance.now() + RECONNECT_MS;
    }
  }

  #closeConnection(s: Stream): void {
    s.out?.close();
    s.out = null;
    s.retryAt = performance.now() + RECONNECT_MS;
  }

  #problem(s: Stream, message: string): void {
    if (message === s.said) return;
    s.said = message;
    this.say(`sim: source "${s.source.name}": ${message}`);
  }

  /** Packets not sent, over every stream (nobody connected, or too many waiting). */
  get unsent(): number {
    let n = 0;
    for (const s of this.#streams.values()) n += s.unsent + s.behind + s.cut;
    return n;
  }

  /** One line per stream for the summary. */
  summary(): string[] {
    return [...this.#streams.values()].map((s) =>
      `sim: source "${s.source.name}": ${s.sent} packets framed (${s.framing.kind})` +
      (s.unsent ? `, ${s.unsent} not sent while nobody was connected` : "") +
      (s.behind ? `, ${s.behind} not sent while ${MAX_QUEUED} were waiting for room` : "") +
      (s.cut ? `, ${s.cut} still waiting for room when it stopped` : "")
    );
  }

  close(): void {
    for (const s of this.#streams.values()) s.out?.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
