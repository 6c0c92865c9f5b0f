/**
 * What `ecap MODULE [options]` does once cli.ts has begun: reads the command
 * line (parsing and help are in lib/cli/), runs the capture and reports on it.
 * @module
 */
import { Capture } from "../core/capture.ts";
import { CaptureGroup, type RunningCapture } from "../core/capture_group.ts";
import { TLS_LIBS } from "../tls/tls_libs.ts";
import type { TlsOptions } from "../modules/tls.ts";
import { EcapError, EXIT_CODES } from "../base/errors.ts";
import type { CommonOptions, EventBase, ListedTarget, ModuleSpec } from "../core/module_spec.ts";
import { cgroupFields, CgroupNames } from "../binary/cgroup.ts";
import { DayLines } from "../base/format.ts";
import { findProcessesMapping, formatDev } from "../binary/proc_maps.ts";
import { checkKernel, checkPid, checkPrivileges } from "../core/preflight.ts";
import { ioError, openFifoOutputs, openOutputFile } from "../core/output_file.ts";
import { OutputSink } from "../core/output_sink.ts";
import { ownSigusr1 } from "../core/ffi.ts";
import { onCountersSignal } from "./counters_signal.ts";
import {
  drainOutput,
  onOutputFailure,
  outputBacklogged,
  outputCaughtUp,
  stdioWriter,
  writerOf,
} from "../core/pipe_writer.ts";
import { setOwnNice } from "../core/priority.ts";
import { StopSignals } from "../core/stop_signals.ts";
import type { WebView } from "../web/web_server.ts";
import { parseCommandLine, type Parsed } from "./parse_command_line.ts";
import { VERSION } from "./version.ts";
import { StatusLine, terminalStderr } from "./status_line.ts";

/** True while pid runs (a zombie has ended). */
function processAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** --list-targets: one line (or JSON object) per file the capture would probe. */
async function listTargets(p: Parsed): Promise<number> {
  const targets = await (p.spec.listTargets?.(p.opts) ?? genericTargets(p.spec, p.opts));
  for (const t of targets) {
    if (p.json) {
      console.log(JSON.stringify({ module: p.spec.name, target: t }));
      continue;
    }
    const procs = t.processes.map((x) => `${x.comm}[${x.pid}]`).join(" ") || "none";
    console.log(`${t.path} inode=${t.inode} dev=${t.dev} ${t.kind}; processes: ${procs}`);
  }
  if (targets.length === 0) {
    console.error(`ecap: no ${p.spec.name} target now; files that appear later are followed`);
  }
  return 0;
}

/** Targets of a module without its own listTargets: its files, and who maps them. */
async function genericTargets(
  spec: ModuleSpec<CommonOptions, EventBase>,
  opts: CommonOptions,
): Promise<ListedTarget[]> {
  const { files } = await spec.targets(opts);
  const mapped = await findProcessesMapping(() => true);
  const out: ListedTarget[] = [];
  for (const [role, paths] of Object.entries(files)) {
    for (const path of paths) {
      const st = await Deno.stat(path);
      const m = mapped.values().find((x) => x.inode === st.ino && x.dev === formatDev(st.dev!));
      const processes = await Promise.all((m?.pids ?? []).map(async (pid) => ({
        pid,
        comm: (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "?")).trim(),
      })));
      out.push({ path, inode: st.ino!, dev: formatDev(st.dev!), kind: role, processes });
    }
  }
  return out;
}

