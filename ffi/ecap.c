// SPDX-License-Identifier: BSD-3-Clause
/* libecap: libbpf behind the narrow API of ecap.h. */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/eventfd.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "ecap.h"
#include "kernel_btf.h"
#include "packet_filter.h"
#include "ring_reader.h"

#define MAX_LINKS 1024
/* enum bpf_attach_type value from kernel 6.6; Debian 12's uapi header predates it */
#define ECAP_TRACE_UPROBE_MULTI 48

struct ecap {
	struct bpf_object *obj;
	void *obj_copy; /* libbpf points into the buffer until load */
	struct bpf_link *links[MAX_LINKS];
	/* links made without libbpf (a filtered tcx program): fd + 1, 0 = none */
	int link_fds[MAX_LINKS];
	int n_links;
	/* the packet filters loaded, each in front of one capture program */
	struct loaded_filter *filters;
	int n_filters;
	atomic_int detaching; /* links ecap_detach is destroying on threads of their own */
	struct ring_reader ring; /* ring.fd < 0: none */
	int epoll_fd, wake_fd;
	/* ecap_guard: the guardian's pid and our end of its pipe */
	pid_t guard_pid;
	int guard_fd;
	char error[1024];
	char *log;
	size_t log_len;
};

struct loaded_filter {
	char *prog, *expr;
	int linktype;
	uint32_t link_offset;
	int fd, array_fd; /* the array holds the capture program while it is open */
};

/* libbpf's print callback has no user data: route it to the handle whose
 * call is running on this thread. */
static __thread struct ecap *log_target;

static int fail(struct ecap *h, int err, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	if (err > 0)
		err = -err;
	if (err == 0)
		err = -EINVAL;
	va_start(ap, fmt);
	vsnprintf(h->error, sizeof(h->error), fmt, ap);
	va_end(ap);
	n = strlen(h->error);
	snprintf(h->error + n, sizeof(h->error) - n, ": %s", strerror(-err));
	return err;
}

static int libbpf_log(enum libbpf_print_level level, const char *fmt, va_list ap)
{
	struct ecap *h = log_target;
	va_list copy;
	int n;
	char *grown;

	if (!h || level == LIBBPF_DEBUG)
		return 0;
	va_copy(copy, ap);
	n = vsnprintf(NULL, 0, fmt, copy);
	va_end(copy);
	if (n <= 0)
		return 0;
	grown = realloc(h->log, h->log_len + n + 1);
	if (!grown)
		return 0;
	h->log = grown;
	vsnprintf(h->log + h->log_len, n + 1, fmt, ap);
	h->log_len += n;
	return n;
}

/* Adds text to the handle's log (the verifier's, of a program loaded without libbpf's help). */
static void keep_log(struct ecap *h, const char *text)
{
	size_t n = strlen(text);
	char *grown = n ? realloc(h->log, h->log_len + n + 1) : NULL;

	if (!grown)
		return;
	h->log = grown;
	memcpy(h->log + h->log_len, text, n + 1);
	h->log_len += n;
}

ECAP_API struct ecap *ecap_new(void)
{
	struct ecap *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->epoll_fd = h->wake_fd = h->guard_fd = h->ring.fd = -1;
	libbpf_set_print(libbpf_log);
	return h;
}

ECAP_API int ecap_object_open_mem(struct ecap *h, const void *buf, size_t len, const char *name)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = name);
	int err;

	if (h->obj)
		return fail(h, -EBUSY, "open object \"%s\": the handle already holds one", name);
	h->obj_copy = malloc(len);
	if (!h->obj_copy)
		return fail(h, -ENOMEM, "open object \"%s\"", name);
	memcpy(h->obj_copy, buf, len);
	log_target = h;
	h->obj = bpf_object__open_mem(h->obj_copy, len, &opts);
	log_target = NULL;
	if (!h->obj) {
		err = -errno;
		free(h->obj_copy);
		h->obj_copy = NULL;
		return fail(h, err, "open object \"%s\"", name);
	}
	return 0;
}

