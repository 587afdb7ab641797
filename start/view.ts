/**
 * The live terminal view of `gsw start`: every measurement with its latest value and unit,
 * its update rate, and its age, grouped by packet; stale values and limit violations stand
 * out, and the processes' latest messages show underneath.
 */
import type { Config, Measurement } from "../config/mod.ts";
import { formatValue, limitState } from "../config/mod.ts";
import { subscribe, type Subscription, type Update } from "../mod.ts";
import type { LogLine } from "./supervisor.ts";

interface Row {
  m: Measurement;
  update?: Update;
  /** (time ms, seq) samples of the last few seconds, to compute the rate from seq. */
  window: [number, number][];
}

const RENDER_MS = 200;
const RATE_WINDOW_MS = 2000;
const MESSAGES = 6;

const ESC = "\x1b[";
const color = {
  reset: `${ESC}0m`,
  dim: `${ESC}2m`,
  bold: `${ESC}1m`,
  yellow: `${ESC}33m`,
  red: `${ESC}31m`,
  magenta: `${ESC}35m`,
  cyan: `${ESC}36m`,
};

/** Seconds after which a measurement is stale: three expected periods, at least 1 s. */
export function staleAfter(m: Measurement): number {
  return m.expectedRateHz ? Math.max(1, 3 / m.expectedRateHz) : 5;
}

export class LiveView {
  readonly #rows: Row[];
  readonly #byKey = new Map<string, Row>();
  readonly #groups: { title: string; rows: Row[] }[] = [];
  readonly #messages: LogLine[] = [];
  readonly #encoder = new TextEncoder();
  #sub: Subscription | null = null;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(readonly config: Config, readonly runDir: string) {
    this.#rows = config.measurements.map((m) => ({ m, window: [] }));
    for (const r of this.#rows) this.#byKey.set(r.m.key, r);
    for (const p of config.packets) {
      const rows = p.fields.map((f) => this.#rows[f.measurement]);
      const rate = p.expectedRateHz ? `, ${p.expectedRateHz} Hz` : "";
      this.#groups.push({ title: `${p.name} (port ${p.port}${rate})`, rows: unique(rows) });
    }
    const health = this.#rows.filter((r) => r.m.health);
    if (health.length) this.#groups.push({ title: "link health", rows: health });
  }

  start(): void {
    this.#write(`${ESC}?1049h${ESC}?25l`); // alternate screen, hide cursor
    this.#timer = setInterval(() => this.#render(), RENDER_MS);
    this.#feed();
  }

  log(line: LogLine): void {
    this.#messages.push(line);
    if (this.#messages.length > MESSAGES) this.#messages.shift();
  }

  async #feed(): Promise<void> {
    while (!this.#closed) {
      try {
        this.#sub = subscribe(this.config.measurements.map((m) => m.key), {
          runDir: this.runDir,
        });
        for await (const u of this.#sub) this.#onUpdate(u);
      } catch (e) {
        // The broker is still starting (or restarting): say so and try again shortly.
        this.log({ from: "view", text: (e as Error).message });
      } finally {
        this.#sub?.close();
        this.#sub = null;
      }
      if (!this.#closed) await new Promise((r) => setTimeout(r, 500));
    }
  }

  #onUpdate(u: Update): void {
    const row = this.#byKey.get(u.measurement);
    if (!row) return;
    // Rates on the monotonic clock: a wall clock stepped mid-window would make them nonsense.
    const now = performance.now();
    row.update = u;
    row.window.push([now, u.seq]);
    while (row.window.length > 2 && now - row.window[0][0] > RATE_WINDOW_MS) row.window.shift();
  }

