/**
 * The ecap command line: `ecap MODULE [options]`.
 * @module
 */
import { parseArgs } from "node:util";
import { Capture } from "./lib/core/capture.ts";
import { CaptureGroup, type RunningCapture } from "./lib/core/capture_group.ts";
import { startTls } from "./lib/modules/tls_all.ts";
import { TLS_LIBS } from "./lib/tls/tls_libs.ts";
import type { TlsOptions } from "./lib/modules/tls.ts";
import { EcapError, EXIT_CODES } from "./lib/base/errors.ts";
import type {
  CommonOptions,
  EventBase,
  ListedTarget,
  ModuleSpec,
  OptionSpec,
} from "./lib/core/module_spec.ts";
import { cgroupFields, CgroupNames } from "./lib/binary/cgroup.ts";
import { DayLines } from "./lib/base/format.ts";
import { findProcessesMapping, formatDev } from "./lib/binary/proc_maps.ts";
import { loadAllModules, loadModule, MODULE_INDEX } from "./lib/modules/index.ts";
import { checkKernel, checkPid, checkPrivileges } from "./lib/core/preflight.ts";
import { openOutputFile } from "./lib/core/output_file.ts";
import { OutputSink } from "./lib/core/output_sink.ts";
import { setOwnNice } from "./lib/core/priority.ts";
import { StopSignals } from "./lib/core/stop_signals.ts";
import { WebView } from "./lib/web/web_server.ts";
import type { WebOptions } from "./lib/web/web_server.ts";
import { DEFAULT_WEB_ADDRESS, parseWebAddress } from "./lib/web/web_access.ts";
import { DEFAULT_WEB_HISTORY, genericView } from "./lib/web/web_history.ts";
import denoJson from "./deno.json" with { type: "json" };

const VERSION = denoJson.version;

const COMMON_OPTIONS: readonly OptionSpec[] = [
  {
    name: "pid",
    short: "p",
    type: "string",
    multiple: true,
    arg: "PID",
    help: "only this process (repeatable)",
  },
  {
    name: "follow-children",
    type: "boolean",
    help: "with -p: also what those processes fork or exec later",
  },
  { name: "uid", short: "u", type: "string", arg: "UID", help: "only processes of this user id" },
  { name: "comm", short: "c", type: "string", arg: "NAME", help: "only processes of this name" },
  {
    name: "cgroup",
    type: "string",
    arg: "PATH",
    help: "only processes in this cgroup v2 (a container, a systemd unit) or below",
  },
  {
    name: "no-follow",
    type: "boolean",
    help: "probe only what is found at start, not what processes started later map",
  },
  {
    name: "list-targets",
    type: "boolean",
    help: "print the files ecap would probe (inode, version, processes) and exit",
  },
  { name: "json", type: "boolean", help: "one JSON object per event, then one with stats" },
  {
    name: "output",
    short: "o",
    type: "string",
    arg: "FILE",
    help: "write events to FILE (created 0600, appended to) instead of stdout",
  },
  {
    name: "duration",
    type: "string",
    arg: "SECONDS",
    help: "stop after this many seconds (default: until Ctrl-C)",
  },
  {
    name: "mapsize",
    type: "string",
    arg: "BYTES",
    help: "ring buffer size, e.g. 8M (default 8M; rounded up to a power of two)",
  },
  {
    name: "nice",
    type: "string",
    arg: "N",
    help: "ecap's CPU priority, -20 to 19 (default -10: under full load the traced " +
      "processes wait for ecap rather than it losing their records; 0 leaves it as is)",
  },
  {
    name: "web",
    type: "string",
    arg: "[ADDR:]PORT",
    help: `also serve a live view of the capture to a browser (default ${DEFAULT_WEB_ADDRESS}; ` +
      "an address beyond loopback needs a token)",
  },
  {
    name: "web-token",
    type: "string",
    arg: "TOKEN",
    help: "the token the view asks every request for (default: none on loopback, else a " +
      "random one, printed once; ECAP_WEB_TOKEN keeps it out of ps)",
  },
  {
    name: "web-history",
    type: "string",
    arg: "N",
    help: `rows the view keeps, the oldest dropped and counted (default ${DEFAULT_WEB_HISTORY})`,
  },
  { name: "verbose", short: "d", type: "boolean", help: "show kernel logs and stack traces" },
  {
    name: "debug",
    type: "boolean",
    help: "--verbose, and log each file probed or released while capturing",
  },
  { name: "help", short: "h", type: "boolean", help: "show this help" },
];

