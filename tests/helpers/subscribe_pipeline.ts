/**
 * The subscriber tests' pipeline: decom and broker (from ./pipeline.ts) on a config of every
 * measurement type, started and restarted the way subscribers need, and a sender of
 * hand-built packets. Every child is killed and awaited on `stop()`.
 */
import { Pipeline, type Proc } from "./pipeline.ts";

/** Layout of the test packet (big-endian unless said). */
const PACKET_SIZE = 32;

export interface TestValues {
  counter: number; // COUNTER: uint32 at 0
  altitude: number; // ALTITUDE: float64 at 4, m
  big: bigint; // BIG: uint64 at 12
  mode: number; // MODE: uint8 enum at 20
  label: string; // LABEL: string[8] at 21
  tempRaw: number; // TEMP: int16 at 29, × 0.1 °C, warn above 50, alarm above 80
  beat?: number; // HEARTBEAT: uint8 at 31, expected at 20 Hz (stale after 150 ms)
}

export const MODES = ["SAFE", "ARMED", "FLIGHT"];

/** The test config; `port` is where its one packet arrives. */
export function configText(port: number | string): string {
  return `
name: subtest
sources:
  - { name: loop, bind: 127.0.0.1 }
measurements:
  COUNTER: { type: uint, size: 4 }
  ALTITUDE: { type: float, size: 8, unit: m }
  BIG: { type: uint, size: 8 }
  MODE: { type: uint, size: 1, enum: { 0: SAFE, 1: ARMED, 2: FLIGHT } }
  LABEL: { type: string, size: 8 }
  TEMP:
    name: BOARD_TEMP
    type: int
    size: 2
    scaling: 0.1
    unit: C
    limits: { warn_high: 50, alarm_high: 80 }
  HEARTBEAT: { type: uint, size: 1, rate_hz: 20 }
telemetry_packets:
  - name: Main
    port: ${port}
    measurements: [COUNTER, ALTITUDE, BIG, MODE, LABEL, TEMP, HEARTBEAT]
`;
}

/** The packet carrying `v`, laid out by hand (independent of the config's encoders). */
export function packet(v: TestValues): Uint8Array {
  const buf = new Uint8Array(PACKET_SIZE);
  const view = new DataView(buf.buffer);
  view.setUint32(0, v.counter);
  view.setFloat64(4, v.altitude);
  view.setBigUint64(12, v.big);
  view.setUint8(20, v.mode);
  buf.set(new TextEncoder().encode(v.label).subarray(0, 8), 21);
  view.setInt16(29, v.tempRaw);
  view.setUint8(31, v.beat ?? v.counter % 256);
  return buf;
}

/** Deterministic test values for packet number `i`; BIG needs all 64 bits. */
export function valuesFor(i: number): TestValues {
  return {
    counter: i,
    altitude: 1000 + i * 0.25,
    big: 0xfedc_ba98_7654_3210n + BigInt(i),
    mode: i % 3,
    label: `v${i}`,
    tempRaw: (i % 2 === 0 ? 1 : -1) * (i % 900),
  };
}

/** decom + broker on a private run directory, and a sender of test packets. */
export class SubscribePipeline {
  /** The broker started last (`startBroker`); tests kill and restart it. */
  broker: Proc | null = null;

  private constructor(readonly pipeline: Pipeline, readonly decom: Proc) {}

  /** Writes the config and starts decom and the broker (waits until both serve). */
  static async start(): Promise<SubscribePipeline> {
    const pipeline = Pipeline.create({ configText: configText("{PORT0}") });
    try {
      const decom = pipeline.spawn("decom", [
        "--config",
        pipeline.configPath,
        "--run-dir",
        pipeline.runDir,
        "--health-interval",
        "60",
      ]);
      await decom.stderr.waitFor(/serving/, 15_000);
      const p = new SubscribePipeline(pipeline, decom);
      await p.startBroker();
      return p;
    } catch (e) {
      await pipeline[Symbol.asyncDispose]();
      throw e;
    }
  }

  get runDir(): string {
    return this.pipeline.runDir;
  }

  /** The config file's path. */
  get config(): string {
    return this.pipeline.configPath;
  }

  /** Starts the (default) broker and waits until it is attached to decom. */
  async startBroker(args: string[] = []): Promise<Proc> {
    const broker = this.pipeline.spawn("broker", [
      "--config",
      this.config,
      "--run-dir",
      this.runDir,
      ...args,
    ]);
    this.broker = broker;
    await broker.stderr.waitFor(/attached to decom/, 15_000);
    return broker;
  }

  /**
   * `t.step` that first restarts the broker if an earlier step left it dead: a step that fails
   * with the broker down must not fail every later one too.
   */
  steps(t: Deno.TestContext): (name: string, fn: () => Promise<void>) => Promise<boolean> {
    return (name, fn) =>
      t.step(name, async () => {
        if (this.broker?.exited) await this.startBroker();
        await fn();
      });
  }

  /** Sends packets built from `values`, in one batch (up to 64). */
  send(...values: TestValues[]): Promise<void> {
    return this.pipeline.send(this.pipeline.ports[0], values.map(packet));
  }

  /** Kills every process it started and removes its files. */
  async stop(): Promise<void> {
    await this.pipeline[Symbol.asyncDispose]();
  }
}
