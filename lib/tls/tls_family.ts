/**
 * What every TLS module (tls, gnutls, nss, gotls) shares: the events, the
 * options of the three models (text, keylog, pcap), the decoder of the
 * records of kern/ecap.h's TLS section, the text and JSON formats, and the
 * key log and pcapng sinks. A module adds its probes and how it finds its
 * targets: `{ ...tlsFamily("gnutls", ...), name: "gnutls", probes, targets }`.
 * @module
 */
import { EcapError } from "../base/errors.ts";
import { numCpus } from "../core/ffi.ts";
import { formatTime } from "../base/format.ts";
import { hexdump, printableText, toBase64 } from "../base/hexdump.ts";
import { formatHttpView, HttpConversation, type HttpView } from "../http/http_stream.ts";
import { KeylogFile, keylogLines, loadCrypto, type TlsSecrets } from "./keylog.ts";
import { loadZlib } from "../http/http1.ts";
import {
  bool,
  type CommonOptions,
  type DecodeContext,
  type EventBase,
  type EventSink,
  type ModuleSpec,
  type OptionSpec,
  type RecordDecoder,
  tcx,
  u16,
  u32,
} from "../core/module_spec.ts";
import { type FilterNode, kernelFilter, parseFilter } from "../pcap/packet_filter.ts";
import { type CaptureInterface, PcapSink } from "../pcap/pcap_sink.ts";
import { headerReader, RecordError, type RecordHeader } from "../core/record_header.ts";
import type { BtfStruct } from "../binary/btf.ts";
import { allocBytes, copyBytes } from "../base/bytes.ts";

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
  /** -m pcap: packets to keep. */
  filter?: FilterNode;
}

