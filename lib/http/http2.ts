/**
 * HTTP/2 (RFC 9113) frame decoding of a captured connection: frames,
 * decoded header blocks, and per-stream messages with their bodies.
 * @module
 */

import { concat, copyBytes } from "../base/bytes.ts";
import { type HeaderField, HpackDecoder, HpackError } from "./hpack.ts";
import { decodeContent, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HEADER_BYTES } from "./http1.ts";

/** Which endpoint sent the bytes. */
export type Http2Direction = "client" | "server";

/** A decoded header block of a HEADERS frame (and its CONTINUATIONs). */
export interface Http2HeadersEvent {
  type: "headers";
  direction: Http2Direction;
  streamId: number;
  headers: HeaderField[];
  /** The block ends this side of the stream (request/response without body, or trailers). */
  endStream: boolean;
}

/** The payload of one DATA frame, padding removed. */
export interface Http2DataEvent {
  type: "data";
  direction: Http2Direction;
  streamId: number;
  data: Uint8Array;
  endStream: boolean;
}

/** A server push: the request headers of a promised stream. */
export interface Http2PushPromiseEvent {
  type: "push_promise";
  direction: Http2Direction;
  streamId: number;
  promisedStreamId: number;
  headers: HeaderField[];
}

/** One side of a stream, complete: emitted at END_STREAM (or reset / end of capture). */
export interface Http2MessageEvent {
  type: "message";
  direction: Http2Direction;
  streamId: number;
  /** Request or final response headers; empty when they predate the capture. */
  headers: HeaderField[];
  /** Concatenated DATA, decompressed for gzip, deflate, br and zstd content-encoding. */
  body: Uint8Array;
  trailers?: HeaderField[];
  /** Body octets as sent, before decompression. */
  rawBodyLength: number;
  /** True when the body exceeded the buffer limit: `body` holds only its start. */
  bodyTruncated: boolean;
  /** Content codings still applied to `body`, when not decoded. */
  contentEncoding?: string;
  /** Why decompression failed, when it did. */
  decodeError?: string;
  /** True when the stream was reset or the capture ended first. */
  incomplete?: boolean;
}

/** Any other frame (SETTINGS, PING, GOAWAY, RST_STREAM, WINDOW_UPDATE, PRIORITY, …). */
export interface Http2FrameEvent {
  type: "frame";
  direction: Http2Direction;
  frameType: string;
  streamId: number;
  flags: number;
  length: number;
  /** A one-line summary of the payload, e.g. "MAX_CONCURRENT_STREAMS=100". */
  detail?: string;
}

/** Something undecodable; a framing error stops that direction. */
export interface Http2ErrorEvent {
  type: "error";
  direction: Http2Direction;
  streamId?: number;
  message: string;
}

/** What {@link Http2Connection.push} reports. */
export type Http2Event =
  | Http2HeadersEvent
  | Http2DataEvent
  | Http2PushPromiseEvent
  | Http2MessageEvent
  | Http2FrameEvent
  | Http2ErrorEvent;

/** Options of {@link Http2Connection}. */
export interface Http2ConnectionOptions {
  /** Body bytes kept per message; default 16 MiB. */
  maxBodyBytes?: number;
  /** Body bytes kept across all open streams; default 64 MiB. */
  maxTotalBodyBytes?: number;
  /** Cap on one header block (HEADERS + CONTINUATION); default 256 KiB. */
  maxHeaderBlockBytes?: number;
  /** Open streams tracked; the oldest is dropped beyond. Default 1000. */
  maxStreams?: number;
  /** Decompress gzip, deflate, br and zstd message bodies; default true. */
  decodeBody?: boolean;
}

/** The client connection preface (RFC 9113 §3.4). */
export const HTTP2_PREFACE: Uint8Array = new TextEncoder().encode(
  "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
);

/** Frame type codes. */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

const FRAME_NAMES: Record<number, string> = {
  0x0: "DATA",
  0x1: "HEADERS",
  0x2: "PRIORITY",
  0x3: "RST_STREAM",
  0x4: "SETTINGS",
  0x5: "PUSH_PROMISE",
  0x6: "PING",
  0x7: "GOAWAY",
  0x8: "WINDOW_UPDATE",
  0x9: "CONTINUATION",
  0xa: "ALTSVC",
  0xc: "ORIGIN",
  0x10: "PRIORITY_UPDATE",
};

