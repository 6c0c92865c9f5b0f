/**
 * The decoder of the records of kern/ecap.h's TLS section: a call's chunks
 * put back together, with its connection's endpoints and HTTP decoding;
 * handshake secrets; key log lines; packets.
 * @module
 */
import { HttpConversation } from "../http/http_stream.ts";
import { keylogLines, type TlsSecrets } from "./keylog.ts";
import type { DecodeContext, RecordDecoder } from "../core/module_spec.ts";
import { headerReader, RecordError, type RecordHeader } from "../core/record_header.ts";
import type { BtfStruct } from "../binary/btf.ts";
import { allocBytes } from "../base/bytes.ts";
import { packetCopy } from "../pcap/packet_pool.ts";
import {
  type Endpoint,
  formatAddr,
  type TlsFamilyEvent,
  type TlsPacketEvent,
  type TlsSecretEvent,
} from "./tls_events.ts";

const VERSIONS: Record<number, string> = {
  0x0300: "SSL 3.0",
  0x0301: "TLS 1.0",
  0x0302: "TLS 1.1",
  0x0303: "TLS 1.2",
  0x0304: "TLS 1.3",
};

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

/**
 * Records name processes by their pid in the initial pid namespace: /proc
 * shows those only when ecap runs in it (its inode is PROC_PID_INIT_INO).
 */
const HOST_PIDS = (() => {
  try {
    return Deno.readLinkSync("/proc/self/ns/pid") === "pid:[4026531836]";
  } catch {
    return false;
  }
})();

/** Whether process pid (as the records name it: the host's pid) still runs. */
function processRuns(pid: string): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

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
  /** data is the ring's bytes, lent for this decode (borrowData); else a buffer of its own. */
  lent: boolean;
}

/** Options of {@link tlsFamilyDecoder}. */
export interface TlsDecoderOptions {
  /**
   * A call that came in one record gets, as its `data`, a view of that
   * record in the batch being decoded, valid only until decode() returns,
   * instead of a copy. For a caller that takes each event within decode()
   * and copies what it keeps: the exchange view (tls_exchanges.ts), where
   * the HTTP parsers copy what they keep and the calls themselves are not
   * handed out. Saves one copy and one allocation of every byte moved.
   */
  borrowData?: boolean;
}

/** Decodes the TLS records (data, secrets, key log lines, packets) of module `name`. */
export function tlsFamilyDecoder<M extends string>(
  name: M,
  ctx: DecodeContext,
  { borrowData = false }: TlsDecoderOptions = {},
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
  /**
   * "pid:conn" keys made, by the low half of the library's object address:
   * a call's key is made once per connection, not per call (a BigInt and
   * two strings each time).
   */
  const keys = new Map<number, { pid: number; high: number; key: string }>();
  function connKey(pid: number, view: DataView, at: number): string {
    const low = view.getUint32(at, true), high = view.getUint32(at + 4, true);
    const known = keys.get(low);
    if (known !== undefined && known.pid === pid && known.high === high) return known.key;
    if (keys.size >= MAX_CONNECTIONS) keys.clear();
    const key = `${pid}:${view.getBigUint64(at, true).toString(16)}`;
    keys.set(low, { pid, high, key });
    return key;
  }
  /** What is known of each connection, by "pid:conn". */
  const connections = new Map<string, Connection>();
  let lastSweep = 0n;

  /**
   * Forgets connections and calls with no record for IDLE_NS, and sooner
   * the connections of processes that have exited (quiet for a sweep: their
   * last records may still have been in the ring): every HTTPS client a
   * script runs is a new process, and 330 s of them are thousands of
   * conversations kept for nothing.
   */
  function sweep(now: bigint) {
    lastSweep = now;
    const alive = new Map<string, boolean>();
    for (const [id, c] of connections) {
      const quiet = now - c.lastSeen;
      if (quiet > IDLE_NS) connections.delete(id);
      else if (quiet > SWEEP_NS && HOST_PIDS) {
        const pid = id.slice(0, id.indexOf(":"));
        let live = alive.get(pid);
        if (live === undefined) alive.set(pid, live = processRuns(pid));
        if (!live) connections.delete(id);
      }
    }
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
      const payload = new Uint8Array(view.buffer, view.byteOffset + offset + s.size, len);
      let call: PartialCall;
      if (borrowData && chunkOffset === 0 && (flags & LAST) !== 0) {
        // the whole call in this record: lent, not copied (see borrowData)
        calls.delete(key); // an earlier call's chunks, if any: its last was lost
        call = { header: h, data: payload, next: len, incomplete: false, gap: false, lent: true };
      } else {
        let partial = calls.get(key);
        if (chunkOffset === 0 || !partial) {
          // one buffer for all of the call's chunks (they follow each other in
          // the ring): one copy, none to join them
          const size = Math.min(total, MAX_CALL_BUFFER);
          partial = {
            header: h,
            data: allocBytes(size),
            next: 0,
            incomplete: chunkOffset !== 0,
            gap: false,
            lent: false,
          };
          calls.set(key, partial);
        }
        call = partial;
        if (chunkOffset !== call.next) call.incomplete = true;
        if (call.next + len > call.data.length) {
          const grown = allocBytes(Math.max(call.next + len, 2 * call.data.length));
          grown.set(call.data.subarray(0, call.next));
          call.data = grown;
        }
        call.data.set(payload, call.next);
        call.next += len;
      }
      if (flags & GAP) call.gap = true;
      if ((flags & LAST) === 0) return [];
      calls.delete(key);

      const data = call.data.subarray(0, call.next);
      const conn = connKey(h.pid, view, offset + o.conn);
      if (h.timeNs - lastSweep > SWEEP_NS) sweep(h.timeNs);
      const c = connectionOf(view, offset, conn, h.timeNs);
      const direction = (flags & READ) ? "read" as const : "write" as const;
      const side = direction === "write" ? "out" : "in";
      const gap = call.gap || call.incomplete;
      // bytes missing before or inside this call: the message they broke ends
      const cut = gap ? c.conversation.lost(side) : [];
      // a call put together from chunks is a buffer of its own: its body need not be copied
      let http = c.conversation.push(side, data, undefined, !call.lent);
      if (cut.length > 0) http = [...cut, ...http];
      // a call cut short (--max-call-bytes, or while the ring was filling): what it did not keep
      if ((flags & CUT) !== 0 && total > data.length) {
        const skipped = c.conversation.skip(side, total - data.length);
        if (skipped.length > 0) http = [...http, ...skipped];
      }
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
        protocol,
        role: c.conversation.role,
      }];
    },
    flush() {
      calls.clear();
      connections.clear();
      keys.clear();
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
      data: packetCopy(new Uint8Array(view.buffer, start, caplen)),
      direction: view.getUint32(offset + at("dir"), true) === INGRESS ? "ingress" : "egress",
    };
    return [event];
  };
}