/** One end of a TCP connection. */
export interface Endpoint {
  addr: string;
  port: number;
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
  | TlsPacketEvent<M>;

const VERSIONS: Record<number, string> = {
  0x0300: "SSL 3.0",
  0x0301: "TLS 1.0",
  0x0302: "TLS 1.1",
  0x0303: "TLS 1.2",
  0x0304: "TLS 1.3",
};

const DEFAULT_MAX_CALL = 1 << 20;

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

function endpoint(e: Endpoint | null): string {
  if (!e) return "?";
  return e.addr.includes(":") ? `[${e.addr}]:${e.port}` : `${e.addr}:${e.port}`;
}

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Connections remembered at most: the oldest is forgotten past this (ecap
 * does not see connections close), and with it its HTTP parsing state.
 */
const MAX_CONNECTIONS = 16384;

/**
 * A connection with no record for this long is forgotten, HTTP state and
 * all (its process may be gone); so is a call whose last chunk never came.
 * Longer than servers keep idle connections (nginx: 75 s; browsers' HTTP/2:
 * about 5 min), so a live one keeps its HPACK state.
 */
const IDLE_NS = 330_000_000_000n;
/** How often idle state is looked for, in record time. */
const SWEEP_NS = 10_000_000_000n;

/** Bytes set aside at a call's first chunk at most; more as they come. */
const MAX_CALL_BUFFER = 16 << 20;

/** Bytes of an address of this family that mean something. */
function addrBytes(family: number): number {
  return family === 2 ? 4 : family === 10 ? 16 : 0;
}

/** A connection's endpoints and HTTP state, as its records last said. */
interface Connection {
  fd: number;
  family: number;
  lport: number;
  rport: number;
  /** The addresses' bytes that count (4 for IPv4), to notice a change. */
  laddr: Uint8Array;
  raddr: Uint8Array;
  local: Endpoint | null;
  remote: Endpoint | null;
  conversation: HttpConversation;
  /** Time of its last record (monotonic ns). */
  lastSeen: bigint;
}

interface PartialCall {
  header: RecordHeader;
  /** The call's bytes so far: data[0, next). */
  data: Uint8Array;
  next: number;
  incomplete: boolean;
  /** A record before this call was lost (TLS_DATA_GAP). */
  gap: boolean;
}

/** Decodes the TLS records (data, secrets, key log lines, packets) of module `name`. */
export function tlsFamilyDecoder<M extends string>(
  name: M,
  ctx: DecodeContext,
): RecordDecoder<TlsFamilyEvent<M>> {
  const hdr = headerReader(ctx.btf, ctx.wallClock);
  const kinds = ctx.btf.enumValues("ecap_kind");
  const dataKind = kinds.get("ECAP_KIND_TLS_DATA")!;
  const secretKind = kinds.get("ECAP_KIND_TLS_SECRET")!;
  const keylogKind = kinds.get("ECAP_KIND_TLS_KEYLOG")!;
  const packetKind = kinds.get("ECAP_KIND_TLS_PACKET")!;
  const decodeSecret = secretDecoder(name, ctx);
  const decodeKeylog = keylogDecoder(name, ctx);
  const decodePacket = packetDecoder(name, ctx);
  const f = ctx.btf.enumValues("tls_data_flags");
  const READ = f.get("TLS_DATA_READ")!,
    LAST = f.get("TLS_DATA_LAST")!,
    CUT = f.get("TLS_DATA_CUT")!,
    GAP = f.get("TLS_DATA_GAP")!;
  const s = ctx.btf.struct("tls_data");
  const at = (m: string) => s.members.get(m)!.offset;
  const o = {
    conn: at("conn"),
    len: at("len"),
    offset: at("offset"),
    total: at("total"),
    flags: at("flags"),
    fd: at("fd"),
    family: at("family"),
    lport: at("lport"),
    rport: at("rport"),
    laddr: at("laddr"),
    raddr: at("raddr"),
  };
  /** Calls being put back together, by thread and direction. */
  const calls = new Map<number, PartialCall>();
  /** What is known of each connection, by "pid:conn". */
  const connections = new Map<string, Connection>();
  let lastSweep = 0n;

  /** Forgets connections and calls with no record for IDLE_NS. */
  function sweep(now: bigint) {
    lastSweep = now;
    for (const [id, c] of connections) if (now - c.lastSeen > IDLE_NS) connections.delete(id);
    for (const [key, call] of calls) if (now - call.header.timeNs > IDLE_NS) calls.delete(key);
  }

  /** The connection of a record, its endpoints read once per connection. */
  function connectionOf(view: DataView, offset: number, id: string, now: bigint): Connection {
    const fd = view.getInt32(offset + o.fd, true);
    const family = view.getUint16(offset + o.family, true);
    let c = connections.get(id);
    if (c && c.fd === fd && c.family === family && sameAddresses(c, view, offset)) {
      c.lastSeen = now;
      return c;
    }
    // A connection object seen with other sockets is a new connection
    // (an address reused after free); one whose socket was unknown is not.
    const conversation = c && c.family !== 0 && family !== 0 ? undefined : c?.conversation;
    if (!c && connections.size >= MAX_CONNECTIONS) {
      connections.delete(connections.keys().next().value!); // the oldest
    }
    const lport = view.getUint16(offset + o.lport, true);
    const rport = view.getUint16(offset + o.rport, true);
    const bytes = (m: number) => new Uint8Array(view.buffer, view.byteOffset + offset + m, 16);
    c = {
      fd,
      family,
      lport,
      rport,
      laddr: bytes(o.laddr).slice(0, addrBytes(family)),
      raddr: bytes(o.raddr).slice(0, addrBytes(family)),
      local: formatAddr(family, bytes(o.laddr), lport),
      remote: formatAddr(family, bytes(o.raddr), rport),
      conversation: conversation ?? new HttpConversation(),
      lastSeen: now,
    };
    connections.set(id, c);
    return c;
  }

  /** Ports and addresses as the record has them, unchanged since c was made. */
  function sameAddresses(c: Connection, view: DataView, offset: number): boolean {
    if (view.getUint16(offset + o.lport, true) !== c.lport) return false;
    if (view.getUint16(offset + o.rport, true) !== c.rport) return false;
    for (let i = 0; i < c.laddr.length; i++) {
      if (view.getUint8(offset + o.laddr + i) !== c.laddr[i]) return false;
      if (view.getUint8(offset + o.raddr + i) !== c.raddr[i]) return false;
    }
    return true;
  }

  return {
    decode(view, offset, length) {
      const h = hdr.read(view, offset, length);
      if (h.kind === secretKind) return decodeSecret(view, offset, length, h);
      if (h.kind === keylogKind) return decodeKeylog(view, offset, length, h);
      if (h.kind === packetKind) return decodePacket(view, offset, length, h);
      if (h.kind !== dataKind) {
        throw new RecordError(`unknown record kind ${h.kind} in ${name} capture`);
      }
      if (length < s.size) throw new RecordError("tls record too short");
      const len = view.getUint32(offset + o.len, true);
      if (s.size + len > length) throw new RecordError(`tls record claims ${len} bytes`);
      const flags = view.getUint32(offset + o.flags, true);
      const chunkOffset = view.getUint32(offset + o.offset, true);
      const key = h.tid * 2 + ((flags & READ) ? 1 : 0); // thread ids are unique system-wide
      const total = view.getUint32(offset + o.total, true);
      let call = calls.get(key);
      if (chunkOffset === 0 || !call) {
        // one buffer for all of the call's chunks (they follow each other in
        // the ring): one copy, none to join them
        const size = Math.min(total, MAX_CALL_BUFFER);
        call = {
          header: h,
          data: allocBytes(size),
          next: 0,
          incomplete: chunkOffset !== 0,
          gap: false,
        };
        calls.set(key, call);
      }
      if (chunkOffset !== call.next) call.incomplete = true;
      if (flags & GAP) call.gap = true;
      if (call.next + len > call.data.length) {
        const grown = allocBytes(Math.max(call.next + len, 2 * call.data.length));
        grown.set(call.data.subarray(0, call.next));
        call.data = grown;
      }
      call.data.set(new Uint8Array(view.buffer, view.byteOffset + offset + s.size, len), call.next);
      call.next += len;
      if ((flags & LAST) === 0) return [];
      calls.delete(key);

      const data = call.data.subarray(0, call.next);
      const conn = `${h.pid}:${view.getBigUint64(offset + o.conn, true).toString(16)}`;
      if (h.timeNs - lastSweep > SWEEP_NS) sweep(h.timeNs);
      const c = connectionOf(view, offset, conn, h.timeNs);
      const direction = (flags & READ) ? "read" as const : "write" as const;
      const side = direction === "write" ? "out" : "in";
      const gap = call.gap || call.incomplete;
      // bytes missing before or inside this call: the message they broke ends
      const cut = gap ? c.conversation.lost(side) : [];
      const pushed = c.conversation.push(side, data);
      const http = cut.length > 0 ? [...cut, ...pushed] : pushed;
      const protocol = c.conversation.protocol;
      const outOfStep = c.conversation.outOfStep(side);
      const inHttp = (protocol === "http1" || protocol === "http2") && !outOfStep &&
        c.conversation.parsing(side);
      // fields one by one: an object rest/spread here costs ~10x (a hot path)
      const h0 = call.header;
      return [{
        module: name,
        kind: "data",
        timeNs: h0.timeNs,
        pid: h0.pid,
        tid: h0.tid,
        uid: h0.uid,
        comm: h0.comm,
        process: h0.process,
        cgroupId: h0.cgroupId,
        direction,
        conn,
        fd: c.fd,
        local: c.local,
        remote: c.remote,
        data,
        total,
        truncated: (flags & CUT) !== 0,
        incomplete: call.incomplete,
        gap: call.gap,
        http,
        inHttp,
        outOfStep,
      }];
    },
    flush() {
      calls.clear();
      connections.clear();
      return [];
    },
  };
}

/**
 * What a secret event says besides its secrets: who, and which connection
 * (the members tls_secret and tls_keylog share). Secrets are rare: spread.
 */
function secretEnvelope<M extends string>(
  name: M,
  s: BtfStruct,
  view: DataView,
  offset: number,
  h: RecordHeader,
) {
  const at = (m: string) => offset + s.members.get(m)!.offset;
  const addr = (m: string) => new Uint8Array(view.buffer, view.byteOffset + at(m), 16);
  const family = view.getUint16(at("family"), true);
  return {
    module: name,
    kind: "secret" as const,
    timeNs: h.timeNs,
    pid: h.pid,
    tid: h.tid,
    uid: h.uid,
    comm: h.comm,
    process: h.process,
    cgroupId: h.cgroupId,
    conn: `${h.pid}:${view.getBigUint64(at("conn"), true).toString(16)}`,
    fd: view.getInt32(at("fd"), true),
    local: formatAddr(family, addr("laddr"), view.getUint16(at("lport"), true)),
    remote: formatAddr(family, addr("raddr"), view.getUint16(at("rport"), true)),
  };
}

/** Reads `struct tls_secret` (a whole handshake's secrets) into key log lines. */
function secretDecoder<M extends string>(name: M, ctx: DecodeContext) {
  const s = ctx.btf.struct("tls_secret");
  const at = (m: string) => s.members.get(m)!.offset;
  return (view: DataView, offset: number, length: number, h: RecordHeader) => {
    if (length < s.size) throw new RecordError("tls secret record too short");
    const bytes = (m: string, n = s.members.get(m)!.size) =>
      new Uint8Array(
        view.buffer.slice(view.byteOffset + offset + at(m), view.byteOffset + offset + at(m) + n),
      );
    const version = view.getUint32(offset + at("version"), true);
    const masterLen = view.getUint32(offset + at("master_key_len"), true);
    const secrets: TlsSecrets = {
      version,
      cipherId: view.getUint32(offset + at("cipher_id"), true),
      clientRandom: bytes("client_random"),
      masterKey: bytes("master_key", Math.min(masterLen, 48)),
      handshakeSecret: bytes("handshake_secret"),
      handshakeTrafficHash: bytes("handshake_traffic_hash"),
      clientAppTrafficSecret: bytes("client_app_traffic_secret"),
      serverAppTrafficSecret: bytes("server_app_traffic_secret"),
      exporterMasterSecret: bytes("exporter_master_secret"),
    };
    const event: TlsSecretEvent<M> = {
      ...secretEnvelope(name, s, view, offset, h),
      version: VERSIONS[version] ?? `0x${version.toString(16)}`,
      clientRandom: hex(secrets.clientRandom),
      keylog: keylogLines(secrets),
      complete: true,
    };
    return [event];
  };
}

/**
 * The label that counts a handshake (one line on stdout each): TLS 1.2 has
 * one line; every TLS 1.3 library logs CLIENT_TRAFFIC_SECRET_0 (Go logs no
 * EXPORTER_SECRET).
 */
const HANDSHAKE_LABELS = new Set(["CLIENT_RANDOM", "CLIENT_TRAFFIC_SECRET_0"]);

/** Reads `struct tls_keylog`: one key log line's parts. */
function keylogDecoder<M extends string>(name: M, ctx: DecodeContext) {
  const s = ctx.btf.struct("tls_keylog");
  const at = (m: string) => s.members.get(m)!.offset;
  const size = (m: string) => s.members.get(m)!.size;
  const text = new TextDecoder();
  return (view: DataView, offset: number, length: number, h: RecordHeader) => {
    if (length < s.size) throw new RecordError("tls keylog record too short");
    const bytes = (m: string, n = size(m)) =>
      new Uint8Array(view.buffer, view.byteOffset + offset + at(m), n);
    const secretLen = view.getUint32(offset + at("secret_len"), true);
    if (secretLen > size("secret")) throw new RecordError(`tls keylog claims ${secretLen} bytes`);
    const labelBytes = bytes("label");
    const end = labelBytes.indexOf(0);
    const label = text.decode(end < 0 ? labelBytes : labelBytes.subarray(0, end));
    if (!/^[A-Z0-9_]+$/.test(label)) throw new RecordError(`tls keylog label "${label}"`);
    const clientRandom = hex(bytes("client_random"));
    const event: TlsSecretEvent<M> = {
      ...secretEnvelope(name, s, view, offset, h),
      version: label === "CLIENT_RANDOM" ? "TLS 1.2" : "TLS 1.3",
      clientRandom,
      keylog: [`${label} ${clientRandom} ${hex(bytes("secret", secretLen))}`],
      complete: HANDSHAKE_LABELS.has(label),
    };
    return [event];
  };
}

/** Reads `struct tls_packet` and the bytes that follow it. */
function packetDecoder<M extends string>(name: M, ctx: DecodeContext) {
  const s = ctx.btf.struct("tls_packet");
  const at = (m: string) => s.members.get(m)!.offset;
  const dirs = ctx.btf.enumValues("tls_packet_dir");
  const INGRESS = dirs.get("TLS_PACKET_INGRESS")!;
  return (view: DataView, offset: number, length: number, h: RecordHeader) => {
    if (length < s.size) throw new RecordError("tls packet record too short");
    const caplen = view.getUint32(offset + at("caplen"), true);
    if (s.size + caplen > length) throw new RecordError(`tls packet claims ${caplen} bytes`);
    const start = view.byteOffset + offset + s.size;
    const event: TlsPacketEvent<M> = {
      module: name,
      kind: "packet",
      timeNs: h.timeNs,
      pid: 0,
      tid: 0,
      uid: 0,
      comm: "",
      ifindex: view.getUint32(offset + at("ifindex"), true),
      length: view.getUint32(offset + at("len"), true),
      data: copyBytes(new Uint8Array(view.buffer, start, caplen)),
      direction: view.getUint32(offset + at("dir"), true) === INGRESS ? "ingress" : "egress",
    };
    return [event];
  };
}

/** Bytes in JSON: text when they are text, else { base64 }. */
function jsonValue(v: unknown): unknown {
  if (v instanceof Uint8Array) return printableText(v) ?? { base64: toBase64(v) };
  if (Array.isArray(v)) return v.map(jsonValue);
  if (v && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonValue(x)]));
  }
  return v;
}

