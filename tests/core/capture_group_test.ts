import assert from "node:assert/strict";
import { CaptureGroup } from "../../lib/core/capture_group.ts";
import type { Capture } from "../../lib/core/capture.ts";
import type { EventBase } from "../../lib/core/module_spec.ts";

type Ev = EventBase & { n: number };

/** A capture whose batches come when the test pushes them; ends on stop() or end(). */
class FakeCapture {
  pulls = 0;
  stopped = false;
  #queue: (Ev[] | Error | null)[] = [];
  #wake?: () => void;
  push(b: Ev[] | Error | null) {
    this.#queue.push(b);
    this.#wake?.();
  }
  stop() {
    this.stopped = true;
    this.push(null);
  }
  async *batches(): AsyncGenerator<Ev[]> {
    for (;;) {
      this.pulls++;
      while (this.#queue.length === 0) await new Promise<void>((r) => this.#wake = r);
      const b = this.#queue.shift()!;
      if (b === null) return;
      if (b instanceof Error) throw b;
      yield b;
    }
  }
}

const ev = (n: number) => ({ n }) as Ev;
const group = (...fakes: FakeCapture[]) => new CaptureGroup(fakes as unknown as Capture<Ev>[]);
const tick = () => new Promise((r) => setTimeout(r, 0));

Deno.test("capture group: batches of every capture in arrival order; ends when all have", async () => {
  const a = new FakeCapture(), b = new FakeCapture();
  const it = group(a, b).batches();
  a.push([ev(1)]);
  assert.deepEqual((await it.next()).value, [ev(1)]);
  b.push([ev(2)]);
  a.push([ev(3)]);
  assert.deepEqual((await it.next()).value, [ev(2)]);
  assert.deepEqual((await it.next()).value, [ev(3)]);
  a.push(null);
  b.push([ev(4)]);
  assert.deepEqual((await it.next()).value, [ev(4)]);
  b.push(null);
  assert.equal((await it.next()).done, true);
});

Deno.test("capture group: a capture is not pulled again before its batch is taken", async () => {
  const a = new FakeCapture(), quiet = new FakeCapture();
  const it = group(a, quiet).batches();
  for (let i = 0; i < 5; i++) a.push([ev(i)]);
  assert.deepEqual((await it.next()).value, [ev(0)]);
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(a.pulls, 2, "the next batch waits for the reader; the ring buffer holds the rest");
  assert.deepEqual((await it.next()).value, [ev(1)]);
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(a.pulls, 3);
  await it.return(undefined);
  assert.ok(a.stopped && quiet.stopped, "an early return stops every capture");
});

Deno.test("capture group: a capture's failure reaches the reader", async () => {
  const a = new FakeCapture(), b = new FakeCapture();
  const it = group(a, b).batches();
  a.push(new Error("ring gone"));
  await assert.rejects(it.next(), /ring gone/);
  assert.ok(b.stopped);
});

Deno.test("capture group: many batches past a quiet capture, all delivered", async () => {
  // the quiet one never yields: a reaction per batch left on its pending
  // next() (Promise.race) kept every batch alive until it did
  const busy = new FakeCapture(), quiet = new FakeCapture();
  const it = group(busy, quiet).batches();
  let sum = 0;
  for (let i = 0; i < 10_000; i++) {
    busy.push([ev(i)]);
    sum += (await it.next()).value![0].n;
  }
  assert.equal(sum, (9999 * 10000) / 2);
  busy.push(null);
  quiet.push(null);
  assert.equal((await it.next()).done, true);
});
