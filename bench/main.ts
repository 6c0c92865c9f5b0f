/**
 * ecap's benchmarks: every speed claim, measured against a baseline taken
 * in the same run, printed as a table, checked against its target.
 *
 *   deno task bench              # all of it, about 16 minutes; exit 1 if a target is missed
 *   deno run -A bench/main.ts --quick [--only tls,percall,ring,decode,startup,shell,mixed,soak]
 *
 * --quick is a smoke run of a few seconds per benchmark: targets are shown,
 * not enforced. Needs root, nginx, wrk, gcc and (for the peer) bpftrace.
 * @module
 */
import { parseArgs } from "node:util";
import { type BenchOptions, ROOT, type Row } from "./_util.ts";
import { runTls } from "./tls.ts";
import { runPerCall } from "./percall.ts";
import { runRing } from "./ring.ts";
import { runDecode } from "./decode.ts";
import { runStartup } from "./startup.ts";
import { runShellSql } from "./shell_sql.ts";
import { runMixed } from "./mixed.ts";
import { runSoak } from "./soak.ts";

const BENCHES = ["tls", "percall", "ring", "decode", "startup", "shell", "mixed", "soak"] as const;

const { values } = parseArgs({
  options: { quick: { type: "boolean" }, only: { type: "string" }, help: { type: "boolean" } },
});
if (values.help) {
  console.log("deno run -A bench/main.ts [--quick] [--only " + BENCHES.join(",") + "]");
  Deno.exit(0);
}
const only = values.only ? values.only.split(",") : [...BENCHES];
for (const b of only) {
  if (!(BENCHES as readonly string[]).includes(b)) {
    console.error(`bench: unknown benchmark "${b}" (${BENCHES.join(", ")})`);
    Deno.exit(2);
  }
}
if (Deno.uid() !== 0) {
  console.error("bench: must run as root (BPF programs are loaded)");
  Deno.exit(3);
}

const quick = values.quick === true;
const started = performance.now();
const elapsed = () => ((performance.now() - started) / 1000).toFixed(1).padStart(6);
const tmp = await Deno.makeTempDir({ prefix: "ecap-bench-" });
await Deno.chmod(tmp, 0o755);
const opts: BenchOptions = {
  quick,
  tmp,
  log: (line) => console.error(`[${elapsed()} s] ${line}`),
};
const rows: Row[] = [];
const failures: string[] = [];

async function section(name: string, fn: () => Promise<Row[]>) {
  if (!only.includes(name)) return;
  opts.log(`== ${name}`);
  try {
    rows.push(...await fn());
  } catch (e) {
    const msg = (e as Error)?.stack ?? String(e);
    opts.log(`${name} failed: ${msg}`);
    failures.push(name);
    rows.push({
      bench: name,
      figure: "benchmark ran",
      value: "error",
      baseline: "-",
      ratio: "-",
      target: "runs",
      pass: false,
    });
  }
}

let peakRss = NaN;
try {
  opts.log(`ecap bench${quick ? " --quick" : ""} in ${ROOT}; scratch ${tmp}`);
  await section("tls", async () => {
    const r = await runTls(opts);
    peakRss = r.rss;
    return r.rows;
  });
  await section("percall", () => runPerCall(opts));
  await section("ring", () => runRing(opts));
  await section("decode", () => runDecode(opts));
  await section("startup", () => runStartup(opts, peakRss));
  await section("shell", () => runShellSql(opts));
  await section("mixed", () => runMixed(opts));
  await section("soak", () => runSoak(opts));
} finally {
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}

// The table
const head: Row = {
  bench: "benchmark",
  figure: "figure",
  value: "value",
  baseline: "baseline",
  ratio: "ratio",
  target: "target",
};
const verdict = (r: Row) => r.pass === undefined ? "-" : r.pass ? "PASS" : "MISS";
const cols = [
  (r: Row) => r.bench,
  (r: Row) => r.figure,
  (r: Row) => r.value,
  (r: Row) => r.baseline,
  (r: Row) => r.ratio,
  (r: Row) => r.target,
  (r: Row) => (r === head ? "result" : verdict(r)),
];
const widths = cols.map((c) => Math.max(...[head, ...rows].map((r) => c(r).length)));
const line = (r: Row) => cols.map((c, i) => c(r).padEnd(widths[i])).join("  ").trimEnd();
console.log();
console.log(line(head));
console.log(widths.map((w) => "-".repeat(w)).join("  "));
for (const r of rows) console.log(line(r));
const missed = rows.filter((r) => r.pass === false);
console.log();
console.log(
  `${rows.filter((r) => r.pass === true).length} PASS, ${missed.length} MISS` +
    `${
      failures.length ? ` (failed to run: ${failures.join(", ")})` : ""
    } in ${elapsed().trim()} s` +
    (quick ? "; --quick: targets not enforced" : ""),
);
Deno.exit(!quick && missed.length > 0 ? 1 : failures.length > 0 ? 1 : 0);
