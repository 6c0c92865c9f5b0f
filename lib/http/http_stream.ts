/**
 * Per-connection HTTP decoding for the capture: sniffs HTTP/1.x or HTTP/2
 * from the first bytes of either direction, routes chunks to the right
 * parser, and formats the results as text.
 * @module
 */

import { isUtf8 } from "node:buffer";
import { concat } from "../base/bytes.ts";
import { controlBytes } from "../base/hexdump.ts";
import { Http1Exchange, type Http1Message, sniffHttp1 } from "./http1.ts";
import {
  Http2Connection,
  type Http2Direction,
  type Http2Event,
  sniffHttp2Frames,
  sniffHttp2Preface,
} from "./http2.ts";

/** "out": bytes the traced process wrote; "in": bytes it read. */
export type ConversationDirection = "out" | "in";

/** The traced process's end of the connection. */
export type ConversationRole = "client" | "server";

/** One decoded item of a conversation. */
export type HttpView =
  | { protocol: "http1"; direction: ConversationDirection; message: Http1Message }
  | { protocol: "http2"; direction: ConversationDirection; event: Http2Event };

/** Options of {@link HttpConversation}. */
export interface HttpConversationOptions {
  /** Body bytes kept per message; default 16 MiB. */
  maxBodyBytes?: number;
  /** Bytes examined per direction before deciding it is not HTTP; default 64 KiB. */
  sniffLimit?: number;
}

type Protocol = "unknown" | "http1" | "http2" | "raw";

const OTHER: Record<ConversationDirection, ConversationDirection> = { out: "in", in: "out" };

/**
 * The HTTP decoding of one captured connection. Until a protocol is
 * recognised (and for bytes that are not HTTP) it returns nothing: the
 * caller shows those bytes raw, see {@link HttpConversation.parsing}.
 */
export class HttpConversation {
  #maxBody: number | undefined;
  #sniffLimit: number;
  #protocol: Protocol = "unknown";
  #role: ConversationRole | undefined;
  #pending: Record<ConversationDirection, Uint8Array[]> = { out: [], in: [] };
  #pendingLength: Record<ConversationDirection, number> = { out: 0, in: 0 };
  #sniffed = 0;
  /** Directions that lost bytes and have not found a message start since. */
  #lost: Record<ConversationDirection, boolean> = { out: false, in: false };
  #h1: Http1Exchange | undefined;
  #h2: Http2Connection | undefined;

  /** Creates a conversation that has seen no bytes yet. */
  constructor(options: HttpConversationOptions = {}) {
    this.#maxBody = options.maxBodyBytes;
    this.#sniffLimit = options.sniffLimit ?? 64 * 1024;
  }

  /** The protocol recognised so far; "raw" once sniffing gave up. */
  get protocol(): Protocol {
    return this.#protocol;
  }

  /** The traced process's role, once known (given or inferred). */
  get role(): ConversationRole | undefined {
    return this.#role;
  }

  /**
   * Whether bytes of this direction are (or may yet be) decoded; when false
   * the caller should show them raw.
   */
  parsing(direction: ConversationDirection): boolean {
    switch (this.#protocol) {
      case "unknown":
        return true;
      case "raw":
        return false;
      case "http1": {
        const p = direction === this.#requestDirection() ? this.#h1!.requests : this.#h1!.responses;
        return !p.failed && !p.upgraded;
      }
      case "http2":
        return this.#h2!.failed(this.#h2Direction(direction)) === undefined;
    }
  }

  /**
   * Whether a direction lost bytes and has not found its footing since: its
   * bytes are skipped until the next HTTP/1 message starts (HTTP/2 cannot
   * find it again: its header compression state is gone).
   */
  outOfStep(direction: ConversationDirection): boolean {
    return this.#lost[direction];
  }

