/**
 * HTTP exchanges out of captured calls: each request paired with its
 * response (HTTP/1.x in order on a connection, HTTP/2 by stream), with the
 * times of their first and last bytes, and both processes when both ends of
 * the connection are on this machine (the same exchange seen from the
 * client and from the server is one). Bytes that are not HTTP come out as
 * blocks of consecutive calls of one direction.
 * @module
 */
import type { HeaderField } from "./hpack.ts";
import type { Http1Message } from "./http1.ts";
import type { Http2MessageEvent } from "./http2.ts";
import type { ConversationRole, HttpView } from "./http_stream.ts";

/** One end of a TCP connection. */
export interface Endpoint {
  addr: string;
  port: number;
}

/** A process at one end of a connection. */
export interface Party {
  pid: number;
  /** The thread's name. */
  comm: string;
  /** The process's name, when the thread is named otherwise. */
  process?: string;
  tid?: number;
  uid?: number;
  cgroupId?: number;
}

/** A captured read or write call, as the exchange assembler needs it. */
export interface CallRecord extends Party {
  timeNs: bigint;
  /** The connection within its process ("pid:object"). */
  conn: string;
  local: Endpoint | null;
  remote: Endpoint | null;
  direction: "read" | "write";
  data: Uint8Array;
  /** HTTP messages (or HTTP/2 events) these bytes completed. */
  http: readonly HttpView[];
  /** The connection's protocol as sniffed so far. */
  protocol: "unknown" | "http1" | "http2" | "raw";
  /** The traced process's role on the connection, once known. */
  role?: ConversationRole;
  /** The bytes went to an HTTP message still in progress. */
  inHttp: boolean;
}

/** A request or a response, decoded. */
export interface HttpMessage {
  /** "HTTP/1.1", "HTTP/1.0", "HTTP/2". */
  version: string;
  method?: string;
  /** The request target (path and query), HTTP/2's :path. */
  path?: string;
  /** Host header or HTTP/2's :authority. */
  authority?: string;
  status?: number;
  reason?: string;
  /** Fields in order, HTTP/2 pseudo-headers left out. */
  headers: [string, string][];
  trailers?: [string, string][];
  /** The body, de-chunked and decoded (gzip, deflate, br, zstd) when it could be. */
  body: Uint8Array;
  /** Body bytes as sent, before content decoding. */
  bodySize: number;
  /** The body was longer than the buffer: `body` holds its start. */
  bodyTruncated: boolean;
  /** Content codings still applied to `body`. */
  contentEncoding?: string;
  decodeError?: string;
  /** The message ended before it was complete. */
  incomplete: boolean;
}

/** When an exchange's bytes moved, in wall-clock ns since the epoch. */
export interface ExchangeTimings {
  /** The request's first byte (the call that carried it). */
  requestStart: bigint;
  requestEnd?: bigint;
  /** The response's first byte. */
  responseStart?: bigint;
  responseEnd?: bigint;
}

/** One request and its response. */
export interface HttpExchange {
  kind: "http";
  protocol: "HTTP/1.0" | "HTTP/1.1" | "HTTP/2";
  /** The client process, when it is on this machine and was captured. */
  client?: Party;
  /** The server process, likewise. */
  server?: Party;
  /** The client's and the server's addresses, when the socket was learnt. */
  clientAddr: Endpoint | null;
  serverAddr: Endpoint | null;
  /** HTTP/2 stream id. */
  streamId?: number;
  request?: HttpMessage;
  response?: HttpMessage;
  timings: ExchangeTimings;
  /** No response (yet) after the timeout, a connection gone, or the capture ended. */
  incomplete: boolean;
}

/** Consecutive bytes of one direction of a connection that is not HTTP. */
export interface StreamBlock {
  kind: "stream";
  party: Party;
  conn: string;
  local: Endpoint | null;
  remote: Endpoint | null;
  direction: "read" | "write";
  data: Uint8Array;
  /** Calls the bytes came in. */
  calls: number;
  startNs: bigint;
  endNs: bigint;
}

/** What the assembler emits. */
export type ExchangeItem = HttpExchange | StreamBlock;

/** Options of {@link ExchangeAssembler}. */
export interface ExchangeOptions {
  /** A request with no response after this long is emitted incomplete (ns; default 30 s). */
  timeoutNs?: bigint;
  /** How long an exchange waits for the other end's view of it (ns; default 1 s). */
  pairNs?: bigint;
  /** A block of raw bytes is emitted after this long without more (ns; default 200 ms). */
  blockIdleNs?: bigint;
}

