/**
 * The serving side of the control plane, shared by decom and the broker: a listening socket
 * and its connections in the process's one waitset, the peer's uid checked on accept, every
 * request parsed and validated, exactly one reply per request, and hang-ups reported so the
 * owner can free what it handed out.
 */
import {
  closeFd,
  GswError,
  HANGUP,
  type PeerCred,
  READABLE,
  uid,
  type UnixConnection,
  UnixListener,
  type Waitset,
} from "../ffi/mod.ts";
import {
  encode,
  errorReply,
  MAX_CONTROL_MESSAGE,
  parseRequest,
  ProtocolError,
  type Reply,
  type Request,
} from "./protocol.ts";

/** One client connection. */
export interface Client {
  readonly id: number;
  readonly peer: PeerCred;
  readonly conn: UnixConnection;
}

/** What a handler answers: the reply, and descriptors to attach to it. */
export interface Answer {
  reply: Reply;
  fds?: number[];
  /** Called once the reply is sent (true) or could not be sent (false). */
  done?: (sent: boolean) => void;
}

export interface ServerHandler {
  onRequest(client: Client, request: Request): Answer;
  onClose(client: Client): void;
}

/** Most simultaneous clients; more are refused with a `too-many` reply. */
export const MAX_CLIENTS = 4096;

/**
 * How long the listener stays out of the waitset when accepting fails for want of descriptors
 * or memory. The waitset is level-triggered: left in, the pending connection would wake the
 * process again at once, forever. New clients wait in the listen backlog meanwhile.
 */
export const ACCEPT_PAUSE_MS = 1000;

/** accept() errors that say this process (or the system) is short of something, for now. */
const STARVED = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/**
 * Serves requests on a socket at `path`. Tokens `tokenBase` to `tokenBase + MAX_CLIENTS`
 * of the waitset are this server's: pass every ready token to `handle`, and bound each wait by
 * `poll()` (so a listener paused for want of descriptors resumes on time).
 */
export class ControlServer implements Disposable {
  readonly #listener: UnixListener;
  readonly #clients = new Map<number, Client>();
  readonly #buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  readonly #uid = uid();
  #nextId = 1;
  /** When the paused listener goes back into the waitset (performance.now() ms; 0: listening). */
  #pausedUntil = 0;
  /** Why accepting last failed, while clients wait for it (logged once per episode). */
  #starved = "";

