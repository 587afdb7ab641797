/**
 * Where the dashboard's data comes from: every datagram decom received (`openPackets`, the
 * packet ring), decoded with `decodePacket` into every sample of every measurement, and the
 * newest value of every measurement with its staleness (`subscribe`, which also carries the
 * link-health measurements no packet holds). The dashboard is one more reader: decom never
 * waits for it.
 */
import { decodePacket, limitState, type RawValue } from "../config/decode.ts";
import type { Config, Measurement } from "../config/types.ts";
import { openPackets, type PacketStatus, type PacketStream } from "../lib/packets.ts";
import { RETRY_MS, subscribe, type Subscription, type Update } from "../lib/subscription.ts";
import { SubscribeError } from "../lib/errors.ts";

/** A number to plot for a value, or null for what cannot be plotted (text, bytes). */
export function plotValue(m: Measurement, raw: RawValue, value: RawValue): number | null {
  // Enums are plotted by their raw value; the page labels the axis and the read-out.
  const v = m.enum ? raw : value;
  switch (typeof v) {
    case "number":
      return v;
    case "bigint":
      return Number(v);
    case "boolean":
      return v ? 1 : 0;
  }
  return null;
}

/** Whether a measurement can be plotted at all. */
export function plottable(m: Measurement): boolean {
  return m.type !== "string" && m.type !== "bytes";
}

/** The newest value of a measurement as the page shows it. */
export interface Latest {
  /** The engineering value: number, text (enum label, string), bool; bigints as text. */
  value: number | string | boolean;
  raw: number | string | boolean;
  limit: "ok" | "warn" | "alarm";
  /** Receive time of the packet, ms since the epoch. */
  t: number;
  stale: boolean;
}

function jsonValue(v: RawValue): number | string | boolean {
  if (typeof v === "bigint") return v.toString();
  if (v instanceof Uint8Array) {
    return Array.from(v, (b) => b.toString(16).padStart(2, "0")).join(" ");
  }
  return v;
}

export interface FeedHandlers {
  /** Every sample of one packet (plottable measurements only). */
  onSamples(t: number, samples: readonly [number, number][]): void;
  /** Datagrams lost by the dashboard's own reader (it fell behind decom's ring). */
  onLost(n: number): void;
  onStatus(line: string): void;
}

/** Reads every datagram and every measurement's newest value until closed. */
export class Feed {
  readonly latest = new Map<number, Latest>();
  /** Samples seen per measurement since the last `takeCounts` (for rates). */
  readonly #counts = new Map<number, number>();
  readonly sources = new Map<string, boolean>();
  readonly #byKey: Map<string, Measurement>;
  #stream: PacketStream | null = null;
  #sub: Subscription | null = null;
  #closed = false;
  lost = 0;

  constructor(
    readonly config: Config,
    readonly runDir: string,
    readonly handlers: FeedHandlers,
  ) {
    for (const s of config.sources) this.sources.set(s.name, false);
    this.#byKey = new Map(config.measurements.map((m) => [m.key, m]));
  }

  start(): void {
    this.#stream = openPackets(this.config, {
      runDir: this.runDir,
      client: "dashboard",
      onStatus: (s: PacketStatus) => {
        this.sources.set(s.source, s.connected);
        this.handlers.onStatus(s.message);
      },
    });
    void this.#readPackets(this.#stream);
    void this.#readValues();
  }

  /** Samples per measurement since the last call. */
  takeCounts(): Map<number, number> {
    const c = new Map(this.#counts);
    this.#counts.clear();
    return c;
  }

  async #readPackets(stream: PacketStream): Promise<void> {
    const { config } = this;
    const samples: [number, number][] = [];
    for await (const batch of stream) {
      if (batch.lost) {
        this.lost += batch.lost;
        this.handlers.onLost(batch.lost);
      }
      for (const p of batch.packets) {
        if (p.packet < 0) continue;
        const t = Number(p.timestampNs) / 1e6;
        samples.length = 0;
        for (const f of decodePacket(config, p.packet, p.bytes)) {
          const m = f.measurement;
          const v = plotValue(m, f.raw, f.value);
          if (v === null) continue;
          samples.push([m.index, v]);
          this.#counts.set(m.index, (this.#counts.get(m.index) ?? 0) + 1);
        }
        this.handlers.onSamples(t, samples);
      }
    }
  }

  /** The newest value of every measurement (health included), waiting for a broker. */
  async #readValues(): Promise<void> {
    const names = this.config.measurements.map((m) => m.key);
    let said = false;
    while (!this.#closed) {
      try {
        this.#sub = subscribe(names, { runDir: this.runDir, client: "dashboard" });
      } catch (e) {
        if (!(e instanceof SubscribeError) || e.code !== "no-broker") throw e;
        if (!said) this.handlers.onStatus(`${e.message}; waiting for it`);
        said = true;
        await new Promise((r) => setTimeout(r, RETRY_MS));
        continue;
      }
      for await (const u of this.#sub) this.#accept(u);
      return;
    }
  }

  #accept(u: Update): void {
    const m = this.#byKey.get(u.measurement);
    if (!m) return;
    if (m.health) this.#counts.set(m.index, (this.#counts.get(m.index) ?? 0) + 1);
    this.latest.set(m.index, {
      value: jsonValue(u.value),
      raw: jsonValue(u.raw),
      limit: limitState(m, u.value),
      t: Number(u.timestampNs) / 1e6,
      stale: u.stale === true,
    });
  }

  /** Whether the newest value of `m` is stale now (its source away, or too old). */
  staleNow(m: Measurement): boolean {
    const l = this.latest.get(m.index);
    if (!l) return false;
    if (!this.#sub?.connected) return true;
    const hz = m.expectedRateHz;
    return hz !== undefined && Date.now() - l.t > Math.max(50, 3000 / hz);
  }

  close(): void {
    this.#closed = true;
    this.#stream?.close();
    this.#sub?.close();
  }
}
