/**
 * The `.gswlog` raw-packet log format (docs/log-format.md): encoding file headers and records,
 * and a streaming reader over one or more files that survives corrupt and truncated data.
 */
import { crc32c } from "./crc32c.ts";

/** First eight bytes of every log file: `\x89GSWLOG\n` (a high byte and a newline, as in PNG,
 * so text-mode transfers and 7-bit channels that would mangle the file are caught). */
export const FILE_MAGIC = Uint8Array.of(0x89, 0x47, 0x53, 0x57, 0x4c, 0x4f, 0x47, 0x0a);
/** The format version this module writes and reads. */
export const FORMAT_VERSION = 1;
/** Clock id 0: CLOCK_REALTIME, nanoseconds since 1970-01-01 UTC. */
export const CLOCK_REALTIME = 0;
/** Bytes of the fixed part of the file header, before its strings. */
export const HEADER_FIXED_LEN = 72;
/** Largest file header a reader accepts (anything bigger is damage, not a header). */
export const MAX_HEADER_LEN = 64 * 1024;

/** "GSWR" little-endian: the first word of every record, where a reader resynchronises. */
export const RECORD_SYNC = 0x52575347;
/** Bytes of a record header; the payload follows, zero-padded to a multiple of 8. */
export const RECORD_HEADER_LEN = 40;
/** Largest stored payload a record may have (the largest UDP payload is 65507). */
export const MAX_STORED = 65535;
/** Record flag: the datagram was longer than decom's receive slot; only a prefix is stored. */
export const FLAG_TRUNCATED = 1;

/** Metadata at the start of each log file. */
export interface FileHeader {
  version: number;
  /** Number of this file within its run: 1 for `gsw-0001.gswlog`, 2 for the next, … */
  sequence: number;
  /** Clock of every time in the file (always `CLOCK_REALTIME` in version 1). */
  clock: number;
  /** When this file was started, ns. */
  startNs: bigint;
  /** When the logger started the run (the same in every file of a run), ns. */
  runStartNs: bigint;
  /** sha256 of the config file's bytes, hex (as `Config.hash`). */
  configHash: string;
  /** The config's `name:`. */
  configName: string;
  /** The config path as given to the logger (a copy is `config.yaml` beside the log). */
  configPath: string;
  /** Host name of the machine that logged. */
  host: string;
  /** gsw version of the logger. */
  gswVersion: string;
}

/** One logged datagram. */
export interface LogRecord {
  /** Kernel receive time, ns (CLOCK_REALTIME). */
  timeNs: bigint;
  /** Index into the config's `sources` of the decom that received it. */
  source: number;
  /** UDP port it arrived on. */
  dstPort: number;
  /** Sender's IPv4 address (dotted quad) and port. */
  srcAddress: string;
  srcPort: number;
  /** `FLAG_TRUNCATED` and reserved bits. */
  flags: number;
  /** The datagram's real length (larger than `payload.length` when truncated). */
  origLength: number;
  /** The bytes stored: the whole datagram, or its first bytes when truncated. */
  payload: Uint8Array;
}

/** A record as read back, with where it came from. */
export interface LogEntry extends LogRecord {
  truncated: boolean;
  file: string;
  /** Byte offset of the record in its file. */
  offset: number;
  header: FileHeader;
}

