/**
 * The TLS modules' events in the live web view: a row per HTTP exchange, as
 * in DevTools' Network panel, and one per block of bytes that are not HTTP.
 * @module
 */
import type { ModuleView } from "../core/module_spec.ts";
import { exchangeMs, type HttpExchange, type Party } from "../http/exchanges.ts";
import { formatEndpoint, formatParty } from "../http/exchange_format.ts";
import { harEntry } from "../http/har.ts";
import type { TlsFamilyEvent } from "./tls_events.ts";

type Row = TlsFamilyEvent;

const http = (ev: Row): HttpExchange | undefined => ev.kind === "http" ? ev : undefined;
const party = (p: Party | undefined) => p ? formatParty(p) : undefined;

export const TLS_VIEW: ModuleView<Row> = {
  // secrets never leave the key log; packets and single calls are not rows
  shows: (ev) => ev.kind === "http" || ev.kind === "stream",
  columns: [{
    label: "Client",
    as: "party",
    role: "process",
    value: (ev) =>
      ev.kind === "http"
        ? party(ev.client) ?? formatEndpoint(ev.clientAddr)
        : ev.kind === "stream"
        ? formatParty(ev.party)
        : undefined,
  }, {
    label: "Server",
    as: "party",
    value: (ev) =>
      ev.kind === "http"
        ? party(ev.server) ?? formatEndpoint(ev.serverAddr)
        : ev.kind === "stream"
        ? formatEndpoint(ev.remote)
        : undefined,
  }, {
    label: "Method",
    as: "text",
    value: (ev) => ev.kind === "stream" ? ev.direction : http(ev)?.request?.method,
  }, {
    label: "Host",
    as: "text",
    value: (ev) => {
      const x = http(ev);
      return x && (x.request?.authority ?? formatEndpoint(x.serverAddr));
    },
  }, {
    label: "Path",
    as: "text",
    role: "main",
    value: (ev) => ev.kind === "stream" ? `(${ev.calls} calls, not HTTP)` : http(ev)?.request?.path,
  }, {
    label: "Status",
    as: "status",
    role: "status",
    value: (ev) => http(ev)?.response?.status ?? (http(ev)?.incomplete ? "…" : undefined),
  }, {
    label: "Req",
    as: "bytes",
    value: (ev) =>
      ev.kind === "stream"
        ? (ev.direction === "write" ? ev.data.length : undefined)
        : http(ev)?.request?.bodySize,
  }, {
    label: "Resp",
    as: "bytes",
    value: (ev) =>
      ev.kind === "stream"
        ? (ev.direction === "read" ? ev.data.length : undefined)
        : http(ev)?.response?.bodySize,
  }, {
    label: "Duration",
    as: "ms",
    role: "duration",
    value: (ev) => ev.kind === "http" ? exchangeMs(ev.timings) : undefined,
  }, {
    label: "Proto",
    as: "text",
    value: (ev) => http(ev)?.protocol,
  }],
  har: (ev) => ev.kind === "http" ? harEntry(ev) : undefined,
};
