// SPDX-License-Identifier: BSD-3-Clause
/* tcpdump's filter language, compiled by libpcap itself (linked statically). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pcap/pcap.h>
#include "packet_filter.h"

#define LINKTYPE_RAW 101 /* pcapng's number; libpcap's DLT_RAW differs by OS */

_Static_assert(sizeof(struct cbpf_insn) == sizeof(struct bpf_insn), "classic BPF layout");

int pcap_filter_compile(const char *expr, int linktype, uint32_t snaplen, struct cbpf_insn **out,
			char *msg, size_t msg_len)
{
	struct bpf_program prog;
	pcap_t *p;
	int n;

	p = pcap_open_dead(linktype == LINKTYPE_RAW ? DLT_RAW : linktype, (int)snaplen);
	if (!p) {
		snprintf(msg, msg_len, "libpcap: out of memory");
		return -ENOMEM;
	}
	/* netmask 0, as tcpdump -r and tcpdump -i any: `ip broadcast` means 255.255.255.255 */
	if (pcap_compile(p, &prog, expr, 1, 0) < 0) {
		snprintf(msg, msg_len, "%s", pcap_geterr(p));
		pcap_close(p);
		return -EINVAL;
	}
	n = (int)prog.bf_len;
	*out = malloc(sizeof(**out) * (n ? n : 1));
	if (*out)
		memcpy(*out, prog.bf_insns, sizeof(**out) * n);
	pcap_freecode(&prog);
	pcap_close(p);
	if (!*out) {
		snprintf(msg, msg_len, "libpcap: out of memory");
		return -ENOMEM;
	}
	return n;
}
