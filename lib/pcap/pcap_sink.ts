/**
 * `ecap tls -m pcap`: packets from the tcx classifiers and the secrets of
 * the handshakes they carry, written as pcapng that Wireshark and tshark
 * decrypt with no further options. Packets wait HOLD_MS (less while more
 * than HOLD_BYTES wait) before they are written so that the secrets (read
 * when a handshake returns) go out first, as a Decryption Secrets Block;
 * the file is flushed at least every second, stdout (path "-", read live
 * by `wireshark -k -i -`) after every batch of packets.
 * @module
 */
import { parsePacket } from "./packet_headers.ts";
import type { PacketFilter } from "../core/ffi.ts";
import { ioError, openReplacedFile } from "../core/output_file.ts";
import { type ClosableWriter, stdioWriter, writerOf } from "../core/pipe_writer.ts";
import { PcapngWriter } from "./pcapng_writer.ts";
import { HeldPackets } from "./held_packets.ts";
import { recyclePacket } from "./packet_pool.ts";

const encoder = new TextEncoder();

/** How long a packet is held for the secrets of its handshake. */
const HOLD_MS = 500;
/**
 * Bytes of packets held at most: past this the oldest go out early. At
 * 300 MB/s of packets 500 ms held 150 MB (peak RSS 350 MB); 16 MiB still
 * holds 50 ms there, more than a handshake's keys take to arrive after its
 * packets on a busy machine.
 */
const HOLD_BYTES = 16 << 20;
const FLUSH_MS = 1000;

/** A network interface capture is attached to. */
export interface CaptureInterface {
  name: string;
  index: number;
  loopback: boolean;
  /** LINKTYPE_*: 1 Ethernet (loopback too), 101 raw IP. */
  linkType: number;
  /** The packets kept, applied in the kernel. */
  filter?: PacketFilter;
}

/** A packet as the tls decoder reports it. */
export interface PacketRecord {
  timeNs: bigint;
  ifindex: number;
  length: number;
  data: Uint8Array;
  direction: "ingress" | "egress";
}

/** A process's end of a connection, learnt from its handshake. */
export interface ConnectionOwner {
  pid: number;
  comm: string;
  local: { addr: string; port: number } | null;
  remote: { addr: string; port: number } | null;
}

function addrKey(bytes: Uint8Array | undefined, port: number | undefined): string {
  if (!bytes) return "";
  const addr = bytes.length === 4
    ? `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}` // once per packet written
    : Array.from({ length: 8 }, (_, i) => ((bytes[2 * i] << 8) | bytes[2 * i + 1]).toString(16))
      .join(":");
  return `${addr}|${port ?? 0}`;
}

/** The same key for an Endpoint as reported by the kernel (IPv6 expanded). */
function endpointKey(e: { addr: string; port: number } | null): string {
  if (!e) return "";
  if (!e.addr.includes(":")) return `${e.addr}|${e.port}`;
  if (e.addr.startsWith("::ffff:") && e.addr.includes(".")) {
    const v4 = e.addr.slice(7).split(".").map(Number);
    const bytes = new Uint8Array(16);
    bytes[10] = bytes[11] = 0xff;
    bytes.set(v4, 12);
    return addrKey(bytes, e.port);
  }
  const [head, tail = ""] = e.addr.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = e.addr.includes("::")
    ? [...h, ...Array(8 - h.length - t.length).fill("0"), ...t]
    : h;
  return `${groups.map((g) => parseInt(g, 16).toString(16)).join(":")}|${e.port}`;
}

/**
 * Writes whole buffers to a file or none of them: on a failed write (a full
 * disk) the file is cut back to its last whole write, so it stays valid.
 */
class WholeWrites {
  #committed: number;
  constructor(readonly file: Deno.FsFile) {
    this.#committed = file.statSync().size;
  }
  close() {
    this.file.close();
  }
  writeSync(p: Uint8Array): number {
    try {
      for (let off = 0; off < p.length;) off += this.file.writeSync(p.subarray(off));
    } catch (e) {
      try {
        this.file.truncateSync(this.#committed);
      } catch { /* the write's error says more */ }
      throw e;
    }
    this.#committed += p.length;
    return p.length;
  }
}

/** The path that names stdout, as in tcpdump's `-w -`. */
export const STDOUT_PATH = "-";

/** tcpdump's default snap length: longer packets are cut to it. */
export const DEFAULT_SNAPLEN = 262144;

/** How a PcapSink writes. */
export interface PcapSinkOptions {
  /** shb_userappl, e.g. "ecap". */
  application: string;
  /** Bytes of a packet kept at most (default DEFAULT_SNAPLEN). */
  snapLen?: number;
  /** Packets to take at most (`-c`); later ones are dropped. */
  limit?: number;
}

/** Writes packets and secrets to a pcapng file, or to stdout. */
export class PcapSink {
  /** The file, stdout, or a PipeWriter over either. */
  #out: ClosableWriter;
  #live: boolean;
  #writer: PcapngWriter;
  #limit: number;
  #queued = 0;
  #ids = new Map<number, { id: number; linkType: number }>();
  /** Packets waiting for their secrets, oldest first. */
  #held = new HeldPackets();
  /** The one record #held's packets are handed out in, in turn. */
  #shifted: PacketRecord = {
    timeNs: 0n,
    ifindex: 0,
    length: 0,
    data: new Uint8Array(0),
    direction: "egress",
  };
  /** The packet comment naming each connection's process, encoded once. */
  #owners = new Map<string, Uint8Array>();
  #lastFlush = Date.now();
  packets = 0;
  secretLines = 0;

