/**
 * Several captures run as one: their batches merged as they come, their
 * counters added up, one stop and one dispose. `ecap tls` runs one capture
 * per TLS library family (OpenSSL, GnuTLS, NSS, Go) this way.
 * @module
 */
import type { AttachedProbe, Capture, CaptureStats } from "./capture.ts";
import type { EventBase } from "./module_spec.ts";

/** What the command line needs of a running capture, one or several. */
export interface RunningCapture<E extends EventBase> extends AsyncDisposable {
  readonly notes: readonly string[];
  readonly probes: readonly AttachedProbe[];
  batches(): AsyncGenerator<E[]>;
  stop(): void;
  stats(): CaptureStats;
  allowedPids(): number[];
}

/** Captures started together, read as one stream of batches. */
export class CaptureGroup<E extends EventBase> implements RunningCapture<E> {
  readonly captures: readonly Capture<E>[];
  readonly notes: readonly string[];

  constructor(captures: readonly Capture<E>[], notes: readonly string[] = []) {
    this.captures = captures;
    this.notes = [...notes, ...captures.flatMap((c) => c.notes)];
  }

  get probes(): readonly AttachedProbe[] {
    return this.captures.flatMap((c) => c.probes);
  }

  /** Batches of every capture, each as soon as it is there; ends when all have. */
  async *batches(): AsyncGenerator<E[]> {
    const its = this.captures.map((c) => c.batches());
    // A pump per capture and one waiter. Promise.race over the captures'
    // pending next() would leave, on a capture that stays quiet, a reaction
    // per race, each holding the batch that race returned: every batch of
    // the others, kept until the quiet one yields (measured: 1 MiB/s).
    const queue: { batch: E[]; taken: () => void }[] = [];
    let wake: (() => void) | undefined;
    let running = its.length, closing = false;
    let failure: { error: unknown } | undefined;
    const signal = () => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    const pumps = its.map(async (it) => {
      try {
        for (;;) {
          const r = await it.next();
          if (r.done || closing) break;
          // the next batch is pulled once this one is taken, as the reader asks
          await new Promise<void>((taken) => {
            queue.push({ batch: r.value, taken });
            signal();
          });
        }
      } catch (error) {
        failure ??= { error };
      } finally {
        running--;
        signal();
      }
    });
    try {
      for (;;) {
        const next = queue.shift();
        if (next) {
          next.taken();
          yield next.batch;
          continue;
        }
        if (failure) throw failure.error;
        if (running === 0) break;
        await new Promise<void>((r) => wake = r);
      }
    } finally {
      // a consumer that stops early ends every capture's loop
      closing = true;
      for (const c of this.captures) c.stop();
      for (const q of queue.splice(0)) q.taken();
      await Promise.allSettled(its.map((it) => it.return(undefined)));
      await Promise.allSettled(pumps);
    }
  }

  stop() {
    for (const c of this.captures) c.stop();
  }

  /** The captures' counters added up (per CPU too). */
  stats(): CaptureStats {
    const all = this.captures.map((c) => c.stats());
    const sum = (f: (s: CaptureStats) => number) => all.reduce((a, s) => a + f(s), 0);
    const cpus = Math.max(0, ...all.map((s) => s.lostPerCpu.length));
    return {
      records: sum((s) => s.records),
      lostPerCpu: Array.from({ length: cpus }, (_, i) => sum((s) => s.lostPerCpu[i] ?? 0)),
      unfollowed: sum((s) => s.unfollowed),
      lost: sum((s) => s.lost),
      truncated: sum((s) => s.truncated),
      shed: sum((s) => s.shed),
      malformed: sum((s) => s.malformed),
      events: sum((s) => s.events),
      bytes: sum((s) => s.bytes),
    };
  }

  allowedPids(): number[] {
    return [...new Set(this.captures.flatMap((c) => c.allowedPids()))];
  }

  async [Symbol.asyncDispose]() {
    await Promise.allSettled(this.captures.map((c) => c[Symbol.asyncDispose]()));
  }
}
