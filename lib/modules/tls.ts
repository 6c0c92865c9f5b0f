/**
 * tls: plaintext that processes send and receive through OpenSSL or
 * BoringSSL. kern/tls.bpf.c sends each SSL_read/SSL_write call's bytes in
 * chunks; the decoder here puts each call back together and, per
 * connection, reads HTTP/1.x and HTTP/2 out of the byte streams.
 * @module
 */
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { EcapError } from "../errors.ts";
import { numCpus } from "../ffi.ts";
import { formatTime } from "../format.ts";
import { hexdump, printableText, toBase64 } from "../hexdump.ts";
import { formatHttpView, HttpConversation, type HttpView } from "../http_stream.ts";
import { Btf } from "../btf.ts";
import { ElfFile } from "../elf.ts";
import { KeylogFile, keylogLines, type TlsSecrets } from "../keylog.ts";
import {
  bool,
  type CommonOptions,
  type DecodeContext,
  type EventBase,
  type EventSink,
  type FileTarget,
  type ListedTarget,
  type ModuleSpec,
  rawTracepoint,
  type RecordDecoder,
  tcx,
  u16,
  u32,
  uprobe,
  uretprobe,
} from "../module_spec.ts";
import { type FilterNode, kernelFilter, parseFilter } from "../packet_filter.ts";
import { type CaptureInterface, PcapSink } from "../pcap_sink.ts";
import { encodeSslLayout, KNOWN_FAMILIES, layoutFor } from "../ssl_layout.ts";
import { headerReader, RecordError, type RecordHeader } from "../record_header.ts";
import { discoverTlsLibraries, inspectTlsLibrary } from "../tls_library.ts";
import { mayDefineSymbol } from "../elf_peek.ts";
import { findProcessesMapping, formatDev, type MappingProcesses } from "../proc_maps.ts";

