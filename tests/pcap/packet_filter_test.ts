/**
 * -m pcap's packet filters against tcpdump's: crafted frames are written to
 * pcap files (Ethernet and raw IP) that `tcpdump -r FILE EXPR` reads, and the
 * same frames run through ecap's filter program in the kernel
 * (BPF_PROG_TEST_RUN) in front of the real capture program; a frame is kept
 * by ecap when it reaches the ring buffer. Every expression must keep the same
 * frames on both sides, or be refused by both.
 * @module
 */
import assert from "node:assert/strict";
import tlsObject from "../../build/tls.bpf.o" with { type: "bytes" };
import { BpfHandle, numCpus, type PacketFilter, packetFilterError } from "../../lib/core/ffi.ts";
import { bpfTest } from "../_helpers.ts";
import { ether, ipv4, ipv6, transport, u16, v6 } from "./_frames.ts";

const A4 = [10, 0, 0, 1];
const B4 = [192, 168, 1, 20];
const C4 = [10, 1, 2, 3];
const DNS4 = [8, 8, 8, 8];
const LL1 = v6(0xfe80, 0, 0, 0, 0, 0, 0, 1);
const LL2 = v6(0xfe80, 0, 0, 0, 0, 0, 0, 2);
const DOC1 = v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DOC2 = v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);
const LO6 = v6(0, 0, 0, 0, 0, 0, 0, 1);
const MDNS6 = v6(0xff02, 0, 0, 0, 0, 0, 0, 0xfb);
const SYN = 0x02, ACK = 0x10, PSH = 0x08;
const GET = [...new TextEncoder().encode("GET / HTTP/1.1\r\n")];
const MAC1 = [0x02, 0, 0, 0, 0, 1];
const BROADCAST = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/** IP packets, each also sent over Ethernet (and, for some, VLAN-tagged). */
const IP_PACKETS: { name: string; ip: number[] }[] = [
  { name: "tcp4 syn 443", ip: ipv4(A4, B4, 6, transport(6, 443, 51000, { flags: SYN })) },
  { name: "tcp4 syn-ack", ip: ipv4(B4, A4, 6, transport(6, 51000, 443, { flags: SYN | ACK })) },
  {
    name: "tcp4 GET 80",
    ip: ipv4(C4, A4, 6, transport(6, 40000, 80, { flags: PSH | ACK, payload: GET })),
  },
  {
    name: "udp4 dns query",
    ip: ipv4(B4, DNS4, 17, transport(17, 5353, 53, { payload: [1, 2, 3, 4] })),
  },
  { name: "udp4 dns answer", ip: ipv4(A4, B4, 17, transport(17, 53, 5353)) },
  { name: "icmp4 echo", ip: ipv4(A4, B4, 1, [8, 0, 0, 0, 0, 1, 0, 1]) },
  { name: "gre4", ip: ipv4([172, 16, 0, 1], [172, 16, 0, 2], 47, [0, 0, 0x08, 0x00]) },
  {
    name: "udp4 later fragment",
    ip: ipv4(A4, B4, 17, transport(17, 53, 53), { frag: 0x0010, id: 7 }),
  },
  {
    name: "tcp4 with options",
    ip: ipv4(A4, B4, 6, transport(6, 443, 52000), { options: [1, 1, 1, 0] }),
  },
  { name: "tcp4 ttl 1", ip: ipv4(C4, B4, 6, transport(6, 33000, 8443), { ttl: 1 }) },
  {
    name: "tcp4 long 8443",
    ip: ipv4(A4, B4, 6, transport(6, 40001, 8443, { payload: new Array(200).fill(0x41) })),
  },
  {
    name: "udp4 multicast",
    ip: ipv4(B4, [224, 0, 0, 251], 17, transport(17, 5353, 5353)),
  },
  {
    name: "udp4 broadcast",
    ip: ipv4(A4, [10, 0, 0, 255], 17, transport(17, 68, 67)),
  },
  { name: "sctp4", ip: ipv4(A4, B4, 132, transport(132, 3868, 3868)) },
  { name: "tcp6 loopback", ip: ipv6(LO6, LO6, 6, transport(6, 50000, 8443, { flags: SYN })) },
  { name: "tcp6 link-local 443", ip: ipv6(LL1, LL2, 6, transport(6, 443, 50001)) },
  { name: "udp6 multicast", ip: ipv6(DOC1, MDNS6, 17, transport(17, 5353, 5353)) },
  { name: "icmp6 echo", ip: ipv6(LL1, LL2, 58, [128, 0, 0, 0, 0, 1, 0, 1]) },
  {
    name: "tcp6 behind hop-by-hop",
    ip: ipv6(DOC1, DOC2, 0, [6, 0, 1, 4, 0, 0, 0, 0, ...transport(6, 443, 50002)]),
  },
  {
    name: "udp6 behind a fragment header",
    ip: ipv6(DOC1, DOC2, 44, [17, 0, 0, 0, 0, 0, 0, 9, ...transport(17, 53, 5353)]),
  },
];

