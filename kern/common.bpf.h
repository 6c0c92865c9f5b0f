/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/* Maps, filters and helpers every capture object shares. */
#ifndef ECAP_COMMON_BPF_H
#define ECAP_COMMON_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "ecap.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Records to user space; user space sizes it before load (--mapsize). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 << 20);
} events SEC(".maps");

/* Counters per CPU, indexed by enum ecap_stat: nothing is lost silently. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ECAP_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} ecap_stats SEC(".maps");

/*
 * Process filters, set by user space between open and load; all that are set
 * must hold. -p fills allowed_pids (and --follow-children adds what they fork).
 */
const volatile bool filter_pids_on = false;
const volatile bool follow_children = false;
const volatile __u32 filter_uid = 0;
const volatile bool filter_uid_set = false;
const volatile char filter_comm[ECAP_COMM_LEN] = {};
const volatile bool filter_comm_set = false;
/* --cgroup: the id of that cgroup and its depth below the root, so that
 * processes in cgroups beneath it (a container's own children) match too. */
const volatile __u64 filter_cgroup_id = 0;
const volatile __u32 filter_cgroup_level = 0;

/* Processes -p allows, by tgid. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, __u8);
} allowed_pids SEC(".maps");

/* Keeps the record types in BTF; never read. */
const volatile struct ecap_types *const ecap_types_anchor = 0;

static __always_inline void stat_add(__u32 slot, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&ecap_stats, &slot);

	if (v)
		*v += n;
}

/* The process's name: its thread group leader's comm (not the thread's). */
static __always_inline void process_name(char name[ECAP_COMM_LEN])
{
	struct task_struct *leader = BPF_CORE_READ(bpf_get_current_task_btf(), group_leader);

	if (bpf_probe_read_kernel(name, ECAP_COMM_LEN, &leader->comm))
		name[0] = 0;
}

