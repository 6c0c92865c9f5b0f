import assert from "node:assert/strict";
import { loadZlib } from "../../lib/http/http1.ts";
import { gzipSync } from "node:zlib";
import { type HeaderField, HpackEncoder } from "../../lib/http/hpack.ts";
import {
  HTTP2_PREFACE,
  Http2Connection,
  type Http2ConnectionOptions,
  type Http2Direction,
  type Http2Event,
  type Http2MessageEvent,
  looksLikeHttp2Preface,
  sniffHttp2Frames,
  sniffHttp2Preface,
} from "../../lib/http/http2.ts";
import { mulberry32 } from "../_random.ts";

await loadZlib(); // decodeContent() needs it (a capture loads it in prepare())

const enc = new TextEncoder();
const dec = new TextDecoder();

const DATA = 0, HEADERS = 1, PRIORITY = 2, RST_STREAM = 3, SETTINGS = 4, PUSH_PROMISE = 5;
const PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9;
const END_STREAM = 0x1, ACK = 0x1, END_HEADERS = 0x4, PADDED = 0x8, PRIO = 0x20;

function cat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, a) => n + a.length, 0));
  let off = 0;
  for (const a of parts) {
    out.set(a, off);
    off += a.length;
  }
  return out;
}

/** A 9-byte frame header. */
function frameHeader(length: number, type: number, flags: number, streamId: number): Uint8Array {
  return new Uint8Array([
    length >> 16,
    (length >> 8) & 0xff,
    length & 0xff,
    type,
    flags,
    (streamId >>> 24) & 0x7f,
    (streamId >> 16) & 0xff,
    (streamId >> 8) & 0xff,
    streamId & 0xff,
  ]);
}

function frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = new Uint8Array(),
): Uint8Array {
  return cat(frameHeader(payload.length, type, flags, streamId), payload);
}

function u32(n: number): Uint8Array {
  return new Uint8Array([n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff]);
}

function settings(...pairs: [number, number][]): Uint8Array {
  return frame(
    SETTINGS,
    0,
    0,
    cat(...pairs.map(([id, v]) => cat(new Uint8Array([id >> 8, id & 0xff]), u32(v)))),
  );
}

type Feed = [Http2Direction, Uint8Array][];

/** Runs feeds through a fresh connection, feed i cut at offsets cut(i, length). */
function run(
  feed: Feed,
  cut?: (index: number, len: number) => number[],
  options?: Http2ConnectionOptions,
) {
  const c = new Http2Connection(options);
  const out: Http2Event[] = [];
  for (const [i, [dir, bytes]] of feed.entries()) {
    let prev = 0;
    for (const k of [...(cut?.(i, bytes.length) ?? []), bytes.length]) {
      out.push(...c.push(dir, bytes.subarray(prev, k)));
      prev = k;
    }
  }
  out.push(...c.end());
  return { events: out, conn: c };
}

function assertSplitInvariant(feed: Feed): Http2Event[] {
  const whole = run(feed).events;
  for (const [i, [, bytes]] of feed.entries()) {
    for (let k = 0; k <= bytes.length; k++) {
      const events = run(feed, (j) => (j === i ? [k] : [])).events;
      assert.deepStrictEqual(events, whole, `feed ${i} split at ${k}`);
    }
  }
  assert.deepStrictEqual(
    run(feed, (_, len) => [...Array(len).keys()].slice(1)).events,
    whole,
    "byte by byte",
  );
  return whole;
}

const messages = (events: Http2Event[]) =>
  events.filter((e): e is Http2MessageEvent => e.type === "message");

const REQUEST: HeaderField[] = [
  [":method", "POST"],
  [":scheme", "https"],
  [":path", "/upload"],
  [":authority", "example.com"],
  ["content-type", "text/plain"],
  ["user-agent", "ecap-test/1.0"],
];

