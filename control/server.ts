/**
 * The serving side of the control plane, shared by decom and the broker: a listening socket
 * and its connections in the process's one waitset, the peer's uid checked on accept, every
 * request parsed and validated, exactly one reply per request, and hang-ups reported so the
 * owner can free what it handed out.
 */
import {
  closeFd,
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
 * Serves requests on a socket at `path`. Tokens `tokenBase` to `tokenBase + MAX_CLIENTS`
 * of the waitset are this server's: pass every ready token to `handle`.
 */
export class ControlServer implements Disposable {
  readonly #listener: UnixListener;
  readonly #clients = new Map<number, Client>();
  readonly #buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  readonly #uid = uid();
  #nextId = 1;

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

  /** Handles a ready token; returns false if it is not one of this server's. */
  handle(token: number, events: number): boolean {
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
      const conn = this.#listener.accept();
      if (!conn) return;
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
    let sent = false;
    try {
      sent = client.conn.send(encode(answer.reply), answer.fds ?? []);
      if (!sent) this.log(`client pid ${client.peer.pid} is not reading its socket; dropping it`);
    } catch (e) {
      this.log(`could not reply to pid ${client.peer.pid}: ${(e as Error).message}`);
    }
    answer.done?.(sent);
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
  }

  /** Closes every connection and the listener, and removes the socket file. */
  close(): void {
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
