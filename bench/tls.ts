/**
 * Benchmark 1: what capturing TLS costs a busy HTTPS server. nginx serves
 * HTTPS on loopback (keep-alive), wrk loads it for a fixed time, and each
 * repetition runs every mode once, interleaved: no capture; empty probes on
 * exactly ecap's text-mode hooks; `ecap tls` text (the default exchange
 * view), --calls, pcap and keylog; and the bpftrace peer copying
 * SSL_read/SSL_write data, and tcpdump writing the same packets pcap mode
 * writes (its yardstick: what writing every packet costs anyone). Ratios
 * are taken against the baseline of the same repetition (the host is
 * noisy), then the median. A figure fails when an
 * ecap run behind it exited non-zero or without its summary, lost records,
 * or printed other than what wrk did; a peer that is missing is a MISS.
 * Also records ecap's peak RSS (benchmark 4).
 * @module
 */
import { Capture } from "../lib/core/capture.ts";
import type { EventBase, ModuleSpec } from "../lib/core/module_spec.ts";
import { tls, type TlsOptions } from "../lib/modules/tls.ts";
import { DEFAULT_SNAPLEN } from "../lib/pcap/pcap_sink.ts";
import {
  type BenchOptions,
  cpuTicks,
  Ecap,
  emptyProbesOf,
  fmt,
  median,
  peakRss,
  Proc,
  ratioText,
  type Row,
  sh,
  sleep,
  which,
} from "./_util.ts";
import { Nginx } from "./_nginx.ts";

/**
 * Run order within a repetition: each mode right after the baseline its
 * target is taken against (keylog after none, text after empty), since the
 * host's speed drifts by ±20 % over tens of seconds (measured).
 */
const MODES = ["none", "keylog", "empty", "text", "calls", "pcap", "tcpdump", "bpftrace"] as const;
type Mode = typeof MODES[number];

interface Run {
  mode: Mode;
  size: string;
  rep: number;
  rps: number;
  requests: number;
  /** Bytes wrk read (its own count: decrypted bytes out of SSL_read). */
  wrkBytes: number;
  cpuUsPerReq: number;
  /** calls: bytes of wrk's SSL_read calls ecap reported. */
  capturedBytes?: number;
  /** text: exchanges of wrk's answered 200 that ecap printed. */
  exchanges?: number;
  /** ecap's exit code, and why the run does not count ("" when it does). */
  exit?: number;
  broken?: string;
  lost?: number;
  /** Records kept short while the ring was over half full. */
  shed?: number;
  events?: number;
  rss?: number;
  /** bpftrace: data events printed / expected (its own in-kernel counts). */
  btDelivered?: number;
  btExpected?: number;
  /** tcpdump: packets its kernel buffer dropped (its own count). */
  tdDropped?: number;
}

/** The empty-handler object under the tls module's probe list: ecap's hooks, no work. */
const emptySpec = emptyProbesOf(tls as ModuleSpec<TlsOptions, EventBase>);

/** Starts empty probes on the hooks `ecap tls` (text) attaches; returns what it attached. */
export async function startEmptyProbes(): Promise<Capture<EventBase>> {
  return await Capture.start(emptySpec, { model: "text" });
}

/** bpftrace, sslsniff-like (peers.md "bt-data"): payloads of SSL_write and of SSL_read returns. */
function bpftraceScript(libssl: string): string {
  return `BEGIN { printf("READY\\n"); }
uprobe:${libssl}:SSL_write { @calls["write"] = count(); printf("E W %d %d %s %d %r\\n", pid, tid, comm, arg2, buf(arg1, arg2)); }
uprobe:${libssl}:SSL_read { @calls["read_entry"] = count(); @rbuf[tid] = arg1; }
uretprobe:${libssl}:SSL_read /@rbuf[tid]/ { $n = (int32)retval; if ($n > 0) { @calls["read_data"] = count(); printf("E R %d %d %s %d %r\\n", pid, tid, comm, $n, buf(@rbuf[tid], $n)); } delete(@rbuf[tid]); }
END { clear(@rbuf); }`;
}

