/**
 * A subset of tcpdump's filter language (pcap-filter(7)): host, net, port and
 * portrange primitives with src/dst qualifiers, protocol words, and
 * and/or/not with parentheses. Parsed once, then matched in user space
 * against {@linkcode PacketInfo} decoded by {@linkcode parsePacket};
 * {@linkcode kernelFilter} extracts what a simple in-kernel pre-filter can do.
 *
 * Differences from tcpdump: no implicit "and" between primitives (except a
 * protocol word qualifying the next primitive, as in `tcp port 443`), no
 * host names other than `localhost`, no service names, and `host` does not
 * look inside ARP packets.
 * @module
 */

/** A malformed filter expression; `position` is the offending token's index. */
export class FilterError extends SyntaxError {
  /** Index in the expression of the token at fault (its length at the end). */
  readonly position: number;
  /** Creates the error; the message already names the token and position. */
  constructor(message: string, position: number) {
    super(message);
    this.name = "FilterError";
    this.position = position;
  }
}

/** Which address or port of a packet a primitive looks at. */
export type Direction = "src" | "dst" | "either";

/** A protocol word. */
export type ProtocolName = "tcp" | "udp" | "icmp" | "icmp6" | "ip" | "ip6" | "arp";

/** A parsed filter expression. `and`/`or` are n-ary so long chains stay shallow. */
export type FilterNode =
  | { kind: "and"; operands: FilterNode[] }
  | { kind: "or"; operands: FilterNode[] }
  | { kind: "not"; operand: FilterNode }
  | { kind: "proto"; name: ProtocolName }
  /** Matches when the address equals any of `addrs` (`localhost` has two). */
  | { kind: "host"; dir: Direction; addrs: Uint8Array[] }
  | { kind: "net"; dir: Direction; addr: Uint8Array; prefix: number }
  /** `port N` has from === to; `portrange N-M` has from <= to. */
  | { kind: "port"; dir: Direction; from: number; to: number };

/** What the filter needs to know about a packet. */
export interface PacketInfo {
  /** EtherType of the network layer (after one VLAN tag). */
  ethertype?: number;
  ipVersion?: 4 | 6;
  /** Source address: 4 bytes for IPv4, 16 for IPv6 (views of the packet's bytes). */
  src?: Uint8Array;
  dst?: Uint8Array;
  /** IP protocol number: 6 tcp, 17 udp, 1 icmp, 58 icmp6. */
  proto?: number;
  sport?: number;
  dport?: number;
}

/** Fields for the kernel pre-filter; see {@linkcode kernelFilter}. */
export interface KernelFilter {
  /** IP protocol number (6 or 17). */
  proto?: number;
  /** Source or destination port. */
  port?: number;
  /** IPv4 source or destination address. */
  host4?: Uint8Array;
  /** IPv6 source or destination address. */
  host6?: Uint8Array;
}

const PROTOCOLS: ReadonlySet<string> = new Set([
  "tcp",
  "udp",
  "icmp",
  "icmp6",
  "ip",
  "ip6",
  "arp",
]);

/** Deep enough for any real filter, shallow enough that recursion cannot overflow. */
const MAX_DEPTH = 200;

interface Token {
  text: string;
  pos: number;
}

function tokenize(expr: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < expr.length) {
    const c = expr[i];
    if (/\s/.test(c)) {
      i++;
    } else if (c === "(" || c === ")") {
      tokens.push({ text: c, pos: i++ });
    } else if (c === "!") {
      tokens.push({ text: "!", pos: i++ });
    } else if (c === "&" || c === "|") {
      if (expr[i + 1] !== c) throw new FilterError(`unexpected '${c}' at ${i}`, i);
      tokens.push({ text: c + c, pos: i });
      i += 2;
    } else {
      const start = i;
      while (i < expr.length && !/[\s()!&|]/.test(expr[i])) i++;
      tokens.push({ text: expr.slice(start, i), pos: start });
    }
  }
  return tokens;
}

/** Parses a dotted-quad IPv4 address, or returns undefined. */
function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    if (!/^\d{1,3}$/.test(parts[i])) return undefined;
    const n = Number(parts[i]);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

