import assert from "node:assert/strict";
import {
  type CallRecord,
  type Endpoint,
  ExchangeAssembler,
  type HttpExchange,
  type StreamBlock,
} from "../../lib/http/exchanges.ts";
import { formatExchange } from "../../lib/http/exchange_format.ts";
import { HttpConversation } from "../../lib/http/http_stream.ts";
import { HpackEncoder } from "../../lib/http/hpack.ts";
import { HTTP2_PREFACE } from "../../lib/http/http2.ts";

const enc = new TextEncoder();
const ms = (n: number) => BigInt(n) * 1_000_000n;

/**
 * One process's end of a connection: its calls go through a real
 * HttpConversation, as the TLS decoder sends them, then to the assembler.
 */
class End {
  conversation = new HttpConversation();
  constructor(
    readonly pid: number,
    readonly comm: string,
    readonly local: Endpoint | null,
    readonly remote: Endpoint | null,
    readonly conn = `${pid}:55aa`,
  ) {}

  call(timeMs: number, direction: "read" | "write", data: Uint8Array | string): CallRecord {
    const bytes = typeof data === "string" ? enc.encode(data) : data;
    const http = this.conversation.push(direction === "write" ? "out" : "in", bytes);
    const protocol = this.conversation.protocol;
    return {
      timeNs: ms(timeMs),
      pid: this.pid,
      comm: this.comm,
      conn: this.conn,
      local: this.local,
      remote: this.remote,
      direction,
      data: bytes,
      http,
      protocol,
      role: this.conversation.role,
      inHttp: protocol === "http1" || protocol === "http2",
    };
  }
}

// documentation addresses (RFC 5737): no traffic, and not loopback, where
// an exchange waits for the other end's view
const CLIENT = { addr: "192.0.2.10", port: 40000 };
const SERVER = { addr: "192.0.2.20", port: 8443 };
const REQUEST = "GET /a?x=1 HTTP/1.1\r\nHost: example\r\n\r\n";
const RESPONSE = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

function http(items: unknown[]): HttpExchange[] {
  return items.filter((x) => (x as HttpExchange).kind === "http") as HttpExchange[];
}