const ETHERNET: { name: string; frame: Uint8Array }[] = [
  ...IP_PACKETS.map(({ name, ip }) => ({
    name,
    frame: ether(ip[0] >> 4 === 4 ? 0x0800 : 0x86dd, ip, { src: MAC1 }),
  })),
  { name: "vlan 5 tcp4", frame: ether(0x0800, IP_PACKETS[0].ip, { vlan: 5 }) },
  { name: "vlan 7 udp6", frame: ether(0x86dd, IP_PACKETS[16].ip, { vlan: 7 }) },
  {
    name: "arp who-has 10.0.0.1",
    // request: Ethernet/IPv4, sender 192.168.1.20 (MAC1), target 10.0.0.1
    frame: ether(0x0806, [
      ...u16(1),
      ...u16(0x0800),
      6,
      4,
      ...u16(1),
      ...MAC1,
      ...B4,
      ...new Array(6).fill(0),
      ...A4,
    ], {
      dst: BROADCAST,
      src: MAC1,
    }),
  },
  { name: "udp4 to broadcast MAC", frame: ether(0x0800, IP_PACKETS[12].ip, { dst: BROADCAST }) },
  {
    // the IPv4 header says 40 bytes follow; the frame ends before the ports
    name: "tcp4 cut before the ports",
    frame: ether(0x0800, ipv4(A4, B4, 6, transport(6, 80, 80)).slice(0, 20)),
  },
  { name: "ipx", frame: ether(0x8137, new Array(30).fill(0xff)) },
];

const RAW = IP_PACKETS.map(({ name, ip }) => ({ name, frame: Uint8Array.from(ip) }));

/** At least the 50 the issue asks for; each is tried on both link types. */
const EXPRESSIONS = [
  "tcp",
  "udp",
  "icmp",
  "icmp6",
  "ip",
  "ip6",
  "arp",
  "sctp",
  "port 443",
  "tcp port 443",
  "udp port 53",
  "port 53 or port 443 and host 10.0.0.1",
  "port 80 or 443",
  "host 10.0.0.1 or 192.168.1.20",
  "net 10",
  "net 10.0.0.0 mask 255.0.0.0",
  "net 192.168.1.0/24",
  "src host 10.0.0.1",
  "dst host 10.0.0.1",
  "src port 443",
  "dst port 443",
  "src or dst port 53",
  "portrange 1-1024",
  "tcp[tcpflags] & tcp-syn != 0",
  "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
  "tcp[13] = 0x12",
  "greater 100",
  "less 60",
  "len > 60",
  "ether host aa:aa:aa:aa:aa:aa",
  "ether src 02:00:00:00:00:01",
  "ether broadcast",
  "ether multicast",
  "ether proto 0x0806",
  "ether[0] & 1 != 0",
  "vlan",
  "vlan 5",
  "vlan and host 10.0.0.1",
  "vlan and udp port 5353",
  "ip proto 47",
  "port https",
  "port domain",
  "not port 80",
  "not (tcp or udp)",
  "host ::1",
  "ip6 host fe80::1",
  "net fe80::/10",
  "ip6 and tcp",
  "ip6 proto 58",
  "ip6 protochain 6",
  "icmp[icmptype] == icmp-echo",
  "icmp6[icmp6type] == icmp6-echo",
  "ip[8] < 64",
  "ip[6:2] & 0x1fff != 0",
  "ip[0] & 0xf != 5",
  "udp and not port 53",
  "(tcp or udp) and not host 10.0.0.1",
  "arp host 10.0.0.1",
  "tcp and dst port 8443 and src net 10.0.0.0/8",
  "ip and ip[9] == 6 and tcp[2:2] == 443",
  "tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420",
  "ip[2:2] / 2 > 30",
  "ip[2:2] % 7 == 3",
  "tcp and (ip[2:2] - ((ip[0]&0xf)<<2) - ((tcp[12]&0xf0)>>2)) != 0",
  "udp[8:4] = 0x01020304",
  "ip multicast",
  "ip6 multicast",
  "ip broadcast",
  "icmp or icmp6",
  "portrange 5000-6000 and not ip6",
  "tcp port 443 and ether src 02:00:00:00:00:01",
  "not ip and not ip6",
  "tcp port 99999",
  "hots 10.0.0.1",
];

