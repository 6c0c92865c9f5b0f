/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * A reader of one BPF ring buffer map that maps its data once.
 *
 * libbpf maps a ring's data pages twice in a row, so that a record wrapping
 * round the end reads as one piece; the kernel inserts every page of a ring
 * mapping at mmap time, so that made each ring resident twice over from the
 * start (16 MiB for the default 8 MiB ring). This reader maps the data once
 * and copies a wrapping record in two parts. Internal to libecap.so.
 */
#ifndef ECAP_RING_READER_H
#define ECAP_RING_READER_H

#include <stddef.h>
#include <stdint.h>

struct ring_reader {
	int fd;
	size_t mask; /* data bytes - 1 (a power of two) */
	size_t page;
	uint64_t *consumer_pos; /* our page, read-write */
	const uint64_t *producer_pos; /* the kernel's, read-only */
	const uint8_t *data; /* the data pages, right after the producer's */
	size_t refused; /* the size of the record -ENOSPC was about */
};

/* Maps the ring of map fd `fd` (not owned). 0, or a negative errno. */
int ring_reader_open(struct ring_reader *r, int fd);

void ring_reader_close(struct ring_reader *r);

/*
 * Copies the records committed since the last call into buf from *len on,
 * each as ecap's batch lays it out: its size as a u32, 4 zero bytes, the
 * record, zeros to the next multiple of 8. Stops at the first record that
 * does not fit, which stays in the ring for the next call. Returns the
 * number of records copied, or -ENOSPC when the first one does not fit an
 * empty buffer (its size in r->refused).
 */
int ring_reader_consume(struct ring_reader *r, uint8_t *buf, size_t cap, size_t *len);

#endif
