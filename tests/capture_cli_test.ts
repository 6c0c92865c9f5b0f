/**
 * The command line's tcpdump habits against real captures: -c N stops by
 * itself, -w - streams pcapng that tshark reads from a pipe, -w replaces a
 * file, -s cuts packets, SIGUSR1 prints the counters and goes on.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, sh, TmuxPane, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { tshark } from "./_tshark.ts";
import { readPcapng } from "../lib/pcap/pcapng_reader.ts";
import { V8_FLAGS_ARG } from "../lib/core/v8_flags.ts";

const BASH = ["bash", "--norc", "--noprofile", "-i"];
const CLI = new URL("../cli.ts", import.meta.url).pathname;

async function curl(url: string) {
  const r = await sh("curl", ["-sk", "--http1.1", "--max-time", "20", url]);
  assert.equal(r.code, 0, `curl ${url}: ${r.stderr}`);
  return r.stdout;
}

async function tempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "ecap-cli-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

bpfTest("ecap bash -c 3 stops by itself after 3 commands, exit 0", async () => {
  await using pane = await TmuxPane.start(BASH);
  await using run = await EcapRun.start(["bash", "--json", "-p", String(pane.pid), "-c", "3"]);
  for (const c of ["echo one", "echo two", "echo three", "echo four", "echo five"]) {
    await pane.type(c);
  }
  assert.equal(await run.wait(20_000), 0, run.stderr);
  assert.deepEqual(run.json().map((e) => e.line), ["echo one", "echo two", "echo three"]);
  assert.ok(run.stats(), "the closing stats record");
  assert.match(run.stderr, /ecap: \d+ events, 0 lost/);
});

bpfTest("ecap bash -q -c 1 prints the event and nothing on stderr", async () => {
  await using pane = await TmuxPane.start(BASH);
  await using run = await EcapRun.start(["bash", "-q", "-p", String(pane.pid), "-c", "1"], {
    wait: false,
  });
  // -q has no "capturing" line to wait for: type, once a second, until the event comes
  for (let i = 0; i < 30 && !run.stdout.includes("echo quiet"); i++) {
    await pane.type("echo quiet");
    await waitFor(() => run.stdout.includes("echo quiet"), "a command", 1000).catch(() => {});
  }
  assert.equal(await run.wait(20_000), 0);
  assert.equal(run.stderr, "");
  assert.equal(run.stdout.trim().split("\n").filter((l) => l.includes("echo quiet")).length, 1);
});

bpfTest("SIGUSR1 prints the counters on stderr and the capture goes on", async () => {
  await using pane = await TmuxPane.start(BASH);
  await using run = await EcapRun.start(["bash", "--json", "-p", String(pane.pid)]);
  await pane.type("echo before");
  await waitFor(() => run.stdout.includes("echo before"), "the first command");
  Deno.kill(run.pid, "SIGUSR1");
  await waitFor(
    () => /ecap: [1-9]\d* events, 0 lost, \d+\.\d s\n/.test(run.stderr),
    "the counters on stderr",
  );
  await pane.type("echo after");
  await waitFor(() => run.stdout.includes("echo after"), "a command after SIGUSR1");
  // Deno (2.9.2 on) opens a V8 inspector on 127.0.0.1:9229 at SIGUSR1 once its
  // process is 500 ms old: for a root ecap, code execution for any local user
  await new Promise((r) => setTimeout(r, 700));
  Deno.kill(run.pid, "SIGUSR1");
  await waitFor(() => run.stderr.split("events, 0 lost, ").length === 3, "the second counters");
  const listening = await sh("ss", ["-Hltnp"]);
  assert.equal(listening.code, 0, listening.stderr);
  assert.doesNotMatch(listening.stdout, new RegExp(`pid=${run.pid},`), "ecap listens nowhere");
  assert.doesNotMatch(run.stderr, /Debugger listening/);
  assert.equal(await run.stop(), 0);
  assert.deepEqual(run.json().map((e) => e.line), ["echo before", "echo after"]);
});

bpfTest("on a terminal, -w FILE shows a status line once a second, erased at the end", async () => {
  await tempDir(async (dir) => {
    await using nginx = await Nginx.start({ "s.txt": "status\n" });
    await using pane = await TmuxPane.start(BASH);
    const status = /ecap: (\d+) s, (\d+) events, [\d.]+ (B|KiB|MiB), 0 lost, \d+ events\/s/;
    await pane.type(
      `${Deno.execPath()} run -A ${V8_FLAGS_ARG} ${CLI} tls -w ${dir}/out.pcapng -i lo; echo "exit=$?"`,
    );
    await waitFor(async () => status.test(await pane.screen()), "the status line");
    await curl(nginx.url("/s.txt"));
    // rewritten in place: one line on the screen, its counts going up
    await waitFor(async () => {
      const m = status.exec(await pane.screen());
      return m !== null && Number(m[2]) > 0 && Number(m[1]) >= 2;
    }, "events counted on the status line");
    const screen = await pane.screen();
    assert.equal(screen.split("\n").filter((l) => status.test(l)).length, 1, screen);
    await pane.press("C-c");
    await waitFor(async () => (await pane.screen()).includes("exit=0"), "ecap's exit");
    const end = await pane.screen();
    assert.doesNotMatch(end, /events\/s/, "the status line is erased before the summary");
    assert.match(end, /ecap: \d+ packets, \d+ key log lines written to/);
  });
});

bpfTest("without a terminal, no status line", async () => {
  await tempDir(async (dir) => {
    await using run = await EcapRun.start(["tls", "-w", `${dir}/out.pcapng`, "-i", "lo"]);
    await new Promise((r) => setTimeout(r, 2500));
    assert.equal(await run.stop(), 0);
    assert.doesNotMatch(run.stderr, /events\/s|\r/);
  });
});

bpfTest("ecap tls -w - -c 5 streams pcapng that tshark -r - reads from the pipe", async () => {
  await using nginx = await Nginx.start({ "p.txt": "piped\n" });
  const ecap = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", V8_FLAGS_ARG, CLI, "tls", "-w", "-", "-i", "lo", "-c", "5"],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = new Deno.Command("tshark", {
    args: ["-n", "-r", "-", "-T", "fields", "-e", "frame.cap_len"],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const piped = ecap.stdout.pipeTo(reader.stdin);
  let stderr = "";
  const errors = (async () => {
    for await (const t of ecap.stderr.pipeThrough(new TextDecoderStream())) stderr += t;
  })();
  try {
    await waitFor(() => stderr.includes("capturing"), "ecap to say it is capturing", 30_000);
    await curl(nginx.url("/p.txt"));
    assert.equal((await ecap.status).code, 0, stderr);
  } finally {
    try {
      ecap.kill("SIGKILL");
    } catch { /* exited */ }
  }
  await Promise.all([piped, errors]);
  const out = await reader.output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const frames = new TextDecoder().decode(out.stdout).trim().split("\n");
  assert.equal(frames.length, 5, `five packets: ${frames}`);
  assert.match(stderr, /ecap: 5 packets, \d+ key log lines written to stdout/);
});