function optionHelp(opts: readonly OptionSpec[]): string {
  const rows = opts.map((o) => {
    const flag = `${o.short ? `-${o.short}, ` : "    "}--${o.name}${o.arg ? ` ${o.arg}` : ""}`;
    return `  ${flag.padEnd(28)} ${o.help}`;
  });
  return rows.join("\n");
}

async function mainHelp(): Promise<string> {
  const mods = (await loadAllModules()).map((m) => `  ${m.name.padEnd(10)} ${m.summary}`);
  return [
    `ecap ${VERSION}: see what processes say in the clear, with eBPF`,
    "",
    "Usage: ecap MODULE [options]",
    "",
    "Modules:",
    ...mods,
    "",
    "Options of every module:",
    optionHelp(COMMON_OPTIONS),
    "",
    "Run `ecap MODULE --help` for a module's own options. Needs root.",
  ].join("\n");
}

function moduleHelp(spec: ModuleSpec<CommonOptions, EventBase>): string {
  return [
    `ecap ${spec.name}: ${spec.summary}`,
    "",
    `Usage: ecap ${spec.name} [options]${spec.positionals ? ` [${spec.positionals}]` : ""}`,
    "",
    "Options:",
    optionHelp([...spec.options, ...COMMON_OPTIONS]),
  ].join("\n");
}

function usage(message: string): EcapError {
  return new EcapError(message, { kind: "usage", hint: "see ecap --help" });
}

function parseId(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !/^\d+$/.test(v) || Number(v) > 0xffffffff) {
    throw usage(`Invalid --${name} "${v}": expected a non-negative integer`);
  }
  return Number(v);
}

function parseSeconds(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw usage(`Invalid --duration "${v}": expected a positive number of seconds`);
  }
  return n;
}

/** What may follow a bare --web as its value (else it takes the default). */
const WEB_VALUE = /^(?:(?:\[[0-9a-fA-F:.]+\]|[\w.-]*):)?\d{1,5}$/;

/**
 * "--nice -5" as "--nice=-5": parseArgs takes a value that starts with "-"
 * for an option; and a bare "--web" as "--web=127.0.0.1:7070".
 */
function joinOptionValues(args: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--nice" && /^-\d+$/.test(args[i + 1] ?? "")) out.push(`--nice=${args[++i]}`);
    else if (args[i] === "--web") {
      out.push(`--web=${WEB_VALUE.test(args[i + 1] ?? "") ? args[++i] : DEFAULT_WEB_ADDRESS}`);
    } else out.push(args[i]);
  }
  return out;
}

function parseNice(v: unknown): number {
  if (v === undefined) return DEFAULT_NICE;
  const n = Number(v);
  if (typeof v !== "string" || !/^-?\d+$/.test(v) || n < -20 || n > 19) {
    throw usage(`Invalid --nice "${v}": expected an integer from -20 to 19`);
  }
  return n;
}

/** See --nice and lib/core/priority.ts. */
const DEFAULT_NICE = -10;

function parseSize(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const m = typeof v === "string" ? /^(\d+)([KMG]?)(i?B)?$/i.exec(v) : null;
  if (!m) throw usage(`Invalid --mapsize "${v}": expected bytes such as 8M or 65536`);
  const scale: Record<string, number> = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 };
  return Number(m[1]) * scale[m[2].toUpperCase()];
}

interface Parsed {
  spec: ModuleSpec<CommonOptions, EventBase>;
  opts: CommonOptions;
  listTargets: boolean;
  debug: boolean;
  json: boolean;
  output?: string;
  duration?: number;
  nice: number;
  verbose: boolean;
  web?: WebOptions;
}

