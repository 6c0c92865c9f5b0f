// SPDX-License-Identifier: BSD-3-Clause
/*
 * libbpf parses the kernel's BTF (/sys/kernel/btf/vmlinux: 6 MB, 125k types,
 * 40-80 ms here) in every bpf_object__load, and `ecap tls` loads four
 * objects at once on two CPUs. The build routes libbpf's calls to
 * btf__load_vmlinux_btf() here (-Wl,--wrap): while loads run, each gets an
 * empty split BTF over one shared parse. Lookups in a split BTF fall through
 * to its base, so CO-RE finds the same types; libbpf frees the split as its
 * own and never touches the base.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include "kernel_btf.h"

struct btf *__real_btf__load_vmlinux_btf(void);
struct btf *__wrap_btf__load_vmlinux_btf(void);

/* held while parsing, so that a load wanting the parse waits for it */
static pthread_mutex_t parse_lock = PTHREAD_MUTEX_INITIALIZER;
/* guards the three below; never held for long (the JS thread takes it) */
static pthread_mutex_t state_lock = PTHREAD_MUTEX_INITIALIZER;
/* the shared parse, or NULL */
static struct btf *parsed;
/* loads running, plus one while a prefetch waits for its load */
static int users;
static bool prefetch_waits;

/*
 * The parse, made unless done (the caller holds parse_lock): NULL with errno
 * on failure, or when no load wants it any more.
 */
static struct btf *parse_locked(void)
{
	struct btf *btf, *kept = NULL;

	pthread_mutex_lock(&state_lock);
	btf = parsed;
	pthread_mutex_unlock(&state_lock);
	if (btf)
		return btf;
	btf = __real_btf__load_vmlinux_btf();
	if (!btf)
		return NULL;
	pthread_mutex_lock(&state_lock);
	if (users > 0) {
		parsed = kept = btf;
		btf = NULL;
	}
	pthread_mutex_unlock(&state_lock);
	btf__free(btf); /* no one wants it any more (a prefetch whose loads ended) */
	return kept;
}

struct btf *__wrap_btf__load_vmlinux_btf(void)
{
	struct btf *base, *view = NULL;
	int err = 0, running;

	pthread_mutex_lock(&state_lock);
	running = users;
	pthread_mutex_unlock(&state_lock);
	if (running == 0) /* not within a load (none calls this elsewhere today) */
		return __real_btf__load_vmlinux_btf();
	/* this load counts in users: the parse stays until it ends */
	pthread_mutex_lock(&parse_lock);
	base = parse_locked();
	if (!base)
		err = -errno;
	else if (!(view = btf__new_empty_split(base)))
		err = -errno;
	pthread_mutex_unlock(&parse_lock);
	errno = -err;
	return view;
}

void kernel_btf_load_begins(void)
{
	pthread_mutex_lock(&state_lock);
	users++;
	pthread_mutex_unlock(&state_lock);
}

void kernel_btf_load_ends(void)
{
	struct btf *done = NULL;

	pthread_mutex_lock(&state_lock);
	users--;
	if (prefetch_waits) {
		prefetch_waits = false;
		users--;
	}
	if (users == 0) {
		done = parsed;
		parsed = NULL;
	}
	pthread_mutex_unlock(&state_lock);
	btf__free(done);
}

static void *prefetch_thread(void *arg)
{
	bool wanted;

	(void)arg;
	pthread_mutex_lock(&parse_lock);
	pthread_mutex_lock(&state_lock);
	/* a load that came first has parsed (or has ended: then no one needs it) */
	wanted = prefetch_waits && !parsed;
	pthread_mutex_unlock(&state_lock);
	if (wanted)
		parse_locked();
	pthread_mutex_unlock(&parse_lock);
	return NULL;
}

void kernel_btf_prefetch(void)
{
	pthread_attr_t attr;
	pthread_t thread;
	sigset_t all, old;
	bool started;

	pthread_mutex_lock(&state_lock);
	started = prefetch_waits;
	if (!started) {
		prefetch_waits = true;
		users++;
	}
	pthread_mutex_unlock(&state_lock);
	if (started)
		return;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/* the thread takes no signal of the host's (it inherits this mask) */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	/* no thread: the load parses, as it would have */
	pthread_create(&thread, &attr, prefetch_thread, NULL);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
}