function parseBytes(v: string | boolean | undefined): number | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  const m = /^(\d+)([KMG]?)$/i.exec(v);
  const scale: Record<string, number> = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 };
  const n = m ? Number(m[1]) * scale[m[2].toUpperCase()] : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 0xffffffff) {
    throw new EcapError(`Invalid --max-call-bytes "${v}": expected bytes such as 1M`, {
      kind: "usage",
    });
  }
  return n;
}

const MODELS = ["text", "pcap", "pcapng", "keylog", "key"];
/** Probes for -m text only. */
export const TEXT_MODEL = ["text"];
/** Probes for the models that need secrets. */
export const SECRET_MODELS = ["keylog", "pcap"];

/** The model a user's -m names: pcapng is pcap, key is keylog. */
function canonicalModel(m: string): string {
  return m === "pcapng" ? "pcap" : m === "key" ? "keylog" : m;
}

/** The tcx programs of -m pcap, which every TLS object includes (kern/tls_packets.bpf.h). */
export const PACKET_PROBES = [
  tcx("tc_ingress", "ingress", { models: ["pcap"] }),
  tcx("tc_egress", "egress", { models: ["pcap"] }),
];

/** Interfaces by name (all that are up, if none named). */
export function findInterfaces(names: readonly string[]): CaptureInterface[] {
  const all = [...Deno.readDirSync("/sys/class/net")].map((e) => e.name).sort();
  const chosen = names.length > 0 ? names : all.filter((n) => {
    try {
      const state = Deno.readTextFileSync(`/sys/class/net/${n}/operstate`).trim();
      return state === "up" || state === "unknown";
    } catch {
      return false;
    }
  });
  return chosen.map((name) => {
    let index: number, type: number;
    try {
      index = Number(Deno.readTextFileSync(`/sys/class/net/${name}/ifindex`));
      type = Number(Deno.readTextFileSync(`/sys/class/net/${name}/type`));
    } catch {
      throw new EcapError(`No network interface "${name}"`, {
        kind: "not-found",
        hint: `interfaces: ${all.join(", ")}`,
      });
    }
    // ARPHRD_ETHER and ARPHRD_LOOPBACK carry an Ethernet header at tc; others raw IP
    const linkType = type === 1 || type === 772 ? 1 : 101;
    return { name, index, loopback: type === 772, linkType };
  });
}