/** A classic pcap file (tcpdump reads it); frame i is stamped 1000 + i seconds. */
function pcapFile(linkType: number, frames: Uint8Array[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const header = new DataView(new ArrayBuffer(24));
  header.setUint32(0, 0xa1b2c3d4, true);
  header.setUint16(4, 2, true);
  header.setUint16(6, 4, true);
  header.setUint32(16, 262144, true);
  header.setUint32(20, linkType, true);
  parts.push(new Uint8Array(header.buffer));
  frames.forEach((f, i) => {
    const rec = new DataView(new ArrayBuffer(16));
    rec.setUint32(0, 1000 + i, true);
    rec.setUint32(8, f.length, true);
    rec.setUint32(12, f.length, true);
    parts.push(new Uint8Array(rec.buffer), f);
  });
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/** Indices of the frames tcpdump keeps, or its complaint. */
async function tcpdumpKeeps(file: string, expr: string): Promise<number[] | string> {
  const out = await new Deno.Command("tcpdump", {
    args: ["-r", file, "-n", "-tt", expr],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) return new TextDecoder().decode(out.stderr).trim();
  return [...new TextDecoder().decode(out.stdout).matchAll(/^(\d+)\.000000 /gm)].map((m) =>
    Number(m[1]) - 1000
  );
}

/** Indices of the frames that reach ecap's ring buffer behind the filter, or the error. */
function ecapKeeps(
  handle: BpfHandle,
  filter: PacketFilter,
  frames: Uint8Array[],
  linkOffset: number,
): number[] | string {
  const buf = new Uint8Array(1 << 20);
  const kept: number[] = [];
  for (const [i, frame] of frames.entries()) {
    // the test run needs an Ethernet header; a raw-IP filter looks past it
    const data = linkOffset
      ? Uint8Array.from([
        ...new Array(12).fill(0),
        ...u16(frame[0] >> 4 === 4 ? 0x0800 : 0x86dd),
        ...frame,
      ])
      : frame;
    try {
      handle.testFilter("tc_egress", filter, data, linkOffset);
    } catch (e) {
      return (e as Error).message;
    }
    const n = handle.pollNow(buf);
    if (n === 0) continue;
    const size = new DataView(buf.buffer).getUint32(0, true);
    assert.equal(
      n,
      8 + Math.ceil(size / 8) * 8,
      `one record for frame ${i}, "${filter.expression}"`,
    );
    const tail = buf.subarray(8 + size - data.length, 8 + size);
    assert.deepEqual(tail, data, `the record carries frame ${i} whole`);
    kept.push(i);
  }
  return kept;
}

bpfTest("packet filters keep the frames tcpdump keeps, in the kernel", async () => {
  assert.ok(EXPRESSIONS.length >= 50);
  const dir = await Deno.makeTempDir({ prefix: "ecap-filter-" });
  const handle = BpfHandle.open(tlsObject, "tls");
  const differ: string[] = [];
  let compared = 0, keptSome = 0, refused = 0;
  try {
    handle.setMapSize("packet_scratch", Math.max(1, numCpus()));
    handle.load();
    for (const [linkType, frames, offset] of [[1, ETHERNET, 0], [101, RAW, 14]] as const) {
      const file = `${dir}/frames-${linkType}.pcap`;
      await Deno.writeFile(file, pcapFile(linkType, frames.map((f) => f.frame)));
      for (const expression of EXPRESSIONS) {
        const filter = { expression, linkType, snapLen: 262144 };
        const theirs = await tcpdumpKeeps(file, expression);
        const ours = ecapKeeps(handle, filter, frames.map((f) => f.frame), offset);
        const name = (k: number[] | string) =>
          typeof k === "string" ? `refused (${k})` : k.map((i) => frames[i].name).join(", ");
        if (typeof theirs === "string" || typeof ours === "string") {
          if (typeof theirs !== typeof ours) {
            differ.push(`${linkType} "${expression}": tcpdump ${name(theirs)}; ecap ${name(ours)}`);
          } else {
            refused++;
            // the same libpcap says why
            assert.ok(packetFilterError(filter), `"${expression}" refused for ${linkType}`);
          }
          continue;
        }
        compared++;
        if (theirs.length > 0) keptSome++;
        if (theirs.join() !== ours.join()) {
          differ.push(
            `${linkType} "${expression}": tcpdump [${name(theirs)}]; ecap [${name(ours)}]`,
          );
        }
      }
    }
  } finally {
    handle.close();
    await Deno.remove(dir, { recursive: true });
  }
  console.error(`${compared} expression/link-type pairs compared, ${refused} refused by both`);
  assert.deepEqual(differ, [], "expressions selecting different frames");
  assert.ok(compared >= 100, `${compared} pairs compared`);
  assert.ok(
    keptSome >= compared / 2,
    "most expressions keep some frames: the frames exercise them",
  );
  assert.ok(refused >= 3, "bad expressions are refused (a typo, a port too big, ip broadcast)");
});

bpfTest("packet filters: libpcap's own message for a bad expression", () => {
  const err = packetFilterError({ expression: "tcp port 99999", linkType: 1, snapLen: 262144 });
  assert.match(err ?? "", /illegal port number 99999/);
  assert.equal(
    packetFilterError({ expression: "tcp port 443", linkType: 1, snapLen: 65535 }),
    undefined,
  );
  // an expression libpcap accepts for Ethernet only
  assert.ok(
    packetFilterError({
      expression: "ether host 02:00:00:00:00:01",
      linkType: 101,
      snapLen: 65535,
    }),
  );
  return Promise.resolve();
});
