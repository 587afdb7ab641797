// deno-lint-ignore-file no-import-prefix -- see the yaml import below
/**
 * Typed, position-aware access to a parsed YAML document: every getter reports a diagnostic
 * at the offending key or item (never throws), so the loader can find every problem in one run.
 */
// An inline npm: specifier, not an import-map name: gsw is also imported from a URL, where the
// importer's import map knows nothing of "yaml".
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  type Node,
  parseDocument,
  type YAMLMap,
} from "npm:yaml@^2.9.1";
import { didYouMean } from "./suggest.ts";
import type { Diagnostic } from "./types.ts";

/** 1-based line and column. */
export interface Pos {
  line: number;
  col: number;
}

export type YNode = Node | null;

/** One `key: value` of a map; `pos` is where the key is written. */
export interface Entry {
  key: string;
  pos: Pos;
  value: YNode;
}

export type Entries = Map<string, Entry>;

const START: Pos = { line: 1, col: 1 };

export class Reader {
  readonly diagnostics: Diagnostic[] = [];
  /** The document's top node, or null when the file is empty or has syntax errors. */
  readonly root: YNode;
  readonly #lines = new LineCounter();
  readonly #doc: Document;
  /** Maps being read, so a merge key pointing into its own map is caught, not recursed into. */
  readonly #reading = new Set<Node>();

  constructor(readonly file: string, text: string) {
    // uniqueKeys off: duplicates are reported by `map()` with both positions and a hint.
    this.#doc = parseDocument(text, { lineCounter: this.#lines, uniqueKeys: false });
    for (const e of this.#doc.errors) {
      const at = e.linePos?.[0] ?? START;
      // The library's message ends with a source excerpt; its first line is the diagnosis.
      const what = e.message.split("\n")[0].replace(/ at line \d+, column \d+:?$/, "");
      this.error(at, `YAML syntax error: ${what}; fix the YAML syntax here`);
    }
    for (const w of this.#doc.warnings) {
      this.warning(w.linePos?.[0] ?? START, `YAML: ${w.message.split("\n")[0]}`);
    }
    this.root = this.#doc.errors.length > 0 ? null : this.#doc.contents;
  }

  error(at: Pos, message: string): void {
    this.diagnostics.push({ file: this.file, ...at, severity: "error", message });
  }

  warning(at: Pos, message: string): void {
    this.diagnostics.push({ file: this.file, ...at, severity: "warning", message });
  }

  hasErrors(): boolean {
    return this.diagnostics.some((d) => d.severity === "error");
  }

  /** Where `node` starts, or `fallback` for an absent value (`key:` with nothing after it). */
  pos(node: YNode, fallback: Pos = START): Pos {
    const offset = node?.range?.[0];
    return offset === undefined ? fallback : this.#lines.linePos(offset);
  }

  /** Follows aliases (`*name`) to the anchored node; a dangling alias is null. */
  resolve(node: YNode): YNode {
    for (let hops = 0; node && isAlias(node) && hops < 100; hops++) {
      node = (node.resolve(this.#doc) as Node | undefined) ?? null;
    }
    return node;
  }

  /**
   * The entries of a map, with `<<: *anchor` merge keys expanded (keys written in the map win),
   * or undefined after reporting that `node` is not a map.
   */
  map(node: YNode, what: string, at: Pos): Entries | undefined {
    node = this.resolve(node);
    if (!isMap(node)) {
      this.error(at, `${what} must be a map of "key: value" lines, not ${describe(node)}`);
      return undefined;
    }
    if (this.#reading.has(node)) {
      this.error(at, `${what} refers to a map that contains it; merge a separate anchored map`);
      return undefined;
    }
    this.#reading.add(node);
    try {
      return this.#entries(node, what, at);
    } finally {
      this.#reading.delete(node);
    }
  }

  #entries(node: YAMLMap, what: string, at: Pos): Entries {
    const entries: Entries = new Map();
    const merged: Entries[] = [];
    for (const pair of node.items) {
      const keyNode = pair.key as YNode;
      const pos = this.pos(keyNode, at);
      const key = isScalar(keyNode) && keyNode.value !== null ? String(keyNode.value) : undefined;
      if (key === undefined) {
        this.error(pos, `${what}: keys must be plain names, not ${describe(keyNode)}`);
        continue;
      }
      const value = (pair.value ?? null) as YNode;
      if (key === "<<" && isAlias(value)) {
        const m = this.map(value, `the merge key "<<" in ${what}`, pos);
        if (m) merged.push(m);
        continue;
      }
      const first = entries.get(key);
      if (first) {
        this.error(
          pos,
          `${what}: duplicate key "${key}" (first at line ${first.pos.line}:${first.pos.col}); ` +
            `remove one of them`,
        );
        continue;
      }
      entries.set(key, { key, pos, value });
    }
    for (const m of merged) {
      for (const [k, e] of m) if (!entries.has(k)) entries.set(k, e);
    }
    return entries;
  }

  /** The items of a list, or undefined after reporting that `e` is not a list. */
  seq(e: Entry, what: string): YNode[] | undefined {
    const node = this.resolve(e.value);
    if (!isSeq(node)) {
      this.error(e.pos, `${what} must be a list ("- item" lines), not ${describe(node)}`);
      return undefined;
    }
    return node.items.map((item) => item as YNode);
  }

  /** Reports every key of `entries` not in `allowed`, with the closest allowed key. */
  allowOnly(entries: Entries, allowed: readonly string[], what: string): void {
    for (const e of entries.values()) {
      if (!allowed.includes(e.key)) {
        this.error(
          e.pos,
          `${what}: unknown key "${e.key}"${didYouMean(e.key, allowed)}; ` +
            `allowed keys: ${allowed.join(", ")}`,
        );
      }
    }
  }

  /** The entry for `key`, or undefined after reporting it missing at `at` (the map's owner). */
  require(entries: Entries, key: string, what: string, at: Pos, hint: string): Entry | undefined {
    const e = entries.get(key);
    if (!e) this.error(at, `${what}: missing required key "${key}"; ${hint}`);
    return e;
  }

  /** A scalar's value (aliases followed); `undefined` when the entry is absent. */
  #scalar(e: Entry): { ok: true; value: unknown } | { ok: false; node: YNode } {
    const node = this.resolve(e.value);
    if (node === null) return { ok: true, value: null };
    if (isScalar(node)) return { ok: true, value: node.value };
    return { ok: false, node };
  }

