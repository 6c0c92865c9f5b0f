/**
 * The tls module against real clients (curl, python3, node) and a real
 * server (nginx), all on loopback.
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { Nginx, selfSignedCert } from "./_nginx.ts";

type Json = Record<string, unknown> & {
  pid: number;
  comm: string;
  direction: "read" | "write";
  conn: string;
  data: string;
  remote: { addr: string; port: number } | null;
  local: { addr: string; port: number } | null;
};

const token = () => `ecap-${crypto.randomUUID()}`;

function bytesOf(e: Json): Uint8Array {
  return Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0));
}

function textOf(events: Json[]): string {
  return events.map((e) => new TextDecoder().decode(bytesOf(e))).join("");
}

/** Everything one side of a connection moved in one direction, in order. */
function stream(events: Json[], pid: number, direction: "read" | "write"): Uint8Array {
  const mine = events.filter((e) => e.pid === pid && e.direction === direction);
  const parts = mine.map(bytesOf);
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

function sha256(b: Uint8Array): string {
  return createHash("sha256").update(b).digest("hex");
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

async function curl(args: string[]) {
  const r = await sh("curl", ["-sk", "--max-time", "20", ...args]);
  assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}`);
  return r;
}

async function capturedUntil(run: EcapRun, marker: string) {
  await waitFor(() => textOf(run.json() as Json[]).includes(marker), `"${marker}" in the capture`);
}

bpfTest("ecap tls captures curl and nginx over HTTP/1.1, both ends, with addresses", async () => {
  await using nginx = await Nginx.start({ "index.html": "hello from nginx\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json"]);
  const t = token();
  await curl(["--http1.1", nginx.url(`/index.html?${t}`)]);
  await capturedUntil(run, "hello from nginx");
  await run.stop();
  const events = run.json() as Json[];
  const clientWrite = events.find((e) =>
    e.comm === "curl" && e.direction === "write" &&
    textOf([e]).includes(`GET /index.html?${t} HTTP/1.1`)
  );
  assert.ok(clientWrite, "curl's request captured");
  assert.deepEqual(clientWrite.remote, { addr: "127.0.0.1", port: nginx.port });
  assert.equal(clientWrite.local?.addr, "127.0.0.1");
  const serverRead = events.find((e) =>
    e.comm === "nginx" && e.direction === "read" &&
    textOf([e]).includes(`GET /index.html?${t} HTTP/1.1`)
  );
  assert.ok(serverRead, "nginx's view of the request captured");
  assert.deepEqual(serverRead.local, { addr: "127.0.0.1", port: nginx.port });
  assert.equal(serverRead.remote?.port, clientWrite.local?.port);
  const http = clientWrite.http as { protocol: string; message: { target: string } }[];
  assert.equal(http?.[0]?.message?.target, `/index.html?${t}`);
  assert.match(run.stderr, /OpenSSL 3\.\d+\.\d+/);
  assert.match(run.stderr, /ecap: \d+ events, 0 lost/);
});

bpfTest("ecap tls captures a 1 MiB upload and a 1 MiB download byte-exact", async () => {
  const big = new Uint8Array(1 << 20);
  const download = new Uint8Array(1 << 20);
  for (let i = 0; i < download.length; i += 65536) {
    crypto.getRandomValues(download.subarray(i, i + 65536));
  }
  for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));
  await using nginx = await Nginx.start({ "big.bin": download });
  const upload = `${nginx.dir}/upload.bin`;
  await Deno.writeFile(upload, big);
  await using run = await EcapRun.start(["tls", "--calls", "--json", "--mapsize", "64M"]);
  const up = new Deno.Command("curl", {
    args: ["-sk", "--http1.1", "--data-binary", `@${upload}`, nginx.url("/upload")],
    stdout: "piped",
  }).spawn();
  const upOut = await up.output();
  assert.equal(new TextDecoder().decode(upOut.stdout), "uploaded\n");
  const down = new Deno.Command("curl", {
    args: ["-sk", "--http1.1", "-o", "/dev/null", nginx.url("/big.bin")],
  }).spawn();
  assert.equal((await down.output()).code, 0);
  await new Promise((r) => setTimeout(r, 500));
  await run.stop();
  const events = run.json() as Json[];
  const sent = bodyAfterHeaders(stream(events, up.pid, "write"));
  assert.equal(sent.length, big.length);
  assert.equal(sha256(sent), sha256(big));
  const received = bodyAfterHeaders(stream(events, down.pid, "read"));
  assert.equal(received.length, download.length);
  assert.equal(sha256(received), sha256(download));
  assert.match(run.stderr, /, 0 lost/);
});

bpfTest("ecap tls reads records that wrap round the end of its ring byte-exact", async () => {
  // python writes odd-sized chunks to its own TLS server thread in rounds,
  // each read by ecap before the next, through a 128 KiB ring: about 480
  // KiB of records (both ends) go round it three times and some straddle its end (read
  // in two parts: ffi/ring_reader.c); no round fills it past half (no
  // record kept short)
  const dir = await Deno.makeTempDir({ prefix: "ecap-ring-" });
  try {
    await selfSignedCert(dir);
    const py = new Deno.Command("/usr/bin/python3", {
      args: [
        "-c",
        `import hashlib, random, socket, ssl, sys, threading
server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
server.load_cert_chain("${dir}/cert.pem", "${dir}/key.pem")
server.num_tickets = 0 # nothing left unread by the client: its close is a FIN, not a RST
listener = socket.create_server(("127.0.0.1", 0))
got, capturing, progress = bytearray(), threading.Event(), threading.Condition()
def serve():
    conn, _ = listener.accept()
    with server.wrap_socket(conn, server_side=True) as s:
        capturing.wait() # a read begun before ecap attached has no return probe
        try:
            while b := s.recv(65536):
                with progress:
                    got.extend(b)
                    progress.notify()
        except ssl.SSLEOFError: # the client closes without close_notify
            pass
thread = threading.Thread(target=serve)
thread.start()
client = ssl._create_unverified_context().wrap_socket(socket.create_connection(listener.getsockname()))
print("ready", flush=True)
rng, sent, total = random.Random(7), hashlib.sha256(), 0
for _ in range(24):
    sys.stdin.readline()
    capturing.set()
    for _ in range(8):
        b = rng.randbytes(rng.randint(1, 2500))
        client.sendall(b)
        sent.update(b)
        total += len(b)
    with progress:
        progress.wait_for(lambda: len(got) == total)
    print(total, flush=True)
client.close()
thread.join()
print(sent.hexdigest(), hashlib.sha256(got).hexdigest(), flush=True)`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    const lines: string[] = [];
    const pump = (async () => {
      let part = "";
      for await (const c of py.stdout.pipeThrough(new TextDecoderStream())) {
        const all = (part + c).split("\n");
        part = all.pop()!;
        lines.push(...all);
      }
    })();
    const stdin = py.stdin.getWriter();
    await waitFor(() => lines[0] === "ready", "python's connection");
    await using run = await EcapRun.start([
      "tls",
      "--calls",
      "--json",
      "--mapsize",
      String(128 << 10),
      "--pid",
      String(py.pid),
    ]);
    const captured = (direction: "read" | "write") =>
      stream(run.json() as Json[], py.pid, direction).length;
    for (let round = 1; round <= 24; round++) {
      await stdin.write(new TextEncoder().encode("go\n"));
      await waitFor(() => lines.length > round, `python's round ${round}`);
      const total = Number(lines[round]);
      await waitFor(
        () => captured("write") === total && captured("read") === total,
        `round ${round}'s ${total} bytes each way in the capture`,
      );
    }
    await stdin.close();
    await pump;
    assert.equal((await py.status).code, 0);
    const total = Number(lines[24]);
    assert.ok(2 * total > 3 * (128 << 10), `${total} bytes each way`);
    const [sentSha, gotSha] = lines[25].split(" ");
    assert.equal(sentSha, gotSha, "python's server read what its client wrote");
    assert.equal(await run.stop(), 0);
    const events = run.json() as Json[];
    assert.equal(sha256(stream(events, py.pid, "write")), sentSha);
    assert.equal(sha256(stream(events, py.pid, "read")), sentSha);
    const stats = run.stats()!;
    assert.equal(Number(stats.lost), 0, JSON.stringify(stats));
    assert.equal(Number(stats.shed ?? 0), 0, JSON.stringify(stats));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap tls decodes HTTP/2 headers from curl", async () => {
  await using nginx = await Nginx.start({ "h2.txt": "over h2\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json"]);
  const t = token();
  await curl(["--http2", "-o", "/dev/null", nginx.url(`/h2.txt?${t}`)]);
  await curl(["--http2", nginx.url("/h2.txt")]);
  await capturedUntil(run, "over h2");
  await run.stop();
  const views = (run.json() as Json[])
    .filter((e) => e.comm === "curl")
    .flatMap((e) =>
      (e.http ?? []) as { protocol: string; event?: { headers?: [string, string][] } }[]
    );
  const paths = views.flatMap((v) => v.event?.headers ?? []).filter(([k]) => k === ":path");
  assert.ok(paths.some(([, v]) => v === `/h2.txt?${t}`), JSON.stringify(paths));
  assert.ok(views.every((v) => v.protocol === "http2"));
});

