/**
 * Benchmark 4: time from launching `ecap MODULE` to its "capturing" line,
 * per module (the one-time build excluded: one warm-up launch first; a
 * module whose target is missing here is a MISS, not a row dropped), the
 * RSS of an idle `ecap tls`, and ecap's peak RSS during benchmark 1.
 * @module
 */
import { type BenchOptions, Ecap, exists, fmt, median, type Row, sleep } from "./_util.ts";

const LIBSSL = ["/usr/lib/x86_64-linux-gnu/libssl.so.3", "/usr/lib/aarch64-linux-gnu/libssl.so.3"];

/** Each command line timed, and the files one of which must exist for it to run. */
const MODULES: [string, string[]][] = [
  ["bash", ["/usr/bin/bash", "/bin/bash"]],
  ["zsh", ["/usr/bin/zsh", "/bin/zsh"]],
  // every TLS library family at once (the default), and OpenSSL alone
  ["tls", LIBSSL],
  ["tls --lib openssl", LIBSSL],
  ["gnutls", [
    "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
    "/usr/lib/aarch64-linux-gnu/libgnutls.so.30",
  ]],
  ["nss", ["/usr/lib/x86_64-linux-gnu/libnspr4.so", "/usr/lib/aarch64-linux-gnu/libnspr4.so"]],
  // no Go program needed: it starts watching execs for one
  ["gotls", ["/proc/self/exe"]],
  ["mysqld", ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]],
  ["postgres", ["/usr/lib/postgresql/15/bin/postgres", "/usr/lib/postgresql/16/bin/postgres"]],
];

/** How long a capture waits, untouched, before its idle RSS is read. */
const IDLE_MS = 3000;

/** VmRSS of a capture left idle: after its idle memory release (2 s). */
async function idleRssOf(e: Ecap): Promise<number> {
  await sleep(IDLE_MS);
  const m = /^VmRSS:\s*(\d+) kB$/m.exec(await Deno.readTextFile(`/proc/${e.pid}/status`));
  return m ? Number(m[1]) * 1024 : NaN;
}

export async function runStartup(o: BenchOptions, peakRss: number): Promise<Row[]> {
  const rows: Row[] = [];
  let idleRss = NaN;
  const reps = o.quick ? 1 : 5;
  for (const [mod, targets] of MODULES) {
    let found = false;
    for (const t of targets) if (await exists(t)) found = true;
    if (!found) {
      o.log(`  ${mod}: no target here`);
      rows.push({
        bench: "4 start-up",
        figure: `ecap ${mod}: launch to "capturing"`,
        value: `not run: none of ${targets.join(", ")}`,
        baseline: "-",
        ratio: "-",
        target: "<= 300 ms",
        pass: false,
      });
      continue;
    }
    const times: number[] = [];
    const failed: string[] = [];
    for (let i = 0; i <= reps; i++) {
      const e = await Ecap.start(mod.split(" "));
      // the default module of all: idle memory, once
      if (mod === "tls" && i === reps) idleRss = await idleRssOf(e);
      await e.finish().catch((err) => failed.push((err as Error).message.slice(0, 300)));
      if (i > 0) times.push(e.startupMs); // the first launch warms Deno's caches
    }
    const m = median(times);
    o.log(
      `  ${mod}: ${times.map((t) => fmt(t)).join(", ")} ms${failed.length ? `; ${failed[0]}` : ""}`,
    );
    rows.push({
      bench: "4 start-up",
      figure: `ecap ${mod}: launch to "capturing"`,
      value: failed.length ? `ecap failed (${failed.length} of ${reps + 1} runs)` : `${fmt(m)} ms`,
      baseline: `max ${fmt(Math.max(...times))} ms`,
      ratio: "-",
      target: "<= 300 ms",
      pass: failed.length === 0 && m <= 300,
    });
  }
  if (Number.isFinite(idleRss)) {
    rows.push({
      bench: "4 memory",
      figure: `ecap tls: RSS after ${IDLE_MS / 1000} s idle`,
      value: `${fmt(idleRss / 2 ** 20)} MiB`,
      baseline: "-",
      ratio: "-",
      target: "<= 60 MiB",
      pass: idleRss <= 60 * 2 ** 20,
    });
  }
  if (Number.isFinite(peakRss) && peakRss > 0) {
    rows.push({
      bench: "4 memory",
      figure: "ecap peak RSS (VmHWM) during benchmark 1",
      value: `${fmt(peakRss / 2 ** 20)} MiB`,
      baseline: "-",
      ratio: "-",
      target: "<= 100 MiB",
      pass: peakRss <= 100 * 2 ** 20,
    });
  }
  return rows;
}