/** Name of a frame type code, e.g. 4 → "SETTINGS". */
export function frameTypeName(type: number): string {
  return FRAME_NAMES[type] ?? `UNKNOWN_0x${type.toString(16)}`;
}

const SETTING_NAMES: Record<number, string> = {
  1: "HEADER_TABLE_SIZE",
  2: "ENABLE_PUSH",
  3: "MAX_CONCURRENT_STREAMS",
  4: "INITIAL_WINDOW_SIZE",
  5: "MAX_FRAME_SIZE",
  6: "MAX_HEADER_LIST_SIZE",
  8: "ENABLE_CONNECT_PROTOCOL",
  9: "NO_RFC7540_PRIORITIES",
};

const ERROR_NAMES = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

function errorName(code: number): string {
  return ERROR_NAMES[code] ?? `0x${code.toString(16)}`;
}

const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** Framing broken beyond recovery for one direction. */
class FramingError extends Error {}

function u32(b: Uint8Array, off: number): number {
  return ((b[off] << 24) | (b[off + 1] << 16) | (b[off + 2] << 8) | b[off + 3]) >>> 0;
}

/** Per-side state of a stream: the message being assembled. */
interface StreamSide {
  headers?: HeaderField[];
  trailers?: HeaderField[];
  parts: Uint8Array[];
  buffered: number;
  rawLength: number;
  truncated: boolean;
  done: boolean;
}

interface Stream {
  client?: StreamSide;
  server?: StreamSide;
}

interface HeaderBlock {
  streamId: number;
  kind: "headers" | "push_promise";
  parts: Uint8Array[];
  length: number;
  endStream: boolean;
  promisedStreamId: number;
}

/** Decoding state of one direction. */
interface Side {
  direction: Http2Direction;
  /** Preface bytes matched so far; -1 once past the preface check. */
  preface: number;
  pending: Uint8Array[];
  pendingLength: number;
  decoder: HpackDecoder;
  block?: HeaderBlock;
  /** HEADER_TABLE_SIZE of each SETTINGS this side sent, awaiting the peer's ACK. */
  unacked: (number | undefined)[];
  failed?: string;
}

/**
 * Decodes both directions of one HTTP/2 connection. Never throws on bad
 * input: framing errors end that direction with an "error" event.
 */
export class Http2Connection {
  #maxBody: number;
  #maxTotal: number;
  #maxBlock: number;
  #maxStreams: number;
  #decode: boolean;
  #sides: Record<Http2Direction, Side>;
  #streams = new Map<number, Stream>();
  /** Recently closed streams, so late frames do not reopen them. */
  #closed = new Set<number>();
  #totalBuffered = 0;

  /** Creates a connection decoder; the preface is optional (mid-connection capture). */
  constructor(options: Http2ConnectionOptions = {}) {
    this.#maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.#maxTotal = options.maxTotalBodyBytes ?? 4 * DEFAULT_MAX_BODY_BYTES;
    this.#maxBlock = options.maxHeaderBlockBytes ?? DEFAULT_MAX_HEADER_BYTES;
    this.#maxStreams = options.maxStreams ?? 1000;
    this.#decode = options.decodeBody ?? true;
    const side = (direction: Http2Direction): Side => ({
      direction,
      preface: direction === "client" ? 0 : -1,
      pending: [],
      pendingLength: 0,
      // Lenient until the preface shows we saw the connection from its start.
      decoder: new HpackDecoder({ lenient: true }),
      unacked: [],
    });
    this.#sides = { client: side("client"), server: side("server") };
  }

  /** Why a direction stopped decoding, if it did. */
  failed(direction: Http2Direction): string | undefined {
    return this.#sides[direction].failed;
  }

  /**
   * Bytes of one direction were lost: its frames and header compression
   * state cannot be followed any more, so it stops decoding.
   */
  lost(direction: Http2Direction): void {
    const side = this.#sides[direction];
    side.failed ??= "records were lost";
    side.pending = [];
    side.pendingLength = 0;
    side.block = undefined;
  }

  /** Whether the client preface was seen (the capture began with the connection). */
  get sawPreface(): boolean {
    return !this.#sides.client.decoder.lenient;
  }

  /** Feeds bytes of one direction; returns the events they complete. */
  push(direction: Http2Direction, chunk: Uint8Array): Http2Event[] {
    const out: Http2Event[] = [];
    const side = this.#sides[direction];
    if (side.failed !== undefined || chunk.length === 0) return out;
    try {
      let data = chunk;
      if (side.preface >= 0) {
        data = this.#skipPreface(side, chunk);
        if (side.preface >= 0) return out;
      }
      this.#feed(side, data, out);
    } catch (e) {
      if (!(e instanceof FramingError)) throw e;
      side.failed = e.message;
      side.pending = [];
      side.pendingLength = 0;
      side.block = undefined;
      out.push({ type: "error", direction, message: e.message });
    }
    return out;
  }

