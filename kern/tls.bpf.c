// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * tls: plaintext through OpenSSL/BoringSSL's SSL_write/SSL_read (and _ex).
 *
 * The entry probe keeps the buffer per thread; the return probe copies what
 * the call really moved, in TLS_CHUNK records, up to max_call_bytes. The
 * socket is learnt from the read/write syscall the library makes inside the
 * call (no per-version struct offsets), cached per SSL object, and turned
 * into addresses with CO-RE reads of task -> files -> socket -> sock.
 */
#include "common.bpf.h"

#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define AF_INET 2
#define AF_INET6 10

/* Bytes captured of one call at most; the rest is counted as cut. */
const volatile __u32 max_call_bytes = 1 << 20;

/* An SSL_read/SSL_write in progress on a thread. */
struct tls_call {
	__u64 ssl;
	__u64 buf;
	__u64 moved_ptr; /* _ex variants: where the byte count is written */
	__s32 fd;	 /* seen in a syscall inside the call, else cached */
	__u32 flags;	 /* TLS_DATA_READ or 0 */
	__u16 nested;	 /* SSL_write calling SSL_write_ex, say */
	__u16 fd_seen;	 /* fd comes from this call's own syscall */
};

/* Calls in flight, by thread. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tls_call);
} active_calls SEC(".maps");

struct ssl_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

/* The socket of each SSL object seen, for calls served from its buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ssl_key);
	__type(value, __s32);
} ssl_fds SEC(".maps");

/* Where a record is built: too big for the stack. */
struct tls_record {
	struct tls_data rec;
	char data[TLS_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_record);
} tls_scratch SEC(".maps");

static __always_inline int call_enter(void *ssl, const void *buf, void *moved_ptr, __u32 flags)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call call = {}, *c;
	struct ssl_key key = { .ssl = (__u64)ssl, .tgid = id >> 32 };
	__s32 *fd;

	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	c = bpf_map_lookup_elem(&active_calls, &id);
	if (c) {
		c->nested++;
		return 0;
	}
	call.ssl = (__u64)ssl;
	call.buf = (__u64)buf;
	call.moved_ptr = (__u64)moved_ptr;
	call.flags = flags;
	fd = bpf_map_lookup_elem(&ssl_fds, &key);
	call.fd = fd ? *fd : -1;
	bpf_map_update_elem(&active_calls, &id, &call, BPF_ANY);
	return 0;
}