/* -c/--comm names a process: Firefox's TLS runs in its "Socket Thread". */
static __always_inline bool comm_allowed(void)
{
	char comm[ECAP_COMM_LEN];

	process_name(comm);
#pragma unroll
	for (int i = 0; i < ECAP_COMM_LEN; i++) {
		if (comm[i] != filter_comm[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

/* The filters of every module; cheapest checks first. */
static __always_inline bool process_allowed(__u64 pid_tgid, __u32 uid)
{
	__u32 tgid = pid_tgid >> 32;

	if (filter_uid_set && uid != filter_uid)
		return false;
	if (filter_pids_on && !bpf_map_lookup_elem(&allowed_pids, &tgid))
		return false;
	if (filter_cgroup_id &&
	    bpf_get_current_ancestor_cgroup_id(filter_cgroup_level) != filter_cgroup_id)
		return false;
	if (filter_comm_set && !comm_allowed())
		return false;
	return true;
}

static __always_inline void fill_hdr(struct ecap_hdr *h, __u32 kind, __u64 pid_tgid, __u32 uid)
{
	h->kind = kind;
	h->pid = pid_tgid >> 32;
	h->tid = (__u32)pid_tgid;
	h->uid = uid;
	h->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	h->cgroup_id = bpf_get_current_cgroup_id();
	if (h->tid != h->pid)
		process_name(h->process);
	else
		h->process[0] = 0;
}

/* Writes a record, counting it as sent or lost. */
/*
 * Bytes waiting in the ring before a record wakes the reader; 0 wakes it for
 * every record. A wakeup is an interrupt, costly under virtualization, and
 * user space polls every 50 ms anyway: below this a record waits that long.
 */
const volatile __u32 wakeup_bytes = 0;

/*
 * Bytes waiting in the ring above which big records are kept short (user
 * space sets half the ring): a TLS call keeps its first 1 KiB, a packet its
 * headers (tls_data.bpf.h, tls_packets.bpf.h). Every call is still reported
 * with its length, so an HTTP exchange stays whole and only its body loses
 * bytes, where a full ring would lose records outright.
 */
const volatile __u64 shed_above_bytes = ~0ULL;

static __always_inline bool ring_filling(void)
{
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) > shed_above_bytes;
}

static __always_inline __u64 wakeup_flag(void)
{
	if (!wakeup_bytes)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes ? BPF_RB_FORCE_WAKEUP
									      : BPF_RB_NO_WAKEUP;
}

/* Sends a record; false (and counted as lost) when the ring has no room. */
static __always_inline bool emit(void *rec, __u64 size)
{
	if (bpf_ringbuf_output(&events, rec, size, wakeup_flag()) == 0) {
		stat_add(ECAP_STAT_EVENTS, 1);
		return true;
	}
	stat_add(ECAP_STAT_LOST, 1);
	return false;
}

/*
 * Following the machine. These programs are in every object; user space
 * attaches them when a module follows new processes (or --follow-children).
 *
 * A library is mapped by the dynamic loader after exec, so exec alone comes
 * too early to see it: the loader's mmap(PROT_EXEC) of a file is the first
 * moment it exists in the process, and the last before its code can run.
 * When that file is named like a target (watch_prefix) and user space has
 * not decided about it yet, the process is stopped (SIGSTOP, taking effect
 * as the syscall returns) and user space probes the file, then sends
 * SIGCONT: the first TLS record of a process started after ecap is seen.
 */
const volatile char watch_prefix[WATCH_PREFIXES][WATCH_NAME_LEN] = {};
const volatile __u32 watch_prefix_len[WATCH_PREFIXES] = {};
/* Report execs of binaries not known yet (a TLS library linked statically). */
const volatile bool watch_exec = false;
/* An unknown binary this big or bigger is held at exec until it is read. */
const volatile __s64 watch_exec_hold_bytes = 0x7fffffffffffffffLL;

#define ECAP_SIGSTOP 19
#define ECAP_PROT_EXEC 4
#define ECAP_NR_MMAP 9 /* x86_64, like the syscall numbers of kern/tls.bpf.c */

/* What user space decided about each file (enum watch_state). LRU: a file
 * evicted is only asked about again (its entries are made at load: 4,096
 * distinct executables and libraries are plenty). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct watch_file_key);
	__type(value, __u8);
} watch_files SEC(".maps");

/* Processes that map a file probed on demand: their exit or exec is reported.
 * One evicted only keeps its file probed after its exit (entries are made at
 * load: 65,536 took 8 ms). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u8);
} watch_tgids SEC(".maps");

static __always_inline void watch_key(struct watch_file_key *k, struct file *file)
{
	k->ino = BPF_CORE_READ(file, f_inode, i_ino);
	k->dev = BPF_CORE_READ(file, f_inode, i_sb, s_dev);
	k->pad = 0;
}

/* ecap's own process: never stopped. */
const volatile __u32 ecap_tgid = 0;

/* Processes stopped and not yet continued: if ecap dies before it sends
 * SIGCONT, its guardian process (ffi/guardian.c) continues them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64); /* bpf_ktime_get_ns() when stopped */
} held_tgids SEC(".maps");

/*
 * Whether stopping the current process would be noticed. A stop is
 * reported to the parent: su, sudo, runuser and doas then stop themselves
 * (forever: only their child is continued), and a job-control shell puts
 * its foreground job in the background. Only a process on a terminal has
 * such a shell above it.
 */
static __always_inline bool stop_is_seen(bool on_tty_too)
{
	struct task_struct *task = bpf_get_current_task_btf();
	char parent[8] = {};

	if (on_tty_too && BPF_CORE_READ(task, signal, tty))
		return true;
	BPF_CORE_READ_STR_INTO(&parent, task, real_parent, comm);
	return !__builtin_memcmp(parent, "su\0", 3) || !__builtin_memcmp(parent, "sudo\0", 5) ||
	       !__builtin_memcmp(parent, "runuser", 8) || !__builtin_memcmp(parent, "doas\0", 5);
}

/* Stops the current process and notes it in held_tgids (first: the
 * guardian must know of every process stopped). */
static __always_inline bool hold_process(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 now = bpf_ktime_get_ns();

	if (tgid == ecap_tgid)
		return false; /* ecap itself, loading a library: it would wait for itself */
	if (bpf_map_update_elem(&held_tgids, &tgid, &now, BPF_ANY))
		return false;
	if (bpf_send_signal(ECAP_SIGSTOP) == 0)
		return true;
	bpf_map_delete_elem(&held_tgids, &tgid);
	return false;
}

/* Sends a watch record; with stop, stops the process once it is sent (never
 * a process user space will not hear of). */
static __always_inline void watch_emit(__u32 what, struct watch_file_key *k, struct file *file,
				       int fd, bool stop)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ecap_watch *w = bpf_ringbuf_reserve(&events, sizeof(*w), 0);
	const unsigned char *name;

	if (!w) {
		stat_add(ECAP_STAT_LOST, 1);
		return;
	}
	fill_hdr(&w->hdr, ECAP_KIND_WATCH, id, (__u32)bpf_get_current_uid_gid());
	w->ino = k ? k->ino : 0;
	w->dev = k ? k->dev : 0;
	w->fd = fd;
	w->what = what;
	w->name[0] = 0;
	if (file) {
		name = BPF_CORE_READ(file, f_path.dentry, d_name.name);
		bpf_probe_read_kernel_str(w->name, sizeof(w->name), name);
	}
	w->stopped = stop && !stop_is_seen(what == WATCH_EXEC) && hold_process();
	/* a held process waits for this record: wake the reader now, not at
	 * its next poll (records before it may have been sent without a wakeup) */
	bpf_ringbuf_submit(w, w->stopped ? BPF_RB_FORCE_WAKEUP : 0);
	stat_add(ECAP_STAT_EVENTS, 1);
}

static __always_inline void watch_uses(struct watch_file_key *k, struct file *file)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u8 one = 1;

	bpf_map_update_elem(&watch_tgids, &tgid, &one, BPF_ANY);
	watch_emit(WATCH_USES, k, file, -1, false);
}

