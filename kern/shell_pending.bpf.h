/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * A shell's command between the line read and its end, shared by
 * kern/bash.bpf.c and kern/zsh.bpf.c: an entry per shell process while its
 * command is pending, with the depth of the executor's frames open for it
 * (bash: execute_command, zsh: execode), which nest (eval, functions).
 */
#ifndef SHELL_PENDING_BPF_H
#define SHELL_PENDING_BPF_H

struct pending {
	__u32 depth;	/* executor frames open for this line */
	__u32 error;	/* zsh: it printed an error before anything ran */
	__u64 lastval;	/* zsh: where lastval is in this process; 0 until known */
};

/* Shells with a command in flight, by tgid. LRU: a killed shell's entry ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct pending);
} pending_commands SEC(".maps");

static __always_inline struct pending *pending_get(__u32 tgid)
{
	return bpf_map_lookup_elem(&pending_commands, &tgid);
}

/* A frame of the executor returns: true when it was the line's outermost. */
static __always_inline bool pending_leave(struct pending *p)
{
	if (!p || p->depth == 0)
		return false;
	return --p->depth == 0;
}

/* Ends tgid's pending command, if it has one: true if it had. */
static __always_inline bool pending_end(__u32 tgid)
{
	if (!bpf_map_lookup_elem(&pending_commands, &tgid))
		return false;
	bpf_map_delete_elem(&pending_commands, &tgid);
	return true;
}

#endif