/** The options of every TLS module (after its own, e.g. --libssl). */
const FAMILY_OPTIONS: readonly OptionSpec[] = [
  {
    name: "model",
    short: "m",
    type: "string",
    arg: "MODEL",
    help: "text (plaintext), keylog (key log file), pcap (pcapng with keys); default text",
  },
  { name: "hex", type: "boolean", help: "show payloads as hex dumps (text)" },
  {
    name: "max-call-bytes",
    type: "string",
    arg: "BYTES",
    help: "capture at most this much of one read/write call (default 1M)",
  },
  { name: "keylogfile", short: "k", type: "string", arg: "FILE", help: "key log file (keylog)" },
  { name: "pcapfile", short: "w", type: "string", arg: "FILE", help: "pcapng file (pcap)" },
  {
    name: "ifname",
    short: "i",
    type: "string",
    arg: "IFACES",
    help: "interfaces, comma-separated (pcap; default: every interface that is up)",
  },
];

function parseFamilyOptions(
  v: Record<string, string | boolean | undefined>,
): Partial<TlsFamilyOptions> {
  const asked = typeof v.model === "string" ? v.model : "text";
  if (!MODELS.includes(asked)) {
    throw new EcapError(`Unknown --model "${asked}" (models: ${MODELS.join(", ")})`, {
      kind: "usage",
    });
  }
  const model = canonicalModel(asked);
  if (model === "pcap" && typeof v.pcapfile !== "string") {
    throw new EcapError(`-m ${asked} needs -w/--pcapfile FILE`, { kind: "usage" });
  }
  if (model === "keylog" && typeof v.keylogfile !== "string") {
    throw new EcapError(`-m ${asked} needs -k/--keylogfile FILE`, { kind: "usage" });
  }
  if (typeof v.positionals === "string" && model !== "pcap") {
    throw new EcapError(`A filter expression needs -m pcap: "${v.positionals}"`, {
      kind: "usage",
    });
  }
  let filter: FilterNode | undefined;
  if (typeof v.positionals === "string") {
    try {
      filter = parseFilter(v.positionals);
    } catch (e) {
      throw new EcapError(`Invalid filter expression: ${(e as Error).message}`, {
        kind: "usage",
      });
    }
  }
  return {
    model,
    hex: v.hex === true,
    maxCallBytes: parseBytes(v["max-call-bytes"]),
    keylogFile: typeof v.keylogfile === "string" ? v.keylogfile : undefined,
    pcapFile: typeof v.pcapfile === "string" ? v.pcapfile : undefined,
    interfaces: typeof v.ifname === "string"
      ? v.ifname.split(",").map((x) => x.trim()).filter(Boolean)
      : undefined,
    filter,
  };
}

