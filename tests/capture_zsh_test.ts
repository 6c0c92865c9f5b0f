/**
 * The zsh module against real interactive shells driven through tmux.
 * @module
 */
import assert from "node:assert/strict";
import { unmetafy } from "../lib/modules/zsh.ts";
import { bpfTest, EcapRun, sh, TmuxPane, waitFor } from "./_helpers.ts";

const ZSH = ["zsh", "-f", "-i"];

type Json = Record<string, unknown>;

/** This shell's events (not the summary line, not other tests' shells). */
function linesOf(run: EcapRun, pid: number): Json[] {
  return run.json().filter((e) => e.module === "zsh" && e.pid === pid);
}

async function typedUntil(run: EcapRun, pane: TmuxPane, marker: string) {
  await pane.type(`echo ${marker}`);
  await waitFor(() => run.stdout.includes(marker), `"${marker}" in ecap's output`);
}

bpfTest("ecap zsh captures typed commands in order with exact text and status", async () => {
  await using run = await EcapRun.start(["zsh", "--json"]);
  await using pane = await TmuxPane.start(ZSH);
  const long = `echo ${"x".repeat(1995)}`; // a 2,000-character line
  const huge = `echo ${"0123456789".repeat(2500)}`; // 25,005: several 8 KiB chunks
  // ✓ and 日 hold bytes zsh metafies (0x83-0xa2)
  const utf8 = "echo 'héllo wörld ✓ 日本語'";
  const typed = ["true", "false", "echo héllo", "ls /nonexistent", long, utf8, huge, "echo )"];
  for (const t of typed) await pane.type(t);
  await pane.type("for i in 1 2; do");
  await pane.type("echo $i; done");
  await pane.type("x=1; vared x");
  await pane.type("2"); // read by vared: input, not a command
  await pane.type("");
  await typedUntil(run, pane, "ecap-marker-1");
  await pane.type("exit 3");
  await waitFor(() => run.stdout.includes('"exit 3"'), "exit 3 in ecap's output");
  assert.equal(await run.stop(), 0);

  const got = linesOf(run, pane.pid).map((e) => [e.line, e.status, e.end, e.truncated]);
  assert.deepEqual(got, [
    ["true", 0, "return", false],
    ["false", 1, "return", false],
    ["echo héllo", 0, "return", false],
    ["ls /nonexistent", 2, "return", false],
    [long, 0, "return", false],
    [utf8, 0, "return", false],
    [huge, 0, "return", false],
    ["echo )", 1, "syntax", false],
    ["for i in 1 2; do\necho $i; done", 0, "return", false],
    ["x=1; vared x", 0, "return", false],
    ["echo ecap-marker-1", 0, "return", false],
    ["exit 3", 3, "exit", false],
  ]);
  const first = linesOf(run, pane.pid)[0];
  assert.equal(first.comm, "zsh");
  assert.equal(first.uid, 0);
  assert.equal(first.tid, pane.pid);
  assert.match(String(first.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
  assert.match(run.stderr, /zsh line editor: \/\S+\/zsh\/zle\.so\n/);
});

bpfTest("ecap zsh reports exec, which never returns to the shell", async () => {
  await using run = await EcapRun.start(["zsh", "--json"]);
  await using pane = await TmuxPane.start(ZSH);
  await pane.type("exec /usr/bin/true");
  await waitFor(() => run.stdout.includes("exec /usr/bin/true"), "the exec in ecap's output");
  // zsh runs `exec BUILTIN` itself and exits: no execve
  await using other = await TmuxPane.start(ZSH);
  await other.type("exec false");
  await waitFor(() => run.stdout.includes("exec false"), "exec false in ecap's output");
  await run.stop();
  assert.deepEqual(linesOf(run, pane.pid).map((e) => [e.line, e.status, e.end, e.comm]), [
    ["exec /usr/bin/true", null, "exec", "zsh"],
  ]);
  assert.deepEqual(linesOf(run, other.pid).map((e) => [e.line, e.status, e.end]), [
    ["exec false", 1, "exit"],
  ]);
});

bpfTest("ecap zsh --pid keeps one shell and excludes another", async () => {
  // both shells wait in zle before ecap attaches: their first line counts too
  await using a = await TmuxPane.start(ZSH);
  await using b = await TmuxPane.start(ZSH);
  await using run = await EcapRun.start(["zsh", "--json", "--pid", String(a.pid)]);
  await b.type("echo from-b");
  await a.type("echo from-a");
  await b.type("echo from-b-again");
  await typedUntil(run, a, "ecap-marker-2");
  await run.stop();
  const events = run.json().filter((e) => e.module === "zsh");
  assert.deepEqual(events.map((e) => e.line), ["echo from-a", "echo ecap-marker-2"]);
  assert.ok(events.every((e) => e.pid === a.pid));
});

bpfTest("ecap zsh -u keeps one user's shells", async () => {
  await using root = await TmuxPane.start(ZSH);
  await using nobody = await TmuxPane.start([
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    ...ZSH,
  ]);
  await using run = await EcapRun.start(["zsh", "--json", "-u", "65534"]);
  await root.type("echo as-root");
  await nobody.type("echo as-nobody");
  await typedUntil(run, nobody, "ecap-marker-3");
  await run.stop();
  // other tests' shells may run as nobody too: keep this one's
  const mine = linesOf(run, nobody.pid);
  assert.deepEqual(mine.map((e) => [e.line, e.uid, e.comm]), [
    ["echo as-nobody", 65534, "zsh"],
    ["echo ecap-marker-3", 65534, "zsh"],
  ]);
  assert.equal(linesOf(run, root.pid).length, 0);
  assert.ok(run.json().filter((e) => e.module === "zsh").every((e) => e.uid === 65534));
});

bpfTest("ecap zsh text output shows time, pid, uid, comm, status and line", async () => {
  await using pane = await TmuxPane.start(ZSH);
  await using run = await EcapRun.start(["zsh", "-p", String(pane.pid)]);
  await pane.type("false");
  await pane.type("echo )");
  await waitFor(() => run.stdout.includes("    echo )"), "the lines");
  await run.stop();
  assert.match(
    run.stdout,
    new RegExp(
      `^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} pid=${pane.pid} uid=0 comm=zsh status=1\\n    false\\n` +
        `\\d\\d:\\d\\d:\\d\\d\\.\\d{3} pid=${pane.pid} uid=0 comm=zsh status=1 syntax\\n    echo \\)\\n`,
    ),
  );
});

bpfTest("ecap zsh --zsh to a file that is not zsh fails in one line", async () => {
  await using run = await EcapRun.start(["zsh", "--zsh", "/usr/bin/true"], { wait: false });
  assert.equal(await run.wait(), 5);
  assert.match(
    run.stderr,
    /^ecap: Cannot capture zsh: "\/usr\/bin\/true" is not zsh \(it lacks execode, .*\) \(pass --zsh with the path of a zsh binary\)\n$/,
  );
});

bpfTest("ecap zsh --zsh to a missing file fails in one line", async () => {
  await using run = await EcapRun.start(["zsh", "--zsh", "/nonexistent/zsh"], { wait: false });
  assert.equal(await run.wait(), 4);
  assert.match(run.stderr, /^ecap: zsh "\/nonexistent\/zsh" not found \(pass --zsh[^\n]*\)\n$/);
});

Deno.test("ecap zsh --help lists its options", async () => {
  const h = await sh(Deno.execPath(), [
    "run",
    "-A",
    new URL("../cli.ts", import.meta.url).pathname,
    "zsh",
    "--help",
  ]);
  assert.equal(h.code, 0);
  for (const flag of ["--pid", "--uid", "--zsh", "--json", "--duration"]) {
    assert.ok(h.stdout.includes(flag), `help lists ${flag}`);
  }
});

Deno.test("unmetafy undoes zsh's Meta escapes", () => {
  const meta = new Uint8Array([0x61, 0x83, 0xa3, 0xe2, 0x83, 0xbc, 0x83, 0xb3, 0x83]);
  assert.deepEqual([...unmetafy(meta)], [0x61, 0x83, 0xe2, 0x9c, 0x93, 0x83]);
  const plain = new TextEncoder().encode("plain é");
  assert.equal(unmetafy(plain), plain);
});
