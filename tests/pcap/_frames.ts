/**
 * Crafted frames for the packet tests: Ethernet (optionally VLAN-tagged),
 * IPv4, IPv6 and transport headers as byte arrays. Checksums stay zero:
 * neither ecap nor tcpdump's filters look at them.
 * @module
 */

export const u16 = (n: number) => [n >> 8, n & 255];
export const u32be = (n: number) => [...u16(n >>> 16), ...u16(n & 0xffff)];

/** An IPv6 address as bytes, from its eight 16-bit groups. */
export function v6(...groups: number[]): number[] {
  return groups.flatMap(u16);
}

/** A TCP (20 bytes, with flags) or UDP/SCTP (8 bytes) header, then payload. */
export function transport(
  proto: number,
  sport: number,
  dport: number,
  { flags = 0x10, payload = [] as number[] } = {},
): number[] {
  if (proto !== 6) {
    return [...u16(sport), ...u16(dport), ...u16(8 + payload.length), 0, 0, ...payload];
  }
  return [
    ...u16(sport),
    ...u16(dport),
    0,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0x50,
    flags,
    0xff,
    0xff,
    0,
    0,
    0,
    0,
    ...payload,
  ];
}

/** An IPv4 datagram; frag is the flags/fragment-offset field, options pad the header. */
export function ipv4(
  src: number[],
  dst: number[],
  proto: number,
  payload: number[],
  { frag = 0, options = [] as number[], ttl = 64, id = 0 } = {},
): number[] {
  const ihl = 5 + options.length / 4;
  const total = ihl * 4 + payload.length;
  return [
    0x40 | ihl,
    0,
    ...u16(total),
    ...u16(id),
    ...u16(frag),
    ttl,
    proto,
    0,
    0,
    ...src,
    ...dst,
    ...options,
    ...payload,
  ];
}

export function ipv6(src: number[], dst: number[], next: number, payload: number[]): number[] {
  return [0x60, 0, 0, 0, ...u16(payload.length), next, 64, ...src, ...dst, ...payload];
}

/** An Ethernet frame; vlan adds an 802.1Q tag with that VLAN id. */
export function ether(
  type: number,
  payload: number[],
  { vlan, dst = [0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa], src = [0xaa, 0xaa, 0xaa, 0xaa, 0xaa, 0xaa] }:
    {
      vlan?: number;
      dst?: number[];
      src?: number[];
    } = {},
): Uint8Array {
  const tag = vlan !== undefined ? [0x81, 0x00, ...u16(vlan)] : [];
  return Uint8Array.from([...dst, ...src, ...tag, ...u16(type), ...payload]);
}