/** Counts lines starting with "E " in a stream of text chunks. */
function lineCounter() {
  let carry = "";
  let n = 0;
  const maps = new Map<string, number>();
  return {
    push(t: string) {
      const s = carry + t;
      const lines = s.split("\n");
      carry = lines.pop()!;
      for (const l of lines) {
        if (l.startsWith("E ")) n++;
        const m = /^@calls\[(\w+)\]: (\d+)/.exec(l);
        if (m) maps.set(m[1], Number(m[2]));
      }
    },
    maps,
    get count() {
      return n;
    },
  };
}

/** wrk's exchanges in ecap's default view: their summary lines, answered 200. */
async function wrkExchanges(file: string, wrkPid: number): Promise<number> {
  const re = new RegExp(
    String.raw`^\d\d:\d\d:\d\d\.\d{3} wrk\[${wrkPid}\] -> [^\n]* -> 200 OK, `,
    "gm",
  );
  let n = 0;
  for (const _ of (await Deno.readTextFile(file)).matchAll(re)) n++;
  return n;
}

/** wrk's captured-bytes check: the sum of wrk's READ calls in ecap's --calls output. */
async function wrkReadBytes(file: string, wrkPid: number): Promise<number> {
  const re = new RegExp(
    String.raw`^\d\d:\d\d:\d\d\.\d{3} [^\n]*\[${wrkPid}\] fd=-?\d+ [^\n]* READ (\d+) bytes`,
    "gm",
  );
  let total = 0;
  const text = await Deno.readTextFile(file);
  for (const m of text.matchAll(re)) total += Number(m[1]);
  return total;
}