ECAP_API int ecap_object_set_rodata(struct ecap *h, const char *var, const void *val, size_t len)
{
	struct bpf_map *map;
	const struct btf_var_secinfo *vs;
	const struct btf_type *sec, *t;
	struct btf *btf;
	void *data;
	size_t size;
	int id, i;

	if (!h->obj)
		return fail(h, -EINVAL, "set \"%s\": no object open", var);
	map = bpf_object__find_map_by_name(h->obj, ".rodata");
	btf = bpf_object__btf(h->obj);
	if (!map || !btf)
		return fail(h, -ENOENT, "set \"%s\": object has no .rodata", var);
	id = btf__find_by_name_kind(btf, ".rodata", BTF_KIND_DATASEC);
	if (id < 0)
		return fail(h, -ENOENT, "set \"%s\": no .rodata in BTF", var);
	sec = btf__type_by_id(btf, id);
	data = bpf_map__initial_value(map, &size);
	vs = btf_var_secinfos(sec);
	for (i = 0; i < btf_vlen(sec); i++, vs++) {
		t = btf__type_by_id(btf, vs->type);
		if (strcmp(btf__name_by_offset(btf, t->name_off), var) != 0)
			continue;
		if (vs->size != len)
			return fail(h, -EINVAL, "set \"%s\": it holds %u bytes, not %zu", var, vs->size, len);
		if (!data || vs->offset + len > size)
			return fail(h, -EFAULT, "set \"%s\": outside .rodata", var);
		memcpy((char *)data + vs->offset, val, len);
		return 0;
	}
	return fail(h, -ENOENT, "set \"%s\": no such global in the object", var);
}

static struct bpf_map *find_map(struct ecap *h, const char *name)
{
	return h->obj ? bpf_object__find_map_by_name(h->obj, name) : NULL;
}

ECAP_API int ecap_map_set_size(struct ecap *h, const char *name, uint32_t max_entries)
{
	struct bpf_map *map = find_map(h, name);
	int err;

	if (!map)
		return fail(h, -ENOENT, "size map \"%s\": no such map", name);
	err = bpf_map__set_max_entries(map, max_entries);
	if (err)
		return fail(h, err, "size map \"%s\" to %u", name, max_entries);
	return 0;
}

/* true if name is one of the NUL-separated names of list (ended by an empty one) */
static bool listed(const char *list, const char *name)
{
	for (const char *p = list; *p; p += strlen(p) + 1)
		if (strcmp(p, name) == 0)
			return true;
	return false;
}

ECAP_API int ecap_object_load_uprobes(struct ecap *h, const char *names)
{
	struct bpf_program *prog;

	if (!h->obj)
		return fail(h, -EINVAL, "choose programs: no object open");
	bpf_object__for_each_program(prog, h->obj) {
		const char *sec = bpf_program__section_name(prog);
		bool uprobe = strncmp(sec, "uprobe", 6) == 0 || strncmp(sec, "uretprobe", 9) == 0;

		if (uprobe && !listed(names, bpf_program__name(prog)))
			bpf_program__set_autoload(prog, false);
	}
	return 0;
}

/* The trim threshold ecap_tune_malloc() set, or 0: glibc's own. */
static size_t tuned_trim;
/* Loads running now (they run on several threads at once). */
static atomic_int loads_running;

/*
 * A load parses the kernel's BTF, megabytes freed before it returns, in the
 * arena of the thread it runs on. glibc gives a thread arena's free top back
 * only on a free above the trim threshold (malloc_trim() does not): under a
 * tuned 64 MiB, each loading thread kept 11 MiB. So while loads run, the
 * threshold is glibc's default again.
 */
static void load_begins(void)
{
	kernel_btf_load_begins();
	if (atomic_fetch_add(&loads_running, 1) == 0 && tuned_trim)
		mallopt(M_TRIM_THRESHOLD, 128 << 10);
}

