// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * postgres: every statement a PostgreSQL backend runs, through the simple
 * and the extended protocol, with its duration and whether it failed.
 *
 * Only exported functions are hooked, so a stripped server works: Debian's
 * postgres exports neither exec_simple_query nor exec_parse/bind/execute_
 * message, and pg_parse_query is not enough (it is not called when a
 * prepared statement runs again, and SQL functions call it nested).
 *
 *  pgstat_report_activity(STATE_RUNNING, text)
 *	The main loop starts on a Query, Parse, Bind or Execute message; text
 *	is what it runs (Bind and Execute pass the prepared statement's text).
 *	Opens a statement, or updates the text of the open one.
 *  pgstat_report_activity(STATE_IDLE*, NULL)
 *	The backend goes idle, right before ReadyForQuery: after a Query, or at
 *	Sync. Ends the statement (one trap fewer than probing ReadyForQuery).
 *  PortalRun
 *	It executes (once per statement of a Query string, once per Execute).
 *	The text is sent now, from the last text reported running.
 *  PortalErrorCleanup
 *	The main loop's error recovery: an ERROR nobody caught below it, so
 *	not errors a PL/pgSQL EXCEPTION block handles. Marks it failed (and
 *	sends the text: a syntax error never reaches PortalRun).
 *
 * A running report after the open statement ran ends it too: several
 * statements pipelined before one Sync are reported one by one. Work that
 * neither ran nor failed (a Parse alone, an empty query) is not reported.
 * A backend's process title ("postgres: USER DB HOST ...") is sent once per
 * backend, so user space learns the database user without struct offsets.
 */
#include "text_chunks.bpf.h"

/* BackendState in utils/backend_status.h, unchanged since 9.2. */
#define PG_STATE_IDLE 1
#define PG_STATE_RUNNING 2
#define PG_STATE_IDLE_IN_TRANSACTION 3
#define PG_STATE_IDLE_IN_TRANSACTION_ABORTED 5

/* A backend's statement, from its first running report to its end. */
struct pg_stmt {
	__u64 start_ns;
	__u64 text;	/* the last text reported running: what PortalRun runs */
	__u8 sent;	/* its text was sent: it ran or it failed */
	__u8 failed;
	__u8 pad[6];
};

/* Open statements by backend pid. LRU: a killed backend's entry ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct pg_stmt);
} pg_stmts SEC(".maps");

/* Backends whose title was sent, by pid; the value is the task's start
 * time, so a reused pid sends its own. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} pg_backends SEC(".maps");

static __always_inline void end_stmt(__u64 id, __u32 tgid, struct pg_stmt *s)
{
	struct query_done d = {};

	if (s->sent) {
		fill_hdr(&d.hdr, ECAP_KIND_PG_DONE, id, (__u32)bpf_get_current_uid_gid());
		d.duration_ns = d.hdr.ts_ns - s->start_ns;
		d.conn = tgid; /* a backend serves one connection */
		d.result = s->failed ? QUERY_ERROR : QUERY_OK;
		emit(&d, sizeof(d));
	}
	bpf_map_delete_elem(&pg_stmts, &tgid);
}

static __always_inline void send_text(__u64 id, struct pg_stmt *s)
{
	if (s->sent)
		return;
	s->sent = 1;
	emit_user_text(ECAP_KIND_PG_QUERY, id, (__u32)bpf_get_current_uid_gid(),
		       (const char *)s->text, TEXT_CHUNKS);
}

/* The title lives where argv was: postgres overwrites it (ps_status.c). */
static __always_inline void send_title(__u64 id, __u32 tgid, __u32 uid)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u64 start = BPF_CORE_READ(task, start_time);
	__u64 *seen = bpf_map_lookup_elem(&pg_backends, &tgid);

	if (seen && *seen == start)
		return;
	bpf_map_update_elem(&pg_backends, &tgid, &start, BPF_ANY);
	emit_user_text(ECAP_KIND_PG_BACKEND, id, uid,
		       (const char *)BPF_CORE_READ(task, mm, arg_start), 1);
}

SEC("uprobe")
int BPF_KPROBE(uprobe_report_activity, int state, const char *text)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u32 tgid = id >> 32;
	struct pg_stmt fresh = {}, *s;

	if (state == PG_STATE_IDLE || state == PG_STATE_IDLE_IN_TRANSACTION ||
	    state == PG_STATE_IDLE_IN_TRANSACTION_ABORTED) {
		/*
		 * The backend reports itself idle right before ReadyForQuery: the
		 * statement ends here, for no trap of its own (each costs ~5 µs).
		 */
		s = bpf_map_lookup_elem(&pg_stmts, &tgid);
		if (s)
			end_stmt(id, tgid, s);
		return 0;
	}
	if (state != PG_STATE_RUNNING || !text || !process_allowed(id, uid))
		return 0;
	s = bpf_map_lookup_elem(&pg_stmts, &tgid);
	if (s && s->sent) {
		/* the next message of a pipeline: the open statement ran */
		end_stmt(id, tgid, s);
		s = NULL;
	}
	if (s) {
		/* Bind or Execute after Parse: the same statement goes on */
		s->text = (__u64)text;
		return 0;
	}
	fresh.start_ns = bpf_ktime_get_ns();
	fresh.text = (__u64)text;
	bpf_map_update_elem(&pg_stmts, &tgid, &fresh, BPF_ANY);
	send_title(id, tgid, uid);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(uprobe_portal_run)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct pg_stmt *s = bpf_map_lookup_elem(&pg_stmts, &tgid);

	if (s)
		send_text(id, s);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(uprobe_portal_error_cleanup)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct pg_stmt *s = bpf_map_lookup_elem(&pg_stmts, &tgid);

	if (!s)
		return 0;
	/* the text is still there: MessageContext is reset after recovery */
	send_text(id, s);
	s->failed = 1;
	return 0;
}

/* A backend that exits inside a statement (FATAL, killed) ends it failed. */
SEC("raw_tp/sched_process_exit")
int raw_tp_sched_process_exit(void *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;
	struct pg_stmt *s;

	if (tgid != (__u32)id)
		return 0;
	s = bpf_map_lookup_elem(&pg_stmts, &tgid);
	if (s) {
		s->failed = 1;
		end_stmt(id, tgid, s);
	}
	bpf_map_delete_elem(&pg_backends, &tgid);
	return 0;
}
