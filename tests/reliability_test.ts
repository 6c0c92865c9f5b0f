/**
 * Bad input, faults and signals: one clear line and the documented exit
 * code for each, nothing captured lost, nothing left in the kernel.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, loadedProgramIds, sh, TmuxPane, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { Capture } from "../lib/core/capture.ts";
import { EcapError } from "../lib/base/errors.ts";
import { MODULES } from "../lib/modules/mod.ts";
import type { BashEvent } from "../lib/modules/bash.ts";

const BASH = ["bash", "--norc", "--noprofile", "-i"];

/** Runs ecap to its end; returns exit code and stderr. */
async function fails(args: string[]) {
  await using run = await EcapRun.start(args, { wait: false });
  const code = await run.wait();
  return { code, stderr: run.stderr };
}

function oneLine(stderr: string, pattern: RegExp) {
  const lines = stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, `one line, got: ${stderr}`);
  assert.match(lines[0], pattern);
}

for (
  const [args, code, pattern] of [
    [["bash", "-p", "abc"], 2, /^ecap: Invalid --pid "abc": expected a non-negative integer/],
    [["bash", "--duration=-1"], 2, /^ecap: Invalid --duration "-1"/],
    [["bash", "--duration", "0"], 2, /^ecap: Invalid --duration "0"/],
    [["bash", "--mapsize", "12Q"], 2, /^ecap: Invalid --mapsize "12Q"/],
    [["bash", "-e", "x"], 2, /^ecap: Invalid --errnumber "x"/],
    [["tls", "-m", "pcap"], 2, /^ecap: -m pcap needs -w\/--pcapfile FILE$/],
    [["tls", "-m", "nonsense"], 2, /^ecap: Unknown --model "nonsense"/],
    [
      ["tls", "-w", "/dev/null/x", "tcp", "port", "99999"],
      2,
      /^ecap: Invalid filter expression "tcp port 99999": illegal port number 99999 > 65535$/,
    ],
    [
      ["tls", "-w", "/dev/null/x", "hots", "10.0.0.1"],
      2,
      /^ecap: Invalid filter expression "hots 10.0.0.1": can.t parse filter expression: syntax error$/,
    ],
    [["bash", "stray"], 2, /^ecap: Unexpected argument 'stray'/],
  ] as const
) {
  Deno.test(`ecap ${args.join(" ")} is a usage error (exit ${code})`, async () => {
    const r = await fails([...args]);
    assert.equal(r.code, code);
    oneLine(r.stderr, pattern);
  });
}

bpfTest("ecap --libssl to a file that is not ELF fails in one line (exit 5)", async () => {
  const r = await fails(["tls", "--libssl", "/etc/passwd"]);
  assert.equal(r.code, 5);
  oneLine(r.stderr, /^ecap: "\/etc\/passwd" is not an ELF file/);
});

