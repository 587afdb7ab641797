/**
 * Where decom's datagrams come from, one class per source kind. Each fills decom's receive
 * batch (`Batch.recv`'s layout: a slot per datagram, `META_LEN` bytes of metadata each) and
 * hands it to decom's single ingest path, so a packet is identified, published and logged the
 * same way whatever brought it. Inputs register their descriptors in decom's waitset and never
 * block it.
 */
import type { Source } from "../config/mod.ts";
import {
  Batch,
  framingOptions,
  MqttSource,
  READABLE,
  StreamSource,
  UdpSocket,
  type Waitset,
  WANT_READ,
  WANT_WRITE,
  WRITABLE,
} from "../ffi/mod.ts";

/** A slot this large holds any UDP datagram over IPv4, so nothing is ever cut. */
export const SLOT = 65536;
/** Receive buffer asked for each port: ~100 k small datagrams, or a few seconds of a stall. */
const RECEIVE_BUFFER = 8 << 20;
/** Receive batches taken from one socket per wake-up, so several ports share fairly. */
const ROUNDS_PER_WAKE = 16;

/** decom's receive batch: where inputs put datagrams, and what takes them from there. */
export interface Intake {
  buf: Uint8Array;
  meta: Uint8Array;
  /** Datagrams per batch. */
  max: number;
  /** Takes the `n` datagrams in `buf`/`meta`, all sent to `port`. */
  ingest(n: number, port: number): void;
  log(line: string): void;
}

export interface Input {
  /** Registers its descriptors with tokens from `base` (it uses fewer than `TOKENS_PER_INPUT`). */
  register(ws: Waitset, base: number): void;
  /** One of its tokens (`base + i`) is ready. */
  ready(i: number): void;
  /** Does what is due; returns the milliseconds until it must run again (-1: never). */
  poll(): number;
  describe(): string;
  /** Datagrams the kernel dropped before decom read them. */
  kernelDrops(): number;
  close(): void;
}

export const TOKENS_PER_INPUT = 1 << 16;

interface Port {
  socket: UdpSocket;
  port: number;
  /** The socket's kernel drop count (SO_RXQ_OVFL) as of the last datagram read. */
  kernelDrops: number;
  /** When a kernel-drop line was last printed for it (ms, monotonic). */
  droppedSaidAt: number;
}

/** A UDP source: one socket per port, batch-received with `recvmmsg`. */
export class UdpInput implements Input {
  readonly #ports: Port[] = [];
  readonly #batch: Batch;
  #kernelDrops = 0;

  constructor(readonly source: Source, private readonly intake: Intake) {
    this.#batch = new Batch(intake.max);
    try {
      for (const port of source.ports) {
        const socket = new UdpSocket({
          bind: source.bind,
          port,
          multicast: source.multicast,
          receiveBuffer: RECEIVE_BUFFER,
        });
        this.#ports.push({ socket, port, kernelDrops: 0, droppedSaidAt: -Infinity });
        const granted = socket.receiveBuffer();
        if (granted < RECEIVE_BUFFER) {
          intake.log(
            `port ${port}: the kernel granted a ${granted >> 10} KiB receive buffer, not ${
              RECEIVE_BUFFER >> 20
            } MiB: a burst or a pause of decom may drop datagrams (counted as ${source.name}.kernel_drops). ` +
              `Raise the limit: sudo sysctl -w net.core.rmem_max=${RECEIVE_BUFFER}`,
          );
        }
      }
    } catch (e) {
      this.close();
      throw e;
    }
  }

  register(ws: Waitset, base: number): void {
    this.#ports.forEach((p, i) => ws.add(p.socket.fd, base + i, READABLE));
  }

  ready(i: number): void {
    const port = this.#ports[i];
    const { buf, meta, max } = this.intake;
    const view = new DataView(meta.buffer, meta.byteOffset, meta.byteLength);
    for (let round = 0; round < ROUNDS_PER_WAKE; round++) {
      const n = this.#batch.recv(port.socket.fd, buf, SLOT, meta);
      if (n === 0) return;
      // The kernel's drop count rides on every datagram; the batch's last has the newest.
      const kernelDrops = view.getUint32((n - 1) * 32 + 24, true);
      if (kernelDrops !== port.kernelDrops) this.#onKernelDrops(port, kernelDrops);
      this.intake.ingest(n, port.port);
      // A partial batch took everything the socket had: asking again would only return EAGAIN.
      if (n < max) return;
    }
  }

  poll(): number {
    return -1;
  }

  kernelDrops(): number {
    return this.#kernelDrops;
  }

  /** Counts datagrams the kernel dropped on a port and says so (at most every 10 s a port). */
  #onKernelDrops(port: Port, count: number): void {
    const lost = (count - port.kernelDrops) >>> 0; // the kernel's counter is a wrapping u32
    port.kernelDrops = count;
    this.#kernelDrops += lost;
    const now = performance.now();
    if (now - port.droppedSaidAt < 10_000) return;
    port.droppedSaidAt = now;
    this.intake.log(
      `port ${port.port}: the kernel dropped ${lost} datagram${lost === 1 ? "" : "s"} ` +
        `(${this.#kernelDrops} in all) before decom read them: its receive buffer ` +
        `(${port.socket.receiveBuffer() >> 10} KiB) filled. decom fell behind or was paused; ` +
        "these are lost, not in the log",
    );
  }

  describe(): string {
    const { source } = this;
    const ports = this.#ports.map((p) => p.port).join(", ");
    const group = source.multicast ? ` (multicast ${source.multicast})` : "";
    return `UDP ${source.bind}${group} port${this.#ports.length > 1 ? "s" : ""} ${ports}`;
  }

  close(): void {
    for (const p of this.#ports) p.socket.close();
    this.#batch.close();
  }
}

