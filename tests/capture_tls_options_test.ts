/**
 * The tls options the README promises, each against a real client and
 * nginx on loopback: --max-call-bytes (truncated and counted), --hex (the
 * same dump as `hexdump -C`), --data-keys (keys of a handshake done inside
 * SSL_write, equal to OpenSSL's own key log), --list-targets --json, and
 * -o output that survives a SIGKILL.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, sh, TmuxPane, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";

type Json = Record<string, unknown> & {
  pid: number;
  direction: "read" | "write";
  data: string;
  total: number;
  truncated: boolean;
};

const CLIENT_C = new URL("./fixtures/tls_client.c", import.meta.url).pathname;

const bytesOf = (e: Json) => Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0));

async function curl(url: string) {
  const r = await sh("curl", ["-sk", "--http1.1", "--max-time", "20", "-o", "/dev/null", url]);
  assert.equal(r.code, 0, r.stderr);
}

/** The test client (tests/fixtures/tls_client.c) built in dir. */
async function buildClient(dir: string): Promise<string> {
  const client = `${dir}/tls-client`;
  const cc = await new Deno.Command("gcc", {
    args: ["-O1", "-o", client, CLIENT_C, "-lssl", "-lcrypto", "-lpthread"],
  }).output();
  assert.equal(cc.code, 0, new TextDecoder().decode(cc.stderr));
  return client;
}

bpfTest("--max-call-bytes cuts a longer call, marks it truncated and counts it", async () => {
  const body = new Uint8Array(64 * 1024).fill(0x61);
  await using nginx = await Nginx.start({ "big.txt": body });
  await using run = await EcapRun.start([
    "tls",
    "--calls",
    "--json",
    "--comm",
    "curl",
    "--max-call-bytes",
    "4096",
  ]);
  await curl(nginx.url("/big.txt"));
  const reads = () => (run.json() as Json[]).filter((e) => e.direction === "read");
  await waitFor(() => reads().reduce((n, e) => n + e.total, 0) > body.length, "the body's reads");
  await run.stop();
  const cut = reads().filter((e) => e.truncated);
  assert.ok(cut.length > 0, "some read moved more than 4096 bytes");
  for (const e of reads()) {
    assert.equal(bytesOf(e).length, Math.min(e.total, 4096), "a call's data up to the cap");
    assert.equal(e.truncated, e.total > 4096);
  }
  assert.equal(run.stats()?.truncated, cut.length, "each cut call counted");
});

bpfTest("--hex dumps a text response as hexdump -C does", async () => {
  const token = `hex-${crypto.randomUUID()}\n`;
  await using nginx = await Nginx.start({ "h.txt": token });
  await using json = await EcapRun.start(["tls", "--calls", "--json", "--comm", "curl"]);
  await using hex = await EcapRun.start(["tls", "--calls", "--hex", "--comm", "curl"]);
  await curl(nginx.url("/h.txt"));
  const response = () =>
    (json.json() as Json[]).find((e) =>
      e.direction === "read" && new TextDecoder().decode(bytesOf(e)).includes(token)
    );
  await waitFor(() => response() !== undefined, "the response in the --json capture");
  await waitFor(() => hex.stdout.includes("|HTTP/1.1 200 OK.|"), "the response in the --hex one");
  await json.stop();
  await hex.stop();
  // the reference: util-linux's hexdump of the same bytes, less its closing offset line
  const ref = new Deno.Command("hexdump", { args: ["-C"], stdin: "piped", stdout: "piped" })
    .spawn();
  const w = ref.stdin.getWriter();
  await w.write(bytesOf(response()!));
  await w.close();
  const lines = new TextDecoder().decode((await ref.output()).stdout).trimEnd().split("\n");
  const expected = lines.slice(0, -1).join("\n");
  assert.ok(hex.stdout.includes(`\n${expected}\n`), `${expected}\nin\n${hex.stdout}`);
  assert.ok(!hex.stdout.includes(token), "no text view beside the dump");
});

