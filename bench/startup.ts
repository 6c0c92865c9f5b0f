/**
 * Benchmark 4: time from launching `ecap MODULE` to its "capturing" line,
 * per module whose target exists here (the one-time build excluded: one
 * warm-up launch first), and ecap's peak RSS during benchmark 1.
 * @module
 */
import { type BenchOptions, Ecap, exists, fmt, median, type Row } from "./_util.ts";

const LIBSSL = ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/aarch64-linux-gnu/libssl.so.3"];

/** Each command line timed, and the files one of which must exist for it to run. */
const MODULES: [string, string[]][] = [
  ["bash", ["/usr/bin/bash", "/bin/bash"]],
  ["zsh", ["/usr/bin/zsh", "/bin/zsh"]],
  // every TLS library family at once (the default), and OpenSSL alone
  ["tls", LIBSSL],
  ["tls --lib openssl", LIBSSL],
  ["mysqld", ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]],
  ["postgres", ["/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/16/bin/postgres"]],
];

export async function runStartup(o: BenchOptions, peakRss: number): Promise<Row[]> {
  const rows: Row[] = [];
  const reps = o.quick ? 1 : 5;
  for (const [mod, targets] of MODULES) {
    let found = false;
    for (const t of targets) if (await exists(t)) found = true;
    if (!found) {
      o.log(`  ${mod}: no target here, skipped`);
      continue;
    }
    const times: number[] = [];
    for (let i = 0; i <= reps; i++) {
      const e = await Ecap.start(mod.split(" "));
      await e.stop();
      if (i > 0) times.push(e.startupMs); // the first launch warms Deno's caches
    }
    const m = median(times);
    o.log(`  ${mod}: ${times.map((t) => fmt(t)).join(", ")} ms`);
    rows.push({
      bench: "4 start-up",
      figure: `ecap ${mod}: launch to "capturing"`,
      value: `${fmt(m)} ms`,
      baseline: `max ${fmt(Math.max(...times))} ms`,
      ratio: "-",
      target: "<= 300 ms",
      pass: m <= 300,
    });
  }
  if (Number.isFinite(peakRss) && peakRss > 0) {
    rows.push({
      bench: "4 memory",
      figure: "ecap peak RSS (VmHWM) during benchmark 1",
      value: `${fmt(peakRss / 2 ** 20)} MiB`,
      baseline: "-",
      ratio: "-",
      target: "<= 80 MB",
      pass: peakRss <= 80e6,
    });
  }
  return rows;
}