/* Fills family, ports and addresses from the socket behind fd, if it is one. */
static __always_inline void read_socket(struct tls_data *d, int fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *file = NULL;
	struct socket *sock;
	struct sock *sk;
	__u16 family;

	d->family = 0;
	if (fd < 0 || (unsigned int)fd >= BPF_CORE_READ(fdt, max_fds))
		return;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return;
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return;
	sock = BPF_CORE_READ(file, private_data);
	sk = BPF_CORE_READ(sock, sk);
	if (!sk)
		return;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	/* BPF_CORE_READ_INTO would size the read by d->laddr's element: one byte */
	if (family == AF_INET) {
		bpf_core_read(d->laddr, 4, &sk->__sk_common.skc_rcv_saddr);
		bpf_core_read(d->raddr, 4, &sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		bpf_core_read(d->laddr, 16, &sk->__sk_common.skc_v6_rcv_saddr);
		bpf_core_read(d->raddr, 16, &sk->__sk_common.skc_v6_daddr);
	} else {
		return;
	}
	d->family = family;
	d->lport = BPF_CORE_READ(sk, __sk_common.skc_num);
	d->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
}

struct chunk_ctx {
	__u64 buf;
	__u32 captured; /* bytes to send: min(total, max_call_bytes) */
	__u32 cut;
};

static long emit_chunk(__u32 i, struct chunk_ctx *ctx)
{
	__u32 zero = 0, off = i * TLS_CHUNK, n;
	struct tls_record *r;

	if (off >= ctx->captured)
		return 1;
	r = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (!r)
		return 1;
	n = ctx->captured - off;
	if (n > TLS_CHUNK)
		n = TLS_CHUNK;
	if (bpf_probe_read_user(r->data, n, (const void *)(ctx->buf + off)))
		return 1;
	r->rec.len = n;
	r->rec.offset = off;
	r->rec.flags &= ~(TLS_DATA_LAST | TLS_DATA_CUT);
	if (off + n >= ctx->captured)
		r->rec.flags |= TLS_DATA_LAST | ctx->cut;
	emit(r, sizeof(r->rec) + n);
	return 0;
}

static __always_inline int call_return(long ret, bool ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *c = bpf_map_lookup_elem(&active_calls, &id);
	struct chunk_ctx ctx = {};
	struct tls_record *r;
	__u32 zero = 0;
	__u64 moved = 0;

	if (!c)
		return 0;
	if (c->nested > 0) {
		c->nested--;
		return 0;
	}
	if (ex) {
		if (ret == 1 && c->moved_ptr)
			bpf_probe_read_user(&moved, sizeof(moved), (const void *)c->moved_ptr);
	} else if (ret > 0) {
		moved = ret;
	}
	r = bpf_map_lookup_elem(&tls_scratch, &zero);
	if (moved == 0 || !r)
		goto done;
	fill_hdr(&r->rec.hdr, ECAP_KIND_TLS_DATA, id, (__u32)bpf_get_current_uid_gid());
	r->rec.conn = c->ssl;
	r->rec.fd = c->fd;
	r->rec.total = moved > 0xffffffff ? 0xffffffff : moved;
	r->rec.flags = c->flags;
	read_socket(&r->rec, c->fd);
	if (c->fd_seen) {
		struct ssl_key key = { .ssl = c->ssl, .tgid = id >> 32 };

		bpf_map_update_elem(&ssl_fds, &key, &c->fd, BPF_ANY);
	}
	ctx.buf = c->buf;
	ctx.captured = r->rec.total;
	if (ctx.captured > max_call_bytes) {
		ctx.captured = max_call_bytes;
		ctx.cut = TLS_DATA_CUT;
		stat_add(ECAP_STAT_TRUNCATED, 1);
	}
	bpf_loop((ctx.captured + TLS_CHUNK - 1) / TLS_CHUNK, emit_chunk, &ctx, 0);
done:
	bpf_map_delete_elem(&active_calls, &id);
	return 0;
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_write, void *ssl, const void *buf)
{
	return call_enter(ssl, buf, NULL, 0);
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_write_ex, void *ssl, const void *buf, __u64 num, void *written)
{
	return call_enter(ssl, buf, written, 0);
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_read, void *ssl, void *buf)
{
	return call_enter(ssl, buf, NULL, TLS_DATA_READ);
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_read_ex, void *ssl, void *buf, __u64 num, void *readbytes)
{
	return call_enter(ssl, buf, readbytes, TLS_DATA_READ);
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_ssl_call, long ret)
{
	return call_return((int)ret, false);
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_ssl_call_ex, long ret)
{
	return call_return((int)ret, true);
}

/* Syscalls that move a socket's bytes; arg 0 is the fd. x86_64 numbers. */
static __always_inline bool is_io_syscall(long nr)
{
	switch (nr) {
	case 0: /* read */
	case 1: /* write */
	case 19: /* readv */
	case 20: /* writev */
	case 44: /* sendto */
	case 45: /* recvfrom */
	case 46: /* sendmsg */
	case 47: /* recvmsg */
		return true;
	}
	return false;
}

/* The library's own read/write inside SSL_read/SSL_write names the socket. */
SEC("raw_tp/sys_enter")
int raw_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_call *c = bpf_map_lookup_elem(&active_calls, &id);
	struct pt_regs *regs;

	if (!c || c->fd_seen || !is_io_syscall(ctx->args[1]))
		return 0;
	regs = (struct pt_regs *)ctx->args[0];
	c->fd = (__s32)PT_REGS_PARM1_CORE_SYSCALL(regs);
	c->fd_seen = 1;
	return 0;
}
