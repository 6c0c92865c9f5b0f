// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * gotls: plaintext and key log lines of Go programs using crypto/tls.
 *
 * Go (>= 1.17, amd64) passes arguments in registers (ABIInternal: AX, BX,
 * CX, DI, SI, R8, R9, R10, R11) and keeps the running goroutine's g in R14.
 * The runtime moves goroutine stacks as they grow, so a uretprobe (which
 * swaps the return address on the stack) is unsafe: user space probes every
 * RET instruction of the function instead (lib/binary/x86_ret.ts finds them).
 *
 * A goroutine may move to another thread inside a call (it parks on the
 * netpoller and resumes elsewhere), so calls in flight are keyed by
 * (tgid, g), never by pid_tgid. The socket is learnt from the read/write
 * syscall made inside the call: at sys_enter the user registers still hold
 * g in R14 (Go's syscall stubs leave it alone), which names the goroutine
 * whose call it is. It is cached per connection for calls served from what
 * an earlier syscall read, and the handshake functions (entered only for
 * real handshakes) learn it before the first Read or Write.
 *
 * Secrets come from crypto/tls.(*Config).writeKeyLog(label, clientRandom,
 * secret), which every handshake calls whether or not KeyLogWriter is set:
 * each call is one key log line.
 */
#include "common.bpf.h"
#include "tls_socket.bpf.h"
#include "tls_packets.bpf.h"
#include "tls_data.bpf.h"

/* Bytes captured of one call at most; the rest is counted as cut. */

enum go_call_kind {
	GO_CALL_DATA = 1,	/* (*Conn).Read or (*Conn).Write */
	GO_CALL_HANDSHAKE = 2,	/* clientHandshake or serverHandshake */
};

struct go_key {
	__u64 g;	/* the goroutine (R14) */
	__u32 tgid;
	__u32 pad;
};

/* A Read, Write or handshake in progress on a goroutine. */
struct go_call {
	__u64 conn;	/* *tls.Conn */
	__u64 buf;	/* the []byte's data */
	__u64 len;	/* and its length */
	__s32 fd;	/* seen in a syscall inside the call, else -1 */
	__u32 flags;	/* TLS_DATA_READ or 0 */
	__u32 kind;	/* enum go_call_kind */
	__u32 fd_seen;
	__u32 counted;	/* in calls_in_flight (a handshake until its socket is named) */
};

/* Calls in flight, by goroutine. LRU: a handshake entry is never deleted
 * (it has no return probe), and a panic unwinds past a RET. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct go_key);
	__type(value, struct go_call);
} go_calls SEC(".maps");

struct conn_key {
	__u64 conn;
	__u32 tgid;
	__u32 pad;
};

/* The socket of each connection seen, for calls that make no syscall: 16,384
 * connections, the least recently used forgotten (an LRU map makes all its
 * entries at load; 65,536 took 15 ms of the start). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct conn_key);
	__type(value, __s32);
} conn_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_keylog);
} keylog_scratch SEC(".maps");

/* Keeps enum go_call_kind in BTF for readers of the maps. */
const volatile enum go_call_kind go_call_kind_anchor = 0;

static __always_inline struct go_key goroutine(__u64 g)
{
	struct go_key k = { .g = g, .tgid = bpf_get_current_pid_tgid() >> 32 };

	return k;
}

static __always_inline __s32 cached_fd(__u64 conn, __u32 tgid)
{
	struct conn_key k = { .conn = conn, .tgid = tgid };
	__s32 *fd = bpf_map_lookup_elem(&conn_fds, &k);

	return fd ? *fd : -1;
}

static __always_inline int data_enter(struct pt_regs *ctx, __u32 flags)
{
	/* func (c *Conn) Read/Write(b []byte): c in AX, b in BX (data), CX (len).
	 * Entered twice when the stack must grow first: the same values. */
	__u64 conn = ctx->ax, buf = ctx->bx, len = ctx->cx;
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key k = goroutine(ctx->r14);
	struct go_call call = {}, *old;

	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	call.conn = conn;
	call.buf = buf;
	call.len = len;
	call.fd = -1;
	call.flags = flags;
	call.kind = GO_CALL_DATA;
	call.counted = 1;
	/* counted once: a call entered twice replaces its own entry */
	old = bpf_map_lookup_elem(&go_calls, &k);
	if (!old || !old->counted)
		calls_in_flight_add(1);
	bpf_map_update_elem(&go_calls, &k, &call, BPF_ANY);
	return 0;
}

SEC("uprobe.multi")
int uprobe_go_write(struct pt_regs *ctx)
{
	return data_enter(ctx, 0);
}

SEC("uprobe.multi")
int uprobe_go_read(struct pt_regs *ctx)
{
	return data_enter(ctx, TLS_DATA_READ);
}

/* clientHandshake, serverHandshake: only real handshakes get there (the
 * Handshake a Read or Write makes first returns early once done). */
SEC("uprobe.multi")
int uprobe_go_handshake(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key k = goroutine(ctx->r14);
	struct go_call call = {}, *c;
	__u64 conn = ctx->ax;

	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	c = bpf_map_lookup_elem(&go_calls, &k);
	/* a Read or Write of this connection doing it: that call learns the fd */
	if (c && c->kind == GO_CALL_DATA && c->conn == conn)
		return 0;
	call.conn = conn;
	call.fd = -1;
	call.kind = GO_CALL_HANDSHAKE;
	call.counted = 1;
	if (!c || !c->counted)
		calls_in_flight_add(1);
	bpf_map_update_elem(&go_calls, &k, &call, BPF_ANY);
	return 0;
}

/* At each RET of Read and Write: n in AX (the int result; err in BX, CX). */
SEC("uprobe.multi")
int uprobe_go_data_ret(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key k = goroutine(ctx->r14);
	struct go_call *c = bpf_map_lookup_elem(&go_calls, &k);
	__s64 n = (__s64)ctx->ax;
	__s32 fd;
	__u32 counted;

	if (!c || c->kind != GO_CALL_DATA)
		return 0;
	fd = c->fd_seen ? c->fd : cached_fd(c->conn, id >> 32);
	if (n <= 0)
		goto done;
	if ((__u64)n > c->len)
		n = c->len; /* never more than the buffer holds */
	emit_tls_data(id, c->conn, fd, c->flags, c->buf, n);
done:
	counted = c->counted; /* read before the entry goes */
	if (bpf_map_delete_elem(&go_calls, &k) == 0 && counted)
		calls_in_flight_add(-1);
	return 0;
}

/*
 * func (c *Config) writeKeyLog(label string, clientRandom, secret []byte):
 * c in AX, label in BX (data), CX (len), clientRandom in DI, SI, R8 (cap),
 * secret in R9, R10, R11.
 */
SEC("uprobe.multi")
int uprobe_go_keylog(struct pt_regs *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct go_key k = goroutine(ctx->r14);
	struct go_call *c;
	struct sock_info si = {};
	struct tls_keylog *r;
	__u32 zero = 0;
	__u64 label = ctx->bx, label_len = ctx->cx, random = ctx->di, random_len = ctx->si;
	__u64 secret = ctx->r9, secret_len = ctx->r10;

	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	r = bpf_map_lookup_elem(&keylog_scratch, &zero);
	if (!r || label_len == 0 || label_len >= TLS_LABEL_MAX || random_len != 32 ||
	    secret_len == 0 || secret_len > TLS_SECRET_MAX)
		return 0;
	__builtin_memset(r->label, 0, sizeof(r->label));
	/* the verifier must see the bounds on the very registers passed */
	barrier_var(label_len);
	barrier_var(secret_len);
	if (label_len >= TLS_LABEL_MAX || secret_len > TLS_SECRET_MAX)
		return 0;
	if (bpf_probe_read_user(r->label, label_len, (const void *)label) ||
	    bpf_probe_read_user(r->client_random, 32, (const void *)random) ||
	    bpf_probe_read_user(r->secret, secret_len, (const void *)secret))
		return 0;
	fill_hdr(&r->hdr, ECAP_KIND_TLS_KEYLOG, id, (__u32)bpf_get_current_uid_gid());
	r->secret_len = secret_len;
	/* the connection: the handshake (or the Read/Write doing it) on this goroutine */
	c = bpf_map_lookup_elem(&go_calls, &k);
	r->conn = c ? c->conn : 0;
	r->fd = !c ? -1 : c->fd_seen ? c->fd : cached_fd(c->conn, id >> 32);
	read_socket(&si, r->fd);
	COPY_SOCK(r, &si);
	emit(r, sizeof(*r));
	return 0;
}

/* The runtime's own read/write inside a call names its socket; R14 in the
 * user registers names the goroutine making it. */
static __always_inline void name_call_socket(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs;
	struct go_key k;
	struct go_call *c;

	if (!any_call_in_flight() || !is_io_syscall(ctx->args[1]))
		return;
	regs = (struct pt_regs *)ctx->args[0];
	k = goroutine(BPF_CORE_READ(regs, r14));
	c = bpf_map_lookup_elem(&go_calls, &k);
	if (!c || c->fd_seen)
		return;
	c->fd = (__s32)PT_REGS_PARM1_CORE_SYSCALL(regs);
	c->fd_seen = 1;
	{
		struct conn_key ck = { .conn = c->conn, .tgid = k.tgid };

		bpf_map_update_elem(&conn_fds, &ck, &c->fd, BPF_ANY);
	}
	/* a handshake's entry stays (its key log line names the connection by
	 * it) but needs no more syscalls */
	if (c->kind == GO_CALL_HANDSHAKE && c->counted) {
		c->counted = 0;
		calls_in_flight_add(-1);
	}
}

SEC("raw_tp/sys_enter")
int raw_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	name_call_socket(ctx);
	return sys_enter_next(ctx);
}