static void load_ends(void)
{
	/* while the threshold is glibc's: the shared parse's pages go back too */
	kernel_btf_load_ends();
	if (atomic_fetch_sub(&loads_running, 1) == 1 && tuned_trim)
		mallopt(M_TRIM_THRESHOLD, tuned_trim);
}

ECAP_API int ecap_object_load(struct ecap *h)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct bpf_map *events;
	int err;

	if (!h->obj)
		return fail(h, -EINVAL, "load: no object open");
	/*
	 * The verifier gives up with EAGAIN when a signal is pending, and a
	 * host program may take many (a profiler's SIGPROF): hold them until
	 * the object is loaded.
	 */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	log_target = h;
	load_begins();
	err = bpf_object__load(h->obj);
	load_ends();
	log_target = NULL;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return fail(h, err, "load object \"%s\" (the kernel's log follows with --verbose)",
			    bpf_object__name(h->obj));
	free(h->obj_copy);
	h->obj_copy = NULL;
	events = find_map(h, "events");
	if (!events)
		return 0; /* an object without a ring (e.g. empty probes) */
	err = ring_reader_open(&h->ring, bpf_map__fd(events));
	if (err)
		return fail(h, err, "open ring buffer of \"%s\"", bpf_object__name(h->obj));
	h->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	h->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->epoll_fd < 0 || h->wake_fd < 0)
		return fail(h, -errno, "create epoll/eventfd");
	ev.data.fd = bpf_map__fd(events);
	if (epoll_ctl(h->epoll_fd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
		return fail(h, -errno, "watch ring buffer");
	ev.data.fd = h->wake_fd;
	if (epoll_ctl(h->epoll_fd, EPOLL_CTL_ADD, ev.data.fd, &ev) < 0)
		return fail(h, -errno, "watch wake-up eventfd");
	return 0;
}

static struct bpf_program *find_prog(struct ecap *h, const char *prog)
{
	return h->obj ? bpf_object__find_program_by_name(h->obj, prog) : NULL;
}

/* Keeps a new link on the handle; returns its id, or fails naming prog. */
static int keep_link(struct ecap *h, struct bpf_link *link, const char *prog)
{
	for (int i = 0; i < MAX_LINKS; i++) {
		if (!h->links[i] && !h->link_fds[i]) {
			h->links[i] = link;
			h->n_links++;
			return i;
		}
	}
	bpf_link__destroy(link);
	return fail(h, -ENOSPC, "attach %s: too many links", prog);
}

/* keep_link for a link known by its fd only */
static int keep_link_fd(struct ecap *h, int fd, const char *prog)
{
	for (int i = 0; i < MAX_LINKS; i++) {
		if (!h->links[i] && !h->link_fds[i]) {
			h->link_fds[i] = fd + 1;
			h->n_links++;
			return i;
		}
	}
	close(fd);
	return fail(h, -ENOSPC, "attach %s: too many links", prog);
}

ECAP_API int ecap_attach_uprobe(struct ecap *h, const char *prog, const char *path, uint64_t offset,
				int retprobe, int pid, const char *func)
{
	LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = retprobe != 0);
	struct bpf_program *p = find_prog(h, prog);
	struct bpf_link *link;

	if (!p)
		return fail(h, -ENOENT, "attach %s: no such program", prog);
	log_target = h;
	link = bpf_program__attach_uprobe_opts(p, pid > 0 ? pid : -1, path, offset, &opts);
	log_target = NULL;
	if (!link)
		return fail(h, -errno, "attach %s to %s in \"%s\"", retprobe ? "uretprobe" : "uprobe",
			    func && *func ? func : "offset", path);
	return keep_link(h, link, prog);
}

ECAP_API int ecap_program_is_multi(struct ecap *h, const char *prog)
{
	struct bpf_program *p = find_prog(h, prog);

	if (!p)
		return fail(h, -ENOENT, "program %s: no such program", prog);
	return bpf_program__expected_attach_type(p) == (enum bpf_attach_type)ECAP_TRACE_UPROBE_MULTI;
}

