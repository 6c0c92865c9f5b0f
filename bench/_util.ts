/**
 * What the benchmarks share: the result rows, statistics, child processes
 * (ecap's CLI among them), and the small C helpers they compile.
 * @module
 */
import emptyObject from "../build/bench_empty.bpf.o" with { type: "bytes" };
import type { CommonOptions, EventBase, ModuleSpec } from "../lib/core/module_spec.ts";
import { V8_FLAGS_ARG } from "../lib/core/v8_flags.ts";

export const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
export const BUILD = `${ROOT}/build/bench`;
const HOME = Deno.env.get("HOME") ?? "/root";
export const DEPS = Deno.env.get("ECAP_DEPS") ?? `${HOME}/.cache/ecap/deps-v1`;

/**
 * A module's hooks with empty handlers (kern/bench_empty.bpf.c): what the
 * traps alone cost, the baseline ecap's own programs are compared with.
 */
export function emptyProbesOf<O extends CommonOptions>(
  spec: ModuleSpec<O, EventBase>,
): ModuleSpec<O, EventBase> {
  return {
    ...spec,
    name: `bench-empty-${spec.name}`,
    object: emptyObject,
    globals: () => ({}),
    mapSizes: () => ({}),
    decoder: () => ({ decode: () => [], flush: () => [] }),
    createSink: undefined,
  };
}

/** One line of the final table. */
export interface Row {
  bench: string;
  figure: string;
  /** The measured figure, formatted. */
  value: string;
  /** The baseline it is compared with, formatted ("-" if none). */
  baseline: string;
  /** value ÷ baseline (or the figure the target applies to), formatted. */
  ratio: string;
  /** The target, as text ("-" for figures reported without one). */
  target: string;
  /** true: met; false: missed; undefined: no target. */
  pass?: boolean;
}

/** Options every benchmark gets. */
export interface BenchOptions {
  quick: boolean;
  /** Scratch directory (removed at the end). */
  tmp: string;
  log: (line: string) => void;
}

export function median(xs: number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

export function percentile(xs: number[], p: number): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil((p / 100) * v.length) - 1))];
}

/** A number for the table: 3 significant digits, thousands grouped. */
export function fmt(n: number, unit = ""): string {
  if (!Number.isFinite(n)) return "n/a";
  const abs = Math.abs(n);
  const s = abs >= 100
    ? Math.round(n).toLocaleString("en-US")
    : abs >= 10
    ? n.toFixed(1)
    : abs >= 1
    ? n.toFixed(2)
    : n.toFixed(3);
  return unit ? `${s} ${unit}` : s;
}

