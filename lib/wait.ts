/** Subscribing before the rest of the pipeline is up: `subscribeWhenReady()`. */
import { SubscribeError } from "./errors.ts";
import { subscribe, type Subscription } from "./subscription.ts";
import { RETRY_MS, type SubscribeOptions } from "./updates.ts";

export interface WaitOptions extends SubscribeOptions {
  /** Give up (throwing the last "no-broker" error) after this long; default: never. */
  timeoutMs?: number;
  /** Called once, with why it is waiting, if the broker is not there at first. */
  onWaiting?: (message: string) => void;
}

/**
 * Like `subscribe()`, but when no broker is running yet it waits for one (trying every
 * `RETRY_MS`), so a subscriber may start before the rest of the pipeline. Other errors
 * (an unknown measurement, say) are thrown at once.
 */
export async function subscribeWhenReady(
  names: string | readonly string[],
  options: WaitOptions = {},
): Promise<Subscription> {
  const deadline = performance.now() + (options.timeoutMs ?? Infinity);
  let said = false;
  for (;;) {
    try {
      return subscribe(names, options);
    } catch (e) {
      if (!(e instanceof SubscribeError) || e.code !== "no-broker") throw e;
      if (performance.now() >= deadline || options.signal?.aborted) throw e;
      if (!said) options.onWaiting?.(`${e.message.split(":")[0]}: waiting for it`);
      said = true;
    }
    await new Promise((r) => setTimeout(r, RETRY_MS));
  }
}
