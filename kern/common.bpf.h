/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Maps, filters and helpers every capture object shares. */
#ifndef ECAP_COMMON_BPF_H
#define ECAP_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "ecap.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Records to user space; user space sizes it before load (--mapsize). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* Counters per CPU, indexed by enum ecap_stat: nothing is lost silently. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ECAP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ecap_stats SEC(".maps");

/* Process filters, 0 = any. Set by user space between open and load. */
const volatile __u32 filter_pid = 0;
const volatile __u32 filter_uid = 0;
const volatile bool filter_uid_set = false;

/* Keeps the record types in BTF; never read. */
const volatile struct ecap_types *const ecap_types_anchor = 0;

static __always_inline void stat_add(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&ecap_stats, &slot);

	if (v)
		*v += n;
}

static __always_inline bool process_allowed(__u64 pid_tgid, __u32 uid)
{
	if (filter_pid && (__u32)(pid_tgid >> 32) != filter_pid)
		return false;
	if (filter_uid_set && uid != filter_uid)
		return false;
	return true;
}

static __always_inline void fill_hdr(struct ecap_hdr *h, __u32 kind, __u64 pid_tgid, __u32 uid)
{
	h->kind = kind;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->uid = uid;
	h->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
}

/* Writes a record, counting it as sent or lost. */
static __always_inline void emit(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&events, rec, size, 0) == 0)
		stat_add(ECAP_STAT_EVENTS, 1);
	else
		stat_add(ECAP_STAT_LOST, 1);
}

#endif
