/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * -m pcap: packets of the chosen interfaces from tcx classifiers, as
 * struct tls_packet records. Shared by every TLS module's object. A filter
 * expression runs in a program of its own in front of these
 * (ffi/packet_filter.c), which tail-calls them for the packets it keeps.
 */
#ifndef TLS_PACKETS_BPF_H
#define TLS_PACKETS_BPF_H

/* Bytes of a packet captured at most. */
const volatile __u32 pkt_snaplen = TLS_PACKET_MAX;
/* Bytes of a packet captured while the ring is filling (common.bpf.h):
 * Ethernet, IP and TCP headers with options, and a TLS record header. */
#define SHED_PACKET_BYTES 128

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

static __always_inline int capture_packet(struct __sk_buff *skb, __u32 dir)
{
	__u32 cpu = bpf_get_smp_processor_id(), len = skb->len, caplen;
	struct packet_record *r;

	r = bpf_map_lookup_elem(&packet_scratch, &cpu);
	if (!r)
		return TCX_NEXT;
	caplen = len < pkt_snaplen ? len : pkt_snaplen;
	if (caplen > TLS_PACKET_MAX)
		caplen = TLS_PACKET_MAX;
	if (caplen > SHED_PACKET_BYTES && ring_filling()) {
		caplen = SHED_PACKET_BYTES;
		stat_add(ECAP_STAT_SHED, 1);
	}
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
