/**
 * The timeline strip: rows per time bin as bars (all rows, and the shown
 * ones over them when a filter is on) and, when the module has a duration
 * column, the p50 and p95 duration per bin as step lines. Plain SVG.
 */
import { formatMs, formatTime } from "/table.js";

const SVG = "http://www.w3.org/2000/svg";
const MAX_BINS = 300;
/** Bin widths and tick steps in seconds, the round ones. */
const NICE = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
const PAD = { left: 44, right: 60, top: 18, bottom: 16 };

function el(name, attrs, parent) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  parent?.append(e);
  return e;
}

function text(x, y, s, cls, parent) {
  const t = el("text", { x, y, class: cls }, parent);
  t.textContent = s;
  return t;
}

/** 1, 2 or 5 times a power of ten, at least v: an axis maximum. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

function formatRate(r) {
  return r >= 10 || Number.isInteger(r) ? `${Math.round(r)}/s` : `${r.toFixed(1)}/s`;
}

export class Timeline {
  #el;
  #dur = -1;
  #durScale = 1;
  #onPick;
  /** What was drawn last, for the hover read-out. */
  #drawn = null;
  #hover = null;
  #info = null;

  /** `onPick(t)` runs when a bin is clicked, with the bin's start time. */
  constructor(container, meta, onPick) {
    this.#el = container;
    this.#onPick = onPick;
    const i = meta.columns.findIndex((c) => c.role === "duration");
    if (i >= 0) {
      this.#dur = 3 + i;
      this.#durScale = meta.columns[i].as === "us" ? 1 / 1000 : 1;
    }
  }

  /**
   * Draws `rows` (all, oldest first) and `shown` (the filtered ones; when
   * `filtered` they are drawn over the others) between times start and end.
   */
  draw(rows, shown, filtered, start, end) {
    const W = Math.max(200, this.#el.clientWidth);
    const H = Math.max(60, this.#el.clientHeight);
    const pad = { ...PAD, right: this.#dur >= 0 ? PAD.right : 16 };
    const plotW = W - pad.left - pad.right;
    const plotH = H - pad.top - pad.bottom;
    const bottom = pad.top + plotH;

    // bins: round widths, at most one per 2 px and MAX_BINS in all
    const span = Math.max(1000, end - start);
    const want = span / Math.min(MAX_BINS, plotW / 2) / 1000;
    const binMs = (NICE.find((s) => s >= want) ?? Math.ceil(want)) * 1000;
    const t0 = Math.floor(start / binMs) * binMs;
    const n = Math.max(1, Math.ceil((Math.max(end, start + 1) - t0) / binMs));
    const bw = plotW / n;
    const binOf = (t) => Math.max(0, Math.min(n - 1, Math.floor((t - t0) / binMs)));

    const all = new Uint32Array(n);
    for (const r of rows) all[binOf(r[1])]++;
    const some = filtered ? new Uint32Array(n) : all;
    const durs = this.#dur >= 0 ? new Array(n) : null;
    for (const r of shown) {
      const b = binOf(r[1]);
      if (filtered) some[b]++;
      const d = durs ? r[this.#dur] : null;
      if (typeof d === "number") (durs[b] ??= []).push(d * this.#durScale);
    }
    const p50 = new Float64Array(n).fill(NaN);
    const p95 = new Float64Array(n).fill(NaN);
    let maxMs = 0;
    if (durs) {
      for (let b = 0; b < n; b++) {
        const d = durs[b];
        if (!d) continue;
        d.sort((x, y) => x - y);
        p50[b] = quantile(d, 0.5);
        p95[b] = quantile(d, 0.95);
        if (p95[b] > maxMs) maxMs = p95[b];
      }
    }
    let maxCount = 0;
    for (const c of all) if (c > maxCount) maxCount = c;
    const binS = binMs / 1000;
    const rateTop = niceCeil(maxCount / binS);
    const countTop = rateTop * binS;
    const msTop = niceCeil(maxMs);

    const svg = el("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img" });
    el("title", {}, svg).textContent = "Rows per time bin, with p50 and p95 durations";

    // grid and time ticks
    for (const y of [pad.top, pad.top + plotH / 2]) {
      el("line", { x1: pad.left, x2: pad.left + plotW, y1: y, y2: y, class: "grid" }, svg);
    }
    el("line", { x1: pad.left, x2: pad.left + plotW, y1: bottom, y2: bottom, class: "axis" }, svg);
    const msPerPx = (n * binMs) / plotW;
    const step = (NICE.find((s) => s * 1000 >= 90 * msPerPx) ?? 86400) * 1000;
    const tz = new Date(t0).getTimezoneOffset() * 60_000;
    for (let t = Math.ceil((t0 - tz) / step) * step + tz; t <= t0 + n * binMs; t += step) {
      const x = pad.left + (t - t0) / msPerPx;
      el("line", { x1: x, x2: x, y1: pad.top, y2: bottom + 3, class: "grid" }, svg);
      const label = formatTime(t).slice(0, step < 60_000 ? 8 : 5);
      const anchor = x < pad.left + 24 ? "start" : x > W - pad.right - 24 ? "end" : "middle";
      text(x, H - 4, label, `label ${anchor}`, svg);
    }

    // bars: all rows, then the shown ones over them
    const barW = Math.max(1, bw - (bw > 4 ? 1 : 0));
    const layers = filtered ? [[all, "bar all"], [some, "bar"]] : [[all, "bar"]];
    for (const [counts, cls] of layers) {
      const g = el("g", { class: cls }, svg);
      for (let b = 0; b < n; b++) {
        if (!counts[b]) continue;
        const h = Math.max(1, (counts[b] / countTop) * plotH);
        el("rect", { x: pad.left + b * bw, y: bottom - h, width: barW, height: h }, g);
      }
    }

    // durations: a step line per quantile, broken where a bin has none
    if (durs) {
      for (const [vals, cls] of [[p50, "p50"], [p95, "p95"]]) {
        let d = "";
        for (let b = 0; b < n; b++) {
          if (Number.isNaN(vals[b])) continue;
          const y = (bottom - (vals[b] / msTop) * plotH).toFixed(1);
          const x0 = (pad.left + b * bw).toFixed(1);
          const x1 = (pad.left + (b + 1) * bw).toFixed(1);
          d += b > 0 && !Number.isNaN(vals[b - 1]) ? `L${x0},${y}H${x1}` : `M${x0},${y}H${x1}`;
        }
        if (d) el("path", { d, class: `line ${cls}` }, svg);
      }
      text(W - pad.right + 6, pad.top + 4, formatMs(msTop), "label", svg);
      text(W - pad.right + 6, bottom, "0 ms", "label", svg);
    }
    text(pad.left - 6, pad.top + 4, formatRate(rateTop), "label end", svg);
    text(pad.left - 6, bottom, "0", "label end", svg);

    // legend
    const legend = el("g", { class: "legend" }, svg);
    let x = pad.left;
    el("rect", { x, y: 4, width: 10, height: 9, class: "swatch" }, legend);
    text(x + 14, 12, filtered ? "shown rows" : "rows", "label", legend);
    x += filtered ? 84 : 48;
    if (durs) {
      for (const cls of ["p50", "p95"]) {
        el("line", { x1: x, x2: x + 14, y1: 8.5, y2: 8.5, class: `line ${cls}` }, legend);
        text(x + 18, 12, `${cls} duration`, "label", legend);
        x += 96;
      }
    }
    text(x, 12, `${binS >= 60 ? `${binS / 60} min` : `${binS} s`} bins`, "label dim", legend);
    if (rows.length === 0) {
      text(
        pad.left + plotW / 2,
        pad.top + plotH / 2 + 4,
        "waiting for events…",
        "label middle dim",
        svg,
      );
    }

    // hover read-out and click target
    this.#hover = el("rect", { x: 0, y: pad.top, width: bw, height: plotH, class: "hover" }, svg);
    this.#hover.setAttribute("visibility", "hidden");
    this.#info = text(W - pad.right, 12, "", "label end info", svg);
    const hit = el(
      "rect",
      { x: pad.left, y: pad.top, width: plotW, height: plotH, class: "hit" },
      svg,
    );
    this.#drawn = { t0, binMs, bw, n, all, some, p50, p95, filtered, left: pad.left };
    hit.addEventListener("mousemove", (e) => this.#show(e, svg));
    hit.addEventListener("mouseleave", () => this.#show(null, svg));
    hit.addEventListener("click", (e) => {
      const b = this.#binAt(e, svg);
      if (b >= 0) this.#onPick(t0 + b * binMs);
    });
    this.#el.replaceChildren(svg);
  }

  #binAt(e, svg) {
    const d = this.#drawn;
    const x = e.clientX - svg.getBoundingClientRect().left - d.left;
    return Math.max(0, Math.min(d.n - 1, Math.floor(x / d.bw)));
  }

  #show(e, svg) {
    if (!e) {
      this.#hover.setAttribute("visibility", "hidden");
      this.#info.textContent = "";
      return;
    }
    const d = this.#drawn;
    const b = this.#binAt(e, svg);
    this.#hover.setAttribute("x", String(d.left + b * d.bw));
    this.#hover.setAttribute("visibility", "visible");
    let s = `${formatTime(d.t0 + b * d.binMs).slice(0, 8)}  ${d.all[b]} rows`;
    if (d.filtered) s += ` (${d.some[b]} shown)`;
    if (!Number.isNaN(d.p50[b])) s += `  p50 ${formatMs(d.p50[b])}  p95 ${formatMs(d.p95[b])}`;
    this.#info.textContent = s;
  }
}
