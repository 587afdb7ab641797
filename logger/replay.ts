/**
 * `replay`: sends logged datagrams back to their UDP ports at the recorded pace, or faster; the
 * packets of serial and TCP sources go, framed again, to a device or TCP address
 * (`replay_streams.ts`).
 */
import { isIP } from "node:net";
import {
  type CommandSpec,
  numberOption,
  parseCommand,
  runCommand,
  UsageError,
  UserError,
} from "../cli/args.ts";
import { Batch, GswError, MAX_DATAGRAM, UdpSocket, Waitset, WRITABLE } from "../ffi/mod.ts";
import { type LogEntry, LogReader } from "./format.ts";
import { configForLog, logFiles, totalSize } from "./paths.ts";
import { StreamTargets, type TargetOption, targetOptions } from "./replay_streams.ts";
import type { Config } from "../config/types.ts";
import { bytesText, plural } from "./text.ts";
import { sleep } from "../cli/sleep.ts";

const SPEC: CommandSpec = {
  name: "replay",
  usage:
    "replay LOG… [--speed X | --as-fast-as-possible] [--host H] [--port-offset N] [--serial [SOURCE=]DEVICE] [--tcp [SOURCE=]HOST:PORT] [--tcp-listen [SOURCE=]HOST:PORT] [--config FILE]",
  help: `
Sends every logged datagram, in log order, to the UDP port it arrived on, at the pace it was
received (times --speed), so decom decodes a recorded run as it did live. LOG is a log file or
a run directory (all its gsw-NNNN.gswlog files, in order). Damaged records are skipped and
counted. A record decom stored truncated (longer than its receive buffer) is sent at its
original length, zero-filled, so decom rejects it as oversize again. Time restarts at the
first record of each run, so replaying several runs does not wait out the hours between them.

Packets of serial and TCP sources (no UDP port) are written to where you say, each framed
again with its source's framing from the config, as the radio sent it; stretches decom
rejected (bad CRC, garbage) are written back as received, so decom rejects them again.
Without a place to write them they are skipped and counted.

Options:
  --speed X                pace multiplier (default 1; 10 = ten times faster)
  --as-fast-as-possible    no pacing; a full socket buffer is waited out, never dropped
  --host H                 IPv4 address to send to (default 127.0.0.1)
  --port-offset N          add N to every destination port (e.g. to replay beside a live decom)
  --serial [SOURCE=]DEV    write a serial source's packets to DEV at the source's line settings
                           (a USB serial adapter, or one end of a PTY pair whose other end decom
                           opens); SOURCE= may be left out when the config has one such source
  --tcp [SOURCE=]H:P       connect to H:P (a decom whose source listens) and write them there
  --tcp-listen [SOURCE=]H:P  listen on H:P for a decom whose source connects, then write them
                           (waits up to 60 s for it)
  --config FILE            config whose sources' framings to use (default: the config.yaml the
                           logger copied beside the log)

Examples:
  deno task replay logs/2025-06-01T14-03-12Z
  deno task replay logs/2025-06-01T14-03-12Z/gsw-0002.gswlog --speed 5
  deno task replay run.gswlog --as-fast-as-possible --port-offset 1000
  deno task replay logs/2025-06-01T14-03-12Z --serial radio=/dev/ttyUSB1
  deno task replay logs/2025-06-01T14-03-12Z --tcp 127.0.0.1:5600`,
  options: {
    speed: { type: "string" },
    "as-fast-as-possible": { type: "boolean" },
    host: { type: "string" },
    "port-offset": { type: "string" },
    serial: { type: "string", multiple: true },
    tcp: { type: "string", multiple: true },
    "tcp-listen": { type: "string", multiple: true },
    config: { type: "string" },
  },
  positionals: true,
};

/** Datagrams per sendmmsg call. */
const MAX_BATCH = 256;
/** Bytes of datagrams per call: enough for a full batch of typical packets. */
const BUFFER_BYTES = 4 << 20;
/** Sleeping for less than this is not worth a timer: send now. */
const MIN_SLEEP_MS = 1;
const PROGRESS_MS = 250;

interface Options {
  /** 0: as fast as possible. */
  speed: number;
  host: string;
  portOffset: number;
  /** Where the packets of serial and TCP sources go, with the config of their framings. */
  streams?: { targets: TargetOption[]; config: Config };
}

