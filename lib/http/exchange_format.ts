/**
 * HTTP exchanges for people (a block of text) and for programs (the
 * versioned --json object, schema 1; see the README).
 * @module
 */
import { formatTime } from "../base/format.ts";
import { hexdump, toBase64 } from "../base/hexdump.ts";
import {
  durationMs,
  type Endpoint,
  exchangeMs,
  type HttpExchange,
  type HttpMessage,
  type Party,
} from "./exchanges.ts";
import { bodyAsText } from "./http_stream.ts";

/** The --json schema version: bumped when a field changes meaning or goes. */
export const JSON_SCHEMA = 1;

/** Bytes of a body shown on screen; the JSON and HAR forms carry it whole. */
const SHOWN_BODY = 64 * 1024;
/** Bytes of a binary body hex-dumped on screen. */
const SHOWN_BINARY = 256;
// The text here stays Latin-1 ("...", not an ellipsis character): one
// character above U+00FF makes V8 store a whole batch's joined text two
// bytes a character, and encoding it 40x slower (8 MB: 0.4 -> 17 ms).

export function formatEndpoint(e: Endpoint | null): string {
  if (!e) return "?";
  return e.addr.includes(":") ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`;
}

/** "comm[pid]", or "process[pid]/thread" for a thread named otherwise. */
export function formatParty(p: Party): string {
  return p.process === undefined ? `${p.comm}[${p.pid}]` : `${p.process}[${p.pid}]/${p.comm}`;
}

/** 1234 -> "1.2 KiB". */
export function formatSize(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function formatMs(ms: number | undefined): string {
  if (ms === undefined) return "?";
  return ms < 10
    ? `${ms.toFixed(2)} ms`
    : ms < 1000
    ? `${ms.toFixed(1)} ms`
    : `${(ms / 1000).toFixed(2)} s`;
}

/** The first line: who asked whom what, the answer, sizes and duration. */
export function exchangeSummary(x: HttpExchange): string {
  const client = x.client ? formatParty(x.client) : formatEndpoint(x.clientAddr);
  const rq = x.request;
  const rs = x.response;
  // a socket not learnt (node's own TLS buffers): the host the request names
  const server = x.server
    ? formatParty(x.server)
    : x.serverAddr || !rq?.authority
    ? formatEndpoint(x.serverAddr)
    : rq.authority;
  const authority = rq?.authority ?? formatEndpoint(x.serverAddr);
  const what = rq ? `${rq.method ?? "?"} ${authority} ${rq.path ?? "?"}` : "(request not seen)";
  const answer = rs
    ? `${rs.status ?? "?"}${rs.reason ? ` ${rs.reason}` : ""}`
    : x.incomplete
    ? "(no response)"
    : "?";
  const sizes = `${formatSize(rq?.bodySize ?? 0)} / ${formatSize(rs?.bodySize ?? 0)}`;
  const took = formatMs(exchangeMs(x.timings));
  const notes = x.incomplete ? " [incomplete]" : "";
  return `${formatTime(x.timings.requestStart)} ${client} -> ${server} ${what} -> ${answer}, ` +
    `${sizes}, ${took}${x.protocol === "HTTP/2" ? " (h2)" : ""}${notes}`;
}

/** Each line of text (LF-separated) with indent before it. */
function indented(text: string, indent: string): string {
  return indent + text.replaceAll("\n", "\n" + indent);
}

/** The body's lines, indented, each ending in LF; "" when there is nothing to show. */
function bodyText(m: HttpMessage, indent: string): string {
  let s = "";
  if (m.decodeError !== undefined) s += `${indent}[body not decoded: ${m.decodeError}]\n`;
  const b = m.body;
  if (b.length > 0) {
    const text = m.contentEncoding === undefined ? bodyAsText(b, SHOWN_BODY) : undefined;
    if (text !== undefined) {
      s += indented(text.replace(/\n$/, ""), indent) + "\n";
      if (b.length > SHOWN_BODY) s += `${indent}[... ${b.length - SHOWN_BODY} more bytes]\n`;
    } else {
      const what = m.contentEncoding ? `${m.contentEncoding}-encoded` : "binary";
      s += `${indent}[${b.length} bytes ${what} body]\n`;
      s += hexdump(b.subarray(0, SHOWN_BINARY), indent) + "\n";
      if (b.length > SHOWN_BINARY) s += `${indent}[... ${b.length - SHOWN_BINARY} more bytes]\n`;
    }
  }
  if (m.bodyTruncated) s += `${indent}[body cut: ${m.bodySize} bytes on the wire]\n`;
  if (m.incomplete) s += `${indent}[message incomplete]\n`;
  return s;
}

/** A message's lines, each after "  > " (request) or "  < " (response) and a LF. */
function messageText(m: HttpMessage, mark: string): string {
  const start = m.method !== undefined
    ? `${m.method} ${m.path ?? "?"} ${m.version}`
    : `${m.version} ${m.status ?? "?"}${m.reason ? ` ${m.reason}` : ""}`;
  const prefix = `  ${mark} `;
  let s = `\n${prefix}${start}`;
  for (const [n, v] of m.headers) s += `\n${prefix}${n}: ${v}`;
  const body = bodyText(m, "  ");
  // the body's lines end in LF; every other line here starts with one
  if (body !== "") s += `\n  ${mark}\n${body.slice(0, -1)}`;
  if (m.trailers?.length) { for (const [n, v] of m.trailers) s += `\n${prefix}${n}: ${v}`; }
  return s;
}

/** The text block of an exchange: its summary, then request and response. */
export function formatExchange(x: HttpExchange): string {
  let s = exchangeSummary(x);
  if (x.request) s += messageText(x.request, ">");
  if (x.response) s += messageText(x.response, "<");
  return s;
}

/** A body in JSON: its text when it is text, else base64. */
function jsonBody(b: Uint8Array, encoding: string | undefined): string | { base64: string } {
  const text = encoding === undefined ? bodyAsText(b, b.length) : undefined;
  return text ?? { base64: toBase64(b) };
}

function messageJSON(m: HttpMessage | undefined): Record<string, unknown> | null {
  if (!m) return null;
  return {
    version: m.version,
    method: m.method,
    authority: m.authority,
    path: m.path,
    status: m.status,
    reason: m.reason,
    headers: m.headers,
    trailers: m.trailers,
    body: jsonBody(m.body, m.contentEncoding),
    body_size: m.bodySize,
    body_truncated: m.bodyTruncated,
    content_encoding: m.contentEncoding,
    decode_error: m.decodeError,
    incomplete: m.incomplete,
  };
}

function partyJSON(p: Party | undefined, at: Endpoint | null): Record<string, unknown> | null {
  if (!p && !at) return null;
  return {
    pid: p?.pid,
    comm: p?.comm,
    process: p ? p.process ?? p.comm : undefined,
    addr: at?.addr,
    port: at?.port,
  };
}

const iso = (t: bigint | undefined) => t === undefined ? undefined : formatTime(t, true);

/** The --json object of an exchange (schema 1). */
export function exchangeJSON(x: HttpExchange): Record<string, unknown> {
  const t = x.timings;
  return {
    schema: JSON_SCHEMA,
    kind: "http",
    time: iso(t.requestStart),
    protocol: x.protocol,
    client: partyJSON(x.client, x.clientAddr),
    server: partyJSON(x.server, x.serverAddr),
    stream_id: x.streamId,
    request: messageJSON(x.request),
    response: messageJSON(x.response),
    timings: {
      request_start: iso(t.requestStart),
      request_end: iso(t.requestEnd),
      response_start: iso(t.responseStart),
      response_end: iso(t.responseEnd),
      duration_ms: exchangeMs(t),
      wait_ms: durationMs(t.requestEnd, t.responseStart),
      send_ms: durationMs(t.requestStart, t.requestEnd),
      receive_ms: durationMs(t.responseStart, t.responseEnd),
    },
    incomplete: x.incomplete,
  };
}
