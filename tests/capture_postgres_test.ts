/**
 * The postgres module against a real PostgreSQL 15 server (tests/_postgres.ts)
 * queried with psql (simple protocol), pgbench and psycopg 3 (extended).
 * Events are filtered by the test's own database: other tests run alongside.
 * @module
 */
import assert from "node:assert/strict";
import { parseTitle } from "../lib/modules/postgres.ts";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { PG_SERVER, PgServer } from "./_postgres.ts";

type Json = Record<string, unknown>;

/** Bytes of text kept at most: TEXT_CHUNKS records of TEXT_CHUNK - 1 bytes. */
const TEXT_CAP = 128 * 8191;

const postgresUid = Number((await sh("id", ["-u", "postgres"])).stdout.trim());

function eventsOf(run: EcapRun, pg: PgServer): Json[] {
  return run.json().filter((e) => e.module === "postgres" && e.database === pg.database);
}

/** Runs a marker query and waits until ecap reported it: all before it was seen. */
async function mark(run: EcapRun, pg: PgServer, marker: string) {
  const r = await pg.psql(pg.user, pg.database, [`SELECT '${marker}'`]);
  assert.equal(r.code, 0, r.stderr);
  await waitFor(() => run.stdout.includes(marker), `"${marker}" in ecap's output`);
}