  #render(): void {
    const { columns, rows: height } = consoleSize();
    const now = Date.now();
    const out: string[] = [];
    const stamp = new Date().toISOString().slice(11, 19);
    out.push(
      `${color.bold}gsw${color.reset} · ${this.config.name} · ${stamp} UTC · run dir ${this.runDir}` +
        `${color.dim}   Ctrl-C stops everything${color.reset}`,
    );
    out.push(
      `${color.dim}${"measurement".padEnd(24)} ${"value".padStart(16)} ${"unit".padEnd(8)} ${
        "rate Hz".padStart(8)
      } ${"age".padStart(8)}${color.reset}`,
    );
    const budget = Math.max(3, height - out.length - MESSAGES - 3);
    const lines: string[] = [];
    for (const g of this.#groups) {
      lines.push(`${color.cyan}${g.title}${color.reset}`);
      for (const r of g.rows) lines.push(this.#line(r, now));
    }
    const shown = lines.slice(0, budget);
    out.push(...shown);
    if (lines.length > shown.length) {
      out.push(
        `${color.dim}… ${
          lines.length - shown.length
        } more lines (enlarge the terminal)${color.reset}`,
      );
    }
    out.push(`${color.dim}${"─".repeat(Math.min(columns, 80))}${color.reset}`);
    for (const m of this.#messages) {
      out.push(m.from ? `${color.dim}${m.from}:${color.reset} ${m.text}` : m.text);
    }
    const text = out.map((l) => clip(l, columns)).join(`${ESC}K\n`);
    this.#write(`${ESC}H${text}${ESC}K\n${ESC}J`);
  }

  #line(r: Row, now: number): string {
    const name = `  ${r.m.key}`.padEnd(24).slice(0, 24);
    if (!r.update) {
      return `${color.dim}${name} ${"—".padStart(16)}${color.reset}`;
    }
    const value = formatValue(r.m, r.update.value).replace(` ${r.m.unit ?? ""}`, "").trim();
    // Age from the packet's receive time (same clock as Date.now() on this machine), so a
    // value handed over on connecting shows how old it really is.
    const age = Math.max(0, now - Number(r.update.timestampNs / 1_000_000n)) / 1000;
    const stale = age > staleAfter(r.m);
    const state = typeof r.update.value === "number" ? limitState(r.m, r.update.value) : "ok";
    const w = r.window;
    const rate = w.length >= 2 && w[w.length - 1][0] > w[0][0]
      ? ((w[w.length - 1][1] - w[0][1]) * 1000) / (w[w.length - 1][0] - w[0][0])
      : 0;
    const paint = stale
      ? color.magenta
      : state === "alarm"
      ? color.red
      : state === "warn"
      ? color.yellow
      : "";
    const flag = stale ? " STALE" : state === "ok" ? "" : ` ${state.toUpperCase()}`;
    return `${paint}${name} ${value.padStart(16).slice(-16)} ${(r.m.unit ?? "").padEnd(8)} ${
      rate.toFixed(1).padStart(8)
    } ${formatAge(age).padStart(8)}${flag}${paint ? color.reset : ""}`;
  }

  #write(s: string): void {
    Deno.stdout.writeSync(this.#encoder.encode(s));
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    this.#sub?.close();
    this.#write(`${ESC}?25h${ESC}?1049l`); // show cursor, leave the alternate screen
  }
}

function formatAge(s: number): string {
  if (s < 1) return `${Math.round(s * 1000)}ms`;
  if (s < 120) return `${s.toFixed(1)}s`;
  return `${Math.round(s / 60)}min`;
}

function consoleSize(): { columns: number; rows: number } {
  try {
    return Deno.consoleSize();
  } catch {
    return { columns: 100, rows: 40 };
  }
}

/** Cuts a line to `columns` visible characters (escape sequences do not count). */
function clip(line: string, columns: number): string {
  let visible = 0;
  let out = "";
  for (let i = 0; i < line.length; i++) {
    if (line[i] === "\x1b") {
      const end = line.indexOf("m", i);
      out += line.slice(i, end + 1);
      i = end;
      continue;
    }
    if (visible >= columns) continue;
    out += line[i];
    visible++;
  }
  return out;
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}