  /** Ends the capture: returns unfinished messages, marked incomplete. */
  end(): Http2Event[] {
    const out: Http2Event[] = [];
    for (const [id, stream] of this.#streams) this.#flushStream(id, stream, out);
    this.#streams.clear();
    return out;
  }

  /** Consumes the preface from the client's first bytes; returns what follows. */
  #skipPreface(side: Side, chunk: Uint8Array): Uint8Array {
    let i = 0;
    while (i < chunk.length && side.preface < HTTP2_PREFACE.length) {
      if (chunk[i] !== HTTP2_PREFACE[side.preface]) {
        // Not a preface: the capture began mid-connection; these are frames.
        const seen = HTTP2_PREFACE.subarray(0, side.preface);
        side.preface = -1;
        const rest = new Uint8Array(seen.length + chunk.length - i);
        rest.set(seen);
        rest.set(chunk.subarray(i), seen.length);
        return rest;
      }
      side.preface++;
      i++;
    }
    if (side.preface === HTTP2_PREFACE.length) {
      side.preface = -1;
      this.#sides.client.decoder.lenient = false;
      this.#sides.server.decoder.lenient = false;
    }
    return chunk.subarray(i);
  }

  /** Splits bytes into frames, buffering a partial one. */
  #feed(side: Side, chunk: Uint8Array, out: Http2Event[]): void {
    let off = 0;
    while (side.failed === undefined) {
      if (side.pendingLength > 0) {
        const need = side.pendingLength < 9 ? 9 : 9 + frameLength(side.pending[0]);
        const take = Math.min(need - side.pendingLength, chunk.length - off);
        if (take === 0) return;
        side.pending.push(chunk.slice(off, off + take));
        side.pendingLength += take;
        off += take;
        if (side.pendingLength < need) return;
        const joined = concat(side.pending, side.pendingLength);
        if (need === 9) {
          // Header complete: keep it whole so its length can be read.
          side.pending = [joined];
          if (frameLength(joined) > 0) continue;
        }
        side.pending = [];
        side.pendingLength = 0;
        this.#frame(side, joined, out);
        continue;
      }
      const left = chunk.length - off;
      if (left === 0) return;
      if (left < 9 || left < 9 + frameLength(chunk.subarray(off))) {
        side.pending = [chunk.slice(off)];
        side.pendingLength = left;
        return;
      }
      const end = off + 9 + frameLength(chunk.subarray(off));
      this.#frame(side, chunk.subarray(off, end), out);
      off = end;
    }
  }

  /** Handles one whole frame (header + payload). */
  #frame(side: Side, frame: Uint8Array, out: Http2Event[]): void {
    const direction = side.direction;
    const type = frame[3];
    const flags = frame[4];
    const streamId = u32(frame, 5) & 0x7fffffff;
    let payload = frame.subarray(9);
    const length = payload.length;
    const frameEvent = (detail?: string) => {
      const e: Http2FrameEvent = {
        type: "frame",
        direction,
        frameType: frameTypeName(type),
        streamId,
        flags,
        length,
      };
      if (detail !== undefined) e.detail = detail;
      out.push(e);
    };

    if (side.block !== undefined && type !== FrameType.CONTINUATION) {
      throw new FramingError(`${frameTypeName(type)} frame inside a header block`);
    }
    const needStream = (want: boolean) => {
      if ((streamId !== 0) !== want) {
        throw new FramingError(
          `${frameTypeName(type)} frame on stream ${streamId}`,
        );
      }
    };
    const needLength = (ok: boolean) => {
      if (!ok) throw new FramingError(`${frameTypeName(type)} frame of length ${length}`);
    };
    const unpad = () => {
      if (flags & FLAG_PADDED) {
        needLength(length >= 1 && payload[0] < length);
        payload = payload.subarray(1, length - payload[0]);
      }
    };

    switch (type) {
      case FrameType.DATA: {
        needStream(true);
        unpad();
        const data = copyBytes(payload);
        const endStream = (flags & FLAG_END_STREAM) !== 0;
        out.push({ type: "data", direction, streamId, data, endStream });
        const msg = this.#streamSide(streamId, direction, out);
        if (msg !== undefined) {
          // kept until the stream ends: a copy of its own then, not a view
          // that would hold a shared block (lib/base/bytes.ts) for that long
          this.#appendBody(msg, endStream ? data : data.slice());
          if (endStream) this.#finishSide(streamId, direction, out);
        }
        return;
      }
      case FrameType.HEADERS: {
        needStream(true);
        unpad();
        if (flags & FLAG_PRIORITY) {
          needLength(payload.length >= 5);
          payload = payload.subarray(5);
        }
        this.#startBlock(
          side,
          {
            streamId,
            kind: "headers",
            parts: [],
            length: 0,
            endStream: (flags & FLAG_END_STREAM) !== 0,
            promisedStreamId: 0,
          },
          payload,
          flags,
          out,
        );
        return;
      }
      case FrameType.PUSH_PROMISE: {
        needStream(true);
        unpad();
        needLength(payload.length >= 4);
        this.#startBlock(
          side,
          {
            streamId,
            kind: "push_promise",
            parts: [],
            length: 0,
            endStream: false,
            promisedStreamId: u32(payload, 0) & 0x7fffffff,
          },
          payload.subarray(4),
          flags,
          out,
        );
        return;
      }
      case FrameType.CONTINUATION: {
        const block = side.block;
        if (block === undefined || block.streamId !== streamId) {
          throw new FramingError(`CONTINUATION on stream ${streamId} without a header block`);
        }
        this.#addFragment(side, block, payload, flags, out);
        return;
      }
      case FrameType.PRIORITY:
        needStream(true);
        needLength(length === 5);
        frameEvent(
          `depends on ${u32(payload, 0) & 0x7fffffff}, weight ${payload[4] + 1}` +
            (payload[0] & 0x80 ? ", exclusive" : ""),
        );
        return;
      case FrameType.RST_STREAM: {
        needStream(true);
        needLength(length === 4);
        frameEvent(errorName(u32(payload, 0)));
        const stream = this.#streams.get(streamId);
        if (stream !== undefined) {
          this.#close(streamId);
          this.#flushStream(streamId, stream, out);
        }
        return;
      }
      case FrameType.SETTINGS: {
        needStream(false);
        if (flags & FLAG_ACK) {
          needLength(length === 0);
          frameEvent("ACK");
          // The peer's table size limit binds this side's encoder once acknowledged.
          const peer = this.#sides[direction === "client" ? "server" : "client"];
          const size = peer.unacked.shift();
          if (size !== undefined) side.decoder.maxTableSize = size;
          return;
        }
        needLength(length % 6 === 0);
        const parts: string[] = [];
        let tableSize: number | undefined;
        for (let i = 0; i < length; i += 6) {
          const id = (payload[i] << 8) | payload[i + 1];
          const value = u32(payload, i + 2);
          if (id === 1) tableSize = value;
          parts.push(`${SETTING_NAMES[id] ?? `0x${id.toString(16)}`}=${value}`);
        }
        if (side.unacked.length < 16) side.unacked.push(tableSize);
        frameEvent(parts.join(" "));
        return;
      }
      case FrameType.PING:
        needStream(false);
        needLength(length === 8);
        frameEvent(
          (flags & FLAG_ACK ? "ACK " : "") +
            [...payload].map((b) => b.toString(16).padStart(2, "0")).join(""),
        );
        return;
      case FrameType.GOAWAY: {
        needStream(false);
        needLength(length >= 8);
        const debug = new TextDecoder().decode(payload.subarray(8, 8 + 200));
        frameEvent(
          `last stream ${u32(payload, 0) & 0x7fffffff}, ${errorName(u32(payload, 4))}` +
            (debug !== "" ? `, ${JSON.stringify(debug)}` : ""),
        );
        return;
      }
      case FrameType.WINDOW_UPDATE:
        needLength(length === 4);
        frameEvent(`increment ${u32(payload, 0) & 0x7fffffff}`);
        return;
      default:
        // Unknown types must be ignored (RFC 9113 §4.1); list them anyway.
        frameEvent();
    }
  }

  #startBlock(
    side: Side,
    block: HeaderBlock,
    fragment: Uint8Array,
    flags: number,
    out: Http2Event[],
  ): void {
    side.block = block;
    this.#addFragment(side, block, fragment, flags, out);
  }

  #addFragment(
    side: Side,
    block: HeaderBlock,
    fragment: Uint8Array,
    flags: number,
    out: Http2Event[],
  ): void {
    block.length += fragment.length;
    if (block.length > this.#maxBlock) {
      // Skipping it would leave the HPACK table out of step: give up on this side.
      throw new FramingError(`header block exceeds ${this.#maxBlock} bytes`);
    }
    block.parts.push(fragment.slice());
    if ((flags & FLAG_END_HEADERS) === 0) return;
    side.block = undefined;
    let headers: HeaderField[];
    try {
      headers = side.decoder.decode(concat(block.parts, block.length));
    } catch (e) {
      if (!(e instanceof HpackError)) throw e;
      out.push({
        type: "error",
        direction: side.direction,
        streamId: block.streamId,
        message: `HPACK: ${e.message}`,
      });
      // The stream still ends if the block said so.
      if (block.kind === "headers" && block.endStream) {
        this.#streamSide(block.streamId, side.direction, out);
        this.#finishSide(block.streamId, side.direction, out);
      }
      return;
    }
    if (block.kind === "push_promise") {
      out.push({
        type: "push_promise",
        direction: side.direction,
        streamId: block.streamId,
        promisedStreamId: block.promisedStreamId,
        headers,
      });
      return;
    }
    out.push({
      type: "headers",
      direction: side.direction,
      streamId: block.streamId,
      headers,
      endStream: block.endStream,
    });
    const msg = this.#streamSide(block.streamId, side.direction, out);
    if (msg === undefined) return;
    if (msg.headers === undefined) {
      const status = headers.find(([n]) => n === ":status")?.[1];
      // 1xx responses are interim: the final headers are still to come.
      const interim = status !== undefined && /^1\d\d$/.test(status);
      if (!interim || block.endStream) msg.headers = headers;
    } else {
      msg.trailers = headers;
    }
    if (block.endStream) this.#finishSide(block.streamId, side.direction, out);
  }

  /** The message state of a stream side, created on first use; undefined once done. */
  #streamSide(
    streamId: number,
    direction: Http2Direction,
    out: Http2Event[],
  ): StreamSide | undefined {
    let stream = this.#streams.get(streamId);
    if (stream === undefined) {
      if (this.#closed.has(streamId)) return undefined;
      if (this.#streams.size >= this.#maxStreams) {
        const [oldest, old] = this.#streams.entries().next().value!;
        this.#close(oldest);
        out.push({
          type: "error",
          direction,
          streamId: oldest,
          message: `more than ${this.#maxStreams} open streams; dropped stream ${oldest}`,
        });
        this.#releaseStream(old);
      }
      stream = {};
      this.#streams.set(streamId, stream);
    }
    let side = stream[direction];
    if (side === undefined) {
      side = { parts: [], buffered: 0, rawLength: 0, truncated: false, done: false };
      stream[direction] = side;
    }
    return side.done ? undefined : side;
  }

  #appendBody(msg: StreamSide, data: Uint8Array): void {
    msg.rawLength += data.length;
    const room = Math.min(this.#maxBody - msg.buffered, this.#maxTotal - this.#totalBuffered);
    if (data.length > room) {
      msg.truncated = true;
      if (room <= 0) return;
      data = data.subarray(0, room);
    }
    if (data.length === 0) return;
    msg.parts.push(data);
    msg.buffered += data.length;
    this.#totalBuffered += data.length;
  }

  #finishSide(streamId: number, direction: Http2Direction, out: Http2Event[]): void {
    const stream = this.#streams.get(streamId);
    const msg = stream?.[direction];
    if (stream === undefined || msg === undefined || msg.done) return;
    out.push(this.#message(streamId, direction, msg, false));
    msg.done = true;
    this.#totalBuffered -= msg.buffered;
    msg.parts = [];
    msg.buffered = 0;
    const other = stream[direction === "client" ? "server" : "client"];
    if (other?.done) this.#close(streamId);
  }

  #close(streamId: number): void {
    this.#streams.delete(streamId);
    this.#closed.add(streamId);
    if (this.#closed.size > 4 * this.#maxStreams) {
      this.#closed.delete(this.#closed.values().next().value!);
    }
  }

  /** Emits the unfinished sides of a stream as incomplete messages. */
  #flushStream(streamId: number, stream: Stream, out: Http2Event[]): void {
    for (const direction of ["client", "server"] as const) {
      const msg = stream[direction];
      if (msg === undefined || msg.done) continue;
      out.push(this.#message(streamId, direction, msg, true));
      msg.done = true;
    }
    this.#releaseStream(stream);
  }

  #releaseStream(stream: Stream): void {
    for (const msg of [stream.client, stream.server]) {
      if (msg === undefined) continue;
      this.#totalBuffered -= msg.buffered;
      msg.parts = [];
      msg.buffered = 0;
    }
  }

  #message(
    streamId: number,
    direction: Http2Direction,
    msg: StreamSide,
    incomplete: boolean,
  ): Http2MessageEvent {
    const headers = msg.headers ?? [];
    let body = concat(msg.parts, msg.buffered);
    const ev: Http2MessageEvent = {
      type: "message",
      direction,
      streamId,
      headers,
      body,
      rawBodyLength: msg.rawLength,
      bodyTruncated: msg.truncated,
    };
    const codings: string[] = [];
    for (const [n, v] of headers) {
      if (n === "content-encoding") codings.push(...v.split(","));
    }
    const real = codings.map((c) => c.trim().toLowerCase()).filter((c) =>
      c !== "" && c !== "identity"
    );
    if (real.length > 0 && body.length > 0) {
      if (!this.#decode) {
        ev.contentEncoding = real.join(", ");
      } else if (msg.truncated || incomplete) {
        ev.contentEncoding = real.join(", ");
        ev.decodeError = "body incomplete; not decoded";
      } else {
        const d = decodeContent(body, real, this.#maxBody);
        body = d.body;
        ev.body = body;
        if (d.contentEncoding !== undefined) ev.contentEncoding = d.contentEncoding;
        if (d.decodeError !== undefined) ev.decodeError = d.decodeError;
      }
    }
    if (msg.trailers !== undefined) ev.trailers = msg.trailers;
    if (incomplete) ev.incomplete = true;
    return ev;
  }
}