ECAP_API int ecap_attach_uprobe_multi(struct ecap *h, const char *prog, const char *path,
				      const uint64_t *offsets, const uint64_t *cookies, uint32_t n,
				      int retprobe, int pid, const char *funcs)
{
	LIBBPF_OPTS(bpf_uprobe_multi_opts, opts, .offsets = (const unsigned long *)offsets,
		    .cookies = (const __u64 *)cookies, .cnt = n, .retprobe = retprobe != 0);
	struct bpf_program *p = find_prog(h, prog);
	struct bpf_link *link;

	if (!p)
		return fail(h, -ENOENT, "attach %s: no such program", prog);
	log_target = h;
	link = bpf_program__attach_uprobe_multi(p, pid > 0 ? pid : -1, path, NULL, &opts);
	log_target = NULL;
	if (!link)
		return fail(h, -errno, "attach %s to %s in \"%s\"", retprobe ? "uretprobes" : "uprobes",
			    funcs && *funcs ? funcs : "offsets", path);
	return keep_link(h, link, prog);
}

ECAP_API int ecap_attach_raw_tp(struct ecap *h, const char *prog, const char *tp)
{
	struct bpf_program *p = find_prog(h, prog);
	struct bpf_link *link;

	if (!p)
		return fail(h, -ENOENT, "attach %s: no such program", prog);
	log_target = h;
	link = bpf_program__attach_raw_tracepoint(p, tp);
	log_target = NULL;
	if (!link)
		return fail(h, -errno, "attach raw tracepoint %s", tp);
	return keep_link(h, link, prog);
}

/* The filter expr in front of prog for a link type, loaded once per handle. */
static int packet_filter(struct ecap *h, const char *prog, const char *expr, int linktype,
			 uint32_t snaplen, uint32_t link_offset)
{
	struct bpf_program *p = find_prog(h, prog);
	struct loaded_filter *f, *grown;
	struct cbpf_insn *insns = NULL;
	char msg[512], *log;
	int n, fd, array_fd;

	if (!p || bpf_program__fd(p) < 0)
		return fail(h, -ENOENT, "packet filter: no loaded program %s", prog);
	for (int i = 0; i < h->n_filters; i++) {
		f = &h->filters[i];
		if (!strcmp(f->prog, prog) && !strcmp(f->expr, expr) && f->linktype == linktype &&
		    f->link_offset == link_offset)
			return f->fd;
	}
	n = pcap_filter_compile(expr, linktype, snaplen, &insns, msg, sizeof(msg));
	if (n < 0)
		return fail(h, n, "filter \"%s\": %s", expr, msg);
	log = calloc(1, 1 << 16);
	fd = packet_filter_load(insns, n, bpf_program__fd(p), bpf_program__expected_attach_type(p),
				link_offset, &array_fd, msg, sizeof(msg), log, log ? 1 << 16 : 0);
	free(insns);
	if (fd < 0) {
		if (log)
			keep_log(h, log);
		free(log);
		return fail(h, fd, "filter \"%s\": %s", expr, msg);
	}
	free(log);
	grown = realloc(h->filters, sizeof(*grown) * (h->n_filters + 1));
	if (!grown) {
		close(fd);
		close(array_fd);
		return fail(h, -ENOMEM, "filter \"%s\"", expr);
	}
	h->filters = grown;
	f = &h->filters[h->n_filters++];
	*f = (struct loaded_filter){ .prog = strdup(prog), .expr = strdup(expr), .linktype = linktype,
				     .link_offset = link_offset, .fd = fd, .array_fd = array_fd };
	return fd;
}

ECAP_API int ecap_filter_check(const char *expr, int linktype, uint32_t snaplen, char *msg, size_t len)
{
	struct cbpf_insn *insns = NULL;
	int n = pcap_filter_compile(expr, linktype, snaplen, &insns, msg, len);

	free(insns);
	return n < 0 ? n : 0;
}

