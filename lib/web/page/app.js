/**
 * The live view's entry module: fetches the capture's meta, follows the
 * event stream, keeps the rows in memory, and wires the header, filter,
 * table, timeline and detail pane together. The page only reads.
 */
import { Detail } from "/detail.js";
import { compileFilter } from "/filter.js";
import { formatValue, Table } from "/table.js";
import { Timeline } from "/timeline.js";

const $ = (id) => document.getElementById(id);

/** All rows, oldest first, and the ones the filter lets through. */
const rows = [];
const shown = [];
globalThis.ecap = { rows, shown };

/** Per row, made once: its cell texts and the lowercased text filters search. */
const made = new WeakMap();
let meta;
let table;
let timeline;
let detail;
let cap = 11000;
let statusIndex = -1;
let filter = null;
let lastId = -Infinity;
/** Shown rows dropped from the front since the table last drew. */
let removed = 0;
/** Rows were dropped here: the capture's start is no longer in view. */
let trimmed = false;
let stats = null;
let state = "connecting";
let endedAt = 0;
let frame = 0;
let drawTimer = 0;
let lastDraw = -Infinity;

function setState(s, text) {
  state = s;
  text ??= { live: "live", reconnecting: "reconnecting…", ended: "capture ended" }[s];
  $("status").textContent = text;
  $("status").className = `status ${s}`;
}

function make(row) {
  const texts = meta.columns.map((c, i) => formatValue(row[3 + i], c.as));
  // a separator no one types: a term never matches across two cells
  made.set(row, { texts, hay: texts.join("\u0001").toLowerCase() });
}

function passes(row) {
  return !filter || filter(row, made.get(row).hay);
}

function addRows(batch) {
  if (!Array.isArray(batch)) return;
  for (const row of batch) {
    // a reconnect may send again what came before
    if (!Array.isArray(row) || !(row[0] > lastId)) continue;
    lastId = row[0];
    make(row);
    table.measure(row);
    rows.push(row);
    if (passes(row)) shown.push(row);
  }
  // trimmed in steps, not per row: the server drops its oldest rows too
  if (rows.length > cap) {
    const drop = rows.length - (meta.history || cap);
    const firstKept = rows[drop][0];
    rows.splice(0, drop);
    let k = 0;
    while (k < shown.length && shown[k][0] < firstKept) k++;
    shown.splice(0, k);
    removed += k;
    trimmed = true;
  }
  schedule();
  drawSoon();
}

/** Redraws the table and counters once per frame, however many messages came. */
function schedule() {
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    table.update(shown, removed);
    removed = 0;
    counters();
  });
}

function counters() {
  $("count").textContent = `${shown.length} shown of ${rows.length}`;
  const empty = rows.length === 0
    ? "Waiting for events…"
    : shown.length === 0
    ? "No rows match the filter."
    : "";
  $("empty").textContent = empty;
  $("empty").hidden = !empty;
  if (!stats) return;
  $("events").textContent = String(stats.events ?? 0);
  $("lost").textContent = String(stats.lost ?? 0);
  $("dropped").textContent = String(stats.dropped ?? 0);
  for (const [id, bad] of [["lost", stats.lost > 0], ["dropped", stats.dropped > 0]]) {
    $(id).classList.toggle("bad", bad);
    $(`${id}-stat`).classList.toggle("bad", bad);
  }
  // shed: records kept short while the ring was over half full (the reader behind)
  const names = {
    unfollowed: "unfollowed",
    truncated: "truncated",
    shed: "kept short",
    malformed: "malformed",
  };
  const more = Object.keys(names).filter((k) => stats[k] > 0);
  $("more").textContent = more.map((k) => `${names[k]} ${stats[k]}`).join("  ");
}

