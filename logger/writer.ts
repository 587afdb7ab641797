/**
 * The logger's files: one run directory per logger start with the config copied in, numbered
 * log files rotated by size at record boundaries, and write failures (disk full, permissions)
 * turned into a paused state that keeps what it holds and retries, instead of losing the run.
 */
import { encodeFileHeader, recordLength } from "./format.ts";

export interface RunOptions {
  /** Parent directory; the run gets a subdirectory named after its UTC start time. */
  logDir: string;
  /** Start a new file before one would grow past this many bytes. */
  maxFileBytes: number;
  /** The config file's bytes, copied into the run directory as `config.yaml`. */
  configBytes: Uint8Array;
  configPath: string;
  configName: string;
  configHash: string;
  host: string;
  gswVersion: string;
  /** CLOCK_REALTIME now, ns (the clock of the records). */
  nowNs: () => bigint;
  /** Bytes of the buffer that collects records between writes. */
  bufferBytes?: number;
}

/** Name of the config copy in every run directory. */
export const CONFIG_COPY = "config.yaml";

/** `gsw-0001.gswlog`, …: four digits so names sort, more once a run passes 9999 files. */
export function logFileName(sequence: number): string {
  return `gsw-${String(sequence).padStart(4, "0")}.gswlog`;
}

/** `2025-11-26T14-04-05Z`: ISO 8601 UTC without colons, which some file systems refuse. */
export function runDirName(ns: bigint): string {
  const iso = new Date(Number(ns / 1_000_000n)).toISOString();
  return `${iso.slice(0, 19).replaceAll(":", "-")}Z`;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class RunWriter {
  /** Records waiting to be written; callers append at `length` and call `commit`. */
  readonly buffer: Uint8Array;
  readonly view: DataView;
  length = 0;
  /** Bytes at the start of `buffer` already written (non-zero only while failing). */
  #done = 0;

  #file: Deno.FsFile | null = null;
  #fileBytes = 0;
  #headerBytes = 0;
  #sequence = 0;
  #unsynced = false;
  #lastSync = performance.now();

  /** Files created, records and bytes written (headers included in bytes). */
  files = 0;
  records = 0;
  bytes = 0;
  /** Write failures seen (each failed attempt). */
  failures = 0;
  /** The current failure, or null while writing works. */
  error: string | null = null;

  private constructor(
    readonly dir: string,
    readonly runStartNs: bigint,
    readonly opts: RunOptions,
  ) {
    this.buffer = new Uint8Array(opts.bufferBytes ?? 8 << 20);
    this.view = new DataView(this.buffer.buffer);
  }

  /**
   * Creates the run directory (a new one even when a run started in the same second) with the
   * config copied in, and the first log file. Throws what the file system threw (NotCapable
   * when Deno's permissions do not cover the directory).
   */
  static create(opts: RunOptions): RunWriter {
    const start = opts.nowNs();
    Deno.mkdirSync(opts.logDir, { recursive: true });
    const base = `${opts.logDir}/${runDirName(start)}`;
    let dir = base;
    for (let n = 2;; n++) {
      try {
        Deno.mkdirSync(dir);
        break;
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
        dir = `${base}-${n}`;
      }
    }
    Deno.writeFileSync(`${dir}/${CONFIG_COPY}`, opts.configBytes, { createNew: true });
    const w = new RunWriter(dir, start, opts);
    w.#openNext();
    return w;
  }

  /** Path of the file being written, or of the next one when none is open. */
  get currentFile(): string {
    return `${this.dir}/${logFileName(this.#file ? this.#sequence : this.#sequence + 1)}`;
  }

  /** Free bytes in `buffer`. */
  get room(): number {
    return this.buffer.length - this.length;
  }

  /** Records in `buffer` not yet written. */
  get pendingRecords(): number {
    let n = 0;
    for (let at = this.#done; at < this.length; n++) {
      at += recordLength(this.view.getUint32(at + 20, true));
    }
    return n;
  }

  #openNext(): void {
    const sequence = this.#sequence + 1;
    const path = `${this.dir}/${logFileName(sequence)}`;
    const header = encodeFileHeader({
      sequence,
      startNs: this.opts.nowNs(),
      runStartNs: this.runStartNs,
      configHash: this.opts.configHash,
      configName: this.opts.configName,
      configPath: this.opts.configPath,
      host: this.opts.host,
      gswVersion: this.opts.gswVersion,
    });
    const file = Deno.openSync(path, { write: true, create: true, truncate: true });
    try {
      const w = writeAll(file, header);
      if (w.error !== undefined) throw w.error;
    } catch (e) {
      file.close();
      try {
        Deno.removeSync(path);
      } catch {
        // Best effort: the next attempt truncates it anyway.
      }
      throw e;
    }
    this.#file = file;
    this.#sequence = sequence;
    this.#fileBytes = header.length;
    this.#headerBytes = header.length;
    this.#unsynced = true;
    this.files++;
    this.bytes += header.length;
  }

  #closeCurrent(): void {
    const file = this.#file;
    if (!file) return;
    this.#file = null;
    try {
      file.syncDataSync();
    } finally {
      file.close();
    }
    this.#unsynced = false;
  }

  /**
   * Writes the buffered records, starting new files at the size limit (between records; a
   * file holds at least one). Returns true when everything was written. On failure, keeps the
   * whole records that reached the file, cuts off any torn one, keeps the rest buffered, sets
   * `error` and returns false; call again to retry. A retry after a file took records starts
   * a new file, which also gets past a per-file size limit (EFBIG).
   */
  commit(): boolean {
    try {
      while (this.#done < this.length) {
        if (!this.#file) this.#openNext();
        const start = this.#done;
        let end = start;
        while (end < this.length) {
          const len = recordLength(this.view.getUint32(end + 20, true));
          const first = this.#fileBytes === this.#headerBytes && end === start;
          if (!first && this.#fileBytes + (end - start) + len > this.opts.maxFileBytes) break;
          end += len;
        }
        if (end > start) {
          const w = writeAll(this.#file!, this.buffer.subarray(start, end));
          if (w.error !== undefined) {
            this.#keepWhole(w.written);
            throw w.error;
          }
          this.#advance(end - start);
        }
        if (this.#done < this.length) this.#closeCurrent();
      }
      this.length = 0;
      this.#done = 0;
      this.error = null;
      return true;
    } catch (e) {
      this.failures++;
      this.error = `cannot write ${this.currentFile}: ${errorText(e)}`;
      this.#recover();
      return false;
    }
  }

  /** After a write stopped part way: keeps the whole records among the `written` bytes. */
  #keepWhole(written: number): void {
    let keep = 0;
    for (let at = this.#done; at < this.length;) {
      const len = recordLength(this.view.getUint32(at + 20, true));
      if (keep + len > written) break;
      keep += len;
      at += len;
    }
    this.#advance(keep);
  }

  /** Counts `bytes` of whole records from `#done` as written. */
  #advance(bytes: number): void {
    let n = 0;
    for (let at = this.#done; at < this.#done + bytes; n++) {
      at += recordLength(this.view.getUint32(at + 20, true));
    }
    this.#fileBytes += bytes;
    this.bytes += bytes;
    this.records += n;
    this.#done += bytes;
    this.#unsynced = true;
  }

  /**
   * After a failed write: cuts the file back to its last whole record, then closes it if it
   * holds records, so the retry starts a new file rather than hitting the same wall.
   */
  #recover(): void {
    const file = this.#file;
    if (!file) return;
    let usable = true;
    try {
      file.truncateSync(this.#fileBytes);
      file.seekSync(this.#fileBytes, Deno.SeekMode.Start);
    } catch {
      usable = false; // A reader skips a torn record anyway; a fresh file is cleaner.
    }
    if (usable && this.#fileBytes === this.#headerBytes) return;
    this.#file = null;
    try {
      file.close();
    } catch {
      // Already unusable.
    }
  }

  /**
   * fdatasync at most every `intervalMs`, so a power cut loses at most that much. Returns
   * false (and sets `error`) when the sync failed: the data may not be on disk.
   */
  maybeSync(intervalMs: number): boolean {
    const now = performance.now();
    if (!this.#unsynced || !this.#file || now - this.#lastSync < intervalMs) return true;
    this.#lastSync = now;
    try {
      this.#file.syncDataSync();
      this.#unsynced = false;
      return true;
    } catch (e) {
      this.failures++;
      this.error = `cannot sync ${this.currentFile} to disk: ${errorText(e)}`;
      return false;
    }
  }

  /** True when written data awaits an fdatasync. */
  get unsynced(): boolean {
    return this.#unsynced;
  }

  /** Writes what it can, syncs and closes. Returns the records that could not be written. */
  close(): number {
    const lost = this.commit() ? 0 : this.pendingRecords;
    try {
      this.#closeCurrent();
    } catch (e) {
      this.error = `cannot close ${this.currentFile}: ${errorText(e)}`;
    }
    return lost;
  }
}

/** Writes `data`; on failure, says how much had been written before it. */
function writeAll(file: Deno.FsFile, data: Uint8Array): { written: number; error?: unknown } {
  let at = 0;
  while (at < data.length) {
    try {
      at += file.writeSync(data.subarray(at));
    } catch (error) {
      return { written: at, error };
    }
  }
  return { written: at };
}