/** The interfaces -m pcap captures, and the note that says so; nothing for other models. */
export function packetInterfaces(
  opts: TlsFamilyOptions,
): { interfaces?: CaptureInterface[]; notes: string[] } {
  if (opts.model !== "pcap") return { notes: [] };
  const interfaces = findInterfaces(opts.interfaces ?? []);
  return { interfaces, notes: [`packets of ${interfaces.map((i) => i.name).join(", ")}`] };
}

type FamilyPart<O extends TlsFamilyOptions, M extends string> = Pick<
  ModuleSpec<O, TlsFamilyEvent<M>>,
  | "options"
  | "parseOptions"
  | "positionals"
  | "mapSizes"
  | "globals"
  | "prepare"
  | "decoder"
  | "createSink"
  | "format"
  | "toJSON"
>;

/**
 * The parts of a TLS module's spec that do not depend on its library.
 * `own` are the module's options listed before the shared ones, and
 * `parseOwn` reads them.
 */
export function tlsFamily<O extends TlsFamilyOptions, M extends string>(
  name: M,
  own: readonly OptionSpec[],
  parseOwn: (v: Record<string, string | boolean | undefined>) => Partial<O>,
): FamilyPart<O, M> {
  return {
    positionals: "FILTER EXPRESSION (-m pcap, e.g. tcp port 443)",
    options: [...own, ...FAMILY_OPTIONS],
    parseOptions: (v) => ({ ...parseFamilyOptions(v), ...parseOwn(v) }) as Partial<O>,
    mapSizes: () => ({ packet_scratch: Math.max(1, numCpus()) }),
    prepare: async () => {
      await Promise.all([loadZlib(), loadCrypto()]);
    },
    globals(opts) {
      const g: Record<string, Uint8Array> = {
        max_call_bytes: u32(opts.maxCallBytes ?? DEFAULT_MAX_CALL),
      };
      const k = opts.filter ? kernelFilter(opts.filter) : undefined;
      if (k?.proto) g.pkt_proto = new Uint8Array([k.proto]);
      if (k?.port) g.pkt_port = u16(k.port);
      if (k?.host4) g.pkt_host4_set = bool(true), g.pkt_host4 = k.host4;
      if (k?.host6) g.pkt_host6_set = bool(true), g.pkt_host6 = k.host6;
      return g;
    },
    decoder: (ctx) => tlsFamilyDecoder(name, ctx),
    createSink(opts) {
      if (opts.model === "keylog") return keylogSink<M>(opts.keylogFile!);
      if (opts.model === "pcap") {
        return pcapSink<M>(opts.pcapFile!, findInterfaces(opts.interfaces ?? []), opts.filter);
      }
      return undefined;
    },
    format: formatTlsEvent,
    toJSON: tlsEventJSON,
  };
}