/** Options of the tls module. */
export interface TlsOptions extends CommonOptions {
  /** A libssl.so, or a program with OpenSSL linked in (e.g. /usr/bin/node). */
  libssl?: string;
  /** Bytes captured of one SSL_read/SSL_write call at most (default 1 MiB). */
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

/** Bytes one SSL_read or SSL_write call moved (`-m text`). */
export interface TlsDataEvent extends EventBase {
  module: "tls";
  kind: "data";
  /** "write": the process sent it; "read": the process received it. */
  direction: "read" | "write";
  /** Identifies the connection within the process (the SSL object's address). */
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
  /** HTTP messages or frames completed by these bytes. */
  http: HttpView[];
}

/** A completed handshake's secrets (`-m keylog`, `-m pcap`). */
export interface TlsSecretEvent extends EventBase {
  module: "tls";
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
}

/** A packet seen by the tcx classifier (`-m pcap`); pid, uid and comm are 0/"". */
export interface TlsPacketEvent extends EventBase {
  module: "tls";
  kind: "packet";
  ifindex: number;
  /** Bytes on the wire; data may hold fewer (snap length). */
  length: number;
  data: Uint8Array;
  direction: "ingress" | "egress";
}

/** What the tls module reports. */
export type TlsEvent = TlsDataEvent | TlsSecretEvent | TlsPacketEvent;

const VERSIONS: Record<number, string> = {
  0x0300: "SSL 3.0",
  0x0301: "TLS 1.0",
  0x0302: "TLS 1.1",
  0x0303: "TLS 1.2",
  0x0304: "TLS 1.3",
};

const DEFAULT_MAX_CALL = 1 << 20;

function formatAddr(family: number, bytes: Uint8Array, port: number): Endpoint | null {
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

interface PartialCall {
  header: RecordHeader;
  parts: Uint8Array[];
  next: number;
  incomplete: boolean;
}

function tlsDecoder(ctx: DecodeContext): RecordDecoder<TlsEvent> {
  const hdr = headerReader(ctx.btf, ctx.wallClock);
  const kinds = ctx.btf.enumValues("ecap_kind");
  const dataKind = kinds.get("ECAP_KIND_TLS_DATA")!;
  const secretKind = kinds.get("ECAP_KIND_TLS_SECRET")!;
  const packetKind = kinds.get("ECAP_KIND_TLS_PACKET")!;
  const decodeSecret = secretDecoder(ctx);
  const decodePacket = packetDecoder(ctx);
  const f = ctx.btf.enumValues("tls_data_flags");
  const READ = f.get("TLS_DATA_READ")!,
    LAST = f.get("TLS_DATA_LAST")!,
    CUT = f.get("TLS_DATA_CUT")!;
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
  const calls = new Map<string, PartialCall>();
  /** HTTP state per connection. */
  const conversations = new Map<string, HttpConversation>();

  return {
    decode(view, offset, length) {
      const h = hdr.read(view, offset, length);
      if (h.kind === secretKind) return decodeSecret(view, offset, length, h);
      if (h.kind === packetKind) return decodePacket(view, offset, length, h);
      if (h.kind !== dataKind) {
        throw new RecordError(`unknown record kind ${h.kind} in tls capture`);
      }
      if (length < s.size) throw new RecordError("tls record too short");
      const len = view.getUint32(offset + o.len, true);
      if (s.size + len > length) throw new RecordError(`tls record claims ${len} bytes`);
      const flags = view.getUint32(offset + o.flags, true);
      const chunkOffset = view.getUint32(offset + o.offset, true);
      const key = `${h.pid}/${h.tid}/${flags & READ}`;
      let call = calls.get(key);
      if (chunkOffset === 0 || !call) {
        call = { header: h, parts: [], next: 0, incomplete: chunkOffset !== 0 };
        calls.set(key, call);
      }
      if (chunkOffset !== call.next) call.incomplete = true;
      const start = view.byteOffset + offset + s.size;
      call.parts.push(new Uint8Array(view.buffer.slice(start, start + len)));
      call.next = chunkOffset + len;
      if ((flags & LAST) === 0) return [];
      calls.delete(key);

      const total = view.getUint32(offset + o.total, true);
      const data = join(call.parts);
      const family = view.getUint16(offset + o.family, true);
      const bytes = (m: number) => new Uint8Array(view.buffer, view.byteOffset + offset + m, 16);
      const conn = `${h.pid}:${view.getBigUint64(offset + o.conn, true).toString(16)}`;
      const direction = (flags & READ) ? "read" as const : "write" as const;
      let conversation = conversations.get(conn);
      if (!conversation) conversations.set(conn, conversation = new HttpConversation());
      const http = conversation.push(direction === "write" ? "out" : "in", data);
      const { kind: _, ...base } = call.header;
      return [{
        module: "tls",
        kind: "data",
        ...base,
        direction,
        conn,
        fd: view.getInt32(offset + o.fd, true),
        local: formatAddr(family, bytes(o.laddr), view.getUint16(offset + o.lport, true)),
        remote: formatAddr(family, bytes(o.raddr), view.getUint16(offset + o.rport, true)),
        data,
        total,
        truncated: (flags & CUT) !== 0,
        incomplete: call.incomplete,
        http,
      }];
    },
    flush() {
      calls.clear();
      conversations.clear();
      return [];
    },
  };
}

/** Reads `struct tls_secret` into key log lines. */
function secretDecoder(ctx: DecodeContext) {
  const s = ctx.btf.struct("tls_secret");
  const at = (m: string) => s.members.get(m)!.offset;
  return (view: DataView, offset: number, length: number, h: RecordHeader): TlsSecretEvent[] => {
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
    const family = view.getUint16(offset + at("family"), true);
    const { kind: _, ...base } = h;
    return [{
      module: "tls",
      kind: "secret",
      ...base,
      conn: `${h.pid}:${view.getBigUint64(offset + at("conn"), true).toString(16)}`,
      fd: view.getInt32(offset + at("fd"), true),
      local: formatAddr(family, bytes("laddr"), view.getUint16(offset + at("lport"), true)),
      remote: formatAddr(family, bytes("raddr"), view.getUint16(offset + at("rport"), true)),
      version: VERSIONS[version] ?? `0x${version.toString(16)}`,
      clientRandom: Array.from(secrets.clientRandom, (b) => b.toString(16).padStart(2, "0")).join(
        "",
      ),
      keylog: keylogLines(secrets),
    }];
  };
}

/** Reads `struct tls_packet` and the bytes that follow it. */
function packetDecoder(ctx: DecodeContext) {
  const s = ctx.btf.struct("tls_packet");
  const at = (m: string) => s.members.get(m)!.offset;
  const dirs = ctx.btf.enumValues("tls_packet_dir");
  const INGRESS = dirs.get("TLS_PACKET_INGRESS")!;
  return (view: DataView, offset: number, length: number, h: RecordHeader): TlsPacketEvent[] => {
    if (length < s.size) throw new RecordError("tls packet record too short");
    const caplen = view.getUint32(offset + at("caplen"), true);
    if (s.size + caplen > length) throw new RecordError(`tls packet claims ${caplen} bytes`);
    const start = view.byteOffset + offset + s.size;
    return [{
      module: "tls",
      kind: "packet",
      timeNs: h.timeNs,
      pid: 0,
      tid: 0,
      uid: 0,
      comm: "",
      ifindex: view.getUint32(offset + at("ifindex"), true),
      length: view.getUint32(offset + at("len"), true),
      data: new Uint8Array(view.buffer.slice(start, start + caplen)),
      direction: view.getUint32(offset + at("dir"), true) === INGRESS ? "ingress" : "egress",
    }];
  };
}

function join(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
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

const LIB = "libssl";
const MODELS = ["text", "pcap", "pcapng", "keylog", "key"];
const TEXT = ["text"];
const SECRETS = ["keylog", "pcap"];
const PCAP = ["pcap"];
const HANDSHAKES = ["SSL_do_handshake", "SSL_connect", "SSL_accept"];

/** The model a user's -m names: pcapng is pcap, key is keylog. */
function canonicalModel(m: string): string {
  return m === "pcapng" ? "pcap" : m === "key" ? "keylog" : m;
}

let objectBtf: Btf | undefined;
function tlsBtf(): Btf {
  return objectBtf ??= Btf.fromElf(ElfFile.parse(tlsObject));
}

/** Interfaces by name (all that are up, if none named). */
function findInterfaces(names: readonly string[]): CaptureInterface[] {
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

const LIBSSL_PREFIX = "libssl.so";

/** What the tls module probes in one file: a line for the user, and its struct offsets. */
async function fileTarget(path: string, opts: TlsOptions): Promise<FileTarget> {
  const info = await inspectTlsLibrary(path);
  const what = info.flavor === "boringssl"
    ? "BoringSSL"
    : info.version
    ? `OpenSSL ${info.version}`
    : "an unrecognised OpenSSL version (plaintext is still captured)";
  let keys = "";
  let mapEntries: FileTarget["mapEntries"];
  if (opts.model === "keylog" || opts.model === "pcap") {
    const layout = info.flavor === "openssl" ? layoutFor(info.version) : undefined;
    if (layout) {
      const value = encodeSslLayout(tlsBtf(), layout.entry, info.version);
      mapEntries = (index) => [{ map: "ssl_layouts", key: u32(index), value }];
      keys = `; keys from the ${layout.family} layout`;
    } else {
      keys = `; no keys: struct offsets known for OpenSSL ${KNOWN_FAMILIES.join(", ")}`;
    }
  }
  return { note: `${what}${info.statically ? ", linked statically" : ""}${keys}`, mapEntries };
}

/** A file named with --libssl, as discovery would describe it. */
async function describeFile(
  path: string,
): Promise<{ path: string; inode: number; dev: string; pids: number[] }> {
  const st = await Deno.stat(path).catch(() => undefined);
  const mapping = st === undefined
    ? undefined
    : (await findProcessesMapping(() => true).catch(() => new Map<string, MappingProcesses>()))
      .values().find((m) => m.inode === st.ino && m.dev === formatDev(st.dev!));
  return {
    path,
    inode: st?.ino ?? 0,
    dev: st ? formatDev(st.dev!) : "?",
    pids: mapping?.pids ?? [],
  };
}

async function commOf(pid: number): Promise<string> {
  return (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "?")).trim();
}

/** The tls module, described once. */
export const tls: ModuleSpec<TlsOptions, TlsEvent> = {
  name: "tls",
  aliases: ["openssl"],
  summary: "Plaintext, keys and packets of OpenSSL/BoringSSL connections",
  object: tlsObject,
  probes: [
    uprobe("uprobe_ssl_write", LIB, "SSL_write", { models: TEXT }),
    uretprobe("uretprobe_ssl_call", LIB, "SSL_write", { models: TEXT }),
    uprobe("uprobe_ssl_read", LIB, "SSL_read", { models: TEXT }),
    uretprobe("uretprobe_ssl_call", LIB, "SSL_read", { models: TEXT }),
    uprobe("uprobe_ssl_write_ex", LIB, "SSL_write_ex", { optional: true, models: TEXT }),
    uretprobe("uretprobe_ssl_call_ex", LIB, "SSL_write_ex", { optional: true, models: TEXT }),
    uprobe("uprobe_ssl_read_ex", LIB, "SSL_read_ex", { optional: true, models: TEXT }),
    uretprobe("uretprobe_ssl_call_ex", LIB, "SSL_read_ex", { optional: true, models: TEXT }),
    // handshakes: their secrets; in text mode, the socket their syscalls show,
    // for a first SSL_read served from what the handshake already read
    ...HANDSHAKES.flatMap((f) => [
      uprobe("uprobe_ssl_handshake", LIB, f, { optional: true }),
      uretprobe("uretprobe_ssl_call", LIB, f, { optional: true }),
    ]),
    // handshakes done inside SSL_read/SSL_write: their secrets at the next call
    uprobe("uprobe_ssl_data_secrets", LIB, "SSL_write", { models: SECRETS }),
    uprobe("uprobe_ssl_data_secrets", LIB, "SSL_read", { models: SECRETS }),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
    tcx("tc_ingress", "ingress", { models: PCAP }),
    tcx("tc_egress", "egress", { models: PCAP }),
  ],
  positionals: "FILTER EXPRESSION (-m pcap, e.g. tcp port 443)",
  options: [
    {
      name: "libssl",
      type: "string",
      arg: "PATH",
      help: "libssl.so or a program with OpenSSL linked in (default: every libssl in use)",
    },
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
      help: "capture at most this much of one SSL_read/SSL_write (default 1M)",
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
  ],
  parseOptions(v) {
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
      libssl: typeof v.libssl === "string" ? v.libssl : undefined,
      hex: v.hex === true,
      maxCallBytes: parseBytes(v["max-call-bytes"]),
      keylogFile: typeof v.keylogfile === "string" ? v.keylogfile : undefined,
      pcapFile: typeof v.pcapfile === "string" ? v.pcapfile : undefined,
      interfaces: typeof v.ifname === "string"
        ? v.ifname.split(",").map((x) => x.trim()).filter(Boolean)
        : undefined,
      filter,
    };
  },
  async targets(opts) {
    const paths: string[] = [];
    const users: Record<string, number[]> = {};
    const pids = [...new Set([...(opts.pids ?? []), ...(opts.pid ? [opts.pid] : [])])];
    if (opts.libssl) {
      paths.push(opts.libssl);
    } else {
      const found = pids.length > 0
        ? (await Promise.all(pids.map((pid) => discoverTlsLibraries({ pid })))).flat()
        : await discoverTlsLibraries();
      const seen = new Set<string>();
      for (const lib of found) {
        if (seen.has(`${lib.dev}:${lib.inode}`)) continue;
        seen.add(`${lib.dev}:${lib.inode}`);
        paths.push(lib.path);
        // a library only processes map (a container's) goes when they do
        if (lib.source === "maps" && pids.length === 0) users[lib.path] = lib.pids;
      }
      if (paths.length === 0 && !opts.followChildren) {
        throw new EcapError(
          pids.length ? `Process ${pids.join(", ")} maps no OpenSSL library` : "No libssl found",
          { kind: "not-found", hint: "pass --libssl PATH" },
        );
      }
    }
    const notes: string[] = [];
    const mapEntries: { map: string; key: Uint8Array; value: Uint8Array }[] = [];
    for (const [index, path] of paths.entries()) {
      const t = await fileTarget(path, opts);
      notes.push(`${path}: ${t.note}`);
      mapEntries.push(...t.mapEntries?.(index) ?? []);
    }
    const interfaces = opts.model === "pcap" ? findInterfaces(opts.interfaces ?? []) : undefined;
    if (interfaces) notes.push(`packets of ${interfaces.map((i) => i.name).join(", ")}`);
    return { files: { [LIB]: paths }, notes, mapEntries, interfaces, users };
  },
  follow(opts) {
    // a library named by the user is all it asked for
    if (opts.libssl) return undefined;
    const pids = opts.pids?.length ?? (opts.pid ? 1 : 0);
    if (pids > 0 && !opts.followChildren) return undefined;
    return {
      role: LIB,
      mappedPrefix: LIBSSL_PREFIX,
      exec: true,
      async inspect(path) {
        try {
          // most binaries run while capturing are not TLS libraries: say so
          // from their string tables, not a parse of the whole file
          if (!await mayDefineSymbol(path, "SSL_write")) return undefined;
          return await fileTarget(path, opts);
        } catch (e) {
          if (e instanceof EcapError) return undefined; // not a TLS library
          throw e;
        }
      },
    };
  },
  async listTargets(opts) {
    const pids = [...new Set([...(opts.pids ?? []), ...(opts.pid ? [opts.pid] : [])])];
    const found = opts.libssl
      ? [await describeFile(opts.libssl)]
      : pids.length > 0
      ? (await Promise.all(pids.map((pid) => discoverTlsLibraries({ pid })))).flat()
      : await discoverTlsLibraries();
    const out: ListedTarget[] = [];
    for (const lib of found) {
      const kind = await fileTarget(lib.path, { ...opts, model: "text" })
        .then((t) => t.note, (e) => `not usable: ${(e as Error).message}`);
      out.push({
        path: lib.path,
        inode: lib.inode,
        dev: lib.dev,
        kind,
        processes: await Promise.all(
          lib.pids.map(async (pid) => ({ pid, comm: await commOf(pid) })),
        ),
      });
    }
    return out;
  },
  mapSizes: () => ({ packet_scratch: Math.max(1, numCpus()) }),
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
  decoder: tlsDecoder,
  createSink(opts) {
    if (opts.model === "keylog") return keylogSink(opts.keylogFile!);
    if (opts.model === "pcap") {
      return pcapSink(opts.pcapFile!, findInterfaces(opts.interfaces ?? []), opts.filter);
    }
    return undefined;
  },
  format(ev, opts) {
    if (ev.kind === "secret") return formatSecret(ev);
    if (ev.kind === "packet") return "";
    const dir = ev.direction === "write" ? "->" : "<-";
    const cut = ev.truncated ? ` (cut: ${ev.total} moved)` : "";
    const head = `${formatTime(ev.timeNs)} ${ev.comm}[${ev.pid}] fd=${ev.fd} ${
      endpoint(ev.local)
    } ${dir} ${endpoint(ev.remote)} ${ev.direction.toUpperCase()} ${ev.data.length} bytes${cut}`;
    if (opts.hex) return `${head}\n${hexdump(ev.data)}`;
    if (ev.http.length > 0) return `${head}\n${ev.http.map((v) => formatHttpView(v)).join("\n")}`;
    return `${head}\n${printableText(ev.data) ?? hexdump(ev.data)}`;
  },
  toJSON(ev) {
    const base = {
      module: ev.module,
      kind: ev.kind,
      time: formatTime(ev.timeNs, true),
    };
    if (ev.kind === "packet") {
      return { ...base, ifindex: ev.ifindex, direction: ev.direction, length: ev.length };
    }
    const who = {
      pid: ev.pid,
      tid: ev.tid,
      uid: ev.uid,
      comm: ev.comm,
      conn: ev.conn,
      fd: ev.fd,
      local: ev.local,
      remote: ev.remote,
    };
    if (ev.kind === "secret") {
      // secrets go to the key log file only, never to stdout
      return { ...base, ...who, version: ev.version, client_random: ev.clientRandom };
    }
    return {
      ...base,
      ...who,
      direction: ev.direction,
      length: ev.data.length,
      total: ev.total,
      truncated: ev.truncated,
      incomplete: ev.incomplete,
      data: toBase64(ev.data),
      http: ev.http.length ? ev.http.map(jsonValue) : undefined,
    };
  },
};

function formatSecret(ev: TlsSecretEvent): string {
  return `${formatTime(ev.timeNs)} ${ev.comm}[${ev.pid}] fd=${ev.fd} ${endpoint(ev.local)} ${
    endpoint(ev.remote)
  } ${ev.version} keys for client random ${ev.clientRandom.slice(0, 16)}...`;
}

/** -m keylog: secrets to the key log file, a line per handshake to stdout. */
function keylogSink(path: string): EventSink<TlsEvent> {
  const file = new KeylogFile(path);
  let handshakes = 0;
  return {
    write(batch) {
      let text = "";
      for (const ev of batch) {
        if (ev.kind !== "secret" || ev.keylog.length === 0) continue;
        if (file.add(ev.keylog).length === 0) continue;
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
function pcapSink(
  path: string,
  interfaces: CaptureInterface[],
  filter: FilterNode | undefined,
): EventSink<TlsEvent> {
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
          sink.owner({ pid: ev.pid, comm: ev.comm, local: ev.local, remote: ev.remote });
          const fresh = ev.keylog.filter((l) => !seen.has(l));
          for (const l of fresh) seen.add(l);
          sink.secrets(fresh);
          if (fresh.length) text += formatSecret(ev) + "\n";
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