bpfTest("ecap tls -w FILE replaces a file, and -s cuts packets to SNAPLEN", async () => {
  await tempDir(async (dir) => {
    await using nginx = await Nginx.start({ "big.txt": "x".repeat(20_000) });
    const out = `${dir}/out.pcapng`;
    await Deno.writeTextFile(out, "an older capture that must go\n".repeat(100));
    await using run = await EcapRun.start(["tls", "-w", out, "-i", "lo", "-s", "128"]);
    assert.equal((await curl(nginx.url("/big.txt"))).length, 20_000);
    await new Promise((r) => setTimeout(r, 1000)); // packets wait 500 ms for their keys
    assert.equal(await run.stop(), 0);
    const file = readPcapng(await Deno.readFile(out));
    assert.equal(file.sections.length, 1, "one section: the file was replaced, not appended to");
    assert.ok(file.packets.length > 0);
    assert.equal(file.interfaces[0].snapLen, 128);
    assert.ok(file.packets.every((p) => p.data.length <= 128));
    const cut = file.packets.filter((p) => p.originalLength > p.data.length);
    assert.ok(cut.length > 0, "the response's packets were longer than 128 bytes");
    // tcpdump's judge: the cut packets are read as cut, not as damage
    const lens = await tshark([
      "-r",
      out,
      "-T",
      "fields",
      "-e",
      "frame.cap_len",
      "-e",
      "frame.len",
    ]);
    assert.ok(lens.split("\n").some((l) => /^128\t\d{3,}$/.test(l)), lens);
  });
});
