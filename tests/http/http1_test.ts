import assert from "node:assert/strict";
import { deflateRawSync, deflateSync, gzipSync } from "node:zlib";
import {
  decodeContent,
  Http1Exchange,
  type Http1Message,
  Http1Parser,
  type Http1ParserOptions,
  HttpParseError,
  loadZlib,
  looksLikeHttp1,
  sniffHttp1,
} from "../../lib/http/http1.ts";
import { mulberry32 } from "../_random.ts";

await loadZlib(); // decodeContent() needs it (a capture loads it in prepare())

const enc = new TextEncoder();
const dec = new TextDecoder();
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

/** Feeds input in the given pieces to a fresh parser, then ends it. */
function parse(
  input: Uint8Array,
  cuts: number[] = [],
  options: Http1ParserOptions = {},
): Http1Message[] {
  const p = new Http1Parser(options);
  const out: Http1Message[] = [];
  let prev = 0;
  for (const c of [...cuts, input.length]) {
    out.push(...p.push(input.subarray(prev, c)));
    prev = c;
  }
  out.push(...p.end());
  assert.equal(p.failed, false, p.failureReason);
  return out;
}

/** Asserts that every split into two pieces, and byte-by-byte feeding, parse alike. */
function assertSplitInvariant(input: Uint8Array, options: Http1ParserOptions = {}): Http1Message[] {
  const whole = parse(input, [], options);
  for (let k = 0; k <= input.length; k++) {
    assert.deepStrictEqual(parse(input, [k], options), whole, `split at ${k}`);
  }
  const everyByte = [...Array(input.length).keys()].slice(1);
  assert.deepStrictEqual(parse(input, everyByte, options), whole, "byte by byte");
  return whole;
}

Deno.test("Http1Parser.push() parses a request line and headers in original case and order", () => {
  const [m] = parse(bytes("GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Thing:  v \r\nhost: y\r\n\r\n"));
  assert.equal(m.kind, "request");
  assert.equal(m.method, "GET");
  assert.equal(m.target, "/a?b=1");
  assert.equal(m.version, "HTTP/1.1");
  assert.deepStrictEqual(m.headers, [["Host", "x"], ["X-Thing", "v"], ["host", "y"]]);
  assert.equal(m.body.length, 0);
  assert.equal(m.rawBodyLength, 0);
  assert.equal(m.bodyTruncated, false);
});

Deno.test("Http1Parser.push() reassembles a request split at every byte", () => {
  const input = bytes(
    "POST /submit HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world",
  );
  const [m] = assertSplitInvariant(input);
  assert.equal(m.method, "POST");
  assert.equal(dec.decode(m.body), "hello world");
  assert.equal(m.rawBodyLength, 11);
});

Deno.test("Http1Parser.push() de-chunks and gunzips a response split at every byte", () => {
  const text = "The quick brown fox jumps over the lazy dog. ".repeat(4);
  const gz = gzipSync(bytes(text));
  const a = gz.subarray(0, 10);
  const b = gz.subarray(10);
  const input = cat(
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n",
    "Transfer-Encoding: chunked\r\n\r\n",
    `${a.length.toString(16)};ext=1\r\n`,
    a,
    `\r\n${b.length.toString(16).toUpperCase()}\r\n`,
    b,
    "\r\n0\r\nX-Checksum: abc\r\n\r\n",
  );
  const [m] = assertSplitInvariant(input);
  assert.equal(m.kind, "response");
  assert.equal(m.status, 200);
  assert.equal(m.reason, "OK");
  assert.equal(dec.decode(m.body), text);
  assert.equal(m.rawBodyLength, gz.length);
  assert.equal(m.contentEncoding, undefined);
  assert.equal(m.decodeError, undefined);
  assert.deepStrictEqual(m.trailers, [["X-Checksum", "abc"]]);
});