export async function runTls(o: BenchOptions): Promise<{ rows: Row[]; rss: number }> {
  const duration = o.quick ? 1 : 5;
  const reps = o.quick ? 1 : 3;
  const threads = 2, conns = 50;
  const wrk = await which("wrk");
  if (!wrk) throw new Error("wrk is not installed (apt-get install wrk)");
  const bpftrace = await which("bpftrace");
  // what writing every packet costs a peer: pcap mode's yardstick
  const tcpdump = await which("tcpdump");
  const lua = `${o.tmp}/bytes.lua`;
  await Deno.writeTextFile(
    lua,
    `done = function(summary, latency, requests)
  io.write(string.format("ECAP_BYTES %d %d\\n", summary.bytes, summary.requests))
end
`,
  );
  const ldd = await sh("ldd", [wrk]);
  const libssl = await Deno.realPath(/libssl\.so\.3 => (\S+)/.exec(ldd.stdout)?.[1] ?? "");
  await using nginx = await Nginx.start(o.tmp);
  o.log(
    `tls: nginx 1 worker on ${
      nginx.url("")
    }, wrk -t${threads} -c${conns} -d${duration}s, ${reps} reps; libssl ${libssl}`,
  );

  const runs: Run[] = [];
  const allSizes = [["small", "small.bin"], ["64k", "64k.bin"]] as const;
  const sizes = o.quick ? allSizes.slice(0, 1) : allSizes; // --quick: small responses only

  async function wrkRun(url: string) {
    const c0 = cpuTicks();
    const w = new Proc(wrk!, [`-t${threads}`, `-c${conns}`, `-d${duration}s`, "-s", lua, url]);
    await w.done;
    const c1 = cpuTicks();
    const m = /ECAP_BYTES (\d+) (\d+)/.exec(w.stdout);
    const rps = Number(/Requests\/sec:\s*([\d.]+)/.exec(w.stdout)?.[1] ?? NaN);
    if (!m || !Number.isFinite(rps)) throw new Error(`wrk failed: ${w.stdout}${w.stderr}`);
    const requests = Number(m[2]);
    return {
      pid: w.pid,
      run: {
        rps,
        requests,
        wrkBytes: Number(m[1]),
        cpuUsPerReq: ((c1.busy - c0.busy) / 100) * 1e6 / requests, // USER_HZ = 100
      },
    };
  }

  for (let rep = 1; rep <= reps; rep++) {
    for (const [size, path] of sizes) {
      for (const mode of MODES) {
        if (mode === "bpftrace" && !bpftrace) continue;
        if (mode === "tcpdump" && !tcpdump) continue;
        const url = nginx.url(path);
        const run: Partial<Run> = { mode, size, rep };
        const out = `/dev/shm/ecap-bench-${Deno.pid}-${mode}`;
        await Deno.remove(out).catch(() => {});
        let ecap: Ecap | undefined;
        let empty: Capture<EventBase> | undefined;
        let bt: Proc | undefined;
        let td: Proc | undefined;
        const btLines = lineCounter();
        try {
          if (mode === "empty") empty = await startEmptyProbes();
          if (mode === "text") ecap = await Ecap.start(["tls", "-o", out]);
          if (mode === "calls") ecap = await Ecap.start(["tls", "--calls", "-o", out]);
          if (mode === "pcap") {
            ecap = await Ecap.start(["tls", "-m", "pcap", "-w", out, "-i", "lo"]);
          }
          if (mode === "keylog") ecap = await Ecap.start(["tls", "-m", "keylog", "-k", out]);
          if (mode === "tcpdump") {
            // as ecap's pcap mode: whole packets (its default snap length), to the same scratch directory
            const filter = ["tcp", "port", String(nginx.port)];
            const snap = String(DEFAULT_SNAPLEN);
            td = new Proc(tcpdump!, ["-i", "lo", "-s", snap, "-w", out, ...filter], {
              keepStdout: false,
            });
            if (!await td.waitFor(() => td!.stderr.includes("listening on"), 60_000)) {
              throw new Error(`tcpdump did not start: ${td.stderr.slice(0, 500)}`);
            }
          }
          if (mode === "bpftrace") {
            bt = new Proc(bpftrace!, ["-e", bpftraceScript(libssl)], {
              env: { BPFTRACE_STRLEN: "200" },
              keepStdout: false,
            });
            let head = "";
            bt.onStdout = (t) => {
              if (head.length < 4096) head += t;
              btLines.push(t);
            };
            if (!await bt.waitFor(() => head.includes("READY"), 60_000)) {
              throw new Error(`bpftrace did not attach: ${bt.stderr.slice(0, 500)}`);
            }
          }
          const w = await wrkRun(url);
          Object.assign(run, w.run);
          if (ecap) {
            run.rss = peakRss(ecap.pid);
            run.exit = await ecap.stop();
            const s = ecap.summary();
            run.events = s?.events;
            run.lost = s?.lost ?? NaN;
            run.shed = s?.shed ?? NaN;
            run.broken = run.exit !== 0 || !s
              ? `exit ${run.exit}${s ? "" : ", no summary"}: ${ecap.stderr.trim().slice(-200)}`
              : "";
            if (mode === "calls") run.capturedBytes = await wrkReadBytes(out, w.pid);
            if (mode === "text") run.exchanges = await wrkExchanges(out, w.pid);
          }
          if (td) {
            const code = await td.stop("SIGINT");
            const dropped = /(\d+) packets? dropped by kernel/.exec(td.stderr);
            run.tdDropped = dropped ? Number(dropped[1]) : NaN;
            run.broken = code === 0 && dropped ? "" : `tcpdump exited ${code}: ${td.stderr}`;
          }
          if (bt) {
            // let bpftrace's reader drain what is buffered: until the count stops growing
            let prev = -1;
            for (let i = 0; i < 30 && btLines.count !== prev; i++) {
              prev = btLines.count;
              await sleep(o.quick ? 300 : 1000);
            }
            await bt.stop("SIGINT");
            run.btDelivered = btLines.count;
            run.btExpected = (btLines.maps.get("write") ?? 0) +
              (btLines.maps.get("read_data") ?? 0);
          }
        } finally {
          await ecap?.stop("SIGKILL");
          await empty?.[Symbol.asyncDispose]();
          await bt?.stop("SIGKILL");
          await td?.stop("SIGKILL");
          await Deno.remove(out).catch(() => {});
        }
        runs.push(run as Run);
        const extra = [
          run.broken ? `BROKEN ${run.broken}` : "",
          run.lost !== undefined
            ? `events ${run.events} lost ${run.lost}${run.shed ? ` kept short ${run.shed}` : ""}`
            : "",
          run.exchanges !== undefined ? `exchanges ${run.exchanges}/${run.requests}` : "",
          run.capturedBytes !== undefined ? `captured ${run.capturedBytes}/${run.wrkBytes} B` : "",
          run.rss !== undefined ? `rss ${fmt(run.rss / 2 ** 20)} MiB` : "",
          run.btDelivered !== undefined
            ? `bpftrace events ${run.btDelivered}/${run.btExpected}`
            : "",
          run.tdDropped !== undefined ? `tcpdump dropped ${run.tdDropped}` : "",
        ].filter(Boolean).join(", ");
        o.log(
          `  rep ${rep} ${size.padEnd(5)} ${mode.padEnd(8)} ${fmt(run.rps!).padStart(7)} req/s ${
            fmt(run.cpuUsPerReq!)
          } cpu-us/req ${extra}`,
        );
      }
    }
  }

  const rows: Row[] = [];
  const of = (size: string, mode: Mode) => runs.filter((r) => r.size === size && r.mode === mode);
  /** Why a mode's runs do not count ("" when they all do). */
  const brokenIn = (size: string, mode: Mode) => {
    const all = of(size, mode);
    const bad = all.filter((r) => r.broken);
    return bad.length
      ? `${mode === "tcpdump" ? "tcpdump" : "ecap"} failed in ${bad.length} of ${all.length} runs`
      : "";
  };
  const sum = (rs: Run[], f: (r: Run) => number | undefined) =>
    rs.reduce((a, r) => a + (f(r) ?? NaN), 0);
  const paired = (size: string, mode: Mode, base: Mode) => {
    const rs: number[] = [];
    for (let rep = 1; rep <= reps; rep++) {
      const a = runs.find((r) => r.size === size && r.mode === mode && r.rep === rep);
      const b = runs.find((r) => r.size === size && r.mode === base && r.rep === rep);
      if (a && b) rs.push(a.rps / b.rps);
    }
    return median(rs);
  };
  const med = (size: string, mode: Mode) => median(of(size, mode).map((r) => r.rps));
  const add = (
    size: string,
    figure: string,
    mode: Mode,
    base: Mode,
    target?: number,
  ) => {
    const r = paired(size, mode, base);
    const broken = brokenIn(size, mode);
    rows.push({
      bench: `1 tls ${size}`,
      figure,
      value: broken || `${fmt(med(size, mode))} req/s`,
      baseline: `${fmt(med(size, base))} req/s (${base})`,
      ratio: ratioText(r),
      target: target === undefined ? "-" : `>= ${target}`,
      pass: broken ? false : target === undefined ? undefined : r >= target,
    });
  };
  for (const [size] of sizes) {
    const bench = `1 tls ${size}`;
    add(size, "empty probes vs none", "empty", "none");
    add(size, "ecap tls text (exchanges) vs empty probes", "text", "empty", 0.9);
    add(size, "ecap tls text vs none", "text", "none");
    add(size, "ecap tls --calls vs empty probes", "calls", "empty");
    /** A peer that is not installed: a MISS row, not a row left out. */
    const notRun = (figure: string, peer: string, target: string) =>
      rows.push({
        bench,
        figure,
        value: `not run: ${peer} is not installed`,
        baseline: "-",
        ratio: "-",
        target,
        pass: false,
      });
    const vsBpftrace = "ecap tls text vs bpftrace peer";
    if (bpftrace) add(size, vsBpftrace, "text", "bpftrace", 2);
    else notRun(vsBpftrace, "bpftrace", ">= 2");
    add(size, "ecap tls -m keylog vs none", "keylog", "none", 0.95);
    add(size, "ecap tls -m pcap vs none", "pcap", "none", 0.8);
    const vsTcpdump = "tcpdump -w (a peer: every packet written) vs none";
    if (tcpdump) {
      add(size, vsTcpdump, "tcpdump", "none");
      const dropped = sum(of(size, "tcpdump"), (r) => r.tdDropped);
      rows.push({
        bench,
        figure: "tcpdump peer: packets dropped by its kernel buffer",
        value: `${dropped}`,
        baseline: "-",
        ratio: "-",
        target: "-",
      });
    } else {
      notRun(vsTcpdump, "tcpdump", "-");
    }
    const text = of(size, "text");
    const textLost = sum(text, (r) => r.lost);
    const shedIn = (mode: Mode) => sum(of(size, mode), (r) => r.shed ?? 0);
    const kept = (mode: Mode) => shedIn(mode) ? `, ${shedIn(mode)} kept short` : "";
    const exchanges = sum(text, (r) => r.exchanges);
    const requests = sum(text, (r) => r.requests);
    rows.push({
      bench,
      figure: "text: lost; wrk's requests printed as exchanges",
      value: `${textLost} lost${kept("text")}; ${exchanges} exchanges`,
      baseline: `${requests} requests (wrk)`,
      ratio: ratioText(exchanges / requests),
      // wrk does not count the requests still open when it stops
      target: `0 lost, >= 1 (+ ${conns} open a run)`,
      pass: textLost === 0 && exchanges >= requests && exchanges <= requests + conns * reps,
    });
    const calls = of(size, "calls");
    const lost = sum(calls, (r) => r.lost);
    const cap = sum(calls, (r) => r.capturedBytes);
    const sent = sum(calls, (r) => r.wrkBytes);
    rows.push({
      bench,
      figure: "--calls: lost; wrk's read bytes captured",
      value: `${lost} lost${kept("calls")}; ${cap} B`,
      baseline: `${sent} B (wrk)`,
      ratio: ratioText(cap / sent),
      target: "0 lost, = 1.000",
      pass: lost === 0 && cap === sent,
    });
    const keylogLost = sum(of(size, "keylog"), (r) => r.lost);
    const pcapLost = sum(of(size, "pcap"), (r) => r.lost);
    rows.push({
      bench,
      figure: "-m keylog, -m pcap: lost records",
      value: `${keylogLost}, ${pcapLost}${kept("pcap")}`,
      baseline: "-",
      ratio: "-",
      target: "0, 0",
      pass: keylogLost === 0 && pcapLost === 0,
    });
    if (bpftrace) {
      // its counts are printed as it exits: a run it did not finish in time has none
      const all = of(size, "bpftrace");
      const bt = all.filter((r) => (r.btExpected ?? 0) > 0);
      const delivered = sum(bt, (r) => r.btDelivered ?? 0);
      const expected = sum(bt, (r) => r.btExpected ?? 0);
      const uncounted = all.length - bt.length;
      rows.push({
        bench,
        figure: "bpftrace peer: data events delivered",
        value: `${delivered}${uncounted ? ` (${uncounted} runs printed no counts)` : ""}`,
        baseline: `${expected} (its counts)`,
        ratio: ratioText(delivered / expected),
        target: "-",
      });
    }
  }
  const rss = Math.max(...runs.map((r) => r.rss ?? 0));
  return { rows, rss };
}