/** Parses an IPv6 address (compressed `::` and a trailing dotted quad allowed). */
function parseIPv6(s: string): Uint8Array | undefined {
  if (!/^[0-9A-Fa-f:.]+$/.test(s)) return undefined;
  const halves = s.split("::");
  if (halves.length > 2) return undefined;
  const groups = (part: string): number[] | undefined => {
    if (part === "") return [];
    const out: number[] = [];
    const fields = part.split(":");
    for (let i = 0; i < fields.length; i++) {
      const f = fields[i];
      if (i === fields.length - 1 && f.includes(".")) {
        const v4 = parseIPv4(f);
        if (v4 === undefined) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (/^[0-9A-Fa-f]{1,4}$/.test(f)) {
        out.push(parseInt(f, 16));
      } else {
        return undefined;
      }
    }
    return out;
  };
  const head = groups(halves[0]);
  const tail = halves.length === 2 ? groups(halves[1]) : [];
  if (head === undefined || tail === undefined) return undefined;
  const words = halves.length === 2
    ? head.length + tail.length <= 7
      ? [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]
      : undefined
    : head;
  if (words === undefined || words.length !== 8) return undefined;
  const out = new Uint8Array(16);
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

const LOCALHOST4 = Uint8Array.of(127, 0, 0, 1);
const LOCALHOST6 = Uint8Array.of(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);

class Parser {
  #tokens: Token[];
  #i = 0;
  #end: number;
  #depth = 0;

  constructor(expr: string) {
    this.#tokens = tokenize(expr);
    this.#end = expr.length;
  }

  parse(): FilterNode {
    if (this.#tokens.length === 0) throw new FilterError("empty filter expression at 0", 0);
    const node = this.#or();
    const t = this.#peek();
    if (t !== undefined) {
      throw new FilterError(`expected 'and', 'or' or the end, got '${t.text}' at ${t.pos}`, t.pos);
    }
    return node;
  }

  #peek(): Token | undefined {
    return this.#tokens[this.#i];
  }

  #next(): Token | undefined {
    return this.#tokens[this.#i++];
  }

  /** Throws "expected X after 'prev', got 'tok' at N" for the token at the cursor. */
  #fail(expected: string, after: Token | undefined): never {
    const t = this.#peek();
    const got = t === undefined ? "end of expression" : `'${t.text}'`;
    const pos = t === undefined ? this.#end : t.pos;
    const where = after === undefined ? "" : ` after '${after.text}'`;
    throw new FilterError(`expected ${expected}${where}, got ${got} at ${pos}`, pos);
  }

  #or(): FilterNode {
    const operands = [this.#and()];
    for (let t = this.#peek(); t?.text === "or" || t?.text === "||"; t = this.#peek()) {
      this.#i++;
      operands.push(this.#and(t));
    }
    return operands.length === 1 ? operands[0] : { kind: "or", operands };
  }

  #and(after?: Token): FilterNode {
    const operands = [this.#unary(after)];
    for (let t = this.#peek(); t?.text === "and" || t?.text === "&&"; t = this.#peek()) {
      this.#i++;
      operands.push(this.#unary(t));
    }
    return operands.length === 1 ? operands[0] : { kind: "and", operands };
  }

  #unary(after?: Token): FilterNode {
    const t = this.#peek();
    if (t === undefined) this.#fail("a filter primitive", after);
    if (++this.#depth > MAX_DEPTH) {
      throw new FilterError(`filter nested too deeply at ${t.pos}`, t.pos);
    }
    try {
      if (t.text === "not" || t.text === "!") {
        this.#i++;
        return { kind: "not", operand: this.#unary(t) };
      }
      if (t.text === "(") {
        this.#i++;
        const inner = this.#or();
        if (this.#peek()?.text !== ")") this.#fail(`')' to close '(' at ${t.pos}`, undefined);
        this.#i++;
        return inner;
      }
      return this.#primitive(after);
    } finally {
      this.#depth--;
    }
  }

  #primitive(after?: Token): FilterNode {
    const t = this.#peek()!;
    const word = t.text.toLowerCase();
    if (PROTOCOLS.has(word)) {
      this.#i++;
      const proto: FilterNode = { kind: "proto", name: word as ProtocolName };
      // tcpdump's qualifier form: "tcp port 443" means "tcp and port 443".
      const q = this.#qualified(word);
      return q === undefined ? proto : { kind: "and", operands: [proto, q] };
    }
    const q = this.#qualified(undefined);
    if (q !== undefined) return q;
    return this.#fail("a filter primitive", after);
  }

  /**
   * Parses `[src|dst] host|net|port|portrange ARG` at the cursor, or returns
   * undefined when the cursor is not at one. After a protocol word, only
   * the kinds that make sense for it are taken.
   */
  #qualified(proto: string | undefined): FilterNode | undefined {
    const first = this.#peek();
    if (first === undefined) return undefined;
    let dir: Direction = "either";
    let kindTok = first;
    const lower = first.text.toLowerCase();
    if (lower === "src" || lower === "dst") {
      dir = lower;
      const k = this.#tokens[this.#i + 1];
      const kl = k?.text.toLowerCase();
      if (kl === "host" || kl === "net" || kl === "port" || kl === "portrange") {
        kindTok = k!;
      } else if (proto !== undefined) {
        return undefined;
      } else {
        // "src 10.0.0.1" is short for "src host 10.0.0.1", as in tcpdump.
        this.#i++;
        return { kind: "host", dir, addrs: this.#address(first, false) };
      }
    }
    const kind = kindTok.text.toLowerCase();
    const isPort = kind === "port" || kind === "portrange";
    const isAddr = kind === "host" || kind === "net";
    if (!isPort && !isAddr) return undefined;
    if (proto !== undefined) {
      if (isPort && proto !== "tcp" && proto !== "udp") return undefined;
      if (isAddr && proto !== "ip" && proto !== "ip6") return undefined;
    }
    if (kindTok !== first) this.#i++;
    this.#i++;
    if (kind === "host") return { kind: "host", dir, addrs: this.#address(kindTok, false) };
    if (kind === "net") return this.#net(kindTok, dir);
    if (kind === "port") {
      const n = this.#port(this.#peek()?.text);
      if (n === undefined) this.#fail("a port number", kindTok);
      this.#i++;
      return { kind: "port", dir, from: n, to: n };
    }
    const m = /^(\d+)-(\d+)$/.exec(this.#peek()?.text ?? "");
    const from = this.#port(m?.[1]);
    const to = this.#port(m?.[2]);
    if (from === undefined || to === undefined || from > to) {
      this.#fail("a port range like 8000-8080", kindTok);
    }
    this.#i++;
    return { kind: "port", dir, from, to };
  }

  #port(s: string | undefined): number | undefined {
    if (s === undefined || !/^\d{1,5}$/.test(s)) return undefined;
    const n = Number(s);
    return n <= 65535 ? n : undefined;
  }

  /** Parses the address at the cursor (and consumes it). */
  #address(after: Token, forNet: boolean): Uint8Array[] {
    const t = this.#peek();
    const s = t?.text ?? "";
    let addrs: Uint8Array[] | undefined;
    if (s.toLowerCase() === "localhost" && !forNet) addrs = [LOCALHOST4, LOCALHOST6];
    else {
      const a = parseIPv4(s) ?? parseIPv6(s);
      if (a !== undefined) addrs = [a];
    }
    if (addrs === undefined) this.#fail("an IPv4 or IPv6 address", after);
    this.#i++;
    return addrs;
  }

  #net(after: Token, dir: Direction): FilterNode {
    const t = this.#peek();
    const [addrText, prefixText, extra] = (t?.text ?? "").split("/");
    const addr = parseIPv4(addrText) ?? parseIPv6(addrText);
    const bits = addr === undefined ? 0 : addr.length * 8;
    const prefix = prefixText === undefined
      ? bits
      : /^\d{1,3}$/.test(prefixText)
      ? Number(prefixText)
      : -1;
    if (addr === undefined || extra !== undefined || prefix < 0 || prefix > bits) {
      this.#fail("a network like 10.0.0.0/8 or fd00::/8", after);
    }
    for (let bit = prefix; bit < bits; bit++) {
      if (addr[bit >> 3] & (0x80 >> (bit & 7))) {
        throw new FilterError(`non-network bits set in '${t!.text}' at ${t!.pos}`, t!.pos);
      }
    }
    this.#i++;
    return { kind: "net", dir, addr, prefix };
  }
}

/**
 * Parses a filter expression such as `tcp and (port 443 or host ::1)`.
 * Throws {@linkcode FilterError} naming the bad token and its position.
 */
export function parseFilter(expr: string): FilterNode {
  return new Parser(expr).parse();
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function inNet(a: Uint8Array | undefined, net: Uint8Array, prefix: number): boolean {
  if (a === undefined || a.length !== net.length) return false;
  const whole = prefix >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== net[i]) return false;
  const rest = prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole] & mask) === (net[whole] & mask);
}

