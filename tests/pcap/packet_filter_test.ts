import assert from "node:assert/strict";
import {
  FilterError,
  kernelFilter,
  matchPacket,
  type PacketInfo,
  parseFilter,
  parsePacket,
} from "../../lib/pcap/packet_filter.ts";
import { mulberry32 } from "../_random.ts";

const u16 = (n: number) => [n >> 8, n & 255];

/** An IPv6 address as bytes, from its eight 16-bit groups. */
function v6(...groups: number[]): number[] {
  return groups.flatMap(u16);
}

function transport(proto: number, sport: number, dport: number): number[] {
  // 20 bytes for TCP, 8 for UDP; only the ports matter here.
  return [...u16(sport), ...u16(dport), ...new Array(proto === 6 ? 16 : 4).fill(0)];
}

function ipv4(src: number[], dst: number[], proto: number, payload: number[], frag = 0): number[] {
  const total = 20 + payload.length;
  return [0x45, 0, ...u16(total), 0, 0, ...u16(frag), 64, proto, 0, 0, ...src, ...dst, ...payload];
}

function ipv6(src: number[], dst: number[], next: number, payload: number[]): number[] {
  return [0x60, 0, 0, 0, ...u16(payload.length), next, 64, ...src, ...dst, ...payload];
}

function ether(type: number, payload: number[], vlan = false): Uint8Array {
  const macs = new Array(12).fill(0xaa);
  const tag = vlan ? [0x81, 0x00, 0x00, 0x05] : [];
  return Uint8Array.from([...macs, ...tag, ...u16(type), ...payload]);
}

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
  udp4: parsePacket(ether(0x0800, ipv4(LO4, LO4, 17, transport(17, 5353, 53)), true), 1),
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
  frag4: parsePacket(Uint8Array.from(ipv4(A4, B4, 17, transport(17, 1, 443), 0x0010)), 101),
  arp: parsePacket(ether(0x0806, new Array(28).fill(0)), 1),
};

