/**
 * ecap tls's default view, HTTP exchanges, against real clients and nginx
 * on loopback: one exchange per request with both processes, durations
 * against a server-side delay, br and zstd bodies made by brotli(1) and
 * zstd(1), a 1 MiB upload, bytes that are not HTTP, and HAR checked by
 * har-validator.
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
// a dev dependency of this test alone: deno.json's imports stay empty for the product
// deno-lint-ignore no-import-prefix
import hv from "npm:har-validator@5.1.5";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { freePort, Nginx, selfSignedCert } from "./_nginx.ts";

type Message = {
  method?: string;
  path?: string;
  status?: number;
  headers: [string, string][];
  body: string | { base64: string };
  body_size: number;
  content_encoding?: string;
};
type Exchange = {
  schema: number;
  kind: string;
  protocol: string;
  client: { pid?: number; comm?: string } | null;
  server: { pid?: number; comm?: string } | null;
  request: Message | null;
  response: Message | null;
  timings: { duration_ms?: number };
  incomplete: boolean;
};

const token = () => crypto.randomUUID();

function exchanges(run: EcapRun): Exchange[] {
  return (run.json() as unknown as Exchange[]).filter((e) => e.kind === "http");
}

async function curl(args: string[]) {
  const r = await sh("curl", ["-sk", "--max-time", "20", ...args]);
  assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** bytes compressed by a command reading stdin (brotli -c, zstd -c). */
async function compressed(argv: string[], text: string): Promise<Uint8Array> {
  const p = new Deno.Command(argv[0], { args: argv.slice(1), stdin: "piped", stdout: "piped" })
    .spawn();
  const w = p.stdin.getWriter();
  await w.write(new TextEncoder().encode(text));
  await w.close();
  return (await p.output()).stdout;
}

bpfTest("ecap tls: one exchange per request, both processes, HTTP/1.1 and HTTP/2", async () => {
  const body = `exchange body ${token()}\n`;
  await using nginx = await Nginx.start({ "x.txt": body });
  await using run = await EcapRun.start(["tls", "--json"]);
  const t = token();
  assert.equal(await curl(["--http1.1", nginx.url(`/x.txt?h1=${t}`)]), body);
  assert.equal(await curl(["--http2", nginx.url(`/x.txt?h2=${t}`)]), body);
  const paths = [`/x.txt?h1=${t}`, `/x.txt?h2=${t}`];
  await waitFor(
    () => paths.every((p) => exchanges(run).some((x) => x.request?.path === p)),
    "both",
  );
  assert.equal(await run.stop(), 0);
  for (const [path, protocol] of [[paths[0], "HTTP/1.1"], [paths[1], "HTTP/2"]]) {
    const mine = exchanges(run).filter((x) => x.request?.path === path);
    assert.equal(mine.length, 1, `one exchange for ${path}, not one per end`);
    const x = mine[0];
    assert.equal(x.schema, 1);
    assert.equal(x.protocol, protocol);
    assert.equal(x.request?.method, "GET");
    assert.equal(x.response?.status, 200);
    assert.equal(x.response?.body, body);
    assert.equal(x.client?.comm, "curl");
    assert.equal(x.server?.comm, "nginx");
    assert.equal(x.incomplete, false);
    assert.ok((x.timings.duration_ms ?? -1) >= 0);
  }
  assert.match(run.stderr, /, 0 lost/);
});

bpfTest("ecap tls: an exchange's duration covers the server's delay", async () => {
  // nginx proxies /slow to an upstream on loopback that answers after 300 ms
  const port = freePort();
  const upstream = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, async () => {
    await new Promise((r) => setTimeout(r, 300));
    return new Response("slow answer\n");
  });
  try {
    await using nginx = await Nginx.start(
      {},
      `location /slow { proxy_pass http://127.0.0.1:${port}; }`,
    );
    await using run = await EcapRun.start(["tls", "--json"]);
    const t = token();
    assert.equal(await curl(["--http1.1", nginx.url(`/slow?${t}`)]), "slow answer\n");
    await waitFor(() => exchanges(run).some((x) => x.request?.path === `/slow?${t}`), "it");
    assert.equal(await run.stop(), 0);
    const x = exchanges(run).find((x) => x.request?.path === `/slow?${t}`)!;
    assert.ok(x.timings.duration_ms! >= 300, `duration ${x.timings.duration_ms} ms`);
    assert.ok(x.timings.duration_ms! < 10_000);
  } finally {
    await upstream.shutdown();
  }
});

