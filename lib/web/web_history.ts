/**
 * What the live web view remembers: the last N events (--web-history) as
 * table rows, each with its event for the detail pane and the downloads.
 * An event's bytes are copied out of the ring batch it came in, so a kept
 * event holds nothing else alive; the oldest go first, and are counted.
 * @module
 */
import type { EventBase, ModuleView, ViewColumn } from "../core/module_spec.ts";

/** A table row as the page gets it: [id, ms since the epoch, pid, ...column values]. */
export type Row = (string | number | null)[];

export interface HistoryEntry<E> {
  id: number;
  row: Row;
  event: E;
  bytes: number;
}

/** Default of --web-history. */
export const DEFAULT_WEB_HISTORY = 10_000;
/** Bytes of bodies and data kept at most, whatever --web-history says. */
export const HISTORY_BYTES = 64 << 20;
/** Copies go into blocks of this size (a buffer of its own costs µs and GC work)... */
const BLOCK_BYTES = 1 << 20;
/** ...up to this size; longer ones get their own. */
const SHARED_MAX = 32 << 10;

/** The row of a module without a view of its own: its process and one text line. */
export function genericView<E extends EventBase>(
  format: (ev: E) => string,
): ModuleView<E> {
  return {
    columns: [
      { label: "Process", as: "party", role: "process", value: (ev) => `${ev.comm}[${ev.pid}]` },
      { label: "Event", as: "text", role: "main", value: (ev) => format(ev).split("\n")[0] },
    ],
  };
}

export class WebHistory<E extends EventBase> {
  readonly limit: number;
  readonly #columns: readonly ViewColumn<E>[];
  readonly #shows: (ev: E) => boolean;
  readonly #maxBytes: number;
  #entries: HistoryEntry<E>[] = [];
  /** Index of the oldest live entry in #entries (shifting one at a time is O(n)). */
  #head = 0;
  #nextId = 1;
  #bytes = 0;
  /** Rows dropped to stay within the limits. */
  dropped = 0;

  constructor(view: ModuleView<E>, limit = DEFAULT_WEB_HISTORY, maxBytes = HISTORY_BYTES) {
    this.limit = limit;
    this.#columns = view.columns;
    this.#shows = view.shows ?? (() => true);
    this.#maxBytes = maxBytes;
  }

  /** Rows kept now. */
  get kept(): number {
    return this.#entries.length - this.#head;
  }

  /** Adds the events that make rows; returns the new rows. */
  add(batch: readonly E[]): Row[] {
    const rows: Row[] = [];
    for (const ev of batch) {
      if (!this.#shows(ev)) continue;
      const { copy, bytes } = this.#detach(ev, 0);
      const row: Row = [this.#nextId, Number(ev.timeNs / 1000n) / 1000, ev.pid];
      for (const c of this.#columns) row.push(c.value(ev) ?? null);
      this.#entries.push({ id: this.#nextId++, row, event: copy as E, bytes: bytes + 256 });
      this.#bytes += bytes + 256;
      rows.push(row);
    }
    while (this.kept > this.limit || (this.#bytes > this.#maxBytes && this.kept > 1)) {
      this.#bytes -= this.#entries[this.#head].bytes;
      this.#head++;
      this.dropped++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#entries.length) {
      this.#entries = this.#entries.slice(this.#head);
      this.#head = 0;
    }
    return rows;
  }

  /** Rows after id `after`, oldest first. */
  rowsAfter(after: number): Row[] {
    const out: Row[] = [];
    for (let i = this.#firstAfter(after); i < this.#entries.length; i++) {
      out.push(this.#entries[i].row);
    }
    return out;
  }

  /** The entry with this id, if still kept. */
  get(id: number): HistoryEntry<E> | undefined {
    const i = this.#firstAfter(id - 1);
    const e = this.#entries[i];
    return e?.id === id ? e : undefined;
  }

  /** Every kept entry, oldest first. */
  *entries(): Generator<HistoryEntry<E>> {
    for (let i = this.#head; i < this.#entries.length; i++) yield this.#entries[i];
  }

  /** Index of the first kept entry whose id is > after (ids increase). */
  #firstAfter(after: number): number {
    let lo = this.#head, hi = this.#entries.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#entries[mid].id <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  #block = new Uint8Array(0);
  #used = 0;

  /**
   * A copy of an event whose byte arrays hold nothing else alive (a view
   * into a ring batch or a decoder's block would keep all of it); returns
   * the bytes it holds too. Entries go oldest first, so blocks free in order.
   */
  #detach(value: unknown, depth: number): { copy: unknown; bytes: number } {
    if (value instanceof Uint8Array) {
      const n = value.byteLength;
      if (n > SHARED_MAX) {
        const whole = value.byteOffset === 0 && n === value.buffer.byteLength;
        return { copy: whole ? value : value.slice(), bytes: n };
      }
      if (this.#used + n > this.#block.length) {
        this.#block = new Uint8Array(BLOCK_BYTES), this.#used = 0;
      }
      const copy = this.#block.subarray(this.#used, this.#used + n);
      copy.set(value);
      this.#used += n;
      return { copy, bytes: n };
    }
    if (depth > 3 || value === null || typeof value !== "object" || Array.isArray(value)) {
      return { copy: value, bytes: 0 };
    }
    const copy: Record<string, unknown> = {};
    let bytes = 0;
    for (const k in value) {
      const d = this.#detach((value as Record<string, unknown>)[k], depth + 1);
      copy[k] = d.copy;
      bytes += d.bytes;
    }
    return { copy, bytes };
  }
}
