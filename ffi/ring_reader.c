// SPDX-License-Identifier: BSD-3-Clause
/*
 * ring_reader.h's reader. The layout is the kernel's (kernel/bpf/ringbuf.c):
 * page 0 the consumer position, page 1 the producer position, then the data;
 * each record an 8-byte header (length with a busy and a discard bit, then
 * the page offset the kernel uses) and its bytes, padded to 8.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include "ring_reader.h"

#define ALIGN8(n) (((n) + 7) & ~(size_t)7)

int ring_reader_open(struct ring_reader *r, int fd)
{
	struct bpf_map_info info = {};
	uint32_t info_len = sizeof(info);
	void *consumer, *producer;

	memset(r, 0, sizeof(*r));
	r->fd = -1;
	if (bpf_map_get_info_by_fd(fd, &info, &info_len) < 0)
		return -errno;
	if (info.type != BPF_MAP_TYPE_RINGBUF || info.max_entries == 0 ||
	    (info.max_entries & (info.max_entries - 1)))
		return -EINVAL;
	r->page = (size_t)sysconf(_SC_PAGESIZE);
	consumer = mmap(NULL, r->page, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (consumer == MAP_FAILED)
		return -errno;
	/* the producer's page and the data once, where libbpf maps it twice */
	producer = mmap(NULL, r->page + info.max_entries, PROT_READ, MAP_SHARED, fd,
			(off_t)r->page);
	if (producer == MAP_FAILED) {
		int err = -errno;

		munmap(consumer, r->page);
		return err;
	}
	r->fd = fd;
	r->mask = info.max_entries - 1;
	r->consumer_pos = consumer;
	r->producer_pos = producer;
	r->data = (const uint8_t *)producer + r->page;
	return 0;
}

void ring_reader_close(struct ring_reader *r)
{
	if (r->fd < 0)
		return;
	munmap(r->consumer_pos, r->page);
	munmap((void *)r->producer_pos, r->page + r->mask + 1);
	r->fd = -1;
}

/* size bytes of the data from position pos on, wrapping round the end */
static void copy_out(const struct ring_reader *r, uint8_t *dst, uint64_t pos, size_t size)
{
	size_t at = (size_t)(pos & r->mask);
	size_t first = r->mask + 1 - at;

	if (first >= size) {
		memcpy(dst, r->data + at, size);
		return;
	}
	memcpy(dst, r->data + at, first);
	memcpy(dst + first, r->data, size - first);
}

int ring_reader_consume(struct ring_reader *r, uint8_t *buf, size_t cap, size_t *len)
{
	uint64_t cons = *r->consumer_pos, prod;
	int n = 0;

	for (;;) {
		prod = __atomic_load_n(r->producer_pos, __ATOMIC_ACQUIRE);
		if (cons >= prod)
			return n;
		while (cons < prod) {
			/* a header never wraps: positions and the ring are multiples of 8 */
			const uint32_t *head = (const uint32_t *)(r->data + (cons & r->mask));
			uint32_t word = __atomic_load_n(head, __ATOMIC_ACQUIRE);
			size_t size, need;

			if (word & BPF_RINGBUF_BUSY_BIT)
				return n; /* reserved, not yet committed: the next call takes it */
			size = word & ~(uint32_t)(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT);
			if (!(word & BPF_RINGBUF_DISCARD_BIT)) {
				uint32_t batch_head[2] = { (uint32_t)size, 0 };

				need = sizeof(batch_head) + ALIGN8(size);
				if (*len + need > cap) {
					r->refused = size;
					return *len == 0 ? -ENOSPC : n;
				}
				memcpy(buf + *len, batch_head, sizeof(batch_head));
				copy_out(r, buf + *len + sizeof(batch_head), cons + BPF_RINGBUF_HDR_SZ,
					 size);
				memset(buf + *len + sizeof(batch_head) + size, 0, ALIGN8(size) - size);
				*len += need;
				n++;
			}
			cons += ALIGN8(size + BPF_RINGBUF_HDR_SZ);
			/* the kernel may reuse the space from here on */
			__atomic_store_n(r->consumer_pos, cons, __ATOMIC_RELEASE);
		}
	}
}
