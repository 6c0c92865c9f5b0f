/**
 * Writes output in whole batches, and notices when the reader went away
 * (`ecap ... | head -1`) so the capture can end quietly.
 * @module
 */
import { ioError } from "./output_file.ts";
import type { ByteWriter } from "./pipe_writer.ts";

const encoder = new TextEncoder();

/** A synchronous writer over a file or stdout. */
export class OutputSink {
  #w: ByteWriter;
  #name: string;
  #closed = false;
  /** Text is encoded into this, a piece at a time. */
  readonly #buf = new Uint8Array(1 << 20);
  /** Bytes of whole batches written to a file: what a failed write rolls back to. */
  #committed: number | undefined;

  /** name is how errors call it, e.g. "stdout" or the file's path. */
  constructor(w: ByteWriter, name = "stdout") {
    this.#w = w;
    this.#name = name;
    if (w instanceof Deno.FsFile) this.#committed = w.statSync().size;
  }

  /** True once the reader has closed its end. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Writes all of text. Returns false when the other end is gone (the text
   * is then dropped: nobody can read it). Other I/O errors (a full disk)
   * throw an EcapError; what was written before stays.
   */
  write(text: string): boolean {
    if (this.#closed) return false;
    try {
      // encoded a buffer's worth at a time: a batch of large events (64 KiB
      // bodies as JSON) would otherwise grow a buffer that is then kept
      let batchBytes = 0;
      for (let rest = text; rest.length > 0;) {
        const { read, written } = encoder.encodeInto(rest, this.#buf);
        rest = rest.slice(read);
        const bytes = this.#buf.subarray(0, written);
        for (let off = 0; off < bytes.length;) off += this.#w.writeSync(bytes.subarray(off));
        batchBytes += written;
      }
      if (this.#committed !== undefined) this.#committed += batchBytes;
    } catch (e) {
      if (e instanceof Deno.errors.BrokenPipe) {
        this.#closed = true;
        return false;
      }
      // A file keeps only whole batches: a half-written line would corrupt it.
      if (this.#w instanceof Deno.FsFile && this.#committed !== undefined) {
        try {
          this.#w.truncateSync(this.#committed);
        } catch { /* the error below says what went wrong */ }
      }
      throw ioError(this.#name, e);
    }
    return true;
  }
}
