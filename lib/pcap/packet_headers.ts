/**
 * The addresses and ports of a captured frame, which the pcapng writer
 * needs to name the process a packet belongs to (its comment). Which
 * packets are captured is libpcap's business (ffi/packet_filter.c), not
 * this file's.
 * @module
 */

/** Addresses and ports of a packet. */
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

/** Link types {@linkcode parsePacket} understands. */
export const LINKTYPE_ETHERNET = 1;
export const LINKTYPE_RAW = 101;
const LINKTYPE_LINUX_SLL = 113;
const LINKTYPE_IPV4 = 228;
const LINKTYPE_IPV6 = 229;
const LINKTYPE_LINUX_SLL2 = 276;

/**
 * Decodes the headers of a captured frame: Ethernet
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
