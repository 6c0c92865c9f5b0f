import assert from "node:assert/strict";
import { DayLines, formatTime } from "../../lib/base/format.ts";

/** Local time as wall-clock ns, the way records carry it. */
const at = (y: number, m: number, d: number, h = 0, min = 0) =>
  BigInt(new Date(y, m - 1, d, h, min).getTime()) * 1_000_000n;

Deno.test("DayLines names the first day in files, then each change of day", () => {
  const days = new DayLines(true);
  assert.equal(days.next(at(2026, 12, 4, 23, 59)), "--- 2026-12-04 ---");
  assert.equal(days.next(at(2026, 12, 4, 0, 0)), undefined);
  assert.equal(days.next(at(2026, 12, 5, 0, 0)), "--- 2026-12-05 ---");
  assert.equal(days.next(at(2026, 12, 5, 12)), undefined);
  assert.equal(days.next(at(2027, 1, 1, 8)), "--- 2027-01-01 ---");
});

Deno.test("DayLines on a terminal says only a change of day", () => {
  const days = new DayLines(false);
  assert.equal(days.next(at(2026, 12, 4, 10)), undefined);
  assert.equal(days.next(at(2026, 12, 4, 11)), undefined);
  assert.equal(days.next(at(2026, 12, 5, 1)), "--- 2026-12-05 ---");
});

Deno.test("formatTime() prints local HH:MM:SS.mmm and ISO 8601 UTC", () => {
  const t = at(2026, 12, 4, 9, 5) + 7_042_000_000n + 123_456n;
  assert.equal(formatTime(t), "09:05:07.042");
  assert.match(formatTime(t, true), /^\d{4}-\d\d-\d\dT\d\d:\d\d:07\.042123Z$/);
});