/** Applies `test` to the source, the destination, or either. */
function byDir<T>(
  dir: Direction,
  test: (v: T | undefined) => boolean,
  src: T | undefined,
  dst: T | undefined,
): boolean {
  if (dir === "src") return test(src);
  if (dir === "dst") return test(dst);
  return test(src) || test(dst);
}

/** True when the packet satisfies the filter (unknown fields never match). */
export function matchPacket(node: FilterNode, pkt: PacketInfo): boolean {
  switch (node.kind) {
    case "and":
      return node.operands.every((n) => matchPacket(n, pkt));
    case "or":
      return node.operands.some((n) => matchPacket(n, pkt));
    case "not":
      return !matchPacket(node.operand, pkt);
    case "proto":
      switch (node.name) {
        case "ip":
          return pkt.ipVersion === 4;
        case "ip6":
          return pkt.ipVersion === 6;
        case "arp":
          return pkt.ethertype === 0x0806;
        case "tcp":
          return pkt.proto === 6;
        case "udp":
          return pkt.proto === 17;
        case "icmp":
          return pkt.proto === 1 && pkt.ipVersion !== 6;
        case "icmp6":
          return pkt.proto === 58 && pkt.ipVersion !== 4;
      }
      return false;
    case "host":
      return byDir(
        node.dir,
        (a: Uint8Array | undefined) => a !== undefined && node.addrs.some((h) => sameBytes(a, h)),
        pkt.src,
        pkt.dst,
      );
    case "net":
      return byDir(
        node.dir,
        (a: Uint8Array | undefined) => inNet(a, node.addr, node.prefix),
        pkt.src,
        pkt.dst,
      );
    case "port":
      return byDir(
        node.dir,
        (p: number | undefined) => p !== undefined && p >= node.from && p <= node.to,
        pkt.sport,
        pkt.dport,
      );
  }
}

