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

/*
 * Sends str as records of `kind`; max_chunks (at most TEXT_CHUNKS) bounds
 * its length. Each read takes TEXT_CHUNK - 1 bytes and a NUL; a full read
 * means the text may go on, so the next read starts where it stopped.
 * Returns the number of records sent.
 */
static __always_inline int emit_user_text(__u32 kind, __u64 id, __u32 uid, const char *str,
					  __u32 max_chunks)
{
	struct text_record *b;
	__u32 zero = 0;
	int sent = 0;

	b = bpf_map_lookup_elem(&text_scratch, &zero);
	if (!b || !str)
		return 0;
	fill_hdr(&b->rec.hdr, kind, id, uid);
	for (int i = 0; i < TEXT_CHUNKS; i++) {
		long n = bpf_probe_read_user_str(b->data, TEXT_CHUNK, str + (__u64)i * (TEXT_CHUNK - 1));
		__u32 len;

		if (n <= 0)
			break;
		len = n - 1;
		if (len > TEXT_CHUNK - 1)
			len = TEXT_CHUNK - 1;
		b->rec.len = len;
		b->rec.flags = n == TEXT_CHUNK ? TEXT_MORE : 0;
		if (n == TEXT_CHUNK && (i == TEXT_CHUNKS - 1 || i + 1 >= max_chunks)) {
			b->rec.flags = TEXT_CUT;
			stat_add(ECAP_STAT_TRUNCATED, 1);
		}
		emit(b, sizeof(b->rec) + len);
		sent++;
		if (b->rec.flags != TEXT_MORE)
			break;
	}
	return sent;
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
	struct text_record *b;
	__u32 zero = 0;
	int sent = 0;

	b = bpf_map_lookup_elem(&text_scratch, &zero);
	if (!b || !ptr)
		return 0;
	fill_hdr(&b->rec.hdr, kind, id, uid);
	for (int i = 0; i < TEXT_CHUNKS; i++) {
		__u64 off = (__u64)i * TEXT_CHUNK;
		__u64 left = len > off ? len - off : 0;
		__u32 n = left > TEXT_CHUNK ? TEXT_CHUNK : left;
		__u32 flags = left > n ? TEXT_MORE : 0;

		if (n > TEXT_CHUNK)
			n = TEXT_CHUNK;
		if (n > 0 && bpf_probe_read_user(b->data, n, ptr + off) != 0) {
			n = 0;
			flags = TEXT_CUT;
		}
		if (flags == TEXT_MORE && (i == TEXT_CHUNKS - 1 || i + 1 >= max_chunks))
			flags = TEXT_CUT;
		if (flags == TEXT_CUT)
			stat_add(ECAP_STAT_TRUNCATED, 1);
		b->rec.len = n;
		b->rec.flags = flags;
		emit(b, sizeof(b->rec) + n);
		sent++;
		if (flags != TEXT_MORE)
			break;
	}
	return sent;
}

#endif