/** "comm[pid]", or "process[pid]/thread" for a thread named otherwise. */
function who(ev: EventBase): string {
  return ev.process === undefined ? `${ev.comm}[${ev.pid}]` : `${ev.process}[${ev.pid}]/${ev.comm}`;
}

/** The text line(s) of a TLS event. */
export function formatTlsEvent(ev: TlsFamilyEvent, opts: TlsFamilyOptions): string {
  if (ev.kind === "secret") return ev.complete ? formatSecret(ev) : "";
  if (ev.kind === "packet") return "";
  const dir = ev.direction === "write" ? "->" : "<-";
  const notes = (ev.truncated ? ` (cut: ${ev.total} moved)` : "") +
    (ev.gap ? " (after lost records)" : "") + (ev.incomplete ? " (parts lost)" : "");
  const head = `${formatTime(ev.timeNs)} ${who(ev)} fd=${ev.fd} ${endpoint(ev.local)} ${dir} ${
    endpoint(ev.remote)
  } ${ev.direction.toUpperCase()} ${ev.data.length} bytes${notes}`;
  if (opts.hex) return `${head}\n${hexdump(ev.data)}`;
  if (ev.http.length > 0) return `${head}\n${ev.http.map((v) => formatHttpView(v)).join("\n")}`;
  // the middle of an HTTP message: shown whole when it completes, not dumped
  // here too (a hex dump of every 16 KiB of a body cost the reader its pace)
  if (ev.inHttp) return `${head} (HTTP, continued)`;
  // after lost records: noise to a reader, and dumping it slows the capture further
  if (ev.outOfStep) return `${head} (HTTP, not decoded: records were lost before)`;
  return `${head}\n${printableText(ev.data) ?? hexdump(ev.data)}`;
}

