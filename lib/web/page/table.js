/**
 * The event table: a header of column labels over a scrolling body that
 * renders only the rows in view (plus a few), so 10,000+ rows stay smooth.
 * Also how values are shown in cells, which the filter searches too.
 */
import { statusNumber } from "/filter.js";

export const ROW_HEIGHT = 22;
/** Rows rendered past each edge of the view: a fast scroll shows no gap. */
const EXTRA = 10;
/** Longest text (in characters) a content-sized column grows to. */
const WIDEST = 32;
const NUMERIC = new Set(["number", "bytes", "ms", "us"]);

function pad2(n) {
  return n < 10 ? `0${n}` : `${n}`;
}

/** ms since the epoch as HH:MM:SS.mmm, local time. */
export function formatTime(t) {
  const ms = Math.floor(t);
  const d = new Date(ms);
  const milli = ((ms % 1000) + 1000) % 1000;
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}.` +
    String(milli).padStart(3, "0");
}

export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(1)} ${units[u]}`;
}

export function formatMs(ms) {
  if (ms < 1000) return `${ms.toFixed(2)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** A cell's text for a value shown `as` a meta column says. */
export function formatValue(v, as) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (as === "bytes") return formatBytes(v);
    if (as === "ms") return formatMs(v);
    if (as === "us") return formatMs(v / 1000);
  }
  return String(v);
}

/**
 * The class colouring a status cell. Exit statuses (0 is success) and HTTP
 * statuses (100-599) overlap, so `exit` says which the column holds.
 */
export function statusClass(v, exit) {
  if (v === null || v === undefined || v === "") return "";
  const n = statusNumber(v);
  if (Number.isNaN(n)) {
    if (/^(ok|success|done)\b/i.test(v)) return "ok";
    return /err|fail|denied|refused|timeout|abort|kill/i.test(v) ? "fail" : "";
  }
  if (exit || n < 100) return n === 0 ? "ok" : "fail";
  if (n >= 500) return "s5xx";
  if (n >= 400) return "s4xx";
  if (n >= 300) return "s3xx";
  return n >= 200 ? "s2xx" : "s1xx";
}

export class Table {
  #columns;
  #textsOf;
  #onSelect;
  #head;
  #body;
  #sizer;
  #window;
  #rows = [];
  #pool = [];
  #widest;
  #statusCols;
  #exit;
  #selected = null;
  #stick = true;
  #onStick;

  /**
   * `head` and `body` are the header row and the scrolling element;
   * `textsOf(row)` gives a row's cell texts (one per meta column, made once
   * per row by the caller); `onSelect(id)` runs when a row is chosen (null: none);
   * `onStick(stuck)` when following the newest rows starts or stops.
   */
  constructor(head, body, meta, { textsOf, onSelect, onStick }) {
    this.#columns = meta.columns;
    this.#textsOf = textsOf;
    this.#onSelect = onSelect;
    this.#onStick = onStick;
    this.#head = head;
    this.#body = body;
    this.#widest = this.#columns.map((c) => c.label.length);
    this.#statusCols = this.#columns.flatMap((c, i) => c.as === "status" ? [i] : []);
    // shells report exit statuses, whose 1xx and 2xx are not HTTP's
    this.#exit = /^(bash|zsh|sh|shell|fish)/.test(meta.module ?? "");

    // the header's grid is inside it, as the rows are inside the body: both scroll sideways
    const labels = document.createElement("div");
    labels.className = "labels";
    labels.append(this.#cell("time", "Time"));
    this.#columns.forEach((c, i) => {
      const el = this.#cell(`c${i}`, c.label);
      if (NUMERIC.has(c.as)) el.classList.add("num");
      labels.append(el);
    });
    head.replaceChildren(labels);
    this.#sizer = document.createElement("div");
    this.#sizer.className = "sizer";
    this.#window = document.createElement("div");
    this.#window.className = "window";
    this.#sizer.append(this.#window);
    body.replaceChildren(this.#sizer);
    this.#layout();

    body.addEventListener("scroll", () => {
      head.scrollLeft = body.scrollLeft;
      this.#setStick(body.scrollTop + body.clientHeight >= body.scrollHeight - ROW_HEIGHT / 2);
      this.#render();
    });
    body.addEventListener("click", (e) => {
      const el = e.target.closest(".row");
      if (el) this.select(Number(el.dataset.id));
    });
    body.addEventListener("keydown", (e) => this.#key(e));
    // a title only where the text does not fit: one per hovered cell, not per render
    body.addEventListener("mouseover", (e) => {
      const cell = e.target.closest(".cell");
      if (cell) cell.title = cell.scrollWidth > cell.clientWidth ? cell.textContent : "";
    });
    new ResizeObserver(() => this.#render()).observe(body);
  }

  /** Widens content-sized columns for a new row's texts (call once per row). */
  measure(row) {
    const texts = this.#textsOf(row);
    let wider = false;
    for (let i = 0; i < texts.length; i++) {
      const len = Math.min(texts[i].length, WIDEST);
      if (len > this.#widest[i]) {
        this.#widest[i] = len;
        wider = true;
      }
    }
    for (const i of this.#statusCols) {
      if (!this.#exit && statusNumber(row[3 + i]) < 100) {
        this.#exit = true;
        // rendered status cells were coloured as HTTP's: refill them
        for (const el of this.#pool) delete el.dataset.id;
      }
    }
    if (wider) this.#layout();
  }

  /**
   * Shows `rows` (the filtered rows, oldest first; kept by reference).
   * `removed` is how many rows left its front since the last call: the
   * view then moves up with the rows the user is reading.
   */
  update(rows, removed = 0) {
    this.#rows = rows;
    this.#sizer.style.height = `${rows.length * ROW_HEIGHT}px`;
    if (this.#stick) this.#body.scrollTop = this.#body.scrollHeight;
    else if (removed > 0) this.#body.scrollTop -= removed * ROW_HEIGHT;
    this.#render();
  }

  /** After the rows were replaced (a new filter): keeps the selection in view. */
  reset(rows) {
    this.update(rows);
    const i = this.#selected === null ? -1 : this.#indexOf(this.#selected);
    if (!this.#stick && i >= 0) this.#reveal(i, true);
  }

  /** Follows the newest rows again. */
  toBottom() {
    this.#setStick(true);
    this.#body.scrollTop = this.#body.scrollHeight;
  }

  /** Scrolls the first row at or after time t to the top of the view. */
  scrollToTime(t) {
    let lo = 0;
    let hi = this.#rows.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#rows[mid][1] < t) lo = mid + 1;
      else hi = mid;
    }
    this.#setStick(false);
    this.#body.scrollTop = lo * ROW_HEIGHT;
  }

  /** Selects the row with this id (null: none) and tells onSelect. */
  select(id) {
    this.#selected = id;
    this.#render();
    this.#onSelect(id);
  }

  #setStick(stick) {
    if (stick === this.#stick) return;
    this.#stick = stick;
    this.#onStick?.(stick);
  }

  #cell(col, text) {
    const el = document.createElement("span");
    el.className = "cell";
    el.dataset.col = col;
    el.textContent = text;
    return el;
  }

  /**
   * The grid columns, shared by the header and every row through --cols;
   * --min, their least total width, makes a narrow table scroll sideways.
   */
  #layout() {
    // widths in ch plus 12px of padding; the main column takes what is left
    const chars = [
      12,
      ...this.#columns.map((c, i) => {
        if (c.role === "main") return 16;
        if (c.as === "bytes" || c.as === "ms" || c.as === "us") return Math.max(this.#widest[i], 9);
        return Math.max(this.#widest[i], 3) + 1;
      }),
    ];
    const cols = chars.map((n, i) =>
      this.#columns[i - 1]?.role === "main"
        ? `minmax(calc(${n}ch + 12px), 1fr)`
        : `calc(${n}ch + 12px)`
    );
    const total = chars.reduce((a, b) => a + b, 0);
    const style = this.#head.parentElement.style;
    style.setProperty("--cols", cols.join(" "));
    style.setProperty("--min", `calc(${total}ch + ${12 * chars.length}px)`);
  }

  #indexOf(id) {
    // rows are in id order
    let lo = 0;
    let hi = this.#rows.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const v = this.#rows[mid][0];
      if (v === id) return mid;
      if (v < id) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Scrolls row i into view (to the middle when `center`). */
  #reveal(i, center = false) {
    const b = this.#body;
    const top = i * ROW_HEIGHT;
    if (center) b.scrollTop = top - (b.clientHeight - ROW_HEIGHT) / 2;
    else if (top < b.scrollTop) b.scrollTop = top;
    else if (top + ROW_HEIGHT > b.scrollTop + b.clientHeight) {
      b.scrollTop = top + ROW_HEIGHT - b.clientHeight;
    }
  }

  #key(e) {
    const step = { ArrowDown: 1, ArrowUp: -1, PageDown: 20, PageUp: -20 }[e.key];
    if (!step || this.#rows.length === 0) return;
    e.preventDefault();
    const at = this.#selected === null ? -1 : this.#indexOf(this.#selected);
    const i = at < 0
      ? (step > 0 ? 0 : this.#rows.length - 1)
      : Math.max(0, Math.min(this.#rows.length - 1, at + step));
    this.#reveal(i);
    this.select(this.#rows[i][0]);
  }

  #render() {
    const b = this.#body;
    const rows = this.#rows;
    const first = Math.max(0, Math.floor(b.scrollTop / ROW_HEIGHT) - EXTRA);
    const last = Math.min(
      rows.length,
      Math.ceil((b.scrollTop + b.clientHeight) / ROW_HEIGHT) + EXTRA,
    );
    this.#window.style.transform = `translateY(${first * ROW_HEIGHT}px)`;
    const need = Math.max(0, last - first);
    // row elements are reused: only a row whose id changed is refilled
    while (this.#pool.length > need) this.#pool.pop().remove();
    while (this.#pool.length < need) {
      const el = document.createElement("div");
      el.className = "row";
      el.append(this.#cell("time", ""));
      this.#columns.forEach((c, i) => {
        const cell = this.#cell(`c${i}`, "");
        if (NUMERIC.has(c.as)) cell.classList.add("num");
        if (c.role === "main") cell.classList.add("main");
        el.append(cell);
      });
      this.#window.append(el);
      this.#pool.push(el);
    }
    for (let k = 0; k < need; k++) {
      const row = rows[first + k];
      const el = this.#pool[k];
      const id = String(row[0]);
      if (el.dataset.id !== id) {
        el.dataset.id = id;
        const cells = el.children;
        cells[0].textContent = formatTime(row[1]);
        const texts = this.#textsOf(row);
        for (let i = 0; i < texts.length; i++) cells[i + 1].textContent = texts[i];
        for (const i of this.#statusCols) {
          cells[i + 1].className = `cell ${statusClass(row[3 + i], this.#exit)}`;
        }
      }
      el.classList.toggle("alt", (first + k) % 2 === 1);
      el.classList.toggle("selected", row[0] === this.#selected);
    }
  }
}
