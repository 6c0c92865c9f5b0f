/**
 * The live web view (--web): Deno's own HTTP server, in the capture's
 * process, serving the embedded page, its rows as Server-Sent Events, an
 * event's detail, and the history as HAR or JSON lines. Read only: nothing
 * served changes what is probed.
 * @module
 */
import { EcapError } from "../base/errors.ts";
import type { CaptureStats } from "../core/capture.ts";
import type { EventBase, ModuleView } from "../core/module_spec.ts";
import { HAR_TAIL, harHead } from "../http/har.ts";
import { PAGE_ASSETS } from "./page_assets.ts";
import { checkAccess, isLoopback, newToken, type WebAddress } from "./web_access.ts";
import { type Row, WebHistory } from "./web_history.ts";

/** What the view shows, and where it comes from. */
export interface WebSource<E> {
  module: string;
  version: string;
  view: ModuleView<E>;
  toJSON(event: E): Record<string, unknown>;
  stats(): CaptureStats;
}

export interface WebOptions {
  address: WebAddress;
  /** Needed by every request; made up when the address is not loopback and none is given. */
  token?: string;
  /** Rows kept (--web-history). */
  history?: number;
}

/** How often new rows go out, and the counters. */
const ROWS_EVERY_MS = 100;
const STATS_EVERY_MS = 1000;
/** Rows in one message of the history sent on connecting. */
const HISTORY_CHUNK = 2000;
/** A page this far behind is dropped; its browser reconnects from the last row it has. */
const SLOW_CLIENT_BYTES = 32 << 20;

// the page's own files and the same origin's API, nothing else
const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; " +
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; " +
    "frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "cross-origin-resource-policy": "same-origin",
};

const encoder = new TextEncoder();

function respond(body: BodyInit | null, status: number, headers: Record<string, string> = {}) {
  return new Response(body, { status, headers: { ...SECURITY_HEADERS, ...headers } });
}

function json(value: unknown, status = 200): Response {
  return respond(JSON.stringify(value), status, {
    "content-type": "application/json; charset=utf-8",
  });
}

/** "20261204-203000" for a download's name. */
function stamp(ms: number): string {
  return new Date(ms).toISOString().slice(0, 19).replace(/[-:]/g, "").replace("T", "-");
}

/** One page's event stream. */
interface Client {
  controller: ReadableStreamDefaultController<Uint8Array>;
}

export class WebView<E extends EventBase> implements AsyncDisposable {
  /** The address to open, with the token when one is needed: print it once. */
  readonly url: string;
  readonly history: WebHistory<E>;
  readonly #source: WebSource<E>;
  readonly #token?: string;
  readonly #server: Deno.HttpServer;
  readonly #started = Date.now();
  readonly #clients = new Set<Client>();
  #pending: Row[] = [];
  #running = true;
  readonly #rowsTimer: ReturnType<typeof setInterval>;
  readonly #statsTimer: ReturnType<typeof setInterval>;

