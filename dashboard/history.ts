/**
 * The dashboard's memory of every sample: per plottable measurement, the (time, value) pairs
 * of the last 30 minutes, in chunks of typed arrays, bounded per measurement and in all, so a
 * browser that connects mid-flight gets the whole window at once. Windows with more samples
 * than a plot can show are reduced to a min/max envelope per time column, which keeps every
 * spike.
 */

/** How far back the dashboard remembers. */
export const HISTORY_MS = 30 * 60 * 1000;
/** Most samples kept per measurement: 30 minutes at 1 kHz. */
export const MAX_POINTS_PER_MEASUREMENT = 1_800_000;
/** Most samples kept in all (16 bytes each: 256 MiB). Beyond it the oldest go first. */
export const MAX_POINTS_TOTAL = 16 * 1024 * 1024;
/** A window with at most this many samples of one measurement is sent sample by sample. */
export const MAX_RAW_POINTS = 60_000;

const CHUNK = 8192;

class Chunk {
  readonly t = new Float64Array(CHUNK);
  readonly v = new Float64Array(CHUNK);
  n = 0;
}

/** The samples of one measurement, oldest first. */
export class Series {
  readonly #chunks: Chunk[] = [];
  #count = 0;

  get count(): number {
    return this.#count;
  }

  /** Time of the oldest sample kept (ms since the epoch), or Infinity when empty. */
  get oldest(): number {
    const c = this.#chunks[0];
    return c && c.n > 0 ? c.t[0] : Infinity;
  }

  add(t: number, v: number): void {
    let c = this.#chunks.at(-1);
    if (!c || c.n === CHUNK) this.#chunks.push(c = new Chunk());
    c.t[c.n] = t;
    c.v[c.n] = v;
    c.n++;
    this.#count++;
  }

  /** Drops whole chunks older than `before` (ms) or beyond `max` samples; returns how many. */
  trim(before: number, max: number): number {
    let dropped = 0;
    while (this.#chunks.length > 1) {
      const c = this.#chunks[0];
      if (c.t[c.n - 1] >= before && this.#count - dropped <= max) break;
      this.#chunks.shift();
      dropped += c.n;
    }
    this.#count -= dropped;
    return dropped;
  }

  /** Samples with `from <= t`, as (times, values); at most `limit` of the newest. */
  since(from: number, limit = Infinity): { t: Float64Array; v: Float64Array } {
    let total = 0;
    const parts: [Chunk, number][] = [];
    for (let i = this.#chunks.length - 1; i >= 0 && total < limit; i--) {
      const c = this.#chunks[i];
      if (c.n === 0 || c.t[c.n - 1] < from) break;
      const start = lowerBound(c.t, c.n, from);
      parts.push([c, start]);
      total += c.n - start;
    }
    total = Math.min(total, limit);
    const t = new Float64Array(total);
    const v = new Float64Array(total);
    let at = total;
    for (const [c, start] of parts) {
      const take = Math.min(c.n - start, at);
      at -= take;
      t.set(c.t.subarray(c.n - take, c.n), at);
      v.set(c.v.subarray(c.n - take, c.n), at);
      if (at === 0) break;
    }
    return { t, v };
  }
}

function lowerBound(a: Float64Array, n: number, x: number): number {
  let lo = 0, hi = n;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Reduces samples to at most two per column of `columns` equal time slices: the minimum and
 * the maximum, in their time order. Every spike stays (it is its column's min or max).
 */
export function envelope(
  t: Float64Array,
  v: Float64Array,
  from: number,
  to: number,
  columns: number,
): { t: Float64Array; v: Float64Array } {
  const outT: number[] = [];
  const outV: number[] = [];
  const span = Math.max(to - from, 1e-9);
  let i = 0;
  for (let col = 0; col < columns && i < t.length; col++) {
    const end = from + (span * (col + 1)) / columns;
    let lo = -1, hi = -1;
    for (; i < t.length && (t[i] < end || col === columns - 1); i++) {
      if (lo < 0 || v[i] < v[lo]) lo = i;
      if (hi < 0 || v[i] > v[hi]) hi = i;
    }
    if (lo < 0) continue;
    const [a, b] = lo <= hi ? [lo, hi] : [hi, lo];
    outT.push(t[a]);
    outV.push(v[a]);
    if (b !== a) {
      outT.push(t[b]);
      outV.push(v[b]);
    }
  }
  return { t: Float64Array.from(outT), v: Float64Array.from(outV) };
}

/** Every plottable measurement's series, bounded per measurement and in all. */
export class History {
  readonly series = new Map<number, Series>();
  #total = 0;

  add(measurement: number, t: number, v: number): void {
    let s = this.series.get(measurement);
    if (!s) this.series.set(measurement, s = new Series());
    s.add(t, v);
    this.#total++;
  }

  get total(): number {
    return this.#total;
  }

  /** Forgets what is older than HISTORY_MS before `now`, and the oldest beyond the caps. */
  trim(now: number): void {
    const before = now - HISTORY_MS;
    for (const s of this.series.values()) {
      this.#total -= s.trim(before, MAX_POINTS_PER_MEASUREMENT);
    }
    while (this.#total > MAX_POINTS_TOTAL) {
      // The series with the oldest sample gives up a chunk.
      let oldest: Series | undefined;
      for (const s of this.series.values()) if (!oldest || s.oldest < oldest.oldest) oldest = s;
      const dropped = oldest ? oldest.trim(-Infinity, oldest.count - 1) : 0;
      if (dropped === 0) break;
      this.#total -= dropped;
    }
  }

  /**
   * The samples of `measurement` from `from` on: every one if they are at most MAX_RAW_POINTS,
   * else the min/max envelope over `columns` columns (`reduced` true).
   */
  window(
    measurement: number,
    from: number,
    to: number,
    columns: number,
  ): { t: Float64Array; v: Float64Array; reduced: boolean } {
    const s = this.series.get(measurement);
    if (!s) return { t: new Float64Array(0), v: new Float64Array(0), reduced: false };
    const all = s.since(from);
    if (all.t.length <= MAX_RAW_POINTS) return { ...all, reduced: false };
    return { ...envelope(all.t, all.v, from, to, Math.max(16, columns)), reduced: true };
  }
}
