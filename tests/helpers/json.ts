/** JSON as gsw's tools write it, read back exactly. */

/** JSON.parse that keeps integers beyond 2^53 exact (as bigints), as docs/library.md shows. */
export function parseExact(line: string): Record<string, unknown> {
  // The third reviver argument (source text access) is newer than TypeScript's lib types.
  const reviver = (_k: string, v: unknown, ctx?: { source?: string }) =>
    typeof v === "number" && Number.isInteger(v) && !Number.isSafeInteger(v) && ctx?.source
      ? BigInt(ctx.source)
      : v;
  return JSON.parse(line, reviver as (k: string, v: unknown) => unknown);
}
