/**
 * The text and --json forms of the TLS modules' events.
 * @module
 */
import { formatTime } from "../base/format.ts";
import { hexdump, printableText, toBase64 } from "../base/hexdump.ts";
import { formatHttpView } from "../http/http_stream.ts";
import {
  exchangeJSON,
  formatEndpoint as endpoint,
  formatExchange,
  formatParty as who,
  formatSize,
  JSON_SCHEMA,
} from "../http/exchange_format.ts";
import type {
  TlsFamilyEvent,
  TlsFamilyOptions,
  TlsSecretEvent,
  TlsStreamEvent,
} from "./tls_events.ts";

/** Bytes in JSON: text when they are text, else { base64 }. */
function jsonValue(v: unknown): unknown {
  if (v instanceof Uint8Array) return printableText(v) ?? { base64: toBase64(v) };
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonValue(x)]));
  }
  return v;
}

/** The text line(s) of a TLS event. */
export function formatTlsEvent(ev: TlsFamilyEvent, opts: TlsFamilyOptions): string {
  if (ev.kind === "secret") return ev.complete ? formatSecret(ev) : "";
  if (ev.kind === "packet") return "";
  if (ev.kind === "http") return formatExchange(ev);
  if (ev.kind === "stream") return formatStream(ev, opts);
  const dir = ev.direction === "write" ? "->" : "<-";
  const notes = (ev.truncated ? ` (cut: ${ev.total} moved)` : "") +
    (ev.gap ? " (after lost records)" : "") + (ev.incomplete ? " (parts lost)" : "");
  const head = `${formatTime(ev.timeNs)} ${who(ev)} fd=${ev.fd} ${endpoint(ev.local)} ${dir} ${
    endpoint(ev.remote)
  } ${ev.direction.toUpperCase()} ${ev.data.length} bytes${notes}`;
  if (opts.hex) return `${head}\n${hexdump(ev.data)}`;
  if (ev.http.length > 0) return `${head}\n${ev.http.map((v) => formatHttpView(v)).join("\n")}`;
  // the middle of an HTTP message: shown whole when it completes, not dumped
  // here too (a hex dump of every 16 KiB of a body cost the reader its pace)
  if (ev.inHttp) return `${head} (HTTP, continued)`;
  // after lost records: noise to a reader, and dumping it slows the capture further
  if (ev.outOfStep) return `${head} (HTTP, not decoded: records were lost before)`;
  return `${head}\n${printableText(ev.data) ?? hexdump(ev.data)}`;
}

/** The --json object of a TLS event; secrets never appear in it. */
export function tlsEventJSON(ev: TlsFamilyEvent): Record<string, unknown> {
  if (ev.kind === "http") return { module: ev.module, ...exchangeJSON(ev) };
  const base = {
    schema: JSON_SCHEMA,
    module: ev.module,
    kind: ev.kind,
    time: formatTime(ev.timeNs, true),
  };
  if (ev.kind === "packet") {
    return { ...base, ifindex: ev.ifindex, direction: ev.direction, length: ev.length };
  }
  const owner = {
    pid: ev.pid,
    tid: ev.tid,
    uid: ev.uid,
    comm: ev.comm,
    process: ev.process ?? ev.comm,
    conn: ev.conn,
    fd: ev.kind === "stream" ? undefined : ev.fd,
    local: ev.local,
    remote: ev.remote,
  };
  if (ev.kind === "secret") {
    // secrets go to the key log file only, never to stdout
    return { ...base, ...owner, version: ev.version, client_random: ev.clientRandom };
  }
  if (ev.kind === "stream") {
    return {
      ...base,
      ...owner,
      direction: ev.direction,
      length: ev.data.length,
      calls: ev.calls,
      data: toBase64(ev.data),
    };
  }
  return {
    ...base,
    ...owner,
    direction: ev.direction,
    length: ev.data.length,
    total: ev.total,
    truncated: ev.truncated,
    incomplete: ev.incomplete,
    gap: ev.gap,
    data: toBase64(ev.data),
    http: ev.http.length ? ev.http.map(jsonValue) : undefined,
  };
}

export function formatSecret(ev: TlsSecretEvent): string {
  // a socket not learnt (no syscall seen in the handshake) is left out
  const conn = ev.fd < 0 && !ev.local
    ? ""
    : ` fd=${ev.fd} ${endpoint(ev.local)} ${endpoint(ev.remote)}`;
  return `${formatTime(ev.timeNs)} ${who(ev)}${conn} ${ev.version} keys for client random ${
    ev.clientRandom.slice(0, 16)
  }...`;
}

/** Consecutive bytes of one direction of a connection that is not HTTP. */
function formatStream(ev: TlsStreamEvent, opts: TlsFamilyOptions): string {
  const dir = ev.direction === "write" ? "->" : "<-";
  const calls = ev.calls > 1 ? ` in ${ev.calls} calls` : "";
  const head = `${formatTime(ev.timeNs)} ${who(ev)} ${endpoint(ev.local)} ${dir} ${
    endpoint(ev.remote)
  } ${ev.direction.toUpperCase()} ${formatSize(ev.data.length)}${calls}`;
  const text = opts.hex ? undefined : printableText(ev.data);
  return `${head}\n${text ?? hexdump(ev.data)}`;
}