  #bad(e: Entry, what: string, expected: string, hint = ""): undefined {
    const node = this.resolve(e.value);
    this.error(e.pos, `${what}: ${e.key} must be ${expected}, not ${describe(node)}${hint}`);
    return undefined;
  }

  string(e: Entry | undefined, what: string): string | undefined {
    if (!e) return undefined;
    const s = this.#scalar(e);
    if (s.ok && typeof s.value === "string" && s.value !== "") return s.value;
    // YAML reads `name: 11` or `name: true` as a number or a boolean, not as text.
    const node = this.resolve(e.value);
    const written = isScalar(node) && typeof node.value !== "string" && node.value !== null
      ? (node as { source?: string }).source ?? String(node.value)
      : undefined;
    const hint = written === undefined ? "" : `; write it in quotes ("${written}") to make it text`;
    return this.#bad(e, what, "some text", hint);
  }

  number(e: Entry | undefined, what: string, opts: { min?: number; above?: number } = {}) {
    if (!e) return undefined;
    const s = this.#scalar(e);
    if (!s.ok || typeof s.value !== "number" || !Number.isFinite(s.value)) {
      return this.#bad(e, what, "a number");
    }
    if (opts.min !== undefined && s.value < opts.min) {
      return this.#bad(e, what, `a number of at least ${opts.min}`);
    }
    if (opts.above !== undefined && s.value <= opts.above) {
      return this.#bad(e, what, `a number above ${opts.above}`);
    }
    return s.value;
  }

  /** A whole number in [min, max]; `unit` words the expectation ("bytes", "a port"). */
  integer(
    e: Entry | undefined,
    what: string,
    min: number,
    max: number,
    unit = "",
  ): number | undefined {
    if (!e) return undefined;
    const s = this.#scalar(e);
    const v = s.ok ? s.value : undefined;
    if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
      const suffix = unit ? ` ${unit}` : "";
      return this.#bad(e, what, `a whole number from ${min} to ${max}${suffix}`);
    }
    return v;
  }

  boolean(e: Entry | undefined, what: string): boolean | undefined {
    if (!e) return undefined;
    const s = this.#scalar(e);
    if (s.ok && typeof s.value === "boolean") return s.value;
    return this.#bad(e, what, "true or false");
  }

  /** One of `options`, with a did-you-mean for a near miss. */
  choice<T extends string>(e: Entry | undefined, what: string, options: readonly T[]) {
    if (!e) return undefined;
    const s = this.#scalar(e);
    if (s.ok && typeof s.value === "string" && (options as readonly string[]).includes(s.value)) {
      return s.value as T;
    }
    const hint = s.ok && typeof s.value === "string" ? didYouMean(s.value, options) : "";
    return this.#bad(e, what, `one of ${options.join(", ")}`, hint);
  }
}

/** How a node reads in a message: `the text "four"`, `a list`, `nothing`. */
export function describe(node: YNode): string {
  if (node === null) return "nothing";
  if (isMap(node)) return "a map";
  if (isSeq(node)) return "a list";
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return "nothing";
    if (typeof v === "string") return `the text ${JSON.stringify(v)}`;
    if (typeof v === "number") return `the number ${v}`;
    if (typeof v === "boolean") return String(v);
    return JSON.stringify(String(v));
  }
  return "an alias";
}

export { isMap, isScalar };