async function run(p: Parsed, signals: StopSignals): Promise<number> {
  checkPrivileges();
  checkKernel();
  for (const pid of p.opts.pids ?? []) checkPid(pid);
  // before anything that may wait (a FIFO's reader): SIGUSR1 is ecap's
  ownSigusr1();
  if (p.listTargets) return await listTargets(p);
  const say = (line: string) => {
    if (!p.quiet) console.error(`ecap: ${line}`);
  };
  // a FIFO is written once its reader comes; a signal meanwhile ends ecap
  const outputs = [...(p.output ? [p.output] : []), ...(p.spec.outputPaths?.(p.opts) ?? [])];
  await openFifoOutputs(outputs, say);
  const file = p.output ? openOutputFile(p.output) : undefined;
  // with -w - the pcapng owns stdout: events text goes to stderr, unless -q
  const outWriter = file ? writerOf(file, p.output!) : stdioWriter(p.sinkOnStdout ? 2 : 1);
  const out = new OutputSink(outWriter, file ? p.output : p.sinkOnStdout ? "stderr" : "stdout");
  const textWanted = !(p.sinkOnStdout && !file && p.quiet);
  const started = performance.now();
  // a sink's files are opened (or refused, in one line) before anything loads
  const sink = p.spec.createSink?.(p.opts);
  let cap: RunningCapture<EventBase>;
  // so is the view's address (a port in use)
  // (its counters read the capture once there is one)
  const web = p.web && await startWeb(p, () => cap as RunningCapture<EventBase> | undefined);
  signals.captureStarting(); // a signal while it loads stops it once loaded
  // tcpdump's SIGUSR1: the counters so far, and the capture goes on
  const capturing = { since: NaN };
  let status: StatusLine | undefined;
  const counters = () => {
    const s = (cap as RunningCapture<EventBase> | undefined)?.stats() ?? NO_STATS;
    const secs = (performance.now() - capturing.since) / 1000 || 0;
    status?.clear();
    console.error(`ecap: ${s.events} events, ${s.lost} lost, ${secs.toFixed(1)} s`);
  };
  const countersSignal = onCountersSignal(counters);
  const hooks = {
    log: p.debug
      ? (line: string) => {
        status?.clear();
        console.error(`ecap: ${line}`);
      }
      : undefined,
  };
  try {
    // ecap tls: every TLS library family at once (lib/modules/tls_all.ts);
    // imported here, as the web view is: what a capture does not use is not
    // loaded (HTTP parsers, node:buffer) before it starts
    cap = p.spec.name === "tls"
      ? await (await import("../modules/tls_all.ts")).startTls(p.opts as TlsOptions, hooks)
      : await Capture.start(p.spec, p.opts, hooks);
  } catch (e) {
    countersSignal[Symbol.dispose]();
    try {
      sink?.close();
    } catch { /* the capture's own failure is the one to tell */ }
    await web?.close();
    throw e;
  }
  if (p.nice !== 0) setOwnNice(p.nice);
  const cgroups = new CgroupNames();
  let failure: unknown;
  const stopped = Promise.withResolvers<void>();
  const stop = () => {
    cap.stop();
    stopped.resolve();
  };
  signals.onStop(stop);
  // a pipe's reader gone (`| head -1`) or a failed write ends the capture
  // now, not at the next write, which may never come
  const unwatchOutput = onOutputFailure((w, e) => {
    failure ??= ioError(w.name, e);
    stop();
  });
  const timer = p.duration ? setTimeout(stop, p.duration * 1000) : undefined;
  // Documented rule: with --pid, the capture ends once those processes have
  // (with --follow-children, once their descendants have too).
  const pids = p.opts.pids ?? [];
  let exited = false;
  const watch = pids.length === 0 ? undefined : setInterval(() => {
    const followed = p.opts.followChildren ? cap.allowedPids() : [];
    if ([...pids, ...followed].some(processAlive)) return;
    exited = true;
    stop();
  }, 200);
  for (const note of cap.notes) say(note);
  const probed = (c: RunningCapture<EventBase>) =>
    `${c.probes.length} probes on ${
      [...new Set(c.probes.map((x) => x.where.split(":")[0]))].join(", ")
    }`;
  const family = (module: string) =>
    Object.values(TLS_LIBS).find((l) => l.module === module)?.what ?? module;
  const what = cap instanceof CaptureGroup
    ? cap.captures.map((c) => `${family(c.module)}: ${probed(c)}`).join("; ")
    : probed(cap);
  // even with -q: the address may carry a token printed nowhere else
  if (web) console.error(`ecap: live view at ${web.url}`);
  say(
    `capturing ${p.spec.name} (${what}) after ${
      Math.round(performance.now() - started)
    } ms; Ctrl-C to stop`,
  );
  capturing.since = performance.now();
  // On a terminal, a status line once a second, unless the events fill it:
  // shown when they go to a file, cleared before any text that comes there.
  const textOnTerminal = textWanted && !file &&
    (p.sinkOnStdout ? Deno.stderr.isTerminal() : Deno.stdout.isTerminal());
  const statusOut = p.quiet ? undefined : terminalStderr();
  if (statusOut && (sink !== undefined || file !== undefined || !textOnTerminal)) {
    status = new StatusLine(statusOut);
  }
  const statusTimer = status && setInterval(() => {
    status!.update(cap.stats(), (performance.now() - capturing.since) / 1000);
  }, 1000);
  const ticker = sink && setInterval(() => {
    try {
      sink.tick();
    } catch (e) {
      failure ??= e;
      stop();
    }
  }, 250);
  // times in text are HH:MM:SS: a line names the day (in files, the first too)
  const days = new DayLines(p.output !== undefined);
  const dayLine = (ev: EventBase) => {
    const d = days.next(ev.timeNs);
    return d === undefined ? "" : d + "\n";
  };
  // -c N: a sink that counts what it writes (packets) says when it is full
  const sinkCounts = sink?.full !== undefined;
  let left = p.count ?? Infinity;
  try {
    for await (const all of cap.batches()) {
      if (left <= 0) {
        // stopping: the rest is drained, not shown; a counting sink still
        // takes the keys of the packets it holds
        if (sinkCounts) sink!.write(all);
        continue;
      }
      const batch = !sinkCounts && all.length > left ? all.slice(0, left) : all;
      web?.add(batch);
      const text = sink && !p.json
        ? (batch.length > 0 ? dayLine(batch[0]) : "") + sink.write(batch)
        : batch.map((ev) =>
          p.json
            ? JSON.stringify({ ...p.spec.toJSON(ev), ...cgroupFields(cgroups, ev.cgroupId) }) +
              "\n"
            : dayLine(ev) + p.spec.format(ev, p.opts) + "\n"
        ).join("");
      if (p.json && sink) sink.write(batch);
      if (text && textOnTerminal) status?.clear();
      if (text && textWanted && !out.write(text)) stop(); // `| head -1`: end quietly
      if (failure) break;
      left = sinkCounts ? (sink!.full ? 0 : left) : left - batch.length;
      if (left <= 0) stop(); // as --duration does
      // a reader fallen far behind: wait for it (the kernel counts what
      // this loses), but never past a stop
      if (outputBacklogged()) await Promise.race([outputCaughtUp(), stopped.promise]);
    }
  } catch (e) {
    failure = e; // e.g. a full disk: what was written stays, the probes go
  } finally {
    countersSignal[Symbol.dispose]();
    unwatchOutput();
    clearTimeout(timer);
    clearInterval(watch);
    clearInterval(ticker);
    clearInterval(statusTimer);
    status?.clear();
    await cap[Symbol.asyncDispose]();
    await web?.close();
  }
  let summary: string | undefined;
  try {
    summary = sink?.close();
  } catch (e) {
    failure ??= e;
  }
  // what waits for a pipe's reader goes before the summary that follows it
  const stalled = await drainOrFail();
  failure ??= stalled;
  if (summary) say(summary);
  const s = cap.stats();
  if (exited) say(`process ${pids.join(", ")} exited`);
  const why = [
    s.lost > s.unfollowed ? `per CPU: ${s.lostPerCpu.join(" ")}; raise --mapsize` : "",
    s.unfollowed ? `${s.unfollowed} calls not followed` : "",
  ].filter((w) => w).join("; ");
  const perCpu = why ? ` (${why})` : "";
  const extra = [
    s.truncated ? `, ${s.truncated} cut at cap` : "",
    s.shed ? `, ${s.shed} kept short while the ring was over half full (raise --mapsize)` : "",
    s.malformed ? `, ${s.malformed} malformed` : "",
  ].join("");
  say(`${s.events} events, ${s.lost} lost${perCpu}${extra}`);
  if (p.json && !failure) {
    const stats = {
      records: s.records,
      events: s.events,
      lost: s.lost,
      lost_per_cpu: s.lostPerCpu,
      unfollowed: s.unfollowed,
      truncated: s.truncated,
      shed: s.shed,
      malformed: s.malformed,
    };
    try {
      out.write(JSON.stringify({ module: p.spec.name, stats }) + "\n");
    } catch (e) {
      failure = e;
    }
  }
  outWriter.close();
  const stalledAtEnd = await drainOrFail();
  failure ??= stalledAtEnd;
  // the reader of -w - went away (Wireshark closed): an end, as `| head` is
  if (failure && !readerGone(failure)) throw failure;
  return 0;
}

