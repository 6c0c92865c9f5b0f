/**
 * Incremental HTTP/1.x parsing of captured plaintext: one parser per
 * direction, fed chunks that may split anywhere, yielding whole messages.
 * @module
 */

import { isUtf8 } from "node:buffer";
import { allocBytes, asciiText, concat } from "../base/bytes.ts";

/** Input that is not HTTP/1.x (or breaks its framing rules). */
export class HttpParseError extends SyntaxError {
  /** Creates the error with a message that says what was wrong. */
  constructor(message: string) {
    super(message);
    this.name = "HttpParseError";
  }
}

/** Start line and headers of an HTTP/1.x message, known before its body. */
export interface Http1MessageHead {
  /** Whether the start line was a request line or a status line. */
  kind: "request" | "response";
  /** Request method, e.g. "GET" (requests only). */
  method?: string;
  /** Request target, e.g. "/index.html" (requests only). */
  target?: string;
  /** Protocol version, e.g. "HTTP/1.1". */
  version: string;
  /** Status code (responses only). */
  status?: number;
  /** Reason phrase (responses only; may be empty). */
  reason?: string;
  /** Header fields in original case and order. */
  headers: [string, string][];
}

/** A complete (or, at end of stream, cut-off) HTTP/1.x message. */
export interface Http1Message extends Http1MessageHead {
  /** Trailer fields of a chunked body, if any. */
  trailers?: [string, string][];
  /** Body: de-chunked and, for gzip, deflate, br and zstd, decompressed (see `contentEncoding`). */
  body: Uint8Array;
  /** Body octets as framed on the wire, after de-chunking and before decompression. */
  rawBodyLength: number;
  /** True when the body exceeded the buffer limit: `body` holds only its start. */
  bodyTruncated: boolean;
  /** Content codings still applied to `body` (e.g. "br"), when not decoded. */
  contentEncoding?: string;
  /** Why decompression failed, when it did. */
  decodeError?: string;
  /** True when the stream ended before the message was complete. */
  incomplete?: boolean;
}

/** Options of {@link Http1Parser}. */
export interface Http1ParserOptions {
  /** Accept only requests or only responses; default: either, by start line. */
  expect?: "request" | "response";
  /** Body bytes kept per message; beyond, the body is truncated. Default 16 MiB. */
  maxBodyBytes?: number;
  /** Cap on a header (or trailer) block. Default 256 KiB. */
  maxHeaderBytes?: number;
  /** Decompress gzip, deflate, br and zstd bodies; default true. */
  decodeBody?: boolean;
  /**
   * Called once per final (non-1xx) response to get the method of the request
   * it answers, which decides whether it has a body (HEAD, CONNECT).
   */
  requestMethods?: () => string | undefined;
  /** Called when a message's head has been parsed, before its body. */
  onHead?: (head: Http1MessageHead) => void;
}

/** Default cap on buffered body bytes per message. */
export const DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024;
/** Default cap on a header block. */
export const DEFAULT_MAX_HEADER_BYTES = 256 * 1024;

const CR = 0x0d;
const LF = 0x0a;
const MAX_CHUNK_LINE = 4096;

type State =
  | "head"
  | "body-length"
  | "body-close"
  | "chunk-size"
  | "chunk-data"
  | "chunk-end"
  | "trailers"
  | "upgraded"
  | "failed"
  | "ended";

const utf8 = new TextDecoder();
const latin1 = new TextDecoder("latin1");

/** Octets as text: UTF-8 when valid, else Latin-1 (which maps every byte). */
function text(bytes: Uint8Array): string {
  return asciiText(bytes) ?? (isUtf8(bytes) ? utf8.decode(bytes) : latin1.decode(bytes));
}

/**
 * Where a head that starts at i ends (past its blank line's LF), when it
 * is all in chunk, ASCII, at most cap bytes, and starts with no blank line;
 * else -1 (the line-by-line path takes it).
 */