Deno.test("Http2Connection.push() decodes a padded HEADERS+CONTINUATION+DATA request split at every byte", () => {
  const block = new HpackEncoder({ huffman: true, indexing: true }).encode(REQUEST);
  const first = block.subarray(0, 7);
  const rest = block.subarray(7);
  // HEADERS: pad length 3, priority (exclusive dep 0, weight 16), fragment, padding.
  const headersPayload = cat(
    new Uint8Array([3]),
    u32(0x80000000),
    new Uint8Array([15]),
    first,
    new Uint8Array(3),
  );
  const body = enc.encode("hello, h2");
  const client = cat(
    HTTP2_PREFACE,
    settings([1, 4096], [2, 0]),
    frame(HEADERS, PADDED | PRIO, 1, headersPayload),
    frame(CONTINUATION, END_HEADERS, 1, rest),
    frame(DATA, PADDED, 1, cat(new Uint8Array([2]), body.subarray(0, 5), new Uint8Array(2))),
    frame(DATA, END_STREAM, 1, body.subarray(5)),
  );
  const events = assertSplitInvariant([["client", client]]);
  assert.deepStrictEqual(events.map((e) => e.type), [
    "frame",
    "headers",
    "data",
    "data",
    "message",
  ]);
  assert.deepStrictEqual(events[0], {
    type: "frame",
    direction: "client",
    frameType: "SETTINGS",
    streamId: 0,
    flags: 0,
    length: 12,
    detail: "HEADER_TABLE_SIZE=4096 ENABLE_PUSH=0",
  });
  assert.deepStrictEqual(events[1], {
    type: "headers",
    direction: "client",
    streamId: 1,
    headers: REQUEST,
    endStream: false,
  });
  const [m] = messages(events);
  assert.equal(m.streamId, 1);
  assert.deepStrictEqual(m.headers, REQUEST);
  assert.equal(dec.decode(m.body), "hello, h2");
  assert.equal(m.rawBodyLength, 9);
  assert.equal(m.bodyTruncated, false);
});

Deno.test("Http2Connection.push() gunzips a response body and keeps trailers", () => {
  const text = "compressed response body ".repeat(20);
  const gz = gzipSync(enc.encode(text));
  const e = new HpackEncoder({ indexing: true });
  const server = cat(
    settings([3, 100]),
    frame(SETTINGS, ACK, 0),
    frame(
      HEADERS,
      END_HEADERS,
      1,
      e.encode([[":status", "200"], ["content-encoding", "gzip"], ["content-type", "text/plain"]]),
    ),
    frame(DATA, 0, 1, gz.subarray(0, 20)),
    frame(DATA, 0, 1, gz.subarray(20)),
    frame(HEADERS, END_HEADERS | END_STREAM, 1, e.encode([["grpc-status", "0"]])),
  );
  const events = assertSplitInvariant([
    ["client", cat(HTTP2_PREFACE, settings())],
    ["server", server],
  ]);
  const [m] = messages(events);
  assert.equal(m.direction, "server");
  assert.equal(dec.decode(m.body), text);
  assert.equal(m.rawBodyLength, gz.length);
  assert.equal(m.contentEncoding, undefined);
  assert.deepStrictEqual(m.trailers, [["grpc-status", "0"]]);
  const trailerEvent = events.filter((e) => e.type === "headers").at(-1);
  assert.deepStrictEqual(
    trailerEvent && "endStream" in trailerEvent && trailerEvent.endStream,
    true,
  );
});

Deno.test("Http2Connection.push() parses frames when the capture starts mid-connection", () => {
  // Stream 7 of a connection whose dynamic table we never saw (index 62 is unknown).
  const c = new Http2Connection();
  const events = c.push(
    "client",
    cat(
      frame(WINDOW_UPDATE, 0, 0, u32(65535)),
      frame(HEADERS, END_HEADERS | END_STREAM, 7, new Uint8Array([0x82, 0x87, 0x84, 0xbe])),
    ),
  );
  assert.equal(c.sawPreface, false);
  assert.equal(events[0].type, "frame");
  assert.deepStrictEqual(events[1], {
    type: "headers",
    direction: "client",
    streamId: 7,
    headers: [[":method", "GET"], [":scheme", "https"], [":path", "/"], [
      "<unknown index 62>",
      "",
    ]],
    endStream: true,
  });
  assert.equal(events[2].type, "message");
  // DATA for a stream whose HEADERS predate the capture still forms a message.
  const [m] = messages(c.push("server", frame(DATA, END_STREAM, 5, enc.encode("tail"))));
  assert.deepStrictEqual(m.headers, []);
  assert.equal(dec.decode(m.body), "tail");
});

