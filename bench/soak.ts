/**
 * Every module at once, for ten minutes, under a mixed load: HTTPS from
 * curl, python3, a Go client and gnutls-cli to nginx (`ecap tls`, every
 * library family), commands typed into bash (`ecap bash`), queries to
 * MariaDB and PostgreSQL (`ecap mysqld`, `ecap postgres`). Each load
 * generator's every action carries a token; the figures are what each ecap
 * wrote against what was done, records lost, and each ecap's RSS (start,
 * middle, end), open file descriptors and CPU time per event. Not a CI test:
 * `deno task bench --only soak` (`--quick`: a few seconds).
 * @module
 */
import { MariaDb } from "../tests/_mariadb.ts";
import { PgServer } from "../tests/_postgres.ts";
import { programs } from "../tests/_go.ts";
import { Nginx } from "./_nginx.ts";
import { type BenchOptions, Ecap, fmt, Proc, type Row, sh, sleep } from "./_util.ts";

const MIB = 1 << 20;
/** RSS may grow this much from the middle of the run to its end: flat, with noise. */
const RSS_SLACK = 10 * MIB;
/** ...and this much from the idle start to the loaded middle (buffers, caches, one GC cycle). */
const LOAD_SLACK = 64 * MIB;
const TICKS_PER_S = 100; // USER_HZ on Linux

interface Watched {
  name: string;
  ecap: Ecap;
  out: string;
  rss: number[];
  fds: number[];
  cpuTicks0: number;
}

function rssOf(pid: number): number {
  const m = /^VmRSS:\s*(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
  return m ? Number(m[1]) * 1024 : NaN;
}

const fdsOf = (pid: number) => [...Deno.readDirSync(`/proc/${pid}/fd`)].length;

/** utime + stime of a process, in clock ticks. */
function cpuTicksOf(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]); // fields 14 and 15, counted after the comm
}

function sample(w: Watched) {
  w.rss.push(rssOf(w.ecap.pid));
  w.fds.push(fdsOf(w.ecap.pid));
}

/** Every token (soakROUNDwhat) in a file too large for one string (a soak writes GBs). */
async function tokensIn(path: string): Promise<Set<string>> {
  const seen = new Set<string>();
  const token = /soak\d+(?:curl64|curl|py|go|gnutls|bash|maria|pg)\b/g;
  let carry = "";
  using file = await Deno.open(path);
  for await (const text of file.readable.pipeThrough(new TextDecoderStream())) {
    const window = carry + text;
    for (const m of window.matchAll(token)) seen.add(m[0]);
    carry = window.slice(-40); // a token cut by the chunk's end is whole next time
  }
  return seen;
}