bpfTest("ecap tls captures python3's urllib and --pid isolates it", async () => {
  await using nginx = await Nginx.start({ "py.txt": "python here\n" });
  const t = token();
  const py = new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      `import ssl, sys, time, urllib.request
sys.stdin.readline()
ctx = ssl._create_unverified_context()
print(urllib.request.urlopen("${nginx.url(`/py.txt?${t}`)}", context=ctx).read().decode())`,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  // python has loaded libssl (import ssl) once it waits on stdin
  await new Promise((r) => setTimeout(r, 1000));
  await using run = await EcapRun.start(["tls", "--calls", "--json", "--pid", String(py.pid)]);
  await curl(["--http1.1", nginx.url("/py.txt?from-curl")]);
  const w = py.stdin.getWriter();
  await w.write(new TextEncoder().encode("go\n"));
  await w.close();
  assert.equal(new TextDecoder().decode((await py.output()).stdout), "python here\n\n");
  await capturedUntil(run, "python here");
  await run.stop();
  const events = run.json() as Json[];
  assert.ok(events.length >= 2);
  assert.ok(events.every((e) => e.pid === py.pid), "only python's events");
  assert.ok(textOf(events).includes(`GET /py.txt?${t} HTTP/1.1`));
  assert.ok(!textOf(events).includes("from-curl"));
});

