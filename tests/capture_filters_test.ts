/**
 * Process filters, applied in the kernel: each takes the process it names
 * and leaves out a second one. Driven through the tls module and curl.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { cgroupRoot } from "../lib/binary/cgroup.ts";

type Json = Record<string, unknown> & { pid: number; comm: string; data: string };

function sent(run: EcapRun): string {
  return (run.json() as Json[]).filter((e) => e.direction === "write").map((e) => atob(e.data))
    .join("");
}

/** Runs argv to completion; its stdout. */
async function output(argv: string[]): Promise<string> {
  const r = await new Deno.Command(argv[0], { args: argv.slice(1), stdout: "piped" }).output();
  return new TextDecoder().decode(r.stdout);
}

/** The cgroup v2 id of a process: its cgroup directory's inode number. */
function cgroupIdOf(pid: number): number {
  const path = /^0::(.*)$/m.exec(Deno.readTextFileSync(`/proc/${pid}/cgroup`))![1];
  return Deno.statSync(`${cgroupRoot()}${path}`).ino!;
}

const CLIENT_C = new URL("./fixtures/tls_client.c", import.meta.url).pathname;

const curlArgs = (url: string) => ["curl", "-sk", "--http1.1", "--max-time", "20", url];

/**
 * A shell that runs `curl URL` for each line it reads: a parent whose
 * children come later. fetch() resolves with the HTTP status once curl is done.
 */
function curlLoop() {
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      `while read u; do curl -sk --http1.1 --max-time 20 -o /dev/null -w '%{http_code}\\n' "$u"; done`,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).values();
  let buffered = "";
  const nextLine = async () => {
    while (!buffered.includes("\n")) {
      const r = await lines.next();
      if (r.done) throw new Error("the curl loop ended");
      buffered += r.value;
    }
    const line = buffered.slice(0, buffered.indexOf("\n"));
    buffered = buffered.slice(line.length + 1);
    return line;
  };
  return {
    pid: child.pid,
    async fetch(url: string): Promise<string> {
      await w.write(new TextEncoder().encode(`${url}\n`));
      return await nextLine();
    },
    async [Symbol.asyncDispose]() {
      await w.close().catch(() => {});
      await lines.return?.();
      await child.status;
    },
  };
}

bpfTest("-p twice takes both processes' children with --follow-children, not a third", async () => {
  await using nginx = await Nginx.start({ "f.txt": "filtered\n" });
  await using a = curlLoop();
  await using b = curlLoop();
  await using c = curlLoop();
  await using run = await EcapRun.start([
    "tls",
    "--calls",
    "--json",
    "-p",
    String(a.pid),
    "-p",
    String(b.pid),
    "--follow-children",
  ]);
  // c's request is done before a's and b's begin: once theirs are read, c's would have been
  assert.equal(await c.fetch(nginx.url("/f.txt?from=c")), "200");
  assert.equal(await a.fetch(nginx.url("/f.txt?from=a")), "200");
  assert.equal(await b.fetch(nginx.url("/f.txt?from=b")), "200");
  await waitFor(() => sent(run).includes("from=a") && sent(run).includes("from=b"), "a and b");
  await run.stop();
  assert.ok(!sent(run).includes("from=c"), "c's curl is not followed");
});

bpfTest("-p without --follow-children leaves the process's children out", async () => {
  await using a = curlLoop();
  await using run = await EcapRun.start(["tls", "--calls", "--json", "-p", String(a.pid)], {
    wait: false,
  });
  // the shell maps no libssl itself
  assert.equal(await run.wait(), 4);
  assert.match(run.stderr, /maps no OpenSSL library/);
});

bpfTest("-u takes a user's curl and leaves root's out", async () => {
  await using nginx = await Nginx.start({ "u.txt": "by uid\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json", "-u", "65534"]);
  const asNobody = [
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    ...curlArgs(nginx.url("/u.txt?who=nobody")),
  ];
  // root's request first: once nobody's is read, root's would have been
  assert.equal(await output(curlArgs(nginx.url("/u.txt?who=root"))), "by uid\n");
  assert.equal(await output(asNobody), "by uid\n");
  await waitFor(() => sent(run).includes("who=nobody"), "nobody's request");
  await run.stop();
  assert.ok(!sent(run).includes("who=root"));
  assert.ok((run.json() as Json[]).every((e) => e.uid === 65534));
});