bpfTest("ecap tls decodes br and zstd bodies made by brotli(1) and zstd(1)", async () => {
  const text = `compressed ${token()} `.repeat(300);
  const br = await compressed(["brotli", "-c"], text);
  const zst = await compressed(["zstd", "-c", "-q"], text);
  await using nginx = await Nginx.start(
    { "t.br": br, "t.zst": zst },
    `location ~ \\.br$ { add_header Content-Encoding br; default_type text/plain; }
    location ~ \\.zst$ { add_header Content-Encoding zstd; default_type text/plain; }`,
  );
  await using run = await EcapRun.start(["tls", "--json"]);
  const t = token();
  for (const f of ["t.br", "t.zst"]) {
    await curl(["--http1.1", "-o", "/dev/null", nginx.url(`/${f}?${t}`)]);
  }
  await curl(["--http2", "-o", "/dev/null", nginx.url(`/t.br?h2=${t}`)]);
  const wanted = [`/t.br?${t}`, `/t.zst?${t}`, `/t.br?h2=${t}`];
  await waitFor(
    () => wanted.every((p) => exchanges(run).some((x) => x.request?.path === p)),
    "all",
  );
  assert.equal(await run.stop(), 0);
  const sizes: [string, number][] = [
    [wanted[0], br.length],
    [wanted[1], zst.length],
    [wanted[2], br.length],
  ];
  for (const [p, size] of sizes) {
    const x = exchanges(run).find((x) => x.request?.path === p)!;
    assert.equal(x.response?.body, text, p);
    assert.equal(x.response?.content_encoding, undefined);
    assert.equal(x.response?.body_size, size, "bytes on the wire");
  }
});

