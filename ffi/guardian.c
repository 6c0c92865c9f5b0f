// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * ecap-guardian: continues the processes ecap's BPF programs stopped, if
 * ecap itself dies before it does.
 *
 * When a process maps a library ecap has not probed yet, a BPF program stops
 * it (SIGSTOP) and records its pid in a map; ecap probes the library, sends
 * SIGCONT and removes the pid. If ecap is killed in between, nothing would
 * ever continue that process. This program, started by libecap.so with the
 * map's fd and the read end of a pipe only ecap writes to, waits for the
 * pipe to close (ecap exited, however it died) and continues every pid
 * still in the map. Meanwhile it continues any process held longer than
 * HOLD_MAX_NS: a stalled ecap (stopped, swamped) must not stall the
 * programs the machine starts; such a process may miss its first record.
 *
 * It is built freestanding (no libc, raw syscalls) so it is a few KiB,
 * embedded in libecap.so, and started from a memfd: nothing on disk.
 * Usage: ecap-guardian PIPE_FD MAP_FD
 */
#include <linux/bpf.h>
#include <asm/unistd.h>
#include <asm/signal.h>

#define EINTR 4
#define HOLD_MAX_NS 1500000000LL /* a loaded machine took 460 ms to probe */
#define CHECK_MS 100

static long sys3(long nr, long a, long b, long c)
{
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c)
			 : "rcx", "r11", "memory");
	return ret;
}

static long sys4(long nr, long a, long b, long c, long d)
{
	register long r10 __asm__("r10") = d;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

static int parse_fd(const char *s)
{
	int n = 0;

	if (!s || !*s)
		return -1;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -1;
		n = n * 10 + (*s - '0');
	}
	return n;
}

static long long monotonic_ns(void)
{
	long ts[2];

	sys3(__NR_clock_gettime, 1 /* CLOCK_MONOTONIC */, (long)ts, 0);
	return ts[0] * 1000000000LL + ts[1];
}

/* SIGCONT to every pid in the map (u32 keys, u64 time held) held since
 * before `before`, and forgets them. */
static void continue_held(int map_fd, long long before)
{
	union bpf_attr attr;
	unsigned int key = 0, next;
	unsigned long long since;
	int first = 1;

	for (;;) {
		__builtin_memset(&attr, 0, sizeof(attr));
		attr.map_fd = map_fd;
		attr.key = first ? 0 : (unsigned long)&key;
		attr.next_key = (unsigned long)&next;
		if (sys3(__NR_bpf, BPF_MAP_GET_NEXT_KEY, (long)&attr, sizeof(attr)) != 0)
			return;
		key = next;
		first = 0;
		__builtin_memset(&attr, 0, sizeof(attr));
		attr.map_fd = map_fd;
		attr.key = (unsigned long)&key;
		attr.value = (unsigned long)&since;
		if (sys3(__NR_bpf, BPF_MAP_LOOKUP_ELEM, (long)&attr, sizeof(attr)) != 0 ||
		    (long long)since >= before)
			continue;
		sys3(__NR_kill, key, SIGCONT, 0);
		sys3(__NR_bpf, BPF_MAP_DELETE_ELEM, (long)&attr, sizeof(attr));
	}
}

static void ignore(int sig)
{
	/* struct kernel_sigaction: handler, flags, restorer, mask */
	unsigned long act[4] = { (unsigned long)SIG_IGN, 0, 0, 0 };

	sys4(__NR_rt_sigaction, sig, (long)act, 0, 8);
}

static int guardian(int argc, char **argv)
{
	struct timespec_ {
		long sec, nsec;
	} pause = { 0, 30 * 1000 * 1000 };
	char byte = 0;
	long n;
	int pipe_fd, map_fd;

	if (argc != 3)
		return 2;
	pipe_fd = parse_fd(argv[1]);
	map_fd = parse_fd(argv[2]);
	if (pipe_fd < 0 || map_fd < 0)
		return 2;
	/* a name for ps: exec'd from a memfd, it would be the fd's number */
	sys3(__NR_prctl, 15 /* PR_SET_NAME */, (long)"ecap-guardian", 0);
	/* Ctrl-C reaches ecap's whole process group: ecap decides, not us */
	ignore(SIGINT);
	ignore(SIGTERM);
	ignore(SIGHUP);
	ignore(SIGQUIT);
	ignore(SIGPIPE);
	for (;;) {
		struct {
			int fd;
			short events, revents;
		} p = { pipe_fd, 1 /* POLLIN */, 0 };

		n = sys3(__NR_poll, (long)&p, 1, CHECK_MS);
		if (n == 0) {
			continue_held(map_fd, monotonic_ns() - HOLD_MAX_NS);
			continue;
		}
		if (n < 0) {
			if (n == -EINTR)
				continue;
			break;
		}
		n = sys3(__NR_read, pipe_fd, (long)&byte, 1);
		if (n == 0 || (n < 0 && n != -EINTR))
			break;
	}
	/* 'q' before EOF: ecap closed its capture and continued what it held */
	if (byte != 'q') {
		continue_held(map_fd, 1LL << 62);
		/* a BPF program running as ecap died may add one more */
		sys3(__NR_nanosleep, (long)&pause, 0, 0);
	}
	continue_held(map_fd, 1LL << 62);
	return 0;
}

/* The entry point: no libc, so the stack holds argc and argv as the kernel left them. */
__attribute__((used)) void guardian_start(long *sp)
{
	int code = guardian((int)sp[0], (char **)(sp + 1));

	sys3(__NR_exit_group, code, 0, 0);
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %rbp, %rbp\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call guardian_start\n"
	"	hlt\n");
