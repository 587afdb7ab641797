/**
 * Where `replay` writes the packets of serial and TCP sources: `--serial`, `--tcp` and
 * `--tcp-listen` name a device or address per source; each logged packet is framed again with
 * its source's framing, as the radio framed it, and bytes decom rejected (a bad CRC, garbage)
 * are written back as they came, so decom rejects them again. Writes wait while a device or
 * socket is full: nothing is dropped.
 */
import type { Config, Source } from "../config/types.ts";
import {
  encodeFrame,
  FLAG_BAD_CRC,
  FLAG_UNFRAMED,
  type FramingOptions,
  framingOptions,
  type StreamEndpoint,
  StreamOut,
} from "../ffi/mod.ts";
import { UsageError } from "../cli/args.ts";
import type { LogEntry } from "./format.ts";

/** One `--serial`/`--tcp`/`--tcp-listen` option: `[SOURCE=]DEVICE` or `[SOURCE=]HOST:PORT`. */
export interface TargetOption {
  option: "serial" | "tcp" | "tcp-listen";
  source?: string;
  value: string;
}

/** How long a `--tcp-listen` waits for decom to connect. */
export const ACCEPT_TIMEOUT_MS = 60_000;
/** Bytes gathered per target before they are written. */
const FLUSH_BYTES = 64 << 10;

/** The stream options as given, in order. */
export function targetOptions(values: Record<string, string[] | undefined>): TargetOption[] {
  const out: TargetOption[] = [];
  for (const option of ["serial", "tcp", "tcp-listen"] as const) {
    for (const arg of values[option] ?? []) {
      // SOURCE= is a config name (no "/" or ":"), so a path or an address is never split.
      const m = /^([^=/:]+)=(.+)$/.exec(arg);
      out.push(m ? { option, source: m[1], value: m[2] } : { option, value: arg });
    }
  }
  return out;
}

function address(t: TargetOption): { host: string; port: number } {
  const m = /^(.+):(\d{1,5})$/.exec(t.value);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535 || (port === 0 && t.option === "tcp")) {
    throw new UsageError(`--${t.option} takes [SOURCE=]HOST:PORT, not "${t.value}"`);
  }
  return { host: m[1], port };
}

/**
 * The serial or TCP source of `config` a target option names (SOURCE= may be left out when the
 * config has one such source); UsageError otherwise.
 */
export function targetSource(t: TargetOption, config: Config): Source {
  const streams = config.sources.filter((s) => s.stream);
  const names = streams.map((s) => s.name).join(", ") || "none";
  if (t.source === undefined) {
    if (streams.length !== 1) {
      throw new UsageError(
        `--${t.option} ${t.value}: which source? write SOURCE=${t.value} (the config's serial and TCP sources: ${names})`,
      );
    }
    return streams[0];
  }
  const source = config.sources.find((s) => s.name === t.source);
  if (!source?.stream) {
    throw new UsageError(
      `--${t.option} ${t.source}=…: "${t.source}" is not a serial or TCP source of ${config.file} (those are: ${names})`,
    );
  }
  return source;
}

/** The endpoint a target option opens, with the source's line settings for a device. */
export function endpointOf(t: TargetOption, s: Source): StreamEndpoint {
  const st = s.stream!;
  if (t.option === "serial") {
    return {
      kind: "serial",
      device: t.value,
      baud: st.baud,
      dataBits: st.dataBits,
      parity: st.parity,
      stopBits: st.stopBits,
      flowControl: st.flowControl,
    };
  }
  return { kind: t.option === "tcp" ? "connect" : "listen", ...address(t) };
}

interface Target {
  source: Source;
  out: StreamOut;
  framing: FramingOptions;
  pending: Uint8Array[];
  pendingBytes: number;
  packets: number;
  rejected: number;
}

/** The open targets, by source index. */
export class StreamTargets implements Disposable {
  readonly #bySource = new Map<number, Target>();

  private constructor() {}

  /**
   * Resolves each option to a serial or TCP source of `config` (SOURCE= may be left out when
   * the config has one such source) and opens it; a `--tcp-listen` waits for decom to connect.
   * Throws UsageError for options that name no such source.
   */
  static async open(
    options: TargetOption[],
    config: Config,
    say: (line: string) => void,
    signal: AbortSignal,
  ): Promise<StreamTargets> {
    const targets = new StreamTargets();
    try {
      for (const t of options) {
        const source = targetSource(t, config);
        const index = config.sources.indexOf(source);
        if (targets.#bySource.has(index)) {
          throw new UsageError(`source "${source.name}" is given two places to write to`);
        }
        const out = new StreamOut(endpointOf(t, source));
        targets.#bySource.set(index, {
          source,
          out,
          framing: framingOptions(source.stream!.framing),
          pending: [],
          pendingBytes: 0,
          packets: 0,
          rejected: 0,
        });
        if (!out.connected) {
          say(
            `replay: listening on ${out.where} for decom's source "${source.name}" to connect`,
          );
          await out.ready(ACCEPT_TIMEOUT_MS, signal);
        }
      }
    } catch (e) {
      targets.close();
      throw e;
    }
    return targets;
  }

  /** Whether records of this source index are written here. */
  has(source: number): boolean {
    return this.#bySource.has(source);
  }

  /** Queues one record of a target's source; true when it is worth flushing now. */
  add(r: LogEntry, length: number): boolean {
    const t = this.#bySource.get(r.source)!;
    let bytes = r.payload;
    if (length > bytes.length) {
      bytes = new Uint8Array(length);
      bytes.set(r.payload);
    }
    if (r.flags & (FLAG_BAD_CRC | FLAG_UNFRAMED)) {
      t.rejected++;
    } else {
      bytes = encodeFrame(t.framing, bytes);
      t.packets++;
    }
    t.pending.push(bytes);
    t.pendingBytes += bytes.byteLength;
    return t.pendingBytes >= FLUSH_BYTES;
  }

  /** Writes everything queued, waiting while a device or socket is full. */
  async flush(signal: AbortSignal): Promise<void> {
    for (const t of this.#bySource.values()) {
      if (t.pendingBytes === 0) continue;
      const all = new Uint8Array(t.pendingBytes);
      let at = 0;
      for (const p of t.pending) {
        all.set(p, at);
        at += p.byteLength;
      }
      t.pending = [];
      t.pendingBytes = 0;
      await t.out.write(all, signal);
    }
  }

  /** Records written (packets framed and rejected stretches) and bytes, over every target. */
  get totals(): { records: number; bytes: number } {
    let records = 0;
    let bytes = 0;
    for (const t of this.#bySource.values()) {
      records += t.packets + t.rejected;
      bytes += t.out.bytes;
    }
    return { records, bytes };
  }

  /** One line per target for the summary. */
  summary(): string[] {
    return [...this.#bySource.values()].map((t) =>
      `source "${t.source.name}": ${t.packets} packets framed (${t.source.stream!.framing.kind}) ` +
      `and ${t.rejected} rejected stretches as received, ${t.out.bytes} bytes to ${t.out.where}` +
      (t.out.waits ? ` (waited ${t.out.waits} times for room; nothing dropped)` : "")
    );
  }

  close(): void {
    // The counts stay for `summary()`.
    for (const t of this.#bySource.values()) t.out.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
