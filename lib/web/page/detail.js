/**
 * The detail pane: one entry fetched from /api/entry/ID, an HTTP exchange
 * (summary, timings, headers, bodies) or any other kind (its fields and
 * main text). Captured text is hostile: it only ever goes in as text nodes.
 */
import { hexdump } from "/hexdump.js";
import { formatBytes, formatMs, statusClass } from "/table.js";

/** Text bodies longer than this are cut: a pre of megabytes stalls the page. */
const SHOWN_TEXT = 256 * 1024;
const SHOWN_BYTES = 64 * 1024;

/** An element with a class and children (strings become text nodes). */
function h(tag, cls, ...children) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  e.append(...children.filter((c) => c !== null && c !== undefined && c !== false));
  return e;
}

function base64Bytes(b64) {
  const bin = atob(b64);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

/** The bytes as text when they are UTF-8 and nearly all printable, else null. */
function printable(bytes) {
  let text;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
  // deno-lint-ignore no-control-regex -- matching control characters is the point
  const controls = /[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]/g;
  const n = (text.match(controls) ?? []).length;
  return n * 100 > text.length ? null : text.replace(controls, ".");
}

/** A <pre class="body">: hex dumps keep their lines, text wraps. */
function pre(text, hex = false) {
  const p = h("pre", hex ? "body hex" : "body", text);
  if (text === "") p.classList.add("empty");
  return p;
}

function bytesPre(bytes) {
  const text = printable(bytes.subarray(0, SHOWN_TEXT));
  if (text !== null) {
    return textPre(text, bytes.length > SHOWN_TEXT ? bytes.length - SHOWN_TEXT : 0);
  }
  return pre(hexdump(bytes, SHOWN_BYTES).join("\n"), true);
}

function textPre(text, more = 0) {
  if (text.length > SHOWN_TEXT) {
    more += text.length - SHOWN_TEXT;
    text = text.slice(0, SHOWN_TEXT);
  }
  return pre(more > 0 ? `${text}\n… ${more} more characters` : text);
}

function header(headers, name) {
  return headers?.find(([k]) => k.toLowerCase() === name)?.[1] ?? "";
}

/** JSON indented when it is JSON (by content type, or by its looks). */
function prettyBody(text, contentType) {
  const t = text.trimStart();
  if (/json/i.test(contentType) || t.startsWith("{") || t.startsWith("[")) {
    try {
      const v = JSON.parse(text);
      if (typeof v === "object" && v !== null) return JSON.stringify(v, null, 2);
    } catch {
      // not JSON after all: shown as it is
    }
  }
  return text;
}

function party(p) {
  if (!p) return "?";
  const name = `${p.process ?? p.comm ?? "?"}[${p.pid}]`;
  if (!p.addr) return name;
  const addr = p.addr.includes(":") ? `[${p.addr}]` : p.addr;
  return `${name} ${addr}:${p.port}`;
}

function section(title, count, ...content) {
  const d = h(
    "details",
    "section",
    h("summary", null, title, count !== null ? h("span", "n", ` ${count}`) : null),
    ...content,
  );
  d.open = true;
  return d;
}

function headersTable(headers) {
  const table = h("table", "headers");
  for (const [k, v] of headers) table.append(h("tr", null, h("th", null, k), h("td", null, v)));
  if (headers.length === 0) table.append(h("tr", null, h("td", "dim", "none")));
  return table;
}

function notes(msg) {
  const out = [];
  if (msg.body_size !== undefined) out.push(h("span", "note", formatBytes(msg.body_size)));
  if (msg.content_encoding) out.push(h("span", "note", `decoded from ${msg.content_encoding}`));
  if (msg.body_truncated) out.push(h("span", "note warn", "truncated"));
  if (msg.incomplete) out.push(h("span", "note warn", "incomplete"));
  if (msg.decode_error) out.push(h("span", "note bad", `decode error: ${msg.decode_error}`));
  return out.length ? h("div", "notes", ...out) : null;
}

/** The body in a pre.body; a message without one gets no pre (a GET's request). */
function bodyPre(msg) {
  const body = msg.body;
  if (body && typeof body === "object" && typeof body.base64 === "string") {
    return bytesPre(base64Bytes(body.base64));
  }
  if (typeof body !== "string" || body === "") return h("p", "dim", "No body.");
  return textPre(prettyBody(body, header(msg.headers, "content-type")));
}

function message(title, msg) {
  if (!msg) return [h("p", "dim", `No ${title.toLowerCase()} captured.`)];
  const out = [
    section(`${title} headers`, msg.headers?.length ?? 0, headersTable(msg.headers ?? [])),
  ];
  out.push(section(`${title} body`, null, notes(msg), bodyPre(msg)));
  if (msg.trailers?.length) {
    out.push(section(`${title} trailers`, msg.trailers.length, headersTable(msg.trailers)));
  }
  return out;
}

function timing(t) {
  const parts = [["send", t.send_ms], ["wait", t.wait_ms], ["receive", t.receive_ms]];
  const bar = h("div", "bar");
  for (const [name, v] of parts) {
    if (typeof v !== "number" || !(v > 0)) continue;
    const seg = h("span", name);
    seg.style.flexGrow = String(v);
    seg.title = `${name} ${formatMs(v)}`;
    bar.append(seg);
  }
  const num = (v) => typeof v === "number" ? formatMs(v) : "?";
  const legend = h(
    "div",
    "numbers",
    ...parts.map(([name, v]) => h("span", null, h("i", name), `${name} ${num(v)}`)),
    h("span", "total", `total ${num(t.duration_ms)}`),
  );
  return h("div", "timing", bar.children.length ? bar : null, legend);
}

function httpEntry(x) {
  const req = x.request;
  const res = x.response;
  const url = req ? `${req.authority ?? ""}${req.path ?? ""}` : "(no request)";
  const status = res ? `${res.status}${res.reason ? ` ${res.reason}` : ""}` : "no response";
  const out = [
    h(
      "div",
      "summary",
      h("div", "url", req ? h("b", "method", req.method ?? "?") : null, " ", url),
      h(
        "div",
        "facts",
        h("span", `code ${res ? statusClass(res.status, false) : "dim"}`, status),
        h("span", null, x.protocol ?? req?.version ?? ""),
        h("span", null, `${party(x.client)} → ${party(x.server)}`),
        x.time ? h("span", "dim", x.time) : null,
        x.incomplete ? h("span", "note warn", "incomplete") : null,
      ),
    ),
  ];
  if (x.timings) out.push(section("Timing", null, timing(x.timings)));
  out.push(...message("Request", req), ...message("Response", res));
  return out;
}

/** Scalar fields, with nested objects' ones under dotted names. */
function scalars(obj, prefix = "", out = []) {
  for (const [k, v] of Object.entries(obj)) {
    if (v === null || typeof v !== "object") out.push([prefix + k, v]);
    else if (!Array.isArray(v)) scalars(v, `${prefix}${k}.`, out);
  }
  return out;
}

function otherEntry(x) {
  const fields = scalars(x).filter(([k]) => !["line", "query", "data"].includes(k));
  const table = h("table", "headers fields");
  for (const [k, v] of fields) {
    table.append(h("tr", null, h("th", null, k), h("td", null, v === null ? "null" : String(v))));
  }
  const out = [section("Fields", null, table)];
  const main = x.line ?? x.query;
  if (typeof main === "string") {
    out.push(section(x.line !== undefined ? "Line" : "Query", null, textPre(main)));
  } else if (x.data !== undefined) {
    const b64 = typeof x.data === "string" ? x.data : x.data?.base64;
    let bytes = null;
    try {
      bytes = base64Bytes(b64);
    } catch {
      // not base64: the text as sent
    }
    const length = x.length ?? bytes?.length;
    out.push(
      section(
        "Data",
        length !== undefined ? formatBytes(length) : null,
        bytes ? bytesPre(bytes) : textPre(String(x.data)),
      ),
    );
  }
  return out;
}

export class Detail {
  #el;
  #title;
  #body;
  #token = 0;

  /** `onClose()` runs when the user closes the pane. */
  constructor(el, onClose) {
    this.#el = el;
    this.#title = h("span", "title");
    const close = h("button", "close", "×");
    close.type = "button";
    close.title = "Close (Esc)";
    close.addEventListener("click", onClose);
    this.#body = h("div", "content");
    el.replaceChildren(h("div", "head", this.#title, close), this.#body);
  }

  hide() {
    this.#token++;
    this.#el.hidden = true;
    this.#body.replaceChildren();
  }

  /** Fetches and shows entry id; a later call wins over a slower earlier one. */
  async show(id) {
    const token = ++this.#token;
    this.#el.hidden = false;
    this.#title.textContent = `#${id}`;
    this.#body.replaceChildren(h("p", "dim", "Loading…"));
    let entry = null;
    let error = null;
    try {
      const res = await fetch(`/api/entry/${encodeURIComponent(id)}`);
      if (res.status === 404) {
        error = "This entry was dropped from the history: its details are gone.";
      } else if (!res.ok) error = `The server answered ${res.status} ${res.statusText}.`;
      else entry = await res.json();
    } catch (e) {
      error = `Could not fetch the entry: ${e.message}`;
    }
    if (token !== this.#token) return;
    if (error) {
      this.#body.replaceChildren(h("p", "dim", error));
      return;
    }
    const x = entry.json ?? {};
    const kind = entry.kind ?? x.kind ?? "entry";
    this.#title.textContent = `#${id} ${kind}`;
    const parts = kind === "http" ? httpEntry(x) : otherEntry(x);
    // the whole entry as JSON, made only when opened: it may hold big bodies
    const raw = h("details", "section raw", h("summary", null, "JSON"));
    raw.addEventListener("toggle", () => {
      if (raw.open && raw.children.length === 1) {
        raw.append(h("pre", "raw", JSON.stringify(x, null, 2)));
      }
    });
    this.#body.replaceChildren(...parts, raw);
    this.#body.scrollTop = 0;
  }
}