/** Link types {@linkcode parsePacket} understands. */
const LINKTYPE_ETHERNET = 1;
const LINKTYPE_RAW = 101;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_IPV4 = 228;
const LINKTYPE_IPV6 = 229;
const LINKTYPE_LINUX_SLL2 = 276;

/**
 * Decodes the headers the filter looks at from a captured frame: Ethernet
 * (one 802.1Q/802.1ad tag), Linux cooked (SLL, SLL2) or raw IP (101, 228,
 * 229), then IPv4/IPv6 and TCP/UDP ports. Never throws: a short or odd
 * packet yields whatever was decoded before the bytes ran out.
 */
export function parsePacket(data: Uint8Array, linkType: number): PacketInfo {
  const info: PacketInfo = {};
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let off: number;
  if (linkType === LINKTYPE_ETHERNET) {
    if (data.length < 14) return info;
    let type = v.getUint16(12);
    off = 14;
    if (type === 0x8100 || type === 0x88a8) {
      if (data.length < 18) return info;
      type = v.getUint16(16);
      off = 18;
    }
    info.ethertype = type;
  } else if (linkType === LINKTYPE_LINUX_SLL) {
    if (data.length < 16) return info;
    info.ethertype = v.getUint16(14);
    off = 16;
  } else if (linkType === LINKTYPE_LINUX_SLL2) {
    if (data.length < 20) return info;
    info.ethertype = v.getUint16(0);
    off = 20;
  } else if (
    linkType === LINKTYPE_RAW || linkType === LINKTYPE_IPV4 || linkType === LINKTYPE_IPV6
  ) {
    if (data.length < 1) return info;
    const version = data[0] >> 4;
    if (version === 4) info.ethertype = 0x0800;
    else if (version === 6) info.ethertype = 0x86dd;
    else return info;
    off = 0;
  } else {
    return info;
  }
  if (info.ethertype === 0x0800) parseIPv4Packet(data, v, off, info);
  else if (info.ethertype === 0x86dd) parseIPv6Packet(data, v, off, info);
  return info;
}