ECAP_API int ecap_filter_test_run(struct ecap *h, const char *prog, const char *expr, int linktype,
				  uint32_t snaplen, uint32_t link_offset, const void *packet, uint32_t len)
{
	int fd = packet_filter(h, prog, expr, linktype, snaplen, link_offset);
	LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = packet, .data_size_in = len);

	if (fd < 0)
		return fd;
	if (bpf_prog_test_run_opts(fd, &opts) < 0)
		return fail(h, -errno, "test run of filter \"%s\"", expr);
	if ((int)opts.retval != -1) /* TCX_NEXT, whatever the verdict */
		return fail(h, -EPROTO, "filter \"%s\" returned %d", expr, (int)opts.retval);
	return 0;
}

ECAP_API int ecap_attach_tcx(struct ecap *h, const char *prog, int ifindex, const char *expr,
			     int linktype, uint32_t snaplen)
{
	struct bpf_program *p = find_prog(h, prog);
	struct bpf_link *link;
	int fd, link_fd;

	if (!p)
		return fail(h, -ENOENT, "attach %s: no such program", prog);
	if (expr && *expr) {
		fd = packet_filter(h, prog, expr, linktype, snaplen, 0);
		if (fd < 0)
			return fd;
		link_fd = bpf_link_create(fd, ifindex, bpf_program__expected_attach_type(p), NULL);
		if (link_fd < 0)
			return fail(h, -errno, "attach the filter of %s to interface %d", prog, ifindex);
		return keep_link_fd(h, link_fd, prog);
	}
	log_target = h;
	link = bpf_program__attach_tcx(p, ifindex, NULL);
	log_target = NULL;
	if (!link)
		return fail(h, -errno, "attach %s to interface %d", prog, ifindex);
	return keep_link(h, link, prog);
}

ECAP_API int ecap_shared_map_new(int type, const char *name, uint32_t key_size, uint32_t value_size,
				 uint32_t entries)
{
	int fd = bpf_map_create((enum bpf_map_type)type, name, key_size, value_size, entries, NULL);

	return fd < 0 ? -errno : fd;
}

ECAP_API int ecap_map_reuse(struct ecap *h, const char *name, int fd)
{
	struct bpf_map *map = find_map(h, name);
	int err;

	if (!map)
		return fail(h, -ENOENT, "share map \"%s\": no such map", name);
	err = bpf_map__reuse_fd(map, fd);
	if (err)
		return fail(h, err, "share map \"%s\"", name);
	return 0;
}

ECAP_API int ecap_map_set_program(struct ecap *h, const char *name, uint32_t slot, const char *prog)
{
	struct bpf_map *map = find_map(h, name);
	struct bpf_program *p = find_prog(h, prog);
	int fd = p ? bpf_program__fd(p) : -1;
	int err;

	if (!map)
		return fail(h, -ENOENT, "program array \"%s\": no such map", name);
	if (fd < 0)
		return fail(h, -ENOENT, "program array \"%s\": no loaded program %s", name, prog);
	err = bpf_map__update_elem(map, &slot, sizeof(slot), &fd, sizeof(fd), 0);
	if (err)
		return fail(h, err, "put %s in slot %u of program array \"%s\"", prog, slot, name);
	return 0;
}

ECAP_API void ecap_fd_close(int fd)
{
	if (fd >= 0)
		close(fd);
}

ECAP_API int ecap_map_update(struct ecap *h, const char *name, const void *key, uint32_t key_size,
			     const void *value, uint32_t value_size)
{
	struct bpf_map *map = find_map(h, name);
	int err;

	if (!map)
		return fail(h, -ENOENT, "update map \"%s\": no such map", name);
	err = bpf_map__update_elem(map, key, key_size, value, value_size, 0);
	if (err)
		return fail(h, err, "update map \"%s\"", name);
	return 0;
}

ECAP_API int ecap_map_delete(struct ecap *h, const char *name, const void *key, uint32_t key_size)
{
	struct bpf_map *map = find_map(h, name);
	int err;

	if (!map)
		return fail(h, -ENOENT, "delete from map \"%s\": no such map", name);
	err = bpf_map__delete_elem(map, key, key_size, 0);
	if (err && err != -ENOENT)
		return fail(h, err, "delete from map \"%s\"", name);
	return 0;
}

