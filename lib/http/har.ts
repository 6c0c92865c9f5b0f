/**
 * HTTP exchanges as HAR 1.2 entries (the format DevTools, Charles, Fiddler
 * and mitmproxy read and write), with the processes of both ends in the
 * custom field `_ecap`.
 * @module
 */
import { formatTime } from "../base/format.ts";
import { toBase64 } from "../base/hexdump.ts";
import { durationMs, type HttpExchange, type HttpMessage, type Party } from "./exchanges.ts";
import { bodyAsText } from "./http_stream.ts";

/** The start of a HAR document up to its first entry. */
export function harHead(version: string): string {
  const creator = { name: "ecap", version };
  return `{"log":{"version":"1.2","creator":${JSON.stringify(creator)},"entries":[`;
}

/** What closes the document after the last entry. */
export const HAR_TAIL = "]}}\n";

type NameValue = { name: string; value: string };

function nameValues(fields: readonly [string, string][]): NameValue[] {
  return fields.map(([name, value]) => ({ name, value }));
}

function header(m: HttpMessage, name: string): string | undefined {
  const lower = name.toLowerCase();
  return m.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
}

function queryString(path: string): NameValue[] {
  const q = path.indexOf("?");
  if (q < 0) return [];
  return [...new URLSearchParams(path.slice(q + 1))].map(([name, value]) => ({ name, value }));
}

/** A body as HAR text: itself when it is text, else base64 (`encoding` says so). */
function content(body: Uint8Array): { text: string; encoding?: "base64" } {
  const text = bodyAsText(body, body.length);
  return text !== undefined ? { text } : { text: toBase64(body), encoding: "base64" };
}

function party(p: Party | undefined) {
  return p ? { pid: p.pid, comm: p.comm, process: p.process ?? p.comm } : null;
}

/** Milliseconds between two times, never negative, -1 when one is missing. */
function span(from: bigint | undefined, to: bigint | undefined): number {
  const ms = durationMs(from, to);
  return ms === undefined ? -1 : Math.max(0, ms);
}

/** One exchange as a HAR entry. */
export function harEntry(x: HttpExchange): Record<string, unknown> {
  const rq = x.request;
  const rs = x.response;
  const t = x.timings;
  const authority = rq?.authority ??
    (x.serverAddr ? `${x.serverAddr.addr}:${x.serverAddr.port}` : "unknown");
  const path = rq?.path ?? "/";
  const httpVersion = x.protocol === "HTTP/2" ? "HTTP/2.0" : x.protocol;
  const request: Record<string, unknown> = {
    method: rq?.method ?? "GET",
    url: `https://${authority}${path.startsWith("/") ? path : `/${path}`}`,
    httpVersion,
    cookies: [],
    headers: nameValues(rq?.headers ?? []),
    queryString: queryString(path),
    headersSize: -1,
    bodySize: rq?.bodySize ?? 0,
  };
  if (rq && rq.body.length > 0) {
    const c = content(rq.body);
    request.postData = {
      mimeType: header(rq, "content-type") ?? "application/octet-stream",
      text: c.text,
      ...(c.encoding ? { _encoding: c.encoding } : {}),
    };
  }
  const body = rs?.body ?? new Uint8Array(0);
  const response = {
    status: rs?.status ?? 0,
    statusText: rs?.reason ?? "",
    httpVersion,
    cookies: [],
    headers: nameValues(rs?.headers ?? []),
    content: {
      size: body.length,
      compression: rs ? Math.max(0, body.length - rs.bodySize) : 0,
      mimeType: (rs && header(rs, "content-type")) ?? "x-unknown",
      ...(body.length > 0 ? content(body) : {}),
    },
    redirectURL: (rs && header(rs, "location")) ?? "",
    headersSize: -1,
    bodySize: rs?.bodySize ?? 0,
  };
  const send = span(t.requestStart, t.requestEnd);
  const wait = span(t.requestEnd, t.responseStart);
  const receive = span(t.responseStart, t.responseEnd);
  const parts = [send, wait, receive].filter((v) => v >= 0);
  return {
    startedDateTime: formatTime(t.requestStart, true),
    time: parts.reduce((a, b) => a + b, 0),
    request,
    response,
    cache: {},
    timings: {
      blocked: -1,
      dns: -1,
      connect: -1,
      ssl: -1,
      send: Math.max(0, send),
      wait: Math.max(0, wait),
      receive: Math.max(0, receive),
    },
    ...(x.serverAddr ? { serverIPAddress: x.serverAddr.addr } : {}),
    ...(x.clientAddr ? { connection: String(x.clientAddr.port) } : {}),
    _ecap: {
      client: party(x.client),
      server: party(x.server),
      protocol: x.protocol,
      streamId: x.streamId,
      incomplete: x.incomplete,
    },
  };
}
