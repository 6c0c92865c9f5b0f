/**
 * The gnutls module against real GnuTLS clients (gnutls-cli, wget) and a
 * real server (nginx, OpenSSL), on loopback: plaintext both ways, keys that
 * let tshark decrypt, a library mapped after the start, and a bad --gnutls.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import {
  clientRandoms,
  httpRequestUris,
  httpResponseBodies,
  pcapArgs,
  stopAfterKeys,
  TsharkCapture,
} from "./_tshark.ts";

type Json = Record<string, unknown> & {
  pid: number;
  comm: string;
  kind: string;
  direction: "read" | "write";
  fd: number;
  data: string;
  remote: { addr: string; port: number } | null;
};

const SYSTEM_GNUTLS = "/usr/lib/x86_64-linux-gnu/libgnutls.so.30";
const TLS12 = "NORMAL:-VERS-ALL:+VERS-TLS1.2";
const TLS13 = "NORMAL:-VERS-ALL:+VERS-TLS1.3";

function bytesOf(e: Json): Uint8Array {
  return Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0));
}

/** Everything a process moved in one direction, in order. */
function stream(events: Json[], pid: number, direction: "read" | "write"): Uint8Array {
  const parts = events.filter((e) =>
    e.kind === "data" && e.pid === pid && e.direction === direction
  )
    .map(bytesOf);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/** The bytes after the first blank line of an HTTP/1 message stream. */
function bodyAfterHeaders(b: Uint8Array): Uint8Array {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) {
      return b.subarray(i + 4);
    }
  }
  throw new Error("no end of headers");
}

function request(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
}

/** Runs gnutls-cli with its request in a file; returns its pid and what it printed. */
async function gnutlsCli(
  nginx: Nginx,
  path: string,
  priority: string,
  env: Record<string, string> = {},
): Promise<{ pid: number; request: string; stdout: string }> {
  const req = request(path);
  const file = `${nginx.dir}/req-${crypto.randomUUID()}.txt`;
  await Deno.writeTextFile(file, req);
  // the request from a file: sh execs gnutls-cli in its own pid
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      'exec gnutls-cli --insecure --priority "$1" -p "$2" 127.0.0.1 < "$3"',
      "sh",
      priority,
      String(nginx.port),
      file,
    ],
    stdout: "piped",
    stderr: "piped",
    env,
  }).spawn();
  const out = await child.output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `gnutls-cli: ${new TextDecoder().decode(out.stderr)}`);
  return { pid: child.pid, request: req, stdout };
}

async function wget(url: string): Promise<number> {
  const child = new Deno.Command("wget", {
    args: ["-q", "--no-check-certificate", "-O", "/dev/null", url],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const out = await child.output();
  assert.equal(out.code, 0, `wget: ${new TextDecoder().decode(out.stderr)}`);
  return child.pid;
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, Math.min(n, i + 65536)));
  return b;
}

bpfTest(
  "ecap gnutls captures gnutls-cli (TLS 1.2, 1.3) and wget byte-exact both ways",
  async () => {
    const body = randomBytes(200_000);
    const page = "hello from nginx to gnutls\n";
    await using nginx = await Nginx.start({ "big.bin": body, "index.html": page });
    await using run = await EcapRun.start(["gnutls", "--calls", "--json", "--mapsize", "16M"]);
    assert.match(run.stderr, /libgnutls\.so\.30: GnuTLS 3\.\d+\.\d+/);
    const v12 = await gnutlsCli(nginx, `/index.html?v12-${crypto.randomUUID()}`, TLS12);
    const v13 = await gnutlsCli(nginx, `/index.html?v13-${crypto.randomUUID()}`, TLS13);
    const wgetPid = await wget(nginx.url("/big.bin"));
    const done = () => {
      const events = run.json() as Json[];
      return [v12.pid, v13.pid, wgetPid].every((pid) =>
        events.some((e) => e.pid === pid && e.direction === "read")
      );
    };
    await waitFor(done, "the three clients' responses");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await run.stop(), 0);
    const events = run.json() as Json[];

    for (const c of [v12, v13]) {
      const sent = new TextDecoder().decode(stream(events, c.pid, "write"));
      assert.equal(sent, c.request, "the request, once and whole");
      const got = stream(events, c.pid, "read");
      assert.match(new TextDecoder().decode(got), /^HTTP\/1\.1 200 OK\r\n/);
      assert.equal(new TextDecoder().decode(bodyAfterHeaders(got)), page);
      assert.ok(c.stdout.includes(page));
      const write = events.find((e) => e.pid === c.pid && e.direction === "write")!;
      assert.deepEqual(write.remote, { addr: "127.0.0.1", port: nginx.port });
      assert.ok(write.fd >= 0);
    }
    const wgetSent = new TextDecoder().decode(stream(events, wgetPid, "write"));
    assert.match(wgetSent, new RegExp(`^GET /big\\.bin HTTP/1\\.1\\r\\n`));
    assert.equal(wgetSent.split("GET ").length, 2, "one request");
    assert.deepEqual(bodyAfterHeaders(stream(events, wgetPid, "read")), body);
    assert.match(run.stderr, /ecap: \d+ events, 0 lost/);
  },
);