bpfTest("--comm takes tasks of that name and leaves others out", async () => {
  await using nginx = await Nginx.start({ "c.txt": "by comm\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json", "--comm", "curl"]);
  const py = `import ssl, urllib.request
urllib.request.urlopen("${
    nginx.url("/c.txt?who=python")
  }", context=ssl._create_unverified_context()).read()`;
  assert.equal(await output(["/usr/bin/python3", "-c", `${py}; print("done")`]), "done\n");
  assert.equal(await output(curlArgs(nginx.url("/c.txt?who=curl"))), "by comm\n");
  await waitFor(() => sent(run).includes("who=curl"), "curl's request");
  await run.stop();
  assert.ok(!sent(run).includes("who=python"));
  assert.ok((run.json() as Json[]).every((e) => e.comm === "curl"));
});

bpfTest("--comm matches the process's name, not its thread's; output names both", async () => {
  // Firefox's TLS runs in a thread called "Socket Thread": --comm firefox-esr
  // must still take it (the client here does its TLS in such a thread)
  const dir = await Deno.makeTempDir({ prefix: "ecap-thread-" });
  try {
    const client = `${dir}/threaded-client`;
    const cc = await new Deno.Command("gcc", {
      args: ["-O1", "-o", client, CLIENT_C, "-lssl", "-lcrypto", "-lpthread"],
    }).output();
    assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
    await using nginx = await Nginx.start({ "t.txt": "threaded\n" });
    await using run = await EcapRun.start([
      "tls",
      "--calls",
      "--json",
      "--comm",
      "threaded-client",
    ]);
    await using text = await EcapRun.start(["tls", "--calls", "--comm", "threaded-client"]);
    const out = await output([client, String(nginx.port), "/t.txt?thread", "13", "thread"]);
    assert.match(out, /threaded/);
    await waitFor(() => sent(run).includes("/t.txt?thread"), "the threaded client's request");
    await waitFor(() => text.stdout.includes("/t.txt?thread"), "the text view of it");
    await run.stop();
    await text.stop();
    const mine = (run.json() as Json[]).filter((e) => e.kind === "data");
    assert.ok(mine.length >= 2);
    for (const e of mine) {
      assert.equal(e.comm, "Socket Thread");
      assert.equal(e.process, "threaded-client");
    }
    assert.match(text.stdout, /threaded-client\[\d+\]\/Socket Thread fd=/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("--cgroup takes processes in that cgroup (and below) and names the container", async () => {
  const root = cgroupRoot();
  const slice = `/ecap-test-${Deno.pid}.slice`;
  const scope = `${slice}/docker-${crypto.randomUUID().replaceAll("-", "")}.scope`;
  await Deno.mkdir(`${root}${scope}`, { recursive: true });
  try {
    await using nginx = await Nginx.start({ "g.txt": "by cgroup\n" });
    await using run = await EcapRun.start(["tls", "--calls", "--json", "--cgroup", slice]);
    const inside = [
      "sh",
      "-c",
      `echo $$ > ${root}${scope}/cgroup.procs && exec "$@"`,
      "sh",
      ...curlArgs(nginx.url("/g.txt?where=inside")),
    ];
    // outside first: once the inside request is read, the outside one would have been
    assert.equal(await output(curlArgs(nginx.url("/g.txt?where=outside"))), "by cgroup\n");
    assert.equal(await output(inside), "by cgroup\n");
    await waitFor(() => sent(run).includes("where=inside"), "the request from inside");
    await run.stop();
    assert.ok(!sent(run).includes("where=outside"));
    const ev = (run.json() as Json[])[0];
    assert.equal(ev.cgroup_id, (await Deno.stat(`${root}${scope}`)).ino);
    assert.equal(ev.container, scope);
  } finally {
    await Deno.remove(`${root}${scope}`).catch(() => {});
    await Deno.remove(`${root}${slice}`).catch(() => {});
  }
});

bpfTest("--json events carry cgroup_id, and container null outside one", async () => {
  await using nginx = await Nginx.start({ "j.txt": "json\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json", "--comm", "curl"]);
  await output(curlArgs(nginx.url("/j.txt")));
  await waitFor(() => (run.json() as Json[]).length > 0, "an event");
  await run.stop();
  const ev = (run.json() as Json[])[0];
  assert.equal(ev.cgroup_id, cgroupIdOf(Deno.pid));
  assert.equal(ev.container, null, "the test runs in no container");
});

bpfTest("bad filters fail in one line", async () => {
  for (
    const [args, re, code] of [
      [["--cgroup", "/no/such/cgroup"], /No cgroup v2 "\/no\/such\/cgroup"/, 4],
      [["--comm", "a-name-longer-than-15"], /at most 15 bytes/, 2],
      [["--follow-children"], /--follow-children needs -p PID/, 2],
    ] as [string[], RegExp, number][]
  ) {
    await using run = await EcapRun.start(["tls", "--calls", ...args], { wait: false });
    assert.equal(await run.wait(), code, run.stderr);
    assert.match(run.stderr, re);
    assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
  }
});
