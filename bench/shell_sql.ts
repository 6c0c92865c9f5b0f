/**
 * Benchmark 5: shells and SQL. For bash, the latency from a command's
 * return to ecap's printed line (p50/p99): each command typed into an
 * interactive bash in tmux writes $EPOCHREALTIME as its last act, and the
 * event's arrival on ecap's stdout is stamped here. For PostgreSQL, the
 * throughput of `pgbench -S` under `ecap postgres`, against runs without it
 * interleaved with them.
 * @module
 */
import { Capture } from "../lib/core/capture.ts";
import type { EventBase, ModuleSpec } from "../lib/core/module_spec.ts";
import { postgres, type PostgresOptions } from "../lib/modules/postgres.ts";
import { PG_BIN, PgServer } from "../tests/_postgres.ts";
import {
  type BenchOptions,
  Ecap,
  emptyProbesOf,
  exists,
  fmt,
  median,
  percentile,
  ratioText,
  type Row,
  sh,
  sleep,
} from "./_util.ts";

async function bashLatency(o: BenchOptions): Promise<Row[]> {
  const bash = "/usr/bin/bash";
  const n = o.quick ? 10 : 100;
  const stamps = `${o.tmp}/stamps`;
  const session = `ecap-bench-${Deno.pid}`;
  const tmux = (args: string[]) => sh("tmux", ["-L", session, ...args], { allowFail: true });
  const arrivals = new Map<number, number>();
  const ecap = await Ecap.start(["bash", "--bash", bash, "--json"], { keepStdout: false });
  let carry = "";
  ecap.onStdout = (t, at) => {
    const lines = (carry + t).split("\n");
    carry = lines.pop()!;
    for (const l of lines) {
      const m = /#ecapbench_(\d+)/.exec(l);
      if (m) arrivals.set(Number(m[1]), performance.timeOrigin + at);
    }
  };
  try {
    const r = await tmux([
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "200",
      "-y",
      "50",
      `env -i TERM=xterm PS1='$ ' HOME=/tmp ${bash} --norc -i`,
    ]);
    if (r.code !== 0) throw new Error(`tmux: ${r.stderr}`);
    await sleep(300);
    for (let i = 1; i <= n; i++) {
      await tmux([
        "send-keys",
        "-t",
        session,
        "-l",
        `echo $EPOCHREALTIME >> ${stamps} #ecapbench_${i}`,
      ]);
      await tmux(["send-keys", "-t", session, "Enter"]);
      const end = performance.now() + 3000;
      while (!arrivals.has(i) && performance.now() < end) await sleep(2);
    }
  } finally {
    await tmux(["kill-server"]);
  }
  try {
    await ecap.finish();
  } finally {
    await ecap.stop("SIGKILL");
  }
  const returned = (await Deno.readTextFile(stamps).catch(() => "")).trim().split("\n").map((l) =>
    Number(l) * 1000
  );
  const lat: number[] = [];
  for (let i = 1; i <= n; i++) {
    const a = arrivals.get(i), b = returned[i - 1];
    if (a !== undefined && Number.isFinite(b)) lat.push(a - b);
  }
  o.log(
    `  bash: ${lat.length}/${n} commands seen; latency ms p50 ${fmt(percentile(lat, 50))} p99 ${
      fmt(percentile(lat, 99))
    } max ${fmt(Math.max(...lat))}`,
  );
  return [
    {
      bench: "5 bash",
      figure: "command return -> printed line, p50 / p99",
      value: `${fmt(percentile(lat, 50))} / ${fmt(percentile(lat, 99))} ms`,
      baseline: "-",
      ratio: "-",
      target: "-",
    },
    {
      bench: "5 bash",
      figure: "commands captured",
      value: `${lat.length}`,
      baseline: `${n} typed`,
      ratio: ratioText(lat.length / n),
      target: "= 1.000",
      pass: lat.length === n,
    },
  ];
}

/** The postgres module's hooks with empty handlers: what the traps alone cost. */
const emptyPostgres = emptyProbesOf(postgres as ModuleSpec<PostgresOptions, EventBase>);