/** Parses argv; returns a string to print (help, version) or what to run. */
async function parse(argv: string[]): Promise<Parsed | string> {
  const [first, ...rest] = argv;
  if (first === undefined || first === "-h" || first === "--help") return await mainHelp();
  if (first === "--version" || first === "-V") return `ecap ${VERSION}`;
  if (first.startsWith("-")) throw usage(`Expected a module before options, got "${first}"`);
  const spec = await loadModule(first);
  if (!spec) {
    throw usage(`Unknown module "${first}" (modules: ${Object.keys(MODULE_INDEX).join(", ")})`);
  }
  const options: Record<
    string,
    { type: "string" | "boolean"; short?: string; multiple?: boolean }
  > = {};
  for (const o of [...spec.options, ...COMMON_OPTIONS]) {
    options[o.name] = {
      type: o.type,
      ...(o.short ? { short: o.short } : {}),
      ...(o.multiple ? { multiple: true } : {}),
    };
  }
  let values: Record<string, string | boolean | undefined>;
  let pidValues: string[] = [];
  try {
    const parsed = parseArgs({
      args: joinOptionValues(rest),
      options,
      strict: true,
      allowPositionals: spec.positionals !== undefined,
    });
    const positionals = parsed.positionals;
    values = parsed.values as Record<string, string | boolean | undefined>;
    if (positionals.length > 0) values.positionals = positionals.join(" ");
    // the only option given several times
    pidValues = (values.pid ?? []) as unknown as string[];
    delete values.pid;
  } catch (e) {
    throw usage(`${(e as Error).message.split("\n")[0].replace(/\.$/, "")}`);
  }
  if (values.help) return moduleHelp(spec);
  const pids = [...new Set(pidValues.map((v) => parseId("pid", v)!))];
  if (values["follow-children"] && pids.length === 0) {
    throw usage("--follow-children needs -p PID");
  }
  const comm = values.comm;
  if (comm !== undefined && (typeof comm !== "string" || comm === "")) {
    throw usage(`Invalid --comm "${comm}": expected a task name`);
  }
  if (typeof comm === "string" && new TextEncoder().encode(comm).length > 15) {
    throw usage(`Invalid --comm "${comm}": task names are at most 15 bytes`);
  }
  const opts: CommonOptions = {
    ...spec.parseOptions(values),
    pid: pids[0],
    pids: pids.length > 0 ? pids : undefined,
    followChildren: values["follow-children"] === true,
    follow: values["no-follow"] !== true,
    uid: parseId("uid", values.uid),
    comm: comm as string | undefined,
    cgroup: typeof values.cgroup === "string" ? values.cgroup : undefined,
    mapSize: parseSize(values.mapsize),
  };
  return {
    spec,
    opts,
    listTargets: values["list-targets"] === true,
    debug: values.debug === true,
    json: values.json === true,
    output: typeof values.output === "string" ? values.output : undefined,
    duration: parseSeconds(values.duration),
    nice: parseNice(values.nice),
    verbose: values.verbose === true || values.debug === true,
    web: parseWeb(values),
  };
}

