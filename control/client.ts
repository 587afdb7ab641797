/**
 * The requesting side of the control plane for processes that can afford to wait for one
 * reply (a subscriber connecting, a test): connect, send one request, wait (bounded) for the
 * reply and the descriptors that come with it.
 */
import { closeFd, type UnixConnection, Waitset } from "../ffi/mod.ts";
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
 * Sends `request` on `conn` and waits up to `timeoutMs` for the reply. Throws NoReplyError
 * if the peer hangs up or stays silent, ProtocolError if the reply is malformed.
 */
export function requestSync(
  conn: UnixConnection,
  request: Request,
  timeoutMs: number,
): ReplyWithFds {
  if (!conn.send(encode(request))) {
    throw new NoReplyError("the peer's queue is full; it is not reading its socket");
  }
  using ws = new Waitset();
  ws.add(conn.fd, 0);
  const buf = new Uint8Array(MAX_CONTROL_MESSAGE);
  const deadline = Date.now() + timeoutMs;
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
    const left = deadline - Date.now();
    if (left <= 0) throw new NoReplyError(`no reply within ${timeoutMs} ms`);
    ws.waitSync(left);
  }
}
