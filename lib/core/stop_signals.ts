/**
 * SIGINT and SIGTERM from ecap's first moment to its exit. Once a capture
 * is starting, a signal stops it (at once if it arrives while the capture
 * loads): the ring is drained, the output written, the probes removed, and
 * the exit status stays 0 however many signals come and whenever. Before
 * that (parsing, --list-targets) there is nothing to finish: ecap ends, 0.
 * @module
 */

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

export class StopSignals {
  /** A signal came after the capture began starting. */
  requested = false;
  #capturing = false;
  #stop?: () => void;
  readonly #onSignal = () => this.#signal();

  constructor() {
    for (const s of SIGNALS) Deno.addSignalListener(s, this.#onSignal);
  }

  /** From now on a signal stops the capture instead of ending ecap. */
  captureStarting() {
    this.#capturing = true;
  }

  /** What stops the capture: called now if a signal came while it started. */
  onStop(stop: () => void) {
    this.#stop = stop;
    if (this.requested) stop();
  }

  #signal() {
    if (!this.#capturing) Deno.exit(0); // nothing of ours to finish yet
    this.requested = true;
    this.#stop?.();
  }

  /** The listeners go (tests that run main() more than once in a process). */
  [Symbol.dispose]() {
    for (const s of SIGNALS) Deno.removeSignalListener(s, this.#onSignal);
  }
}