Deno.test("ExchangeAssembler pairs HTTP/1 requests and responses in order, with timings", () => {
  const a = new ExchangeAssembler();
  const curl = new End(10, "curl", CLIENT, SERVER);
  const out = [
    ...a.push(curl.call(100, "write", "GET /a?x=1 HTTP/1.1\r\nHo")), // a request in two calls
    ...a.push(
      curl.call(101, "write", "st: example\r\n\r\nGET /b HTTP/1.1\r\nHost: example\r\n\r\n"),
    ),
    ...a.push(curl.call(150, "read", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel")),
    ...a.push(curl.call(160, "read", "lo")),
    ...a.push(curl.call(170, "read", "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")),
  ];
  const [first, second] = http(out);
  assert.equal(http(out).length, 2);
  assert.equal(first.request?.method, "GET");
  assert.equal(first.request?.path, "/a?x=1");
  assert.equal(first.request?.authority, "example");
  assert.equal(first.response?.status, 200);
  assert.equal(new TextDecoder().decode(first.response?.body), "hello");
  assert.equal(first.client?.comm, "curl");
  assert.equal(first.server, undefined);
  assert.deepEqual(first.serverAddr, SERVER);
  assert.deepEqual(first.timings, {
    requestStart: ms(100),
    requestEnd: ms(101),
    responseStart: ms(150),
    responseEnd: ms(160),
  });
  assert.equal(second.request?.path, "/b");
  assert.equal(second.response?.status, 404);
  assert.equal(second.incomplete, false);
});

Deno.test("ExchangeAssembler makes one exchange of a connection's two captured ends", () => {
  const a = new ExchangeAssembler();
  const curl = new End(10, "curl", CLIENT, SERVER);
  const nginx = new End(20, "nginx", SERVER, CLIENT);
  const out = [
    ...a.push(curl.call(100, "write", REQUEST)),
    ...a.push(nginx.call(101, "read", REQUEST)),
    ...a.push(nginx.call(110, "write", RESPONSE)), // the server's view completes first
    ...a.push(curl.call(111, "read", RESPONSE)),
  ];
  const xs = http(out);
  assert.equal(xs.length, 1, "one exchange, not one per end");
  assert.equal(xs[0].client?.comm, "curl");
  assert.equal(xs[0].server?.comm, "nginx");
  assert.equal(xs[0].timings.requestStart, ms(100), "the client's times");
  assert.equal(xs[0].timings.responseEnd, ms(111));
});

Deno.test("ExchangeAssembler lets a held exchange go when the other end never shows", () => {
  const a = new ExchangeAssembler({ pairNs: ms(50) });
  const curl = new End(10, "curl", CLIENT, SERVER);
  const nginx = new End(20, "nginx", SERVER, CLIENT);
  a.push(curl.call(100, "write", REQUEST));
  a.push(nginx.call(101, "read", REQUEST));
  assert.deepEqual(http(a.push(nginx.call(110, "write", RESPONSE))), []);
  assert.deepEqual(a.tick(ms(120)), []);
  const [x] = http(a.tick(ms(161)));
  assert.equal(x.server?.comm, "nginx");
  assert.equal(x.response?.status, 200);
});

Deno.test("ExchangeAssembler reports a request with no response after the timeout", () => {
  const a = new ExchangeAssembler({ timeoutNs: ms(1000) });
  const curl = new End(10, "curl", CLIENT, SERVER);
  a.push(curl.call(100, "write", REQUEST));
  assert.deepEqual(a.tick(ms(900)), []);
  const [x] = http(a.tick(ms(1100)));
  assert.equal(x.incomplete, true);
  assert.equal(x.request?.path, "/a?x=1");
  assert.equal(x.response, undefined);
});

Deno.test("ExchangeAssembler pairs HTTP/2 streams, interleaved", () => {
  const a = new ExchangeAssembler();
  const client = new End(10, "curl", CLIENT, SERVER);
  const hpackOut = new HpackEncoder(), hpackIn = new HpackEncoder();
  const frame = (type: number, flags: number, stream: number, payload: Uint8Array) => {
    const f = new Uint8Array(9 + payload.length);
    f[0] = payload.length >> 16, f[1] = payload.length >> 8, f[2] = payload.length;
    f[3] = type, f[4] = flags;
    new DataView(f.buffer).setUint32(5, stream);
    f.set(payload, 9);
    return f;
  };
  const req = (id: number, path: string) =>
    frame(
      1,
      0x5,
      id,
      hpackOut.encode([[":method", "GET"], [":scheme", "https"], [
        ":authority",
        "example",
      ], [":path", path]]),
    );
  const res = (id: number, status: string) =>
    frame(1, 0x4, id, hpackIn.encode([[":status", status]]));
  const data = (id: number, text: string) => frame(0, 0x1, id, enc.encode(text));
  const settings = frame(4, 0, 0, new Uint8Array(0));
  const out = [
    ...a.push(client.call(100, "write", new Uint8Array([...HTTP2_PREFACE, ...settings]))),
    ...a.push(client.call(101, "write", req(1, "/one"))),
    ...a.push(client.call(102, "write", req(3, "/three"))),
    ...a.push(client.call(110, "read", new Uint8Array([...settings, ...res(3, "404")]))),
    ...a.push(client.call(111, "read", data(3, "no"))),
    ...a.push(client.call(120, "read", new Uint8Array([...res(1, "200"), ...data(1, "yes")]))),
  ];
  const xs = http(out);
  assert.deepEqual(xs.map((x) => [x.streamId, x.request?.path, x.response?.status]), [
    [3, "/three", 404],
    [1, "/one", 200],
  ]);
  assert.equal(xs[0].protocol, "HTTP/2");
  assert.equal(xs[0].timings.requestStart, ms(102));
  assert.equal(xs[0].timings.responseEnd, ms(111));
  assert.equal(new TextDecoder().decode(xs[1].response?.body), "yes");
});

Deno.test("ExchangeAssembler gathers bytes that are not HTTP into blocks per direction", () => {
  const a = new ExchangeAssembler({ blockIdleNs: ms(100) });
  const smtp = new End(30, "client", CLIENT, SERVER);
  // the conversation gives up sniffing after 64 KiB: make it say "raw" at once
  const noise = "\u0001\u0002 not http at all\n".repeat(4000);
  const calls = [
    smtp.call(100, "write", noise),
    smtp.call(101, "write", "MAIL FROM:<a@b>\r\n"),
    smtp.call(102, "write", "RCPT TO:<c@d>\r\n"),
    smtp.call(110, "read", "250 OK\r\n"),
  ];
  const out: unknown[] = [];
  for (const c of calls) out.push(...a.push({ ...c, protocol: "raw", inHttp: false }));
  const [writes] = out as StreamBlock[];
  assert.equal(out.length, 1, "the writes end when the direction changes");
  assert.equal(writes.kind, "stream");
  assert.equal(writes.calls, 3);
  assert.equal(
    new TextDecoder().decode(writes.data),
    noise + "MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\n",
  );
  assert.deepEqual(a.tick(ms(150)), []);
  const [reads] = a.tick(ms(211)) as StreamBlock[];
  assert.equal(new TextDecoder().decode(reads.data), "250 OK\r\n");
  assert.equal(reads.direction, "read");
});

Deno.test("ExchangeAssembler waits for the other end of a loopback connection", () => {
  // the two ends may be read from two rings, the server's first
  const a = new ExchangeAssembler({ pairNs: ms(1000) });
  const c = { addr: "127.0.0.1", port: 40000 }, s = { addr: "127.0.0.1", port: 8443 };
  const nginx = new End(20, "nginx", s, c);
  const curl = new End(10, "curl", c, s);
  a.push(nginx.call(101, "read", REQUEST));
  assert.deepEqual(a.push(nginx.call(110, "write", RESPONSE)), [], "held: the client may come");
  a.push(curl.call(100, "write", REQUEST));
  const [x] = http(a.push(curl.call(111, "read", RESPONSE)));
  assert.equal(x.client?.comm, "curl");
  assert.equal(x.server?.comm, "nginx");
});

Deno.test("ExchangeAssembler keeps a connection whose socket is learnt late, not one reused", () => {
  const a = new ExchangeAssembler();
  const unknown = new End(10, "go", null, null, "10:c0ffee");
  const known = new End(10, "go", CLIENT, SERVER, "10:c0ffee");
  known.conversation = unknown.conversation; // one connection, its socket learnt at the second call
  a.push(unknown.call(100, "write", REQUEST));
  const [x] = http(a.push(known.call(110, "read", RESPONSE)));
  assert.equal(x.request?.path, "/a?x=1");
  assert.equal(x.response?.status, 200);
  assert.equal(x.incomplete, false);
  // the same object later on another socket is another connection
  const reused = new End(10, "go", { addr: "192.0.2.10", port: 40001 }, SERVER, "10:c0ffee");
  assert.deepEqual(http(a.push(reused.call(200, "read", RESPONSE))), []); // a request may be late
  // none came within a second: a response to a request sent before the capture
  assert.deepEqual(http(a.tick(ms(1300))).map((y) => [y.request, y.response?.status]), [
    [undefined, 200],
  ]);
});

Deno.test("ExchangeAssembler pairs a response whose request's record came after it", () => {
  // Go writes from one goroutine and reads from another: under load the
  // read's record (its return) can reach the ring before the write's
  const a = new ExchangeAssembler();
  const go = new End(10, "go", CLIENT, SERVER, "10:beef");
  assert.deepEqual(http(a.push(go.call(100, "read", RESPONSE))), []);
  const [x] = http(a.push(go.call(101, "write", REQUEST)));
  assert.equal(x.request?.path, "/a?x=1");
  assert.equal(x.response?.status, 200);
  assert.equal(x.incomplete, false);
  assert.ok(x.timings.requestStart! <= x.timings.responseStart!, "no negative duration");
  assert.deepEqual(http(a.tick(ms(5000))), [], "nothing else comes of it");
  assert.deepEqual(http(a.end()), []);
});

Deno.test("formatExchange shows a binary body's first 256 bytes, says how many more, in Latin-1 text", () => {
  const a = new ExchangeAssembler();
  const curl = new End(10, "curl", CLIENT, SERVER);
  const body = Uint8Array.from({ length: 1024 }, (_, i) => (i * 7) & 0xff);
  const head = enc.encode("HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n");
  const response = new Uint8Array(head.length + body.length);
  response.set(head);
  response.set(body, head.length);
  const [x] = http([
    ...a.push(curl.call(100, "write", REQUEST)),
    ...a.push(curl.call(150, "read", response)),
  ]);
  const lines = formatExchange(x).split("\n");
  assert.match(
    lines[0],
    /curl\[10\] -> 192\.0\.2\.20:8443 GET example \/a\?x=1 -> 200 OK, 0 B \/ 1\.0 KiB/,
  );
  assert.deepEqual(lines.slice(1, 3), ["  > GET /a?x=1 HTTP/1.1", "  > Host: example"]);
  assert.deepEqual(lines.slice(3, 7), [
    "  < HTTP/1.1 200 OK",
    "  < Content-Length: 1024",
    "  <",
    "  [1024 bytes binary body]",
  ]);
  const dump = lines.slice(7, -1);
  assert.equal(dump.length, 16);
  assert.ok(dump.every((l) => l.startsWith("  00000")));
  assert.equal(lines.at(-1), "  [... 768 more bytes]");
  // all Latin-1: one character above U+00FF would make the batch's text two bytes a character
  assert.ok([...formatExchange(x)].every((c) => c.charCodeAt(0) <= 0xff));
});