const NS_PER_MS = 1_000_000n;

/** One side's view of an exchange in progress. */
interface Pending {
  exchange: HttpExchange;
  /** Its place on the connection: HTTP/1's count, HTTP/2's stream id. */
  seq: number;
  /** When it was last touched, for the timeout. */
  touched: bigint;
}

/** What the assembler keeps per captured connection. */
interface ConnState {
  /** HTTP/1: requests waiting for their responses, oldest first. */
  queue: Pending[];
  /** HTTP/2: exchanges by stream id. */
  streams: Map<number, Pending>;
  /** HTTP/1 exchanges seen on this connection. */
  count: number;
  /** Start of the message in progress per direction (its first call), if any. */
  started: { read?: bigint; write?: bigint };
  /** HTTP/1: a response complete before its request was. */
  early?: { message: HttpMessage; start: bigint; end: bigint };
  /**
   * HTTP/1: a response with no request before it, held pairNs for a request
   * record that comes late (Go writes from one goroutine and reads from
   * another: under load the read's record can come first); after that, a
   * response to a request sent before the capture began.
   */
  orphan?: { exchange: HttpExchange; pairKey: string; role: ConversationRole; until: bigint };
  /** "client|server" addresses once known: its entry in #sides goes with it. */
  pairKey?: string;
  /** Raw bytes gathered for the current block. */
  block?: StreamBlock;
  blockParts: Uint8Array[];
  lastSeen: bigint;
  /** "local|remote" once the socket is known, else "". */
  addrs: string;
  /**
   * The endpoint objects of the last call and the keys made from them: a
   * decoder hands the same objects for every call of a connection, so most
   * calls build no key strings (they were a tenth of push()'s garbage).
   */
  last?: {
    local: Endpoint | null;
    remote: Endpoint | null;
    addrs: string;
    role: ConversationRole;
    pairKey: string;
  };
}

function partyOf(p: Party): Party {
  return {
    pid: p.pid,
    comm: p.comm,
    process: p.process,
    tid: p.tid,
    uid: p.uid,
    cgroupId: p.cgroupId,
  };
}

function isLoopback(e: Endpoint): boolean {
  return e.addr.startsWith("127.") || e.addr === "::1" || e.addr.startsWith("::ffff:127.");
}

function addrKey(e: Endpoint | null): string {
  return e === null ? "?" : `${e.addr}:${e.port}`;
}

function pseudo(fields: readonly HeaderField[], name: string): string | undefined {
  return fields.find(([n]) => n === name)?.[1];
}

function headerValue(fields: readonly [string, string][], name: string): string | undefined {
  const lower = name.toLowerCase();
  return fields.find(([n]) => n.toLowerCase() === lower)?.[1];
}

function fromHttp1(m: Http1Message): HttpMessage {
  return {
    version: m.version,
    method: m.method,
    path: m.target,
    authority: m.kind === "request" ? headerValue(m.headers, "host") : undefined,
    status: m.status,
    reason: m.reason,
    headers: m.headers,
    trailers: m.trailers,
    body: m.body,
    bodySize: m.rawBodyLength,
    bodyTruncated: m.bodyTruncated,
    contentEncoding: m.contentEncoding,
    decodeError: m.decodeError,
    incomplete: m.incomplete === true,
  };
}

function fromHttp2(e: Http2MessageEvent): HttpMessage {
  const status = pseudo(e.headers, ":status");
  return {
    version: "HTTP/2",
    method: pseudo(e.headers, ":method"),
    path: pseudo(e.headers, ":path"),
    authority: pseudo(e.headers, ":authority"),
    status: status === undefined ? undefined : Number(status),
    headers: e.headers.filter(([n]) => !n.startsWith(":")) as [string, string][],
    trailers: e.trailers as [string, string][] | undefined,
    body: e.body,
    bodySize: e.rawBodyLength,
    bodyTruncated: e.bodyTruncated,
    contentEncoding: e.contentEncoding,
    decodeError: e.decodeError,
    incomplete: e.incomplete === true,
  };
}

/**
 * Pairs requests with responses per connection. Feed it every captured call
 * in order ({@link push}); call {@link tick} now and then with the time, so
 * that exchanges waiting for a timeout or for the other end come out; call
 * {@link end} when the capture ends.
 */
export class ExchangeAssembler {
  #conns = new Map<string, ConnState>();
  /** Exchanges held for the other end's view, by "client|server|seq". */
  #held = new Map<string, { exchange: HttpExchange; until: bigint }>();
  /** Connections captured, by "client|server" and the side that saw them. */
  #sides = new Map<string, Set<"client" | "server">>();
  #timeout: bigint;
  #pair: bigint;
  #blockIdle: bigint;

