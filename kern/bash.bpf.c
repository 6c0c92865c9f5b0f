// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * bash: command lines typed into interactive shells, with how they ended.
 *
 * readline's return streams the line to user space at once (in chunks, so no
 * length limit but a 1 MiB cap); the outermost execute_command's return, or
 * exit_shell, exec, a syntax error or the next parse, then reports how that
 * command ended.
 * User space joins the two by pid.
 */
#include "text_chunks.bpf.h"
#include "shell_pending.bpf.h"

static __always_inline void emit_status(__u64 id, __s32 status, __u32 end)
{
	struct bash_status st = {};

	fill_hdr(&st.hdr, ECAP_KIND_BASH_STATUS, id, (__u32)bpf_get_current_uid_gid());
	st.status = status;
	st.end = end;
	emit(&st, sizeof(st));
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_readline, const char *line)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u32 tgid = id >> 32;
	struct pending fresh = {}, *p;

	if (!line || !process_allowed(id, uid))
		return 0;
	/* readline inside a running command (read -e) is input, not a command */
	p = pending_get(tgid);
	if (p && p->depth > 0)
		return 0;
	emit_user_text(ECAP_KIND_BASH_LINE, id, uid, line, TEXT_CHUNKS);
	bpf_map_update_elem(&pending_commands, &tgid, &fresh, BPF_ANY);
	return 0;
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_execute_command)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct pending *p = pending_get(tgid);

	if (p)
		p->depth++;
	return 0;
}

/* execute_command nests (lists, loops); the outermost return ends the line. */
SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_execute_command, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (pending_leave(pending_get(id >> 32)) && pending_end(id >> 32))
		emit_status(id, ret, BASH_END_RETURN);
	return 0;
}

/* Syntax errors are reported through parser_error (yyerror is inlined). */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_parser_error)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct pending *p = pending_get(tgid);

	if (!p || p->depth > 0)
		return 0;
	bpf_map_delete_elem(&pending_commands, &tgid);
	emit_status(id, 2, BASH_END_SYNTAX);
	return 0;
}

/* The next command's parse starts: lines still pending ran nothing. Lines of
 * a multi-line command are read inside one parse_command call. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_parse_command)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct pending *p = pending_get(tgid);

	if (!p || p->depth > 0)
		return 0;
	bpf_map_delete_elem(&pending_commands, &tgid);
	emit_status(id, 0, BASH_END_NONE);
	return 0;
}

/* exit (and errexit) longjmp past execute_command's return to exit_shell. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_exit_shell, int status)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (pending_end(id >> 32))
		emit_status(id, status, BASH_END_EXIT);
	return 0;
}

/* exec replaces the shell: its command never returns. Only a successful exec
 * gets here, unlike a probe on exec_builtin. */
SEC("raw_tp/sched_process_exec")
int raw_tp_sched_process_exec(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();

	if (pending_end(id >> 32))
		emit_status(id, 0, BASH_END_EXEC);
	return 0;
}
