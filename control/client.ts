/**
 * The requesting side of the control plane for processes that can afford to wait for one
 * reply (a subscriber connecting, a test): connect, send one request, wait (bounded) for the
 * reply and the descriptors that come with it.
 */
import { closeFd, GswError, type UnixConnection, Waitset } from "../ffi/mod.ts";
import { encode, MAX_CONTROL_MESSAGE, parseReply, type Reply, type Request } from "./protocol.ts";

export interface ReplyWithFds {
  reply: Reply;
  /** Descriptors attached to the reply; the caller owns them. */
  fds: number[];
}

/** Why a request got no reply. */
export class NoReplyError extends Error {
  override name = "NoReplyError";
}

/**
 * Sends a request. Returns false if the peer's queue is full. A peer that has already closed
 * its end (EPIPE, ECONNRESET) is not an error here: a server that refuses a connection (another
 * user, too many clients, shutting down) answers and closes at once, possibly before the
 * request is sent, and its answer — or the hang-up — is what the caller reads next.
 */
export function sendRequest(conn: UnixConnection, message: Uint8Array): boolean {
  try {
    return conn.send(message);
  } catch (e) {
    if (e instanceof GswError && (e.errno === "EPIPE" || e.errno === "ECONNRESET")) return true;
    throw e;
  }
}

/**
 * Sends `request` on `conn` and waits up to `timeoutMs` for the reply. Throws NoReplyError
 * if the peer hangs up or stays silent, ProtocolError if the reply is malformed.
 */
export function requestSync(
  conn: UnixConnection,
  request: Request,
  timeoutMs: number,
): ReplyWithFds {
  if (!sendRequest(conn, encode(request))) {
    throw new NoReplyError("the peer's queue is full; it is not reading its socket");
  }
  using ws = new Waitset();
  ws.add(conn.fd, 0);
  const buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const got = conn.recv(buf);
    if (got === "closed") throw new NoReplyError("the peer closed the connection without replying");
    if (got !== null) {
      try {
        return { reply: parseReply(buf.subarray(0, got.length)), fds: got.fds };
      } catch (e) {
        got.fds.forEach(closeFd);
        throw e;
      }
    }
    const left = Math.ceil(deadline - performance.now());
    if (left <= 0) throw new NoReplyError(`no reply within ${timeoutMs} ms`);
    ws.waitSync(left);
  }
}