export function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** Bytes a record with `stored` payload bytes takes in a file. */
export function recordLength(stored: number): number {
  return RECORD_HEADER_LEN + pad8(stored);
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function hexToBytes(hex: string): Uint8Array {
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new RangeError(`not a sha256 hex digest: "${hex}"`);
  return Uint8Array.from({ length: 32 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}

function bytesToHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The file header's bytes (its length is a multiple of 8, CRC-32C last). */
export function encodeFileHeader(h: Omit<FileHeader, "version" | "clock">): Uint8Array {
  const strings = [h.configName, h.configPath, h.host, h.gswVersion].map((s) => {
    const b = encoder.encode(s);
    // A u16 length field: cut absurdly long strings rather than fail to log.
    return b.length > 0xffff ? b.subarray(0, 0xffff) : b;
  });
  const used = HEADER_FIXED_LEN + strings.reduce((n, s) => n + 2 + s.length, 0);
  const len = pad8(used + 4);
  const out = new Uint8Array(len);
  const v = new DataView(out.buffer);
  out.set(FILE_MAGIC, 0);
  v.setUint16(8, FORMAT_VERSION, true);
  v.setUint32(12, len, true);
  v.setUint32(16, h.sequence, true);
  v.setUint32(20, CLOCK_REALTIME, true);
  v.setBigUint64(24, h.startNs, true);
  v.setBigUint64(32, h.runStartNs, true);
  out.set(hexToBytes(h.configHash), 40);
  let at = HEADER_FIXED_LEN;
  for (const s of strings) {
    v.setUint16(at, s.length, true);
    out.set(s, at + 2);
    at += 2 + s.length;
  }
  v.setUint32(len - 4, crc32c(out, 0, len - 4), true);
  return out;
}

function ipv4Bytes(address: string): number[] {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new RangeError(`not an IPv4 address: "${address}"`);
  }
  return parts;
}

/**
 * Writes the sync word and CRC of the record whose 32 header bytes after them (offsets 8–39)
 * and padded payload are already at `buf[at + 8 ..]`. Returns the record's length. This is
 * the logger's hot path: it copies decom's framing in and seals it here.
 */
export function sealRecord(buf: Uint8Array, view: DataView, at: number): number {
  const stored = view.getUint32(at + 20, true);
  const len = recordLength(stored);
  view.setUint32(at, RECORD_SYNC, true);
  view.setUint32(at + 4, crc32c(buf, at + 8, at + len), true);
  return len;
}

/** Writes record `r` at `buf[at]` (room for `recordLength` bytes needed); returns its length. */
export function writeRecord(buf: Uint8Array, at: number, r: LogRecord): number {
  const stored = r.payload.length;
  if (stored > MAX_STORED) throw new RangeError(`a record stores at most ${MAX_STORED} bytes`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  view.setBigUint64(at + 8, r.timeNs, true);
  view.setUint32(at + 16, r.origLength, true);
  view.setUint32(at + 20, stored, true);
  buf.set(ipv4Bytes(r.srcAddress), at + 24);
  view.setUint16(at + 28, r.srcPort, true);
  view.setUint16(at + 30, r.dstPort, true);
  view.setUint16(at + 32, r.flags, true);
  view.setUint16(at + 34, r.source, true);
  view.setUint32(at + 36, 0, true);
  buf.set(r.payload, at + RECORD_HEADER_LEN);
  buf.fill(0, at + RECORD_HEADER_LEN + stored, at + recordLength(stored));
  return sealRecord(buf, view, at);
}

/** One record's bytes. */
export function encodeRecord(r: LogRecord): Uint8Array {
  const out = new Uint8Array(recordLength(r.payload.length));
  writeRecord(out, 0, r);
  return out;
}

/** A whole log file's bytes: header, then records (for tests, fixtures and tools). */
export function encodeLog(
  header: Omit<FileHeader, "version" | "clock">,
  records: readonly LogRecord[],
): Uint8Array {
  const head = encodeFileHeader(header);
  const total = records.reduce((n, r) => n + recordLength(r.payload.length), head.length);
  const out = new Uint8Array(total);
  out.set(head, 0);
  let at = head.length;
  for (const r of records) at += writeRecord(out, at, r);
  return out;
}

/**
 * What is at `buf[at]`: a complete valid record (its length, > 0), not a record (0), or the
 * start of one that needs `-result` bytes from `at` to be checked (< 0).
 */
function probe(buf: Uint8Array, view: DataView, at: number, end: number): number {
  const avail = end - at;
  if (avail < 4) return -RECORD_HEADER_LEN;
  if (view.getUint32(at, true) !== RECORD_SYNC) return 0;
  if (avail < RECORD_HEADER_LEN) return -RECORD_HEADER_LEN;
  const stored = view.getUint32(at + 20, true);
  if (stored > MAX_STORED) return 0;
  const len = recordLength(stored);
  if (avail < len) return -len;
  return view.getUint32(at + 4, true) === crc32c(buf, at + 8, at + len) ? len : 0;
}

/** Counts of what a `LogReader` read and what it had to skip. */
export interface ReadStats {
  /** Files opened and recognised as logs. */
  files: number;
  /** Valid records returned. */
  records: number;
  /** Payload bytes of those records. */
  payloadBytes: number;
  /** Damaged regions skipped (each may have held one or more records). */
  corrupt: number;
  /** Bytes in those regions. */
  corruptBytes: number;
  /** Files that ended in the middle of a record (a crash mid-write): that record is lost. */
  truncated: number;
  /** Files that could not be read or are not gsw logs (nothing was read from them). */
  badFiles: number;
  /** File headers whose checksum failed or that were damaged (their records were still read). */
  badHeaders: number;
  /** One line per problem, `file: offset N: what` (the first 100). */
  problems: string[];
}

const MAX_PROBLEMS = 100;

/** A growable window over a file being read sequentially. */
class Window {
  buf: Uint8Array;
  view: DataView;
  /** File offset of `buf[0]`. */
  base = 0;
  pos = 0;
  end = 0;
  eof = false;

  constructor(readonly file: Deno.FsFile, size: number, readonly onRead: (n: number) => void) {
    this.buf = new Uint8Array(size);
    this.view = new DataView(this.buf.buffer);
  }

  /** Makes at least `need` bytes available from `pos`, unless the file ends first. */
  async fill(need: number): Promise<void> {
    if (this.end - this.pos >= need || this.eof) return;
    if (this.pos > 0) {
      this.buf.copyWithin(0, this.pos, this.end);
      this.base += this.pos;
      this.end -= this.pos;
      this.pos = 0;
    }
    if (this.buf.length < need) {
      const bigger = new Uint8Array(Math.max(need, this.buf.length * 2));
      bigger.set(this.buf.subarray(0, this.end));
      this.buf = bigger;
      this.view = new DataView(bigger.buffer);
    }
    while (this.end < need) {
      const n = await this.file.read(this.buf.subarray(this.end));
      if (n === null) {
        this.eof = true;
        return;
      }
      this.end += n;
      this.onRead(n);
    }
  }
}

/**
 * Reads the records of log files in the order given, skipping damaged regions and a truncated
 * final record instead of throwing; `stats` says what was skipped and where. Payloads are
 * the caller's to keep (views of one copy per batch, never of the reader's buffer).
 */
export class LogReader {
  readonly stats: ReadStats = {
    files: 0,
    records: 0,
    payloadBytes: 0,
    corrupt: 0,
    corruptBytes: 0,
    truncated: 0,
    badFiles: 0,
    badHeaders: 0,
    problems: [],
  };
  /** Bytes read from disk so far (for progress). */
  bytesRead = 0;
  /** Headers of the files read so far, in order. */
  readonly headers: { file: string; header: FileHeader }[] = [];

  constructor(readonly paths: readonly string[], readonly chunkSize = 1 << 20) {}

  #problem(file: string, offset: number | undefined, what: string): void {
    if (this.stats.problems.length < MAX_PROBLEMS) {
      this.stats.problems.push(
        `${file}: ${offset === undefined ? "" : `offset ${offset}: `}${what}`,
      );
    }
  }

  /** Every record, one at a time. */
  async *records(): AsyncGenerator<LogEntry> {
    for await (const batch of this.batches()) yield* batch;
  }

  /**
   * Every record, in arrays of those read from disk together: an async step per record
   * would cost more than decoding it (tools reading millions of records use this).
   */
  async *batches(): AsyncGenerator<LogEntry[]> {
    for (const path of this.paths) yield* this.#readFile(path);
  }

  async *#readFile(path: string): AsyncGenerator<LogEntry[]> {
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (e) {
      this.stats.badFiles++;
      this.#problem(path, undefined, `cannot open: ${(e as Error).message}`);
      return;
    }
    try {
      const w = new Window(file, this.chunkSize, (n) => this.bytesRead += n);
      const header = await this.#readHeader(path, w);
      if (!header) return;
      this.stats.files++;
      this.headers.push({ file: path, header });
      yield* this.#readRecords(path, w, header);
    } finally {
      file.close();
    }
  }

  /**
   * Reads the file header and leaves `w.pos` at the first record. A header that does not hold
   * together (its magic, version, length or checksum damaged) is reported, and the records are
   * found by their sync words instead, as long as version-1 records follow: a header whose
   * checksum holds but whose version is unknown is a newer format, which is refused.
   */
  async #readHeader(path: string, w: Window): Promise<FileHeader | null> {
    await w.fill(16);
    const bad = (what: string) => {
      this.stats.badFiles++;
      this.#problem(path, undefined, what);
      return null;
    };
    if (w.end < 16) {
      if (w.end === 0) return bad("empty file: no header (the logger stopped as it created it?)");
      if (!FILE_MAGIC.subarray(0, w.end).every((b, i) => w.buf[i] === b)) {
        return bad("not a gsw log (no \\x89GSWLOG magic)");
      }
      return bad("the file ends inside its header");
    }
    // Up to two damaged bytes of the magic still say "gsw log" (a PNG shares two of eight).
    const magicBytes = FILE_MAGIC.filter((b, i) => w.buf[i] === b).length;
    if (magicBytes < FILE_MAGIC.length - 2) return bad("not a gsw log (no \\x89GSWLOG magic)");
    const version = w.view.getUint16(8, true);
    const len = w.view.getUint32(12, true);
    const lengthOk = len >= HEADER_FIXED_LEN + 4 && len <= MAX_HEADER_LEN && len % 8 === 0;
    if (lengthOk) await w.fill(len);
    const whole = lengthOk && w.end >= len;
    if (whole && w.view.getUint32(len - 4, true) === crc32c(w.buf, 0, len - 4)) {
      // The header is as written (the CRC covers magic, version and length).
      if (version !== FORMAT_VERSION) {
        return bad(
          `log format version ${version}; this gsw reads version ${FORMAT_VERSION}` +
            (version > FORMAT_VERSION ? " (update gsw)" : ""),
        );
      }
      w.pos = len;
      return parseHeader(w.buf, len);
    }
    // The header fails its checksum. Is only its metadata damaged? Then its first record (or
    // the end of the file, or a final record cut short) is where its length says, and no record
    // starts before that.
    const intact = magicBytes === FILE_MAGIC.length && version === FORMAT_VERSION && whole;
    const metadataOnly = () => {
      this.stats.badHeaders++;
      this.#problem(path, 0, "header checksum mismatch: its metadata may be wrong");
    };
    if (intact && await probeAt(w, len) < 0) {
      metadataOnly();
      w.pos = len;
      return parseHeader(w.buf, len);
    }
    // Else look for the first record from the end of the header's fixed part, keeping the
    // header's bytes to read what they still say.
    await w.fill(MAX_HEADER_LEN);
    const head = w.buf.slice(0, Math.min(w.end, MAX_HEADER_LEN));
    w.pos = Math.min(HEADER_FIXED_LEN, w.end);
    if (!await seekRecord(w)) {
      if (version !== FORMAT_VERSION) {
        return bad(
          `log format version ${version}, which this gsw does not read (it reads version ` +
            `${FORMAT_VERSION}), in a header that fails its checksum, and no version-` +
            `${FORMAT_VERSION} record follows: a newer format (update gsw) or a damaged file`,
        );
      }
      if (lengthOk && !whole) return bad("the file ends inside its header");
      return bad(`damaged file header (${damage(magicBytes, version, len)}) and no record`);
    }
    const first = w.base + w.pos;
    if (intact && first === len) {
      metadataOnly();
      return parseHeader(head, len);
    }
    this.stats.badHeaders++;
    this.#problem(
      path,
      0,
      `damaged file header (${damage(magicBytes, version, len)}): its metadata may be wrong; ` +
        `records recovered by their sync words from offset ${first}`,
    );
    return { ...parseHeader(head, Math.min(first, head.length)), version: FORMAT_VERSION };
  }

  async *#readRecords(
    path: string,
    w: Window,
    header: FileHeader,
  ): AsyncGenerator<LogEntry[]> {
    // Records read from the current window, and where each payload starts in it. Payloads are
    // cut from one copy of the window's bytes per batch: one allocation, not one per record.
    let batch: LogEntry[] = [];
    let starts: number[] = [];
    const take = (): LogEntry[] => {
      const from = starts[0];
      const last = batch.length - 1;
      const copy = w.buf.slice(from, starts[last] + batch[last].payload.length);
      batch.forEach((e, i) => {
        const at = starts[i] - from;
        e.payload = copy.subarray(at, at + e.payload.length);
      });
      const out = batch;
      batch = [];
      starts = [];
      return out;
    };
    // Start (file offset) of the damaged region being skipped, and whether it began with a
    // record that ran past the end of the data read so far.
    let badStart = -1;
    let badShort = false;
    const endBad = (at: number, atEof: boolean) => {
      if (atEof && badShort) {
        this.stats.truncated++;
        this.#problem(
          path,
          badStart,
          `truncated final record (${at - badStart} bytes): the logger stopped mid-write`,
        );
      } else {
        this.stats.corrupt++;
        this.stats.corruptBytes += at - badStart;
        this.#problem(path, badStart, `skipped ${at - badStart} damaged bytes`);
      }
      badStart = -1;
    };
    for (;;) {
      if (w.end - w.pos < RECORD_HEADER_LEN && !w.eof) {
        // Hand over what this window held before reading more (`fill` moves the window).
        if (batch.length > 0) yield take();
        await w.fill(RECORD_HEADER_LEN);
      }
      if (w.pos >= w.end && w.eof) {
        if (badStart >= 0) endBad(w.base + w.end, true);
        if (batch.length > 0) yield take();
        return;
      }
      const r = probe(w.buf, w.view, w.pos, w.end);
      if (r > 0) {
        if (badStart >= 0) endBad(w.base + w.pos, false);
        batch.push(this.#entry(path, w, header));
        starts.push(w.pos + RECORD_HEADER_LEN);
        this.stats.records++;
        w.pos += r;
        continue;
      }
      if (r < 0 && !w.eof) {
        if (batch.length > 0) yield take();
        await w.fill(-r);
        continue;
      }
      // Not a record here. Skip to the next sync word at any byte offset: records are written
      // 8-aligned, but scanning every offset also recovers from a misaligned splice.
      if (badStart < 0) {
        badStart = w.base + w.pos;
        badShort = r < 0;
      }
      skipToSync(w);
    }
  }

  #entry(path: string, w: Window, header: FileHeader): LogEntry {
    const v = w.view;
    const at = w.pos;
    const stored = v.getUint32(at + 20, true);
    const flags = v.getUint16(at + 32, true);
    const b = w.buf;
    this.stats.payloadBytes += stored;
    return {
      timeNs: v.getBigUint64(at + 8, true),
      origLength: v.getUint32(at + 16, true),
      srcAddress: `${b[at + 24]}.${b[at + 25]}.${b[at + 26]}.${b[at + 27]}`,
      srcPort: v.getUint16(at + 28, true),
      dstPort: v.getUint16(at + 30, true),
      flags,
      truncated: (flags & FLAG_TRUNCATED) !== 0,
      source: v.getUint16(at + 34, true),
      // A stand-in of the right length until the batch is handed over (`take` above).
      payload: b.subarray(at + RECORD_HEADER_LEN, at + RECORD_HEADER_LEN + stored),
      file: path,
      offset: w.base + at,
      header,
    };
  }
}

