/**
 * --har FILE: every exchange as a HAR 1.2 entry, the file a whole, valid
 * document after each write: new entries go in over the closing brackets,
 * followed by them again, once a second and when the capture ends.
 * @module
 */
import { ioError, openReplacedFile } from "../core/output_file.ts";
import { HAR_TAIL, harEntry, harHead } from "../http/har.ts";
import type { HttpExchange } from "../http/exchanges.ts";

const encoder = new TextEncoder();

/** A HAR document being written. */
export class HarFile {
  readonly path: string;
  #file: Deno.FsFile;
  /** Where the closing brackets start. */
  #tail: number;
  #pending: string[] = [];
  #count = 0;

  constructor(path: string, version: string) {
    this.path = path;
    this.#file = openReplacedFile(path);
    const head = encoder.encode(harHead(version));
    this.#writeAt(0, [head, encoder.encode(HAR_TAIL)]);
    this.#tail = head.length;
  }

  /** Entries written so far. */
  get entries(): number {
    return this.#count;
  }

  /** Queues an exchange; it reaches the file at the next flush. */
  add(x: HttpExchange) {
    this.#pending.push(JSON.stringify(harEntry(x)));
  }

  /** Writes queued entries and the closing brackets after them. */
  flush() {
    if (this.#pending.length === 0) return;
    const body = encoder.encode((this.#count > 0 ? "," : "") + this.#pending.join(","));
    this.#writeAt(this.#tail, [body, encoder.encode(HAR_TAIL)]);
    this.#tail += body.length;
    this.#count += this.#pending.length;
    this.#pending = [];
  }

  close() {
    try {
      this.flush();
    } finally {
      this.#file.close();
    }
  }

  /** One buffer at `at`, so that the document is whole after each write. */
  #writeAt(at: number, parts: Uint8Array[]) {
    const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) all.set(p, o), o += p.length;
    try {
      this.#file.seekSync(at, Deno.SeekMode.Start);
      for (let done = 0; done < all.length;) done += this.#file.writeSync(all.subarray(done));
    } catch (e) {
      throw ioError(this.path, e);
    }
  }
}
