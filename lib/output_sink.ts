/**
 * Writes output in whole batches, and notices when the reader went away
 * (`ecap ... | head -1`) so the capture can end quietly.
 * @module
 */

const encoder = new TextEncoder();

/** A synchronous writer over a file or stdout. */
export class OutputSink {
  #w: { writeSync(p: Uint8Array): number };
  #closed = false;

  constructor(w: { writeSync(p: Uint8Array): number }) {
    this.#w = w;
  }

  /** True once the reader has closed its end. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Writes all of text. Returns false when the other end is gone (the text
   * is then dropped: nobody can read it). Other I/O errors throw.
   */
  write(text: string): boolean {
    if (this.#closed) return false;
    const bytes = encoder.encode(text);
    try {
      for (let off = 0; off < bytes.length;) off += this.#w.writeSync(bytes.subarray(off));
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) {
        this.#closed = true;
        return false;
      }
      throw e;
    }
    return true;
  }
}