function parseWeb(values: Record<string, string | boolean | undefined>): WebOptions | undefined {
  const { web } = values;
  const token = values["web-token"] ?? Deno.env.get("ECAP_WEB_TOKEN");
  const history = values["web-history"];
  if (web === undefined) {
    if (values["web-token"] !== undefined || history !== undefined) {
      throw usage("--web-token and --web-history go with --web");
    }
    return undefined;
  }
  if (typeof token === "string" && !/^[\x21-\x7e]{8,}$/.test(token)) {
    throw usage("Invalid --web-token: expected at least 8 printable characters, no spaces");
  }
  const n = history === undefined ? DEFAULT_WEB_HISTORY : Number(history);
  if (!Number.isInteger(n) || n < 1 || String(history ?? n).trim() === "") {
    throw usage(`Invalid --web-history "${history}": expected a positive number of rows`);
  }
  return {
    address: parseWebAddress(String(web)),
    token: typeof token === "string" ? token : undefined,
    history: n,
  };
}

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
  if (p.listTargets) return await listTargets(p);
  const file = p.output ? openOutputFile(p.output) : undefined;
  const out = new OutputSink(file ?? Deno.stdout, p.output ?? "stdout");
  const started = performance.now();
  // a sink's files are opened (or refused, in one line) before anything loads
  const sink = p.spec.createSink?.(p.opts);
  let cap: RunningCapture<EventBase>;
  // so is the view's address (a port in use)
  // (its counters read the capture once there is one)
  const web = p.web && startWeb(p, () => cap as RunningCapture<EventBase> | undefined);
  signals.captureStarting(); // a signal while it loads stops it once loaded
  const hooks = { log: p.debug ? (line: string) => console.error(`ecap: ${line}`) : undefined };
  try {
    // ecap tls: every TLS library family at once (lib/modules/tls_all.ts)
    cap = p.spec.name === "tls"
      ? await startTls(p.opts as TlsOptions, hooks)
      : await Capture.start(p.spec, p.opts, hooks);
  } catch (e) {
    try {
      sink?.close();
    } catch { /* the capture's own failure is the one to tell */ }
    await web?.close();
    throw e;
  }
  if (p.nice !== 0) setOwnNice(p.nice);
  const cgroups = new CgroupNames();
  const stop = () => cap.stop();
  signals.onStop(stop);
  const timer = p.duration ? setTimeout(stop, p.duration * 1000) : undefined;
  // Documented rule: with --pid, the capture ends once those processes have
  // (with --follow-children, once their descendants have too).
  const pids = p.opts.pids ?? [];
  let exited = false;
  const watch = pids.length === 0 ? undefined : setInterval(() => {
    const followed = p.opts.followChildren ? cap.allowedPids() : [];
    if ([...pids, ...followed].some(processAlive)) return;
    exited = true;
    cap.stop();
  }, 200);
  for (const note of cap.notes) console.error(`ecap: ${note}`);
  const probed = (c: RunningCapture<EventBase>) =>
    `${c.probes.length} probes on ${
      [...new Set(c.probes.map((x) => x.where.split(":")[0]))].join(", ")
    }`;
  const family = (module: string) =>
    Object.values(TLS_LIBS).find((l) => l.module === module)?.what ?? module;
  const what = cap instanceof CaptureGroup
    ? cap.captures.map((c) => `${family(c.module)}: ${probed(c)}`).join("; ")
    : probed(cap);
  if (web) console.error(`ecap: live view at ${web.url}`);
  console.error(
    `ecap: capturing ${p.spec.name} (${what}) after ${
      Math.round(performance.now() - started)
    } ms; Ctrl-C to stop`,
  );
  let failure: unknown;
  const ticker = sink && setInterval(() => {
    try {
      sink.tick();
    } catch (e) {
      failure ??= e;
      cap.stop();
    }
  }, 250);
  // times in text are HH:MM:SS: a line names the day (in files, the first too)
  const days = new DayLines(p.output !== undefined);
  const dayLine = (ev: EventBase) => {
    const d = days.next(ev.timeNs);
    return d === undefined ? "" : d + "\n";
  };
  try {
    for await (const batch of cap.batches()) {
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
      if (text && !out.write(text)) cap.stop(); // stdout closed (`| head -1`): end quietly
      if (failure) break;
    }
  } catch (e) {
    failure = e; // e.g. a full disk: what was written stays, the probes go
  } finally {
    clearTimeout(timer);
    clearInterval(watch);
    clearInterval(ticker);
    await cap[Symbol.asyncDispose]();
    await web?.close();
  }
  try {
    const summary = sink?.close();
    if (summary) console.error(`ecap: ${summary}`);
  } catch (e) {
    failure ??= e;
  }
  const s = cap.stats();
  if (exited) console.error(`ecap: process ${pids.join(", ")} exited`);
  const why = [
    s.lost > s.unfollowed ? `per CPU: ${s.lostPerCpu.join(" ")}; raise --mapsize` : "",
    s.unfollowed ? `${s.unfollowed} calls not followed` : "",
  ].filter((w) => w).join("; ");
  const perCpu = why ? ` (${why})` : "";
  const extra = [
    s.truncated ? `, ${s.truncated} cut at cap` : "",
    s.malformed ? `, ${s.malformed} malformed` : "",
  ].join("");
  console.error(`ecap: ${s.events} events, ${s.lost} lost${perCpu}${extra}`);
  if (p.json && !failure) {
    const stats = {
      records: s.records,
      events: s.events,
      lost: s.lost,
      lost_per_cpu: s.lostPerCpu,
      unfollowed: s.unfollowed,
      truncated: s.truncated,
      malformed: s.malformed,
    };
    try {
      out.write(JSON.stringify({ module: p.spec.name, stats }) + "\n");
    } catch (e) {
      failure = e;
    }
  }
  file?.close();
  if (failure) throw failure;
  return 0;
}

const NO_STATS = {
  records: 0,
  lostPerCpu: [],
  unfollowed: 0,
  lost: 0,
  truncated: 0,
  malformed: 0,
  events: 0,
};

/** --web: listens before the capture starts, so that a port in use costs nothing. */
function startWeb(
  p: Parsed,
  capture: () => RunningCapture<EventBase> | undefined,
): WebView<EventBase> {
  const { spec, opts } = p;
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
  let verbose = argv.includes("--verbose") || argv.includes("-d") || argv.includes("--debug");
  try {
    const p = await parse(argv);
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

if (import.meta.main) Deno.exit(await main(Deno.args));