ECAP_API int ecap_map_keys(struct ecap *h, const char *name, void *out, uint32_t key_size,
			   uint32_t max)
{
	struct bpf_map *map = find_map(h, name);
	uint8_t *keys = out;
	uint32_t n = 0;
	int err;

	if (!map)
		return fail(h, -ENOENT, "list map \"%s\": no such map", name);
	if (bpf_map__key_size(map) != key_size)
		return fail(h, -EINVAL, "list map \"%s\": keys are %u bytes, not %u", name,
			    bpf_map__key_size(map), key_size);
	while (n < max) {
		const void *prev = n ? keys + (size_t)(n - 1) * key_size : NULL;

		err = bpf_map_get_next_key(bpf_map__fd(map), prev, keys + (size_t)n * key_size);
		if (err) {
			if (errno == ENOENT)
				break;
			return fail(h, -errno, "list map \"%s\"", name);
		}
		n++;
	}
	return (int)n;
}

struct detach_job {
	struct ecap *h;
	struct bpf_link *link;
};

static void *detach_in_background(void *arg)
{
	struct detach_job *job = arg;

	bpf_link__destroy(job->link);
	atomic_fetch_sub(&job->h->detaching, 1);
	free(job);
	return NULL;
}

/*
 * Unregistering a uprobe waits for an RCU grace period (tens to hundreds of
 * ms): on the caller's thread that would stall the event loop, and with it
 * every process held for probing. The link is destroyed on a thread of its
 * own; it counts in ecap_link_count until it is gone, and ecap_close waits.
 */
ECAP_API int ecap_detach(struct ecap *h, int link)
{
	struct detach_job *job;
	pthread_attr_t attr;
	pthread_t thread;
	bool started = false;

	if (link < 0 || link >= MAX_LINKS || (!h->links[link] && !h->link_fds[link]))
		return fail(h, -EINVAL, "detach link %d: no such link", link);
	if (h->link_fds[link]) {
		/* a tcx link goes at once: no grace period to wait for */
		close(h->link_fds[link] - 1);
		h->link_fds[link] = 0;
		h->n_links--;
		return 0;
	}
	job = malloc(sizeof(*job));
	if (job) {
		job->h = h;
		job->link = h->links[link];
		atomic_fetch_add(&h->detaching, 1);
		if (pthread_attr_init(&attr) == 0) {
			pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
			started = pthread_create(&thread, &attr, detach_in_background, job) == 0;
			pthread_attr_destroy(&attr);
		}
		if (!started) {
			atomic_fetch_sub(&h->detaching, 1);
			free(job);
		}
	}
	if (!started)
		bpf_link__destroy(h->links[link]);
	h->links[link] = NULL;
	h->n_links--;
	return 0;
}

ECAP_API int ecap_link_count(struct ecap *h)
{
	return h->n_links + atomic_load(&h->detaching);
}