  /**
   * Says that bytes of one direction were lost (the capture could not keep
   * up). A message in progress ends, marked incomplete; HTTP/1 decoding
   * resumes at the next message start, HTTP/2 decoding of it stops.
   */
  lost(direction: ConversationDirection): HttpView[] {
    this.#lost[direction] = this.#protocol === "http1" || this.#protocol === "http2";
    switch (this.#protocol) {
      case "unknown":
        // what was gathered to sniff no longer runs on: start again
        this.#pending[direction] = [];
        this.#pendingLength[direction] = 0;
        return [];
      case "raw":
        return [];
      case "http1": {
        const kind = direction === this.#requestDirection() ? "request" : "response";
        const h1 = this.#h1!;
        const cut = (kind === "request" ? h1.requests : h1.responses).failed ? [] : h1.end(kind);
        h1.reset(kind);
        return cut.map((message) => ({ protocol: "http1" as const, direction, message }));
      }
      case "http2":
        this.#h2!.lost(this.#h2Direction(direction));
        return [];
    }
  }

  /**
   * Says that n bytes of one direction that follow what was pushed were not
   * captured (a call cut short). An HTTP/1 body of known extent keeps what
   * was captured, marked truncated; anywhere else this is a loss (see lost).
   */
  skip(direction: ConversationDirection, n: number): HttpView[] {
    if (n === 0 || this.#protocol === "raw") return [];
    if (this.#protocol === "http1" && !this.#lost[direction]) {
      const kind = direction === this.#requestDirection() ? "request" : "response";
      const done = this.#h1!.skip(kind, n);
      if (done !== undefined) {
        return done.map((message) => ({ protocol: "http1" as const, direction, message }));
      }
    }
    return this.lost(direction);
  }

  /**
   * Feeds the next chunk of one direction; returns what it completes.
   * owned: the caller never writes to chunk's bytes again (an HTTP/1 body
   * may then be kept as a view of them).
   */
  push(
    direction: ConversationDirection,
    chunk: Uint8Array,
    role?: ConversationRole,
    owned = false,
  ): HttpView[] {
    // An explicit role wins over inference, but cannot remap a running parser.
    if (role !== undefined && (this.#role === undefined || this.#protocol === "unknown")) {
      this.#role = role;
    }
    switch (this.#protocol) {
      case "raw":
        return [];
      case "http1":
        return this.#pushHttp1(direction, chunk, owned);
      case "http2":
        return this.#pushHttp2(direction, chunk);
      case "unknown":
        return this.#sniff(direction, chunk);
    }
  }

  /** Ends the conversation: completes close-delimited and unfinished messages. */
  end(): HttpView[] {
    const out: HttpView[] = [];
    if (this.#h1 !== undefined) {
      const req = this.#requestDirection();
      for (const message of this.#h1.end("request")) {
        out.push({ protocol: "http1", direction: req, message });
      }
      for (const message of this.#h1.end("response")) {
        out.push({ protocol: "http1", direction: OTHER[req], message });
      }
    }
    if (this.#h2 !== undefined) out.push(...this.#h2Views(this.#h2.end()));
    return out;
  }

  /** Direction carrying requests (the client's writes). */
  #requestDirection(): ConversationDirection {
    // Without other evidence assume the traced process is the client.
    return this.#role === "server" ? "in" : "out";
  }

  #h2Direction(direction: ConversationDirection): Http2Direction {
    return direction === this.#requestDirection() ? "client" : "server";
  }

  #sniff(direction: ConversationDirection, chunk: Uint8Array): HttpView[] {
    this.#pending[direction].push(chunk.slice());
    this.#pendingLength[direction] += chunk.length;
    const bytes = concat(this.#pending[direction], this.#pendingLength[direction]);
    this.#pending[direction] = [bytes];

    const preface = sniffHttp2Preface(bytes);
    const h1 = sniffHttp1(bytes);
    const frames = sniffHttp2Frames(bytes);
    const writerIs = (r: ConversationRole) => {
      // The writer of `direction` is `r`; the traced process wrote "out".
      this.#role ??= direction === "out" ? r : r === "client" ? "server" : "client";
    };
    if (preface === "yes") {
      writerIs("client");
      return this.#start("http2");
    }
    if (h1 === "request" || h1 === "response") {
      writerIs(h1 === "request" ? "client" : "server");
      return this.#start("http1");
    }
    if (frames === "settings") {
      writerIs("server");
      return this.#start("http2");
    }
    if (frames === "frames") return this.#start("http2");

    if (preface === "maybe" || h1 === "maybe" || frames === "maybe") {
      if (bytes.length <= this.#sniffLimit) return [];
    }
    // Not HTTP from here; later chunks may still start a message (capture
    // began mid-stream), until the sniff budget is spent.
    this.#sniffed += bytes.length;
    this.#pending[direction] = [];
    this.#pendingLength[direction] = 0;
    if (this.#sniffed > this.#sniffLimit) this.#giveUp();
    return [];
  }

  #giveUp(): void {
    this.#protocol = "raw";
    this.#pending = { out: [], in: [] };
    this.#pendingLength = { out: 0, in: 0 };
  }

  /** Switches to a protocol and replays what was buffered, requests first. */
  #start(protocol: "http1" | "http2"): HttpView[] {
    this.#protocol = protocol;
    const opts = this.#maxBody === undefined ? {} : { maxBodyBytes: this.#maxBody };
    if (protocol === "http1") this.#h1 = new Http1Exchange(opts);
    else this.#h2 = new Http2Connection(opts);
    const first = this.#requestDirection();
    const out: HttpView[] = [];
    for (const d of [first, OTHER[first]]) {
      const buffered = concat(this.#pending[d], this.#pendingLength[d]);
      if (buffered.length > 0) out.push(...this.push(d, buffered));
    }
    this.#pending = { out: [], in: [] };
    this.#pendingLength = { out: 0, in: 0 };
    return out;
  }

  #pushHttp1(direction: ConversationDirection, chunk: Uint8Array, owned = false): HttpView[] {
    const h1 = this.#h1!;
    const isRequest = direction === this.#requestDirection();
    const parser = isRequest ? h1.requests : h1.responses;
    if (parser.failed || this.#lost[direction]) {
      // Resynchronise at the next message (e.g. after lost records): reads
      // do not start where messages do, so look at every line of the chunk.
      const at = messageStart(chunk, isRequest ? "request" : "response");
      if (at < 0) return [];
      h1.reset(isRequest ? "request" : "response");
      this.#lost[direction] = false;
      chunk = chunk.subarray(at);
    }
    return h1.push(isRequest ? "request" : "response", chunk, owned).map((message) => ({
      protocol: "http1" as const,
      direction,
      message,
    }));
  }

  #pushHttp2(direction: ConversationDirection, chunk: Uint8Array): HttpView[] {
    return this.#h2Views(this.#h2!.push(this.#h2Direction(direction), chunk));
  }