bpfTest("ecap postgres captures psql statements with text, user, duration and result", async () => {
  await using pg = await PgServer.start();
  // no --postgres: the running server is found
  await using run = await EcapRun.start(["postgres", "--json"]);
  assert.match(run.stderr, new RegExp(`probing the running server .*${PG_SERVER}`));
  const big = `SELECT '${"0123456789".repeat(10_240)}' AS big`; // 100 KB
  const utf8 = "SELECT 'héllo wörld ✓ 日本語' AS t;\nSELECT 2";
  const r = await pg.psql(pg.user, pg.database, [
    "SELECT 1 AS one",
    "SELECT * FROM no_such_table",
    "SELECT pg_sleep(0.2)",
    big,
    "SELEC syntax error",
    utf8,
  ]);
  assert.match(r.stderr, /relation "no_such_table" does not exist/);
  await mark(run, pg, "ecap-marker-1");
  assert.equal(await run.stop(), 0);

  const ev = eventsOf(run, pg);
  assert.deepEqual(ev.map((e) => [e.query, e.result, e.truncated]), [
    ["SELECT 1 AS one", "ok", false],
    ["SELECT * FROM no_such_table", "error", false],
    ["SELECT pg_sleep(0.2)", "ok", false],
    [big, "ok", false],
    ["SELEC syntax error", "error", false],
    [utf8, "ok", false],
    ["SELECT 'ecap-marker-1'", "ok", false],
  ]);
  const backend = ev[0].pid as number;
  for (const e of ev.slice(0, 6)) {
    assert.deepEqual([e.pid, e.tid, e.uid, e.comm, e.user, e.database], [
      backend,
      backend,
      postgresUid,
      "postgres",
      pg.user,
      pg.database,
    ]);
  }
  const sleep = ev[2].durationUs as number;
  assert.ok(sleep >= 200_000 && sleep <= 400_000, `pg_sleep(0.2) took ${sleep} µs`);
  assert.ok((ev[0].durationUs as number) < 200_000);
  assert.match(String(ev[0].time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  // an event's time is when the statement started: the sleep ends before the next starts
  const t = (e: Json) => Date.parse(String(e.time));
  assert.ok(t(ev[3]) - t(ev[2]) >= 199, "the next statement starts after the sleep");
  assert.match(run.stderr, /events, 0 lost/);
});

bpfTest("ecap postgres captures the extended protocol: pgbench and psycopg 3", async () => {
  await using pg = await PgServer.start();
  await using run = await EcapRun.start(["postgres", "--json", "--postgres", PG_SERVER]);
  // Parse/Bind/Execute/Sync per statement
  const ext = await pg.pgbench("SELECT 42 AS answer;\n", "extended", 3);
  assert.equal(ext.code, 0, ext.stderr);
  // parsed once per connection, then Bind/Execute only
  const prep = await pg.pgbench("\\set n 7\nSELECT :n::int * 6;\n", "prepared", 3);
  assert.equal(prep.code, 0, prep.stderr);
  const py = await pg.python(`
import os, psycopg
with psycopg.connect(os.environ["CONNINFO"], autocommit=True) as c:
    for i in range(3):
        c.execute("SELECT %s::int + 1", (i,), prepare=True).fetchone()
    try:
        c.execute("SELECT 1 / %s::int", (0,), prepare=True)
    except psycopg.errors.DivisionByZero:
        pass
    with c.pipeline():
        c.execute("SELECT 'p1'")
        c.execute("SELECT %s::text", ("p2",))
        c.execute("SELECT 'p3'")
`);
  assert.equal(py.code, 0, py.stderr);
  await mark(run, pg, "ecap-marker-2");
  await run.stop();

  const ev = eventsOf(run, pg);
  assert.deepEqual(ev.map((e) => [e.query, e.result]), [
    ["SELECT 42 AS answer;", "ok"],
    ["SELECT 42 AS answer;", "ok"],
    ["SELECT 42 AS answer;", "ok"],
    ["SELECT $1::int * 6;", "ok"],
    ["SELECT $1::int * 6;", "ok"],
    ["SELECT $1::int * 6;", "ok"],
    ["SELECT $1::int + 1", "ok"],
    ["SELECT $1::int + 1", "ok"],
    ["SELECT $1::int + 1", "ok"],
    ["SELECT 1 / $1::int", "error"],
    ["SELECT 'p1'", "ok"],
    ["SELECT $1::text", "ok"],
    ["SELECT 'p3'", "ok"],
    ["SELECT 'ecap-marker-2'", "ok"],
  ]);
  assert.ok(ev.every((e) => e.user === pg.user && e.comm === "postgres"));
  // three connections: pgbench twice, psycopg once
  assert.equal(new Set(ev.slice(0, 13).map((e) => e.pid)).size, 3);
});

bpfTest("ecap postgres cuts text at 1 MiB and fails a backend killed mid-statement", async () => {
  await using pg = await PgServer.start();
  await using run = await EcapRun.start(["postgres", "--json", "--postgres", PG_SERVER]);
  const py = await pg.python(`
import os, psycopg
with psycopg.connect(os.environ["CONNINFO"], autocommit=True) as c:
    print(c.execute("SELECT length('" + "y" * 1200000 + "')").fetchone()[0])
`);
  assert.equal(py.stdout.trim(), "1200000", py.stderr);
  const victim = pg.psql(pg.user, pg.database, ["SELECT pg_sleep(30) /* victim */"]);
  try {
    await waitFor(async () => {
      const r = await pg.psql(pg.user, pg.database, [
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity " +
        "WHERE query = 'SELECT pg_sleep(30) /* victim */'",
      ]);
      return r.stdout.includes(" t");
    }, "the victim to be terminated");
  } finally {
    await victim;
  }
  await mark(run, pg, "ecap-marker-3");
  // the killed backend's exit may be seen after the marker: wait for it too
  // (its own text: the pg_terminate_backend query names it as well)
  await waitFor(
    () => eventsOf(run, pg).some((e) => e.query === "SELECT pg_sleep(30) /* victim */"),
    "the victim's event",
  );
  await run.stop();

  const ev = eventsOf(run, pg)
    .filter((e) => !String(e.query).includes("pg_terminate_backend"))
    .sort((a, b) => String(a.time).localeCompare(String(b.time)));
  assert.match(run.stderr, /ecap: \d+ events, 0 lost/);
  const seen = run.json().map((e) =>
    `${e.pid} ${e.database} ${e.result} ${String(e.query).slice(0, 40)}`
  );
  assert.equal(ev.length, 3, `all events:\n${seen.join("\n")}\n${run.stderr}`);
  const long = String(ev[0].query);
  assert.equal(long.length, TEXT_CAP);
  assert.equal(long, `SELECT length('${"y".repeat(TEXT_CAP - 15)}`);
  assert.deepEqual([ev[0].truncated, ev[0].result], [true, "ok"]);
  assert.deepEqual([ev[1].query, ev[1].result], ["SELECT pg_sleep(30) /* victim */", "error"]);
  assert.ok((ev[1].durationUs as number) < 30_000_000);
  assert.equal(ev[2].query, "SELECT 'ecap-marker-3'");
});

bpfTest("ecap postgres text output shows time, pid, user, db, duration and result", async () => {
  await using pg = await PgServer.start();
  await using run = await EcapRun.start(["postgres", "--postgres", PG_SERVER]);
  await pg.psql(pg.user, pg.database, ["SELECT 1 / 0"]);
  await waitFor(() => run.stdout.includes("SELECT 1 / 0"), "the statement");
  await run.stop();
  assert.match(
    run.stdout,
    new RegExp(
      `\\d\\d:\\d\\d:\\d\\d\\.\\d{3} pid=\\d+ user=${pg.user} db=${pg.database} ` +
        `\\d+\\.\\d{3} ms error\\n    SELECT 1 / 0\\n`,
    ),
  );
});

bpfTest("ecap postgres --postgres to a file that is no server fails in one line", async () => {
  await using run = await EcapRun.start(["postgres", "--postgres", "/usr/bin/true"], {
    wait: false,
  });
  assert.equal(await run.wait(), 5);
  assert.equal(
    run.stderr,
    'ecap: Cannot capture postgres: "/usr/bin/true" defines none of pgstat_report_activity ' +
      "(pass --postgres with another postgres binary)\n",
  );
  await using missing = await EcapRun.start(["postgres", "--postgres", "/nonexistent/postgres"], {
    wait: false,
  });
  assert.equal(await missing.wait(), 4);
  assert.equal(
    missing.stderr,
    'ecap: postgres "/nonexistent/postgres" not found ' +
      "(pass --postgres with the path of a postgres server binary)\n",
  );
});

Deno.test("parseTitle reads the user and database of a backend's process title", () => {
  assert.deepEqual(parseTitle("postgres: alice shop [local] SELECT"), {
    user: "alice",
    database: "shop",
  });
  assert.deepEqual(parseTitle("postgres: 15/main: bob db1 127.0.0.1(54321) idle"), {
    user: "bob",
    database: "db1",
  });
  assert.deepEqual(parseTitle("postgres: carol db2 [local]"), { user: "carol", database: "db2" });
  assert.equal(parseTitle("postgres: checkpointer "), undefined);
  assert.equal(parseTitle("postgres: logical replication launcher"), undefined);
});

bpfTest("ecap postgres probes a server started after it from another binary", async () => {
  await using run = await EcapRun.start(["postgres", "--json", "--debug"]);
  await using pg = await PgServer.start({ copy: true });
  const inode = (await Deno.stat(`${pg.dir}/usr/lib/postgresql/15/bin/postgres`)).ino!;
  await mark(run, pg, "ecap-late-server");
  assert.equal(await run.stop(), 0);
  const ev = eventsOf(run, pg);
  assert.deepEqual(ev.map((e) => [e.query, e.result]), [["SELECT 'ecap-late-server'", "ok"]]);
  assert.match(run.stderr, new RegExp(`attach \\S+ \\(inode ${inode}, postgres\\)`));
});