  constructor(options: ExchangeOptions = {}) {
    this.#timeout = options.timeoutNs ?? 30_000n * NS_PER_MS;
    this.#pair = options.pairNs ?? 1_000n * NS_PER_MS;
    this.#blockIdle = options.blockIdleNs ?? 200n * NS_PER_MS;
  }

  /**
   * Takes one call; returns what it completed. What it keeps of the call's
   * bytes it copies: they may be lent for the length of this call
   * (tls_decoder.ts, borrowData).
   */
  push(call: CallRecord): ExchangeItem[] {
    const out: ExchangeItem[] = [];
    let c = this.#conns.get(call.conn);
    const role = call.role ?? "client";
    let last = c?.last;
    if (last === undefined || last.local !== call.local || last.remote !== call.remote) {
      last = undefined;
    }
    const addrs = last !== undefined
      ? last.addrs
      : call.local && call.remote
      ? `${addrKey(call.local)}|${addrKey(call.remote)}`
      : "";
    // a library reuses a freed connection object for a new socket: another
    // connection (a socket learnt late is the same one)
    if (c === undefined || (c.addrs !== "" && addrs !== "" && c.addrs !== addrs)) {
      if (c !== undefined) this.#flushBlock(c, out);
      c = {
        queue: [],
        streams: new Map(),
        count: 0,
        started: { read: undefined, write: undefined },
        blockParts: [],
        lastSeen: 0n,
        addrs,
        last: undefined,
      };
      this.#conns.set(call.conn, c);
    }
    if (c.addrs === "") c.addrs = addrs;
    c.lastSeen = call.timeNs;
    if (call.protocol === "raw" || (call.protocol === "unknown" && !call.inHttp)) {
      this.#raw(c, call, out);
      return out;
    }
    this.#flushBlock(c, out);
    const party = partyOf(call);
    const clientAddr = role === "client" ? call.local : call.remote;
    const serverAddr = role === "client" ? call.remote : call.local;
    if (last === undefined || last.role !== role) {
      const pairKey = `${addrKey(clientAddr)}|${addrKey(serverAddr)}`;
      last = { local: call.local, remote: call.remote, addrs, role, pairKey };
      c.last = last;
    }
    const pairKey = last.pairKey;
    if (clientAddr !== null && serverAddr !== null) {
      let sides = this.#sides.get(pairKey);
      if (sides === undefined) this.#sides.set(pairKey, sides = new Set());
      sides.add(role);
      c.pairKey = pairKey;
    }
    // the direction requests go in this process's calls
    const requestWay = role === "client" ? "write" : "read";
    // the first call of an HTTP/1 message: its first byte's time
    if (call.protocol === "http1") c.started[call.direction] ??= call.timeNs;
    for (const view of call.http) {
      if (view.protocol === "http1") {
        const m = view.message;
        const msg = fromHttp1(m);
        const start = c.started[call.direction] ?? call.timeNs;
        if (m.kind === "request") {
          c.count++;
          const p: Pending = {
            exchange: {
              kind: "http",
              protocol: m.version === "HTTP/1.0" ? "HTTP/1.0" : "HTTP/1.1",
              [role]: party,
              clientAddr,
              serverAddr,
              request: msg,
              timings: { requestStart: start, requestEnd: call.timeNs },
              incomplete: msg.incomplete,
            },
            seq: c.count,
            touched: call.timeNs,
          };
          const early = c.early;
          const orphan = c.orphan;
          if (orphan !== undefined && c.queue.length === 0) {
            // the response came first: it answers this request
            c.orphan = undefined;
            const x = p.exchange, o = orphan.exchange.timings, first = o.responseStart!;
            answer(x, orphan.exchange.response!, first, o.responseEnd!);
            // the request's record was stamped late: it was sent before its answer came
            const t = x.timings;
            if (t.requestStart > first) t.requestStart = first;
            if (t.requestEnd !== undefined && t.requestEnd > first) t.requestEnd = first;
            this.#complete(x, pairKey, p.seq, role, call.timeNs, out);
          } else if (early === undefined) {
            c.queue.push(p);
          } else {
            // its response came first (a server answering before the body ended)
            c.early = undefined;
            answer(p.exchange, early.message, early.start, early.end);
            this.#complete(p.exchange, pairKey, p.seq, role, call.timeNs, out);
          }
        } else if (
          m.status !== undefined && m.status >= 100 && m.status < 200 && m.status !== 101
        ) {
          continue; // 100 Continue and friends: the final response follows
        } else if (c.queue.length === 0 && c.started[requestWay] !== undefined) {
          // the request is still being sent: the response waits for it
          c.early = { message: msg, start, end: call.timeNs };
        } else if (c.queue.length === 0) {
          // no request before it: held a moment for one whose record is late
          if (c.orphan !== undefined) this.#releaseOrphan(c, out);
          c.orphan = {
            exchange: {
              kind: "http",
              protocol: m.version === "HTTP/1.0" ? "HTTP/1.0" : "HTTP/1.1",
              [role]: party,
              clientAddr,
              serverAddr,
              response: msg,
              timings: { requestStart: start, responseStart: start, responseEnd: call.timeNs },
              incomplete: true,
            },
            pairKey,
            role,
            until: call.timeNs + this.#pair,
          };
        } else {
          const p = c.queue.shift()!;
          answer(p.exchange, msg, start, call.timeNs);
          this.#complete(p.exchange, pairKey, p.seq, role, call.timeNs, out);
        }
        c.started[call.direction] = undefined; // not delete: the object keeps its shape
      } else if (view.event.type === "headers" || view.event.type === "data") {
        // a stream's first frame this way: its first byte
        const e = view.event;
        const p = this.#stream(c, e.streamId, party, role, clientAddr, serverAddr, call.timeNs);
        const t = p.exchange.timings;
        if (e.direction === "server") t.responseStart ??= call.timeNs;
        p.touched = call.timeNs;
      } else if (view.event.type === "message") {
        const e = view.event;
        const p = this.#stream(c, e.streamId, party, role, clientAddr, serverAddr, call.timeNs);
        const x = p.exchange;
        const msg = fromHttp2(e);
        if (e.direction === "client") {
          x.request = msg;
          x.timings.requestEnd = call.timeNs;
        } else {
          x.response = msg;
          x.timings.responseStart ??= call.timeNs;
          x.timings.responseEnd = call.timeNs;
          x.incomplete = x.request === undefined || x.request.incomplete || msg.incomplete;
          c.streams.delete(e.streamId);
          this.#complete(x, pairKey, e.streamId, role, call.timeNs, out);
        }
      }
    }
    return out;
  }

