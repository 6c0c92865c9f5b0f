import assert from "node:assert/strict";
import { formatBytes, StatusLine, statusText } from "../../lib/cli/status_line.ts";
import type { CaptureStats } from "../../lib/core/capture.ts";

const stats = (events: number, bytes: number, lost = 0): CaptureStats => ({
  records: events,
  lostPerCpu: [lost],
  unfollowed: 0,
  lost,
  truncated: 0,
  shed: 0,
  malformed: 0,
  events,
  bytes,
});

Deno.test("status line: bytes in binary units", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(5 * 1024 * 1024), "5.0 MiB");
});

Deno.test("status line: rewritten in place, rate since the last update, cut to the width", () => {
  const written: string[] = [];
  let columns = 200;
  const line = new StatusLine({ write: (t) => written.push(t), columns: () => columns });
  line.clear(); // nothing shown yet: nothing to erase
  assert.deepEqual(written, []);
  line.update(stats(100, 2048), 1);
  line.update(stats(400, 4096, 2), 3);
  assert.deepEqual(written, [
    "\r\x1b[K" + statusText(stats(100, 2048), 1, 100),
    "\r\x1b[K" + "ecap: 3 s, 400 events, 4.0 KiB, 2 lost, 150 events/s",
  ]);
  columns = 20;
  line.update(stats(400, 4096), 4);
  assert.equal(written.at(-1), "\r\x1b[Kecap: 4 s, 400 even");
  line.clear();
  assert.equal(written.at(-1), "\r\x1b[K");
  line.clear();
  assert.equal(written.length, 4, "cleared once");
});

Deno.test("status line: records kept short are named only when there are some", () => {
  assert.doesNotMatch(statusText(stats(5, 100), 1, 5), /kept short/);
  assert.match(
    statusText({ ...stats(5, 100), shed: 3 }, 1, 5),
    /^ecap: 1 s, 5 events, 100 B, 0 lost, 3 kept short, 5 events\/s$/,
  );
});