function wholeHead(chunk: Uint8Array, i: number, cap: number): number {
  let p = i;
  for (;;) {
    const lf = chunk.indexOf(LF, p);
    if (lf < 0 || lf + 1 - i > cap) return -1;
    const blank = lf === p || (lf === p + 1 && chunk[p] === CR);
    if (blank) {
      if (p === i) return -1;
      for (let k = i; k < lf; k++) if (chunk[k] >= 0x80) return -1;
      return lf + 1;
    }
    p = lf + 1;
  }
}

/** The body of every message without one (nothing to write to). */
const NO_BODY = new Uint8Array(0);

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** The headers that frame a message (RFC 9112 §6), by lower-case name. */
const FRAMING = [
  "content-encoding",
  "connection",
  "upgrade",
  "transfer-encoding",
  "content-length",
] as const;
type FramingName = typeof FRAMING[number];
const FRAMING_NAMES = new Set<string>(FRAMING);
/** Their lengths: a name of another length is not lower-cased to be compared. */
const FRAMING_LENGTHS = new Set([...FRAMING_NAMES].map((n) => n.length));

/** What a framing header absent from a message has: one array, never written to. */
const NONE: readonly string[] = Object.freeze([]);

/**
 * The joined, lower-cased values of each framing header, split on commas:
 * one pass over the headers, each name lower-cased only when its length
 * could make it one of them, an array made only for a header present.
 */
function framingHeaders(headers: [string, string][]): Record<FramingName, readonly string[]> {
  const out: Record<FramingName, readonly string[]> = {
    "content-encoding": NONE,
    "connection": NONE,
    "upgrade": NONE,
    "transfer-encoding": NONE,
    "content-length": NONE,
  };
  for (const [n, v] of headers) {
    if (!FRAMING_LENGTHS.has(n.length)) continue;
    const name = n.toLowerCase();
    if (!FRAMING_NAMES.has(name)) continue;
    const list = out[name as FramingName] === NONE ? [] : out[name as FramingName] as string[];
    for (const part of v.split(",")) {
      const p = part.trim().toLowerCase();
      if (p !== "") list.push(p);
    }
    out[name as FramingName] = list;
  }
  return out;
}

/** Result of {@link decodeContent}. */
export interface DecodedContent {
  /** The body, decoded as far as possible. */
  body: Uint8Array;
  /** Codings still applied to `body`, outermost last, or undefined. */
  contentEncoding?: string;
  /** Why decoding stopped early, if it failed. */
  decodeError?: string;
}

let zlib: typeof import("node:zlib") | undefined;

/**
 * Loads node:zlib for decodeContent(). Importing it takes ~27 ms, a tenth
 * of a start-up: a capture does it while its BPF object loads (the TLS
 * modules' prepare()). Until then bodies are left encoded, and say so.
 */
export async function loadZlib(): Promise<void> {
  zlib ??= await import("node:zlib");
}

/**
 * Undoes gzip, deflate, br and zstd content codings (listed in the order
 * applied) with output capped at `maxBytes`; stops at the first coding it
 * cannot undo.
 */
export function decodeContent(
  body: Uint8Array,
  codings: readonly string[],
  maxBytes: number = DEFAULT_MAX_BODY_BYTES,
): DecodedContent {
  const left = codings.map((c) => c.trim().toLowerCase()).filter((c) =>
    c !== "" && c !== "identity"
  );
  if (left.length === 0) return { body };
  // An empty body (HEAD, 304) carries the header but nothing to decode.
  if (body.length === 0) return { body };
  if (!zlib) {
    return { body, contentEncoding: left.join(", "), decodeError: "node:zlib not loaded" };
  }
  const { brotliDecompressSync, gunzipSync, inflateRawSync, inflateSync, zstdDecompressSync } =
    zlib;
  let data = body;
  const opts = { maxOutputLength: Math.max(1, maxBytes) };
  while (left.length > 0) {
    const coding = left[left.length - 1];
    let out: Uint8Array;
    try {
      if (coding === "gzip" || coding === "x-gzip") {
        out = gunzipSync(data, opts);
      } else if (coding === "deflate") {
        // "deflate" is meant to be zlib-wrapped, but some servers send it raw.
        try {
          out = inflateSync(data, opts);
        } catch {
          out = inflateRawSync(data, opts);
        }
      } else if (coding === "br") {
        out = brotliDecompressSync(data, opts);
      } else if (coding === "zstd") {
        out = zstdDecompressSync(data, opts);
      } else {
        break;
      }
    } catch (e) {
      const why = e instanceof RangeError
        ? `decoded body exceeds ${maxBytes} bytes`
        : e instanceof Error
        ? e.message
        : String(e);
      return { body: data, contentEncoding: left.join(", "), decodeError: `${coding}: ${why}` };
    }
    // Copy out of the Buffer so callers get a plain Uint8Array.
    data = new Uint8Array(out);
    left.pop();
  }
  return left.length > 0 ? { body: data, contentEncoding: left.join(", ") } : { body: data };
}

