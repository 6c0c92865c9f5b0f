/*
 * Benchmark 3's producer and reference consumer, on the static libbpf.
 *
 *   ring_bench produce SIZE SECONDS
 *       Runs bench_produce (kern/bench_empty.bpf.c) with BPF_PROG_TEST_RUN
 *       for SECONDS: the newest loaded program of that name, i.e. the one
 *       bench/ring.ts just loaded through lib/core/ffi.ts and consumes. Prints
 *       "produced=N seconds=S".
 *   ring_bench consume OBJECT SIZE SECONDS RING_BYTES
 *       Loads OBJECT itself and consumes its ring buffer with libbpf's
 *       ring_buffer__poll, copying each record into a 4 MiB batch as ecap's
 *       shim does, while a thread produces. Prints "events=N bytes=B
 *       seconds=S lost=L produced=P".
 *
 * The producer writes at most `count` records per run and stops while the
 * ring is more than half full, so the rate measured is the consumer's.
 */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct bench_args {
	uint32_t size, count, pid, seq;
};

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static int find_producer(void)
{
	uint32_t id = 0, best = 0;

	while (bpf_prog_get_next_id(id, &id) == 0) {
		struct bpf_prog_info info = {};
		uint32_t len = sizeof(info);
		int fd = bpf_prog_get_fd_by_id(id);

		if (fd < 0)
			continue;
		if (bpf_prog_get_info_by_fd(fd, &info, &len) == 0 &&
		    strcmp(info.name, "bench_produce") == 0 && id > best)
			best = id;
		close(fd);
	}
	return best ? bpf_prog_get_fd_by_id(best) : -ENOENT;
}

struct producer {
	int prog_fd;
	uint32_t size;
	double seconds;
	uint64_t produced;
	double elapsed;
	atomic_int done;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	struct bench_args a = {
		.size = p->size,
		.count = p->size <= 256 ? 8192 : 64,
		.pid = (uint32_t)getpid(),
	};
	double t0 = now(), t = t0;
	long iter = 0;

	while (t - t0 < p->seconds) {
		LIBBPF_OPTS(bpf_test_run_opts, o, .ctx_in = &a, .ctx_size_in = sizeof(a));
		int err = bpf_prog_test_run_opts(p->prog_fd, &o);

		if (err) {
			fprintf(stderr, "ring_bench: test run: %s\n", strerror(-err));
			exit(1);
		}
		p->produced += o.retval;
		a.seq += o.retval;
		if (o.retval < a.count) {
			/* the ring is half full: give the consumer the CPU for a moment */
			struct timespec ts = { 0, 20000 };

			nanosleep(&ts, NULL);
		}
		if (++iter % 16 == 0 || o.retval < a.count)
			t = now();
	}
	p->elapsed = now() - t0;
	atomic_store(&p->done, 1);
	return NULL;
}

static uint8_t *batch;
static size_t batch_len;
static uint64_t events, bytes;

#define BATCH (4u << 20)

static int on_record(void *ctx __attribute__((unused)), void *data, size_t size)
{
	size_t need = 8 + ((size + 7) & ~(size_t)7);

	if (batch_len + need > BATCH)
		batch_len = 0; /* a consumer would hand the batch on here */
	memcpy(batch + batch_len, &size, 4);
	memcpy(batch + batch_len + 8, data, size);
	batch_len += need;
	events++;
	bytes += size;
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "produce") == 0) {
		struct producer p = { .size = atoi(argv[2]), .seconds = atof(argv[3]) };

		p.prog_fd = find_producer();
		if (p.prog_fd < 0) {
			fprintf(stderr, "ring_bench: no bench_produce program loaded\n");
			return 1;
		}
		produce(&p);
		printf("produced=%llu seconds=%.6f\n", (unsigned long long)p.produced, p.elapsed);
		return 0;
	}
	if (argc != 6 || strcmp(argv[1], "consume") != 0) {
		fprintf(stderr, "usage: ring_bench produce SIZE SECONDS | consume OBJECT SIZE SECONDS RING_BYTES\n");
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[2], NULL);
	struct bpf_program *prog;

	if (!obj) {
		fprintf(stderr, "ring_bench: open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}
	bpf_object__for_each_program(prog, obj)
		bpf_program__set_autoload(prog, strcmp(bpf_program__name(prog), "bench_produce") == 0);
	bpf_map__set_max_entries(bpf_object__find_map_by_name(obj, "events"), atoi(argv[5]));
	if (bpf_object__load(obj)) {
		fprintf(stderr, "ring_bench: load %s failed\n", argv[2]);
		return 1;
	}
	batch = malloc(BATCH);
	struct ring_buffer *rb = ring_buffer__new(
		bpf_map__fd(bpf_object__find_map_by_name(obj, "events")), on_record, NULL, NULL);
	if (!rb || !batch) {
		fprintf(stderr, "ring_bench: ring_buffer__new failed\n");
		return 1;
	}
	struct producer p = {
		.prog_fd = bpf_program__fd(bpf_object__find_program_by_name(obj, "bench_produce")),
		.size = atoi(argv[3]),
		.seconds = atof(argv[4]),
	};
	pthread_t th;
	double first = 0, last = 0;
	uint64_t first_events = 0;

	pthread_create(&th, NULL, produce, &p);
	for (;;) {
		int done = atomic_load(&p.done);
		int n = ring_buffer__poll(rb, 100);

		if (n < 0 && n != -EINTR) {
			fprintf(stderr, "ring_bench: poll: %s\n", strerror(-n));
			return 1;
		}
		if (n > 0) {
			last = now();
			if (first == 0) {
				first = last;
				first_events = events;
			}
		}
		if (done && n == 0 && events >= p.produced)
			break;
	}
	pthread_join(th, NULL);
	/* lost: the per-CPU counter slot 1 (ECAP_STAT_LOST) */
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *vals = calloc(ncpu, sizeof(*vals)), lost = 0;
	uint32_t key = 1;

	if (bpf_map_lookup_elem(bpf_map__fd(bpf_object__find_map_by_name(obj, "ecap_stats")), &key,
				vals) == 0)
		for (int i = 0; i < ncpu; i++)
			lost += vals[i];
	/* the rate is taken between the first and the last batch, as bench/ring.ts does */
	printf("events=%llu bytes=%llu seconds=%.6f lost=%llu produced=%llu\n",
	       (unsigned long long)(events - first_events),
	       (unsigned long long)((events - first_events) * (uint64_t)p.size), last - first,
	       (unsigned long long)lost, (unsigned long long)p.produced);
	ring_buffer__free(rb);
	bpf_object__close(obj);
	return 0;
}
