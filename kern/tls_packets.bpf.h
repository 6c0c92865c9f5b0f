/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * -m pcap: packets of the chosen interfaces from tcx classifiers, as
 * struct tls_packet records. Shared by every TLS module's object.
 */
#ifndef TLS_PACKETS_BPF_H
#define TLS_PACKETS_BPF_H

/* Packet pre-filter, 0 = any (user space applies the full expression). */
const volatile __u8 pkt_proto = 0;
const volatile __u16 pkt_port = 0;
const volatile bool pkt_host4_set = false;
const volatile __u8 pkt_host4[4] = {};
const volatile bool pkt_host6_set = false;
const volatile __u8 pkt_host6[16] = {};
/* Bytes of a packet captured at most. */
const volatile __u32 pkt_snaplen = TLS_PACKET_MAX;

struct packet_record {
	struct tls_packet rec;
	__u8 data[TLS_PACKET_MAX];
};

/* One slot per CPU, indexed by CPU: per-CPU maps cap values at 32 KiB. A TC
 * program cannot be preempted by another on its CPU (BH are off). User space
 * sizes it to the number of possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct packet_record);
} packet_scratch SEC(".maps");

/* Pre-filter of -m pcap; user space applies the whole expression. */
static __always_inline bool packet_wanted(struct __sk_buff *skb)
{
	__u16 proto = skb->protocol;
	__u32 off = 14; /* Ethernet; lo has one too */
	__u8 l4 = 0;
	__u16 ports[2] = {};

	if (!pkt_proto && !pkt_port && !pkt_host4_set && !pkt_host6_set)
		return true;
	if (proto == bpf_htons(0x0800)) {
		struct iphdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
			return false;
		if (pkt_host6_set)
			return false;
		if (pkt_host4_set && __builtin_memcmp(&ip.saddr, (const void *)pkt_host4, 4) &&
		    __builtin_memcmp(&ip.daddr, (const void *)pkt_host4, 4))
			return false;
		l4 = ip.protocol;
		off += ip.ihl * 4;
	} else if (proto == bpf_htons(0x86DD)) {
		struct ipv6hdr ip6;

		if (bpf_skb_load_bytes(skb, off, &ip6, sizeof(ip6)))
			return false;
		if (pkt_host4_set)
			return false;
		if (pkt_host6_set && __builtin_memcmp(&ip6.saddr, (const void *)pkt_host6, 16) &&
		    __builtin_memcmp(&ip6.daddr, (const void *)pkt_host6, 16))
			return false;
		l4 = ip6.nexthdr; /* extension headers: left to user space */
		off += sizeof(ip6);
	} else {
		return false;
	}
	if (pkt_proto && l4 != pkt_proto)
		return false;
	if (pkt_port) {
		if (l4 != 6 && l4 != 17)
			return false;
		if (bpf_skb_load_bytes(skb, off, ports, sizeof(ports)))
			return false;
		if (ports[0] != bpf_htons(pkt_port) && ports[1] != bpf_htons(pkt_port))
			return false;
	}
	return true;
}

static __always_inline int capture_packet(struct __sk_buff *skb, __u32 dir)
{
	__u32 cpu = bpf_get_smp_processor_id(), len = skb->len, caplen;
	struct packet_record *r;

	if (!packet_wanted(skb))
		return TCX_NEXT;
	r = bpf_map_lookup_elem(&packet_scratch, &cpu);
	if (!r)
		return TCX_NEXT;
	caplen = len < pkt_snaplen ? len : pkt_snaplen;
	if (caplen > TLS_PACKET_MAX)
		caplen = TLS_PACKET_MAX;
	if (caplen == 0)
		return TCX_NEXT;
	/* bpf_skb_load_bytes wants a length the verifier can bound */
	caplen &= TLS_PACKET_MAX * 2 - 1;
	if (caplen > TLS_PACKET_MAX || bpf_skb_load_bytes(skb, 0, r->data, caplen))
		return TCX_NEXT;
	r->rec.hdr.kind = ECAP_KIND_TLS_PACKET;
	r->rec.hdr.ts_ns = bpf_ktime_get_ns();
	r->rec.ifindex = skb->ifindex;
	r->rec.len = len;
	r->rec.caplen = caplen;
	r->rec.dir = dir;
	emit(r, sizeof(r->rec) + caplen);
	return TCX_NEXT;
}

SEC("tcx/ingress")
int tc_ingress(struct __sk_buff *skb)
{
	return capture_packet(skb, TLS_PACKET_INGRESS);
}

SEC("tcx/egress")
int tc_egress(struct __sk_buff *skb)
{
	return capture_packet(skb, TLS_PACKET_EGRESS);
}

#endif
