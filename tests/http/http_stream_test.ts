import assert from "node:assert/strict";
import { loadZlib } from "../../lib/http/http1.ts";
import { gzipSync } from "node:zlib";
import { HpackEncoder } from "../../lib/http/hpack.ts";
import { HTTP2_PREFACE } from "../../lib/http/http2.ts";
import {
  bodyAsText,
  type ConversationDirection,
  formatHttpView,
  HttpConversation,
  type HttpView,
} from "../../lib/http/http_stream.ts";
import { mulberry32 } from "../_random.ts";

await loadZlib(); // decodeContent() needs it (a capture loads it in prepare())

const enc = new TextEncoder();
const bytes = (s: string) => enc.encode(s);

function cat(...parts: (string | Uint8Array)[]): Uint8Array {
  const arrays = parts.map((p) => typeof p === "string" ? bytes(p) : p);
  const out = new Uint8Array(arrays.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of arrays) {
    out.set(a, off);
    off += a.length;
  }
  return out;
}

function frame(type: number, flags: number, streamId: number, payload: Uint8Array): Uint8Array {
  const len = payload.length;
  return cat(
    new Uint8Array([len >> 16, (len >> 8) & 0xff, len & 0xff, type, flags, 0, 0, 0, streamId]),
    payload,
  );
}

type Feed = [ConversationDirection, Uint8Array][];

/** Pushes each chunk (cut at offsets cut(i)) into a fresh conversation, then ends it. */
function converse(feed: Feed, cut?: (index: number) => number[]) {
  const c = new HttpConversation();
  const out: HttpView[] = [];
  for (const [i, [dir, chunk]] of feed.entries()) {
    let prev = 0;
    for (const k of [...(cut?.(i) ?? []), chunk.length]) {
      out.push(...c.push(dir, chunk.subarray(prev, k)));
      prev = k;
    }
  }
  out.push(...c.end());
  return { views: out, conversation: c };
}

function assertSplitInvariant(feed: Feed): HttpView[] {
  const whole = converse(feed).views;
  for (const [i, [, chunk]] of feed.entries()) {
    for (let k = 0; k <= chunk.length; k++) {
      assert.deepStrictEqual(
        converse(feed, (j) => (j === i ? [k] : [])).views,
        whole,
        `chunk ${i} split at ${k}`,
      );
    }
  }
  return whole;
}