bpfTest("--data-keys takes the keys of a handshake done inside SSL_write", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-datakeys-" });
  try {
    const client = await buildClient(dir);
    await using nginx = await Nginx.start({ "k.txt": "implicit handshake\n" });
    let n = 0;
    /** Runs the client; the key log lines OpenSSL itself wrote for it, sorted. */
    const connect = async (mode: "implicit" | "explicit") => {
      const own = `${dir}/client-${++n}.keys`;
      const out = await new Deno.Command(client, {
        args: [String(nginx.port), "/k.txt", "13", ...(mode === "implicit" ? ["implicit"] : [])],
        env: { CLIENT_KEYLOG: own },
        stdout: "piped",
      }).output();
      assert.match(new TextDecoder().decode(out.stdout), /implicit handshake/);
      const lines = (await Deno.readTextFile(own)).trim().split("\n").sort();
      assert.equal(lines.length, 5, "TLS 1.3: five secrets");
      return lines;
    };
    const keyLines = async (path: string) =>
      (await Deno.readTextFile(path).catch(() => "")).trim().split("\n").filter((l) => l).sort();

    // without --data-keys: an implicit handshake's keys are not taken; an explicit one's are,
    // and once they are read, the implicit one's would have been
    const plain = `${dir}/plain.keys`;
    await using run = await EcapRun.start([
      "tls",
      "-m",
      "keylog",
      "-k",
      plain,
      "--comm",
      "tls-client",
    ]);
    await connect("implicit");
    const explicit = await connect("explicit");
    await waitFor(async () => (await keyLines(plain)).length >= 5, "the explicit handshake's keys");
    await run.stop();
    assert.deepEqual(await keyLines(plain), explicit, "only the explicit handshake's keys");

    const data = `${dir}/data.keys`;
    await using withData = await EcapRun.start([
      "tls",
      "-m",
      "keylog",
      "-k",
      data,
      "--comm",
      "tls-client",
      "--data-keys",
    ]);
    const implicit = await connect("implicit");
    await waitFor(async () => (await keyLines(data)).length >= 5, "the implicit handshake's keys");
    await withData.stop();
    assert.deepEqual(await keyLines(data), implicit, "equal to OpenSSL's own key log");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("--list-targets --json names nginx's libssl, its identity and processes", async () => {
  await using nginx = await Nginx.start({ "l.txt": "listed\n" });
  await using run = await EcapRun.start(["tls", "--lib", "openssl", "--list-targets", "--json"], {
    wait: false,
  });
  assert.equal(await run.wait(), 0, run.stderr);
  const lines = run.stdout.trim().split("\n").map((l) => JSON.parse(l));
  const libssl = Deno.realPathSync("/usr/lib/x86_64-linux-gnu/libssl.so.3");
  const st = Deno.statSync(libssl);
  // named by the path the kernel gives it (/lib/... on a merged /usr): the same file
  const hit = lines.find((l) => l.target.inode === st.ino);
  assert.ok(hit, run.stdout);
  assert.equal(hit.module, "tls");
  assert.equal(Deno.realPathSync(hit.target.path), libssl);
  assert.match(hit.target.kind, /^OpenSSL 3\.\d+\.\d+/);
  const pids = (hit.target.processes as { pid: number }[]).map((p) => p.pid);
  const worker = nginx.workerPid();
  assert.ok(pids.includes(worker), `nginx's worker ${worker} among ${pids}`);
});

bpfTest("-o keeps every event ecap had read when it is SIGKILLed", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-kill-" });
  try {
    await using pane = await TmuxPane.start(["bash", "--norc", "--noprofile"]);
    const out = `${dir}/out.jsonl`;
    await using run = await EcapRun.start(["bash", "--json", "-p", String(pane.pid), "-o", out]);
    for (let i = 0; i < 20; i++) await pane.type(`echo kill-${i}`);
    const lines = async () => (await Deno.readTextFile(out)).split("\n").filter((l) => l);
    await waitFor(async () => (await lines()).some((l) => l.includes("kill-19")), "the last line");
    await run.stop("SIGKILL");
    const events = (await lines()).map((l) => JSON.parse(l));
    assert.deepEqual(
      events.map((e) => e.line),
      Array.from({ length: 20 }, (_, i) => `echo kill-${i}`),
    );
    assert.ok((await Deno.readTextFile(out)).endsWith("\n"), "whole lines only");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