  /** HTTP/2: the exchange of a stream, made at its first frame. */
  #stream(
    c: ConnState,
    id: number,
    party: Party,
    role: ConversationRole,
    clientAddr: Endpoint | null,
    serverAddr: Endpoint | null,
    now: bigint,
  ): Pending {
    let p = c.streams.get(id);
    if (p === undefined) {
      p = {
        exchange: {
          kind: "http",
          protocol: "HTTP/2",
          [role]: party,
          clientAddr,
          serverAddr,
          streamId: id,
          timings: { requestStart: now },
          incomplete: false,
        },
        seq: id,
        touched: now,
      };
      c.streams.set(id, p);
    }
    return p;
  }

  /**
   * An exchange one side completed: out now, unless the other end of its
   * connection is captured too; then it waits (up to pairNs) for that view
   * and the two become one.
   */
  #complete(
    x: HttpExchange,
    pairKey: string,
    seq: number,
    role: ConversationRole,
    now: bigint,
    out: ExchangeItem[],
  ) {
    const key = `${pairKey}|${seq}`;
    const other = this.#held.get(key);
    if (other !== undefined) {
      this.#held.delete(key);
      out.push(merge(other.exchange, x));
      return;
    }
    const sides = this.#sides.get(pairKey);
    const otherSide = role === "client" ? "server" : "client";
    // the other end may be captured but not read yet (another capture's
    // ring): wait for it when it is on this machine for sure (loopback)
    const peer = role === "client" ? x.serverAddr : x.clientAddr;
    if (
      x.clientAddr !== null && x.serverAddr !== null &&
      (sides?.has(otherSide) || (peer !== null && isLoopback(peer)))
    ) {
      this.#held.set(key, { exchange: x, until: now + this.#pair });
      return;
    }
    out.push(x);
  }

  #raw(c: ConnState, call: CallRecord, out: ExchangeItem[]) {
    if (call.data.length === 0) return;
    const b = c.block;
    if (b !== undefined && b.direction !== call.direction) this.#flushBlock(c, out);
    if (c.block === undefined) {
      c.block = {
        kind: "stream",
        party: partyOf(call),
        conn: call.conn,
        local: call.local,
        remote: call.remote,
        direction: call.direction,
        data: new Uint8Array(0),
        calls: 0,
        startNs: call.timeNs,
        endNs: call.timeNs,
      };
    }
    c.block.calls++;
    c.block.endNs = call.timeNs;
    c.blockParts.push(call.data.slice()); // kept past push(): the caller may reuse its bytes
  }

  #flushBlock(c: ConnState, out: ExchangeItem[]) {
    const b = c.block;
    if (b === undefined) return;
    const size = c.blockParts.reduce((n, p) => n + p.length, 0);
    const data = new Uint8Array(size);
    let at = 0;
    for (const p of c.blockParts) data.set(p, at), at += p.length;
    b.data = data;
    c.block = undefined;
    c.blockParts = [];
    out.push(b);
  }

  /**
   * What is due at `now`: raw blocks quiet for blockIdleNs, exchanges
   * whose other end did not show within pairNs, requests without a
   * response for timeoutNs (incomplete).
   */
  tick(now: bigint): ExchangeItem[] {
    const out: ExchangeItem[] = [];
    for (const [key, h] of this.#held) {
      if (now < h.until) continue;
      this.#held.delete(key);
      out.push(h.exchange);
    }
    for (const [id, c] of this.#conns) {
      if (c.orphan !== undefined && now >= c.orphan.until) this.#releaseOrphan(c, out);
      if (c.block !== undefined && now - c.block.endNs >= this.#blockIdle) this.#flushBlock(c, out);
      while (c.queue.length > 0 && now - c.queue[0].touched >= this.#timeout) {
        const p = c.queue.shift()!;
        p.exchange.incomplete = true;
        out.push(p.exchange);
      }
      for (const [sid, p] of c.streams) {
        if (now - p.touched < this.#timeout) continue;
        c.streams.delete(sid);
        p.exchange.incomplete = true;
        out.push(p.exchange);
      }
      const idle = c.queue.length === 0 && c.streams.size === 0 && c.block === undefined &&
        c.orphan === undefined;
      if (idle && now - c.lastSeen >= this.#timeout) {
        this.#conns.delete(id);
        // each connection has a pair of its own (the client's port): kept, they add up
        if (c.pairKey !== undefined) this.#sides.delete(c.pairKey);
      }
    }
    return out;
  }

  /** An orphan response no request came for: one to a request sent before the capture. */
  #releaseOrphan(c: ConnState, out: ExchangeItem[]) {
    const o = c.orphan!;
    c.orphan = undefined;
    this.#complete(o.exchange, o.pairKey, ++c.count, o.role, o.until, out);
  }

  /** Everything still held: the capture ended. */
  end(): ExchangeItem[] {
    const out: ExchangeItem[] = [];
    for (const h of this.#held.values()) out.push(h.exchange);
    this.#held.clear();
    for (const c of this.#conns.values()) {
      if (c.orphan !== undefined) out.push(c.orphan.exchange), c.orphan = undefined;
      this.#flushBlock(c, out);
      for (const p of [...c.queue, ...c.streams.values()]) {
        p.exchange.incomplete = true;
        out.push(p.exchange);
      }
    }
    this.#conns.clear();
    return out;
  }
}

/** An HTTP/1 exchange gets its response, read from start to end. */
function answer(x: HttpExchange, response: HttpMessage, start: bigint, end: bigint) {
  x.response = response;
  x.timings.responseStart = start;
  x.timings.responseEnd = end;
  x.incomplete ||= response.incomplete;
}

/** The client's and the server's view of one exchange, as one. */
function merge(a: HttpExchange, b: HttpExchange): HttpExchange {
  const [client, server] = a.client !== undefined ? [a, b] : [b, a];
  return {
    ...client,
    server: server.server,
    // the client's view is the one a user waits on; the server's fills gaps
    request: client.request ?? server.request,
    response: client.response ?? server.response,
    incomplete: client.incomplete && server.incomplete,
  };
}

/** ns between two times, as milliseconds, or undefined. */
export function durationMs(from: bigint | undefined, to: bigint | undefined): number | undefined {
  if (from === undefined || to === undefined) return undefined;
  return Number(to - from) / 1e6;
}

/**
 * An exchange's duration: from the request's first byte to the last byte
 * either way (a server may answer before the request's body has all gone).
 */
export function exchangeMs(t: ExchangeTimings): number | undefined {
  const ends = [t.requestEnd, t.responseEnd].filter((x): x is bigint => x !== undefined);
  if (t.responseEnd === undefined || ends.length === 0) return undefined;
  return durationMs(t.requestStart, ends.reduce((a, b) => (a > b ? a : b)));
}