Deno.test("Http1Parser.push() completes a message with Content-Length 0 at once", () => {
  const p = new Http1Parser();
  const [m] = p.push(bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  assert.equal(m.status, 200);
  assert.equal(m.body.length, 0);
  assert.deepStrictEqual(p.end(), []);
});

Deno.test("Http1Parser.push() returns pipelined requests in order", () => {
  const input = bytes(
    "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n" +
      "POST /2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" +
      "\r\nGET /3 HTTP/1.0\r\n\r\n",
  );
  const ms = assertSplitInvariant(input);
  assert.deepStrictEqual(ms.map((m) => m.target), ["/1", "/2", "/3"]);
  assert.equal(dec.decode(ms[1].body), "abc");
  assert.equal(ms[2].version, "HTTP/1.0");
});

Deno.test("Http1Exchange gives a HEAD response with Content-Length no body", () => {
  const x = new Http1Exchange();
  assert.equal(
    x.pushRequestBytes(bytes("HEAD / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n")).length,
    2,
  );
  const ms = x.pushResponseBytes(bytes(
    "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
  ));
  assert.equal(ms.length, 2);
  assert.equal(ms[0].body.length, 0);
  assert.equal(ms[0].rawBodyLength, 0);
  assert.equal(dec.decode(ms[1].body), "hi");
});

Deno.test("Http1Exchange.push() reports a 100-continue interim response separately", () => {
  const x = new Http1Exchange();
  assert.deepStrictEqual(
    x.push(
      "request",
      bytes("PUT /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"),
    ),
    [],
  );
  const interim = x.push("response", bytes("HTTP/1.1 100 Continue\r\n\r\n"));
  assert.deepStrictEqual(interim.map((m) => m.status), [100]);
  const [req] = x.push("request", bytes("data"));
  assert.equal(dec.decode(req.body), "data");
  const [res] = x.push("response", bytes("HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"));
  assert.equal(res.status, 201);
  assert.equal(dec.decode(res.body), "ok");
});

Deno.test("Http1Parser.push() gives 204 and 304 responses no body", () => {
  const ms = parse(bytes(
    "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n" +
      "HTTP/1.1 304 Not Modified\r\nContent-Encoding: gzip\r\n\r\n" +
      "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx",
  ));
  assert.deepStrictEqual(ms.map((m) => [m.status, m.body.length]), [[204, 0], [304, 0], [200, 1]]);
  assert.equal(ms[1].contentEncoding, undefined);
});

Deno.test("Http1Parser.end() completes a response delimited by connection close", () => {
  const input = bytes("HTTP/1.0 200 OK\r\nContent-Type: text/html\r\n\r\n<html>…</html>");
  const p = new Http1Parser();
  assert.deepStrictEqual(p.push(input), []);
  const [m] = p.end();
  assert.equal(dec.decode(m.body), "<html>…</html>");
  assert.equal(m.incomplete, undefined);
  assertSplitInvariant(input);
});

Deno.test("Http1Parser.end() returns a cut-off message as incomplete", () => {
  const p = new Http1Parser();
  p.push(bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"));
  const [m] = p.end();
  assert.equal(m.incomplete, true);
  assert.equal(dec.decode(m.body), "abc");
  assert.equal(m.rawBodyLength, 3);
});

Deno.test("Http1Parser.push() truncates bodies beyond maxBodyBytes and keeps counting", () => {
  const body = "x".repeat(100);
  const input = bytes(
    `HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n${body}HTTP/1.1 204 No\r\n\r\n`,
  );
  const ms = assertSplitInvariant(input, { maxBodyBytes: 30 });
  assert.equal(ms.length, 2);
  assert.equal(ms[0].bodyTruncated, true);
  assert.equal(ms[0].body.length, 30);
  assert.equal(ms[0].rawBodyLength, 100);
  assert.equal(ms[1].status, 204);
});

Deno.test("Http1Parser.push() decodes br and zstd bodies made by brotli(1) and zstd(1)", async () => {
  const text = "brotli and zstandard, ".repeat(200);
  const coders: [string, string[]][] = [["br", ["brotli", "-c"]], ["zstd", ["zstd", "-c", "-q"]]];
  for (const [coding, argv] of coders) {
    const p = new Deno.Command(argv[0], { args: argv.slice(1), stdin: "piped", stdout: "piped" })
      .spawn();
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(text));
    await w.close();
    const encoded = (await p.output()).stdout;
    const [m] = parse(
      cat(
        `HTTP/1.1 200 OK\r\nContent-Encoding: ${coding}\r\nContent-Length: ${encoded.length}\r\n\r\n`,
        encoded,
      ),
    );
    assert.equal(m.contentEncoding, undefined, coding);
    assert.equal(m.decodeError, undefined, coding);
    assert.equal(dec.decode(m.body), text, coding);
    assert.equal(m.rawBodyLength, encoded.length);
  }
});

Deno.test("Http1Parser.push() leaves unknown codings encoded and reports a gzip bomb", () => {
  const [compress] = parse(
    bytes("HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\nContent-Length: 3\r\n\r\nabc"),
  );
  assert.equal(compress.contentEncoding, "compress");
  assert.equal(dec.decode(compress.body), "abc");
  assert.equal(compress.decodeError, undefined);

  const bomb = gzipSync(new Uint8Array(1 << 20));
  const [m] = parse(
    cat(
      `HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: ${bomb.length}\r\n\r\n`,
      bomb,
    ),
    [],
    { maxBodyBytes: 4096 },
  );
  assert.equal(m.contentEncoding, "gzip");
  assert.match(m.decodeError ?? "", /exceeds/);
  assert.equal(m.body.length, bomb.length);
});

Deno.test("decodeContent() inflates zlib and raw deflate, and reports corrupt gzip", () => {
  const data = bytes("deflated text");
  assert.deepStrictEqual(decodeContent(deflateSync(data), ["deflate"]).body, data);
  assert.deepStrictEqual(decodeContent(deflateRawSync(data), ["deflate"]).body, data);
  const bad = decodeContent(bytes("not gzip"), ["gzip"]);
  assert.equal(bad.contentEncoding, "gzip");
  assert.ok(bad.decodeError);
  const both = decodeContent(gzipSync(gzipSync(data)), ["gzip", "identity", "x-gzip"]);
  assert.deepStrictEqual(both, { body: data });
});

Deno.test("Http1Parser.push() fails on garbage without throwing and ignores later input", () => {
  const p = new Http1Parser();
  assert.deepStrictEqual(p.push(bytes("\x16\x03\x01\x02\x00 hello\r\n\r\n")), []);
  assert.equal(p.failed, true);
  assert.match(p.failureReason ?? "", /start line/);
  assert.deepStrictEqual(p.push(bytes("GET / HTTP/1.1\r\n\r\n")), []);
  assert.deepStrictEqual(p.end(), []);
});

Deno.test("Http1Parser.push() rejects conflicting Content-Length and bad chunk sizes", () => {
  for (
    const input of [
      "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabc",
      "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
      "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
      "GET / HTTP/2.0\r\n\r\n",
      "GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
    ]
  ) {
    const p = new Http1Parser();
    p.push(bytes(input));
    assert.equal(p.failed, true, input);
  }
});

Deno.test("Http1Parser.push() fails a header block over maxHeaderBytes", () => {
  const p = new Http1Parser({ maxHeaderBytes: 1024 });
  p.push(bytes("GET / HTTP/1.1\r\n"));
  for (let i = 0; i < 100 && !p.failed; i++) p.push(bytes(`X-${i}: ${"v".repeat(20)}\r\n`));
  assert.equal(p.failed, true);
  assert.match(p.failureReason ?? "", /exceeds 1024/);
});

Deno.test("Http1Parser.push() joins obs-folded header lines", () => {
  const [m] = parse(bytes("GET / HTTP/1.1\r\nX-Long: a\r\n  b\r\n\tc\r\n\r\n"));
  assert.deepStrictEqual(m.headers, [["X-Long", "a b c"]]);
});

Deno.test("Http1Exchange stops parsing after 101 Switching Protocols", () => {
  const x = new Http1Exchange();
  const [req] = x.push(
    "request",
    bytes("GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
  );
  assert.equal(req.target, "/ws");
  assert.equal(x.requests.upgraded, true);
  const [res] = x.push(
    "response",
    bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
  );
  assert.equal(res.status, 101);
  assert.equal(x.responses.upgraded, true);
  assert.equal(x.responses.failed, false);
});

Deno.test("Http1Exchange treats a 2xx answer to CONNECT as a tunnel", () => {
  const x = new Http1Exchange();
  x.push("request", bytes("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"));
  const [res] = x.push("response", bytes("HTTP/1.1 200 Connection established\r\n\r\n\x16\x03"));
  assert.equal(res.body.length, 0);
  assert.equal(x.responses.upgraded, true);
});

Deno.test("Http1Exchange.reset() resynchronises a failed direction", () => {
  const x = new Http1Exchange();
  x.push("response", bytes("garbage\r\n\r\n"));
  assert.equal(x.responses.failed, true);
  x.reset("response");
  const [m] = x.push("response", bytes("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
  assert.equal(m.status, 200);
});

Deno.test("sniffHttp1() and looksLikeHttp1() recognise start lines and their prefixes", () => {
  assert.equal(sniffHttp1(bytes("GET / HTTP/1.1\r\n")), "request");
  assert.equal(sniffHttp1(bytes("OPTIONS * HTTP/1.0\r\n")), "request");
  assert.equal(sniffHttp1(bytes("HTTP/1.1 404 Not Found\r\n")), "response");
  assert.equal(sniffHttp1(bytes("HTTP/1.1 200")), "response");
  assert.equal(sniffHttp1(bytes("GE")), "maybe");
  assert.equal(sniffHttp1(bytes("GET /index")), "maybe");
  assert.equal(sniffHttp1(bytes("HTTP/1")), "maybe");
  assert.equal(sniffHttp1(bytes("PRI * HTTP/2.0\r\n")), "no");
  assert.equal(sniffHttp1(bytes("GET / HTTP/2.0\r\n")), "no");
  assert.equal(sniffHttp1(bytes("FOO / HTTP/1.1\r\n")), "no");
  assert.equal(sniffHttp1(new Uint8Array([0x16, 0x03, 0x01])), "no");
  assert.equal(looksLikeHttp1(bytes("POST /x HTTP/1.1\r\nHost: a\r\n")), true);
  assert.equal(looksLikeHttp1(bytes("HTTP/1.1 200 OK\r\n")), true);
  assert.equal(looksLikeHttp1(bytes("GET /")), false);
  assert.equal(looksLikeHttp1(bytes("SSH-2.0-OpenSSH\r\n")), false);
});

Deno.test("Http1Parser.push() survives seeded fuzzing without throwing or hanging", () => {
  const rand = mulberry32(0x1234);
  const gz = gzipSync(bytes("fuzzed body ".repeat(10)));
  const seeds = [
    bytes("GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"),
    cat(
      "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
      `${gz.length.toString(16)}\r\n`,
      gz,
      "\r\n0\r\nT: 1\r\n\r\n",
    ),
    bytes("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\nclose-delimited"),
  ];
  const start = Date.now();
  for (let iter = 0; iter < 2000; iter++) {
    const input = seeds[iter % seeds.length].slice();
    const mutations = 1 + Math.floor(rand() * 8);
    for (let k = 0; k < mutations; k++) {
      const at = Math.floor(rand() * input.length);
      const r = rand();
      if (r < 0.5) input[at] = Math.floor(rand() * 256);
      else if (r < 0.75) input[at] = [0x0d, 0x0a, 0x3a, 0x20, 0x30, 0x66][Math.floor(rand() * 6)];
      else input[at] ^= 1 << Math.floor(rand() * 8);
    }
    const options: Http1ParserOptions = { maxBodyBytes: 64, maxHeaderBytes: 256 };
    if (iter % 2 === 0) options.requestMethods = () => (rand() < 0.5 ? "HEAD" : "GET");
    const p = new Http1Parser(options);
    let off = 0;
    while (off < input.length) {
      const n = 1 + Math.floor(rand() * 40);
      p.push(input.subarray(off, off + n));
      off += n;
    }
    p.end();
  }
  assert.ok(Date.now() - start < 10_000, "fuzzing took too long");
});

Deno.test("HttpParseError is a SyntaxError", () => {
  const e = new HttpParseError("x");
  assert.ok(e instanceof SyntaxError);
  assert.equal(e.name, "HttpParseError");
});

Deno.test("Http1Parser.skip() keeps a body's framing across bytes not captured", () => {
  // Content-Length: 10 captured bytes, 80 skipped, 10 captured; the next message whole
  const p = new Http1Parser({ expect: "response" });
  assert.deepEqual(p.push(bytes("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")), []);
  assert.deepEqual(p.skip(80), []);
  const [cut] = p.push(cat("abcdefghij", "HTTP/1.1 204 No Content\r\n\r\n"));
  assert.equal(dec.decode(cut.body), "0123456789abcdefghij");
  assert.equal(cut.rawBodyLength, 100);
  assert.equal(cut.bodyTruncated, true);
  assert.equal(p.end().length, 0);

  // the skip that ends the body completes the message
  const q = new Http1Parser({ expect: "response" });
  q.push(bytes("HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhead"));
  const [done] = q.skip(46)!;
  assert.equal(done.status, 200);
  assert.equal(done.rawBodyLength, 50);
  assert.equal(done.bodyTruncated, true);

  // inside a chunk, then the chunk's end and the next size line as usual
  const c = new Http1Parser({ expect: "response" });
  c.push(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nabcd"));
  assert.deepEqual(c.skip(28), []);
  const [chunked] = c.push(bytes("\r\n3\r\nxyz\r\n0\r\n\r\n"));
  assert.equal(dec.decode(chunked.body), "abcdxyz");
  assert.equal(chunked.rawBodyLength, 35);
  assert.equal(chunked.bodyTruncated, true);

  // a body that runs to the close takes any amount
  const close = new Http1Parser({ expect: "response" });
  close.push(bytes("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstart"));
  assert.deepEqual(close.skip(1000), []);
  const [closed] = close.end();
  assert.equal(closed.rawBodyLength, 1005);
  assert.equal(closed.bodyTruncated, true);
});

Deno.test("Http1Parser.skip() refuses bytes that may hold framing", () => {
  // past the body's end (the next message's head), in a head, at a chunk size line
  const past = new Http1Parser({ expect: "response" });
  past.push(bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n01234"));
  assert.equal(past.skip(6), undefined);
  const head = new Http1Parser({ expect: "request" });
  head.push(bytes("GET / HTTP/1.1\r\nHost: a"));
  assert.equal(head.skip(10), undefined);
  const size = new Http1Parser({ expect: "response" });
  size.push(bytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde"));
  assert.equal(size.skip(3), undefined);
  // nothing skipped is nothing to say
  assert.deepEqual(new Http1Parser().skip(0), []);
});

Deno.test("Http1Parser.push() keeps a body its owned chunk holds whole as a view, and copies the rest", () => {
  const body = Uint8Array.from({ length: 70000 }, (_, i) => (i * 31) & 0xff);
  const head = "HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n";
  const whole = cat(head, body);
  // owned and whole: a view of the caller's bytes
  const [kept] = new Http1Parser({ expect: "response" }).push(whole, true);
  assert.equal(kept.body.buffer, whole.buffer);
  assert.deepEqual(kept.body, body);
  // not owned: the caller may write over its bytes, so a copy
  const lent = whole.slice();
  const [copied] = new Http1Parser({ expect: "response" }).push(lent, false);
  assert.notEqual(copied.body.buffer, lent.buffer);
  lent.fill(0);
  assert.deepEqual(copied.body, body);
  // owned but in two chunks: put together, whatever the split
  const p = new Http1Parser({ expect: "response" });
  assert.deepEqual(p.push(whole.slice(0, head.length + 1000), true), []);
  const [joined] = p.push(whole.slice(head.length + 1000), true);
  assert.deepEqual(joined.body, body);
  // owned, whole, but over the body cap: cut as before
  const [cut] = new Http1Parser({ expect: "response", maxBodyBytes: 1000 }).push(whole, true);
  assert.equal(cut.body.length, 1000);
  assert.equal(cut.bodyTruncated, true);
  assert.equal(cut.rawBodyLength, 70000);
});