/** Index of the next "GSWR" in `buf[from..end)`, or -1. */
function findSync(buf: Uint8Array, from: number, end: number): number {
  for (let i = buf.indexOf(0x47, from); i >= 0 && i + 4 <= end; i = buf.indexOf(0x47, i + 1)) {
    if (buf[i + 1] === 0x53 && buf[i + 2] === 0x57 && buf[i + 3] === 0x52) return i;
  }
  return -1;
}

/**
 * The header in `buf[0..len)`: the fixed part, then the strings as far as they fit before the
 * CRC (bytes between the strings and the CRC are skipped: room for later fields).
 */
function parseHeader(buf: Uint8Array, len: number): FileHeader {
  const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const strings: string[] = [];
  let at = HEADER_FIXED_LEN;
  for (let i = 0; i < 4; i++) {
    const n = at + 2 <= len - 4 ? v.getUint16(at, true) : 0;
    const stop = Math.min(at + 2 + n, len - 4);
    strings.push(decoder.decode(buf.subarray(Math.min(at + 2, stop), stop)));
    at = stop;
  }
  return {
    version: v.getUint16(8, true),
    sequence: v.getUint32(16, true),
    clock: v.getUint32(20, true),
    startNs: v.getBigUint64(24, true),
    runStartNs: v.getBigUint64(32, true),
    configHash: bytesToHex(buf.subarray(40, 72)),
    configName: strings[0],
    configPath: strings[1],
    host: strings[2],
    gswVersion: strings[3],
  };
}