function applyFilter() {
  const text = $("filter").value;
  filter = compileFilter(text, statusIndex);
  shown.length = 0;
  for (const row of rows) if (passes(row)) shown.push(row);
  removed = 0;
  table.reset(shown);
  counters();
  drawSoon();
  // kept in the fragment, which never leaves the browser: a reload keeps the filter
  const url = text ? `#${encodeURIComponent(text)}` : location.pathname + location.search;
  history.replaceState(null, "", url);
}

function drawTimeline() {
  const first = rows[0]?.[1];
  let start = meta.started ?? first ?? Date.now();
  if (first !== undefined && (trimmed || stats?.dropped > 0 || first < start)) start = first;
  const last = rows.at(-1)?.[1] ?? start;
  const end = state === "ended" ? Math.max(last, endedAt || last) : Math.max(last, Date.now());
  timeline.draw(rows, shown, filter !== null, start, end);
}

/** Draws the timeline now or when a second has passed since the last time. */
function drawSoon() {
  if (drawTimer) return;
  const wait = Math.max(0, lastDraw + 1000 - performance.now());
  drawTimer = setTimeout(() => {
    drawTimer = 0;
    lastDraw = performance.now();
    drawTimeline();
  }, wait);
}

function ended() {
  if (state !== "ended") endedAt = Date.now();
  setState("ended");
  drawSoon();
}

function connect() {
  const es = new EventSource("/api/events");
  const parse = (e) => {
    try {
      return JSON.parse(e.data);
    } catch {
      return null;
    }
  };
  es.onopen = () => state !== "ended" && setState("live");
  es.addEventListener("rows", (e) => addRows(parse(e)));
  es.addEventListener("stats", (e) => {
    stats = parse(e) ?? stats;
    if (stats?.running === false) ended();
    schedule();
  });
  es.addEventListener("end", () => {
    // the server goes away next: no reconnecting to it
    es.close();
    ended();
  });
  es.onerror = () => {
    if (state === "ended") return es.close();
    setState("reconnecting");
    // EventSource gives up on an HTTP error: start over (rows are de-duplicated)
    if (es.readyState === EventSource.CLOSED) setTimeout(connect, 3000);
  };
}

function keys(e) {
  const typing = e.target instanceof HTMLInputElement;
  if (e.key === "/" && !typing) {
    e.preventDefault();
    $("filter").focus();
  } else if (e.key === "Escape" && !typing) {
    table.select(null);
  }
}

async function main() {
  try {
    const res = await fetch("/api/meta");
    if (!res.ok) throw new Error(`${res.status} ${res.statusText}`);
    meta = await res.json();
  } catch (e) {
    setState("error", `no connection (${e.message})`);
    return;
  }
  document.title = `ecap ${meta.module}`;
  $("module").textContent = meta.module;
  $("har").hidden = !meta.har;
  cap = Math.ceil((meta.history || 10000) * 1.1);
  const status = meta.columns.findIndex((c) => c.role === "status");
  const i = status >= 0 ? status : meta.columns.findIndex((c) => c.as === "status");
  statusIndex = i >= 0 ? 3 + i : -1;

  detail = new Detail($("detail"), () => table.select(null));
  table = new Table($("head"), $("rows"), meta, {
    textsOf: (row) => made.get(row).texts,
    onSelect: (id) => id === null ? detail.hide() : detail.show(id),
    onStick: (stuck) => $("latest").hidden = stuck,
  });
  timeline = new Timeline($("timeline"), meta, (t) => table.scrollToTime(t));

  try {
    $("filter").value = decodeURIComponent(location.hash.slice(1));
  } catch {
    // a hand-made fragment that is not a filter
  }
  $("filter").addEventListener("input", applyFilter);
  $("latest").addEventListener("click", () => table.toBottom());
  document.addEventListener("keydown", keys);
  new ResizeObserver(drawSoon).observe($("timeline"));
  if ($("filter").value) applyFilter();
  counters();
  drawSoon();
  connect();
  // the time axis moves on while live, rows or not
  setInterval(() => state === "live" && drawSoon(), 1000);
}

main();
