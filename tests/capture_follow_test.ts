/**
 * Following the machine: processes started after ecap, a libssl that is
 * another inode (a private mount namespace's bind mount), probes released
 * with the last process mapping them, and --list-targets.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { Capture } from "../lib/core/capture.ts";
import { tls, type TlsEvent } from "../lib/modules/tls.ts";

const SYSTEM_LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3";
const token = () => `ecap-${crypto.randomUUID()}`;

type Json = Record<string, unknown> & { pid: number; comm: string; data: string };

function textOf(events: Json[]): string {
  return events.map((e) => atob(e.data)).join("");
}

/** A copy of the system libssl in a directory of its own: another inode, same code. */
async function libsslCopy(): Promise<{ dir: string; path: string; inode: number }> {
  const dir = await Deno.makeTempDir({ prefix: "ecap-libssl-copy-" });
  await Deno.chmod(dir, 0o755);
  const path = `${dir}/libssl.so.3`;
  await Deno.copyFile(SYSTEM_LIBSSL, path);
  return { dir, path, inode: (await Deno.stat(path)).ino! };
}

/** curl in a new mount namespace where the copy is bind-mounted over the system libssl. */
function curlInNamespace(copy: string, url: string) {
  return new Deno.Command("unshare", {
    args: [
      "-m",
      "sh",
      "-c",
      `mount --bind "$0" ${SYSTEM_LIBSSL} && exec curl -sk --http1.1 --max-time 20 "$1"`,
      copy,
      url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

bpfTest("ecap tls captures a curl started 0.1 s after it", async () => {
  await using nginx = await Nginx.start({ "late.txt": "late comer\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json"]);
  await new Promise((r) => setTimeout(r, 100));
  const t = token();
  const r = await sh("curl", ["-sk", "--http1.1", nginx.url(`/late.txt?${t}`)]);
  assert.equal(r.stdout, "late comer\n");
  await waitFor(() => textOf(run.json() as Json[]).includes("late comer"), "the response");
  await run.stop();
  const events = run.json() as Json[];
  assert.ok(textOf(events.filter((e) => e.comm === "curl")).includes(`GET /late.txt?${t}`));
});

bpfTest(
  "ecap tls probes a libssl of another inode mapped after start, and lets it go after",
  async () => {
    const copy = await libsslCopy();
    try {
      await using nginx = await Nginx.start({ "ns.txt": "from a namespace\n" });
      await using run = await EcapRun.start(["tls", "--calls", "--json", "--debug"]);
      const t = token();
      const r = await curlInNamespace(copy.path, nginx.url(`/ns.txt?${t}`));
      assert.equal(new TextDecoder().decode(r.stdout), "from a namespace\n");
      await waitFor(
        () => textOf(run.json() as Json[]).includes(`GET /ns.txt?${t}`),
        "the first request of the namespaced curl",
      );
      // its only user exited: the probes go
      await waitFor(
        () => new RegExp(`detach \\S+ \\(inode ${copy.inode}\\)`).test(run.stderr),
        "the copy's probes detached",
      );
      await run.stop();
      assert.match(run.stderr, new RegExp(`attach \\S+ \\(inode ${copy.inode}, OpenSSL 3\\.`));
      assert.match(run.stderr, /ms after it mapped it \(held until then\)/);
      const curl = (run.json() as Json[]).filter((e) => e.comm === "curl");
      assert.ok(textOf(curl).includes("from a namespace"), "its response too");
    } finally {
      await Deno.remove(copy.dir, { recursive: true });
    }
  },
);

bpfTest("a library probed on demand is shared, then released with its last process", async () => {
  const copy = await libsslCopy();
  try {
    await using nginx = await Nginx.start({ "s.txt": "shared\n" });
    const logs: string[] = [];
    await using cap = await Capture.start(tls, { model: "text", calls: true, follow: true }, {
      log: (l) => logs.push(l),
    });
    const events: TlsEvent[] = [];
    const reading = (async () => {
      for await (const b of cap.batches()) events.push(...b);
    })();
    const before = cap.linkCount;
    const onCopy = () => cap.probedFiles().filter((f) => f.inode === copy.inode);
    // two processes map the copy at once: one set of probes
    const results = await Promise.all([
      curlInNamespace(copy.path, nginx.url("/s.txt?one")),
      curlInNamespace(copy.path, nginx.url("/s.txt?two")),
    ]);
    for (const r of results) assert.equal(new TextDecoder().decode(r.stdout), "shared\n");
    await waitFor(() => onCopy().length === 0, "the copy released", 10_000);
    await cap.settled();
    assert.equal(
      logs.filter((l) => l.startsWith("attach") && l.includes(`${copy.inode}`)).length,
      1,
    );
    assert.equal(
      logs.filter((l) => l.startsWith("detach") && l.includes(`${copy.inode}`)).length,
      1,
    );
    // links are destroyed on a thread of their own (an RCU grace period each)
    await waitFor(() => cap.linkCount === before, "every link of the copy destroyed", 5_000);
    const sent = events.filter((e) => e.kind === "data" && e.direction === "write")
      .map((e) => new TextDecoder().decode((e as { data: Uint8Array }).data)).join("");
    assert.ok(sent.includes("GET /s.txt?one") && sent.includes("GET /s.txt?two"), sent);
    cap.stop();
    await reading;
  } finally {
    await Deno.remove(copy.dir, { recursive: true });
  }
});

bpfTest("ecap tls --no-follow leaves a library mapped after start alone", async () => {
  const copy = await libsslCopy();
  try {
    await using nginx = await Nginx.start({ "n.txt": "not followed\n" });
    await using run = await EcapRun.start(["tls", "--calls", "--json", "--no-follow"]);
    const r = await curlInNamespace(copy.path, nginx.url("/n.txt?copy"));
    assert.equal(new TextDecoder().decode(r.stdout), "not followed\n");
    await new Promise((res) => setTimeout(res, 300));
    await run.stop();
    // nginx's side is seen (its libssl is the system's); curl's is not
    const events = run.json() as Json[];
    assert.ok(textOf(events.filter((e) => e.comm === "nginx")).includes("/n.txt?copy"));
    assert.ok(!events.some((e) => e.comm === "curl"));
  } finally {
    await Deno.remove(copy.dir, { recursive: true });
  }
});

bpfTest("ecap tls --list-targets names nginx and its libssl version", async () => {
  await using nginx = await Nginx.start({});
  await using run = await EcapRun.start(["tls", "--calls", "--list-targets"], { wait: false });
  assert.equal(await run.wait(), 0, run.stderr);
  const line = run.stdout.split("\n").find((l) => l.includes(`nginx[${nginx.pid}]`));
  assert.ok(line, run.stdout);
  assert.match(line, /libssl\.so\.3 inode=\d+ dev=[0-9a-f]+:[0-9a-f]+ OpenSSL 3\.\d+\.\d+/);
});

/** State letter and parent of a process (/proc/PID/stat), or undefined once it is reaped. */
function procStat(pid: number): { state: string; ppid: number; comm: string } | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/stat`);
    const close = text.lastIndexOf(")");
    const [state, ppid] = text.slice(close + 2).split(" ");
    return { state, ppid: Number(ppid), comm: text.slice(text.indexOf("(") + 1, close) };
  } catch {
    return undefined;
  }
}

/** The guardian ecap started, if it runs (a child named ecap-guardian). */
function guardianOf(pid: number): number | undefined {
  for (const e of Deno.readDirSync("/proc")) {
    const p = Number(e.name);
    if (!Number.isInteger(p)) continue;
    const s = procStat(p);
    if (s?.ppid === pid && s.comm === "ecap-guardian" && s.state !== "Z") return p;
  }
  return undefined;
}

/** A program that maps a libssl of an inode ecap has not probed: it is held. */
function curlWithCopy(dir: string): Deno.Command {
  return new Deno.Command("curl", {
    args: ["--version"],
    env: { LD_LIBRARY_PATH: dir },
    stdout: "null",
    stderr: "null",
  });
}

bpfTest(
  "a process held for probing runs on when ecap stalls, and at once when ecap is killed",
  async () => {
    const copies = [await libsslCopy(), await libsslCopy()];
    await using run = await EcapRun.start(["tls", "--calls", "--debug"]);
    try {
      const guardian = guardianOf(run.pid);
      assert.ok(guardian, "ecap runs a guardian while it follows");
      // a stalled ecap never answers: the guardian lets the process go
      Deno.kill(run.pid, "SIGSTOP");
      let t0 = performance.now();
      const first = await curlWithCopy(copies[0].dir).output();
      const heldMs = performance.now() - t0;
      assert.ok(first.success);
      assert.ok(heldMs >= 1400 && heldMs < 5000, `held ${heldMs.toFixed(0)} ms, not ~1500`);
      // killed while a process is held: the guardian continues it at once,
      // not only once ecap's exit has released every probe (which takes a
      // grace period per link: 0.3-0.7 s for `ecap tls` here)
      t0 = performance.now();
      const second = curlWithCopy(copies[1].dir).spawn();
      await waitFor(() => procStat(second.pid)?.state === "T", "the process to be held", 2000);
      const exited = run.stop("SIGKILL");
      assert.ok((await second.status).success);
      const secondMs = performance.now() - t0;
      await exited;
      assert.ok(secondMs < 450, `held ${secondMs.toFixed(0)} ms: not let go when ecap died`);
      await waitFor(() => guardianOf(run.pid) === undefined, "the guardian to exit", 2000);
    } finally {
      try {
        Deno.kill(run.pid, "SIGCONT");
      } catch { /* gone */ }
      for (const c of copies) await Deno.remove(c.dir, { recursive: true });
    }
  },
);

bpfTest("the guardian ends with a capture that ends cleanly", async () => {
  await using run = await EcapRun.start(["tls", "--calls"]);
  const guardian = guardianOf(run.pid);
  assert.ok(guardian, "ecap runs a guardian while it follows");
  assert.equal(await run.stop(), 0, run.stderr);
  assert.equal(procStat(guardian)?.state ?? "Z", "Z", "the guardian exited");
});