  constructor(
    readonly path: string,
    readonly ws: Waitset,
    readonly tokenBase: number,
    readonly handler: ServerHandler,
    readonly log: (line: string) => void,
  ) {
    this.#listener = new UnixListener(path);
    ws.add(this.#listener.fd, tokenBase, READABLE);
  }

  get clients(): number {
    return this.#clients.size;
  }

  /**
   * Puts a paused listener back into the waitset when due. Returns how long (ms) the owner's
   * next wait may last for that, or -1 when nothing is pending.
   */
  poll(): number {
    if (this.#pausedUntil === 0) return -1;
    const left = Math.ceil(this.#pausedUntil - performance.now());
    if (left > 0) return left;
    this.#resume();
    return -1;
  }

  /** Handles a ready token; returns false if it is not one of this server's. */
  handle(token: number, events: number): boolean {
    // Owners that do not call poll() still resume on the next event of this server.
    if (this.#pausedUntil !== 0) this.poll();
    if (token === this.tokenBase) {
      this.#acceptAll();
      return true;
    }
    const id = token - this.tokenBase;
    if (id <= 0 || id > MAX_CLIENTS) return false;
    const client = this.#clients.get(id);
    if (!client) return true; // closed earlier in this batch of events
    if (events & READABLE) this.#readAll(client);
    if (events & HANGUP && this.#clients.has(id)) this.#drop(client);
    return true;
  }

  #acceptAll(): void {
    for (;;) {
      let conn;
      try {
        conn = this.#listener.accept();
      } catch (e) {
        if (!(e instanceof GswError && STARVED.has(e.errno))) throw e;
        this.#pause(e);
        return;
      }
      if (!conn) {
        if (this.#starved) {
          this.log(`accepting connections again on ${this.path} (was ${this.#starved})`);
          this.#starved = "";
        }
        return;
      }
      const peer = conn.peer!;
      if (peer.uid !== this.#uid) {
        this.log(`refused a connection from uid ${peer.uid} (pid ${peer.pid}): not our user`);
        this.#refuse(
          conn,
          errorReply(
            "not-allowed",
            `this gsw process belongs to uid ${this.#uid}; processes of uid ${peer.uid} may not connect`,
          ),
        );
        continue;
      }
      if (this.#clients.size >= MAX_CLIENTS) {
        this.#refuse(conn, errorReply("too-many", `at most ${MAX_CLIENTS} clients at once`));
        continue;
      }
      const id = this.#freeId();
      const client: Client = { id, peer, conn };
      this.#clients.set(id, client);
      this.ws.add(conn.fd, this.tokenBase + id, READABLE);
    }
  }

  /**
   * Takes the listener out of the waitset for ACCEPT_PAUSE_MS, or until a client leaves and
   * frees a descriptor: clients that connect meanwhile wait in the backlog, and everyone
   * connected is served as usual.
   */
  #pause(e: GswError): void {
    if (!this.#starved) {
      this.#starved = e.errno;
      this.log(
        `cannot accept connections on ${this.path}: ${e.errno} (${
          e.errno === "EMFILE" || e.errno === "ENFILE" ? "out of file descriptors" : "out of memory"
        }); new clients wait, retrying every ${ACCEPT_PAUSE_MS} ms. Raise the limit ` +
          `(\`ulimit -n\`) or serve fewer clients`,
      );
    }
    try {
      this.ws.remove(this.#listener.fd);
    } catch {
      // Not in the set: nothing to undo.
    }
    this.#pausedUntil = performance.now() + ACCEPT_PAUSE_MS;
  }

  #resume(): void {
    if (this.#pausedUntil === 0) return;
    this.#pausedUntil = 0;
    this.ws.add(this.#listener.fd, this.tokenBase, READABLE);
  }

  /**
   * Answers a connection with an error and closes it. What the peer already sent is read
   * first: closing a UNIX socket with unread messages resets the peer's end, and it would
   * lose our answer.
   */
  #refuse(conn: UnixConnection, reply: Reply): void {
    conn.send(encode(reply));
    for (let i = 0; i < 16; i++) {
      try {
        const got = conn.recv(this.#buf);
        if (got === null || got === "closed") break;
        got.fds.forEach(closeFd);
      } catch {
        // An oversize message was discarded; keep draining.
      }
    }
    conn.close();
  }

  #freeId(): number {
    while (this.#clients.has(this.#nextId) || this.#nextId > MAX_CLIENTS) {
      this.#nextId = this.#nextId >= MAX_CLIENTS ? 1 : this.#nextId + 1;
    }
    return this.#nextId++;
  }

  #readAll(client: Client): void {
    for (;;) {
      let got;
      try {
        got = client.conn.recv(this.#buf);
      } catch (e) {
        // A message too large, or with descriptors beyond the limit: refuse it, keep serving.
        this.#reply(client, { reply: errorReply("bad-request", (e as Error).message) });
        continue;
      }
      if (got === null) return;
      if (got === "closed") {
        this.#drop(client);
        return;
      }
      // Clients never have a reason to send descriptors: close any, or they would leak.
      got.fds.forEach(closeFd);
      let answer: Answer;
      try {
        const request = parseRequest(this.#buf.subarray(0, got.length));
        answer = this.handler.onRequest(client, request);
      } catch (e) {
        if (!(e instanceof ProtocolError)) {
          this.log(`internal error answering pid ${client.peer.pid}: ${(e as Error).stack}`);
        }
        answer = {
          reply: e instanceof ProtocolError
            ? e.reply
            : errorReply("internal", `internal error: ${(e as Error).message}`),
        };
      }
      this.#reply(client, answer);
      if (!this.#clients.has(client.id)) return;
    }
  }

  #reply(client: Client, answer: Answer): void {
    let message: Uint8Array;
    let fds = answer.fds ?? [];
    let delivered = true;
    try {
      message = encode(answer.reply);
    } catch (e) {
      // Too large for one message: say so rather than hang up. The handler's descriptors
      // stay unsent (`done(false)` lets it free them).
      this.log(`could not reply to pid ${client.peer.pid}: ${(e as Error).message}`);
      message = encode(
        errorReply("too-large", `the reply does not fit: ${(e as Error).message}; ask for less`),
      );
      fds = [];
      delivered = false;
    }
    let sent = false;
    try {
      sent = client.conn.send(message, fds);
      if (!sent) this.log(`client pid ${client.peer.pid} is not reading its socket; dropping it`);
    } catch (e) {
      this.log(`could not reply to pid ${client.peer.pid}: ${(e as Error).message}`);
    }
    answer.done?.(sent && delivered);
    if (!sent) this.#drop(client);
  }

  #drop(client: Client): void {
    if (!this.#clients.delete(client.id)) return;
    try {
      this.ws.remove(client.conn.fd);
    } catch {
      // Already gone from the set (closed by the peer's hang-up): nothing to undo.
    }
    client.conn.close();
    this.handler.onClose(client);
    // A descriptor is free: a client waiting in the backlog may have it now.
    if (this.#starved) this.#resume();
  }

  /** Closes every connection and the listener, and removes the socket file. */
  close(): void {
    this.#starved = "";
    for (const c of [...this.#clients.values()]) this.#drop(c);
    try {
      this.ws.remove(this.#listener.fd);
    } catch {
      // The waitset may already be closed.
    }
    this.#listener.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