export async function main(args: string[]): Promise<number> {
  return await runCommand(SPEC, async () => {
    const { values, help, positionals } = parseCommand(SPEC, args);
    if (help) return 0;
    if (positionals.length === 0) {
      throw new UsageError("which log? give a log file or run directory");
    }
    if (values.speed !== undefined && values["as-fast-as-possible"]) {
      throw new UsageError("give --speed or --as-fast-as-possible, not both");
    }
    const speed = numberOption(values.speed, "speed", { min: 1e-6 }) ?? 1;
    const portOffset = numberOption(values["port-offset"], "port-offset", {
      min: -65535,
      max: 65535,
      integer: true,
    }) ??
      0;
    const host: string = values.host ?? "127.0.0.1";
    if (isIP(host) !== 4) throw new UsageError(`--host takes an IPv4 address, not "${host}"`);
    const files = await logFiles(positionals);
    const targets = targetOptions(values);
    const config = targets.length > 0 ? await configForLog(files, values.config) : undefined;
    try {
      return await replay(files, {
        speed: values["as-fast-as-possible"] ? 0 : speed,
        host,
        portOffset,
        streams: config && { targets, config },
      });
    } catch (e) {
      if (e instanceof GswError) throw new UserError(e.message);
      throw e;
    }
  });
}

class Sender {
  readonly #socket = UdpSocket.sender();
  readonly #batch = new Batch(MAX_BATCH);
  readonly #ws = new Waitset();
  readonly #buf = new Uint8Array(BUFFER_BYTES);
  readonly #lens = new Uint32Array(MAX_BATCH);
  readonly #ports = new Uint16Array(MAX_BATCH);
  #n = 0;
  #used = 0;
  sent = 0;
  bytes = 0;
  /** Times the socket buffer was full and the sender waited. */
  waits = 0;

  constructor(readonly host: string) {
    this.#ws.add(this.#socket.fd, 0, WRITABLE);
  }

  /** True when a datagram of `length` bytes does not fit before a `flush`. */
  full(length: number): boolean {
    return this.#n === MAX_BATCH || this.#used + length > this.#buf.length;
  }

  /** Queues one datagram of `length` bytes (`data`, zero-filled past its end); see `full`. */
  add(data: Uint8Array, length: number, port: number): void {
    this.#buf.set(data, this.#used);
    if (length > data.length) this.#buf.fill(0, this.#used + data.length, this.#used + length);
    this.#lens[this.#n] = length;
    this.#ports[this.#n] = port;
    this.#n++;
    this.#used += length;
  }

  /** Sends everything queued; when the kernel takes only part, waits and sends the rest. */
  async flush(): Promise<void> {
    let done = 0;
    let at = 0;
    while (done < this.#n) {
      const k = this.#batch.send(
        this.#socket.fd,
        this.#buf.subarray(at, this.#used),
        this.#lens.subarray(done, this.#n),
        this.host,
        0,
        this.#ports.subarray(done, this.#n),
      );
      for (let i = done; i < done + k; i++) at += this.#lens[i];
      done += k;
      if (done < this.#n) {
        // EAGAIN/ENOBUFS: the socket buffer is full. Wait for room, never drop.
        this.waits++;
        await this.#ws.wait(5);
      }
    }
    this.sent += this.#n;
    this.bytes += this.#used;
    this.#n = 0;
    this.#used = 0;
  }

  close(): void {
    this.#ws.close();
    this.#batch.close();
    this.#socket.close();
  }
}

