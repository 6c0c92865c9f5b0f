/**
 * tls: plaintext that processes send and receive through OpenSSL or
 * BoringSSL. kern/tls.bpf.c sends each SSL_read/SSL_write call's bytes in
 * chunks; the decoder here puts each call back together and, per
 * connection, reads HTTP/1.x and HTTP/2 out of the byte streams.
 * @module
 */
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { EcapError } from "../errors.ts";
import { formatTime } from "../format.ts";
import { hexdump, printableText, toBase64 } from "../hexdump.ts";
import { formatHttpView, HttpConversation, type HttpView } from "../http_stream.ts";
import {
  type CommonOptions,
  type DecodeContext,
  type EventBase,
  type ModuleSpec,
  rawTracepoint,
  type RecordDecoder,
  u32,
  uprobe,
  uretprobe,
} from "../module_spec.ts";
import { headerReader, RecordError, type RecordHeader } from "../record_header.ts";
import { discoverTlsLibraries, inspectTlsLibrary } from "../tls_library.ts";

/** Options of the tls module. */
export interface TlsOptions extends CommonOptions {
  /** A libssl.so, or a program with OpenSSL linked in (e.g. /usr/bin/node). */
  libssl?: string;
  /** Bytes captured of one SSL_read/SSL_write call at most (default 1 MiB). */
  maxCallBytes?: number;
  /** Print payloads as hex dumps. */
  hex?: boolean;
}

/** One end of a TCP connection. */
export interface Endpoint {
  addr: string;
  port: number;
}

/** Bytes one SSL_read or SSL_write call moved. */
export interface TlsEvent extends EventBase {
  module: "tls";
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
  const dataKind = ctx.btf.enumValues("ecap_kind").get("ECAP_KIND_TLS_DATA")!;
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

/** The tls module, described once. */
export const tls: ModuleSpec<TlsOptions, TlsEvent> = {
  name: "tls",
  aliases: ["openssl"],
  summary: "Plaintext of OpenSSL/BoringSSL connections (SSL_read/SSL_write)",
  object: tlsObject,
  probes: [
    uprobe("uprobe_ssl_write", LIB, "SSL_write"),
    uretprobe("uretprobe_ssl_call", LIB, "SSL_write"),
    uprobe("uprobe_ssl_read", LIB, "SSL_read"),
    uretprobe("uretprobe_ssl_call", LIB, "SSL_read"),
    uprobe("uprobe_ssl_write_ex", LIB, "SSL_write_ex", { optional: true }),
    uretprobe("uretprobe_ssl_call_ex", LIB, "SSL_write_ex", { optional: true }),
    uprobe("uprobe_ssl_read_ex", LIB, "SSL_read_ex", { optional: true }),
    uretprobe("uretprobe_ssl_call_ex", LIB, "SSL_read_ex", { optional: true }),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
  ],
  options: [
    {
      name: "libssl",
      type: "string",
      arg: "PATH",
      help: "libssl.so or a program with OpenSSL linked in (default: every libssl in use)",
    },
    { name: "hex", type: "boolean", help: "show payloads as hex dumps" },
    {
      name: "max-call-bytes",
      type: "string",
      arg: "BYTES",
      help: "capture at most this much of one SSL_read/SSL_write (default 1M)",
    },
    {
      name: "model",
      short: "m",
      type: "string",
      arg: "MODEL",
      help: "output model: text (pcap, pcapng, keylog: not yet available)",
    },
    { name: "pcapfile", short: "w", type: "string", arg: "FILE", help: "pcapng file (-m pcap)" },
    { name: "keylogfile", short: "k", type: "string", arg: "FILE", help: "key log (-m keylog)" },
  ],
  parseOptions(v) {
    const model = typeof v.model === "string" ? v.model : "text";
    if (!MODELS.includes(model)) {
      throw new EcapError(`Unknown --model "${model}" (models: ${MODELS.join(", ")})`, {
        kind: "usage",
      });
    }
    if ((model === "pcap" || model === "pcapng") && typeof v.pcapfile !== "string") {
      throw new EcapError(`-m ${model} needs -w/--pcapfile FILE`, { kind: "usage" });
    }
    if ((model === "keylog" || model === "key") && typeof v.keylogfile !== "string") {
      throw new EcapError(`-m ${model} needs -k/--keylogfile FILE`, { kind: "usage" });
    }
    if (model !== "text") {
      throw new EcapError(`Model "${model}" is not available in this version of ecap`, {
        kind: "unsupported",
        hint: "use -m text",
      });
    }
    return {
      libssl: typeof v.libssl === "string" ? v.libssl : undefined,
      hex: v.hex === true,
      maxCallBytes: parseBytes(v["max-call-bytes"]),
    };
  },
  async targets(opts) {
    const paths: string[] = [];
    if (opts.libssl) {
      paths.push(opts.libssl);
    } else {
      for (const lib of await discoverTlsLibraries({ pid: opts.pid })) paths.push(lib.path);
      if (paths.length === 0) {
        throw new EcapError(
          opts.pid ? `Process ${opts.pid} maps no OpenSSL library` : "No libssl found",
          { kind: "not-found", hint: "pass --libssl PATH" },
        );
      }
    }
    const notes: string[] = [];
    for (const path of paths) {
      const info = await inspectTlsLibrary(path);
      const what = info.flavor === "boringssl"
        ? "BoringSSL"
        : info.version
        ? `OpenSSL ${info.version}`
        : "an unrecognised OpenSSL version (plaintext is still captured)";
      notes.push(`${path}: ${what}${info.statically ? ", linked statically" : ""}`);
    }
    return { files: { [LIB]: paths }, notes };
  },
  globals: (opts) => ({ max_call_bytes: u32(opts.maxCallBytes ?? DEFAULT_MAX_CALL) }),
  decoder: tlsDecoder,
  format(ev, opts) {
    const dir = ev.direction === "write" ? "->" : "<-";
    const cut = ev.truncated ? ` (cut: ${ev.total} moved)` : "";
    const head = `${formatTime(ev.timeNs)} ${ev.comm}[${ev.pid}] fd=${ev.fd} ${
      endpoint(ev.local)
    } ${dir} ${endpoint(ev.remote)} ${ev.direction.toUpperCase()} ${ev.data.length} bytes${cut}`;
    if (opts.hex) return `${head}\n${hexdump(ev.data)}`;
    if (ev.http.length > 0) return `${head}\n${ev.http.map((v) => formatHttpView(v)).join("\n")}`;
    return `${head}\n${printableText(ev.data) ?? hexdump(ev.data)}`;
  },
  toJSON: (ev) => ({
    module: ev.module,
    time: formatTime(ev.timeNs, true),
    pid: ev.pid,
    tid: ev.tid,
    uid: ev.uid,
    comm: ev.comm,
    direction: ev.direction,
    conn: ev.conn,
    fd: ev.fd,
    local: ev.local,
    remote: ev.remote,
    length: ev.data.length,
    total: ev.total,
    truncated: ev.truncated,
    incomplete: ev.incomplete,
    data: toBase64(ev.data),
    http: ev.http.length ? ev.http.map(jsonValue) : undefined,
  }),
};