export function ratioText(r: number): string {
  return Number.isFinite(r) ? r.toFixed(3) : "n/a";
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const decoder = new TextDecoder();

/** Runs a command to completion; throws with its stderr when it fails (unless allowFail). */
export async function sh(
  cmd: string,
  args: string[],
  opts: { allowFail?: boolean; cwd?: string; env?: Record<string, string> } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(cmd, {
    args,
    cwd: opts.cwd,
    env: opts.env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const r = {
    code: out.code,
    stdout: decoder.decode(out.stdout),
    stderr: decoder.decode(out.stderr),
  };
  if (r.code !== 0 && !opts.allowFail) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim().slice(-2000)}`);
  }
  return r;
}

export async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

export async function which(cmd: string): Promise<string | undefined> {
  const r = await sh("sh", ["-c", `command -v ${cmd}`], { allowFail: true });
  return r.code === 0 ? r.stdout.trim() : undefined;
}

async function mtime(path: string): Promise<number> {
  try {
    return (await Deno.stat(path)).mtime?.getTime() ?? 0;
  } catch {
    return 0;
  }
}

/** Compiles bench/NAME.c into build/bench/NAME when stale; returns the binary's path. */
export async function compileHelper(name: string, args: string[]): Promise<string> {
  await Deno.mkdir(BUILD, { recursive: true });
  const src = `${ROOT}/bench/${name}.c`;
  const out = `${BUILD}/${name}`;
  if (await mtime(out) > await mtime(src)) return out;
  await sh("gcc", ["-O2", "-g", "-Wall", "-Wextra", "-Werror", "-o", out, src, ...args]);
  return out;
}

/** Builds bench/NAME.go with the system's Go, offline (Go's cache makes it seconds). */
export async function compileGoHelper(name: string): Promise<string> {
  await Deno.mkdir(BUILD, { recursive: true });
  const src = `${ROOT}/bench/${name}.go`;
  const out = `${BUILD}/${name}`;
  if (await mtime(out) > await mtime(src)) return out;
  const cache = `${HOME}/.cache/ecap/go`;
  const r = await new Deno.Command("go", {
    args: ["build", "-o", out, src],
    env: {
      PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
      HOME,
      GOPATH: `${cache}/path`,
      GOCACHE: `${cache}/build`,
      GOTOOLCHAIN: "local",
      GOPROXY: "off",
      GO111MODULE: "off",
      CGO_ENABLED: "0",
    },
    clearEnv: true,
  }).output();
  if (r.code !== 0) throw new Error(`go build ${src}: ${new TextDecoder().decode(r.stderr)}`);
  return out;
}

/** Peak resident set size (VmHWM) of a live process, in bytes; NaN once gone. */
export function peakRss(pid: number): number {
  try {
    const m = /^VmHWM:\s*(\d+) kB$/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** Busy and total CPU ticks of the whole machine, from /proc/stat. */
export function cpuTicks(): { busy: number; total: number } {
  const f = Deno.readTextFileSync("/proc/stat").split("\n")[0].trim().split(/\s+/).slice(1)
    .map(Number);
  const busy = f[0] + f[1] + f[2] + f[5] + f[6];
  return { busy, total: busy + f[3] + f[4] + (f[7] ?? 0) };
}

/** A child process whose output is collected as text while it runs. */
export class Proc implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  stdout = "";
  stderr = "";
  /** Called with each stdout chunk as it arrives, with its arrival time (ms, performance.now()). */
  onStdout?: (text: string, at: number) => void;
  readonly done: Promise<number>;
  exited = false;

  constructor(
    cmd: string,
    args: string[],
    opts: { env?: Record<string, string>; keepStdout?: boolean } = {},
  ) {
    this.child = new Deno.Command(cmd, {
      args,
      env: opts.env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const keep = opts.keepStdout ?? true;
    const pump = async (s: ReadableStream<Uint8Array>, out: "stdout" | "stderr") => {
      const d = new TextDecoder();
      for await (const chunk of s) {
        const t = d.decode(chunk, { stream: true });
        if (out === "stdout") {
          this.onStdout?.(t, performance.now());
          if (keep) this.stdout += t;
        } else {
          this.stderr += t;
        }
      }
    };
    const a = pump(this.child.stdout, "stdout");
    const b = pump(this.child.stderr, "stderr");
    this.done = Promise.all([a, b, this.child.status]).then(([, , s]) => {
      this.exited = true;
      return s.code;
    });
  }

  get pid(): number {
    return this.child.pid;
  }

  /** Waits until pred holds on the collected output; false when it exits or times out first. */
  async waitFor(pred: () => boolean, timeoutMs: number): Promise<boolean> {
    const end = performance.now() + timeoutMs;
    while (!pred()) {
      if (this.exited || performance.now() > end) return pred();
      await sleep(5);
    }
    return true;
  }

  signal(sig: Deno.Signal) {
    try {
      this.child.kill(sig);
    } catch { /* gone */ }
  }

  /** SIGINT (or sig), then SIGKILL after graceMs; resolves with the exit code. */
  async stop(sig: Deno.Signal = "SIGINT", graceMs = 10_000): Promise<number> {
    if (this.exited) return await this.done;
    this.signal(sig);
    const timer = setTimeout(() => this.signal("SIGKILL"), graceMs);
    try {
      return await this.done;
    } finally {
      clearTimeout(timer);
    }
  }

  async [Symbol.asyncDispose]() {
    await this.stop("SIGKILL");
  }
}

/** The ecap CLI as a user runs it: `deno run -A cli.ts ARGS`. */
export class Ecap extends Proc {
  /** ms from spawn to the "capturing" line. */
  startupMs = NaN;

  private constructor(args: string[], keepStdout: boolean) {
    super(Deno.execPath(), ["run", "-A", V8_FLAGS_ARG, `${ROOT}/cli.ts`, ...args], { keepStdout });
  }

  /** Spawns ecap and waits until it says it is capturing (throws if it does not). */
  static async start(args: string[], opts: { keepStdout?: boolean } = {}): Promise<Ecap> {
    const t0 = performance.now();
    const e = new Ecap(args, opts.keepStdout ?? true);
    const ok = await e.waitFor(() => e.stderr.includes("capturing"), 60_000);
    if (!ok) {
      await e.stop("SIGKILL");
      throw new Error(`ecap ${args.join(" ")} did not start: ${e.stderr.trim()}`);
    }
    e.startupMs = performance.now() - t0;
    return e;
  }

  /**
   * Stops ecap (SIGINT) and returns its summary; throws when it exits
   * non-zero or without one: a figure measured with a broken ecap is a MISS.
   */
  async finish(): Promise<{ events: number; lost: number; shed: number }> {
    const code = await this.stop();
    const s = this.summary();
    if (code !== 0 || !s) {
      throw new Error(
        `ecap exited ${code}${s ? "" : " without its summary"}: ${this.stderr.trim()}`,
      );
    }
    return s;
  }

  /**
   * The final summary's counts: "ecap: N events, M lost", and records kept
   * short while the ring was over half full (0 when it says none).
   */
  summary(): { events: number; lost: number; shed: number } | undefined {
    const m = /ecap: (\d+) events, (\d+) lost.*/.exec(this.stderr);
    if (!m) return undefined;
    const shed = Number(/(\d+) kept short/.exec(m[0])?.[1] ?? 0);
    return { events: Number(m[1]), lost: Number(m[2]), shed };
  }
}

/** A self-signed EC certificate and key for a TLS server on loopback. */
export async function selfSignedCert(cn: string, key: string, cert: string) {
  await sh("openssl", [
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-days",
    "2",
    "-subj",
    `/CN=${cn}`,
    "-keyout",
    key,
    "-out",
    cert,
  ]);
}