bpfTest("ecap tls --libssl /usr/bin/node captures node's statically linked OpenSSL", async () => {
  await using nginx = await Nginx.start({ "node.txt": "node reads this\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json", "--libssl", "/usr/bin/node"]);
  assert.match(run.stderr, /\/usr\/bin\/node: OpenSSL \d+\.\d+\.\d+.*linked statically/);
  const t = token();
  const r = await sh("/usr/bin/node", [
    "-e",
    `require("https").get("${nginx.url(`/node.txt?${t}`)}", { rejectUnauthorized: false },
      (res) => res.pipe(process.stdout));`,
  ]);
  assert.equal(r.stdout, "node reads this\n");
  await capturedUntil(run, "node reads this");
  await run.stop();
  const events = run.json() as Json[];
  assert.ok(textOf(events.filter((e) => e.direction === "write")).includes(`/node.txt?${t}`));
  assert.ok(events.every((e) => e.comm === "node"));
});

bpfTest("ecap tls text output shows the connection and the HTTP request", async () => {
  await using nginx = await Nginx.start({ "t.txt": "text mode\n" });
  await using run = await EcapRun.start(["tls", "--calls"]);
  const t = token();
  await curl(["--http1.1", nginx.url(`/t.txt?${t}`)]);
  await waitFor(() => run.stdout.includes("text mode"), "the response in text output");
  await run.stop();
  assert.match(
    run.stdout,
    new RegExp(
      `curl\\[\\d+\\] fd=\\d+ 127\\.0\\.0\\.1:\\d+ -> 127\\.0\\.0\\.1:${nginx.port} WRITE`,
    ),
  );
  assert.ok(run.stdout.includes(`GET /t.txt?${t} HTTP/1.1`));
});

bpfTest("ecap tls text output shows a large binary body once, not a dump per read", async () => {
  const body = new Uint8Array(200_000);
  for (let i = 0; i < body.length; i += 65536) {
    crypto.getRandomValues(body.subarray(i, i + 65536));
  }
  await using nginx = await Nginx.start({ "big.bin": body });
  await using run = await EcapRun.start(["tls", "--calls"]);
  await curl(["--http1.1", "-o", "/dev/null", nginx.url("/big.bin")]);
  await waitFor(() => /200 OK/.test(run.stdout), "the response in text output");
  await run.stop();
  const curlReads = run.stdout.split("\n").filter((l) => /curl\[\d+\].* READ \d+ bytes/.test(l));
  assert.ok(curlReads.length >= 2, `the body came in several reads: ${curlReads.length}`);
  // reads in the middle of the message say so; the message is shown when whole
  assert.ok(curlReads.some((l) => l.endsWith("(HTTP, continued)")), curlReads.join("\n"));
  assert.doesNotMatch(run.stdout, /^00000000 {2}[0-9a-f]{2} /m, "no hex dump of the body");
});

