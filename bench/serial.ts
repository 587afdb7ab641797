/**
 * The `serial` benchmark group (issue 10): decom reading a serial radio at its real line rate,
 * against the same decom reading the same packets over UDP, interleaved.
 *
 * The link: a PTY pair made by socat (`pty,raw,echo=0` both ends, as tests/stream_source_test.ts
 * and docs/config.md do), decom opening one end as a `type: serial` source at 921600 baud and
 * the benchmark writing to the other with `StreamOut` (as `replay --serial` does). A PTY has no
 * baud rate of its own, so the writer paces itself at the line's real rate: 921600 baud, 8N1,
 * is 92 160 bytes/s, and a frame is due when the bytes before it have had their time on the
 * line. Each clock tick (~1 ms) it writes the frames that are due, in one write, as a USB serial
 * adapter hands over what it holds about once a millisecond.
 *
 * The packet is the one the `ingest` group uses, 16 little-endian 4-byte unsigned measurements
 * (64 bytes), framed as a radio link would be: sync word EB90, the packet, CRC-16/CCITT (68
 * bytes on the line, 1355 packets/s). M00 carries a sequence number and M01…M15 a pseudo-random
 * pattern derived from it (any byte value, EB 90 included, occurs inside packets, so the
 * deframer's resynchronisation is exercised as on a real link).
 *
 * Phases: a serial phase and a UDP phase per round, in ABBA order over the rounds (serial, UDP,
 * UDP, serial, …). Each phase is its own run: a fresh private pipeline (temporary directory, run
 * directory, config), its own decom with a one-source config (the serial source, or a UDP
 * source on a free port; the same packet layout, so only the source differs), and for serial its
 * own socat. Two decoms with one source each rather than one config with both sources: decom
 * serves one source per process, so that is what a station runs, and each phase's CPU is then
 * decom's alone with nothing else arriving. No logger or broker runs (decom publishes without
 * them; it holds raw packets for an absent logger, ~1 MB here): what differs between the phases
 * is only the source. Every process a phase starts (decom, socat) dies with this process
 * (`setpriv --pdeathsig KILL`) and is killed when the phase ends, failed or not.
 *
 * Per phase: 1 s of warm-up at the rate (decom's code gets hot), then SECONDS measured. The
 * benchmark reads decom's every-packet ring (`openPackets`) as it goes and checks every
 * packet: in order, every byte as written ("touch the data"); a wrong packet fails the group.
 * decom's CPU: the time on CPU of all its threads (`/proc/<pid>/task/*\/schedstat`, ns; the
 * clock ticks of `/proc/<pid>/stat` are 10 ms, a few per cent of a 10 s window of a process at
 * ~3 % CPU) from the end of the warm-up until the ring has every packet sent, divided by the
 * measurements of the packets decoded in that window (16 per packet). Loss and rejections
 * come from decom's own exit summary (SIGTERM): packets sent minus datagrams received plus
 * rejected records; `serial_rejected` must be 0 for this clean input.
 *
 *   deno run --allow-all bench/serial.ts [--quick]
 */
import { Batch, encodeFrame, framingOptions, StreamOut, UdpSocket } from "../ffi/mod.ts";
import { parseConfig } from "../config/mod.ts";
import { decomSocket } from "../control/rundir.ts";
import { openPackets, type PacketStream } from "../lib/packets.ts";
import {
  eventually,
  Pipeline,
  type Proc,
  sleep,
  spawn,
  taskArgs,
} from "../tests/helpers/pipeline.ts";
import { spawnDying, voluntarySwitches } from "./lib/procs.ts";
import { schedNs } from "./lib/send.ts";
import { jsonLine, type Metric, metric } from "./lib/report.ts";

const BENCH = "serial";
const quick = Deno.args.includes("--quick");
const ROUNDS = quick ? 1 : 3;
const SECONDS = quick ? 2 : 10;
const WARMUP_S = 1;
const BAUD = 921_600;
/** 8N1: a start bit, 8 data bits, a stop bit per byte. */
const LINE_BYTES_PER_S = BAUD / 10;
const MEASUREMENTS = 16;
const PACKET_LEN = MEASUREMENTS * 4;
const SOURCE = "radio";

