import assert from "node:assert/strict";
import { OutputSink } from "../../lib/core/output_sink.ts";

/** A writer taking at most `most` bytes a call, as a pipe may. */
function collector(most: number) {
  const parts: Uint8Array[] = [];
  return {
    parts,
    writeSync(p: Uint8Array) {
      const n = Math.min(p.length, most);
      parts.push(p.slice(0, n));
      return n;
    },
    bytes() {
      const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
      let at = 0;
      for (const p of parts) out.set(p, at), at += p.length;
      return out;
    },
  };
}

Deno.test("output sink: a batch larger than its buffer, multi-byte text cut anywhere, arrives whole", () => {
  // 3-byte and 4-byte characters across every 1 MiB boundary the encoder meets
  const text = "€ a 🎉 ".repeat(600_000) + "end\n";
  const w = collector(100_000);
  const sink = new OutputSink(w);
  assert.equal(sink.write(text), true);
  assert.equal(sink.write("next\n"), true);
  assert.deepEqual(w.bytes(), new TextEncoder().encode(text + "next\n"));
  assert.ok(Math.max(...w.parts.map((p) => p.length)) <= 100_000);
});

Deno.test("output sink: a reader gone ends writing quietly", () => {
  const sink = new OutputSink({
    writeSync() {
      throw new Deno.errors.BrokenPipe("gone");
    },
  });
  assert.equal(sink.write("x\n"), false);
  assert.equal(sink.closed, true);
  assert.equal(sink.write("y\n"), false);
});