static __always_inline bool name_watched(struct file *file)
{
	char name[WATCH_NAME_LEN];
	const unsigned char *p = BPF_CORE_READ(file, f_path.dentry, d_name.name);
	bool match[WATCH_PREFIXES];

	if (!watch_prefix_len[0] || bpf_probe_read_kernel_str(name, sizeof(name), p) < 0)
		return false;
#pragma unroll
	for (int w = 0; w < WATCH_PREFIXES; w++)
		match[w] = watch_prefix_len[w] != 0;
	/* every prefix at once: a loop without early exits unrolls */
#pragma unroll
	for (int i = 0; i < WATCH_NAME_LEN; i++) {
#pragma unroll
		for (int w = 0; w < WATCH_PREFIXES; w++)
			if (i < watch_prefix_len[w] && name[i] != watch_prefix[w][i])
				match[w] = false;
	}
#pragma unroll
	for (int w = 0; w < WATCH_PREFIXES; w++)
		if (match[w])
			return true;
	return false;
}

/* The file behind fd in the current process, or NULL. */
static __always_inline struct file *current_fd_file(int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;

	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return NULL;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]))
		return NULL;
	return file;
}

/*
 * Set when the module's own sys_enter program calls watch_mmap() (and
 * ecap_watch_mmap is not attached): each program on sys_enter costs ~0.1 µs
 * on every syscall of every process, mostly in the dispatch.
 */
const volatile bool watch_mmap_inline = false;

/*
 * Captures started together (`ecap tls`: one per TLS library family) run
 * their sys_enter programs as one chain: the first is attached, and each
 * tail-calls the next of this array shared by all (a tail call costs a few
 * ns, a program attached to the tracepoint ~0.1 µs on every syscall: four
 * attached took a write(2) from 1.18 to 1.66 µs here). sys_enter_slot is
 * this object's place in it.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, SYS_ENTER_CHAIN_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} sys_enter_chain SEC(".maps");

const volatile bool sys_enter_chained = false;
const volatile __u32 sys_enter_slot = 0;

/*
 * Data and handshake calls in progress whose socket a syscall inside them
 * may name: while none, sys_enter programs return at once, and the chain's
 * first does not call the others (on each syscall, each one run cost
 * ~70 ns here, its body all but empty). Shared by a chain's objects, like
 * the chain; a count too high only costs time, so entries dropped unseen
 * (an LRU eviction, a process gone mid-call) need not be counted.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __s64);
} calls_in_flight SEC(".maps");

static __always_inline void calls_in_flight_add(__s64 n)
{
	__u32 zero = 0;
	__s64 *count = bpf_map_lookup_elem(&calls_in_flight, &zero);

	if (count)
		__sync_fetch_and_add(count, n);
}

static __always_inline bool any_call_in_flight(void)
{
	__u32 zero = 0;
	__s64 *count = bpf_map_lookup_elem(&calls_in_flight, &zero);

	return count && *count > 0;
}

/* Ends a sys_enter program: runs the chain's next program, if any has work. */
static __always_inline int sys_enter_next(struct bpf_raw_tracepoint_args *ctx)
{
	if (!sys_enter_chained)
		return 0;
	if (ctx->args[1] != ECAP_NR_MMAP && !any_call_in_flight())
		return 0;
	for (__u32 i = sys_enter_slot + 1; i < SYS_ENTER_CHAIN_SLOTS; i++)
		bpf_tail_call(ctx, &sys_enter_chain, i); /* returns only for an empty slot */
	return 0;
}