/** What is wrong with a header that does not hold together (if not magic or version: length). */
function damage(magicBytes: number, version: number, len: number): string {
  const what = [];
  if (magicBytes < FILE_MAGIC.length) what.push("magic");
  if (version !== FORMAT_VERSION) what.push(`version ${version}`);
  return what.length > 0 ? what.join(", ") : `header length ${len}`;
}

/** `probe` at window offset `at` (while `w.pos` is 0), reading as much as it needs. */
async function probeAt(w: Window, at: number): Promise<number> {
  for (;;) {
    const r = probe(w.buf, w.view, at, w.end);
    if (r >= 0 || w.eof) return r;
    await w.fill(at - r);
  }
}

/** Moves `w.pos` to the next sync word, or as far as the data read allows when there is none. */
function skipToSync(w: Window): void {
  const next = findSync(w.buf, w.pos + 1, w.end);
  // Keep the last three bytes when no sync was found: they may begin one.
  w.pos = next >= 0 ? next : w.eof ? w.end : Math.max(w.pos + 1, w.end - 3);
}

/** Moves `w.pos` to the first valid record from it; false when the file has none. */
async function seekRecord(w: Window): Promise<boolean> {
  for (;;) {
    await w.fill(RECORD_HEADER_LEN);
    if (w.pos >= w.end && w.eof) return false;
    const r = probe(w.buf, w.view, w.pos, w.end);
    if (r > 0) return true;
    if (r < 0 && !w.eof) await w.fill(-r);
    else skipToSync(w);
  }
}

/** Reads every record of `paths` into memory (for tests and small logs). */
export async function readAll(paths: readonly string[]): Promise<
  { records: LogEntry[]; stats: ReadStats; headers: { file: string; header: FileHeader }[] }
> {
  const reader = new LogReader(paths);
  const records: LogEntry[] = [];
  for await (const r of reader.records()) records.push(r);
  return { records, stats: reader.stats, headers: reader.headers };
}
