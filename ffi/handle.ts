/**
 * Ownership of native objects and descriptors from TypeScript: each wrapper frees its handle
 * exactly once (on `close()` or `using` scope exit), and any use after that throws instead of
 * handing a dangling pointer to native code.
 */
import { GswError, native } from "./library.ts";

/** A native handle (pointer) released by `free` exactly once. */
export abstract class NativeObject implements Disposable {
  #ptr: Deno.PointerObject | null;
  readonly #free: (p: Deno.PointerObject) => void;
  readonly #what: string;

  protected constructor(
    ptr: Deno.PointerObject,
    free: (p: Deno.PointerObject) => void,
    what: string,
  ) {
    this.#ptr = ptr;
    this.#free = free;
    this.#what = what;
  }

  /** The live handle; throws once closed. */
  get handle(): Deno.PointerObject {
    if (this.#ptr === null) throw closedError(this.#what);
    return this.#ptr;
  }

  get closed(): boolean {
    return this.#ptr === null;
  }

  close(): void {
    const p = this.#ptr;
    if (p === null) return;
    this.#ptr = null;
    this.#free(p);
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

/** A file descriptor this process owns, closed exactly once. */
export class OwnedFd implements Disposable {
  #fd: number;
  constructor(fd: number, readonly what: string) {
    this.#fd = fd;
  }

  get fd(): number {
    if (this.#fd < 0) throw closedError(this.what);
    return this.#fd;
  }

  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Gives up ownership without closing (the caller now owns the number). */
  release(): number {
    const fd = this.fd;
    this.#fd = -1;
    return fd;
  }

  close(): void {
    if (this.#fd < 0) return;
    native().gsw_close(this.#fd);
    this.#fd = -1;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

export function closedError(what: string): GswError {
  return new GswError(1006, "EBADHANDLE", `${what} is already closed`);
}