/**
 * Incremental HTTP/1.x parser for one direction of a connection. Never throws
 * on bad input: it stops and reports {@link Http1Parser.failed} instead.
 */
export class Http1Parser {
  #expect: "request" | "response" | undefined;
  #maxBody: number;
  #maxHeader: number;
  #decode: boolean;
  #requestMethods: (() => string | undefined) | undefined;
  #onHead: ((head: Http1MessageHead) => void) | undefined;

  #state: State = "head";
  #failure: string | undefined;
  /** Bytes of an unfinished line. */
  #line: Uint8Array[] = [];
  #lineLen = 0;
  /** Lines of the head (or trailers) read so far. */
  #lines: string[] = [];
  #headBytes = 0;

  #head: Http1MessageHead | undefined;
  #trailers: [string, string][] | undefined;
  #codings: readonly string[] = NONE;
  #upgradeAfter = false;
  #remaining = 0;
  /** Where the body is gathered: its first #buffered bytes (see #appendBody). */
  #body: Uint8Array | undefined;
  #buffered = 0;
  #rawLength = 0;
  #truncated = false;

  /** Creates a parser waiting for the first start line. */
  constructor(options: Http1ParserOptions = {}) {
    this.#expect = options.expect;
    this.#maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.#maxHeader = options.maxHeaderBytes ?? DEFAULT_MAX_HEADER_BYTES;
    this.#decode = options.decodeBody ?? true;
    this.#requestMethods = options.requestMethods;
    this.#onHead = options.onHead;
  }

  /** True once input was not valid HTTP/1.x; later input is ignored. */
  get failed(): boolean {
    return this.#state === "failed";
  }

  /** Why the parser failed, if it did. */
  get failureReason(): string | undefined {
    return this.#failure;
  }

  /** True once the connection switched protocols (101, CONNECT); later input is ignored. */
  get upgraded(): boolean {
    return this.#state === "upgraded";
  }