/**
 * A source whose raw packets come from an MQTT broker (another machine's bridge publishes
 * them): a native client on a non-blocking socket, serviced when its socket is ready or a
 * timer (reconnection, keep-alive) is due.
 */
export class MqttInput implements Input {
  readonly #client: MqttSource;
  #ws: Waitset | undefined;
  #token = 0;
  /** What is registered: the attempt (socket) and interest, so changes are applied once. */
  #watched = { attempt: -1, interest: 0 };
  #dueAt = 0;

  constructor(readonly source: Source, password: Uint8Array | undefined, readonly intake: Intake) {
    const m = source.mqtt!;
    this.#client = new MqttSource({
      host: m.host,
      port: m.port,
      clientId: m.clientId ?? `gsw-${source.name}-${Deno.pid}`.slice(0, 23),
      username: m.username,
      password,
      topic: m.topic,
      qos: m.qos,
    });
  }

  register(ws: Waitset, base: number): void {
    this.#ws = ws;
    this.#token = base;
  }

  ready(): void {
    this.#service();
  }

  poll(): number {
    const now = performance.now();
    if (now >= this.#dueAt) this.#service();
    return Math.max(1, Math.ceil(this.#dueAt - performance.now()));
  }

  #service(): void {
    const client = this.#client;
    const wait = client.service();
    this.#dueAt = performance.now() + wait;
    for (const line of client.events()) this.intake.log(line);
    const { buf, meta } = this.intake;
    const view = new DataView(meta.buffer, meta.byteOffset, meta.byteLength);
    for (;;) {
      const n = client.recv(buf, SLOT, meta);
      if (n === 0) break;
      this.intake.ingest(n, view.getUint16(28, true));
    }
    this.#rewatch();
  }

  /** Keeps the waitset watching the current socket for what the client wants. */
  #rewatch(): void {
    const ws = this.#ws;
    if (!ws) return;
    const w = this.#client.watch();
    const interest = (w.interest & WANT_READ ? READABLE : 0) |
      (w.interest & WANT_WRITE ? WRITABLE : 0);
    const was = this.#watched;
    if (w.fd < 0 || interest === 0) {
      // Closed sockets leave the waitset by themselves; an open one waits for its next turn.
      if (w.fd >= 0 && was.attempt === w.attempt && was.interest !== 0) ws.remove(w.fd);
      this.#watched = { attempt: w.attempt, interest: 0 };
      return;
    }
    if (was.attempt === w.attempt && was.interest === interest) return;
    if (was.attempt === w.attempt && was.interest !== 0) ws.modify(w.fd, this.#token, interest);
    else ws.add(w.fd, this.#token, interest);
    this.#watched = { attempt: w.attempt, interest };
  }

  stats() {
    return this.#client.stats();
  }

  kernelDrops(): number {
    return 0;
  }

  describe(): string {
    const m = this.source.mqtt!;
    return `MQTT ${m.url} topic "${m.topic}" (QoS ${m.qos})`;
  }

  close(): void {
    this.#client.close();
  }
}

/**
 * A serial device or TCP stream cut into packets by its framing (`ffi/src/stream.rs`): one
 * epoll descriptor to watch, serviced when readable or when a timer (reopening, a half-received
 * packet given up) is due. Its packets and rejected bytes arrive on port 0.
 */
export class StreamInput implements Input {
  readonly #stream: StreamSource;
  #dueAt = 0;

  constructor(readonly source: Source, readonly intake: Intake) {
    const s = source.stream!;
    const endpoint = s.device !== undefined
      ? {
        kind: "serial" as const,
        device: s.device,
        baud: s.baud,
        dataBits: s.dataBits,
        parity: s.parity,
        stopBits: s.stopBits,
        flowControl: s.flowControl,
      }
      : { kind: s.connect ? "connect" as const : "listen" as const, ...(s.connect ?? s.listen)! };
    this.#stream = new StreamSource(endpoint, framingOptions(s.framing));
  }

  register(ws: Waitset, base: number): void {
    ws.add(this.#stream.fd, base, READABLE);
  }

  ready(): void {
    this.#service();
  }

  poll(): number {
    if (performance.now() >= this.#dueAt) this.#service();
    return Math.max(1, Math.ceil(this.#dueAt - performance.now()));
  }

  #service(): void {
    const stream = this.#stream;
    const { buf, meta } = this.intake;
    for (;;) {
      const wait = stream.service();
      this.#dueAt = performance.now() + Math.max(wait, 1);
      for (const line of stream.events()) this.intake.log(line);
      let took = 0;
      for (;;) {
        const n = stream.recv(buf, SLOT, meta);
        if (n === 0) break;
        took += n;
        this.intake.ingest(n, 0);
      }
      // Reading pauses while decom has a full inbox waiting: go on until it is drained.
      if (wait > 0 || took === 0) return;
    }
  }

  stats() {
    return this.#stream.stats();
  }

  kernelDrops(): number {
    return 0;
  }

  describe(): string {
    const s = this.source.stream!;
    const f = s.framing;
    const framing = `${f.kind} framing${f.crc === "none" ? "" : `, ${f.crc}`}`;
    if (s.device !== undefined) return `serial ${s.device} at ${s.baud} baud (${framing})`;
    const a = s.connect ?? s.listen!;
    return `TCP ${s.connect ? "connecting to" : "listening on"} ${a.host}:${a.port} (${framing})`;
  }

  close(): void {
    this.#stream.close();
  }
}
