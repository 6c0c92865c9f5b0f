/**
 * The mysqld module against a real MariaDB server of the test's own,
 * queried with the `mariadb` client, with PyMySQL, and with prepared
 * statements through Debian's libmariadb (Python ctypes).
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { MariaDb, run } from "./_mariadb.ts";
import { decodeThdIdLoad } from "../lib/modules/mysqld.ts";
import { EM_AARCH64, EM_X86_64 } from "../lib/binary/elf.ts";

type Json = Record<string, unknown>;

const PYTHON = "/usr/bin/python3"; // Debian's, which sees python3-pymysql
const CAP = 1 << 20; // the documented cap on a query's text

/** Events of our server's connection `conn`. */
function ofConn(r: EcapRun, db: MariaDb, conn: number): Json[] {
  return r.json().filter((e) => e.module === "mysqld" && e.pid === db.pid && e.conn === conn);
}

/** Runs a marker query and waits until ecap printed it: everything before is out. */
async function sync(r: EcapRun, db: MariaDb, marker: string) {
  await db.sql(`SELECT '${marker}'`);
  await waitFor(() => r.stdout.includes(marker), `"${marker}" in ecap's output`);
}

/** Runs a Python program under Debian's python3; returns its stdout. */
async function python(program: string, ...args: string[]): Promise<string> {
  const r = await run(PYTHON, ["-c", program, ...args]);
  if (r.code !== 0) throw new Error(`python3 failed: ${r.stderr}`);
  return r.stdout;
}

