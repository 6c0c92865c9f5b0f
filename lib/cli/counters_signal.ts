/**
 * tcpdump's SIGUSR1: the counters so far, and the capture goes on. The
 * signal is ecap's alone (ownSigusr1: Deno's handler would open a V8
 * inspector), read by polling how many came.
 * @module
 */
import { ownSigusr1, sigusr1Count } from "../core/ffi.ts";

/** How often the count is read: a reply within this feels immediate. */
const POLL_MS = 100;

/** Calls f after each SIGUSR1 (several close together: once) until disposed. */
export function onCountersSignal(f: () => void): Disposable {
  ownSigusr1();
  let seen = sigusr1Count();
  const timer = setInterval(() => {
    const n = sigusr1Count();
    if (n === seen) return;
    seen = n;
    f();
  }, POLL_MS);
  return { [Symbol.dispose]: () => clearInterval(timer) };
}