ECAP_API int ecap_ring_poll(struct ecap *h, uint8_t *buf, size_t cap, int timeout_ms)
{
	struct epoll_event evs[2];
	size_t len = 0;
	int n, err;

	if (h->ring.fd < 0)
		return fail(h, -EINVAL, "poll: no ring buffer loaded");
	for (int round = 0; round < 2; round++) {
		err = ring_reader_consume(&h->ring, buf, cap, &len);
		if (err == -ENOSPC)
			return fail(h, err, "poll: a %zu-byte record does not fit a %zu-byte buffer",
				    h->ring.refused, cap);
		if (len > 0 || round == 1 || timeout_ms == 0)
			break;
		n = epoll_wait(h->epoll_fd, evs, 2, timeout_ms);
		if (n < 0 && errno != EINTR)
			return fail(h, -errno, "wait for ring buffer");
		for (int i = 0; i < n; i++) {
			if (evs[i].data.fd == h->wake_fd) {
				uint64_t v;

				if (read(h->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					return fail(h, -errno, "read wake-up eventfd");
			}
		}
	}
	return (int)len;
}

ECAP_API int ecap_wake(struct ecap *h)
{
	uint64_t one = 1;

	if (h->wake_fd < 0)
		return 0;
	if (write(h->wake_fd, &one, sizeof(one)) < 0)
		return fail(h, -errno, "wake poll");
	return 0;
}

ECAP_API void ecap_tune_malloc(void)
{
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	tuned_trim = 16 << 20;
	mallopt(M_TRIM_THRESHOLD, tuned_trim);
}

ECAP_API void ecap_prefetch_kernel_btf(void)
{
	kernel_btf_prefetch();
}

ECAP_API void ecap_release_memory(void)
{
	malloc_trim(0);
}

static unsigned int usr1_count;

static void on_usr1(int sig)
{
	(void)sig;
	__atomic_fetch_add(&usr1_count, 1, __ATOMIC_RELAXED);
}

ECAP_API int ecap_own_sigusr1(void)
{
	struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };

	sigemptyset(&sa.sa_mask);
	return sigaction(SIGUSR1, &sa, NULL) ? -errno : 0;
}

ECAP_API uint32_t ecap_sigusr1_count(void)
{
	return __atomic_load_n(&usr1_count, __ATOMIC_RELAXED);
}

ECAP_API int ecap_num_cpus(void)
{
	return libbpf_num_possible_cpus();
}

ECAP_API uint64_t ecap_monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

ECAP_API int ecap_map_read_percpu(struct ecap *h, const char *name, uint32_t key, uint64_t *out, uint32_t n)
{
	struct bpf_map *map = find_map(h, name);
	int ncpu = libbpf_num_possible_cpus();

	if (!map)
		return fail(h, -ENOENT, "read map \"%s\": no such map", name);
	if (ncpu < 0)
		return fail(h, ncpu, "read map \"%s\": count CPUs", name);
	if ((uint32_t)ncpu > n)
		return fail(h, -ENOSPC, "read map \"%s\": %d CPUs, room for %u", name, ncpu, n);
	if (bpf_map__value_size(map) != sizeof(uint64_t))
		return fail(h, -EINVAL, "read map \"%s\": values are not 8 bytes", name);
	if (bpf_map_lookup_elem(bpf_map__fd(map), &key, out) < 0)
		return fail(h, -errno, "read map \"%s\" key %u", name, key);
	return ncpu;
}

ECAP_API const char *ecap_last_error(struct ecap *h)
{
	return h->error;
}

ECAP_API const char *ecap_log(struct ecap *h)
{
	return h->log ? h->log : "";
}

static void *destroy_link(void *link)
{
	bpf_link__destroy(link);
	return NULL;
}

/*
 * Each uprobe detach waits for an RCU grace period (tens of ms); detaching
 * on one thread each lets the waits overlap, so stopping stays fast.
 */
static void destroy_links(struct ecap *h)
{
	pthread_t threads[MAX_LINKS];
	bool started[MAX_LINKS] = { false };

	for (int i = 0; i < MAX_LINKS; i++) {
		if (h->link_fds[i])
			close(h->link_fds[i] - 1);
		h->link_fds[i] = 0;
		if (!h->links[i])
			continue;
		started[i] = pthread_create(&threads[i], NULL, destroy_link, h->links[i]) == 0;
		if (!started[i])
			bpf_link__destroy(h->links[i]);
		h->links[i] = NULL;
	}
	for (int i = 0; i < MAX_LINKS; i++)
		if (started[i])
			pthread_join(threads[i], NULL);
	h->n_links = 0;
}

/* ffi/guardian.c, built freestanding; scripts/build.ts passes its path. */
__asm__(".section .rodata\n"
	".balign 16\n"
	"guardian_elf:\n"
	".incbin \"" GUARDIAN_ELF "\"\n"
	"guardian_elf_end:\n"
	".previous\n");
extern const char guardian_elf[], guardian_elf_end[];

/*
 * Where our end of the guardian's pipe goes: above any fd ecap opens. At
 * exit the kernel releases a process's files highest fd first (task work
 * runs last queued first), and each uprobe link's release waits for RCU
 * grace periods, 10-20 ms each: with the pipe below the links, the guardian
 * heard of a killed `ecap tls` 0.35-0.65 s after the kill (measured), its
 * held processes stopped all that while. Above them, it hears first.
 */
#define GUARD_FD_MIN 4096

/* fd moved to the lowest free number >= GUARD_FD_MIN, if the limit allows. */
static int raise_fd(int fd)
{
	struct rlimit rl;
	int high;

	if (getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur <= GUARD_FD_MIN)
		return fd;
	high = fcntl(fd, F_DUPFD_CLOEXEC, GUARD_FD_MIN);
	if (high < 0)
		return fd;
	close(fd);
	return high;
}

ECAP_API int ecap_guard(struct ecap *h, const char *name)
{
	struct bpf_map *map = find_map(h, name);
	size_t len = guardian_elf_end - guardian_elf;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	char exe[32], pipe_arg[16], map_arg[16];
	char *argv[] = { "ecap-guardian", pipe_arg, map_arg, NULL };
	char *envp[] = { NULL };
	int fds[2], mem, err;
	sigset_t none;

	if (h->guard_fd >= 0)
		return 0;
	if (!map || bpf_map__fd(map) < 0)
		return fail(h, -ENOENT, "guard: no loaded map \"%s\"", name);
	mem = memfd_create("ecap-guardian", MFD_CLOEXEC);
	if (mem < 0)
		return fail(h, -errno, "guard: memfd_create");
	if (write(mem, guardian_elf, len) != (ssize_t)len) {
		err = -errno;
		close(mem);
		return fail(h, err ? err : -EIO, "guard: writing the guardian");
	}
	if (pipe2(fds, O_CLOEXEC)) {
		err = -errno;
		close(mem);
		return fail(h, err, "guard: pipe");
	}
	/* in the child, the map is fd 3 and the pipe fd 4; nothing else stays open */
	/* the parent's fd: the child closes its own copies before exec */
	snprintf(exe, sizeof(exe), "/proc/%d/fd/%d", (int)getpid(), mem);
	snprintf(pipe_arg, sizeof(pipe_arg), "4");
	snprintf(map_arg, sizeof(map_arg), "3");
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, bpf_map__fd(map), 3);
	posix_spawn_file_actions_adddup2(&fa, fds[0], 4);
	posix_spawn_file_actions_addclosefrom_np(&fa, 5);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&attr, &none);
	/* its own session: signals to ecap's process group do not reach it */
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGMASK);
	err = posix_spawn(&h->guard_pid, exe, &fa, &attr, argv, envp);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(mem);
	close(fds[0]);
	if (err) {
		close(fds[1]);
		return fail(h, -err, "guard: starting the guardian");
	}
	h->guard_fd = raise_fd(fds[1]);
	return 0;
}

static void end_guard(struct ecap *h)
{
	if (h->guard_fd < 0)
		return;
	/* a clean end: what was held was continued; the guardian checks once more */
	if (write(h->guard_fd, "q", 1) != 1) {
		/* it is gone already */
	}
	close(h->guard_fd);
	h->guard_fd = -1;
	waitpid(h->guard_pid, NULL, 0);
}

ECAP_API void ecap_close(struct ecap *h)
{
	if (!h)
		return;
	destroy_links(h);
	while (atomic_load(&h->detaching) > 0)
		usleep(1000);
	end_guard(h);
	for (int i = 0; i < h->n_filters; i++) {
		close(h->filters[i].fd);
		close(h->filters[i].array_fd);
		free(h->filters[i].prog);
		free(h->filters[i].expr);
	}
	free(h->filters);
	ring_reader_close(&h->ring);
	bpf_object__close(h->obj);
	if (h->epoll_fd >= 0)
		close(h->epoll_fd);
	if (h->wake_fd >= 0)
		close(h->wake_fd);
	free(h->obj_copy);
	free(h->log);
	free(h);
}
