/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A read or write call's plaintext as struct tls_data records of at most
 * TLS_CHUNK bytes each, sized to what they carry, up to max_call_bytes per
 * call (the rest is counted as cut). Shared by every TLS module's object;
 * needs tls_socket.bpf.h.
 */
#ifndef TLS_DATA_BPF_H
#define TLS_DATA_BPF_H

/* Bytes captured of one call at most; the rest is counted as cut. */
const volatile __u32 max_call_bytes = 1 << 20;
/* Bytes captured of a call while the ring is filling (common.bpf.h): a head. */
#define SHED_KEEP_BYTES 1024

/* Where a record is built: too big for the stack. */
struct tls_record {
	struct tls_data rec;
	char data[TLS_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_record);
} tls_scratch SEC(".maps");

/*
 * Connections and directions that lost records, until their next record is
 * sent marked TLS_DATA_GAP: a parser of the stream then knows it is out of
 * step, and where. LRU: a connection that never sends again is forgotten.
 */
struct gap_key {
	__u64 conn;
	__u32 pid;
	__u32 read; /* TLS_DATA_READ or 0 */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct gap_key);
	__type(value, __u8);
} tls_gaps SEC(".maps");

/* Set once a gap is recorded: until then no call looks one up. */
static volatile bool gaps_recorded;

/* Marks the next record of a connection and direction: bytes before it are missing. */
static __always_inline void record_gap(struct gap_key *gap)
{
	__u8 one = 1;

	bpf_map_update_elem(&tls_gaps, gap, &one, BPF_ANY);
	gaps_recorded = true;
}

struct chunk_ctx {
	__u64 buf;
	__u32 captured; /* bytes to send: min(total, max_call_bytes) */
	__u32 cut;
	struct gap_key gap;
	bool lost; /* a chunk of this call found no room */
};

static long emit_chunk(__u32 i, struct chunk_ctx *ctx)
{
	__u32 zero = 0, off = i * TLS_CHUNK, n;
	struct tls_record *r;

	if (off >= ctx->captured)
		return 1;
	r = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (!r)
		return 1;
	n = ctx->captured - off;
	if (n > TLS_CHUNK)
		n = TLS_CHUNK;
	if (bpf_probe_read_user(r->data, n, (const void *)(ctx->buf + off)))
		return 1;
	r->rec.len = n;
	r->rec.offset = off;
	r->rec.flags &= ~(TLS_DATA_LAST | TLS_DATA_CUT);
	if (off + n >= ctx->captured)
		r->rec.flags |= TLS_DATA_LAST | ctx->cut;
	if (emit(r, sizeof(r->rec) + n)) {
		if (r->rec.flags & TLS_DATA_GAP) /* the gap is told: forget it */
			bpf_map_delete_elem(&tls_gaps, &ctx->gap);
		r->rec.flags &= ~TLS_DATA_GAP;
	} else {
		ctx->lost = true;
	}
	return 0;
}

/*
 * Sends the `moved` bytes at user address buf that a call on connection
 * conn (the library's object) moved, with the socket behind fd.
 */
static __always_inline void emit_tls_data(__u64 id, __u64 conn, __s32 fd, __u32 flags, __u64 buf,
					  __u64 moved)
{
	struct chunk_ctx ctx = {};
	struct sock_info si = {};
	struct tls_record *r;
	__u32 zero = 0;

	r = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (moved == 0 || !r)
		return;
	fill_hdr(&r->rec.hdr, ECAP_KIND_TLS_DATA, id, (__u32)bpf_get_current_uid_gid());
	r->rec.conn = conn;
	r->rec.fd = fd;
	r->rec.total = moved > 0xffffffff ? 0xffffffff : moved;
	r->rec.flags = flags;
	read_socket(&si, fd);
	COPY_SOCK(&r->rec, &si);
	ctx.buf = buf;
	ctx.captured = r->rec.total;
	if (ctx.captured > max_call_bytes) {
		ctx.captured = max_call_bytes;
		ctx.cut = TLS_DATA_CUT;
		stat_add(ECAP_STAT_TRUNCATED, 1);
	}
	if (ctx.captured > SHED_KEEP_BYTES && ring_filling()) {
		ctx.captured = SHED_KEEP_BYTES;
		ctx.cut = TLS_DATA_CUT;
		stat_add(ECAP_STAT_SHED, 1);
	}
	ctx.gap.conn = conn;
	ctx.gap.pid = id >> 32;
	ctx.gap.read = flags & TLS_DATA_READ;
	if (gaps_recorded && bpf_map_lookup_elem(&tls_gaps, &ctx.gap))
		r->rec.flags |= TLS_DATA_GAP;
	if (ctx.captured <= TLS_CHUNK)
		emit_chunk(0, &ctx); /* most calls: no bpf_loop round trip */
	else
		bpf_loop((ctx.captured + TLS_CHUNK - 1) / TLS_CHUNK, emit_chunk, &ctx, 0);
	if (ctx.lost)
		record_gap(&ctx.gap);
}

#endif
