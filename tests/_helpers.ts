/**
 * What the capture tests share: a gate on the kernel features they need, a
 * tmux-driven shell, and the ecap CLI run as a child process.
 * @module
 */
import { V8_FLAGS_ARG } from "../lib/core/v8_flags.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const textDecoder = new TextDecoder();

/** Why BPF tests cannot run here, or undefined when they can. */
export function bpfUnavailableReason(): string | undefined {
  const status = Deno.readTextFileSync("/proc/self/status");
  const caps = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1] ?? "0"}`);
  const has = (c: bigint) => (caps >> c & 1n) === 1n;
  if (!has(21n) && !(has(38n) && has(39n))) return "not root (no CAP_BPF/CAP_PERFMON)";
  try {
    Deno.statSync("/sys/kernel/btf/vmlinux");
  } catch {
    return "kernel has no BTF (/sys/kernel/btf/vmlinux)";
  }
  return undefined;
}

const skipReason = bpfUnavailableReason();

/** What the running test waits for now: named when it overruns its limit. */
let waitingFor = "";

/** A BPF test's default time limit: a hang fails it, saying what it waited for. */
export const TEST_LIMIT_MS = 180_000;

/**
 * A test that loads BPF programs: skipped, saying why, where the kernel
 * cannot; failed once it runs longer than limitMs.
 */
export function bpfTest(
  name: string,
  fn: () => Promise<void>,
  { limitMs = TEST_LIMIT_MS }: { limitMs?: number } = {},
) {
  if (skipReason) console.error(`skip: ${name}: ${skipReason}`);
  Deno.test({
    name,
    ignore: skipReason !== undefined,
    fn: () => withinLimit(fn, limitMs),
    sanitizeResources: false,
    sanitizeOps: false,
  });
}

/** Runs fn; rejects once it has run limitMs, naming what it last waited for. */
export async function withinLimit(fn: () => Promise<void>, limitMs: number) {
  waitingFor = "";
  await deadline(fn(), limitMs, () => {
    const what = waitingFor ? `; it was waiting for ${waitingFor}` : "";
    return new Error(`the test ran past its limit of ${limitMs / 1000} s${what}`);
  });
}

/** promise, or the error overrun() makes once ms have passed without it. */
async function deadline<T>(promise: Promise<T>, ms: number, overrun: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(overrun()), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls cond every 50 ms until it holds; throws with `what` after timeoutMs. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 10_000,
) {
  const end = Date.now() + timeoutMs;
  waitingFor = what;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  waitingFor = "";
}

/** Resolves with promise, or rejects after timeoutMs naming `what`. */
export async function bounded<T>(promise: Promise<T>, what: string, timeoutMs: number) {
  waitingFor = what;
  try {
    return await deadline(
      promise,
      timeoutMs,
      () => new Error(`timed out after ${timeoutMs} ms waiting for ${what}`),
    );
  } finally {
    waitingFor = "";
  }
}

/** Runs a command to completion; returns its output as text. */
export async function sh(cmd: string, args: string[]) {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  return {
    code: out.code,
    stdout: textDecoder.decode(out.stdout),
    stderr: textDecoder.decode(out.stderr),
  };
}

let sessions = 0;

/** Runs tmux against the server named after the session (-L). */
function tmux(session: string, args: string[]) {
  return sh("tmux", ["-L", session, ...args]);
}

/** An interactive program in a detached tmux session, typed into like a person. */
export class TmuxPane implements AsyncDisposable {
  readonly session: string;
  readonly pid: number;

  private constructor(session: string, pid: number) {
    this.session = session;
    this.pid = pid;
  }

  /** Starts argv in a new tmux session and waits for it to print something. */
  static async start(argv: string[]): Promise<TmuxPane> {
    // A tmux server of its own: a shared one exits with its last session, and
    // a session started meanwhile fails with "server exited unexpectedly".
    const session = `ecap-test-${Deno.pid}-${++sessions}`;
    const r = await tmux(session, [
      "new-session",
      "-d",
      "-s",
      session,
      "-x",
      "250",
      "-y",
      "50",
      ...argv,
    ]);
    if (r.code !== 0) throw new Error(`tmux new-session failed: ${r.stderr}`);
    const pid = Number(
      (await tmux(session, ["display", "-p", "-t", session, "#{pane_pid}"])).stdout,
    );
    const pane = new TmuxPane(session, pid);
    await waitFor(async () => (await pane.screen()).trim().length > 0, `a prompt in ${argv[0]}`);
    return pane;
  }

  /** Types text literally, then Enter. */
  async type(text: string) {
    // tmux refuses long commands: type long text in pieces
    for (let i = 0; i < text.length; i += 1000) {
      const r = await tmux(this.session, [
        "send-keys",
        "-t",
        this.session,
        "-l",
        text.slice(i, i + 1000),
      ]);
      if (r.code !== 0) throw new Error(`tmux send-keys failed: ${r.stderr}`);
    }
    await tmux(this.session, ["send-keys", "-t", this.session, "Enter"]);
  }

  /** Presses keys by tmux's names, e.g. "C-c". */
  async press(...keys: string[]) {
    const r = await tmux(this.session, ["send-keys", "-t", this.session, ...keys]);
    if (r.code !== 0) throw new Error(`tmux send-keys failed: ${r.stderr}`);
  }

  /** What the pane shows now. */
  async screen(): Promise<string> {
    return (await tmux(this.session, ["capture-pane", "-p", "-t", this.session])).stdout;
  }

  async [Symbol.asyncDispose]() {
    await tmux(this.session, ["kill-server"]);
  }
}

/** The ecap CLI running as a child, exactly as a user would run it. */
export class EcapRun implements AsyncDisposable {
  #child: Deno.ChildProcess;
  #stdout = "";
  #stderr = "";
  #done: Promise<number>;
  /** Milliseconds from spawn to the "capturing" line. */
  startupMs = 0;

  private constructor(child: Deno.ChildProcess, readStdout: boolean) {
    this.#child = child;
    const pump = async (s: ReadableStream<Uint8Array>, onText: (t: string) => void) => {
      const d = new TextDecoder();
      for await (const chunk of s) onText(d.decode(chunk, { stream: true }));
    };
    // unread, it is cancelled once ecap has exited
    const a = readStdout
      ? pump(child.stdout, (t) => this.#stdout += t)
      : child.status.then(() => child.stdout.cancel());
    const b = pump(child.stderr, (t) => this.#stderr += t);
    this.#done = Promise.all([a, b, child.status]).then(([, , s]) => s.code);
  }

  /** Spawns `deno run cli.ts ...args`; with wait, resolves once it is capturing. */
  static async start(
    args: string[],
    opts: {
      wait?: boolean;
      env?: Record<string, string>;
      prefix?: string[];
      /** false: stdout is a pipe nobody reads (a stalled reader). */
      readStdout?: boolean;
    } = {},
  ) {
    const argv = [
      ...(opts.prefix ?? []),
      Deno.execPath(),
      "run",
      "-A",
      V8_FLAGS_ARG,
      `${ROOT}cli.ts`,
      ...args,
    ];
    const child = new Deno.Command(argv[0], {
      args: argv.slice(1),
      stdout: "piped",
      stderr: "piped",
      stdin: "null",
      env: opts.env,
    }).spawn();
    const run = new EcapRun(child, opts.readStdout ?? true);
    if (opts.wait ?? true) {
      const t0 = performance.now();
      let exited = false;
      run.#done.then(() => exited = true);
      await waitFor(
        () => run.#stderr.includes("capturing") || exited,
        "ecap to say it is capturing",
        30_000,
      );
      if (!run.#stderr.includes("capturing")) {
        throw new Error(`ecap exited before capturing: ${run.#stderr}`);
      }
      run.startupMs = performance.now() - t0;
    }
    return run;
  }

  get stdout(): string {
    return this.#stdout;
  }

  get stderr(): string {
    return this.#stderr;
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Events: the lines of --json output, less the closing stats record. */
  json(): Record<string, unknown>[] {
    return this.#records().filter((r) => !("stats" in r));
  }

  /** The closing stats record of --json output, once ecap has exited. */
  stats(): Record<string, unknown> | undefined {
    return this.#records().find((r) => "stats" in r)?.stats as Record<string, unknown>;
  }

  #records(): Record<string, unknown>[] {
    // the last line may still be arriving
    const complete = this.#stdout.slice(0, this.#stdout.lastIndexOf("\n") + 1);
    return complete.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
  }

  /**
   * Sends a signal (SIGINT by default) and waits for the exit code, at most
   * 30 s. SIGINT and SIGTERM must end ecap with 0: anything else throws.
   */
  async stop(signal: Deno.Signal = "SIGINT"): Promise<number> {
    try {
      this.#child.kill(signal);
    } catch { /* already gone */ }
    const code = await bounded(this.#done, `ecap to exit after ${signal}`, 30_000);
    if ((signal === "SIGINT" || signal === "SIGTERM") && code !== 0) {
      throw new Error(`ecap exited ${code} after ${signal}: ${this.#stderr}`);
    }
    return code;
  }

  /** Waits for it to exit by itself, at most timeoutMs. */
  wait(timeoutMs = 60_000): Promise<number> {
    return bounded(this.#done, "ecap to exit", timeoutMs).catch((e) => {
      throw new Error(`${e.message} (stderr: ${this.#stderr.slice(-500)})`);
    });
  }

  async [Symbol.asyncDispose]() {
    await this.stop("SIGKILL");
  }
}

/** Ids of the BPF programs currently loaded in the kernel (bpftool's view). */
export async function loadedProgramIds(): Promise<Set<number>> {
  const r = await sh("bpftool", ["prog", "show", "-j"]);
  if (r.code !== 0) throw new Error(`bpftool prog show failed: ${r.stderr}`);
  return new Set((JSON.parse(r.stdout) as { id: number }[]).map((p) => p.id));
}

/** BPF programs and links this process holds, from /proc/self/fd and fdinfo. */
export function ownBpfObjects(): { progIds: number[]; links: number } {
  const progIds: number[] = [];
  let links = 0;
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = Deno.readLinkSync(`/proc/self/fd/${e.name}`);
    } catch {
      continue;
    }
    if (target.includes("bpf_link") || target.includes("perf_event")) links++;
    if (target.includes("bpf-prog")) {
      const info = Deno.readTextFileSync(`/proc/self/fdinfo/${e.name}`);
      const id = /^prog_id:\s*(\d+)$/m.exec(info);
      if (id) progIds.push(Number(id[1]));
    }
  }
  return { progIds, links };
}
