/**
 * Writes to a pipe, FIFO, socket or terminal without blocking ecap: a reader
 * that stops reading (`| less` paging, a stalled Wireshark, Ctrl-S) would
 * otherwise stop the event loop in a write, and with it Ctrl-C. Bytes are
 * queued and written by async writes, which Deno runs on a thread of their
 * own; the capture waits (and the kernel counts what it loses) while too
 * much is queued, and at the end the queue gets a bounded time to drain.
 * @module
 */

/** What a synchronous output writes to: a file, or a PipeWriter. */
export interface ByteWriter {
  writeSync(p: Uint8Array): number;
}

/** An open file, stdout or stderr: what a PipeWriter writes to. */
interface AsyncWritable {
  write(p: Uint8Array): Promise<number>;
  isTerminal(): boolean;
}

/** Queued bytes past which the capture waits for the reader. */
const HIGH_WATER = 16 << 20;
/** Queued bytes under which it goes on. */
const LOW_WATER = 4 << 20;
/**
 * Bytes handed to one write at most (small pieces are joined up to this):
 * a pipe's buffer, so that a slow reader shows progress write by write.
 */
const WRITE_MAX = 64 << 10;

/** The writers not yet done: what the backlog and the final flush look at. */
const active = new Set<PipeWriter>();

/** Told when a write fails: the reader may be gone while nothing more is written. */
const failureListeners = new Set<(w: PipeWriter, e: unknown) => void>();

/** Calls f when a writer's write fails; returns what stops that. */
export function onOutputFailure(f: (w: PipeWriter, e: unknown) => void): () => void {
  failureListeners.add(f);
  return () => failureListeners.delete(f);
}

/** Writes queued bytes in order, off the event loop; never blocks a caller. */
export class PipeWriter implements ByteWriter {
  #out: AsyncWritable & { close?(): void };
  #queue: Uint8Array[] = [];
  #queued = 0;
  #pumping = false;
  #closing = false;
  #error: unknown;
  /** When a write last completed, or the queue last began to fill. */
  #progressAt = performance.now();
  #changed = Promise.withResolvers<void>();

  /** name is how messages call it ("stdout", a path); closeOut: close out when done. */
  constructor(
    out: AsyncWritable & { close?(): void },
    readonly name: string,
    readonly closeOut = false,
  ) {
    this.#out = out;
    active.add(this);
  }

  /** Bytes waiting for the reader. */
  get queued(): number {
    return this.#queued;
  }

  /** Milliseconds since the reader last took something, if anything waits. */
  get stalledMs(): number {
    return this.#queued === 0 ? 0 : performance.now() - this.#progressAt;
  }

  /**
   * Queues a copy of p. Throws the error an earlier write met (a reader
   * gone: BrokenPipe), after which nothing more is written.
   */
  writeSync(p: Uint8Array): number {
    if (this.#error !== undefined) throw this.#error;
    if (this.#closing) throw new Deno.errors.BadResource(`${this.name} is closed`);
    if (p.length === 0) return 0;
    if (this.#queued === 0) this.#progressAt = performance.now();
    this.#queue.push(p.slice());
    this.#queued += p.length;
    if (!this.#pumping) void this.#pump();
    return p.length;
  }

  /** Closes the output once everything queued is written (at once if nothing is). */
  close() {
    this.#closing = true;
    if (!this.#pumping) this.#finish();
  }

  /** Resolves at the next write completed, error or close. */
  changed(): Promise<void> {
    return this.#changed.promise;
  }

  #notify() {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers<void>();
  }

  async #pump() {
    this.#pumping = true;
    try {
      while (this.#queue.length > 0) {
        const piece = this.#take();
        for (let off = 0; off < piece.length;) {
          off += await this.#out.write(piece.subarray(off));
          this.#progressAt = performance.now();
        }
        this.#queued -= piece.length;
        this.#notify();
      }
    } catch (e) {
      this.#error = e;
      this.#queue = [];
      this.#queued = 0;
      for (const f of failureListeners) f(this, e);
    } finally {
      this.#pumping = false;
    }
    if (this.#closing || this.#error !== undefined) this.#finish();
    this.#notify();
  }

  /** The queue's head, small pieces joined: one write each, not one per line. */
  #take(): Uint8Array {
    const first = this.#queue.shift()!;
    if (first.length >= WRITE_MAX || this.#queue.length === 0) return first;
    let n = first.length, k = 0;
    while (k < this.#queue.length && n + this.#queue[k].length <= WRITE_MAX) {
      n += this.#queue[k++].length;
    }
    if (k === 0) return first;
    const joined = new Uint8Array(n);
    joined.set(first);
    let at = first.length;
    for (const p of this.#queue.splice(0, k)) {
      joined.set(p, at);
      at += p.length;
    }
    return joined;
  }

  #finish() {
    if (!active.delete(this)) return;
    if (this.#closing && this.closeOut) {
      try {
        this.#out.close?.();
      } catch { /* already closed */ }
    }
    this.#notify();
  }

  /** Whether writes to `out` may block: it is not a regular file or a device that never waits. */
  static wanted(out: { isTerminal(): boolean }, info: Deno.FileInfo | undefined): boolean {
    return out.isTerminal() || info?.isFifo === true || info?.isSocket === true;
  }
}

/** What the stdout or stderr descriptor is (a pipe, a file), if it can be told. */
function stdioInfo(fd: 1 | 2): Deno.FileInfo | undefined {
  try {
    return Deno.statSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** More is queued than a reader should be let fall behind by. */
export function outputBacklogged(): boolean {
  for (const w of active) if (w.queued > HIGH_WATER) return true;
  return false;
}

/** Resolves once every writer's queue is back under the low-water mark. */
export async function outputCaughtUp(): Promise<void> {
  for (;;) {
    const behind = [...active].find((w) => w.queued > LOW_WATER);
    if (!behind) return;
    await behind.changed();
  }
}

/**
 * Waits until every writer has written all it holds, or until one has seen
 * its reader take nothing for idleMs. Returns the writers given up on.
 */
export async function drainOutput(idleMs: number): Promise<PipeWriter[]> {
  for (;;) {
    const waiting = [...active].filter((w) => w.queued > 0);
    if (waiting.length === 0) return [];
    const stalled = waiting.filter((w) => w.stalledMs >= idleMs);
    if (stalled.length > 0) return stalled;
    const wait = Math.max(1, idleMs - Math.max(...waiting.map((w) => w.stalledMs)));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      ...waiting.map((w) => w.changed()),
      new Promise<void>((r) => timer = setTimeout(r, wait)),
    ]);
    clearTimeout(timer);
  }
}

/** A writer that can be closed: the file itself, or a PipeWriter over it. */
export type ClosableWriter = ByteWriter & { close(): void };

/**
 * How to write to an opened output file: directly when it is a regular
 * file, through a PipeWriter (which closes it when done) when writes to it
 * may block (a FIFO).
 */
export function writerOf(file: Deno.FsFile, name: string): ClosableWriter {
  return PipeWriter.wanted(file, file.statSync()) ? new PipeWriter(file, name, true) : file;
}

/** How to write to stdout (1) or stderr (2); closing it leaves the descriptor open. */
export function stdioWriter(fd: 1 | 2): ClosableWriter {
  const out = fd === 1 ? Deno.stdout : Deno.stderr;
  if (PipeWriter.wanted(out, stdioInfo(fd))) {
    return new PipeWriter(out, fd === 1 ? "stdout" : "stderr");
  }
  return { writeSync: (p) => out.writeSync(p), close() {} };
}