  private constructor(source: WebSource<E>, opts: WebOptions) {
    this.#source = source;
    const { hostname, port } = opts.address;
    this.#token = opts.token ?? (isLoopback(hostname) ? undefined : newToken());
    this.history = new WebHistory(source.view, opts.history);
    try {
      this.#server = Deno.serve(
        { hostname, port, onListen: () => {} },
        (req) => this.#handle(req),
      );
    } catch (e) {
      const why = e instanceof Deno.errors.AddrInUse
        ? "the address is in use"
        : e instanceof Deno.errors.AddrNotAvailable
        ? "no interface has that address"
        : (e as Error).message;
      throw new EcapError(`Cannot serve the live view on ${hostname}:${port}: ${why}`, {
        kind: "usage",
        hint: "choose another with --web ADDR:PORT",
      });
    }
    const host = hostname.includes(":") ? `[${hostname}]` : hostname;
    const bound = (this.#server.addr as Deno.NetAddr).port;
    this.url = `http://${host}:${bound}/${this.#token ? `?token=${this.#token}` : ""}`;
    this.#rowsTimer = setInterval(() => this.#sendRows(), ROWS_EVERY_MS);
    this.#statsTimer = setInterval(() => this.#sendStats(), STATS_EVERY_MS);
  }

  /** Listens now (a port in use fails here, before any probe is loaded). */
  static start<E extends EventBase>(source: WebSource<E>, opts: WebOptions): WebView<E> {
    return new WebView(source, opts);
  }

  /** Takes a batch of the capture's events. */
  add(batch: readonly E[]) {
    const rows = this.history.add(batch);
    if (this.#clients.size === 0) return; // they are in the history for the next page
    for (const r of rows) this.#pending.push(r);
  }

  /** The capture has ended: pages are told so, and the server closes. */
  async close() {
    if (!this.#running) return;
    this.#running = false;
    clearInterval(this.#rowsTimer);
    clearInterval(this.#statsTimer);
    this.#sendRows();
    this.#sendStats();
    for (const c of [...this.#clients]) {
      this.#send(c, "event: end\ndata: {}\n\n");
      this.#drop(c);
    }
    await this.#server.shutdown();
  }

  async [Symbol.asyncDispose]() {
    await this.close();
  }

  #handle(req: Request): Response {
    const url = new URL(req.url);
    if (req.method !== "GET" && req.method !== "HEAD") {
      return respond("ecap: the live view only reads\n", 405, { allow: "GET, HEAD" });
    }
    const access = checkAccess(req, url, this.#token);
    if (!access.ok) {
      if ("redirect" in access) {
        return respond(null, 303, { location: access.redirect, "set-cookie": access.cookie });
      }
      return respond(access.message + "\n", access.status, {
        "content-type": "text/plain; charset=utf-8",
        ...(access.status === 401 ? { "www-authenticate": 'Bearer realm="ecap"' } : {}),
      });
    }
    const asset = PAGE_ASSETS[url.pathname];
    if (asset) return respond(asset[1], 200, { "content-type": asset[0] });
    if (url.pathname === "/api/meta") return json(this.#meta());
    if (url.pathname === "/api/events") return this.#events(req);
    if (url.pathname === "/api/har") return this.#download("har");
    if (url.pathname === "/api/jsonl") return this.#download("jsonl");
    const entry = /^\/api\/entry\/(\d+)$/.exec(url.pathname);
    if (entry) {
      const e = this.history.get(Number(entry[1]));
      if (!e) return json({ error: "no longer kept (see --web-history)" }, 404);
      const ev = e.event as E & { kind?: string };
      return json({ id: e.id, kind: ev.kind ?? ev.module, json: this.#source.toJSON(ev) });
    }
    return respond("ecap: not found\n", 404, { "content-type": "text/plain; charset=utf-8" });
  }

  #meta() {
    const v = this.#source.view;
    return {
      module: this.#source.module,
      version: this.#source.version,
      started: this.#started,
      history: this.history.limit,
      har: v.har !== undefined,
      columns: v.columns.map((c) => ({ label: c.label, as: c.as, role: c.role })),
    };
  }

  /** The event stream: the history after Last-Event-ID, then rows as they come. */
  #events(req: Request): Response {
    const last = Number(req.headers.get("last-event-id") ?? 0) || 0;
    let client: Client;
    const body = new ReadableStream<Uint8Array>({
      start: (controller) => {
        client = { controller };
        this.#send(client, "retry: 1000\n\n");
        const rows = this.history.rowsAfter(last);
        for (let i = 0; i < rows.length; i += HISTORY_CHUNK) {
          this.#send(client, rowsMessage(rows.slice(i, i + HISTORY_CHUNK)));
        }
        this.#send(client, this.#statsMessage());
        if (this.#running) this.#clients.add(client);
        else this.#send(client, "event: end\ndata: {}\n\n"), controller.close();
      },
      cancel: () => void this.#clients.delete(client),
    }, new ByteLengthQueuingStrategy({ highWaterMark: 1 << 20 }));
    return respond(body, 200, { "content-type": "text/event-stream; charset=utf-8" });
  }

  #sendRows() {
    if (this.#pending.length === 0) return;
    const message = rowsMessage(this.#pending);
    this.#pending = [];
    for (const c of [...this.#clients]) this.#send(c, message);
  }

  #statsMessage(): string {
    const s = this.#source.stats();
    const stats = {
      events: s.events,
      lost: s.lost,
      unfollowed: s.unfollowed,
      truncated: s.truncated,
      shed: s.shed,
      malformed: s.malformed,
      dropped: this.history.dropped,
      kept: this.history.kept,
      running: this.#running,
    };
    return `event: stats\ndata: ${JSON.stringify(stats)}\n\n`;
  }

  #sendStats() {
    if (this.#clients.size === 0) return;
    const message = this.#statsMessage();
    for (const c of [...this.#clients]) this.#send(c, message);
  }

  #send(c: Client, text: string) {
    try {
      c.controller.enqueue(encoder.encode(text));
      if ((c.controller.desiredSize ?? 0) < -SLOW_CLIENT_BYTES) this.#drop(c);
    } catch {
      this.#clients.delete(c); // the page went away
    }
  }

  #drop(c: Client) {
    this.#clients.delete(c);
    try {
      c.controller.close();
    } catch { /* already closed */ }
  }

  /** The kept history as a HAR document or JSON lines, written as it is read. */
  #download(kind: "har" | "jsonl"): Response {
    const { har } = this.#source.view;
    if (kind === "har" && !har) return json({ error: "this module has no HAR form" }, 404);
    const entries = [...this.history.entries()];
    let i = 0, first = true;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        if (kind === "har") c.enqueue(encoder.encode(harHead(this.#source.version)));
      },
      pull: (c) => {
        const parts: string[] = [];
        for (let n = 0; n < 200 && i < entries.length; n++, i++) {
          const ev = entries[i].event;
          if (kind === "jsonl") {
            parts.push(JSON.stringify(this.#source.toJSON(ev)) + "\n");
            continue;
          }
          const entry = har!(ev);
          if (!entry) continue;
          parts.push((first ? "" : ",") + JSON.stringify(entry));
          first = false;
        }
        if (parts.length) c.enqueue(encoder.encode(parts.join("")));
        if (i >= entries.length) {
          if (kind === "har") c.enqueue(encoder.encode(HAR_TAIL));
          c.close();
        }
      },
    });
    const name = `ecap-${this.#source.module}-${stamp(this.#started)}.${kind}`;
    return respond(body, 200, {
      "content-type": kind === "har"
        ? "application/json; charset=utf-8"
        : "application/x-ndjson; charset=utf-8",
      "content-disposition": `attachment; filename="${name}"`,
    });
  }
}

function rowsMessage(rows: Row[]): string {
  return `id: ${rows[rows.length - 1][0]}\nevent: rows\ndata: ${JSON.stringify(rows)}\n\n`;
}
