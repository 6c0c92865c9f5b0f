/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Streams a NUL-terminated user string of any length as text_chunk records. */
#ifndef ECAP_TEXT_CHUNKS_BPF_H
#define ECAP_TEXT_CHUNKS_BPF_H

#include "common.bpf.h"

/* Where a chunk is built: too big for the 512-byte stack. */
struct text_record {
	struct text_chunk rec;
	char data[TEXT_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct text_record);
} text_scratch SEC(".maps");

/* One text being sent, shared by the chunks of bpf_loop. */
struct text_loop {
	const char *src;
	__u64 len;	/* emit_user_bytes: bytes to send */
	__u32 chunks;	/* at most this many records: min(max_chunks, TEXT_CHUNKS) */
	int sent;
};

/* The text's scratch record; chunk callbacks look it up again themselves. */
static __always_inline struct text_record *text_scratch_record(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&text_scratch, &zero);
}

/* Chunk i of a NUL-terminated string; returns 1 once the text has ended. */
static long text_str_chunk(__u32 i, struct text_loop *l)
{
	struct text_record *b = text_scratch_record();
	long n;
	__u32 len;

	if (!b)
		return 1;
	n = bpf_probe_read_user_str(b->data, TEXT_CHUNK, l->src + (__u64)i * (TEXT_CHUNK - 1));
	if (n <= 0)
		return 1;
	len = n - 1;
	if (len > TEXT_CHUNK - 1)
		len = TEXT_CHUNK - 1;
	b->rec.len = len;
	b->rec.flags = n == TEXT_CHUNK ? TEXT_MORE : 0;
	if (n == TEXT_CHUNK && i + 1 >= l->chunks) {
		b->rec.flags = TEXT_CUT;
		stat_add(ECAP_STAT_TRUNCATED, 1);
	}
	emit(b, sizeof(b->rec) + len);
	l->sent++;
	return b->rec.flags != TEXT_MORE;
}

/* Chunk i of a text of known length; returns 1 once the text has ended. */
static long text_bytes_chunk(__u32 i, struct text_loop *l)
{
	struct text_record *b = text_scratch_record();
	__u64 off = (__u64)i * TEXT_CHUNK;
	__u64 left = l->len > off ? l->len - off : 0;
	__u32 n = left > TEXT_CHUNK ? TEXT_CHUNK : left;
	__u32 flags = left > n ? TEXT_MORE : 0;

	if (!b)
		return 1;
	if (n > TEXT_CHUNK)
		n = TEXT_CHUNK;
	if (n > 0 && bpf_probe_read_user(b->data, n, l->src + off) != 0) {
		n = 0;
		flags = TEXT_CUT;
	}
	if (flags == TEXT_MORE && i + 1 >= l->chunks)
		flags = TEXT_CUT;
	if (flags == TEXT_CUT)
		stat_add(ECAP_STAT_TRUNCATED, 1);
	b->rec.len = n;
	b->rec.flags = flags;
	emit(b, sizeof(b->rec) + n);
	l->sent++;
	return flags != TEXT_MORE;
}

/*
 * The chunks of one text: the first called directly (most texts are one
 * chunk), the rest through bpf_loop, which the verifier checks once rather
 * than once per chunk (unrolled, the 128 chunks cost mysqld's four programs
 * about 150 ms of start-up).
 */
#define SEND_TEXT_CHUNKS(chunk_fn, loop)                                        \
	do {                                                                    \
		if ((loop)->chunks > TEXT_CHUNKS)                               \
			(loop)->chunks = TEXT_CHUNKS;                           \
		if ((loop)->chunks > 0 && chunk_fn(0, loop) == 0)               \
			bpf_loop((loop)->chunks - 1, chunk_fn##_next, loop, 0); \
	} while (0)

static long text_str_chunk_next(__u32 i, struct text_loop *l)
{
	return text_str_chunk(i + 1, l);
}

static long text_bytes_chunk_next(__u32 i, struct text_loop *l)
{
	return text_bytes_chunk(i + 1, l);
}

/*
 * Sends str as records of `kind`; max_chunks (at most TEXT_CHUNKS) bounds
 * its length. Each read takes TEXT_CHUNK - 1 bytes and a NUL; a full read
 * means the text may go on, so the next read starts where it stopped.
 * Returns the number of records sent.
 */
static __always_inline int emit_user_text(__u32 kind, __u64 id, __u32 uid, const char *str,
					  __u32 max_chunks)
{
	struct text_record *b = text_scratch_record();
	struct text_loop l = { .src = str, .chunks = max_chunks };

	if (!b || !str)
		return 0;
	fill_hdr(&b->rec.hdr, kind, id, uid);
	SEND_TEXT_CHUNKS(text_str_chunk, &l);
	return l.sent;
}

/*
 * Sends the len bytes at ptr as records of `kind`, for text whose length is
 * known (a protocol packet): no NUL ends it early, and each record carries a
 * full TEXT_CHUNK bytes. After max_chunks (at most TEXT_CHUNKS) records the
 * rest is dropped and the last record says TEXT_CUT; so does one whose read
 * faulted, sent empty so that the text still ends. Returns records sent.
 */
static __always_inline int emit_user_bytes(__u32 kind, __u64 id, __u32 uid, const void *ptr,
					   __u64 len, __u32 max_chunks)
{
	struct text_record *b = text_scratch_record();
	struct text_loop l = { .src = ptr, .len = len, .chunks = max_chunks };

	if (!b || !ptr)
		return 0;
	fill_hdr(&b->rec.hdr, kind, id, uid);
	SEND_TEXT_CHUNKS(text_bytes_chunk, &l);
	return l.sent;
}

#endif
