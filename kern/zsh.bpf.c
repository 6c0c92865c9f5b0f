// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * zsh: command lines typed into interactive shells, with how they ended.
 *
 * The line editor lives in zle.so, which zsh dlopens. zleread() ends with
 * freeundo() and then zlegetline(), whose return is the finished line; they
 * are only called there in that order, so probing them also sees a line
 * whose zleread() began before ecap attached (a uretprobe on zleread would
 * miss it). The line is streamed at once, in chunks.
 *
 * In the zsh binary, the top-level execode() ("toplevel" context) runs the
 * command; its return reports $? (the global lastval). The shell's exit, an
 * exec, or the next parse_event() when nothing ran (a parse error, an empty
 * line) end a line too.
 * User space joins lines and status by pid.
 */
#include "text_chunks.bpf.h"
#include "shell_pending.bpf.h"

/* zleread's context argument (zsh.h enum ZLCON_*). */
#define ZLCON_SELECT 2
#define ZLCON_VARED 3

/* Link-time addresses in the zsh binary, set by user space: with the address a
 * probe fires at, they locate lastval in a (PIE) process. */
const volatile __u64 execode_vaddr = 0;
const volatile __u64 parse_event_vaddr = 0;
const volatile __u64 lastval_vaddr = 0;

/* A zleread() call in a thread. */
struct zle_call {
	__u32 context;		/* ZLCON_*; 0 when its start was not seen */
	__u32 finishing;	/* freeundo() ran: its zlegetline() returns the line */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct zle_call);
} zle_calls SEC(".maps");

/* Where lastval is, from the run-time address of a function at link-time
 * address `vaddr`. Load biases are page-aligned; the mask also absorbs an ip
 * left just after the breakpoint instruction. */
static __always_inline __u64 lastval_at(struct pt_regs *ctx, __u64 vaddr)
{
	if (!vaddr || !lastval_vaddr)
		return 0;
	return ((PT_REGS_IP(ctx) - vaddr) & ~0xfffULL) + lastval_vaddr;
}

static __always_inline void emit_status(__u64 id, __s32 status, __u32 end)
{
	struct zsh_status st = {};

	fill_hdr(&st.hdr, ECAP_KIND_ZSH_STATUS, id, (__u32)bpf_get_current_uid_gid());
	st.status = status;
	st.end = end;
	emit(&st, sizeof(st));
}

static __always_inline __s32 read_lastval(__u64 addr)
{
	__s64 v = 0;

	if (addr)
		bpf_probe_read_user(&v, sizeof(v), (void *)addr);
	return (__s32)v;
}

SEC("uprobe")
int BPF_KPROBE(uprobe_zleread, void *lp, void *rp, int flags, int context)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct zle_call c = { .context = context };

	bpf_map_update_elem(&zle_calls, &tid, &c, BPF_ANY);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(uprobe_freeundo)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct zle_call fresh = { .finishing = 1 }, *c;

	c = bpf_map_lookup_elem(&zle_calls, &tid);
	if (!c) {
		/* zleread began before ecap: assume a command line */
		bpf_map_update_elem(&zle_calls, &tid, &fresh, BPF_ANY);
		return 0;
	}
	/* vared and select's prompt read input, not commands */
	c->finishing = c->context != ZLCON_VARED && c->context != ZLCON_SELECT;
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_zlegetline, const char *line)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u32 tid = (__u32)id, tgid = id >> 32;
	struct pending fresh = {}, *p;
	struct zle_call *c;

	c = bpf_map_lookup_elem(&zle_calls, &tid);
	if (!c || !c->finishing)
		return 0;
	bpf_map_delete_elem(&zle_calls, &tid);
	if (!line || !process_allowed(id, uid))
		return 0;
	p = pending_get(tgid);
	if (p && p->depth > 0)
		return 0;
	emit_user_text(ECAP_KIND_ZSH_LINE, id, uid, line, TEXT_CHUNKS);
	/* a continuation line keeps what the first one learnt */
	if (!p)
		bpf_map_update_elem(&pending_commands, &tgid, &fresh, BPF_ANY);
	return 0;
}

/* zleread's last call: the end of an EOF or an aborted read too. */
SEC("uprobe")
int BPF_KPROBE(uprobe_forget_edits)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&zle_calls, &tid);
	return 0;
}

/* A new command's parse starts: lines still pending ran nothing. Lines of a
 * multi-line command are read inside one parse_event call. */
SEC("uprobe")
int BPF_KPROBE(uprobe_parse_event)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct pending *p = pending_get(tgid);
	__u32 end;
	__s32 status;

	if (!p || p->depth > 0)
		return 0;
	end = p->error ? ZSH_END_SYNTAX : ZSH_END_NONE;
	status = read_lastval(lastval_at(ctx, parse_event_vaddr));
	bpf_map_delete_elem(&pending_commands, &tgid);
	emit_status(id, status, end);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(uprobe_execode, void *prog, int dont_change_job, int exiting, const char *context)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pending *p = pending_get(tgid);
	char name[9] = {};

	if (!p)
		return 0;
	if (p->depth == 0) {
		/* functions, traps and hooks run execode too: only loop()'s counts */
		if (bpf_probe_read_user_str(name, sizeof(name), context) != sizeof(name))
			return 0;
		if (__builtin_memcmp(name, "toplevel", sizeof(name)))
			return 0;
		p->lastval = lastval_at(ctx, execode_vaddr);
	}
	p->depth++;
	return 0;
}

/* execode nests (eval, functions); the outermost return ends the line. */
SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_execode)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct pending *p = pending_get(id >> 32);
	__s32 status;

	if (!pending_leave(p))
		return 0;
	status = read_lastval(p->lastval);
	if (pending_end(id >> 32))
		emit_status(id, status, ZSH_END_RETURN);
	return 0;
}

/* Errors printed while nothing runs yet come from the parser (or history
 * expansion): the line will not run. */
static __always_inline void mark_error(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pending *p = pending_get(tgid);

	if (p && p->depth == 0)
		p->error = 1;
}

SEC("uprobe")
int BPF_KPROBE(uprobe_zerr)
{
	mark_error();
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(uprobe_zwarn)
{
	mark_error();
	return 0;
}

/*
 * The shell exits (exit, errexit, `exec builtin`, a signal) with a command in
 * flight: the kernel's exit code is its status. zexit() is not enough: zsh
 * also leaves through exit() directly, and zexit() may decline to exit.
 */
SEC("raw_tp/sched_process_exit")
int raw_tp_sched_process_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct task_struct *task;
	int code;

	if ((__u32)id != tgid || !pending_end(tgid))
		return 0;
	task = bpf_get_current_task_btf();
	code = BPF_CORE_READ(task, exit_code);
	/* a shell's convention: 128 + signal for a killed one */
	emit_status(id, code & 0x7f ? 128 + (code & 0x7f) : (code >> 8) & 0xff, ZSH_END_EXIT);
	return 0;
}

/* exec replaces the shell: its command never returns. */
SEC("raw_tp/sched_process_exec")
int raw_tp_sched_process_exec(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (pending_end(id >> 32))
		emit_status(id, 0, ZSH_END_EXEC);
	return 0;
}