static __always_inline int watch_mmap(struct bpf_raw_tracepoint_args *ctx)
{
	struct watch_file_key k;
	struct pt_regs *regs;
	struct file *file;
	__u8 *state;
	int fd;

	if (ctx->args[1] != ECAP_NR_MMAP)
		return 0;
	regs = (struct pt_regs *)ctx->args[0];
	if (!(PT_REGS_PARM3_CORE_SYSCALL(regs) & ECAP_PROT_EXEC))
		return 0;
	fd = (int)PT_REGS_PARM5_CORE_SYSCALL(regs);
	file = current_fd_file(fd);
	if (!file)
		return 0;
	watch_key(&k, file);
	state = bpf_map_lookup_elem(&watch_files, &k);
	if (state && *state == WATCH_FILE_PROBED) {
		watch_uses(&k, file);
		return 0;
	}
	if ((state && *state != WATCH_FILE_STOP) || !name_watched(file))
		return 0;
	if (!process_allowed(bpf_get_current_pid_tgid(), (__u32)bpf_get_current_uid_gid()))
		return 0;
	watch_emit(WATCH_MAPPED, &k, file, fd, true);
	return 0;
}

SEC("raw_tp/sys_enter")
int ecap_watch_mmap(struct bpf_raw_tracepoint_args *ctx)
{
	watch_mmap(ctx);
	return sys_enter_next(ctx);
}

SEC("raw_tp/sched_process_exec")
int BPF_PROG(ecap_watch_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct watch_file_key k;
	struct file *file;
	__u8 *state;

	/* the old image's mappings are gone with it */
	if (bpf_map_lookup_elem(&watch_tgids, &tgid)) {
		bpf_map_delete_elem(&watch_tgids, &tgid);
		watch_emit(WATCH_GONE, NULL, NULL, -1, false);
	}
	if (!watch_exec)
		return 0;
	file = BPF_CORE_READ(bprm, file);
	if (!file)
		return 0;
	watch_key(&k, file);
	state = bpf_map_lookup_elem(&watch_files, &k);
	if (state && *state == WATCH_FILE_PROBED) {
		watch_uses(&k, file);
		return 0;
	}
	if (state && *state != WATCH_FILE_STOP)
		return 0;
	if (!process_allowed(bpf_get_current_pid_tgid(), (__u32)bpf_get_current_uid_gid()))
		return 0;
	/* stopped until user space has looked at the binary (a few ms, once
	 * per file): a target linked in statically (node, a Go program) runs
	 * no code unprobed. A file too small to hold a target (most commands
	 * run) and one run from a terminal (see stop_is_seen) are only
	 * reported */
	watch_emit(state ? WATCH_MAPPED : WATCH_EXEC, &k, file, -1,
		   state || BPF_CORE_READ(file, f_inode, i_size) >= watch_exec_hold_bytes);
	return 0;
}

SEC("raw_tp/sched_process_exit")
int ecap_watch_exit(void *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	/* the last thread of the process: signal->live dropped to 0 before this */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	if (follow_children)
		bpf_map_delete_elem(&allowed_pids, &tgid);
	if (bpf_map_lookup_elem(&watch_tgids, &tgid)) {
		bpf_map_delete_elem(&watch_tgids, &tgid);
		watch_emit(WATCH_GONE, NULL, NULL, -1, false);
	}
	return 0;
}

/* --follow-children: what an allowed process forks is allowed too. */
SEC("raw_tp/sched_process_fork")
int BPF_PROG(ecap_follow_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = BPF_CORE_READ(parent, tgid), ctgid = BPF_CORE_READ(child, tgid);
	__u8 one = 1;

	if (ptgid == ctgid || !bpf_map_lookup_elem(&allowed_pids, &ptgid))
		return 0;
	bpf_map_update_elem(&allowed_pids, &ctgid, &one, BPF_ANY);
	return 0;
}

#endif
