/** Reading a child process's output line by line. */

/**
 * The lines of a byte stream (UTF-8), without their newlines; a last line without one is
 * yielded too. Ends when the stream does; a stream that errors (its process gone) just ends.
 */
export async function* textLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let pending = "";
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream) {
      pending += decoder.decode(chunk, { stream: true });
      let nl;
      while ((nl = pending.indexOf("\n")) >= 0) {
        yield pending.slice(0, nl);
        pending = pending.slice(nl + 1);
      }
    }
  } catch {
    // The process is gone; whatever it printed last follows.
  }
  pending += decoder.decode();
  if (pending) yield pending;
}
