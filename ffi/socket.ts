/**
 * UNIX sockets for the control plane: SEQPACKET listeners and connections that carry small
 * messages with file descriptors attached, the peer's credentials, and the private run
 * directory they live in. All non-blocking; wait for them with a Waitset.
 */
import { OwnedFd } from "./handle.ts";
import { check, EAGAIN, native, utf8 } from "./library.ts";

export const SEQPACKET = 0;
export const DATAGRAM = 1;

/** Most descriptors one message may carry (as in `ffi/src/sock.rs`). */
export const MAX_FDS = 64;

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** Creates the run directory (0700) if needed; refuses one others own or can enter. */
export function prepareRunDir(dir: string): void {
  const p = utf8(dir);
  check(native().gsw_prepare_run_dir(p, p.byteLength), "preparing the run directory");
}

/** Removes a file (e.g. this process's socket at shutdown). Returns false if it was missing. */
export function unlinkPath(path: string): boolean {
  const p = utf8(path);
  return check(native().gsw_unlink(p, p.byteLength), `removing ${path}`) === 1;
}

/** A connected SEQPACKET socket. */
export class UnixConnection extends OwnedFd {
  readonly #cred = new Uint32Array(3);
  readonly #fdsOut = new Int32Array(MAX_FDS);
  readonly #nfds = new Uint32Array(1);

  constructor(fd: number, readonly peer?: PeerCred) {
    super(fd, "UNIX connection");
  }

  /** Connects to a listener at `path`. */
  static connect(path: string, kind = SEQPACKET): UnixConnection {
    const p = utf8(path);
    const fd = check(native().gsw_unix_connect(p, p.byteLength, kind), `connecting to ${path}`);
    return new UnixConnection(fd);
  }

  peerCred(): PeerCred {
    check(native().gsw_peer_cred(this.fd, this.#cred), "reading peer credentials");
    return { pid: this.#cred[0], uid: this.#cred[1], gid: this.#cred[2] };
  }

  /**
   * Sends one message with descriptors attached (the caller keeps its own copies). Returns
   * false if the peer's queue is full (nothing was sent).
   */
  send(message: Uint8Array, fds: readonly number[] = []): boolean {
    const fdBuf = new Int32Array(fds);
    const r = native().gsw_unix_send(this.fd, message, message.byteLength, fdBuf, fds.length);
    if (r === EAGAIN) return false;
    check(r, "sending a control message");
    return true;
  }

  /**
   * Receives one message into `buf`. Returns null when nothing is waiting, "closed" when the
   * peer hung up, else the length and the descriptors that came with it (now owned by the
   * caller).
   */
  recv(buf: Uint8Array): { length: number; fds: number[] } | null | "closed" {
    const r = native().gsw_unix_recv(
      this.fd,
      buf,
      buf.byteLength,
      this.#fdsOut,
      MAX_FDS,
      this.#nfds,
    );
    if (r === EAGAIN) return null;
    if (check(r, "receiving a control message") === 0) return "closed";
    return { length: r, fds: Array.from(this.#fdsOut.subarray(0, this.#nfds[0])) };
  }
}

/** A listening SEQPACKET socket bound at a path (stale files replaced, live ones refused). */
export class UnixListener extends OwnedFd {
  readonly #cred = new Uint32Array(3);

  constructor(readonly path: string, kind = SEQPACKET) {
    const p = utf8(path);
    super(check(native().gsw_unix_listen(p, p.byteLength, kind), `listening on ${path}`), path);
  }

  /** Accepts one pending connection, with its peer's credentials; null if none is waiting. */
  accept(): UnixConnection | null {
    const r = native().gsw_unix_accept(this.fd, this.#cred);
    if (r === EAGAIN) return null;
    check(r, `accepting on ${this.path}`);
    return new UnixConnection(r, { pid: this.#cred[0], uid: this.#cred[1], gid: this.#cred[2] });
  }

  /** Closes the socket and removes its file. */
  override close(): void {
    if (this.closed) return;
    super.close();
    try {
      unlinkPath(this.path);
    } catch {
      // Best effort: a stale file is replaced by the next listener anyway.
    }
  }
}

/** Closes a raw descriptor this process owns (e.g. received but not wanted). */
export function closeFd(fd: number): void {
  native().gsw_close(fd);
}
