/**
 * The bash module against real interactive shells driven through tmux.
 * @module
 */
import assert from "node:assert/strict";
import { capture } from "../mod.ts";
import type { BashEvent } from "../mod.ts";
import {
  bpfTest,
  EcapRun,
  loadedProgramIds,
  ownBpfObjects,
  sh,
  TmuxPane,
  waitFor,
} from "./_helpers.ts";

const BASH = ["bash", "--norc", "--noprofile", "-i"];

type Json = Record<string, unknown>;

function linesOf(run: EcapRun, pid: number): Json[] {
  return run.json().filter((e) => e.pid === pid);
}

async function typedUntil(run: EcapRun, pane: TmuxPane, marker: string) {
  await pane.type(`echo ${marker}`);
  await waitFor(() => run.stdout.includes(marker), `"${marker}" in ecap's output`);
}

bpfTest("ecap bash captures typed commands in order with exact text and status", async () => {
  await using run = await EcapRun.start(["bash", "--json"]);
  await using pane = await TmuxPane.start(BASH);
  const long = `echo ${"x".repeat(1995)}`; // a 2,000-character line
  const huge = `echo ${"0123456789".repeat(2500)}`; // 25,005: several 8 KiB chunks
  const utf8 = "echo 'héllo wörld ✓ 日本語'";
  const typed = [
    "true",
    "false",
    "ls /nonexistent",
    long,
    utf8,
    huge,
    "if then",
    "for i in 1 2; do",
  ];
  for (const t of typed) await pane.type(t);
  await pane.type("echo $i; done");
  await typedUntil(run, pane, "ecap-marker-1");
  await pane.type("exit 3");
  await waitFor(() => run.stdout.includes('"exit 3"'), "exit 3 in ecap's output");
  assert.equal(await run.stop(), 0);

  const got = linesOf(run, pane.pid).map((e) => [e.line, e.status, e.end]);
  assert.deepEqual(got, [
    ["true", 0, "return"],
    ["false", 1, "return"],
    ["ls /nonexistent", 2, "return"],
    [long, 0, "return"],
    [utf8, 0, "return"],
    [huge, 0, "return"],
    ["if then", 2, "syntax"],
    ["for i in 1 2; do\necho $i; done", 0, "return"],
    ["echo ecap-marker-1", 0, "return"],
    ["exit 3", 3, "exit"],
  ]);
  const first = linesOf(run, pane.pid)[0];
  assert.equal(first.comm, "bash");
  assert.equal(first.uid, 0);
  assert.match(String(first.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.match(run.stderr, /ecap: 10 events, 0 lost/);
});

bpfTest("ecap bash reports exec, which never returns to the shell", async () => {
  await using run = await EcapRun.start(["bash", "--json"]);
  await using pane = await TmuxPane.start(BASH);
  await pane.type("exec true");
  await waitFor(() => run.stdout.includes("exec true"), "exec true in ecap's output");
  await run.stop();
  const ev = linesOf(run, pane.pid);
  assert.deepEqual(ev.map((e) => [e.line, e.status, e.end, e.comm]), [
    ["exec true", null, "exec", "bash"],
  ]);
});

bpfTest("ecap bash --pid keeps one shell and excludes another", async () => {
  await using a = await TmuxPane.start(BASH);
  await using b = await TmuxPane.start(BASH);
  await using run = await EcapRun.start(["bash", "--json", "--pid", String(a.pid)]);
  await b.type("echo from-b");
  await a.type("echo from-a");
  await typedUntil(run, a, "ecap-marker-2");
  await run.stop();
  const lines = run.json().map((e) => e.line);
  assert.deepEqual(lines, ["echo from-a", "echo ecap-marker-2"]);
  assert.ok(run.json().every((e) => e.pid === a.pid));
});

bpfTest("ecap bash --uid keeps one user's shells", async () => {
  await using root = await TmuxPane.start(BASH);
  await using nobody = await TmuxPane.start([
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    ...BASH,
  ]);
  await using run = await EcapRun.start(["bash", "--json", "-u", "65534"]);
  await root.type("echo as-root");
  await nobody.type("echo as-nobody");
  await typedUntil(run, nobody, "ecap-marker-3");
  await run.stop();
  assert.deepEqual(run.json().map((e) => [e.line, e.uid]), [
    ["echo as-nobody", 65534],
    ["echo ecap-marker-3", 65534],
  ]);
});

bpfTest("ecap bash -e 1 keeps only commands that returned 1", async () => {
  await using pane = await TmuxPane.start(BASH);
  await using run = await EcapRun.start(["bash", "--json", "-e", "1", "-p", String(pane.pid)]);
  for (const t of ["true", "false", "ls /nonexistent", "(exit 1)"]) await pane.type(t);
  await pane.type("false # ecap-marker-4");
  await waitFor(() => run.stdout.includes("ecap-marker-4"), "the marker");
  await run.stop();
  assert.deepEqual(run.json().map((e) => e.line), ["false", "(exit 1)", "false # ecap-marker-4"]);
});

bpfTest("ecap bash text output shows time, pid, uid, comm, status and line", async () => {
  await using pane = await TmuxPane.start(BASH);
  await using run = await EcapRun.start(["bash", "-p", String(pane.pid)]);
  await pane.type("false");
  await waitFor(() => run.stdout.includes("    false"), "the line");
  await run.stop();
  assert.match(
    run.stdout,
    new RegExp(
      `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} pid=${pane.pid} uid=0 comm=bash status=1\\n    false\\n`,
    ),
  );
});

bpfTest("ecap bash -o FILE writes the events after a line naming the day", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-out-" });
  try {
    await using pane = await TmuxPane.start(BASH);
    await using run = await EcapRun.start(["bash", "-p", String(pane.pid), "-o", `${dir}/out`]);
    await pane.type("true # day");
    await waitFor(
      async () => (await Deno.readTextFile(`${dir}/out`).catch(() => "")).includes("# day"),
      "the line in the file",
    );
    assert.equal(await run.stop(), 0);
    const d = new Date();
    const today = `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${
      String(d.getDate()).padStart(2, "0")
    }`;
    assert.match(
      await Deno.readTextFile(`${dir}/out`),
      new RegExp(
        `^--- ${today} ---\n\\d\\d:\\d\\d:\\d\\d\\.\\d{3} pid=${pane.pid} .*\n    true # day\n$`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap bash stops on SIGTERM and --duration, printing a summary", async () => {
  await using timed = await EcapRun.start(["bash", "--duration", "0.5"]);
  const t0 = performance.now(); // it said "capturing": the half second has begun
  assert.equal(await timed.wait(), 0);
  const ms = performance.now() - t0;
  assert.ok(ms > 400 && ms < 2_500, `--duration 0.5 ended ${Math.round(ms)} ms after capturing`);
  assert.match(timed.stderr, /ecap: 0 events, 0 lost/);

  await using run = await EcapRun.start(["bash"]);
  const t1 = performance.now();
  assert.equal(await run.stop("SIGTERM"), 0);
  const stopMs = performance.now() - t1;
  assert.ok(stopMs < 500, `stopped ${Math.round(stopMs)} ms after SIGTERM`);
  assert.match(run.stderr, /events, 0 lost/);
});

bpfTest("capture() yields the same events and releases every link when disposed", async () => {
  assert.deepEqual(ownBpfObjects(), { progIds: [], links: 0 });
  await using pane = await TmuxPane.start(BASH);
  const events: BashEvent[] = [];
  let progIds: number[];
  {
    await using cap = await capture("bash", { pid: pane.pid });
    assert.equal(cap.linkCount, 7);
    const held = ownBpfObjects();
    progIds = held.progIds;
    assert.equal(held.links, 7);
    assert.ok(progIds.length >= 7);
    const loaded = await loadedProgramIds();
    assert.ok(progIds.every((id) => loaded.has(id)), "bpftool lists our programs");
    await pane.type("echo via-library");
    await pane.type("false");
    for await (const ev of cap) {
      events.push(ev);
      if (ev.line === "false") break;
    }
    assert.equal(cap.linkCount, 0); // ending the loop closes the capture
  }
  assert.deepEqual(events.map((e) => [e.line, e.status, e.end, e.pid, e.module]), [
    ["echo via-library", 0, "return", pane.pid, "bash"],
    ["false", 1, "return", pane.pid, "bash"],
  ]);
  assert.deepEqual(ownBpfObjects(), { progIds: [], links: 0 });
  // the kernel frees a program after an RCU grace period, not at close
  await waitFor(
    async () => {
      const loaded = await loadedProgramIds();
      return progIds.every((id) => !loaded.has(id));
    },
    "bpftool to stop listing our programs",
    5_000,
  );
});

bpfTest("capture() disposed while waiting for events ends promptly", async () => {
  await using cap = await capture("bash", { pid: Deno.pid });
  const it = cap[Symbol.asyncIterator]();
  const next = it.next();
  await new Promise((r) => setTimeout(r, 100));
  const t0 = performance.now();
  await cap[Symbol.asyncDispose]();
  assert.deepEqual(await next, { value: undefined, done: true });
  assert.ok(performance.now() - t0 < 1000);
  assert.equal(cap.linkCount, 0);
});

Deno.test("ecap rejects an unknown option with one line and exit code 2", async () => {
  await using run = await EcapRun.start(["bash", "--no-such-option"], { wait: false });
  assert.equal(await run.wait(), 2);
  const lines = run.stderr.trim().split("\n");
  assert.equal(lines.length, 1);
  assert.equal(lines[0], "ecap: Unknown option --no-such-option (see ecap bash --help)");
});

Deno.test("ecap rejects an unknown module with one line and exit code 2", async () => {
  await using run = await EcapRun.start(["bsah"], { wait: false });
  assert.equal(await run.wait(), 2);
  assert.equal(run.stderr, 'ecap: Unknown module "bsah" (did you mean bash?)\n');
});

Deno.test("ecap refuses to run without CAP_BPF, in one line, with exit code 3", async () => {
  await using run = await EcapRun.start(["bash"], {
    wait: false,
    prefix: ["setpriv", "--bounding-set=-all", "--inh-caps=-all"],
  });
  assert.equal(await run.wait(), 3);
  assert.equal(
    run.stderr,
    "ecap: Cannot load BPF programs: missing CAP_BPF and CAP_PERFMON (run ecap as root)\n",
  );
});

Deno.test("deno task capture without privileges or a build cache says so, exit 3", async () => {
  // another user's HOME has no ~/.cache/ecap: the built shim is used as it is
  const home = await Deno.makeTempDir({ prefix: "ecap-home-" });
  try {
    const out = await new Deno.Command("setpriv", {
      args: [
        "--bounding-set=-all",
        "--inh-caps=-all",
        Deno.execPath(),
        "task",
        "-q",
        "capture",
        "bash",
      ],
      cwd: new URL("..", import.meta.url).pathname,
      clearEnv: true, // no ECAP_DEPS either
      env: {
        HOME: home,
        PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
        // Deno's own cache stays: what is missing is ecap's
        DENO_DIR: Deno.env.get("DENO_DIR") ?? `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`,
      },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(
      new TextDecoder().decode(out.stderr),
      "ecap: Cannot load BPF programs: missing CAP_BPF and CAP_PERFMON (run ecap as root)\n",
    );
    assert.equal(out.code, 3);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

bpfTest("ecap bash rejects an unknown pid with one line and exit code 4", async () => {
  await using run = await EcapRun.start(["bash", "-p", "999999999"], { wait: false });
  assert.equal(await run.wait(), 4);
  assert.equal(run.stderr, "ecap: No process with pid 999999999 (check the pid with ps)\n");
});

bpfTest("ecap bash --bash to a file without readline fails in one line", async () => {
  await using run = await EcapRun.start(["bash", "--bash", "/usr/bin/true"], { wait: false });
  assert.equal(await run.wait(), 5);
  assert.match(
    run.stderr,
    /^ecap: Cannot capture bash: "\/usr\/bin\/true" defines none of readline_internal_teardown, readline \(pass --bash with another bash binary\)\n$/,
  );
});

bpfTest("ecap bash --bash to a missing file fails in one line", async () => {
  await using run = await EcapRun.start(["bash", "--bash", "/nonexistent/bash"], { wait: false });
  assert.equal(await run.wait(), 4);
  assert.match(run.stderr, /^ecap: bash "\/nonexistent\/bash" not found \(pass --bash/);
});

Deno.test("ecap --version and --help print and exit 0", async () => {
  const v = await sh(Deno.execPath(), [
    "run",
    "-A",
    new URL("../cli.ts", import.meta.url).pathname,
    "--version",
  ]);
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^ecap \d+\.\d+\.\d+\n$/);
  const h = await sh(Deno.execPath(), [
    "run",
    "-A",
    new URL("../cli.ts", import.meta.url).pathname,
    "bash",
    "--help",
  ]);
  assert.equal(h.code, 0);
  for (const flag of ["--pid", "--uid", "--errnumber", "--bash", "--json", "--duration"]) {
    assert.ok(h.stdout.includes(flag), `help lists ${flag}`);
  }
});

bpfTest("ecap bash probes another bash binary started after it (another inode)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-bash-copy-" });
  try {
    const copy = `${dir}/bash`;
    await Deno.copyFile("/bin/bash", copy);
    await Deno.chmod(copy, 0o755);
    const inode = (await Deno.stat(copy)).ino!;
    await using run = await EcapRun.start(["bash", "--json", "--debug"]);
    await using pane = await TmuxPane.start([copy, "--norc", "--noprofile", "-i"]);
    // a shell on a terminal is not held at exec (its job control would see
    // the stop): it is probed once read, tens of ms later
    const attached = new RegExp(`attach \\S+ \\(inode ${inode}, bash\\)`);
    await waitFor(() => attached.test(run.stderr), "the copy of bash to be probed");
    const marker = `copied-${crypto.randomUUID()}`;
    await pane.type(`echo ${marker}`);
    await waitFor(() => run.stdout.includes(marker), `"${marker}" from the copy of bash`);
    await run.stop();
    const ev = linesOf(run, pane.pid);
    assert.deepEqual(ev.map((e) => e.line), [`echo ${marker}`]);
    assert.equal(ev[0].status, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