  #h2Views(events: Http2Event[]): HttpView[] {
    const client = this.#requestDirection();
    return events.map((event) => ({
      protocol: "http2" as const,
      direction: event.direction === "client" ? client : OTHER[client],
      event,
    }));
  }
}

const utf8 = new TextDecoder();

/** Where a line of chunk starts an HTTP/1.x message of this kind, or -1. */
function messageStart(chunk: Uint8Array, kind: "request" | "response"): number {
  for (let i = 0; i < chunk.length;) {
    const b = chunk[i];
    // a status line starts with "H", a request line with a method (A-Z)
    if (kind === "response" ? b === 0x48 : b >= 0x41 && b <= 0x5a) {
      if (sniffHttp1(chunk.subarray(i)) === kind) return i;
    }
    const lf = chunk.indexOf(0x0a, i);
    if (lf < 0) return -1;
    i = lf + 1;
  }
  return -1;
}

/** Options of {@link formatHttpView}. */
export interface FormatOptions {
  /** Body bytes shown as text at most; default 64 KiB. */
  maxBodyBytes?: number;
}

/**
 * A body as display text, or undefined when it is not valid UTF-8 or not
 * mostly printable.
 */
export function bodyAsText(body: Uint8Array, maxBytes = 64 * 1024): string | undefined {
  const shown = body.subarray(0, maxBytes);
  const whole = body.length <= maxBytes;
  // binary is mostly invalid UTF-8: a native check tells it apart first
  if (whole && !isUtf8(shown)) return undefined;
  const bad = controlBytes(shown, shown.length / 20);
  // a string is never longer than its UTF-8 bytes: too many controls for them is too many
  if (bad * 20 > shown.length) return undefined;
  let s: string;
  if (whole) {
    s = utf8.decode(shown);
  } else {
    try {
      // stream: a cut inside a multi-byte character is not an error.
      s = new TextDecoder("utf-8", { fatal: true }).decode(shown, { stream: true });
    } catch {
      return undefined;
    }
  }
  return bad * 20 > s.length ? undefined : s;
}