Deno.test("Http2Connection applies SETTINGS_HEADER_TABLE_SIZE once the peer acknowledges it", () => {
  const c = new Http2Connection();
  c.push("client", cat(HTTP2_PREFACE, settings([1, 8192])));
  // Size update to 8192 (3f e1 3f) before the server's ACK: over the default 4096.
  const before = c.push(
    "server",
    frame(HEADERS, END_HEADERS, 2, new Uint8Array([0x3f, 0xe1, 0x3f, 0x88])),
  );
  assert.equal(before[0].type, "error");
  c.push("server", frame(SETTINGS, ACK, 0));
  const after = c.push(
    "server",
    frame(HEADERS, END_HEADERS, 4, new Uint8Array([0x3f, 0xe1, 0x3f, 0x88])),
  );
  assert.deepStrictEqual(after[0], {
    type: "headers",
    direction: "server",
    streamId: 4,
    headers: [[":status", "200"]],
    endStream: false,
  });
});

Deno.test("Http2Connection reports control frames and flushes reset streams", () => {
  const e = new HpackEncoder();
  const { events } = run([
    [
      "client",
      cat(
        HTTP2_PREFACE,
        frame(HEADERS, END_HEADERS, 1, e.encode([[":method", "GET"], [":path", "/slow"]])),
        frame(PRIORITY, 0, 3, cat(u32(1), new Uint8Array([255]))),
        frame(PING, 0, 0, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])),
        frame(RST_STREAM, 0, 1, u32(8)),
        frame(GOAWAY, 0, 0, cat(u32(1), u32(0), enc.encode("bye"))),
        frame(0x42, 0, 0, new Uint8Array([1])),
      ),
    ],
  ]);
  const lines = events.map((ev) =>
    ev.type === "frame" ? `${ev.frameType} ${ev.streamId} ${ev.detail ?? ""}` : ev.type
  );
  assert.deepStrictEqual(lines, [
    "headers",
    "PRIORITY 3 depends on 1, weight 256",
    "PING 0 0102030405060708",
    "RST_STREAM 1 CANCEL",
    "message",
    'GOAWAY 0 last stream 1, NO_ERROR, "bye"',
    "UNKNOWN_0x42 0 ",
  ]);
  const [m] = messages(events);
  assert.equal(m.incomplete, true);
  assert.deepStrictEqual(m.headers, [[":method", "GET"], [":path", "/slow"]]);
});

Deno.test("Http2Connection stops a direction on a framing error and keeps the other", () => {
  const c = new Http2Connection();
  const bad = c.push("client", cat(HTTP2_PREFACE, frame(DATA, 0, 0, new Uint8Array([1]))));
  assert.deepStrictEqual(bad.map((e) => e.type), ["error"]);
  assert.match(c.failed("client") ?? "", /DATA frame on stream 0/);
  assert.deepStrictEqual(c.push("client", settings()), []);
  assert.equal(c.push("server", settings()).length, 1);
  for (
    const f of [
      frame(SETTINGS, 0, 0, new Uint8Array(5)),
      frame(PING, 0, 0, new Uint8Array(7)),
      frame(CONTINUATION, END_HEADERS, 1, new Uint8Array([0x82])),
      cat(frame(HEADERS, 0, 1, new Uint8Array([0x82])), frame(DATA, 0, 1)),
      frame(DATA, PADDED, 1, new Uint8Array([5, 1, 2])),
      frame(WINDOW_UPDATE, 0, 0, new Uint8Array(3)),
    ]
  ) {
    const c2 = new Http2Connection();
    c2.push("server", f);
    assert.ok(c2.failed("server") !== undefined, `frame ${f.slice(0, 9)}`);
  }
});

Deno.test("Http2Connection bounds open streams and body buffering", () => {
  const e = new HpackEncoder();
  const parts: Uint8Array[] = [];
  for (let id = 1; id <= 9; id += 2) {
    parts.push(frame(HEADERS, END_HEADERS, id, e.encode([[":method", "POST"]])));
  }
  parts.push(frame(DATA, END_STREAM, 9, new Uint8Array(100)));
  const { events } = run([["client", cat(...parts)]], undefined, {
    maxStreams: 3,
    maxBodyBytes: 40,
  });
  const errors = events.filter((ev) => ev.type === "error");
  assert.equal(errors.length, 2);
  const done = messages(events).find((m) => m.streamId === 9)!;
  assert.equal(done.bodyTruncated, true);
  assert.equal(done.body.length, 40);
  assert.equal(done.rawBodyLength, 100);
});