Deno.test("HttpConversation.push() reassembles an HTTP/1 exchange split at every byte", () => {
  const feed: Feed = [
    ["out", bytes("GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n")],
    ["in", bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")],
  ];
  const views = assertSplitInvariant(feed);
  assert.deepStrictEqual(views.map((v) => v.direction), ["out", "in"]);
  assert.ok(views.every((v) => v.protocol === "http1"));
  const { conversation } = converse(feed);
  assert.equal(conversation.protocol, "http1");
  assert.equal(conversation.role, "client");
});

Deno.test("HttpConversation infers the server role from requests it reads", () => {
  const c = new HttpConversation();
  const [req] = c.push("in", bytes("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"));
  assert.equal(c.role, "server");
  assert.equal(req.protocol === "http1" && req.message.method, "HEAD");
  const [res] = c.push("out", bytes("HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"));
  assert.equal(res.direction, "out");
  assert.equal(res.protocol === "http1" && res.message.body.length, 0);
});

Deno.test("HttpConversation.push() decodes HTTP/2 from the client preface", () => {
  const reqBlock = new HpackEncoder().encode([
    [":method", "GET"],
    [":path", "/"],
    [":scheme", "https"],
    [":authority", "a.example"],
  ]);
  const resBlock = new HpackEncoder().encode([[":status", "200"], ["content-encoding", "gzip"]]);
  const feed: Feed = [
    ["out", cat(HTTP2_PREFACE, frame(4, 0, 0, new Uint8Array()), frame(1, 5, 1, reqBlock))],
    [
      "in",
      cat(
        frame(4, 0, 0, new Uint8Array([0, 3, 0, 0, 0, 100])),
        frame(1, 4, 1, resBlock),
        frame(0, 1, 1, gzipSync(bytes("h2 body"))),
      ),
    ],
  ];
  const views = assertSplitInvariant(feed);
  const text = views.map((v) => formatHttpView(v)).join("\n---\n");
  assert.match(text, /\[h2 stream 1\] HEADERS END_STREAM\n:method: GET\n:path: \//);
  assert.match(text, /\[h2\] SETTINGS MAX_CONCURRENT_STREAMS=100/);
  assert.match(text, /\[h2 stream 1\] response\n:status: 200\ncontent-encoding: gzip\n\nh2 body/);
  const { conversation } = converse(feed);
  assert.equal(conversation.protocol, "http2");
  assert.equal(conversation.role, "client");
});

Deno.test("HttpConversation recognises HTTP/2 from a server's first SETTINGS frame", () => {
  const c = new HttpConversation();
  const views = c.push("out", frame(4, 0, 0, new Uint8Array([0, 4, 0, 1, 0, 0])));
  assert.equal(c.protocol, "http2");
  assert.equal(c.role, "server");
  assert.equal(views.length, 1);
  assert.equal(views[0].direction, "out");
  assert.equal(views[0].protocol === "http2" && views[0].event.direction, "server");
});

Deno.test("HttpConversation returns nothing for non-HTTP bytes and gives up sniffing", () => {
  const c = new HttpConversation({ sniffLimit: 100 });
  assert.deepStrictEqual(c.push("out", bytes("SSH-2.0-OpenSSH_9.6\r\n")), []);
  assert.equal(c.protocol, "unknown");
  assert.equal(c.parsing("out"), true);
  for (let i = 0; i < 10; i++) c.push("in", bytes("\x00\x01binary junk\xff"));
  assert.equal(c.protocol, "raw");
  assert.equal(c.parsing("in"), false);
  assert.deepStrictEqual(c.push("out", bytes("GET / HTTP/1.1\r\n\r\n")), []);
});

Deno.test("HttpConversation picks up HTTP/1 after a capture starts mid-body", () => {
  const c = new HttpConversation();
  assert.deepStrictEqual(c.push("in", bytes("...tail of a previous body</html>")), []);
  const views = c.push("in", bytes("HTTP/1.1 204 No Content\r\n\r\n"));
  assert.equal(views.length, 1);
  assert.equal(c.role, "client");
  // A failed direction resynchronises at the next start line.
  c.push("in", bytes("HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n"));
  assert.equal(c.parsing("in"), false);
  assert.deepStrictEqual(c.push("in", bytes("more junk")), []);
  const again = c.push("in", bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  assert.equal(again.length, 1);
  assert.equal(c.parsing("in"), true);
});

Deno.test("HttpConversation resynchronises at a message that starts mid-read", () => {
  // wrk reads 8 KiB at a time: after lost records the next response starts
  // inside a read, behind the end of a body it never saw whole
  const c = new HttpConversation();
  c.push("in", bytes("HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n"));
  assert.equal(c.parsing("in"), false);
  const tail = new Uint8Array(300).fill(0x41);
  tail[100] = 0x0a; // a line end in the binary tail: a candidate, not a message
  const views = c.push(
    "in",
    cat(tail, "\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 404 Not Found\r\n"),
  );
  assert.equal(views.length, 1);
  assert.equal(views[0].protocol === "http1" && views[0].message.status, 200);
  assert.equal(c.parsing("in"), true);
  const [next] = c.push("in", bytes("Content-Length: 0\r\n\r\n"));
  assert.equal(next.protocol === "http1" && next.message.status, 404);
  // requests too, found by their method
  c.push("out", bytes("GET / HTTP/1.1\r\nHost: zz zz\r\n\r\n"));
  c.push("out", bytes("POST /x HTTP/1.1\r\nbad header\r\n\r\n"));
  assert.equal(c.parsing("out"), false);
  const [req] = c.push("out", bytes("junk\r\nPUT /y HTTP/1.1\r\nContent-Length: 0\r\n\r\n"));
  assert.equal(
    req.protocol === "http1" && req.message.kind === "request" && req.message.method,
    "PUT",
  );
});

Deno.test("HttpConversation.push() honours an explicit role", () => {
  const c = new HttpConversation();
  // The process is a server: "out" carries responses even before any request.
  const [v] = c.push("out", bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), "server");
  assert.equal(c.role, "server");
  assert.equal(v.protocol === "http1" && v.message.status, 200);
});

Deno.test("formatHttpView() prints start line, headers, blank line and a text body", () => {
  const c = new HttpConversation();
  const [v] = c.push(
    "out",
    bytes('POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\n{"a":"ünï"}'),
  );
  assert.equal(
    formatHttpView(v),
    'POST /api HTTP/1.1\nHost: x\nContent-Length: 13\n\n{"a":"ünï"}',
  );
  const [r] = c.push(
    "in",
    cat("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", new Uint8Array([0, 1, 2, 0xff])),
  );
  assert.equal(formatHttpView(r), "HTTP/1.1 200 OK\nContent-Length: 4\n\n[4 bytes binary body]");
  const [n] = c.push("in", bytes("HTTP/1.1 304 Not Modified\r\n\r\n"));
  assert.equal(formatHttpView(n), "HTTP/1.1 304 Not Modified");
});

Deno.test("formatHttpView() notes encoded, truncated and long bodies", () => {
  const c = new HttpConversation({ maxBodyBytes: 10 });
  c.push("out", bytes("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"));
  const [br] = c.push(
    "in",
    bytes("HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\nContent-Length: 3\r\n\r\nabc"),
  );
  assert.match(formatHttpView(br), /\[3 bytes compress-encoded body\]$/);
  const [big] = c.push(
    "in",
    bytes(`HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n${"y".repeat(20)}`),
  );
  assert.match(formatHttpView(big), /yyyyyyyyyy\n\[body truncated: 20 bytes on the wire\]$/);
  const long = formatHttpView(
    {
      protocol: "http2",
      direction: "in",
      event: {
        type: "data",
        direction: "server",
        streamId: 3,
        data: bytes("z".repeat(50)),
        endStream: true,
      },
    },
    { maxBodyBytes: 8 },
  );
  assert.equal(long, "[h2 stream 3] DATA 50 bytes END_STREAM\nzzzzzzzz\n[... 42 more bytes]");
});

Deno.test("bodyAsText() accepts printable UTF-8 and rejects binary", () => {
  assert.equal(bodyAsText(bytes("line\r\n\ttab")), "line\r\n\ttab");
  assert.equal(bodyAsText(new Uint8Array([0xc3, 0x28])), undefined);
  assert.equal(bodyAsText(new Uint8Array(100)), undefined);
  // A cut inside a multi-byte character is not binary.
  assert.equal(bodyAsText(bytes("aé"), 2), "a");
});

Deno.test("HttpConversation.push() never throws under seeded fuzzing", () => {
  const rand = mulberry32(31337);
  const seeds: Feed[] = [
    [
      ["out", bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")],
      ["in", bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")],
    ],
    [
      ["out", cat(HTTP2_PREFACE, frame(4, 0, 0, new Uint8Array()))],
      ["in", cat(frame(4, 0, 0, new Uint8Array()), frame(1, 5, 1, new Uint8Array([0x88])))],
    ],
  ];
  const start = Date.now();
  for (let iter = 0; iter < 2000; iter++) {
    const c = new HttpConversation({ sniffLimit: 256, maxBodyBytes: 32 });
    for (const [dir, chunk] of seeds[iter % seeds.length]) {
      const input = chunk.slice();
      for (let k = Math.floor(rand() * 4); k > 0; k--) {
        input[Math.floor(rand() * input.length)] = Math.floor(rand() * 256);
      }
      let off = 0;
      while (off < input.length) {
        const n = 1 + Math.floor(rand() * 20);
        for (const v of c.push(dir, input.subarray(off, off + n))) formatHttpView(v);
        off += n;
      }
    }
    for (const v of c.end()) formatHttpView(v);
  }
  assert.ok(Date.now() - start < 10_000, "fuzzing took too long");
});

Deno.test("HttpConversation.skip() cuts an HTTP/1 body and stays in step; in a head it is a loss", () => {
  const c = new HttpConversation();
  c.push("out", bytes("GET /big HTTP/1.1\r\nHost: x\r\n\r\n"));
  c.push("in", bytes("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst"));
  const [big] = c.skip("in", 995);
  assert.equal(big.protocol, "http1");
  assert.equal(big.direction, "in");
  assert.equal(big.protocol === "http1" && big.message.bodyTruncated, true);
  assert.equal(c.outOfStep("in"), false);
  c.push("out", bytes("GET /small HTTP/1.1\r\nHost: x\r\n\r\n"));
  const [small] = c.push("in", bytes("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"));
  assert.equal(small.protocol === "http1" && new TextDecoder().decode(small.message.body), "ok");
  // bytes missing from a head cannot be stepped over: the direction resyncs later
  c.push("in", bytes("HTTP/1.1 200 OK\r\nContent-"));
  c.skip("in", 40);
  assert.equal(c.outOfStep("in"), true);
});