async function replay(files: string[], opts: Options): Promise<number> {
  const reader = new LogReader(files);
  const sender = new Sender(opts.host);
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  let streams: StreamTargets | undefined;
  try {
    streams = opts.streams &&
      await StreamTargets.open(opts.streams.targets, opts.streams.config, console.log, stop.signal);
  } catch (e) {
    sender.close();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    if (stop.signal.aborted) return 130;
    throw e;
  }
  const flush = async () => {
    await sender.flush();
    await streams?.flush(stop.signal);
  };
  const tty = Deno.stdout.isTerminal();
  const total = tty ? await totalSize(files) : 0;
  const encoder = new TextEncoder();
  const started = performance.now();
  let nextProgress = started + PROGRESS_MS;
  let skippedPort = 0;
  let skippedStream = 0;
  let padded = 0;
  // Pacing: each record is due `(time - runStart) / speed` after the wall time its run began
  // replaying; `due` never goes back, so records of two sources slightly out of order in the
  // file go out at once instead of waiting.
  let runId: bigint | undefined;
  let runT0 = 0n;
  let runWall = started;
  let due = 0;
  let logSpanNs = 0n;
  let first: LogEntry | undefined;
  let last: LogEntry | undefined;
  try {
    for await (const batch of reader.batches()) {
      if (stop.signal.aborted) break;
      for (const r of batch) {
        const stream = streams?.has(r.source) ?? false;
        const port = r.dstPort + opts.portOffset;
        if (!stream && r.dstPort === 0) {
          skippedStream++;
          continue;
        }
        if (!stream && (port < 1 || port > 65535)) {
          skippedPort++;
          continue;
        }
        if (r.header.runStartNs !== runId) {
          if (first && last) logSpanNs += last.timeNs - first.timeNs;
          runId = r.header.runStartNs;
          runT0 = r.timeNs;
          runWall = performance.now();
          due = 0;
          first = r;
        }
        last = r;
        if (opts.speed > 0) {
          const at = Number(r.timeNs - runT0) / 1e6 / opts.speed;
          if (at > due) due = at;
          if (runWall + due - performance.now() >= MIN_SLEEP_MS) {
            await flush();
            const wait = runWall + due - performance.now();
            if (wait >= MIN_SLEEP_MS) await sleep(wait, stop.signal);
            if (stop.signal.aborted) break;
          }
        }
        let length = r.payload.length;
        if (r.truncated) {
          length = Math.max(length, Math.min(r.origLength, MAX_DATAGRAM));
          padded++;
        }
        if (stream) {
          if (streams!.add(r, length)) await streams!.flush(stop.signal);
        } else {
          if (sender.full(length)) await sender.flush();
          sender.add(r.payload, length, port);
        }
        if (tty && performance.now() >= nextProgress) {
          nextProgress = performance.now() + PROGRESS_MS;
          const pct = total > 0 ? Math.min(100, (100 * reader.bytesRead) / total).toFixed(0) : "?";
          const logTime = Number(r.timeNs - runT0) / 1e9;
          await Deno.stdout.write(encoder.encode(
            `\rreplay: ${pct}%  ${sender.sent} packets  log time +${logTime.toFixed(1)} s   `,
          ));
        }
      }
    }
    await flush();
  } catch (e) {
    // Ctrl-C while waiting for room on a device or socket: stop as between records.
    if (!stop.signal.aborted) throw e;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
    sender.close();
    streams?.close();
  }
  if (first && last) logSpanNs += last.timeNs - first.timeNs;
  if (tty) await Deno.stdout.write(encoder.encode("\n"));

  const s = reader.stats;
  const elapsed = (performance.now() - started) / 1000;
  const pace = opts.speed > 0 ? `${opts.speed}× speed` : "as fast as possible";
  console.log(
    `replay: sent ${
      sender.sent > 0 || !streams
        ? `${plural(sender.sent, "packet")} (${bytesText(sender.bytes)}) to ${opts.host}${
          opts.portOffset ? ` (ports ${opts.portOffset > 0 ? "+" : ""}${opts.portOffset})` : ""
        }${streams ? ` and ` : ""}`
        : ""
    }${
      streams
        ? `${plural(streams.totals.records, "record")} (${
          bytesText(streams.totals.bytes)
        }) to serial and TCP`
        : ""
    } ` +
      `from ${plural(s.files, "file")} in ${elapsed.toFixed(1)} s ` +
      `(log time ${(Number(logSpanNs) / 1e9).toFixed(1)} s, ${pace})` +
      (stop.signal.aborted ? "; stopped early" : ""),
  );
  const notes: string[] = [];
  if (sender.waits) {
    notes.push(`waited ${plural(sender.waits, "time")} for a full socket buffer (nothing dropped)`);
  }
  for (const line of streams?.summary() ?? []) notes.push(line);
  if (skippedStream) {
    notes.push(
      `records of serial or TCP sources skipped (no --serial, --tcp or --tcp-listen for their source): ${skippedStream}`,
    );
  }
  if (padded) notes.push(`truncated records sent zero-filled to their original length: ${padded}`);
  if (skippedPort) {
    notes.push(`records skipped because their port plus offset is not 1–65535: ${skippedPort}`);
  }
  if (s.corrupt) notes.push(`damaged regions skipped: ${s.corrupt} (${bytesText(s.corruptBytes)})`);
  if (s.truncated) notes.push(`files ending in a truncated record (lost): ${s.truncated}`);
  for (const n of notes) console.log(`replay: ${n}`);
  for (const p of s.problems) console.error(`replay: ${p}`);
  return s.badFiles > 0 ? 1 : 0;
}