Deno.test("Http2Connection decodes PUSH_PROMISE and skips 1xx headers for the message", () => {
  const e = new HpackEncoder({ indexing: true });
  const promise = cat(u32(2), e.encode([[":method", "GET"], [":path", "/style.css"]]));
  const { events } = run([
    [
      "server",
      cat(
        frame(
          PUSH_PROMISE,
          END_HEADERS | PADDED,
          1,
          cat(new Uint8Array([1]), promise, new Uint8Array(1)),
        ),
        frame(HEADERS, END_HEADERS, 1, e.encode([[":status", "103"], ["link", "</a>"]])),
        frame(HEADERS, END_HEADERS | END_STREAM, 1, e.encode([[":status", "204"]])),
      ),
    ],
  ]);
  assert.deepStrictEqual(events[0], {
    type: "push_promise",
    direction: "server",
    streamId: 1,
    promisedStreamId: 2,
    headers: [[":method", "GET"], [":path", "/style.css"]],
  });
  const [m] = messages(events);
  assert.deepStrictEqual(m.headers, [[":status", "204"]]);
  assert.equal(m.trailers, undefined);
});

Deno.test("looksLikeHttp2Preface() and sniffHttp2Frames() recognise HTTP/2", () => {
  assert.equal(looksLikeHttp2Preface(HTTP2_PREFACE), true);
  assert.equal(looksLikeHttp2Preface(HTTP2_PREFACE.subarray(0, 10)), false);
  assert.equal(sniffHttp2Preface(HTTP2_PREFACE.subarray(0, 10)), "maybe");
  assert.equal(sniffHttp2Preface(enc.encode("GET / HTTP/1.1\r\n")), "no");
  assert.equal(sniffHttp2Frames(settings([3, 100])), "settings");
  assert.equal(sniffHttp2Frames(settings([3, 100]).subarray(0, 5)), "maybe");
  assert.equal(
    sniffHttp2Frames(
      cat(
        frame(WINDOW_UPDATE, 0, 0, u32(1)),
        frame(HEADERS, END_HEADERS, 3, new Uint8Array([0x82])),
      ),
    ),
    "frames",
  );
  assert.equal(sniffHttp2Frames(frame(WINDOW_UPDATE, 0, 0, u32(1))), "maybe");
  assert.equal(sniffHttp2Frames(enc.encode("HTTP/1.1 200 OK\r\n")), "no");
  assert.equal(sniffHttp2Frames(frame(SETTINGS, 0, 1, new Uint8Array(6))), "no");
});

Deno.test("Http2Connection.push() never throws under seeded fuzzing", () => {
  const rand = mulberry32(2024);
  const e = new HpackEncoder({ indexing: true, huffman: true });
  const seed = cat(
    HTTP2_PREFACE,
    settings([1, 4096], [4, 65535]),
    frame(HEADERS, END_HEADERS, 1, e.encode(REQUEST)),
    frame(DATA, PADDED, 1, cat(new Uint8Array([2]), enc.encode("abc"), new Uint8Array(2))),
    frame(HEADERS, 0, 3, e.encode(REQUEST).subarray(0, 4)),
    frame(CONTINUATION, END_HEADERS, 3, e.encode([["x", "y"]])),
    frame(DATA, END_STREAM, 3, gzipSync(enc.encode("zzz"))),
    frame(RST_STREAM, 0, 1, u32(0)),
    frame(PING, ACK, 0, new Uint8Array(8)),
  );
  const start = Date.now();
  for (let iter = 0; iter < 2000; iter++) {
    const input = seed.slice(iter % 2 === 0 ? 0 : 24);
    const mutations = 1 + Math.floor(rand() * 6);
    for (let k = 0; k < mutations; k++) {
      const at = Math.floor(rand() * input.length);
      input[at] = rand() < 0.5
        ? Math.floor(rand() * 256)
        : input[at] ^ (1 << Math.floor(rand() * 8));
    }
    const c = new Http2Connection({ maxBodyBytes: 16, maxHeaderBlockBytes: 128, maxStreams: 4 });
    const dir: Http2Direction = rand() < 0.5 ? "client" : "server";
    let off = 0;
    while (off < input.length) {
      const n = 1 + Math.floor(rand() * 50);
      c.push(dir, input.subarray(off, off + n));
      off += n;
    }
    c.end();
  }
  assert.ok(Date.now() - start < 10_000, "fuzzing took too long");
});