export async function runSoak(o: BenchOptions): Promise<Row[]> {
  const seconds = o.quick ? 8 : 600;
  await using nginx = await Nginx.start(o.tmp);
  await using maria = await MariaDb.start();
  await using pg = await PgServer.start();
  const go = await programs();
  const session = `ecap-soak-${Deno.pid}`;
  const tmux = (args: string[]) => sh("tmux", ["-L", session, ...args], { allowFail: true });
  await tmux(["new-session", "-d", "-s", session, "-x", "200", "-y", "50", "bash --norc -i"]);
  const bashPid = Number((await tmux(["display", "-p", "-t", session, "#{pane_pid}"])).stdout);
  const watched: Watched[] = [];
  try {
    const start = async (name: string, args: string[]) => {
      const out = `${o.tmp}/soak-${name}.jsonl`;
      const ecap = await Ecap.start([...args, "--json", "-o", out], { keepStdout: false });
      watched.push({ name, ecap, out, rss: [], fds: [], cpuTicks0: 0 });
    };
    await start("tls", ["tls"]); // exchanges, the default view
    await start("bash", ["bash", "-p", String(bashPid)]);
    await start("mysqld", ["mysqld", "-p", String(maria.pid)]);
    await start("postgres", ["postgres"]);
    await sleep(1000);
    for (const w of watched) sample(w), w.cpuTicks0 = cpuTicksOf(w.ecap.pid);
    o.log(`soak: ${seconds} s of every module at once (${watched.map((w) => w.name).join(", ")})`);

    const tokens = { tls: [] as string[], bash: [] as string[], sql: [] as string[] };
    const end = performance.now() + seconds * 1000;
    const middle = performance.now() + seconds * 500;
    let round = 0;
    let sampledMiddle = false;
    while (performance.now() < end) {
      round++;
      const t = (what: string) => `soak${round}${what}`;
      const https = [
        new Proc("curl", ["-sk", "-o", "/dev/null", nginx.url(`small.bin?${t("curl")}`)]),
        new Proc("curl", ["-sk", "-o", "/dev/null", nginx.url(`64k.bin?${t("curl64")}`)]),
        new Proc("/usr/bin/python3", [
          "-c",
          "import ssl,sys,urllib.request as u; u.urlopen(sys.argv[1], " +
          "context=ssl._create_unverified_context()).read()",
          nginx.url(`small.bin?${t("py")}`),
        ]),
        new Proc(go.client, [nginx.url(`small.bin?${t("go")}`)]),
        new Proc("sh", [
          "-c",
          `printf 'GET /small.bin?${
            t("gnutls")
          } HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'` +
          ` | gnutls-cli --insecure -p ${nginx.port} 127.0.0.1`,
        ]),
      ];
      tokens.tls.push(t("curl"), t("curl64"), t("py"), t("go"), t("gnutls"));
      await tmux(["send-keys", "-t", session, "-l", `echo ${t("bash")}`]);
      await tmux(["send-keys", "-t", session, "Enter"]);
      tokens.bash.push(t("bash"));
      const sql = [
        maria.client([], `SELECT '${t("maria")}';\n`),
        pg.psql(pg.user, pg.database, [`SELECT '${t("pg")}'`]),
      ];
      tokens.sql.push(t("maria"), t("pg"));
      for (const p of https) {
        if (await p.done !== 0) throw new Error(`a load client failed: ${p.stderr}`);
      }
      for (const r of await Promise.all(sql)) {
        if (r.code !== 0) throw new Error(`a SQL client failed: ${r.stderr}`);
      }
      if (!sampledMiddle && performance.now() > middle) {
        sampledMiddle = true;
        for (const w of watched) sample(w);
      }
    }
    await sleep(2000); // the last records read and written
    for (const w of watched) sample(w);
    const rows: Row[] = [];
    for (const w of watched) {
      const ticks = cpuTicksOf(w.ecap.pid) - w.cpuTicks0;
      const s = await w.ecap.finish();
      const seen = await tokensIn(w.out);
      const want = w.name === "tls" ? tokens.tls : w.name === "bash" ? tokens.bash : tokens.sql
        .filter((x) => x.endsWith(w.name === "mysqld" ? "maria" : "pg"));
      const got = want.filter((t) => seen.has(t)).length;
      const [rss0, rssMid, rssEnd] = w.rss;
      o.log(
        `soak ${w.name}: ${got} of ${want.length} actions, ${s.events} events, ${s.lost} lost; ` +
          `RSS ${fmt(rss0 / MIB)} / ${fmt(rssMid / MIB)} / ${fmt(rssEnd / MIB)} MiB; ` +
          `fds ${w.fds.join(" / ")}; ${
            fmt((ticks / TICKS_PER_S) * 1e6 / Math.max(1, s.events))
          } µs CPU an event`,
      );
      rows.push(
        {
          bench: "soak",
          figure: `${w.name}: actions seen, lost`,
          value: `${got} of ${want.length}, ${s.lost}`,
          baseline: "-",
          ratio: "-",
          target: "all, 0",
          pass: got === want.length && s.lost === 0,
        },
        {
          bench: "soak",
          figure: `${w.name}: RSS start/middle/end`,
          value: `${fmt(rss0 / MIB)}/${fmt(rssMid / MIB)}/${fmt(rssEnd / MIB)} MiB`,
          baseline: "-",
          ratio: "-",
          target: "middle <= start + 64, end <= middle + 10 MiB",
          pass: rssMid <= rss0 + LOAD_SLACK && rssEnd <= rssMid + RSS_SLACK,
        },
        {
          bench: "soak",
          figure: `${w.name}: open fds start/middle/end`,
          value: w.fds.join("/"),
          baseline: "-",
          ratio: "-",
          target: "flat",
          pass: w.fds[2] <= w.fds[1] && w.fds[1] <= w.fds[0] + 4,
        },
        {
          bench: "soak",
          figure: `${w.name}: CPU an event`,
          value: `${fmt((ticks / TICKS_PER_S) * 1e6 / Math.max(1, s.events))} µs`,
          baseline: "-",
          ratio: "-",
          target: "-",
        },
      );
    }
    return rows;
  } finally {
    for (const w of watched) await w.ecap.stop("SIGKILL");
    await tmux(["kill-server"]);
  }
}
