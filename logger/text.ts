/** Words and sizes for the logger, replay and export reports. */

/** `1 file`, `2 files`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

/** Bytes as people read them: `512 B`, `18.6 kB`, `6.5 MB`, `1.2 GB` (powers of 1000). */
export function bytesText(n: number): string {
  if (n < 1000) return `${n} B`;
  const [unit, div] = n < 1e6 ? ["kB", 1e3] : n < 1e9 ? ["MB", 1e6] : ["GB", 1e9];
  return `${(n / div).toFixed(1)} ${unit}`;
}