bpfTest(
  "ecap tls --libssl to a missing file or a file without SSL symbols fails in one line",
  async () => {
    await using missing = await EcapRun.start([
      "tls",
      "--calls",
      "--libssl",
      "/nonexistent/libssl.so",
    ], {
      wait: false,
    });
    assert.equal(await missing.wait(), 4);
    assert.match(missing.stderr, /^ecap: [^\n]*"\/nonexistent\/libssl.so" not found[^\n]*\n$/);
    await using nossl = await EcapRun.start(["tls", "--calls", "--libssl", "/usr/bin/true"], {
      wait: false,
    });
    assert.equal(await nossl.wait(), 5);
    assert.match(
      nossl.stderr,
      /^ecap: [^\n]*"\/usr\/bin\/true" has no SSL_read\/SSL_write[^\n]*\n$/,
    );
  },
);

bpfTest("ecap tls reports IPv6 loopback addresses", async () => {
  await using nginx = await Nginx.start({ "v6.txt": "six\n" });
  await using run = await EcapRun.start(["tls", "--calls", "--json"]);
  await curl(["--http1.1", `https://[::1]:${nginx.port}/v6.txt`]);
  await capturedUntil(run, "six");
  await run.stop();
  const w = (run.json() as Json[]).find((e) => e.comm === "curl" && e.direction === "write");
  assert.deepEqual(w?.remote, { addr: "::1", port: nginx.port });
  assert.equal(w?.local?.addr, "::1");
});

bpfTest("ecap tls says when it does not recognise a version, and still captures", async () => {
  // A copy of libssl whose libcrypto carries no version string.
  const dir = await Deno.makeTempDir({ prefix: "ecap-unknown-ssl-" });
  try {
    await Deno.chmod(dir, 0o755);
    await Deno.copyFile("/usr/lib/x86_64-linux-gnu/libssl.so.3", `${dir}/libssl.so.3`);
    const crypto3 = await Deno.readFile("/usr/lib/x86_64-linux-gnu/libcrypto.so.3");
    const needle = new TextEncoder().encode("OpenSSL ");
    for (let i = crypto3.indexOf(needle[0]); i >= 0; i = crypto3.indexOf(needle[0], i + 1)) {
      if (needle.every((b, j) => crypto3[i + j] === b)) crypto3[i] = "X".charCodeAt(0);
    }
    await Deno.writeFile(`${dir}/libcrypto.so.3`, crypto3);
    await using nginx = await Nginx.start({ "u.txt": "unknown version\n" });
    await using run = await EcapRun.start([
      "tls",
      "--calls",
      "--json",
      "--libssl",
      `${dir}/libssl.so.3`,
    ]);
    assert.match(
      run.stderr,
      /libssl\.so\.3: an unrecognised OpenSSL version \(plaintext is still captured\)/,
    );
    const r = await new Deno.Command("curl", {
      args: ["-sk", "--http1.1", nginx.url("/u.txt")],
      env: { LD_LIBRARY_PATH: dir },
    }).output();
    assert.equal(new TextDecoder().decode(r.stdout), "unknown version\n");
    await capturedUntil(run, "unknown version");
    await run.stop();
    assert.ok((run.json() as Json[]).every((e) => e.comm === "curl"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap tls attributes a connection opened before it started", async () => {
  await using nginx = await Nginx.start({ "k.txt": "kept alive\n" });
  const py = new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      `import http.client, ssl, sys
c = http.client.HTTPSConnection("127.0.0.1", ${nginx.port}, context=ssl._create_unverified_context())
for i in range(2):
    c.request("GET", "/k.txt?round=%d" % i)
    print(c.getresponse().read().decode(), end="", flush=True)
    sys.stdin.readline()`,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const reader = py.stdout.getReader();
  assert.equal(new TextDecoder().decode((await reader.read()).value), "kept alive\n");
  await using run = await EcapRun.start(["tls", "--calls", "--json", "-p", String(py.pid)]);
  const w = py.stdin.getWriter();
  await w.write(new TextEncoder().encode("\n\n"));
  await w.close();
  await capturedUntil(run, "round=1");
  await capturedUntil(run, "kept alive");
  reader.releaseLock();
  await py.output();
  await run.stop();
  const write = (run.json() as Json[]).find((e) => e.direction === "write")!;
  assert.ok(textOf([write]).includes("GET /k.txt?round=1 HTTP/1.1"));
  assert.deepEqual(write.remote, { addr: "127.0.0.1", port: nginx.port });
  assert.ok((write.fd as number) >= 3);
});