  /** Stops parsing because the connection now carries another protocol. */
  upgrade(): void {
    if (this.#state !== "failed" && this.#state !== "ended") this.#state = "upgraded";
  }

  /**
   * Feeds the next bytes; returns the messages they complete. owned: the
   * caller never writes to chunk's bytes again, so a body they hold whole
   * is kept as a view of them, not copied.
   */
  push(chunk: Uint8Array, owned = false): Http1Message[] {
    const out: Http1Message[] = [];
    let i = 0;
    try {
      while (i < chunk.length) {
        switch (this.#state) {
          case "failed":
          case "ended":
          case "upgraded":
            return out;
          case "head":
          case "trailers":
            i = this.#pushHeadBytes(chunk, i, out);
            break;
          case "body-length": {
            const n = Math.min(this.#remaining, chunk.length - i);
            if (owned && this.#buffered === 0 && n === this.#remaining && n <= this.#maxBody) {
              // the whole body in bytes nobody writes again (a 64 KiB response: one
              // buffer and copy fewer)
              this.#body = chunk.subarray(i, i + n);
              this.#buffered = n;
              this.#rawLength += n;
            } else {
              this.#appendBody(chunk.subarray(i, i + n));
            }
            i += n;
            this.#remaining -= n;
            if (this.#remaining === 0) this.#finish(out);
            break;
          }
          case "body-close":
            this.#appendBody(chunk.subarray(i));
            i = chunk.length;
            break;
          case "chunk-data": {
            const n = Math.min(this.#remaining, chunk.length - i);
            this.#appendBody(chunk.subarray(i, i + n));
            i += n;
            this.#remaining -= n;
            if (this.#remaining === 0) this.#state = "chunk-end";
            break;
          }
          case "chunk-size":
          case "chunk-end": {
            const [line, next] = this.#readLine(
              chunk,
              i,
              MAX_CHUNK_LINE,
              `chunk size line longer than ${MAX_CHUNK_LINE} bytes`,
            );
            i = next;
            if (line !== undefined) this.#chunkLine(line);
            break;
          }
        }
      }
    } catch (e) {
      if (!(e instanceof HttpParseError)) throw e;
      this.#fail(e.message);
    }
    return out;
  }

  /**
   * Accounts for n bytes of the stream that were not captured (a call cut
   * short). Inside a body whose end the framing gives (a length, a chunk,
   * the close) the body keeps what was captured and is marked truncated;
   * returns the messages that completes. Undefined when the bytes may hold
   * framing (a head, chunk sizes, the next message): the stream is then out
   * of step, and the caller says so.
   */
  skip(n: number): Http1Message[] | undefined {
    const out: Http1Message[] = [];
    if (n === 0) return out;
    switch (this.#state) {
      case "failed":
      case "ended":
      case "upgraded":
        return out;
      case "body-close":
        this.#rawLength += n;
        this.#truncated = true;
        return out;
      case "body-length":
      case "chunk-data":
        if (n > this.#remaining) return undefined;
        this.#rawLength += n;
        this.#truncated = true;
        this.#remaining -= n;
        if (this.#remaining > 0) return out;
        if (this.#state === "body-length") this.#finish(out);
        else this.#state = "chunk-end";
        return out;
      default:
        return undefined;
    }
  }

  /**
   * Signals the end of the stream: completes a body delimited by the close,
   * and returns a cut-off message as `incomplete`.
   */
  end(): Http1Message[] {
    const out: Http1Message[] = [];
    if (this.#state === "body-close") {
      this.#finish(out);
    } else if (this.#head !== undefined && this.#state !== "failed" && this.#state !== "ended") {
      this.#finish(out, true);
    }
    if (this.#state !== "failed") this.#state = "ended";
    return out;
  }

  #fail(reason: string): void {
    this.#state = "failed";
    this.#failure = reason;
    this.#line = [];
    this.#lines = [];
    this.#body = undefined;
    this.#head = undefined;
  }

  /**
   * Appends bytes to the current line up to LF; returns the line (without
   * CR LF) when complete, and the new offset.
   */
  #readLine(
    chunk: Uint8Array,
    i: number,
    cap: number,
    what: string,
  ): [Uint8Array | undefined, number] {
    const lf = chunk.indexOf(LF, i);
    const end = lf < 0 ? chunk.length : lf;
    if (this.#lineLen + (end - i) > cap) throw new HttpParseError(what);
    if (lf < 0) {
      // Copy: the caller may reuse its buffer.
      this.#line.push(chunk.slice(i));
      this.#lineLen += chunk.length - i;
      return [undefined, chunk.length];
    }
    let line: Uint8Array;
    if (this.#line.length === 0) {
      line = chunk.subarray(i, lf);
    } else {
      this.#line.push(chunk.subarray(i, lf));
      line = concat(this.#line, this.#lineLen + lf - i);
      this.#line = [];
    }
    this.#lineLen = 0;
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    return [line, lf + 1];
  }

  /** Reads head or trailer lines; at the blank line, acts on the block. */
  #pushHeadBytes(chunk: Uint8Array, i: number, out: Http1Message[]): number {
    if (this.#state === "head" && this.#lines.length === 0 && this.#line.length === 0) {
      const end = wholeHead(chunk, i, this.#maxHeader - this.#headBytes);
      if (end >= 0) {
        // the usual case: a whole ASCII head in the chunk, decoded at once
        const lines = text(chunk.subarray(i, end)).split("\n");
        lines.length -= 2; // the blank line, and what follows its LF
        for (let k = 0; k < lines.length; k++) {
          const l = lines[k];
          if (l.endsWith("\r")) lines[k] = l.slice(0, -1);
        }
        this.#headBytes = 0;
        this.#startBody(this.#parseHead(lines), out);
        return end;
      }
    }
    const cap = this.#maxHeader - this.#headBytes;
    const what = `header block exceeds ${this.#maxHeader} bytes`;
    const [line, next] = this.#readLine(chunk, i, cap, what);
    this.#headBytes += next - i;
    if (this.#headBytes > this.#maxHeader) throw new HttpParseError(what);
    if (line === undefined) return next;
    if (line.length > 0) {
      this.#lines.push(text(line));
      return next;
    }
    if (this.#state === "trailers") {
      this.#trailers = parseFields(this.#lines);
      this.#lines = [];
      this.#finish(out);
      return next;
    }
    // Blank lines before a start line are allowed (RFC 9112 §2.2).
    if (this.#lines.length === 0) {
      this.#headBytes = 0;
      return next;
    }
    const head = this.#parseHead(this.#lines);
    this.#lines = [];
    this.#headBytes = 0;
    this.#startBody(head, out);
    return next;
  }

  #parseHead(lines: string[]): Http1MessageHead {
    const start = lines[0];
    const headers = parseFields(lines.slice(1));
    let m = /^HTTP\/(\d)\.(\d) (\d{3})(?: (.*))?$/.exec(start);
    if (m !== null) {
      if (this.#expect === "request") throw new HttpParseError("expected a request line");
      if (m[1] !== "1") throw new HttpParseError(`unsupported version HTTP/${m[1]}.${m[2]}`);
      return {
        kind: "response",
        version: `HTTP/${m[1]}.${m[2]}`,
        status: Number(m[3]),
        reason: m[4] ?? "",
        headers,
      };
    }
    m = /^(\S+) (\S+) HTTP\/(\d)\.(\d)$/.exec(start);
    if (m !== null && TOKEN.test(m[1])) {
      if (this.#expect === "response") throw new HttpParseError("expected a status line");
      if (m[3] !== "1") throw new HttpParseError(`unsupported version HTTP/${m[3]}.${m[4]}`);
      return {
        kind: "request",
        method: m[1],
        target: m[2],
        version: `HTTP/${m[3]}.${m[4]}`,
        headers,
      };
    }
    throw new HttpParseError(`not an HTTP/1.x start line: ${JSON.stringify(start.slice(0, 80))}`);
  }

  /** Picks the body framing (RFC 9112 §6.3) and starts reading it. */
  #startBody(head: Http1MessageHead, out: Http1Message[]): void {
    this.#head = head;
    this.#trailers = undefined;
    this.#body = undefined;
    this.#buffered = 0;
    this.#rawLength = 0;
    this.#truncated = false;
    const framing = framingHeaders(head.headers);
    this.#codings = framing["content-encoding"];
    this.#upgradeAfter = false;
    this.#onHead?.(head);

    const status = head.status ?? 0;
    if (head.kind === "response") {
      if (status < 200) {
        // Interim response: no body, and the final response is still to come.
        this.#upgradeAfter = status === 101;
        this.#finish(out);
        return;
      }
      const method = this.#requestMethods?.()?.toUpperCase();
      if (method === "CONNECT" && status < 300) {
        this.#upgradeAfter = true;
        this.#finish(out);
        return;
      }
      if (method === "HEAD" || status === 204 || status === 304) {
        this.#finish(out);
        return;
      }
    } else {
      this.#upgradeAfter = head.method === "CONNECT" ||
        (framing.connection.includes("upgrade") && framing.upgrade.length > 0);
    }

    const te = framing["transfer-encoding"];
    if (te.length > 0) {
      const chunked = te[te.length - 1] === "chunked";
      // Transfer codings apply beneath content codings; undo them first.
      this.#codings = [...this.#codings, ...(chunked ? te.slice(0, -1) : te)];
      if (chunked) {
        this.#state = "chunk-size";
      } else if (head.kind === "response") {
        this.#state = "body-close";
      } else {
        throw new HttpParseError("request Transfer-Encoding does not end in chunked");
      }
      return;
    }
    const cl = framing["content-length"];
    if (cl.length > 0) {
      if (!cl.every((v) => v === cl[0]) || !/^\d{1,15}$/.test(cl[0])) {
        throw new HttpParseError(`bad Content-Length ${JSON.stringify(cl.join(", "))}`);
      }
      this.#remaining = Number(cl[0]);
      if (this.#remaining === 0) this.#finish(out);
      else this.#state = "body-length";
      return;
    }
    if (head.kind === "request") this.#finish(out);
    else this.#state = "body-close";
  }

  #chunkLine(line: Uint8Array): void {
    if (this.#state === "chunk-end") {
      if (line.length !== 0) throw new HttpParseError("chunk data not followed by CRLF");
      this.#state = "chunk-size";
      return;
    }
    // chunk-size [ ; extensions ]; extensions carry nothing we show.
    const semi = line.indexOf(0x3b);
    const size = text(semi < 0 ? line : line.subarray(0, semi)).trim().replace(/^0+(?=.)/, "");
    if (!/^[0-9a-fA-F]{1,12}$/.test(size)) {
      throw new HttpParseError(`bad chunk size ${JSON.stringify(size.slice(0, 40))}`);
    }
    this.#remaining = parseInt(size, 16);
    if (this.#remaining === 0) {
      this.#state = "trailers";
      this.#headBytes = 0;
    } else {
      this.#state = "chunk-data";
    }
  }

  #appendBody(bytes: Uint8Array): void {
    this.#rawLength += bytes.length;
    const room = this.#maxBody - this.#buffered;
    if (bytes.length > room) {
      this.#truncated = true;
      if (room > 0) bytes = bytes.subarray(0, room);
      else return;
    }
    if (bytes.length === 0) return;
    const need = this.#buffered + bytes.length;
    if (this.#body === undefined || need > this.#body.length) this.#growBody(need);
    this.#body!.set(bytes, this.#buffered);
    this.#buffered = need;
  }

  /**
   * Makes room for need bytes of body, in one allocation per message when
   * its length is known: no copy per part, none to join them.
   */
  #growBody(need: number): void {
    const known = this.#state === "body-length" ? this.#buffered + this.#remaining : 0;
    const size = Math.min(this.#maxBody, Math.max(need, known, 2 * (this.#body?.length ?? 0)));
    // A body that ends in this chunk is handed out at once: a shared block
    // suits it; one that stays here for long gets a buffer of its own.
    const grown = this.#state === "body-length" && this.#remaining === need - this.#buffered
      ? allocBytes(size)
      : new Uint8Array(size);
    if (this.#body !== undefined) grown.set(this.#body.subarray(0, this.#buffered));
    this.#body = grown;
  }

  /** Completes the current message and readies for the next. */
  #finish(out: Http1Message[], incomplete = false): void {
    const head = this.#head!;
    let body = this.#body?.subarray(0, this.#buffered) ?? NO_BODY;
    let contentEncoding: string | undefined;
    let decodeError: string | undefined;
    const codings = this.#codings.filter((c) => c !== "identity");
    if (codings.length > 0 && body.length > 0) {
      if (!this.#decode) {
        contentEncoding = codings.join(", ");
      } else if (this.#truncated || incomplete) {
        contentEncoding = codings.join(", ");
        decodeError = "body incomplete; not decoded";
      } else {
        const d = decodeContent(body, codings, this.#maxBody);
        body = d.body;
        contentEncoding = d.contentEncoding;
        decodeError = d.decodeError;
      }
    }
    const msg: Http1Message = {
      ...head,
      body,
      rawBodyLength: this.#rawLength,
      bodyTruncated: this.#truncated,
    };
    if (this.#trailers !== undefined) msg.trailers = this.#trailers;
    if (contentEncoding !== undefined) msg.contentEncoding = contentEncoding;
    if (decodeError !== undefined) msg.decodeError = decodeError;
    if (incomplete) msg.incomplete = true;
    out.push(msg);
    this.#head = undefined;
    this.#body = undefined;
    this.#buffered = 0;
    this.#trailers = undefined;
    this.#headBytes = 0;
    this.#state = this.#upgradeAfter ? "upgraded" : "head";
  }
}

/** Parses header lines (obs-fold joined); fails on a line without a valid name. */
function parseFields(lines: string[]): [string, string][] {
  const fields: [string, string][] = [];
  for (const line of lines) {
    if (line[0] === " " || line[0] === "\t") {
      // Obsolete line folding (RFC 9112 §5.2): continue the previous value.
      const last = fields[fields.length - 1];
      if (last === undefined) throw new HttpParseError("header block starts with whitespace");
      last[1] = `${last[1]} ${line.trim()}`.trim();
      continue;
    }
    const colon = line.indexOf(":");
    const name = colon < 0 ? "" : line.slice(0, colon);
    if (!TOKEN.test(name)) {
      throw new HttpParseError(`bad header line ${JSON.stringify(line.slice(0, 80))}`);
    }
    fields.push([name, line.slice(colon + 1).trim()]);
  }
  return fields;
}

/** Options of {@link Http1Exchange}. */
export type Http1ExchangeOptions = Pick<
  Http1ParserOptions,
  "maxBodyBytes" | "maxHeaderBytes" | "decodeBody"
>;

/** Most request methods remembered while their responses are outstanding. */
const MAX_PENDING_METHODS = 4096;

/**
 * Both directions of one HTTP/1.x connection: a request parser and a response
 * parser that learns each response's request method (for HEAD and CONNECT).
 */
export class Http1Exchange {
  #options: Http1ExchangeOptions;
  #requests: Http1Parser;
  #responses: Http1Parser;
  #methods: string[] = [];

  /** Creates the pair of parsers. */
  constructor(options: Http1ExchangeOptions = {}) {
    this.#options = options;
    this.#requests = this.#requestParser();
    this.#responses = this.#responseParser();
  }

  /** Parser of the client-to-server bytes. */
  get requests(): Http1Parser {
    return this.#requests;
  }

  /** Parser of the server-to-client bytes. */
  get responses(): Http1Parser {
    return this.#responses;
  }

  /** Feeds bytes of one direction; returns the messages they complete. */
  push(direction: "request" | "response", chunk: Uint8Array, owned = false): Http1Message[] {
    const parser = direction === "request" ? this.#requests : this.#responses;
    const out = parser.push(chunk, owned);
    // After a 101 or a CONNECT tunnel both directions carry another protocol.
    if (this.#responses.upgraded) this.#requests.upgrade();
    return out;
  }

  /** Accounts for uncaptured bytes of one direction (see Http1Parser.skip). */
  skip(direction: "request" | "response", n: number): Http1Message[] | undefined {
    return (direction === "request" ? this.#requests : this.#responses).skip(n);
  }

  /** Feeds client-to-server bytes. */
  pushRequestBytes(chunk: Uint8Array): Http1Message[] {
    return this.push("request", chunk);
  }

  /** Feeds server-to-client bytes. */
  pushResponseBytes(chunk: Uint8Array): Http1Message[] {
    return this.push("response", chunk);
  }

  /** Ends one direction, or both when none is given. */
  end(direction?: "request" | "response"): Http1Message[] {
    const out: Http1Message[] = [];
    if (direction !== "response") out.push(...this.#requests.end());
    if (direction !== "request") out.push(...this.#responses.end());
    return out;
  }

  /**
   * Replaces one direction's parser with a fresh one, to resynchronise at a
   * message start after it failed. A response reset forgets queued methods,
   * since which requests were answered is no longer known.
   */
  reset(direction: "request" | "response"): void {
    if (direction === "request") {
      this.#requests = this.#requestParser();
    } else {
      this.#methods = [];
      this.#responses = this.#responseParser();
    }
  }

  #requestParser(): Http1Parser {
    return new Http1Parser({
      ...this.#options,
      expect: "request",
      // Queue at the head: a response may come before the request body ends.
      onHead: (head) => {
        if (this.#methods.length < MAX_PENDING_METHODS) this.#methods.push(head.method ?? "");
      },
    });
  }

  #responseParser(): Http1Parser {
    return new Http1Parser({
      ...this.#options,
      expect: "response",
      requestMethods: () => this.#methods.shift(),
    });
  }
}

const METHODS = [
  "GET",
  "HEAD",
  "POST",
  "PUT",
  "DELETE",
  "CONNECT",
  "OPTIONS",
  "TRACE",
  "PATCH",
  "PROPFIND",
  "PROPPATCH",
  "MKCOL",
  "COPY",
  "MOVE",
  "LOCK",
  "UNLOCK",
  "REPORT",
  "SEARCH",
  "QUERY",
  "PURGE",
];

/** Whether `bytes` (possibly cut short) matches `pattern` from `at`; "#" is a digit. */
function matchPattern(bytes: Uint8Array, at: number, pattern: string): "yes" | "no" | "maybe" {
  for (let k = 0; k < pattern.length; k++) {
    if (at + k >= bytes.length) return "maybe";
    const b = bytes[at + k];
    const p = pattern.charCodeAt(k);
    if (p === 0x23 ? b < 0x30 || b > 0x39 : b !== p) return "no";
  }
  return "yes";
}

/**
 * Sniffs the start of a stream: "request" or "response" when it begins with
 * an HTTP/1.x request or status line, "maybe" when the bytes so far are a
 * prefix of one, else "no".
 */
export function sniffHttp1(bytes: Uint8Array): "request" | "response" | "maybe" | "no" {
  let i = 0;
  // Tolerate a few stray line ends (e.g. after a previous body).
  while (i < bytes.length && i < 4 && (bytes[i] === CR || bytes[i] === LF)) i++;
  if (i === bytes.length) return "maybe";

  const status = matchPattern(bytes, i, "HTTP/1.# ###");
  if (status === "maybe") return "maybe";
  if (status === "yes") {
    const j = i + 12;
    if (j === bytes.length) return "response";
    return bytes[j] === 0x20 || bytes[j] === CR || bytes[j] === LF ? "response" : "no";
  }

  let sp = i;
  while (sp < bytes.length && sp - i < 10 && bytes[sp] !== 0x20) sp++;
  const method = latin1.decode(bytes.subarray(i, sp));
  if (sp === bytes.length) {
    return METHODS.some((m) => m.startsWith(method)) ? "maybe" : "no";
  }
  if (bytes[sp] !== 0x20 || !METHODS.includes(method)) return "no";
  let j = sp + 1;
  const targetStart = j;
  // Target: visible octets (raw UTF-8 allowed), bounded so sniffing stays cheap.
  while (j < bytes.length && j - targetStart < 8192 && bytes[j] > 0x20 && bytes[j] !== 0x7f) j++;
  if (j === bytes.length) return "maybe";
  if (j === targetStart || bytes[j] !== 0x20) return "no";
  const version = matchPattern(bytes, j + 1, "HTTP/1.#");
  if (version !== "yes") return version;
  const k = j + 9;
  if (k === bytes.length) return "request";
  return bytes[k] === CR || bytes[k] === LF ? "request" : "no";
}

/** Quick check that bytes start with an HTTP/1.x request or status line. */
export function looksLikeHttp1(bytes: Uint8Array): boolean {
  const v = sniffHttp1(bytes);
  return v === "request" || v === "response";
}
