/**
 * Signals at any moment of a capture's life (loading, attaching, capturing,
 * draining, after it ended by itself, twice in a row) end ecap with exit 0,
 * its output whole, and nothing of it left in the kernel.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, loadedProgramIds, waitFor } from "./_helpers.ts";
import { mulberry32 } from "./_random.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

bpfTest(
  "signals at random moments of 100 captures: exit 0, output whole, kernel clean",
  async () => {
    const seed = Date.now() >>> 0;
    const random = mulberry32(seed);
    const before = await loadedProgramIds();
    const seen = {
      beforeEcap: 0,
      beforeCapturing: 0,
      loading: 0,
      capturing: 0,
      twice: 0,
      ended: 0,
    };
    for (let i = 0; i < 100; i++) {
      // some end by themselves, so that a signal may come while they drain
      const ends = random() < 0.3;
      const args = ["bash", "--json", ...(ends ? ["--duration", "0.2"] : [])];
      await using run = await EcapRun.start(args, { wait: false });
      await sleep(random() * 900); // deno starting, ecap parsing, loading, capturing

      const signal = random() < 0.5 ? "SIGINT" : "SIGTERM";
      const twice = random() < 0.3;
      const what = `run ${i} (seed ${seed}): ${signal}${twice ? " twice" : ""}${
        ends ? ", --duration" : ""
      }`;
      const capturing = run.stderr.includes("capturing");
      try {
        Deno.kill(run.pid, signal);
        if (twice) await sleep(random() * 50), Deno.kill(run.pid, signal);
      } catch { /* it had ended by itself */ }
      const code = await run.wait(20_000);
      if (code === (signal === "SIGINT" ? 130 : 143)) {
        // the signal's default action, before ecap's first line ran: it had done nothing
        assert.equal(run.stderr + run.stdout, "", `${what}: exit 130 after ecap began`);
        seen.beforeEcap++;
        continue;
      }
      assert.equal(code, 0, `${what}: ${run.stderr}`);
      if (run.stderr.includes("capturing")) {
        // everything read is written: the summary, and the closing stats record
        assert.match(run.stderr, /ecap: \d+ events, 0 lost\n$/, what);
        assert.ok(run.stats() !== undefined, `${what}: the stats record`);
      } else {
        assert.equal(run.stdout, "", `${what}: nothing written before the capture began`);
      }
      // the signal came while it loaded, yet it captured, stopped and wrote
      const loading = !capturing && run.stderr.includes("capturing");
      seen[capturing ? "capturing" : loading ? "loading" : "beforeCapturing"]++;
      if (twice) seen.twice++;
      if (ends) seen.ended++;
    }
    console.error(`signals: ${JSON.stringify(seen)}`);
    assert.ok(seen.loading > 0 && seen.capturing > 0, "signals came while loading and capturing");
    // the kernel frees a program after an RCU grace period, not at close
    await waitFor(
      async () => [...await loadedProgramIds()].every((id) => before.has(id)),
      "no program of ecap's left in the kernel",
      5_000,
    );
  },
);