function fieldLines(fields: readonly (readonly [string, string])[]): string[] {
  return fields.map(([n, v]) => `${n}: ${v}`);
}

/** Lines describing a body: its text, or a note on what it is. */
function bodyLines(
  body: Uint8Array,
  info: {
    rawBodyLength: number;
    bodyTruncated: boolean;
    contentEncoding?: string;
    decodeError?: string;
  },
  maxBytes: number,
): string[] {
  const lines: string[] = [];
  if (info.decodeError !== undefined) lines.push(`[body not decoded: ${info.decodeError}]`);
  if (info.contentEncoding !== undefined) {
    lines.push(`[${body.length} bytes ${info.contentEncoding}-encoded body]`);
  } else if (body.length > 0) {
    const t = bodyAsText(body, maxBytes);
    if (t === undefined) {
      lines.push(`[${body.length} bytes binary body]`);
    } else {
      lines.push(t);
      if (body.length > maxBytes) lines.push(`[... ${body.length - maxBytes} more bytes]`);
    }
  }
  if (info.bodyTruncated) {
    lines.push(`[body truncated: ${info.rawBodyLength} bytes on the wire]`);
  }
  return lines;
}

function formatHttp1(m: Http1Message, maxBytes: number): string {
  const start = m.kind === "request"
    ? `${m.method} ${m.target} ${m.version}`
    : `${m.version} ${m.status}${m.reason ? ` ${m.reason}` : ""}`;
  const lines = [start, ...fieldLines(m.headers)];
  const body = bodyLines(m.body, m, maxBytes);
  if (body.length > 0 || m.trailers !== undefined) lines.push("", ...body);
  if (m.trailers !== undefined) lines.push(...fieldLines(m.trailers));
  if (m.incomplete) lines.push("[message incomplete]");
  return lines.join("\n");
}

function formatHttp2(e: Http2Event, maxBytes: number): string {
  const tag = (id?: number) => id === undefined || id === 0 ? "[h2]" : `[h2 stream ${id}]`;
  switch (e.type) {
    case "headers":
      return [
        `${tag(e.streamId)} HEADERS${e.endStream ? " END_STREAM" : ""}`,
        ...fieldLines(e.headers),
      ].join("\n");
    case "push_promise":
      return [
        `${tag(e.streamId)} PUSH_PROMISE stream ${e.promisedStreamId}`,
        ...fieldLines(e.headers),
      ].join("\n");
    case "data": {
      const info = { rawBodyLength: e.data.length, bodyTruncated: false };
      return [
        `${tag(e.streamId)} DATA ${e.data.length} bytes${e.endStream ? " END_STREAM" : ""}`,
        ...bodyLines(e.data, info, maxBytes),
      ].join("\n");
    }
    case "message": {
      const what = e.direction === "client" ? "request" : "response";
      const lines = [`${tag(e.streamId)} ${what}`, ...fieldLines(e.headers)];
      const body = bodyLines(e.body, e, maxBytes);
      if (body.length > 0 || e.trailers !== undefined) lines.push("", ...body);
      if (e.trailers !== undefined) lines.push(...fieldLines(e.trailers));
      if (e.incomplete) lines.push("[message incomplete]");
      return lines.join("\n");
    }
    case "frame":
      return `${tag(e.streamId)} ${e.frameType}${e.detail ? ` ${e.detail}` : ""}`;
    case "error":
      return `${tag(e.streamId)} error: ${e.message}`;
  }
}

/** A readable text block for one view: start line or frame, fields, then the body. */
export function formatHttpView(view: HttpView, options: FormatOptions = {}): string {
  const max = options.maxBodyBytes ?? 64 * 1024;
  return view.protocol === "http1" ? formatHttp1(view.message, max) : formatHttp2(view.event, max);
}