async function pgbench(o: BenchOptions): Promise<Row[]> {
  if (!await exists(`${PG_BIN}/postgres`)) {
    o.log("  postgres: PostgreSQL 15 not installed, skipped");
    return [];
  }
  const seconds = o.quick ? 1 : 5;
  const reps = o.quick ? 1 : 3;
  await using pg = await PgServer.start();
  const ci = Object.fromEntries(pg.conninfo.split(" ").map((kv) => kv.split("=")));
  const conn = ["-h", ci.host, "-p", ci.port, "-U", ci.user];
  await sh(`${PG_BIN}/pgbench`, ["-i", "-q", "-s", "1", ...conn, ci.dbname]);
  const run = async () => {
    const r = await sh(`${PG_BIN}/pgbench`, [
      "-S",
      "-n",
      "-c",
      "2",
      "-j",
      "2",
      "-T",
      String(seconds),
      ...conn,
      ci.dbname,
    ]);
    const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
    const tx = Number(
      /number of transactions actually processed: (\d+)/.exec(r.stdout)?.[1] ?? NaN,
    );
    return { tps, tx };
  };
  await run(); // warm the buffer cache
  const ratios: number[] = [], base: number[] = [], withEcap: number[] = [];
  let lost = 0, events = 0, tx = 0;
  const out = `/dev/shm/ecap-bench-${Deno.pid}-pg`;
  const emptyRatios: number[] = [], withEmpty: number[] = [];
  for (let rep = 0; rep < reps; rep++) {
    const a = await run();
    // the physical limit: ecap's hooks with empty handlers
    const empty = await Capture.start(emptyPostgres, {});
    let c;
    try {
      c = await run();
    } finally {
      await empty[Symbol.asyncDispose]();
    }
    withEmpty.push(c.tps);
    await Deno.remove(out).catch(() => {});
    const e = await Ecap.start(["postgres", "-o", out]);
    let b, s;
    try {
      b = await run();
      s = await e.finish();
    } finally {
      await e.stop("SIGKILL");
      await Deno.remove(out).catch(() => {});
    }
    lost += s.lost;
    events += s.events;
    tx += b.tx;
    base.push(a.tps);
    withEcap.push(b.tps);
    ratios.push(b.tps / a.tps);
    emptyRatios.push(b.tps / c.tps);
    o.log(
      `  pgbench -S rep ${rep + 1}: ${fmt(a.tps)} tps without, ${fmt(c.tps)} with empty ` +
        `probes, ${fmt(b.tps)} with ecap (${s?.events} events for ${b.tx} transactions, ` +
        `${s?.lost} lost)`,
    );
  }
  const r = median(ratios);
  return [
    {
      bench: "5 postgres",
      figure: "pgbench -S -c2 with empty probes on ecap's hooks vs without",
      value: `${fmt(median(withEmpty))} tps`,
      baseline: `${fmt(median(base))} tps`,
      ratio: ratioText(median(withEmpty.map((t, i) => t / base[i]))),
      target: "-",
    },
    {
      bench: "5 postgres",
      figure: "pgbench -S -c2 with ecap postgres vs empty probes",
      value: `${fmt(median(withEcap))} tps`,
      baseline: `${fmt(median(withEmpty))} tps`,
      ratio: ratioText(median(emptyRatios)),
      // what ecap adds over the traps it cannot avoid (issue 17's target)
      target: ">= 0.9",
      pass: median(emptyRatios) >= 0.9,
    },
    {
      bench: "5 postgres",
      figure: "pgbench -S -c2 with ecap postgres vs without",
      value: `${fmt(median(withEcap))} tps`,
      baseline: `${fmt(median(base))} tps`,
      ratio: ratioText(r),
      target: "-",
    },
    {
      bench: "5 postgres",
      figure: "ecap postgres: events, lost",
      value: `${events} events, ${lost} lost`,
      baseline: `${tx} transactions`,
      ratio: ratioText(events / tx),
      target: "0 lost",
      pass: lost === 0,
    },
  ];
}

export async function runShellSql(o: BenchOptions): Promise<Row[]> {
  return [...await bashLatency(o), ...await pgbench(o)];
}