  /** path "-" is stdout; a file is replaced, as tcpdump -w replaces it. */
  constructor(
    readonly path: string,
    interfaces: readonly CaptureInterface[],
    opts: PcapSinkOptions,
  ) {
    this.#live = path === STDOUT_PATH;
    const file = this.#live ? undefined : openReplacedFile(path);
    // a pipe cannot be cut back to a whole block: its reader has the bytes
    this.#out = !file
      ? stdioWriter(1)
      : file.statSync().isFile
      ? new WholeWrites(file)
      : writerOf(file, path);
    const out = this.#out;
    this.#writer = new PcapngWriter(out, {
      application: opts.application,
      os: `Linux ${Deno.osRelease()}`,
      hardware: Deno.build.arch,
    });
    const snapLen = opts.snapLen ?? DEFAULT_SNAPLEN;
    for (const i of interfaces) {
      const id = this.#writer.addInterface({ name: i.name, linkType: i.linkType, snapLen });
      this.#ids.set(i.index, { id, linkType: i.linkType });
    }
    this.#limit = opts.limit ?? Infinity;
    this.#guard(() => this.#writer.flush());
  }

  #guard(f: () => void) {
    try {
      f();
    } catch (e) {
      throw ioError(this.#live ? "stdout" : this.path, e);
    }
  }

  /** True once `limit` packets are taken: the capture can stop. */
  get full(): boolean {
    return this.#queued >= this.#limit;
  }

  /** Records which process owns a connection, for packet comments. */
  owner(o: ConnectionOwner) {
    const comment = encoder.encode(`pid=${o.pid} comm=${o.comm}`);
    this.#owners.set(`${endpointKey(o.local)}>${endpointKey(o.remote)}`, comment);
  }

  /** Writes key log lines now: they must precede the packets they decrypt. */
  secrets(lines: readonly string[]) {
    if (lines.length === 0) return;
    this.#guard(() => this.#writer.addTlsKeyLog(lines.join("\n") + "\n"));
    this.secretLines += lines.length;
  }

  /** Queues a packet that passes the filter, until `limit` are taken. */
  packet(p: PacketRecord) {
    const iface = this.#ids.get(p.ifindex);
    if (!iface || this.full) return;
    this.#queued++;
    this.#held.push(Date.now(), p);
    recyclePacket(p.data); // copied into the held blocks: its buffer may serve again
  }

  #comment(p: PacketRecord, linkType: number): Uint8Array | undefined {
    const info = parsePacket(p.data, linkType);
    const src = addrKey(info.src, info.sport), dst = addrKey(info.dst, info.dport);
    return this.#owners.get(`${src}>${dst}`) ?? this.#owners.get(`${dst}>${src}`);
  }

  /** Writes packets held long enough (all with `all`), and flushes once a second. */
  tick(all = false) {
    const now = Date.now();
    const held = this.#held;
    let written = 0;
    this.#guard(() => {
      while (
        held.length > 0 && (all || now - held.oldestAt >= HOLD_MS || held.bytes > HOLD_BYTES)
      ) {
        const p = held.shift(this.#shifted);
        const iface = this.#ids.get(p.ifindex)!;
        this.#writer.addPacket({
          interfaceId: iface.id,
          timestampNs: p.timeNs,
          data: p.data,
          originalLength: p.length,
          direction: p.direction === "ingress" ? "inbound" : "outbound",
          comment: this.#comment(p, iface.linkType),
        });
        this.packets++;
        written++;
      }
      if (all || (this.#live && written > 0) || now - this.#lastFlush >= FLUSH_MS) {
        this.#writer.flush();
        this.#lastFlush = now;
      }
    });
  }

  /** Writes everything held and closes the file (stdout stays open). */
  close() {
    try {
      this.tick(true);
    } finally {
      this.#out.close();
    }
  }
}