bpfTest("ecap --bash to a binary of another architecture fails in one line (exit 5)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = await Deno.readFile("/usr/bin/bash");
    new DataView(bytes.buffer).setUint16(18, 183, true); // e_machine = EM_AARCH64
    await Deno.writeFile(`${dir}/bash`, bytes);
    const r = await fails(["bash", "--bash", `${dir}/bash`]);
    assert.equal(r.code, 5);
    oneLine(r.stderr, /^ecap: bash "[^"]+" is built for aarch64, this machine is x86_64/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap -o refuses a directory, a missing directory and a planted symlink", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const asDir = await fails(["bash", "-o", dir]);
    assert.equal(asDir.code, 6);
    oneLine(asDir.stderr, /^ecap: Cannot write to "[^"]+": it is a directory/);
    const missing = await fails(["bash", "-o", `${dir}/no/such/file`]);
    assert.equal(missing.code, 4);
    oneLine(missing.stderr, /its directory does not exist/);
    await Deno.symlink("/etc/ecap-should-not-exist", `${dir}/link`);
    const link = await fails(["bash", "-o", `${dir}/link`]);
    assert.equal(link.code, 3);
    oneLine(link.stderr, /^ecap: Refusing to write to "[^"]+": it is a symbolic link/);
    await assert.rejects(Deno.lstat("/etc/ecap-should-not-exist"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest(
  "outputs that are not regular files (/proc, /sys, devices) get one line, exit 6",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const cases: [string[], RegExp][] = [
        [["bash", "-o", "/proc/version"], /it is in \/proc, which keeps nothing written/],
        [["tls", "-m", "keylog", "-k", "/proc/version"], /it is in \/proc/],
        [["tls", "-m", "pcap", "-w", "/sys/kernel/profiling"], /it is in \/sys/],
        [["tls", "--har", "/proc/self/comm"], /it is in \/proc/],
        [["bash", "-o", "/dev/null"], /it is not a regular file/],
      ];
      for (const [args, message] of cases) {
        const r = await fails(args);
        assert.equal(r.code, 6, `${args.join(" ")}: ${r.stderr}`);
        oneLine(r.stderr, new RegExp(`^ecap: Cannot write to "[^"]+": ${message.source}`));
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest(
  "a FIFO output with no reader: ecap says it waits, and the first Ctrl-C ends it",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      const fifo = `${dir}/keys.fifo`;
      assert.equal((await sh("mkfifo", [fifo])).code, 0);
      await using run = await EcapRun.start(["tls", "-k", fifo], { wait: false });
      await waitFor(() => run.stderr.includes("waiting for a reader"), "the waiting line");
      oneLine(run.stderr, /^ecap: "[^"]+keys.fifo" is a FIFO: waiting for a reader to open it/);
      const t0 = performance.now();
      Deno.kill(run.pid, "SIGINT");
      assert.equal(await run.wait(5_000), 0);
      assert.ok(performance.now() - t0 < 2000, "ended at once");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest("a FIFO output: written once its reader comes (-o and -k)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using nginx = await Nginx.start({ "f.txt": "through a fifo\n" });
    const keys = `${dir}/keys.fifo`, events = `${dir}/events.fifo`;
    for (const f of [keys, events]) assert.equal((await sh("mkfifo", [f])).code, 0);
    await using run = await EcapRun.start(["tls", "-k", keys, "-o", events, "--comm", "curl"], {
      wait: false,
    });
    await waitFor(() => run.stderr.includes("waiting for a reader"), "the waiting line");
    // the readers: cat each FIFO into a file
    const readers = [keys, events].map((f) =>
      new Deno.Command("sh", { args: ["-c", `cat "${f}" > "${f}.out"`] }).spawn()
    );
    await waitFor(() => run.stderr.includes("capturing"), "capturing once both readers came");
    const r = await sh("curl", ["-sk", "--http1.1", nginx.url("/f.txt")]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(
      async () => (await Deno.readTextFile(`${keys}.out`).catch(() => "")).includes("CLIENT_"),
      "keys through the FIFO",
    );
    assert.equal(await run.stop(), 0, run.stderr);
    for (const p of readers) assert.equal((await p.status).code, 0);
    assert.match(await Deno.readTextFile(`${events}.out`), /curl/, "the handshake lines");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A FIFO at dir/name and a process holding it open for reading with `cmd` (sh). */
async function fifoReader(dir: string, name: string, cmd: string) {
  const fifo = `${dir}/${name}`;
  assert.equal((await sh("mkfifo", [fifo])).code, 0);
  const reader = new Deno.Command("sh", { args: ["-c", cmd.replaceAll("FIFO", `"${fifo}"`)] })
    .spawn();
  return { fifo, reader };
}

/** curl fetches a 512 KiB body: with --calls --json, megabytes of output. */
const BIG_BODY = new Uint8Array(512 * 1024).fill(66);

bpfTest(
  "a FIFO reader that stops reading: Ctrl-C still ends ecap, and it says what was not written",
  async () => {
    const dir = await Deno.makeTempDir();
    try {
      await using nginx = await Nginx.start({ "big.bin": BIG_BODY });
      // opens the FIFO and never reads: the pipe's 64 KiB fill at once
      const { fifo, reader } = await fifoReader(dir, "events.fifo", "exec sleep 60 < FIFO");
      await using run = await EcapRun.start(
        ["tls", "--calls", "--json", "-o", fifo, "--comm", "curl"],
      );
      const r = await sh("curl", ["-sk", "--http1.1", "-o", "/dev/null", nginx.url("/big.bin")]);
      assert.equal(r.code, 0, r.stderr);
      await waitFor(() => statsOf(run) > 0, "ecap to take the events");
      await ctrlCEndsWithoutReader(run);
      assert.match(
        run.stderr,
        /\necap: The reader of "[^"]+events.fifo" took nothing for 2 s: \d+ bytes were not written \(read the output as it comes, or write it to a file\)\n$/,
      );
      reader.kill("SIGKILL");
      await reader.status;
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** Ctrl-C ends a capture whose reader stalled: exit 6 within 4 s. */
async function ctrlCEndsWithoutReader(run: EcapRun) {
  const t0 = performance.now();
  Deno.kill(run.pid, "SIGINT");
  assert.equal(await run.wait(10_000), 6, run.stderr);
  const took = performance.now() - t0;
  assert.ok(took < 4_000, `ended ${took.toFixed(0)} ms after Ctrl-C`);
}

/** Events ecap has counted so far: SIGUSR1 prints them (tcpdump's way). */
function statsOf(run: EcapRun): number {
  Deno.kill(run.pid, "SIGUSR1");
  const all = [...run.stderr.matchAll(/ecap: (\d+) events, \d+ lost/g)];
  return all.length === 0 ? 0 : Number(all.at(-1)![1]);
}

bpfTest("a slow FIFO reader gets every line, after Ctrl-C too", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using nginx = await Nginx.start({ "big.bin": BIG_BODY });
    // reads 16 KiB every 50 ms: about 320 KiB/s, far slower than ecap writes
    const { fifo, reader } = await fifoReader(
      dir,
      "events.fifo",
      `/usr/bin/python3 -c '
import sys, time
src, out = open(sys.argv[1], "rb"), open(sys.argv[2], "wb")
while chunk := src.read1(16384):
    out.write(chunk); time.sleep(0.05)
' FIFO FIFO.out`,
    );
    await using run = await EcapRun.start(
      ["tls", "--calls", "--json", "-o", fifo, "--comm", "curl"],
    );
    const r = await sh("curl", ["-sk", "--http1.1", "-o", "/dev/null", nginx.url("/big.bin")]);
    assert.equal(r.code, 0, r.stderr);
    await waitFor(() => statsOf(run) > 0, "ecap to take the events");
    assert.equal(await run.stop(), 0, run.stderr);
    assert.equal((await reader.status).code, 0);
    const lines = (await Deno.readTextFile(`${fifo}.out`)).trimEnd().split("\n");
    const records = lines.map((l) => JSON.parse(l));
    const stats = records.at(-1).stats;
    assert.equal(records.length - 1, stats.events, "every event and the stats line");
    assert.equal(stats.lost, 0);
    const bodyBytes = records.filter((e) => e.direction === "read")
      .reduce((n, e) => n + atob(e.data).split("").filter((c) => c === "B").length, 0);
    assert.equal(bodyBytes, BIG_BODY.length, "the whole body, read by curl");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("-w - to a pipe nobody reads: Ctrl-C still ends ecap", async () => {
  await using nginx = await Nginx.start({ "big.bin": BIG_BODY });
  // stdout is a pipe the test never reads: the pcapng's writes would block
  await using run = await EcapRun.start(["tls", "-m", "pcap", "-w", "-"], { readStdout: false });
  for (let i = 0; i < 4; i++) {
    const r = await sh("curl", ["-sk", "--http1.1", "-o", "/dev/null", nginx.url("/big.bin")]);
    assert.equal(r.code, 0, r.stderr);
  }
  await new Promise((r) => setTimeout(r, 1500)); // a second's packets written, held ones too
  await ctrlCEndsWithoutReader(run);
  assert.match(
    run.stderr,
    /\necap: The reader of stdout took nothing for 2 s: \d+ bytes were not written/,
  );
});

bpfTest("ecap -o writes events to a new 0600 file and appends to it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await using pane = await TmuxPane.start(BASH);
    const file = `${dir}/out.jsonl`;
    for (const word of ["first", "second"]) {
      await using run = await EcapRun.start(["bash", "--json", "-o", file, "-p", String(pane.pid)]);
      await pane.type(`echo ${word}`);
      await waitFor(
        async () => (await Deno.readTextFile(file)).includes(`echo ${word}`),
        "the line in the file",
      );
      assert.equal(await run.stop(), 0);
      assert.equal(run.stdout, "");
    }
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    const lines = (await Deno.readTextFile(file)).trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((l) => l.line ?? "stats"), [
      "echo first",
      "stats",
      "echo second",
      "stats",
    ]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap stops with one line on a full disk and leaves whole lines", async () => {
  const dir = await Deno.makeTempDir();
  const mounted = await sh("mount", ["-t", "tmpfs", "-o", "size=64k", "ecap-test", dir]);
  assert.equal(mounted.code, 0, mounted.stderr);
  try {
    await using nginx = await Nginx.start({ "big.bin": new Uint8Array(512 * 1024).fill(65) });
    await using run = await EcapRun.start(["tls", "--calls", "--json", "-o", `${dir}/out.jsonl`]);
    await sh("curl", ["-sk", "--http1.1", "-o", "/dev/null", nginx.url("/big.bin")]);
    const code = await run.wait(10_000);
    assert.equal(code, 6, run.stderr);
    assert.match(run.stderr, /ecap: Cannot write to "[^"]+out.jsonl": No space left on device\n$/);
    const text = await Deno.readTextFile(`${dir}/out.jsonl`);
    assert.ok(text === "" || text.endsWith("\n"));
    for (const line of text.split("\n").filter(Boolean)) JSON.parse(line);
  } finally {
    await sh("umount", [dir]);
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap leaves no BPF program in the kernel after SIGKILL", async () => {
  await using run = await EcapRun.start(["bash"]);
  const ids: number[] = [];
  for (const e of Deno.readDirSync(`/proc/${run.pid}/fdinfo`)) {
    const info = await Deno.readTextFile(`/proc/${run.pid}/fdinfo/${e.name}`).catch(() => "");
    const id = /^prog_id:\s*(\d+)$/m.exec(info);
    if (id) ids.push(Number(id[1]));
  }
  assert.ok(ids.length >= 7, `ecap holds its programs (${ids})`);
  await run.stop("SIGKILL");
  await waitFor(
    async () => {
      const loaded = await loadedProgramIds();
      return ids.every((id) => !loaded.has(id));
    },
    "the kernel to drop a killed ecap's programs",
    5_000,
  );
});

bpfTest("ecap ends quietly when its reader goes away (ecap bash | head -1)", async () => {
  await using pane = await TmuxPane.start(BASH);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      new URL("../cli.ts", import.meta.url).pathname,
      "bash",
      "-p",
      String(pane.pid),
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const errText = new Response(child.stderr).text();
  await new Promise((r) => setTimeout(r, 1500));
  await pane.type("echo one");
  const reader = child.stdout.getReader();
  await reader.read(); // the first line, as head -1 would
  await reader.cancel(); // and gone
  await pane.type("echo two");
  await pane.type("echo three");
  const status = await child.status;
  assert.equal(status.code, 0);
  const err = await errText;
  assert.doesNotMatch(err, /error|Error|panic/);
  assert.match(err, /ecap: \d+ events, 0 lost\n$/);
});

for (const signal of ["SIGINT", "SIGTERM"] as const) {
  bpfTest(`ecap tls exits within 500 ms of ${signal}, output flushed`, async () => {
    await using nginx = await Nginx.start({ "s.txt": "flushed\n" });
    await using run = await EcapRun.start(["tls", "--calls", "--json"]);
    await sh("curl", ["-sk", "--http1.1", nginx.url("/s.txt")]);
    const t0 = performance.now();
    assert.equal(await run.stop(signal), 0);
    const ms = performance.now() - t0;
    assert.ok(ms < 500, `exited ${Math.round(ms)} ms after ${signal}`);
    // everything captured before the signal was written out
    assert.ok(run.json().some((e) => atob(e.data as string).includes("flushed")));
    assert.ok(run.stats());
  });
}

bpfTest("two ecap instances capture the same command without disturbing each other", async () => {
  await using pane = await TmuxPane.start(BASH);
  await using a = await EcapRun.start(["bash", "--json", "-p", String(pane.pid)]);
  await using b = await EcapRun.start(["bash", "--json"]);
  await pane.type("echo twice");
  await waitFor(() => a.stdout.includes("echo twice") && b.stdout.includes("echo twice"), "both");
  assert.equal(await a.stop(), 0);
  await pane.type("echo only-b");
  await waitFor(() => b.stdout.includes("echo only-b"), "b alone after a stopped");
  assert.equal(await b.stop(), 0);
});

bpfTest(
  "ring buffer overflow is counted per CPU and reported in stderr and --json stats",
  async () => {
    await using nginx = await Nginx.start({ "big.bin": new Uint8Array(1 << 20).fill(66) });
    await using run = await EcapRun.start(["tls", "--calls", "--json", "--mapsize", "4096"]);
    const r = await sh("curl", ["-sk", "--http1.1", "-o", "/dev/null", nginx.url("/big.bin")]);
    assert.equal(r.code, 0);
    await new Promise((res) => setTimeout(res, 300));
    assert.equal(await run.stop(), 0);
    const stats = run.stats()!;
    assert.ok((stats.lost as number) > 0, JSON.stringify(stats));
    const perCpu = stats.lost_per_cpu as number[];
    assert.equal(perCpu.reduce((x, y) => x + y, 0), stats.lost);
    assert.match(
      run.stderr,
      new RegExp(`ecap: \\d+ events, ${stats.lost} lost \\(per CPU: [\\d ]+; raise --mapsize\\)`),
    );
  },
);

bpfTest("ecap -p ends, saying so, when that process exits", async () => {
  const pane = await TmuxPane.start(BASH);
  await using run = await EcapRun.start(["bash", "--json", "-p", String(pane.pid)]);
  await pane.type("echo last words");
  await waitFor(() => run.stdout.includes("last words"), "the line");
  await pane[Symbol.asyncDispose]();
  const code = await run.wait(5_000);
  assert.equal(code, 0);
  assert.match(run.stderr, new RegExp(`ecap: process ${pane.pid} exited\\n`));
});

bpfTest("a target killed mid-connection does not disturb the capture", async () => {
  await using nginx = await Nginx.start({ "big.bin": new Uint8Array(4 << 20).fill(67) });
  await using run = await EcapRun.start(["tls", "--calls", "--json"]);
  const slow = new Deno.Command("curl", {
    args: ["-sk", "--http1.1", "--limit-rate", "200k", "-o", "/dev/null", nginx.url("/big.bin")],
  }).spawn();
  await new Promise((r) => setTimeout(r, 700));
  slow.kill("SIGKILL");
  await slow.status;
  const t = crypto.randomUUID();
  await sh("curl", ["-sk", "--http1.1", "-o", "/dev/null", nginx.url(`/big.bin?${t}`)]);
  await waitFor(
    () => run.json().some((e) => e.comm === "curl" && atob(e.data as string).includes(t)),
    "the next curl",
  );
  assert.equal(await run.stop(), 0);
  assert.ok(run.json().some((e) => e.pid === slow.pid), "the killed curl was captured too");
});

/** The nice value of every thread of pid. */
function threadNices(pid: number): number[] {
  return [...Deno.readDirSync(`/proc/${pid}/task`)].map((t) => {
    const stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
  });
}

bpfTest("ecap runs its threads at nice -10 unless --nice says otherwise", async () => {
  {
    await using run = await EcapRun.start(["tls", "--calls"]);
    const nices = threadNices(run.pid);
    assert.ok(nices.length > 1 && nices.every((n) => n === -10), `${nices}`);
  }
  {
    await using run = await EcapRun.start(["tls", "--calls", "--nice", "-0"]);
    const nices = threadNices(run.pid);
    assert.ok(nices.every((n) => n === 0), `${nices}`);
  }
  const bad = await EcapRun.start(["tls", "--calls", "--nice", "-21"], { wait: false });
  assert.equal(await bad.wait(), 2);
  assert.match(bad.stderr, /^ecap: Invalid --nice "-21"/);
});

Deno.test("deno task capture runs the CLI with the V8 flags the binary is built with", async () => {
  const { V8_FLAGS_ARG } = await import("../lib/core/v8_flags.ts");
  const tasks = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url))).tasks;
  assert.ok(tasks.capture.endsWith(`deno run -A ${V8_FLAGS_ARG} cli.ts`), tasks.capture);
});

bpfTest(
  "a decoder's exception ends the capture after the events before it, naming the record",
  async () => {
    await using pane = await TmuxPane.start(["bash", "--norc", "--noprofile", "-i"]);
    // the bash module as it is, but its decoder has a bug on the second command
    const spec = MODULES.bash;
    let seen = 0;
    await using cap = await Capture.start({
      ...spec,
      decoder(ctx, opts) {
        const real = spec.decoder(ctx, opts);
        return {
          ...real,
          decode(view: DataView, offset: number, length: number) {
            const events = [...real.decode(view, offset, length)];
            if (events.length > 0 && ++seen === 2) throw new TypeError("a bug");
            return events;
          },
          flush: () => real.flush(),
        };
      },
    }, { pid: pane.pid });
    await pane.type("echo before-the-bug");
    await pane.type("echo the-bug");
    await pane.type("echo after-the-bug");
    const got: BashEvent[] = [];
    const failure = await (async () => {
      for await (const batch of cap.batches()) got.push(...batch as BashEvent[]);
    })().then(() => undefined, (e) => e);
    assert.deepEqual(got.map((e) => e.line), ["echo before-the-bug"]);
    assert.ok(failure instanceof EcapError, String(failure));
    assert.equal(failure.kind, "internal");
    assert.match(
      failure.message,
      /^The bash decoder failed on record \d+ \(\d+ bytes\): TypeError: a bug$/,
    );
    assert.equal(cap.linkCount, 0, "the probes are gone");
  },
);