function frameLength(header: Uint8Array): number {
  return (header[0] << 16) | (header[1] << 8) | header[2];
}

/**
 * Whether bytes start with the client preface: "yes", "maybe" (a prefix of
 * it, too short to tell), or "no".
 */
export function sniffHttp2Preface(bytes: Uint8Array): "yes" | "maybe" | "no" {
  const n = Math.min(bytes.length, HTTP2_PREFACE.length);
  for (let i = 0; i < n; i++) if (bytes[i] !== HTTP2_PREFACE[i]) return "no";
  return n === HTTP2_PREFACE.length ? "yes" : "maybe";
}

/** Whether bytes start with the HTTP/2 client connection preface. */
export function looksLikeHttp2Preface(bytes: Uint8Array): boolean {
  return sniffHttp2Preface(bytes) === "yes";
}

/** Flags each frame type defines; sniffing rejects others. */
const DEFINED_FLAGS = [0x09, 0x2d, 0, 0, 0x01, 0x0c, 0x01, 0, 0, 0x04];

/**
 * Sniffs bytes that may be HTTP/2 frames without a preface: "settings" when
 * they start with a SETTINGS frame (how a server opens), "frames" after two
 * plausible frames in a row, "maybe" when too short to tell, else "no".
 */
export function sniffHttp2Frames(bytes: Uint8Array): "settings" | "frames" | "maybe" | "no" {
  let off = 0;
  for (let count = 0;; count++) {
    if (count === 2) return "frames";
    if (bytes.length - off < 9) return "maybe";
    const len = frameLength(bytes.subarray(off));
    const type = bytes[off + 3];
    const flags = bytes[off + 4];
    const sid = u32(bytes, off + 5);
    // Default SETTINGS_MAX_FRAME_SIZE; reserved bit clear; known types and flags.
    if (len > 16384 || sid > 0x7fffffff || type > 9) return "no";
    if ((flags & ~DEFINED_FLAGS[type]) !== 0) return "no";
    const connLevel = type === FrameType.SETTINGS || type === FrameType.PING ||
      type === FrameType.GOAWAY;
    if (type !== FrameType.WINDOW_UPDATE && (sid === 0) !== connLevel) return "no";
    const okLength = type === FrameType.PRIORITY
      ? len === 5
      : type === FrameType.RST_STREAM || type === FrameType.WINDOW_UPDATE
      ? len === 4
      : type === FrameType.SETTINGS
      ? (flags & FLAG_ACK ? len === 0 : len % 6 === 0)
      : type === FrameType.PING
      ? len === 8
      : type === FrameType.GOAWAY
      ? len >= 8
      : true;
    if (!okLength) return "no";
    if (count === 0 && type === FrameType.SETTINGS && !(flags & FLAG_ACK)) return "settings";
    off += 9 + len;
  }
}
