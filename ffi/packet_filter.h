/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Packet filters of -m pcap: tcpdump's expression compiled by libpcap into
 * classic BPF (pcap_compile.c), translated to an eBPF tcx program that
 * tail-calls the capture program for the packets it keeps (packet_filter.c).
 * Internal to libecap.so; nothing here prints.
 */
#ifndef ECAP_PACKET_FILTER_H
#define ECAP_PACKET_FILTER_H

#include <stddef.h>
#include <stdint.h>

/* One classic BPF instruction, laid out as libpcap's and the kernel's. */
struct cbpf_insn {
	uint16_t code;
	uint8_t jt, jf;
	uint32_t k;
};

/*
 * Compiles expr for a pcap link type (1 Ethernet, 101 raw IP) as tcpdump
 * would, optimised; returns the number of instructions and sets *out
 * (free() it), or -EINVAL with libpcap's own message in msg.
 */
int pcap_filter_compile(const char *expr, int linktype, uint32_t snaplen, struct cbpf_insn **out,
			char *msg, size_t msg_len);

/*
 * Loads the filter as a SCHED_CLS program of attach_type that runs
 * `next` (a program fd) for the packets the expression keeps and returns
 * TCX_NEXT for the others. Packet offsets are shifted by link_offset (a
 * raw-IP filter tested behind an Ethernet header). On success returns the
 * program's fd and sets *array_fd, the program array that must stay open
 * as long as the program is used; else a negative errno and a message.
 * The verifier's log, on failure, goes to log (may be NULL).
 */
int packet_filter_load(const struct cbpf_insn *insns, int n, int next, int attach_type,
		       uint32_t link_offset, int *array_fd, char *msg, size_t msg_len, char *log,
		       size_t log_len);

#endif