const MEASUREMENT_LINES = Array.from(
  { length: MEASUREMENTS },
  (_, i) => `  M${String(i).padStart(2, "0")}: { type: uint, size: 4, endianness: little }`,
).join("\n");
const PACKET_KEYS = Array.from(
  { length: MEASUREMENTS },
  (_, i) => `M${String(i).padStart(2, "0")}`,
).join(", ");

function configText(source: string, port: string): string {
  return `name: serialbench
sources:
${source}
measurements:
${MEASUREMENT_LINES}
telemetry_packets:
  - name: Frame
${port}    measurements: [${PACKET_KEYS}]
`;
}

const serialConfig = (dir: string) =>
  configText(
    `  - name: ${SOURCE}\n    type: serial\n    device: ${dir}/radio\n    baud: ${BAUD}\n` +
      '    framing: { type: sync, sync: "EB90", crc: crc16-ccitt }',
    "",
  );
const udpConfig = configText(`  - name: ${SOURCE}\n    bind: 127.0.0.1`, "    port: {PORT0}\n");

function say(line: string): void {
  console.error(`serial bench: ${line}`);
}

/** Packet `seq`: M00 = seq, M01…M15 a xorshift sequence seeded by it. */
function fillPacket(out: Uint8Array, seq: number): void {
  const v = new DataView(out.buffer, out.byteOffset, PACKET_LEN);
  v.setUint32(0, seq, true);
  let x = Math.imul(seq + 1, 0x9e3779b1) >>> 0 || 1;
  for (let i = 1; i < MEASUREMENTS; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v.setUint32(i * 4, x >>> 0, true);
  }
}

/** What was written for a phase: packet k at `offsets[k]` of `bytes` (framed for serial). */
interface Prepared {
  bytes: Uint8Array;
  offsets: Uint32Array;
}

/** Packets 0…n-1, laid out back to back (UDP), or each framed by `frame` (serial). */
function prepare(n: number, frame?: (p: Uint8Array) => Uint8Array): Prepared {
  const pkt = new Uint8Array(PACKET_LEN);
  const parts: Uint8Array[] = [];
  for (let k = 0; k < n; k++) {
    fillPacket(pkt, k);
    parts.push(frame ? frame(pkt) : pkt.slice());
  }
  const offsets = new Uint32Array(n + 1);
  for (let k = 0; k < n; k++) offsets[k + 1] = offsets[k] + parts[k].length;
  const bytes = new Uint8Array(offsets[n]);
  parts.forEach((p, k) => bytes.set(p, offsets[k]));
  return { bytes, offsets };
}

/** Checks every packet read from decom's ring: in order, every byte as written. */
class Checker {
  good = 0;
  rejected = 0;
  bad = 0;
  firstBad = "";
  readonly #want = new Uint8Array(PACKET_LEN);

  constructor(readonly ring: PacketStream) {}