bpfTest("ecap tls shows a 1 MiB upload as one exchange, byte-exact", async () => {
  await using nginx = await Nginx.start();
  const dir = await Deno.makeTempDir({ prefix: "ecap-upload-" });
  try {
    const data = new Uint8Array(1 << 20);
    for (let i = 0; i < data.length; i += 65536) {
      crypto.getRandomValues(data.subarray(i, i + 65536));
    }
    await Deno.writeFile(`${dir}/up.bin`, data);
    await using run = await EcapRun.start(["tls", "--json", "--mapsize", "64M"]);
    const t = token();
    assert.equal(
      await curl(["--http1.1", "--data-binary", `@${dir}/up.bin`, nginx.url(`/upload?${t}`)]),
      "uploaded\n",
    );
    await waitFor(() => exchanges(run).some((x) => x.request?.path === `/upload?${t}`), "it");
    await run.stop();
    const mine = exchanges(run).filter((x) => x.request?.path === `/upload?${t}`);
    assert.equal(mine.length, 1);
    const rq = mine[0].request!;
    assert.equal(rq.method, "POST");
    assert.equal(rq.body_size, data.length);
    const b = rq.body as { base64: string };
    const got = Uint8Array.from(atob(b.base64), (c) => c.charCodeAt(0));
    const sha = (x: Uint8Array) => createHash("sha256").update(x).digest("hex");
    assert.equal(sha(got), sha(data));
    assert.equal(mine[0].response?.status, 200);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap tls shows bytes that are not HTTP as blocks, one per direction", async () => {
  // a line protocol over TLS, both ends python (OpenSSL)
  const dir = await Deno.makeTempDir({ prefix: "ecap-raw-" });
  try {
    await selfSignedCert(dir);
    const port = freePort();
    const t = token();
    const server = new Deno.Command("/usr/bin/python3", {
      args: [
        "-c",
        `
import socket, ssl
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER); ctx.load_cert_chain("${dir}/cert.pem", "${dir}/key.pem")
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", ${port})); s.listen(1); print("ready", flush=True)
c = ctx.wrap_socket(s.accept()[0], server_side=True)
got = b""
while not got.endswith(b"QUIT\\r\\n"): got += c.recv(4096)
c.sendall(b"221 bye ${t}\\r\\n"); c.close()`,
      ],
      stdout: "piped",
    }).spawn();
    const reader = server.stdout.getReader();
    await reader.read(); // ready
    await using run = await EcapRun.start(["tls", "--json"]);
    const client = await sh("/usr/bin/python3", [
      "-c",
      `
import socket, ssl
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c = ctx.wrap_socket(socket.create_connection(("127.0.0.1", ${port})))
for line in [b"HELO ${t}\\r\\n", b"NOOP\\r\\n", b"QUIT\\r\\n"]: c.sendall(line)
print(c.recv(4096).decode().strip())`,
    ]);
    assert.equal(client.stdout.trim(), `221 bye ${t}`, client.stderr);
    await server.status;
    reader.releaseLock();
    type Block = { kind: string; direction: string; data: string; pid: number };
    const blocks = () => (run.json() as unknown as Block[]).filter((e) => e.kind === "stream");
    const text = (b: Block) => atob(b.data);
    await waitFor(() => blocks().some((b) => text(b).includes(`221 bye ${t}`)), "the reply");
    await run.stop();
    const sent = blocks().filter((b) => text(b).includes(`HELO ${t}`));
    const lines = `HELO ${t}\r\nNOOP\r\nQUIT\r\n`;
    assert.deepEqual(
      sent.map((b) => [b.direction, text(b)]).sort(),
      [["read", lines], ["write", lines]],
      "the client's three writes one block, the server's reads another",
    );
    assert.equal(exchanges(run).length, 0, "no HTTP");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap tls --har writes a HAR 1.2 file that har-validator accepts", async () => {
  const body = `har body ${token()}\n`;
  await using nginx = await Nginx.start({ "h.txt": body });
  const dir = await Deno.makeTempDir({ prefix: "ecap-har-" });
  try {
    const har = `${dir}/out.har`;
    await using run = await EcapRun.start(["tls", "--har", har]);
    const t = token();
    await curl(["--http1.1", nginx.url(`/h.txt?one=${t}`)]);
    await curl(["--http2", "-H", `X-Token: ${t}`, nginx.url(`/h.txt?two=${t}`)]);
    await sh("/usr/bin/python3", [
      "-c",
      `import ssl, urllib.request
urllib.request.urlopen("${
        nginx.url(`/h.txt?py=${t}`)
      }", context=ssl._create_unverified_context()).read()`,
    ]);
    const urls = ["one", "two", "py"].map((k) => nginx.url(`/h.txt?${k}=${t}`));
    // valid while ecap runs (flushed once a second), and after it ends
    await waitFor(
      async () => {
        // read while ecap may be writing it: a torn read is tried again
        const doc = await Deno.readTextFile(har).then(JSON.parse).catch(() => ({
          log: { entries: [] },
        }));
        return urls.every((u) =>
          doc.log.entries.some((e: { request: { url: string } }) => e.request.url === u)
        );
      },
      "the three entries in the file",
      10_000,
    );
    assert.equal(await run.stop(), 0);
    assert.equal((await Deno.stat(har)).mode! & 0o777, 0o600);
    const doc = JSON.parse(await Deno.readTextFile(har));
    await hv.har(doc); // throws with the schema's errors when invalid
    type Entry = {
      request: { url: string; method: string; headers: { name: string; value: string }[] };
      response: { status: number; content: { text?: string } };
      _ecap: { client: { comm: string } | null; server: { comm: string } | null };
    };
    for (const url of urls) {
      const mine = (doc.log.entries as Entry[]).filter((e) => e.request.url === url);
      assert.equal(mine.length, 1, url);
      assert.equal(mine[0].response.status, 200);
      assert.equal(mine[0].response.content.text, body);
      assert.equal(mine[0]._ecap.server?.comm, "nginx");
    }
    const two = (doc.log.entries as Entry[]).find((e) => e.request.url === urls[1])!;
    assert.ok(two.request.headers.some((h) => h.name === "x-token" && h.value === t));
    assert.match(run.stderr, /\d+ exchanges written to .*out\.har \(HAR\)/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap tls --har refuses a directory, a symbolic link, and --calls", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-harbad-" });
  try {
    await Deno.symlink("/etc/passwd", `${dir}/link.har`);
    for (
      const [args, code, msg] of [
        [["--har", dir], 6, /it is a directory/],
        [["--har", `${dir}/link.har`], 3, /it is a symbolic link/],
        [["--har", `${dir}/x.har`, "--calls"], 2, /cannot go with --calls/],
        [["--exchange-timeout", "soon"], 2, /Invalid --exchange-timeout "soon"/],
      ] as const
    ) {
      await using run = await EcapRun.start(["tls", ...args], { wait: false });
      assert.equal(await run.wait(), code, run.stderr);
      assert.match(run.stderr, msg);
      assert.equal(run.stderr.trim().split("\n").length, 1, run.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
