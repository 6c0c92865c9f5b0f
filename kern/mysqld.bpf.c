// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * mysqld: queries a MySQL or MariaDB server executes, with how they ended
 * and how long they took.
 *
 * dispatch_command runs one client command on the connection's thread. Its
 * entry streams the text of a COM_QUERY or COM_STMT_PREPARE (the packet has
 * an explicit length, so any bytes up to the 1 MiB cap) and notes the start;
 * its return sends a query_done. A COM_STMT_EXECUTE packet holds only a
 * statement id: its text comes from general_log_write, which the server
 * calls for every execution whether or not the general log is on. An error
 * sent to the client while a command runs marks that command failed:
 * dispatch_command's own return value says whether to close the connection,
 * not whether the query worked. User space joins the records by thread.
 */
#include "text_chunks.bpf.h"

/*
 * Where THD keeps the connection id (CONNECTION_ID()), read by user space
 * from the server's thd_get_thread_id(); size 0 when unknown, and then the
 * thread id stands in for it (one thread per connection by default). A map,
 * not a constant: the object loads while user space reads the server.
 */
struct thd_id_at {
	__s32 offset;
	__u32 size; /* 4 or 8; 0: unknown */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct thd_id_at);
} thd_id SEC(".maps");

/* A command running on a server thread. */
struct inflight {
	__u64 start_ns;
	__s64 conn;
	__u32 command;	/* enum mysql_command */
	__u32 failed;	/* an error was sent for it */
	__u32 has_text;	/* its text was sent */
};

/* Commands in flight, by thread id. LRU: a killed thread's entry ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct inflight);
} inflight SEC(".maps");

static __always_inline __s64 conn_of(const void *thd, __u64 id)
{
	__u32 zero = 0;
	struct thd_id_at *at = bpf_map_lookup_elem(&thd_id, &zero);
	__u64 v = 0;

	if (!at || at->size == 0 || !thd)
		return (__u32)id;
	if (at->size == 4) {
		__u32 v32 = 0;

		if (bpf_probe_read_user(&v32, sizeof(v32), thd + at->offset))
			return -1;
		return v32;
	}
	if (bpf_probe_read_user(&v, sizeof(v), thd + at->offset))
		return -1;
	return (__s64)v;
}

static __always_inline void begin(__u32 command, const void *thd, const char *text, __u64 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 uid = (__u32)bpf_get_current_uid_gid();
	__u32 tid = (__u32)id;
	struct inflight f = {};

	if (command != MYSQL_COM_QUERY && command != MYSQL_COM_STMT_PREPARE &&
	    command != MYSQL_COM_STMT_EXECUTE)
		return;
	if (!process_allowed(id, uid))
		return;
	f.command = command;
	f.conn = conn_of(thd, id);
	if (text) {
		emit_user_bytes(ECAP_KIND_MYSQL_QUERY, id, uid, text, len, TEXT_CHUNKS);
		f.has_text = 1;
	}
	/* after the copy: its cost is ecap's, not the query's */
	f.start_ns = bpf_ktime_get_ns();
	bpf_map_update_elem(&inflight, &tid, &f, BPF_ANY);
}

/* MariaDB 10.x, MySQL 5.6: dispatch_command(command, THD *, char *packet, uint length, ...) */
SEC("uprobe")
int BPF_KPROBE(uprobe_dispatch_packet, __u32 command, void *thd, const char *packet, __u32 len)
{
	if (command == MYSQL_COM_STMT_EXECUTE)
		packet = NULL;
	begin(command, thd, packet, len);
	return 0;
}

/* What COM_DATA holds for COM_QUERY and COM_STMT_PREPARE (MySQL 5.7, 8.x). */
struct com_text {
	const char *query;
	__u32 length;
};

/* MySQL 5.7, 8.x: dispatch_command(THD *, const COM_DATA *, command) */
SEC("uprobe")
int BPF_KPROBE(uprobe_dispatch_com_data, void *thd, const void *com_data, __u32 command)
{
	struct com_text t = {};

	if (command != MYSQL_COM_STMT_EXECUTE && com_data &&
	    bpf_probe_read_user(&t, sizeof(t), com_data) == 0) {
		begin(command, thd, t.query, t.length);
		return 0;
	}
	begin(command, thd, NULL, 0);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(uretprobe_dispatch, int ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct inflight *f = bpf_map_lookup_elem(&inflight, &tid);
	struct query_done d = {};

	if (!f)
		return 0;
	fill_hdr(&d.hdr, ECAP_KIND_MYSQL_DONE, id, (__u32)bpf_get_current_uid_gid());
	d.duration_ns = d.hdr.ts_ns - f->start_ns;
	d.conn = f->conn;
	d.retval = (__u8)ret; /* a C++ bool: only the low byte is set */
	d.result = f->failed ? QUERY_ERROR : QUERY_OK;
	d.command = f->command;
	bpf_map_delete_elem(&inflight, &tid);
	emit(&d, sizeof(d));
	return 0;
}

/* The text of a prepared statement's run, as the general log would show it. */
static __always_inline void execute_text(__u32 command, const char *query, __u64 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct inflight *f = bpf_map_lookup_elem(&inflight, &tid);

	if (!f || f->has_text || f->command != MYSQL_COM_STMT_EXECUTE ||
	    command != MYSQL_COM_STMT_EXECUTE)
		return;
	f->has_text = 1;
	emit_user_bytes(ECAP_KIND_MYSQL_QUERY, id, (__u32)bpf_get_current_uid_gid(), query, len,
			TEXT_CHUNKS);
}

/* MariaDB, MySQL 5.6: general_log_write(THD *, command, const char *, length) */
SEC("uprobe")
int BPF_KPROBE(uprobe_general_log_write, void *thd, __u32 command, const char *query, __u64 len)
{
	execute_text(command, query, len);
	return 0;
}

/* MySQL 5.7, 8.x: Query_logger::general_log_write(this, THD *, command, const char *, size_t) */
SEC("uprobe")
int BPF_KPROBE(uprobe_query_logger_write, void *logger, void *thd, __u32 command,
	       const char *query, __u64 len)
{
	execute_text(command, query, len);
	return 0;
}

/* The server sends an error packet: the command running on this thread failed. */
SEC("uprobe")
int BPF_KPROBE(uprobe_send_error)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();
	struct inflight *f = bpf_map_lookup_elem(&inflight, &tid);

	if (f)
		f->failed = 1;
	return 0;
}
