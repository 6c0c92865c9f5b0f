/**
 * What ecap tls says when its ring buffer overflows: the lost records are
 * counted, the next record of each connection and direction says so, and
 * HTTP decoding finds its footing again at the next message. Before that,
 * while the ring is over half full, calls are kept short instead: every
 * exchange is still reported, with the bodies cut.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";

type Json = Record<string, unknown>;

/** n random bytes: a body no compression or text sniffing shortens. */
function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
  return out;
}

/** The HTTP/1 messages of an event, as --json prints them. */
function messages(e: Json): Json[] {
  const http = (e.http ?? []) as Json[];
  return http.filter((v) => v.protocol === "http1").map((v) => v.message as Json);
}

bpfTest(
  "ecap tls marks records lost to a full ring and decodes HTTP again after them",
  async () => {
    const big = randomBytes(256 << 10);
    await using nginx = await Nginx.start({ "big.bin": big, "small.txt": "after the gap\n" });
    // one keep-alive connection: big responses while ecap cannot read, then a small one
    const py = new Deno.Command("/usr/bin/python3", {
      args: [
        "-c",
        `import http.client, ssl, sys
c = http.client.HTTPSConnection("127.0.0.1", ${nginx.port}, context=ssl._create_unverified_context())
sys.stdin.readline()
for _ in range(4):
    c.request("GET", "/big.bin")
    assert len(c.getresponse().read()) == ${big.length}
print("big", flush=True)
sys.stdin.readline()
c.request("GET", "/small.txt")
print(c.getresponse().read().decode(), end="", flush=True)`,
      ],
      stdin: "piped",
      stdout: "piped",
    }).spawn();
    let out = "";
    const pump = (async () => {
      for await (const c of py.stdout.pipeThrough(new TextDecoderStream())) out += c;
    })();
    const stdin = py.stdin.getWriter();
    // a 64 KiB ring holds a few 16 KiB records: the 1 MiB each way cannot fit
    await using run = await EcapRun.start([
      "tls",
      "--calls",
      "--json",
      "--mapsize",
      "65536",
      "--pid",
      String(py.pid),
    ]);
    Deno.kill(run.pid, "SIGSTOP"); // the reader falls behind
    try {
      await stdin.write(new TextEncoder().encode("go\n"));
      await waitFor(() => out.includes("big"), "python's big downloads");
    } finally {
      Deno.kill(run.pid, "SIGCONT");
    }
    await new Promise((r) => setTimeout(r, 500)); // what fit in the ring is read
    await stdin.write(new TextEncoder().encode("go\n"));
    await stdin.close();
    await pump;
    assert.equal((await py.status).code, 0);
    assert.ok(out.endsWith("after the gap\n"), out);
    await waitFor(
      () => run.json().some((e) => messages(e).some((m) => m.body === "after the gap\n")),
      "the small response decoded",
    );
    assert.equal(await run.stop(), 0);
    const events = run.json();
    const lost = Number(run.stats()?.lost);
    assert.ok(lost > 0, `records lost: ${lost}`);
    // the first read after the loss says so
    const reads = events.filter((e) => e.kind === "data" && e.direction === "read");
    const gap = reads.findIndex((e) => e.gap === true);
    assert.ok(gap >= 0, "a read marked gap");
    // and the reader found the next message: the small response, whole
    const after = reads.slice(gap).flatMap(messages);
    const small = after.find((m) => m.body === "after the gap\n");
    assert.ok(small, JSON.stringify(after.map((m) => m.status)));
    assert.equal(small.status, 200);
    // the request for it too, in python's writes
    const asked = events.filter((e) => e.direction === "write").flatMap(messages);
    assert.ok(
      asked.some((m) => m.target === "/small.txt"),
      JSON.stringify(asked.map((m) => m.target)),
    );
  },
);

/** A python client on one keep-alive connection: `requests` once stdin says go. */
function pythonClient(port: number, requests: [string, number][]) {
  const py = new Deno.Command("/usr/bin/python3", {
    args: [
      "-c",
      `import http.client, ssl, sys
c = http.client.HTTPSConnection("127.0.0.1", ${port}, context=ssl._create_unverified_context())
sys.stdin.readline()
for path, size in ${JSON.stringify(requests)}:
    c.request("GET", path)
    assert len(c.getresponse().read()) == size
print("done", flush=True)`,
    ],
    stdin: "piped",
    stdout: "piped",
  }).spawn();
  const done = (async () => {
    let out = "";
    for await (const c of py.stdout.pipeThrough(new TextDecoderStream())) out += c;
    return out;
  })();
  return { py, done };
}

bpfTest(
  "ecap tls keeps calls short while its ring is over half full: no record lost, every exchange told",
  async () => {
    const big = randomBytes(1 << 20);
    await using nginx = await Nginx.start({ "big.bin": big, "small.txt": "small\n" });
    const { py, done } = pythonClient(nginx.port, [["/big.bin", big.length], [
      "/small.txt",
      6,
    ]]);
    // 1 MiB each way through a 512 KiB ring the reader does not empty: the
    // first 256 KiB of records whole, then calls of 1 KiB at most
    await using run = await EcapRun.start([
      "tls",
      "--json",
      "--mapsize",
      String(512 << 10),
      "--pid",
      String(py.pid),
    ]);
    Deno.kill(run.pid, "SIGSTOP");
    try {
      const stdin = py.stdin.getWriter();
      await stdin.write(new TextEncoder().encode("go\n"));
      await stdin.close();
      assert.equal(await done, "done\n");
      assert.equal((await py.status).code, 0);
    } finally {
      Deno.kill(run.pid, "SIGCONT");
    }
    const exchanges = () => run.json().filter((e) => e.kind === "http");
    await waitFor(() => exchanges().length >= 2, "both exchanges");
    assert.equal(await run.stop(), 0);
    const stats = run.stats()!;
    assert.equal(Number(stats.lost), 0, JSON.stringify(stats));
    assert.ok(Number(stats.shed) > 0, JSON.stringify(stats));
    const [first, second] = exchanges() as { request: Json; response: Json }[];
    // the big one: status and size known, its body what the ring had room for
    assert.equal(first.request.path, "/big.bin");
    assert.equal(first.response.status, 200);
    assert.equal(first.response.body_size, big.length);
    assert.equal(first.response.body_truncated, true);
    // the small one after it, whole: the stream stayed in step
    assert.equal(second.request.path, "/small.txt");
    assert.equal(second.response.status, 200);
    assert.equal(second.response.body, "small\n");
    assert.match(run.stderr, /\d+ kept short while the ring was over half full/);
  },
);