Deno.test("filter: parsePacket decodes the synthetic packets", () => {
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

Deno.test("filter: expressions match the expected packets", () => {
  const table: [string, string[]][] = [
    ["tcp", ["tcp4", "tcp6"]],
    ["udp", ["udp4", "frag4"]],
    ["icmp", ["icmp4"]],
    ["icmp6", ["icmp6"]],
    ["ip", ["tcp4", "udp4", "icmp4", "frag4"]],
    ["ip6", ["tcp6", "icmp6"]],
    ["arp", ["arp"]],
    ["port 443", ["tcp4"]],
    ["tcp port 443", ["tcp4"]],
    ["udp port 443", []],
    ["src port 40000", ["tcp4"]],
    ["dst port 40000", []],
    ["portrange 50-8080", ["tcp4", "udp4", "tcp6"]],
    ["portrange 444-8079", ["udp4"]],
    ["dst portrange 50-60", ["udp4"]],
    ["host 10.0.0.1", ["tcp4", "icmp4", "frag4"]],
    ["dst host 10.0.0.1", []],
    ["src 10.0.0.1", ["tcp4", "icmp4", "frag4"]],
    ["host ::1", ["tcp6", "icmp6"]],
    ["host 2001:DB8:0:0::1", ["tcp6", "icmp6"]],
    ["src host ::1", ["icmp6"]],
    ["host localhost", ["udp4", "tcp6", "icmp6"]],
    ["host ::ffff:10.0.0.1", []],
    ["net 192.168.0.0/16", ["tcp4", "icmp4", "frag4"]],
    ["net 192.168.1.16/28", ["tcp4", "icmp4", "frag4"]],
    ["net 192.168.1.0/28", []],
    ["src net 127.0.0.0/8", ["udp4"]],
    ["net 2001:db8::/32", ["tcp6", "icmp6"]],
    ["net ::/0", ["tcp6", "icmp6"]],
    ["net 0.0.0.0/0", ["tcp4", "udp4", "icmp4", "frag4"]],
    ["ip and not tcp", ["udp4", "icmp4", "frag4"]],
    ["!ip && !ip6", ["arp"]],
    ["tcp or udp", ["tcp4", "udp4", "tcp6", "frag4"]],
    ["tcp || icmp6 and host ::1", ["tcp4", "tcp6", "icmp6"]],
    ["(tcp or icmp6) and host ::1", ["tcp6", "icmp6"]],
    ["not (port 443 or port 53) and (tcp||udp)", ["tcp6", "frag4"]],
    ["not not arp", ["arp"]],
    ["ip6 host ::1 and tcp", ["tcp6"]],
  ];
  for (const [expr, expected] of table) {
    const node = parseFilter(expr);
    const got = Object.keys(PACKETS).filter((name) => matchPacket(node, PACKETS[name]));
    assert.deepEqual(got.sort(), [...expected].sort(), expr);
  }
});

Deno.test("filter: errors name the bad token and its position", () => {
  const cases: [string, RegExp, number][] = [
    ["port", /^expected a port number after 'port', got end of expression at 4$/, 4],
    ["tcp port x", /expected a port number after 'port', got 'x' at 9/, 9],
    ["port 65536", /got '65536' at 5/, 5],
    ["host 999.1.1.1", /expected an IPv4 or IPv6 address after 'host', got '999.1.1.1' at 5/, 5],
    ["host 1::2::3", /got '1::2::3'/, 5],
    ["host 1:2:3:4:5:6:7:8:9", /address/, 5],
    ["tcp and", /expected a filter primitive after 'and', got end of expression at 7/, 7],
    ["tcp or ", /after 'or', got end of expression at 7/, 7],
    ["(tcp", /expected '\)' to close '\(' at 0, got end of expression at 4/, 4],
    ["tcp)", /got '\)' at 3/, 3],
    ["tcp udp", /expected 'and', 'or' or the end, got 'udp' at 4/, 4],
    ["", /empty/, 0],
    ["foo", /expected a filter primitive, got 'foo' at 0/, 0],
    ["portrange 90-80", /port range/, 10],
    ["net 10.0.0.1/8", /non-network bits set in '10.0.0.1\/8' at 4/, 4],
    ["net 10.0.0.0/33", /network/, 4],
    ["tcp & udp", /unexpected '&' at 4/, 4],
    ["not", /after 'not', got end of expression at 3/, 3],
    ["src", /address after 'src'/, 3],
  ];
  for (const [expr, re, pos] of cases) {
    assert.throws(() => parseFilter(expr), (e) => {
      assert.ok(e instanceof FilterError, expr);
      assert.ok(e instanceof SyntaxError);
      assert.match(e.message, re, expr);
      assert.equal(e.position, pos, expr);
      return true;
    });
  }
  // Deep nesting is an error, not a stack overflow.
  assert.throws(() => parseFilter("(".repeat(100000) + "tcp"), FilterError);
  assert.throws(() => parseFilter("! ".repeat(100000) + "tcp"), FilterError);
  // Long flat chains are fine.
  const chain = parseFilter(Array(50000).fill("tcp").join(" and "));
  assert.ok(matchPacket(chain, PACKETS.tcp4));
});

Deno.test("filter: kernelFilter extracts simple conjunctions only", () => {
  assert.deepEqual(kernelFilter(parseFilter("tcp port 443")), { proto: 6, port: 443 });
  assert.deepEqual(kernelFilter(parseFilter("host 127.0.0.1 and tcp")), {
    proto: 6,
    host4: Uint8Array.of(127, 0, 0, 1),
  });
  assert.deepEqual(kernelFilter(parseFilter("udp && dst port 53 && src host ::1")), {
    proto: 17,
    port: 53,
    host6: Uint8Array.from(LO6),
  });
  assert.deepEqual(kernelFilter(parseFilter("host localhost")), {
    host4: Uint8Array.of(127, 0, 0, 1),
    host6: Uint8Array.from(LO6),
  });
  assert.deepEqual(kernelFilter(parseFilter("tcp")), { proto: 6 });
  for (
    const expr of [
      "port 80 or port 443",
      "not tcp",
      "tcp and udp",
      "port 1 and port 2",
      "host ::1 and host ::2",
      "portrange 1-2",
      "icmp",
      "net 10.0.0.0/8",
      "tcp and (port 1 or port 2)",
    ]
  ) {
    assert.equal(kernelFilter(parseFilter(expr)), undefined, expr);
  }
});

Deno.test("filter: parsePacket never throws on random or mutated input", () => {
  const rand = mulberry32(0x5eed);
  const seeds: [Uint8Array, number][] = [
    [ether(0x0800, ipv4(A4, B4, 6, transport(6, 1, 2))), 1],
    [ether(0x86dd, ipv6(A6, LO6, 0, [44, 0, 0, 0, 0, 0, 0, 0, ...transport(17, 1, 2)])), 1],
    [ether(0x0800, ipv4(A4, B4, 17, transport(17, 1, 2)), true), 1],
    [Uint8Array.from(ipv6(A6, LO6, 43, [60, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0])), 101],
  ];
  const filter = parseFilter("(tcp or udp) and not host ::1 or net 10.0.0.0/8 and port 1");
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
    matchPacket(filter, info);
    if (info.src !== undefined) assert.ok(info.src.length === 4 || info.src.length === 16);
  }
});
