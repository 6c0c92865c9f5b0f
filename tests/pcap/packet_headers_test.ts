/**
 * parsePacket: the addresses and ports pcapng comments are made from.
 * @module
 */
import assert from "node:assert/strict";
import { type PacketInfo, parsePacket } from "../../lib/pcap/packet_headers.ts";
import { mulberry32 } from "../_random.ts";
import { ether, ipv4, ipv6, transport, v6 } from "./_frames.ts";

const A4 = [10, 0, 0, 1];
const B4 = [192, 168, 1, 20];
const LO4 = [127, 0, 0, 1];
const A6 = v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const LO6 = v6(0, 0, 0, 0, 0, 0, 0, 1);

/** Named synthetic packets, decoded with parsePacket as a capture would. */
const PACKETS: Record<string, PacketInfo> = {
  // 10.0.0.1:40000 → 192.168.1.20:443 TCP over Ethernet.
  tcp4: parsePacket(ether(0x0800, ipv4(A4, B4, 6, transport(6, 40000, 443))), 1),
  // 127.0.0.1:5353 → 127.0.0.1:53 UDP over Ethernet with an 802.1Q VLAN tag.
  udp4: parsePacket(ether(0x0800, ipv4(LO4, LO4, 17, transport(17, 5353, 53)), { vlan: 5 }), 1),
  // 2001:db8::1:8080 → ::1:55000 TCP, raw IP, behind a hop-by-hop options header.
  tcp6: parsePacket(
    Uint8Array.from(ipv6(A6, LO6, 0, [6, 0, 0, 0, 0, 0, 0, 0, ...transport(6, 8080, 55000)])),
    101,
  ),
  // ::1 → 2001:db8::1 ICMPv6 echo over Ethernet.
  icmp6: parsePacket(ether(0x86dd, ipv6(LO6, A6, 58, [128, 0, 0, 0])), 1),
  // 10.0.0.1 → 192.168.1.20 ICMP, raw IP.
  icmp4: parsePacket(Uint8Array.from(ipv4(A4, B4, 1, [8, 0, 0, 0])), 101),
  // A later IPv4 fragment of a UDP datagram: no ports.
  frag4: parsePacket(
    Uint8Array.from(ipv4(A4, B4, 17, transport(17, 1, 443), { frag: 0x0010 })),
    101,
  ),
  arp: parsePacket(ether(0x0806, new Array(28).fill(0)), 1),
};

Deno.test("packet headers: parsePacket decodes the synthetic packets", () => {
  const { tcp4, udp4, tcp6, icmp6, frag4, arp } = PACKETS;
  assert.deepEqual(tcp4, {
    ethertype: 0x0800,
    ipVersion: 4,
    proto: 6,
    src: Uint8Array.from(A4),
    dst: Uint8Array.from(B4),
    sport: 40000,
    dport: 443,
  });
  assert.deepEqual([udp4.ethertype, udp4.proto, udp4.sport, udp4.dport], [0x0800, 17, 5353, 53]);
  assert.deepEqual([tcp6.ipVersion, tcp6.proto, tcp6.sport, tcp6.dport], [6, 6, 8080, 55000]);
  assert.deepEqual(tcp6.src, Uint8Array.from(A6));
  assert.deepEqual([icmp6.ethertype, icmp6.proto, icmp6.sport], [0x86dd, 58, undefined]);
  assert.deepEqual([frag4.proto, frag4.sport, frag4.dport], [17, undefined, undefined]);
  assert.deepEqual(arp, { ethertype: 0x0806 });
});

Deno.test("packet headers: parsePacket never throws on random or mutated input", () => {
  const rand = mulberry32(0x5eed);
  const seeds: [Uint8Array, number][] = [
    [ether(0x0800, ipv4(A4, B4, 6, transport(6, 1, 2))), 1],
    [ether(0x86dd, ipv6(A6, LO6, 0, [44, 0, 0, 0, 0, 0, 0, 0, ...transport(17, 1, 2)])), 1],
    [ether(0x0800, ipv4(A4, B4, 17, transport(17, 1, 2)), { vlan: 5 }), 1],
    [Uint8Array.from(ipv6(A6, LO6, 43, [60, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0])), 101],
  ];
  for (let i = 0; i < 2000; i++) {
    let data: Uint8Array;
    let linkType: number;
    if (i % 4 === 0) {
      data = Uint8Array.from({ length: Math.floor(rand() * 80) }, () => Math.floor(rand() * 256));
      linkType = [1, 101, 113, 276, 228, 229, 0][Math.floor(rand() * 7)];
    } else {
      const [seed, lt] = seeds[Math.floor(rand() * seeds.length)];
      data = seed.slice(0, Math.floor(rand() * (seed.length + 1)));
      for (let e = 0; e < 3 && data.length > 0; e++) {
        data[Math.floor(rand() * data.length)] = rand() < 0.5 ? Math.floor(rand() * 256) : 0;
      }
      linkType = lt;
    }
    const info = parsePacket(data, linkType);
    if (info.src !== undefined) assert.ok(info.src.length === 4 || info.src.length === 16);
  }
});