bpfTest("ecap gnutls -m keylog writes TLS 1.2 and 1.3 keys that let tshark decrypt", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-gnutls-" });
  try {
    await using nginx = await Nginx.start({ "k.txt": "gnutls secret body\n" });
    const keys = `${dir}/keys.log`;
    await using run = await EcapRun.start(["gnutls", "--calls", "-m", "keylog", "-k", keys]);
    assert.match(run.stderr, /GnuTLS 3\.\d+\.\d+; keys from its keylog hook/);
    await using cap = await TsharkCapture.start(`${dir}/cap.pcapng`, nginx.port);
    const v12 = await gnutlsCli(nginx, "/k.txt?v12", TLS12);
    const v13 = await gnutlsCli(nginx, "/k.txt?v13", TLS13);
    await stopAfterKeys(keys, cap, "SERVER_TRAFFIC_SECRET_0");
    assert.equal(await run.stop(), 0);
    const lines = (await Deno.readTextFile(keys)).trim().split("\n");
    assert.equal(new Set(lines).size, lines.length, "no line twice");
    assert.deepEqual(lines.map((l) => l.split(" ")[0]).sort(), [
      "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
      "CLIENT_RANDOM",
      "CLIENT_TRAFFIC_SECRET_0",
      "EXPORTER_SECRET",
      "SERVER_HANDSHAKE_TRAFFIC_SECRET",
      "SERVER_TRAFFIC_SECRET_0",
    ]);
    // one line per handshake on stdout, from our two gnutls-cli processes
    for (const pid of [v12.pid, v13.pid]) {
      assert.match(run.stdout, new RegExp(`gnutls-cli\\[${pid}\\] fd=\\d+ 127\\.0\\.0\\.1:\\d+ `));
    }
    const randoms = await clientRandoms(`${dir}/cap.pcapng`);
    assert.deepEqual(new Set(lines.map((l) => l.split(" ")[1])), new Set(randoms));
    const uris = await httpRequestUris(`${dir}/cap.pcapng`, keys);
    assert.deepEqual(uris.sort(), ["/k.txt?v12", "/k.txt?v13"]);
    assert.match(run.stderr, /2 handshakes, 6 key log lines written/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap gnutls -m pcap writes pcapng that tshark decrypts with no options", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-gnutls-" });
  try {
    await using nginx = await Nginx.start({ "p.txt": "gnutls pcap body\n" });
    const out = `${dir}/out.pcapng`;
    await using run = await EcapRun.start(
      pcapArgs("gnutls", out, "tcp", "port", String(nginx.port)),
    );
    await gnutlsCli(nginx, "/p.txt?cli12", TLS12);
    await gnutlsCli(nginx, "/p.txt?cli13", TLS13);
    await wget(nginx.url("/p.txt?wget"));
    await new Promise((r) => setTimeout(r, 1200)); // packets are held 500 ms
    assert.equal(await run.stop(), 0);
    assert.deepEqual((await httpRequestUris(out)).sort(), [
      "/p.txt?cli12",
      "/p.txt?cli13",
      "/p.txt?wget",
    ]);
    const bodies = (await httpResponseBodies(out)).join("\n");
    assert.ok(bodies.includes("gnutls pcap body"), bodies);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap gnutls follows a libgnutls copy a process maps after it started", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-gnutls-" });
  try {
    await Deno.copyFile(SYSTEM_GNUTLS, `${dir}/libgnutls.so.30`);
    await using nginx = await Nginx.start({ "f.txt": "followed\n" });
    const keys = `${dir}/keys.log`;
    await using run = await EcapRun.start([
      "gnutls",
      "--calls",
      "-m",
      "keylog",
      "-k",
      keys,
      "--debug",
    ]);
    const c = await gnutlsCli(nginx, "/f.txt", TLS13, { LD_LIBRARY_PATH: dir });
    await waitFor(
      async () =>
        (await Deno.readTextFile(keys).catch(() => "")).includes("CLIENT_TRAFFIC_SECRET_0"),
      "the keys of the process using the copy",
    );
    assert.equal(await run.stop(), 0);
    assert.match(
      run.stderr,
      new RegExp(
        `attach \\S*${dir}/libgnutls\\.so\\.30 \\(inode \\d+, GnuTLS [\\d.]+; keys from its keylog hook\\) for gnutls-cli\\[${c.pid}\\]`,
      ),
    );
    assert.match(run.stdout, new RegExp(`gnutls-cli\\[${c.pid}\\] .* TLS 1\\.3 keys`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap gnutls --gnutls /nonexistent fails in one line (exit 4)", async () => {
  await using run = await EcapRun.start(["gnutls", "--calls", "--gnutls", "/nonexistent"], {
    wait: false,
  });
  assert.equal(await run.wait(), 4);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0], /^ecap: GnuTLS library "\/nonexistent" not found/);
});
