// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * bench_empty: baselines for bench/, never loaded by ecap itself.
 *
 * 1. Empty handlers with the names and section types of kern/tls.bpf.c's
 *    text-mode programs and kern/postgres.bpf.c's, so bench/ attaches them
 *    exactly as `ecap tls` and `ecap postgres` do (same uprobe.multi
 *    grouping, same raw tracepoints): the cost of the hooks alone, with no
 *    work in them.
 * 2. bench_produce, a SEC("syscall") program run with BPF_PROG_TEST_RUN by
 *    bench/ring_bench.c: writes `count` records of `size` bytes to the ring
 *    buffer, stopping early while the ring is more than half full, so a
 *    consumer is measured at its own top speed without drops.
 */
#include "common.bpf.h"

SEC("uprobe.multi")
int uprobe_ssl_write(struct pt_regs *ctx)
{
	return 0;
}

SEC("uprobe.multi")
int uprobe_ssl_write_ex(struct pt_regs *ctx)
{
	return 0;
}

SEC("uprobe.multi")
int uprobe_ssl_read(struct pt_regs *ctx)
{
	return 0;
}

SEC("uprobe.multi")
int uprobe_ssl_read_ex(struct pt_regs *ctx)
{
	return 0;
}

SEC("uprobe.multi")
int uprobe_ssl_handshake(struct pt_regs *ctx)
{
	return 0;
}

SEC("uretprobe.multi")
int uretprobe_ssl_call(struct pt_regs *ctx)
{
	return 0;
}

SEC("uretprobe.multi")
int uretprobe_ssl_call_ex(struct pt_regs *ctx)
{
	return 0;
}

SEC("raw_tp/sys_enter")
int raw_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

SEC("uprobe")
int uprobe_report_activity(struct pt_regs *ctx)
{
	return 0;
}

SEC("uprobe")
int uprobe_portal_run(struct pt_regs *ctx)
{
	return 0;
}

SEC("uprobe")
int uprobe_portal_error_cleanup(struct pt_regs *ctx)
{
	return 0;
}

SEC("raw_tp/sched_process_exit")
int raw_tp_sched_process_exit(struct bpf_raw_tracepoint_args *ctx)
{
	return 0;
}

/* What bench/ring_bench.c passes as the test run's context. */
struct bench_args {
	__u32 size;  /* bytes per record, header included (<= BENCH_RECORD_MAX) */
	__u32 count; /* records to write at most */
	__u32 pid;   /* put in each record's header */
	__u32 seq;   /* sequence number of the first record */
};

#define BENCH_RECORD_MAX 16384
#define BENCH_KIND 0x7e57

struct bench_record {
	struct ecap_hdr hdr;
	__u8 data[BENCH_RECORD_MAX - sizeof(struct ecap_hdr)];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_record);
} bench_scratch SEC(".maps");

struct produce_ctx {
	__u32 size;
	__u32 seq;
	__u64 half;
	__u32 done;
};

static long produce_one(__u32 i, struct produce_ctx *p)
{
	__u32 zero = 0, size = p->size;
	struct bench_record *r = bpf_map_lookup_elem(&bench_scratch, &zero);

	if (!r || size > BENCH_RECORD_MAX)
		return 1;
	barrier_var(size); /* two checks the verifier can follow, not one range test */
	if (size < sizeof(struct ecap_hdr))
		return 1;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > p->half)
		return 1; /* let the consumer catch up: no drops by design */
	r->hdr.tid = p->seq + i;
	emit(r, size);
	p->done++;
	return 0;
}

SEC("syscall")
int bench_produce(struct bench_args *args)
{
	__u32 zero = 0;
	struct bench_record *r = bpf_map_lookup_elem(&bench_scratch, &zero);
	struct produce_ctx p = {};
	__u32 size = args->size;

	if (!r || size < sizeof(struct ecap_hdr) || size > BENCH_RECORD_MAX)
		return 0;
	r->hdr.kind = BENCH_KIND;
	r->hdr.pid = args->pid;
	r->hdr.uid = 0;
	r->hdr.ts_ns = bpf_ktime_get_ns();
	__builtin_memcpy(r->hdr.comm, "ecap-bench", 11);
	p.size = size;
	p.seq = args->seq;
	p.half = bpf_ringbuf_query(&events, BPF_RB_RING_SIZE) / 2;
	bpf_loop(args->count, produce_one, &p, 0);
	return p.done;
}