  poll(): void {
    const batch = this.ring.read();
    if (batch.lost > 0) this.#wrong(`the ring lost ${batch.lost} records before they were read`);
    for (const p of batch.packets) {
      if (p.packet < 0) {
        this.rejected++;
        continue;
      }
      fillPacket(this.#want, this.good);
      const same = p.bytes.length === PACKET_LEN && p.bytes.every((b, i) => b === this.#want[i]);
      if (!same) {
        const seq = p.bytes.length >= 4
          ? new DataView(p.bytes.buffer, p.bytes.byteOffset).getUint32(0, true)
          : -1;
        this.#wrong(`packet ${this.good} expected, got ${p.bytes.length} bytes carrying ${seq}`);
      }
      this.good++;
    }
  }

  #wrong(what: string): void {
    this.bad++;
    this.firstBad ||= what;
  }
}

interface PhaseResult {
  kind: "serial" | "udp";
  sent: number;
  /** From decom's exit summary. */
  received: number;
  rejected: number;
  values: number;
  cpuNs: number;
  /** Packets decoded within the CPU window (read from the ring). */
  windowPackets: number;
  /** decom's voluntary context switches in the window (how often it went to sleep). */
  sleeps: number;
  /** Ticks of the writer, and times the PTY was full (serial). */
  ticks: number;
  waits: number;
}

/** Writes packets [from, to) paced at `rate` from now; `send(a, b)` writes packets [a, b). */
async function paced(
  from: number,
  to: number,
  rate: number,
  send: (a: number, b: number) => Promise<void> | void,
  checker: Checker,
): Promise<number> {
  const t0 = performance.now();
  let at = from;
  let ticks = 0;
  while (at < to) {
    const due = Math.min(to, from + Math.floor((performance.now() - t0) / 1000 * rate));
    if (due > at) {
      await send(at, due);
      at = due;
      ticks++;
    }
    checker.poll();
    await sleep(1);
  }
  return ticks;
}

/** A PTY pair in `dir` (`radio` for decom, `ground` for the writer), dying with this process. */
async function ptyPair(p: Pipeline, dir: string): Promise<Proc> {
  const socat = spawn("socat", [
    "--pdeathsig",
    "KILL",
    "socat",
    "-d",
    "-d",
    `pty,raw,echo=0,link=${dir}/radio`,
    `pty,raw,echo=0,link=${dir}/ground`,
  ], { cmd: "setpriv" });
  p.procs.push(socat);
  await socat.waitFor(/starting data transfer loop/, 10_000);
  return socat;
}

const SUMMARY = /(\d+) datagrams \((\d+) bytes\), (\d+) values decoded, (\d+) rejected/;

async function phase(kind: "serial" | "udp", rate: number): Promise<PhaseResult> {
  const warm = Math.round(rate * WARMUP_S);
  const total = warm + Math.round(rate * SECONDS);
  const ptys = Deno.makeTempDirSync({ prefix: "gsw-bench-pty-" });
  try {
    await using p = Pipeline.create({
      configText: kind === "serial" ? serialConfig(ptys) : udpConfig,
    });
    if (kind === "serial") await ptyPair(p, ptys);
    const decom = spawnDying(p, "decom", [...taskArgs("decom"), "--config", p.configPath]);
    await p.waitForSocket(decomSocket(p.runDir, SOURCE), decom);
    if (kind === "serial") await decom.waitFor(/opened .*\/radio at 921600 baud/, 10_000);
    using ring = openPackets(p.config, { runDir: p.runDir, client: "serial bench" });
    await eventually("decom's packet ring", () => ring.connected[SOURCE] || undefined, 10_000);
    const checker = new Checker(ring);

    let send: (a: number, b: number) => Promise<void> | void;
    let waits = () => 0;
    const cleanups: (() => void)[] = [];
    if (kind === "serial") {
      const framing = framingOptions(p.config.sources[0].stream!.framing);
      const data = prepare(total, (pkt) => encodeFrame(framing, pkt));
      const out = new StreamOut({
        kind: "serial",
        device: `${ptys}/ground`,
        baud: BAUD,
        dataBits: 8,
        parity: "none",
        stopBits: 1,
        flowControl: "none",
      });
      cleanups.push(() => out.close());
      send = (a, b) => out.write(data.bytes.subarray(data.offsets[a], data.offsets[b]));
      waits = () => out.waits;
    } else {
      const data = prepare(total);
      const lens = new Uint32Array(total).fill(PACKET_LEN);
      const sock = UdpSocket.sender();
      const batch = new Batch(64);
      cleanups.push(() => batch.close(), () => sock.close());
      const port = p.config.packets[0].port;
      send = async (a, b) => {
        while (a < b) {
          const n = batch.send(
            sock.fd,
            data.bytes.subarray(data.offsets[a], data.offsets[b]),
            lens.subarray(a, b),
            "127.0.0.1",
            port,
          );
          a += n;
          if (n === 0) await sleep(0); // the socket buffer is full: decom is behind
        }
      };
    }
    try {
      let ticks = await paced(0, warm, rate, send, checker);
      const good0 = checker.good;
      const cpu0 = schedNs(decom.pid);
      const sw0 = voluntarySwitches(decom.pid);
      ticks += await paced(warm, total, rate, send, checker);
      const last = performance.now();
      while (checker.good + checker.rejected < total && performance.now() - last < 3000) {
        await sleep(1);
        checker.poll();
      }
      const cpuNs = schedNs(decom.pid) - cpu0;
      const sleeps = voluntarySwitches(decom.pid) - sw0;
      const windowPackets = checker.good - good0;
      const status = await decom.stop("SIGTERM", 10_000);
      const m = decom.lines.findLast((l) => / stopping\. /.test(l))?.match(SUMMARY);
      if (!m) {
        throw new Error(`no summary from decom (exit ${status.code}):\n${decom.lines.join("\n")}`);
      }
      const [received, , values, rejected] = m.slice(1).map(Number);
      if (checker.bad > 0) {
        throw new Error(
          `${kind}: ${checker.bad} packets read from decom's ring were wrong; first: ` +
            checker.firstBad,
        );
      }
      return {
        kind,
        sent: total,
        received,
        rejected,
        values,
        cpuNs,
        windowPackets,
        sleeps,
        ticks,
        waits: waits(),
      };
    } finally {
      cleanups.forEach((c) => c());
    }
  } finally {
    Deno.removeSync(ptys, { recursive: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const k = s.length >> 1;
  return s.length % 2 ? s[k] : (s[k - 1] + s[k]) / 2;
}

const nsPerMeasurement = (r: PhaseResult) => r.cpuNs / (r.windowPackets * MEASUREMENTS);
const lost = (r: PhaseResult) => r.sent - (r.received - r.rejected);

async function main(): Promise<void> {
  // The frame's length on the line sets the packet rate, for both sources.
  const framing = parseConfig(serialConfig("/dev/null"), "serial.yaml").sources[0].stream!.framing;
  const frameLen = encodeFrame(framingOptions(framing), new Uint8Array(PACKET_LEN)).length;
  const rate = LINE_BYTES_PER_S / frameLen;
  say(
    `${frameLen}-byte frames (EB90 + ${PACKET_LEN} bytes + CRC-16) at ${BAUD} baud 8N1: ` +
      `${rate.toFixed(1)} packets/s; ${ROUNDS} rounds of ${SECONDS} s per source`,
  );
  const results: PhaseResult[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    const order: ("serial" | "udp")[] = round % 2 === 0 ? ["serial", "udp"] : ["udp", "serial"];
    for (const kind of order) {
      const r = await phase(kind, rate);
      results.push(r);
      say(
        `round ${round + 1} ${kind.padEnd(6)}: ${r.sent} sent in ${r.ticks} writes` +
          (kind === "serial" ? ` (PTY full ${r.waits} times)` : "") +
          `, decom received ${r.received}, rejected ${r.rejected}, lost ${lost(r)}; ` +
          `${r.values} values; ${(r.cpuNs / 1e6).toFixed(1)} ms CPU for ${r.windowPackets} ` +
          `packets (${r.sleeps} sleeps): ${nsPerMeasurement(r).toFixed(0)} ns per measurement, ` +
          `${(r.cpuNs / r.sleeps / 1000).toFixed(1)} µs per wake-up`,
      );
    }
  }
  const serial = results.filter((r) => r.kind === "serial");
  const udp = results.filter((r) => r.kind === "udp");
  const sum = (rs: PhaseResult[], f: (r: PhaseResult) => number) =>
    rs.reduce((n, r) => n + f(r), 0);
  const lossPct = (rs: PhaseResult[]) => sum(rs, lost) / sum(rs, (r) => r.sent) * 100;
  const serialNs = median(serial.map(nsPerMeasurement));
  const udpNs = median(udp.map(nsPerMeasurement));
  const badValues = results.filter((r) => r.values !== (r.received - r.rejected) * MEASUREMENTS);
  if (badValues.length > 0) {
    say(`WARNING: values decoded is not ${MEASUREMENTS} per packet in ${badValues.length} phases`);
  }
  const out: Metric[] = [
    metric(BENCH, "serial_loss_pct", lossPct(serial), "%", lossPct(udp)),
    metric(BENCH, "serial_rejected", sum(serial, (r) => r.rejected), "count"),
    metric(BENCH, "serial_packets_sent", sum(serial, (r) => r.sent), "count"),
    metric(BENCH, "serial_packets_per_s", rate, "packets/s"),
    metric(BENCH, "decom_ns_per_measurement_serial", serialNs, "ns", udpNs),
    metric(BENCH, "decom_ns_per_measurement_udp", udpNs, "ns"),
    metric(BENCH, "decom_serial_vs_udp_cost_ratio", serialNs / udpNs, "ratio"),
    metric(
      BENCH,
      "decom_cpu_pct_serial",
      median(serial.map((r) => r.cpuNs / (r.windowPackets / rate) / 1e7)),
      "%",
      median(udp.map((r) => r.cpuNs / (r.windowPackets / rate) / 1e7)),
    ),
  ];
  for (const m of out) console.log(jsonLine(m));
}

await main();