/** The --json object of a TLS event; secrets never appear in it. */
export function tlsEventJSON(ev: TlsFamilyEvent): Record<string, unknown> {
  const base = {
    module: ev.module,
    kind: ev.kind,
    time: formatTime(ev.timeNs, true),
  };
  if (ev.kind === "packet") {
    return { ...base, ifindex: ev.ifindex, direction: ev.direction, length: ev.length };
  }
  const owner = {
    pid: ev.pid,
    tid: ev.tid,
    uid: ev.uid,
    comm: ev.comm,
    process: ev.process ?? ev.comm,
    conn: ev.conn,
    fd: ev.fd,
    local: ev.local,
    remote: ev.remote,
  };
  if (ev.kind === "secret") {
    // secrets go to the key log file only, never to stdout
    return { ...base, ...owner, version: ev.version, client_random: ev.clientRandom };
  }
  return {
    ...base,
    ...owner,
    direction: ev.direction,
    length: ev.data.length,
    total: ev.total,
    truncated: ev.truncated,
    incomplete: ev.incomplete,
    gap: ev.gap,
    data: toBase64(ev.data),
    http: ev.http.length ? ev.http.map(jsonValue) : undefined,
  };
}

function formatSecret(ev: TlsSecretEvent): string {
  // a socket not learnt (no syscall seen in the handshake) is left out
  const conn = ev.fd < 0 && !ev.local
    ? ""
    : ` fd=${ev.fd} ${endpoint(ev.local)} ${endpoint(ev.remote)}`;
  return `${formatTime(ev.timeNs)} ${who(ev)}${conn} ${ev.version} keys for client random ${
    ev.clientRandom.slice(0, 16)
  }...`;
}