function parseIPv4Packet(data: Uint8Array, v: DataView, off: number, info: PacketInfo): void {
  if (data.length - off < 20 || data[off] >> 4 !== 4) return;
  const ihl = (data[off] & 0x0f) * 4;
  if (ihl < 20 || data.length - off < ihl) return;
  info.ipVersion = 4;
  info.proto = data[off + 9];
  info.src = data.subarray(off + 12, off + 16);
  info.dst = data.subarray(off + 16, off + 20);
  // Only the first fragment carries the transport header.
  if ((v.getUint16(off + 6) & 0x1fff) !== 0) return;
  const totalLength = v.getUint16(off + 2);
  // Ethernet padding may follow a short datagram; a bogus total length is ignored.
  const end = totalLength >= ihl ? Math.min(data.length, off + totalLength) : data.length;
  parsePorts(v, off + ihl, end, info);
}

function parseIPv6Packet(data: Uint8Array, v: DataView, off: number, info: PacketInfo): void {
  if (data.length - off < 40 || data[off] >> 4 !== 6) return;
  info.ipVersion = 6;
  info.src = data.subarray(off + 8, off + 24);
  info.dst = data.subarray(off + 24, off + 40);
  const end = Math.min(data.length, off + 40 + v.getUint16(off + 4));
  let next = data[off + 6];
  off += 40;
  // Each extension header is at least 8 bytes long, so this loop ends.
  for (;;) {
    if (next === 0 || next === 43 || next === 60) {
      if (end - off < 8) return;
      next = data[off];
      off += (data[off + 1] + 1) * 8;
    } else if (next === 51) { // AH counts its length in 4-byte units, minus 2
      if (end - off < 8) return;
      next = data[off];
      off += (data[off + 1] + 2) * 4;
    } else if (next === 44) {
      if (end - off < 8) return;
      const fragmentOffset = v.getUint16(off + 2) >> 3;
      next = data[off];
      off += 8;
      if (fragmentOffset !== 0) {
        info.proto = next;
        return;
      }
    } else {
      break;
    }
  }
  info.proto = next;
  parsePorts(v, off, end, info);
}

function parsePorts(v: DataView, off: number, end: number, info: PacketInfo): void {
  if (info.proto !== 6 && info.proto !== 17 && info.proto !== 132) return;
  if (end - off < 4) return;
  info.sport = v.getUint16(off);
  info.dport = v.getUint16(off + 2);
}

/**
 * Reduces a filter to what a simple kernel pre-filter can check, when the
 * whole expression is a conjunction of at most one of each: `tcp` or `udp`,
 * `port N`, `host A` (either direction; a `src`/`dst` qualifier is widened,
 * which is safe because user space always applies {@linkcode matchPacket}
 * too). A kernel keeps a packet when every field given matches: `proto`
 * the IP protocol, `port` its source or destination port, and `host4` /
 * `host6` its source or destination address for that IP version (if only
 * one is given, packets of the other version cannot match). Returns
 * undefined for anything else, and the kernel should then pass everything.
 */
export function kernelFilter(node: FilterNode): KernelFilter | undefined {
  const leaves: FilterNode[] = [];
  const flatten = (n: FilterNode) => {
    if (n.kind === "and") n.operands.forEach(flatten);
    else leaves.push(n);
  };
  flatten(node);
  const out: KernelFilter = {};
  let sawHost = false;
  for (const leaf of leaves) {
    if (leaf.kind === "proto" && (leaf.name === "tcp" || leaf.name === "udp")) {
      if (out.proto !== undefined) return undefined;
      out.proto = leaf.name === "tcp" ? 6 : 17;
    } else if (leaf.kind === "port" && leaf.from === leaf.to) {
      if (out.port !== undefined) return undefined;
      out.port = leaf.from;
    } else if (leaf.kind === "host") {
      if (sawHost) return undefined;
      sawHost = true;
      for (const a of leaf.addrs) {
        const key = a.length === 4 ? "host4" : "host6";
        // Two addresses of one family would need an "or" the kernel side lacks.
        if (out[key] !== undefined) return undefined;
        out[key] = a;
      }
    } else {
      return undefined;
    }
  }
  return out;
}