bpfTest("ecap mysqld reports mariadb client queries: text, conn, result, duration", async () => {
  await using db = await MariaDb.start();
  // no --mysqld: the server is found from the pid's /proc entry
  await using r = await EcapRun.start(["mysqld", "--json", "-p", String(db.pid)]);
  assert.match(r.stderr, /\/usr\/sbin\/mariadbd: MariaDB.* conn is the connection id/);
  const queries = [
    "SELECT CONNECTION_ID()",
    "SELECT 1 + 1 AS two",
    "SELECT 'héllo wörld ✓ 日本語' AS t",
    "SELECT 1,\n  2",
    "SELECT * FROM mysql.no_such_table",
    "SELECT SLEEP(0.2)",
  ];
  const out = await db.client(["--force"], queries.map((q) => `${q};\n`).join(""));
  assert.match(out.stderr, /ERROR 1146 .*no_such_table. doesn.t exist/);
  const conn = Number(out.stdout.split("\n")[0]);
  assert.ok(conn > 0, `CONNECTION_ID() printed ${out.stdout}`);
  await sync(r, db, "ecap-marker-1");
  assert.equal(await r.stop(), 0);

  const ev = ofConn(r, db, conn);
  assert.deepEqual(ev.map((e) => [e.command, e.query, e.result, e.truncated]), [
    ["query", "SELECT CONNECTION_ID()", "ok", false],
    ["query", "SELECT 1 + 1 AS two", "ok", false],
    ["query", "SELECT 'héllo wörld ✓ 日本語' AS t", "ok", false],
    ["query", "SELECT 1,\n  2", "ok", false],
    ["query", "SELECT * FROM mysql.no_such_table", "error", false],
    ["query", "SELECT SLEEP(0.2)", "ok", false],
  ]);
  const sleep = ev[5].durationUs as number;
  assert.ok(sleep >= 200_000 && sleep <= 400_000, `SLEEP(0.2) took ${sleep} µs`);
  assert.ok((ev[1].durationUs as number) < 200_000);
  for (const e of ev) {
    assert.equal(e.comm, "mariadbd");
    assert.equal(e.retval, 0);
    assert.equal(e.tid, ev[0].tid); // one thread serves the connection
    assert.match(String(e.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  }
  // time is when each started: in order, and the marker started after SLEEP's 200 ms
  const starts = ev.map((e) => String(e.time));
  assert.deepEqual([...starts].sort(), starts);
  const marker = r.json().find((e) => e.query === "SELECT 'ecap-marker-1'")!;
  assert.ok(Date.parse(String(marker.time)) - Date.parse(starts[5]) >= 200);
  assert.match(r.stderr, /ecap: \d+ events, 0 lost/);
});

bpfTest("ecap mysqld reports PyMySQL queries with exact text and failures", async () => {
  await using db = await MariaDb.start();
  await using r = await EcapRun.start([
    "mysqld",
    "--json",
    "--mysqld",
    "/usr/sbin/mariadbd",
    "-p",
    String(db.pid),
  ]);
  const out = await python(
    `
import sys, pymysql
c = pymysql.connect(unix_socket=sys.argv[1], user="root", autocommit=True)
cur = c.cursor()
cur.execute("SELECT CONNECTION_ID()")
print(cur.fetchone()[0])
cur.execute("SELECT %s + %s, %s", (2, 3, "it's"))
try:
    cur.execute("SELEC 1")
except pymysql.err.ProgrammingError as e:
    print("error", e.args[0])
cur.execute("SELECT SLEEP(0.2)")
c.close()
`,
    db.socket,
  );
  const [connLine, errLine] = out.trim().split("\n");
  assert.equal(errLine, "error 1064");
  await sync(r, db, "ecap-marker-2");
  await r.stop();
  const ev = ofConn(r, db, Number(connLine));
  assert.deepEqual(ev.map((e) => [e.command, e.query, e.result]), [
    ["query", "SELECT CONNECTION_ID()", "ok"],
    ["query", "SELECT 2 + 3, 'it\\'s'", "ok"],
    ["query", "SELEC 1", "error"],
    ["query", "SELECT SLEEP(0.2)", "ok"],
  ]);
  const sleep = ev[3].durationUs as number;
  assert.ok(sleep >= 200_000 && sleep <= 400_000, `SLEEP(0.2) took ${sleep} µs`);
});

bpfTest("ecap mysqld reports prepared statements: prepare and execute, ok and failed", async () => {
  await using db = await MariaDb.start();
  await db.sql("CREATE DATABASE ecap; CREATE TABLE ecap.t (id INT PRIMARY KEY)");
  await using r = await EcapRun.start(["mysqld", "--json", "-p", String(db.pid)]);
  // the binary protocol, through Debian's C client library
  const out = await python(
    `
import sys, ctypes
from ctypes import c_void_p, c_char_p, c_uint, c_ulong, c_int
lib = ctypes.CDLL("libmariadb.so.3")
lib.mysql_init.restype = c_void_p
lib.mysql_init.argtypes = [c_void_p]
lib.mysql_real_connect.restype = c_void_p
lib.mysql_real_connect.argtypes = [c_void_p, c_char_p, c_char_p, c_char_p, c_char_p, c_uint,
                                   c_char_p, c_ulong]
lib.mysql_thread_id.restype = c_ulong
lib.mysql_thread_id.argtypes = [c_void_p]
lib.mysql_stmt_init.restype = c_void_p
lib.mysql_stmt_init.argtypes = [c_void_p]
for f in ("mysql_stmt_execute", "mysql_stmt_store_result", "mysql_stmt_close", "mysql_stmt_errno"):
    getattr(lib, f).argtypes = [c_void_p]
lib.mysql_stmt_prepare.argtypes = [c_void_p, c_char_p, c_ulong]
m = lib.mysql_init(None)
if not lib.mysql_real_connect(m, None, b"root", None, None, 0, sys.argv[1].encode(), 0):
    sys.exit("connect failed")
print(lib.mysql_thread_id(m))
def prepare(q):
    s = lib.mysql_stmt_init(m)
    return s, lib.mysql_stmt_prepare(s, q, len(q))
s, rc = prepare(b"SELECT 40 + 2 AS answer")
assert rc == 0
assert lib.mysql_stmt_execute(s) == 0
lib.mysql_stmt_store_result(s)
lib.mysql_stmt_close(s)
s, rc = prepare(b"SELEC nothing")
print("prepare", rc, lib.mysql_stmt_errno(s))
lib.mysql_stmt_close(s)
s, rc = prepare(b"INSERT INTO ecap.t VALUES (1)")
assert rc == 0
print("execute", lib.mysql_stmt_execute(s), lib.mysql_stmt_execute(s), lib.mysql_stmt_errno(s))
lib.mysql_stmt_close(s)
lib.mysql_close(m)
`,
    db.socket,
  );
  const lines = out.trim().split("\n");
  assert.deepEqual(lines.slice(1), ["prepare 1 1064", "execute 0 1 1062"]);
  await sync(r, db, "ecap-marker-3");
  await r.stop();
  const ev = ofConn(r, db, Number(lines[0]));
  assert.deepEqual(ev.map((e) => [e.command, e.query, e.result]), [
    ["prepare", "SELECT 40 + 2 AS answer", "ok"],
    ["execute", "SELECT 40 + 2 AS answer", "ok"],
    ["prepare", "SELEC nothing", "error"],
    ["prepare", "INSERT INTO ecap.t VALUES (1)", "ok"],
    ["execute", "INSERT INTO ecap.t VALUES (1)", "ok"],
    ["execute", "INSERT INTO ecap.t VALUES (1)", "error"],
  ]);
});

bpfTest("ecap mysqld captures a 100 KB query whole and cuts one past 1 MiB, marked", async () => {
  await using db = await MariaDb.start();
  await using r = await EcapRun.start(["mysqld", "--json", "-p", String(db.pid)]);
  const big = `SELECT '${"0123456789abcdef".repeat(6400)}' AS k100, 'ecap-big' AS tag`; // 102 KB
  const huge = `SELECT LENGTH('${"x".repeat(1_500_000)}') AS huge`;
  const bigOut = await db.client([], `SELECT CONNECTION_ID();\n${big};\n${huge};\n`);
  assert.equal(bigOut.code, 0, bigOut.stderr);
  const [conn, , length] = bigOut.stdout.trim().split("\n");
  assert.equal(length, "1500000");
  await sync(r, db, "ecap-marker-4");
  await r.stop();
  const ev = ofConn(r, db, Number(conn));
  assert.equal(ev.length, 3);
  assert.equal(ev[1].query, big);
  assert.equal(ev[1].truncated, false);
  assert.equal(ev[2].truncated, true);
  assert.equal(ev[2].query, huge.slice(0, CAP));
  assert.equal(ev[2].result, "ok");
  assert.match(r.stderr, /ecap: \d+ events, 0 lost/);
});

bpfTest("ecap mysqld text output: time, pid, conn, command, result, duration, query", async () => {
  await using db = await MariaDb.start();
  await using r = await EcapRun.start(["mysqld", "-p", String(db.pid)]);
  await db.sql("SELECT 'ecap-text' AS a,\n 2 AS b");
  await waitFor(() => r.stdout.includes("ecap-text"), "the query in ecap's output");
  await r.stop();
  assert.match(
    r.stdout,
    new RegExp(
      `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} pid=${db.pid} conn=\\d+ query ok \\d+\\.\\d{3} ms\\n` +
        `    SELECT 'ecap-text' AS a,\\n     2 AS b\\n`,
      "m",
    ),
  );
});

bpfTest("ecap mysqld fails in one line on a binary without dispatch_command", async () => {
  await using r = await EcapRun.start(["mysqld", "--mysqld", "/usr/bin/true"], { wait: false });
  assert.equal(await r.wait(), 5);
  const lines = r.stderr.trim().split("\n");
  assert.equal(lines.length, 1);
  assert.match(
    lines[0],
    /^ecap: Cannot capture mysqld: "\/usr\/bin\/true" defines no dispatch_command \(looked for _Z16dispatch_command19enum_server_commandP3THDPcjb, /,
  );
});

bpfTest("the MariaDB fixture stops cleanly and leaves no server behind", async () => {
  let pid: number;
  let dir: string;
  {
    await using db = await MariaDb.start();
    pid = db.pid;
    dir = db.dir;
    assert.equal((await db.sql("SELECT 6 * 7")).trim(), "42");
  }
  await assert.rejects(Deno.stat(`/proc/${pid}`), Deno.errors.NotFound);
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
});

Deno.test("decodeThdIdLoad reads the connection id's offset from thd_get_thread_id", () => {
  const x86 = (...b: number[]) => decodeThdIdLoad(new Uint8Array(b), EM_X86_64);
  // MariaDB 10.11: mov 0x3f18(%rdi),%rax; ret
  assert.deepEqual(x86(0x48, 0x8b, 0x87, 0x18, 0x3f, 0, 0, 0xc3), { offset: 0x3f18, size: 8 });
  // with endbr64, and a 32-bit id at a short displacement: mov 0x40(%rdi),%eax; ret
  assert.deepEqual(x86(0xf3, 0x0f, 0x1e, 0xfa, 0x8b, 0x47, 0x40, 0xc3), { offset: 0x40, size: 4 });
  assert.equal(x86(0x48, 0x8b, 0x86, 0x18, 0x3f, 0, 0, 0xc3), undefined); // from %rsi
  assert.equal(x86(0x48, 0x8b, 0x87, 0x18, 0x3f, 0, 0, 0x90), undefined); // no ret
  assert.equal(x86(0x55, 0x48, 0x89, 0xe5), undefined); // a frame: not a bare load
  const arm = (insn: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setUint32(0, insn, true);
    new DataView(b.buffer).setUint32(4, 0xd65f03c0, true);
    return decodeThdIdLoad(b, EM_AARCH64);
  };
  assert.deepEqual(arm(0xf9400000 | (0x7e3 << 10)), { offset: 0x7e3 * 8, size: 8 }); // ldr x0
  assert.deepEqual(arm(0xb9400000 | (0x10 << 10)), { offset: 0x40, size: 4 }); // ldr w0
  assert.equal(arm(0xf9400020), undefined); // ldr x0, [x1]
});

bpfTest("ecap mysqld probes a server started after it from another binary", async () => {
  await using r = await EcapRun.start(["mysqld", "--json", "--debug"]);
  await using db = await MariaDb.start({ copy: true });
  await sync(r, db, "ecap-late-server");
  assert.equal(await r.stop(), 0);
  const ev = r.json().filter((e) => e.pid === db.pid);
  assert.deepEqual(ev.map((e) => [e.query, e.result]), [["SELECT 'ecap-late-server'", "ok"]]);
  assert.match(r.stderr, /attach \S+mariadbd \(inode \d+, mysqld/);
});