/** -m keylog: secrets to the key log file, a line per handshake to stdout. */
function keylogSink<M extends string>(path: string): EventSink<TlsFamilyEvent<M>> {
  const file = new KeylogFile(path);
  let handshakes = 0;
  return {
    write(batch) {
      let text = "";
      for (const ev of batch) {
        if (ev.kind !== "secret" || ev.keylog.length === 0) continue;
        if (file.add(ev.keylog).length === 0 || !ev.complete) continue;
        handshakes++;
        text += formatSecret(ev) + "\n";
      }
      return text;
    },
    tick() {},
    close() {
      file.close();
      return `${handshakes} handshakes, ${file.written} key log lines written to ${path}`;
    },
  };
}

/** -m pcap: packets and secrets to a pcapng file. */
function pcapSink<M extends string>(
  path: string,
  interfaces: CaptureInterface[],
  filter: FilterNode | undefined,
): EventSink<TlsFamilyEvent<M>> {
  const sink = new PcapSink(path, interfaces, { filter, application: "ecap" });
  const seen = new Set<string>();
  return {
    write(batch) {
      let text = "";
      for (const ev of batch) {
        if (ev.kind === "packet") {
          sink.packet({
            timeNs: ev.timeNs,
            ifindex: ev.ifindex,
            length: ev.length,
            data: ev.data,
            direction: ev.direction,
          });
        } else if (ev.kind === "secret") {
          sink.owner({
            pid: ev.pid,
            comm: ev.process ?? ev.comm,
            local: ev.local,
            remote: ev.remote,
          });
          const fresh = ev.keylog.filter((l) => !seen.has(l));
          for (const l of fresh) seen.add(l);
          sink.secrets(fresh);
          if (fresh.length && ev.complete) text += formatSecret(ev) + "\n";
        }
      }
      sink.tick();
      return text;
    },
    tick: () => sink.tick(),
    close() {
      sink.close();
      return `${sink.packets} packets, ${sink.secretLines} key log lines written to ${path}`;
    },
  };
}