/** How long the end waits for a pipe's reader that takes nothing. */
const DRAIN_IDLE_MS = 2000;

/** Waits for pipes' readers to take what is queued; an error if one stalls. */
async function drainOrFail(): Promise<EcapError | undefined> {
  const stalled = await drainOutput(DRAIN_IDLE_MS);
  if (stalled.length === 0) return undefined;
  const w = stalled[0];
  return new EcapError(
    `The reader of ${w.name === "stdout" || w.name === "stderr" ? w.name : `"${w.name}"`} ` +
      `took nothing for ${DRAIN_IDLE_MS / 1000} s: ${w.queued} bytes were not written`,
    { kind: "io", hint: "read the output as it comes, or write it to a file" },
  );
}

/** A write to a pipe whose reader has gone. */
function readerGone(e: unknown): boolean {
  return e instanceof EcapError && e.cause instanceof Deno.errors.BrokenPipe;
}

const NO_STATS = {
  records: 0,
  lostPerCpu: [],
  unfollowed: 0,
  lost: 0,
  truncated: 0,
  shed: 0,
  malformed: 0,
  events: 0,
  bytes: 0,
};

/** --web: listens before the capture starts, so that a port in use costs nothing. */
async function startWeb(
  p: Parsed,
  capture: () => RunningCapture<EventBase> | undefined,
): Promise<WebView<EventBase>> {
  const { spec, opts } = p;
  const [{ WebView }, { genericView }] = await Promise.all([
    import("../web/web_server.ts"),
    import("../web/web_history.ts"),
  ]);
  return WebView.start({
    module: spec.name,
    version: VERSION,
    view: spec.view ?? genericView((ev) => spec.format(ev, opts)),
    toJSON: (ev) => spec.toJSON(ev),
    stats: () => capture()?.stats() ?? NO_STATS,
  }, p.web!);
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  // first thing: a signal never kills ecap while it writes or removes probes
  using signals = new StopSignals();
  let verbose = ["--verbose", "-v", "-d", "--debug"].some((a) => argv.includes(a));
  try {
    const p = await parseCommandLine(argv);
    if (typeof p === "string") {
      console.log(p);
      return 0;
    }
    verbose = p.verbose;
    return await run(p, signals);
  } catch (e) {
    if (e instanceof EcapError) {
      console.error(`ecap: ${e.message}${e.hint ? ` (${e.hint})` : ""}`);
      if (verbose && e.detail) console.error(e.detail);
      if (verbose) console.error(e.stack);
      return EXIT_CODES[e.kind];
    }
    console.error(`ecap: internal error: ${(e as Error)?.message ?? e}`);
    if (verbose) console.error((e as Error)?.stack);
    return EXIT_CODES.internal;
  }
}
