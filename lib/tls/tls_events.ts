/**
 * What the TLS modules (tls, gnutls, nss, gotls) report: their options and
 * their events (an HTTP exchange, a block of other bytes; with `calls`, each
 * read or write call; a handshake's secrets, a packet).
 * @module
 */
import type { CommonOptions, EventBase } from "../core/module_spec.ts";
import type { Endpoint, ExchangeAssembler, HttpExchange, StreamBlock } from "../http/exchanges.ts";
import type { ConversationRole, HttpView } from "../http/http_stream.ts";

export type { Endpoint };

/** Options every TLS module takes. */
export interface TlsFamilyOptions extends CommonOptions {
  /** Bytes captured of one read/write call at most (default 1 MiB). */
  maxCallBytes?: number;
  /** Print payloads as hex dumps. */
  hex?: boolean;
  /** -m keylog: the key log file. */
  keylogFile?: string;
  /** -m pcap: the pcapng file. */
  pcapFile?: string;
  /** -m pcap: interface names (default: all that are up). */
  interfaces?: string[];
  /** -m pcap: packets to keep, in tcpdump's filter language (compiled by libpcap). */
  filter?: string;
  /** -m pcap: bytes of a packet kept at most (-s; default 262144, as tcpdump). */
  snapLen?: number;
  /** Report each read/write call instead of HTTP exchanges (--calls). */
  calls?: boolean;
  /** A request without a response is reported incomplete after this (seconds; default 30). */
  exchangeTimeout?: number;
  /** --har: the HAR 1.2 file exchanges are written to. */
  harFile?: string;
  /**
   * Where calls become exchanges, when several captures share one (ecap
   * tls's families: a connection between two of them is one exchange).
   */
  exchanges?: ExchangeAssembler;
}

/** Bytes one read or write call of the TLS library moved (`-m text`). */
export interface TlsDataEvent<M extends string = string> extends EventBase {
  module: M;
  kind: "data";
  /** "write": the process sent it; "read": the process received it. */
  direction: "read" | "write";
  /** Identifies the connection within the process (the library's connection object). */
  conn: string;
  /** Socket fd, -1 if not learnt. */
  fd: number;
  local: Endpoint | null;
  remote: Endpoint | null;
  /** The plaintext, whole unless `truncated`. */
  data: Uint8Array;
  /** Bytes the call moved (more than data.length when truncated). */
  total: number;
  /** The call moved more than the per-call cap; the rest was not captured. */
  truncated: boolean;
  /** Chunks of this call were lost (ring buffer full); see stats. */
  incomplete: boolean;
  /**
   * Records of this connection and direction were lost before this call
   * (ring buffer full): the bytes before these are not all there.
   */
  gap: boolean;
  /** HTTP messages or frames completed by these bytes. */
  http: HttpView[];
  /**
   * The bytes went to an HTTP decoder of this connection (a message or
   * frame still in progress when `http` is empty), not unknown bytes.
   */
  inHttp: boolean;
  /** The connection's protocol as sniffed so far. */
  protocol: "unknown" | "http1" | "http2" | "raw";
  /** The process's end of the connection, once known. */
  role?: ConversationRole;
  /**
   * HTTP bytes not decoded: this direction lost bytes and is looking for the
   * next message start (HTTP/1), or lost them for good (HTTP/2).
   */
  outOfStep: boolean;
}

/** A handshake's secrets, or one of them (`-m keylog`, `-m pcap`). */
export interface TlsSecretEvent<M extends string = string> extends EventBase {
  module: M;
  kind: "secret";
  conn: string;
  fd: number;
  local: Endpoint | null;
  remote: Endpoint | null;
  /** "TLS 1.2", "TLS 1.3", ... */
  version: string;
  /** The handshake's client random, hex: the key of its key log lines. */
  clientRandom: string;
  /** NSS key log lines: secrets; never printed to stdout. */
  keylog: string[];
  /** True for the one line of a handshake that counts it (libraries that log one secret at a time). */
  complete: boolean;
}

/** A packet seen by the tcx classifier (`-m pcap`); pid, uid and comm are 0/"". */
export interface TlsPacketEvent<M extends string = string> extends EventBase {
  module: M;
  kind: "packet";
  ifindex: number;
  /** Bytes on the wire; data may hold fewer (snap length). */
  length: number;
  data: Uint8Array;
  direction: "ingress" | "egress";
}

/** What a TLS module reports. */
export type TlsFamilyEvent<M extends string = string> =
  | TlsDataEvent<M>
  | TlsSecretEvent<M>
  | TlsPacketEvent<M>
  | TlsExchangeEvent<M>
  | TlsStreamEvent<M>;

/**
 * An HTTP request and its response (the default view of the text model):
 * pid, comm and time are the client's (the server's when only it was
 * captured) and the request's first byte.
 */
export interface TlsExchangeEvent<M extends string = string> extends EventBase, HttpExchange {
  module: M;
}

/** Consecutive bytes of one direction of a connection that is not HTTP. */
export interface TlsStreamEvent<M extends string = string> extends EventBase, StreamBlock {
  module: M;
}

/** An address as the kernel keeps it (family, 16 bytes, port) for people. */
export function formatAddr(family: number, bytes: Uint8Array, port: number): Endpoint | null {
  if (family === 2) return { addr: Array.from(bytes.subarray(0, 4)).join("."), port };
  if (family === 10) {
    if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
      return { addr: `::ffff:${Array.from(bytes.subarray(12, 16)).join(".")}`, port };
    }
    const groups: string[] = [];
    for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] << 8) | bytes[i + 1]).toString(16));
    // collapse the longest run of zero groups, as RFC 5952 asks
    const text = groups.join(":");
    const runs = [...text.matchAll(/(^|:)0(:0)+(:|$)/g)].sort((a, b) => b[0].length - a[0].length);
    const addr = runs.length ? text.replace(runs[0][0], "::") : text;
    return { addr, port };
  }
  return null;
}
