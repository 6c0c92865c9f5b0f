/**
 * The page's files, embedded in the binary by text imports (as the BPF
 * objects are by bytes imports): the view needs nothing beside ecap.
 * @module
 */
import index from "./page/index.html" with { type: "text" };
import css from "./page/app.css" with { type: "text" };
import app from "./page/app.js" with { type: "text" };
import table from "./page/table.js" with { type: "text" };
import filter from "./page/filter.js" with { type: "text" };
import detail from "./page/detail.js" with { type: "text" };
import timeline from "./page/timeline.js" with { type: "text" };
import hexdump from "./page/hexdump.js" with { type: "text" };

const JS = "text/javascript; charset=utf-8";

/** Path → [content type, body]. */
export const PAGE_ASSETS: Record<string, readonly [string, string]> = {
  "/": ["text/html; charset=utf-8", index],
  "/app.css": ["text/css; charset=utf-8", css],
  "/app.js": [JS, app],
  "/table.js": [JS, table],
  "/filter.js": [JS, filter],
  "/detail.js": [JS, detail],
  "/timeline.js": [JS, timeline],
  "/hexdump.js": [JS, hexdump],
};
