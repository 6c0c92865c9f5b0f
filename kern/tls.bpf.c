// SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause
/*
 * tls: plaintext through OpenSSL/BoringSSL's SSL_write/SSL_read (and _ex).
 *
 * The entry probe keeps the buffer per thread; the return probe copies what
 * the call really moved, in TLS_CHUNK records, up to max_call_bytes. The
 * socket is learnt from the read/write syscall the library makes inside the
 * call (no per-version struct offsets), cached per SSL object, and turned
 * into addresses with CO-RE reads of task -> files -> socket -> sock.
 *
 * Secrets (-m keylog, -m pcap) are read from the SSL object when a handshake
 * call returns 1, at offsets user space puts in ssl_layouts per library; the
 * BPF cookie of each probe says which library it sits in. BoringSSL's layout
 * (flavor SSL_FLAVOR_BORINGSSL) points at secrets it keeps ready, sent as
 * tls_keylog lines (emit_boringssl, uprobe_boringssl_hs). Packets (-m pcap)
 * come from tcx classifiers.
 *
 * The gnutls and nss modules load this object too: gnutls_record_send/recv
 * and NSPR's PR_Write/PR_Read have SSL_write/SSL_read's shape (connection,
 * buffer, size) -> bytes. NSPR calls are kept only on NSS SSL sockets
 * (uprobe_nspr_*), and GnuTLS hands its secrets to uprobe_gnutls_keylog.
 */
#include "common.bpf.h"
#include "tls_socket.bpf.h"
#include "tls_packets.bpf.h"
#include "tls_data.bpf.h"

/* Send secrets when a data call ends and they were not sent yet. */
const volatile bool secrets_on_data = false;

/* Struct offsets of each probed library, by the probes' BPF cookie. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct ssl_layout);
} ssl_layouts SEC(".maps");

/* Secrets sent, by SSL object: the client random's first bytes they were for.
 * An LRU map's entries are all made at load (65,536: 8 ms); one evicted only
 * sends its secrets again. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u64);
} secrets_sent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_secret);
} secret_scratch SEC(".maps");

/* Where a key log line is built (BoringSSL, GnuTLS). */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tls_keylog);
} keylog_scratch SEC(".maps");

/* An SSL_read/SSL_write in progress on a thread. */
struct tls_call {
	__u64 ssl;
	__u64 buf;
	__u64 moved_ptr; /* _ex variants: where the byte count is written */
	__u64 sp;	 /* the stack pointer at entry: tells its return, and a return missed */
	__s32 fd;	 /* seen in a syscall inside the call, else cached */
	__u32 flags;	 /* TLS_DATA_READ or 0 */
	__u32 lib;	 /* index of the library in ssl_layouts (the BPF cookie) */
	__u16 role;	 /* enum call_role */
	__u8 fd_seen;	 /* fd comes from this call's own syscall */
	__u8 tail_calls; /* probed functions it tail-called: their returns are its own */
};

enum call_role {
	CALL_DATA = 0,	    /* SSL_read, SSL_write and their likes: reports bytes */
	CALL_HANDSHAKE = 1, /* SSL_do_handshake, SSL_connect, SSL_accept: secrets */
	CALL_FLUSH = 2,	    /* gnutls_record_uncork: sends what earlier calls reported */
};

/*
 * Calls can nest for real: node runs JavaScript from inside SSL_read (a
 * session ticket's or a handshake's callback), and that JavaScript writes
 * the next request with SSL_write before SSL_read returns. So each thread
 * keeps a small stack of calls; deeper nesting is counted, never dropped
 * silently.
 */
#define TLS_CALL_DEPTH 4

struct tls_calls {
	__u32 depth;
	__u32 pad;
	struct tls_call at[TLS_CALL_DEPTH];
};

/* Calls in flight, by thread: threads with none have no entry. Entries are
 * allocated as calls come, not all at load (16,384 of 200 bytes: 3 MB and
 * 5 ms of the start, made again by each TLS object). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 16384);
	__type(key, __u64); /* pid_tgid */
	__type(value, struct tls_calls);
} active_calls SEC(".maps");

/* What a thread's first call starts from. */
static struct tls_calls no_calls;

struct ssl_key {
	__u64 ssl;
	__u32 tgid;
	__u32 pad;
};

/* The socket of each SSL object seen, for calls served from its buffer.
 * An LRU map makes all its entries at load (65,536: 15 ms of the start):
 * 16,384 connections are remembered, the least recently used forgotten. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ssl_key);
	__type(value, __s32);
} ssl_fds SEC(".maps");

/* The innermost call in progress, or NULL. */
static __always_inline struct tls_call *top_call(struct tls_calls *st)
{
	__u32 d = st->depth;

	if (d == 0 || d > TLS_CALL_DEPTH)
		return NULL;
	return &st->at[(d - 1) & (TLS_CALL_DEPTH - 1)];
}

/* A call ecap cannot report: counted, and its stream marked as having a hole. */
static __always_inline void call_unfollowed(__u64 id, __u64 conn, __u32 flags, __u32 role)
{
	struct gap_key gap = { .conn = conn, .pid = id >> 32, .read = flags & TLS_DATA_READ };

	stat_add(ECAP_STAT_UNFOLLOWED, 1);
	if (role == CALL_DATA)
		record_gap(&gap);
}

/*
 * Pops calls whose frame is gone although their return was never seen (a
 * longjmp, a uretprobe the kernel gave up on): those whose entry stack
 * pointer is at or below `sp` (the stack grows down, so a call nested in
 * another starts below it, and a sibling at the same place).
 */
static __always_inline void drop_returned(struct tls_calls *st, __u64 id, __u64 sp)
{
	for (int i = 0; i < TLS_CALL_DEPTH; i++) {
		struct tls_call *c = top_call(st);

		if (!c || c->sp > sp)
			break;
		call_unfollowed(id, c->ssl, c->flags, c->role);
		st->depth--;
	}
}

/* Forgets the thread's stack once it is empty. */
static __always_inline void release_calls(struct tls_calls *st, __u64 id)
{
	if (st->depth == 0 && bpf_map_delete_elem(&active_calls, &id) == 0)
		calls_in_flight_add(-1);
}

/*
 * The calls in progress on this thread, after dropping those that returned
 * unseen; NULL when none. One at the entry's own stack pointer stays: it may
 * have tail-called this one (see wrapped_call).
 */
static __always_inline struct tls_calls *calls_at_entry(__u64 id, __u64 sp)
{
	struct tls_calls *st = bpf_map_lookup_elem(&active_calls, &id);

	if (!st)
		return NULL;
	drop_returned(st, id, sp - 1);
	if (st->depth == 0) {
		release_calls(st, id);
		return NULL;
	}
	return st;
}

/*
 * A probed function that another probed one calls for the same work, which
 * the outer call reports: SSL_write calling SSL_write_ex, gnutls_record_send
 * calling _send2 (the same object and buffer), gnutls_record_uncork calling
 * gnutls_record_send on the bytes corked calls reported already. A tail
 * call (a jmp: the same entry stack pointer) shares the outer call's return,
 * whose probes then run once per function, innermost first: counted, so
 * that the outer one's reports.
 */
static __always_inline bool wrapped_call(struct tls_calls *st, __u64 sp, const void *ssl,
					 const void *buf, __u32 flags, __u32 role)
{
	struct tls_call *c = st ? top_call(st) : NULL;

	if (!c || c->ssl != (__u64)ssl)
		return false;
	if (c->role != CALL_FLUSH &&
	    (c->buf != (__u64)buf || c->flags != flags || c->role != role))
		return false;
	if (c->sp == sp)
		c->tail_calls++;
	return true;
}

/* Notes a call that passed the filters, for its return probe. */
static __always_inline int start_call(void *ctx, __u64 id, struct tls_calls *st, void *ssl,
				      const void *buf, void *moved_ptr, __u32 flags, __u32 role)
{
	struct ssl_key key = { .ssl = (__u64)ssl, .tgid = id >> 32 };
	struct tls_call *c;
	__s32 *fd;
	__u32 d;

	__u64 sp = PT_REGS_SP((struct pt_regs *)ctx);

	if (st) {
		drop_returned(st, id, sp); /* a sibling this call did not wrap */
	} else {
		/* an entry of active_calls counts in calls_in_flight: while there
		 * is none, sys_enter returns before its hash lookup (-m keylog, a
		 * server between requests) */
		if (bpf_map_update_elem(&active_calls, &id, &no_calls, BPF_NOEXIST) == 0)
			calls_in_flight_add(1);
		st = bpf_map_lookup_elem(&active_calls, &id);
	}
	if (!st || st->depth >= TLS_CALL_DEPTH) {
		call_unfollowed(id, (__u64)ssl, flags, role);
		return 0;
	}
	d = st->depth & (TLS_CALL_DEPTH - 1);
	c = &st->at[d];
	c->ssl = (__u64)ssl;
	c->buf = (__u64)buf;
	c->moved_ptr = (__u64)moved_ptr;
	c->sp = sp;
	c->flags = flags;
	c->role = role;
	c->fd_seen = 0;
	c->tail_calls = 0;
	c->lib = (__u32)bpf_get_attach_cookie(ctx);
	fd = bpf_map_lookup_elem(&ssl_fds, &key);
	c->fd = fd ? *fd : -1;
	st->depth = d + 1;
	return 0;
}

static __always_inline int call_enter(void *ctx, void *ssl, const void *buf, void *moved_ptr,
				      __u32 flags, __u32 role)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 sp = PT_REGS_SP((struct pt_regs *)ctx);
	struct tls_calls *st;

	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	st = calls_at_entry(id, sp);
	if (wrapped_call(st, sp, ssl, buf, flags, role))
		return 0;
	return start_call(ctx, id, st, ssl, buf, moved_ptr, flags, role);
}

#define TLS1_3_VERSION 0x0304

/*
 * Sends the secrets of ssl once per handshake (the client random tells a new
 * one), if its library's layout is known and the handshake is complete.
 */
/* BoringSSL's TLS 1.3 handshake traffic secrets, kept while its handshake runs. */
struct hs_secrets {
	__u64 cr_head;	/* the client random's first bytes they are for */
	__u32 len;
	__u32 pad;
	__u8 client[TLS_SECRET_MAX];
	__u8 server[TLS_SECRET_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct ssl_key);
	__type(value, struct hs_secrets);
} boringssl_hs_secrets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hs_secrets);
} secret_scratch_hs SEC(".maps");

/* Sets r's label to the string literal s. */
#define KEYLOG_LABEL(r, s)                                        \
	do {                                                      \
		__builtin_memset((r)->label, 0, sizeof((r)->label)); \
		__builtin_memcpy((r)->label, s, sizeof(s));       \
	} while (0)

/* Reads a secret of n bytes (n from the library) into r; false if n is off. */
static __always_inline bool keylog_secret(struct tls_keylog *r, const char *from, __u32 n)
{
	if (n == 0 || n > TLS_SECRET_MAX)
		return false;
	__builtin_memset(r->secret, 0, sizeof(r->secret));
	r->secret_len = n;
	return bpf_probe_read_user(r->secret, n & (2 * TLS_SECRET_MAX - 1), from) == 0;
}

/* Copies a secret of n bytes kept in a map into r. */
static __always_inline bool keylog_secret_from_map(struct tls_keylog *r, const __u8 *from, __u32 n)
{
	if (n == 0 || n > TLS_SECRET_MAX)
		return false;
	__builtin_memcpy(r->secret, from, TLS_SECRET_MAX);
	r->secret_len = n;
	return true;
}

/*
 * BoringSSL keeps the secrets a key log needs in its SSL3_STATE once the
 * handshake is over (its SSL_HANDSHAKE, with the handshake secrets, is gone by
 * then): TLS 1.3's current traffic secrets (right after the handshake, the
 * *_TRAFFIC_SECRET_0: ours to write, the peer's to read) and exporter secret;
 * TLS 1.2's master secret in the established session. Sent as key log lines,
 * CLIENT_TRAFFIC_SECRET_0 (the one that counts a handshake) last.
 */
static __always_inline void emit_boringssl(struct ssl_layout *l, __u64 ssl, __u64 id, int fd)
{
	__u32 zero = 0;
	struct tls_keylog *r = bpf_map_lookup_elem(&keylog_scratch, &zero);
	struct sock_info si = {};
	__u64 seen_key = ssl, *seen, cr_head, hs = 0;
	struct ssl_key key = { .ssl = ssl, .tgid = id >> 32 };
	struct hs_secrets *hss;
	const char *base = (const char *)ssl, *s3 = NULL, *session = NULL;
	__u16 version = 0;
	__u8 server = 0, write_len = 0, read_len = 0, exporter_len = 0;
	__s32 mk_len = 0;

	if (!r || bpf_probe_read_user(&s3, sizeof(s3), base + l->s3) || !s3)
		return;
	if (bpf_probe_read_user(r->client_random, 32, s3 + l->client_random))
		return;
	__builtin_memcpy(&cr_head, r->client_random, 8);
	if (cr_head == 0)
		return; /* no ClientHello yet */
	seen = bpf_map_lookup_elem(&secrets_sent, &seen_key);
	if (seen && *seen == cr_head)
		return;
	if (bpf_probe_read_user(&hs, sizeof(hs), s3 + l->hs) || hs)
		return; /* handshake in progress: s3 holds handshake traffic secrets */
	if (bpf_probe_read_user(&version, sizeof(version), base + l->version) ||
	    bpf_probe_read_user(&server, 1, base + l->server_byte))
		return;
	fill_hdr(&r->hdr, ECAP_KIND_TLS_KEYLOG, id, (__u32)bpf_get_current_uid_gid());
	r->conn = ssl;
	r->fd = fd;
	read_socket(&si, fd);
	COPY_SOCK(r, &si);
	if (version == TLS1_3_VERSION) {
		const char *client = s3 + l->write_traffic_secret, *peer = s3 + l->read_traffic_secret;
		__u8 client_len, server_len;

		bpf_probe_read_user(&write_len, 1, s3 + l->write_traffic_secret_len);
		bpf_probe_read_user(&read_len, 1, s3 + l->read_traffic_secret_len);
		bpf_probe_read_user(&exporter_len, 1, s3 + l->exporter_secret_len);
		client_len = write_len;
		server_len = read_len;
		if (server & l->server_mask) {
			client = s3 + l->read_traffic_secret;
			peer = s3 + l->write_traffic_secret;
			client_len = read_len;
			server_len = write_len;
		}
		hss = bpf_map_lookup_elem(&boringssl_hs_secrets, &key);
		if (hss && hss->cr_head == cr_head) {
			KEYLOG_LABEL(r, "SERVER_HANDSHAKE_TRAFFIC_SECRET");
			if (keylog_secret_from_map(r, hss->server, hss->len))
				emit(r, sizeof(*r));
			KEYLOG_LABEL(r, "CLIENT_HANDSHAKE_TRAFFIC_SECRET");
			if (keylog_secret_from_map(r, hss->client, hss->len))
				emit(r, sizeof(*r));
		}
		KEYLOG_LABEL(r, "SERVER_TRAFFIC_SECRET_0");
		if (!keylog_secret(r, peer, server_len))
			return;
		emit(r, sizeof(*r));
		KEYLOG_LABEL(r, "EXPORTER_SECRET");
		if (keylog_secret(r, s3 + l->exporter_secret, exporter_len))
			emit(r, sizeof(*r));
		KEYLOG_LABEL(r, "CLIENT_TRAFFIC_SECRET_0");
		if (!keylog_secret(r, client, client_len))
			return;
		emit(r, sizeof(*r));
	} else {
		if (bpf_probe_read_user(&session, sizeof(session), s3 + l->established_session) ||
		    !session)
			return;
		bpf_probe_read_user(&mk_len, sizeof(mk_len), session + l->session_master_key_length);
		if (mk_len <= 0 || mk_len > 48)
			return; /* no master secret */
		KEYLOG_LABEL(r, "CLIENT_RANDOM");
		if (!keylog_secret(r, session + l->session_master_key, mk_len))
			return;
		emit(r, sizeof(*r));
	}
	bpf_map_update_elem(&secrets_sent, &seen_key, &cr_head, BPF_ANY);
}

static __always_inline void emit_secret(__u64 ssl, __u64 id, int fd, __u32 lib)
{
	struct ssl_layout *l = bpf_map_lookup_elem(&ssl_layouts, &lib);
	__u32 zero = 0;
	struct tls_secret *r;
	struct sock_info si = {};
	__u64 seen_key = ssl, *seen, cr_head;
	const char *base = (const char *)ssl;
	void *session = NULL, *cipher = NULL;
	int version = 0;

	const char *s3;

	if (!l || !l->valid)
		return;
	if (l->flavor == SSL_FLAVOR_BORINGSSL) {
		emit_boringssl(l, ssl, id, fd);
		return;
	}
	r = bpf_map_lookup_elem(&secret_scratch, &zero);
	if (!r)
		return;
	s3 = base + l->s3;
	if (l->s3_indirect && (bpf_probe_read_user(&s3, sizeof(s3), base + l->s3) || !s3))
		return;
	if (bpf_probe_read_user(&version, sizeof(version), base + l->version) ||
	    bpf_probe_read_user(r->client_random, 32, s3 + l->client_random))
		return;
	__builtin_memcpy(&cr_head, r->client_random, 8);
	if (cr_head == 0)
		return; /* no ClientHello yet */
	seen = bpf_map_lookup_elem(&secrets_sent, &seen_key);
	if (seen && *seen == cr_head)
		return;
	r->version = version;
	r->cipher_id = 0;
	r->master_key_len = 0;
	if (bpf_probe_read_user(&cipher, sizeof(cipher), s3 + l->new_cipher) == 0 && cipher)
		bpf_probe_read_user(&r->cipher_id, 4, (const char *)cipher + l->cipher_id);
	if (version == TLS1_3_VERSION) {
		bpf_probe_read_user(r->handshake_secret, TLS_SECRET_MAX, base + l->handshake_secret);
		bpf_probe_read_user(r->handshake_traffic_hash, TLS_SECRET_MAX,
				    base + l->handshake_traffic_hash);
		bpf_probe_read_user(r->client_app_traffic_secret, TLS_SECRET_MAX,
				    base + l->client_app_traffic_secret);
		bpf_probe_read_user(r->server_app_traffic_secret, TLS_SECRET_MAX,
				    base + l->server_app_traffic_secret);
		bpf_probe_read_user(r->exporter_master_secret, TLS_SECRET_MAX,
				    base + l->exporter_master_secret);
		__u64 app_head;

		__builtin_memcpy(&app_head, r->client_app_traffic_secret, 8);
		if (app_head == 0)
			return; /* handshake not finished */
	} else {
		__u64 mk_len = 0;

		if (bpf_probe_read_user(&session, sizeof(session), base + l->session) || !session)
			return;
		bpf_probe_read_user(&mk_len, sizeof(mk_len),
				    (const char *)session + l->session_master_key_length);
		if (mk_len == 0 || mk_len > 48)
			return; /* no master secret yet */
		r->master_key_len = mk_len;
		bpf_probe_read_user(r->master_key, 48, (const char *)session + l->session_master_key);
	}
	fill_hdr(&r->hdr, ECAP_KIND_TLS_SECRET, id, (__u32)bpf_get_current_uid_gid());
	r->conn = ssl;
	r->fd = fd;
	read_socket(&si, fd);
	COPY_SOCK(r, &si);
	emit(r, sizeof(*r));
	bpf_map_update_elem(&secrets_sent, &seen_key, &cr_head, BPF_ANY);
}

static __always_inline int call_return(struct pt_regs *regs, long ret, bool ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct tls_calls *st = bpf_map_lookup_elem(&active_calls, &id);
	/* the returning call's entry stack pointer: its return address is popped */
	__u64 sp = PT_REGS_SP(regs) - 8, moved = 0;
	struct tls_call *c;

	if (!st)
		return 0;
	drop_returned(st, id, sp - 1);
	c = top_call(st);
	/* a wrapped or unfollowed call inside the top one returns: that one reports */
	if (!c || c->sp != sp)
		goto done;
	if (c->tail_calls > 0) {
		c->tail_calls--;
		goto done;
	}
	if (c->role != CALL_DATA) {
		if (c->role == CALL_HANDSHAKE && ret == 1)
			emit_secret(c->ssl, id, c->fd, c->lib);
		goto pop;
	}
	if (secrets_on_data && ret > 0)
		emit_secret(c->ssl, id, c->fd, c->lib);
	if (ex) {
		if (ret == 1 && c->moved_ptr)
			bpf_probe_read_user(&moved, sizeof(moved), (const void *)c->moved_ptr);
	} else if (ret > 0) {
		moved = ret;
	}
	emit_tls_data(id, c->ssl, c->fd, c->flags, c->buf, moved);
pop:
	if (c->fd_seen) {
		struct ssl_key key = { .ssl = c->ssl, .tgid = id >> 32 };

		bpf_map_update_elem(&ssl_fds, &key, &c->fd, BPF_ANY);
	}
	st->depth--;
done:
	release_calls(st, id);
	return 0;
}

/*
 * NSPR: PR_Write/PR_Read/PR_Send/PR_Recv serve every kind of descriptor
 * (files, pipes, plain sockets). Only NSS's SSL layer is wanted, and it is
 * recognised without learning anything per process, so processes that set
 * their sockets up before ecap started are captured too: a PRFileDesc
 * (public NSPR ABI, prio.h) whose methods are PR_DESC_LAYERED, whose
 * identity is a registered layer's (> 0), and whose secret is an sslSocket,
 * whose first member points back at its own PRFileDesc (NSS sets it in
 * ssl_PushIOLayer and again in every ssl_GetPrivate/ssl_FindSocket; it is
 * the PRFileDesc above when a layer was pushed over SSL later). NSPR's own
 * PRFilePrivate starts with two small ints, never that pointer. Layers an
 * application pushes above SSL are looked through, a few levels deep.
 */
struct pr_file_desc {
	const void *methods;	/* PRIOMethods *: file_type is its first int */
	void *secret;
	struct pr_file_desc *lower;
	struct pr_file_desc *higher;
	void *dtor;
	int identity;
};

#define PR_DESC_LAYERED 4
#define NSPR_LAYERS_SEEN 4

static __always_inline bool nss_ssl_socket(struct pr_file_desc *top)
{
	struct pr_file_desc *fd = top;

	for (int i = 0; i < NSPR_LAYERS_SEEN && fd; i++) {
		struct pr_file_desc d;
		void *back = NULL;
		int type = 0;

		if (bpf_probe_read_user(&d, sizeof(d), fd))
			return false;
		if (d.identity > 0 && d.methods && d.secret &&
		    !bpf_probe_read_user(&type, sizeof(type), d.methods) &&
		    type == PR_DESC_LAYERED &&
		    !bpf_probe_read_user(&back, sizeof(back), d.secret) &&
		    (back == fd || back == top))
			return true;
		fd = d.lower;
	}
	return false;
}

static __always_inline int nspr_enter(void *ctx, void *fd, const void *buf, __u32 flags)
{
	__u64 id = bpf_get_current_pid_tgid();

	__u64 sp = PT_REGS_SP((struct pt_regs *)ctx);
	struct tls_calls *st;

	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	st = calls_at_entry(id, sp);
	/* PR_Write calling PR_Send, say; a lower layer's call is not an SSL socket */
	if (wrapped_call(st, sp, fd, buf, flags, CALL_DATA) || !nss_ssl_socket(fd))
		return 0;
	return start_call(ctx, id, st, fd, buf, NULL, flags, CALL_DATA);
}

/* PR_Write, PR_Send (fd, buf, amount, ...) on an NSS SSL socket. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_nspr_write, void *fd, const void *buf)
{
	return nspr_enter(ctx, fd, buf, 0);
}

/* PR_Read (fd, buf, amount) on an NSS SSL socket. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_nspr_read, void *fd, void *buf)
{
	return nspr_enter(ctx, fd, buf, TLS_DATA_READ);
}

#define PR_MSG_PEEK 0x2

/*
 * PR_Recv (fd, buf, amount, flags, timeout). A peek reads bytes a later
 * call reads again (Firefox peeks a byte to see whether a connection is
 * alive): reported, they would be in the stream twice.
 */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_nspr_recv, void *fd, void *buf, __s32 amount, __s32 flags)
{
	if (flags & PR_MSG_PEEK)
		return 0;
	return nspr_enter(ctx, fd, buf, TLS_DATA_READ);
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_write, void *ssl, const void *buf)
{
	return call_enter(ctx, ssl, buf, NULL, 0, CALL_DATA);
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_write_ex, void *ssl, const void *buf, __u64 num, void *written)
{
	return call_enter(ctx, ssl, buf, written, 0, CALL_DATA);
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_read, void *ssl, void *buf)
{
	return call_enter(ctx, ssl, buf, NULL, TLS_DATA_READ, CALL_DATA);
}

SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_read_ex, void *ssl, void *buf, __u64 num, void *readbytes)
{
	return call_enter(ctx, ssl, buf, readbytes, TLS_DATA_READ, CALL_DATA);
}

/* SSL_do_handshake, SSL_connect, SSL_accept: secrets once they return 1. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_handshake, void *ssl)
{
	return call_enter(ctx, ssl, NULL, NULL, 0, CALL_HANDSHAKE);
}

/* gnutls_record_uncork: the sends inside it were reported by the corked calls. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_gnutls_uncork, void *session)
{
	return call_enter(ctx, session, NULL, NULL, 0, CALL_FLUSH);
}

/* Data calls in -m keylog/pcap: secrets of handshakes done implicitly. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_ssl_data_secrets, void *ssl)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct ssl_key key = { .ssl = (__u64)ssl, .tgid = id >> 32 };
	__s32 *fd;

	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	fd = bpf_map_lookup_elem(&ssl_fds, &key);
	emit_secret((__u64)ssl, id, fd ? *fd : -1, (__u32)bpf_get_attach_cookie(ctx));
	return 0;
}

/*
 * BoringSSL: its TLS 1.3 handshake traffic secrets live only in SSL_HANDSHAKE,
 * wiped and freed before SSL_do_handshake returns. tls13_set_traffic_key()
 * calls the exported SSL_is_dtls(ssl) (through the PLT) each time it installs
 * keys, after deriving them: the handshake secrets are kept here then, for
 * emit_boringssl. Outside handshakes s3->hs is NULL and this stops there.
 */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_boringssl_hs, void *ssl)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 lib = (__u32)bpf_get_attach_cookie(ctx);
	struct ssl_layout *l = bpf_map_lookup_elem(&ssl_layouts, &lib);
	struct ssl_key key = { .ssl = (__u64)ssl, .tgid = id >> 32 };
	struct hs_secrets *v;
	const char *s3 = NULL, *hs = NULL;
	__u64 hash_len = 0, head = 0;
	__u32 zero = 0;

	if (!l || !l->valid || l->flavor != SSL_FLAVOR_BORINGSSL)
		return 0;
	if (bpf_probe_read_user(&s3, sizeof(s3), (const char *)ssl + l->s3) || !s3 ||
	    bpf_probe_read_user(&hs, sizeof(hs), s3 + l->hs) || !hs)
		return 0;
	if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	if (bpf_probe_read_user(&hash_len, sizeof(hash_len), hs + l->hs_hash_len) ||
	    hash_len == 0 || hash_len > TLS_SECRET_MAX ||
	    bpf_probe_read_user(&head, sizeof(head), hs + l->hs_client_handshake_secret) || !head)
		return 0; /* not derived yet */
	v = bpf_map_lookup_elem(&secret_scratch_hs, &zero);
	if (!v || bpf_probe_read_user(&v->cr_head, sizeof(v->cr_head), s3 + l->client_random) ||
	    bpf_probe_read_user(v->client, TLS_SECRET_MAX, hs + l->hs_client_handshake_secret) ||
	    bpf_probe_read_user(v->server, TLS_SECRET_MAX, hs + l->hs_server_handshake_secret))
		return 0;
	v->len = hash_len;
	bpf_map_update_elem(&boringssl_hs_secrets, &key, v, BPF_ANY);
	return 0;
}

/*
 * Sends a key log line filled but for its socket: that of conn's handshake
 * in progress on this thread, else the one an earlier call of conn saw.
 */
static __always_inline void send_keylog(struct tls_keylog *r, __u64 id, __u64 conn, __u32 n)
{
	struct ssl_key key = { .ssl = conn, .tgid = id >> 32 };
	struct tls_calls *st = bpf_map_lookup_elem(&active_calls, &id);
	struct tls_call *c = st ? top_call(st) : NULL;
	struct sock_info si = {};
	__s32 fd = -1, *cached;

	if (c && c->ssl == conn && c->fd >= 0) {
		fd = c->fd;
	} else {
		cached = bpf_map_lookup_elem(&ssl_fds, &key);
		if (cached)
			fd = *cached;
	}
	fill_hdr(&r->hdr, ECAP_KIND_TLS_KEYLOG, id, (__u32)bpf_get_current_uid_gid());
	r->conn = conn;
	r->fd = fd;
	r->secret_len = n;
	read_socket(&si, fd);
	COPY_SOCK(r, &si);
	emit(r, sizeof(*r));
}

/*
 * GnuTLS: where the client random sits in each probed libgnutls's session
 * (bytes from the gnutls_session_t), by BPF cookie; 0: unknown.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} gnutls_random_at SEC(".maps");

/* A gnutls_datum_t: { unsigned char *data; unsigned int size; }. */
struct gnutls_datum {
	const void *data;
	__u32 size;
};

/*
 * GnuTLS (3.6.13+) passes every secret of every handshake to the session's
 * keylog function, (session, label, const gnutls_datum_t *secret); the one
 * gnutls_init installs is called even when SSLKEYLOGFILE is not set, and
 * user space found its file offset and the client random's place in the
 * session through the public API (lib/modules/gnutls.ts). One record per
 * secret: no struct layout of GnuTLS is read here.
 */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_gnutls_keylog, void *session, const char *label, const void *secret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 zero = 0, lib = (__u32)bpf_get_attach_cookie(ctx), *random_at, n;
	struct tls_keylog *r = bpf_map_lookup_elem(&keylog_scratch, &zero);
	struct gnutls_datum d = {};

	if (!r || !process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	random_at = bpf_map_lookup_elem(&gnutls_random_at, &lib);
	if (!random_at || *random_at == 0)
		return 0;
	if (bpf_probe_read_user(&d, sizeof(d), secret) || d.size == 0 || !d.data)
		return 0;
	n = d.size < TLS_SECRET_MAX ? d.size : TLS_SECRET_MAX;
	__builtin_memset(r->secret, 0, sizeof(r->secret));
	if (bpf_probe_read_user(r->secret, n, d.data) ||
	    bpf_probe_read_user_str(r->label, sizeof(r->label), label) <= 0 ||
	    bpf_probe_read_user(r->client_random, sizeof(r->client_random),
				(const char *)session + *random_at))
		return 0;
	send_keylog(r, id, (__u64)session, n);
	return 0;
}

/*
 * BoringSSL linked into a stripped program (Chromium): where the client
 * random is, ssl->s3->client_random, as byte offsets user space read from
 * the code (lib/tls/boringssl_static.ts), by BPF cookie; s3 0: unknown.
 */
struct boringssl_random_at {
	__u32 s3;		/* the s3 state's pointer in the SSL */
	__u32 client_random;	/* in the s3 state */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct boringssl_random_at);
} boringssl_random_at SEC(".maps");

/*
 * Every secret of every BoringSSL handshake passes ssl_log_secret(ssl,
 * label, secret, len), which checks for a key log callback only inside: a
 * line per secret, TLS 1.2's master secret (CLIENT_RANDOM) included.
 */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_boringssl_log_secret, void *ssl, const char *label, const void *secret,
	       __u64 len)
{
	__u64 id = bpf_get_current_pid_tgid(), s3 = 0;
	__u32 zero = 0, lib = (__u32)bpf_get_attach_cookie(ctx), n;
	struct tls_keylog *r = bpf_map_lookup_elem(&keylog_scratch, &zero);
	struct boringssl_random_at *at;

	if (!r || !process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	at = bpf_map_lookup_elem(&boringssl_random_at, &lib);
	if (!at || at->s3 == 0 || len == 0)
		return 0;
	n = len < TLS_SECRET_MAX ? len : TLS_SECRET_MAX;
	__builtin_memset(r->secret, 0, sizeof(r->secret));
	if (bpf_probe_read_user(r->secret, n, secret) ||
	    bpf_probe_read_user_str(r->label, sizeof(r->label), label) <= 0 ||
	    bpf_probe_read_user(&s3, sizeof(s3), (const char *)ssl + at->s3) || !s3 ||
	    bpf_probe_read_user(r->client_random, sizeof(r->client_random),
				(const char *)s3 + at->client_random))
		return 0;
	send_keylog(r, id, (__u64)ssl, n);
	return 0;
}

/*
 * NSS (Firefox): its secrets are PKCS#11 objects of its softoken, derived
 * by functions it does not export. What passes in the open: the ClientHello
 * (the transcript's first message) hashed by PK11_DigestOp on the
 * handshake's digest context; that context cloned (PK11_CloneContext) to
 * hash the transcript right before each TLS 1.3 secret is derived; and the
 * derivation, HKDF-Expand-Label in freebl, whose HMAC_Update takes the
 * label ("tls13 c hs traffic") and whose HMAC_Finish writes the secret.
 * freebl's HMAC functions are found in its FREEBL_GetVector table
 * (lib/tls/nss_keys.ts). Each thread follows one derivation at a time:
 * NSS derives a secret synchronously, on the thread that runs the handshake.
 */
struct nss_hello_key {
	__u64 context;	/* PK11Context * of the handshake's transcript hash */
	__u32 tgid;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct nss_hello_key);
	__type(value, __u8[32]);	/* the ClientHello's random */
} nss_hello_randoms SEC(".maps");

enum nss_label {
	NSS_LABEL_NONE = 0,
	NSS_LABEL_CLIENT_HS,
	NSS_LABEL_SERVER_HS,
	NSS_LABEL_CLIENT_AP,
	NSS_LABEL_SERVER_AP,
	NSS_LABEL_EXPORTER,
	NSS_LABEL_CLIENT_EARLY,
	NSS_LABEL_EARLY_EXPORTER,
	NSS_LABEL_MASTER,	/* TLS 1.2's master secret: a CLIENT_RANDOM line */
};

struct nss_derive {
	__u8 client_random[32];
	__u64 hmac;		/* HMACContext * of the expansion */
	__u64 result;		/* HMAC_Finish's output */
	__u64 result_len;	/* where it stores the output's length */
	__u32 label;		/* enum nss_label */
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);	/* pid_tgid: the deriving thread */
	__type(value, struct nss_derive);
} nss_derives SEC(".maps");

/* PK11_DigestOp(context, in, len): a transcript starting with a ClientHello. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_nss_digest_op, void *context, const __u8 *in, __u32 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct nss_hello_key k = { .context = (__u64)context, .tgid = id >> 32 };
	struct nss_derive d = {};
	__u8 head[6], random[32];

	if (len < sizeof(head) + sizeof(random) ||
	    !process_allowed(id, (__u32)bpf_get_current_uid_gid()))
		return 0;
	/* handshake type 1, a 3-byte length, legacy_version 3.x, the random */
	if (bpf_probe_read_user(head, sizeof(head), in) || head[0] != 1 || head[4] != 3 ||
	    bpf_probe_read_user(random, sizeof(random), in + sizeof(head)))
		return 0;
	bpf_map_update_elem(&nss_hello_randoms, &k, random, BPF_ANY);
	/* TLS 1.2 hashes the whole transcript right before it derives from it */
	__builtin_memcpy(d.client_random, random, sizeof(d.client_random));
	bpf_map_update_elem(&nss_derives, &id, &d, BPF_ANY);
	return 0;
}

/* PK11_CloneContext(old): a handshake's transcript hashed for a secret next. */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_nss_clone_context, void *old)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct nss_hello_key k = { .context = (__u64)old, .tgid = id >> 32 };
	struct nss_derive d = {};
	__u8 *random = bpf_map_lookup_elem(&nss_hello_randoms, &k);

	if (!random)
		return 0;
	__builtin_memcpy(d.client_random, random, sizeof(d.client_random));
	bpf_map_update_elem(&nss_derives, &id, &d, BPF_ANY);
	return 0;
}

static __always_inline bool label_is(const __u8 *l, __u32 n, const char *want, __u32 want_n)
{
	if (n != want_n)
		return false;
#pragma unroll
	for (int i = 0; i < 12; i++)
		if (i < want_n && l[i] != want[i])
			return false;
	return true;
}

/* HKDF-Expand-Label's info: length(2), label length(1), "tls13 " label, context. */
static __always_inline __u32 nss_label_of(const __u8 *info)
{
	const __u8 *l = info + 9;
	__u32 n = info[2] - 6;

	if (info[3] != 't' || info[4] != 'l' || info[5] != 's' || info[6] != '1' ||
	    info[7] != '3' || info[8] != ' ')
		return NSS_LABEL_NONE;
	if (label_is(l, n, "c hs traffic", 12))
		return NSS_LABEL_CLIENT_HS;
	if (label_is(l, n, "s hs traffic", 12))
		return NSS_LABEL_SERVER_HS;
	if (label_is(l, n, "c ap traffic", 12))
		return NSS_LABEL_CLIENT_AP;
	if (label_is(l, n, "s ap traffic", 12))
		return NSS_LABEL_SERVER_AP;
	if (label_is(l, n, "exp master", 10))
		return NSS_LABEL_EXPORTER;
	if (label_is(l, n, "c e traffic", 11))
		return NSS_LABEL_CLIENT_EARLY;
	if (label_is(l, n, "e exp master", 12))
		return NSS_LABEL_EARLY_EXPORTER;
	return NSS_LABEL_NONE;
}

/* freebl's HMAC_Update(cx, data, len) */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_freebl_hmac_update, void *cx, const __u8 *data, __u32 len)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct nss_derive *d = bpf_map_lookup_elem(&nss_derives, &id);
	__u8 info[24];
	__u32 label;

	/* an info is 9 bytes, a label and a transcript hash of 32 bytes or more */
	if (!d || d->label || len < 9 + 10 + 1 + 32 ||
	    bpf_probe_read_user(info, sizeof(info), data))
		return 0;
	label = nss_label_of(info);
	if (label == NSS_LABEL_NONE)
		return 0;
	d->label = label;
	d->hmac = (__u64)cx;
	return 0;
}

/* freebl's HMAC_Finish(cx, result, result_len, max_result_len) */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_freebl_hmac_finish, void *cx, void *result, __u32 *result_len)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct nss_derive *d = bpf_map_lookup_elem(&nss_derives, &id);

	if (!d || !d->label || d->hmac != (__u64)cx)
		return 0;
	d->result = (__u64)result;
	d->result_len = (__u64)result_len;
	return 0;
}

/* Whether l holds want's n bytes (its NUL included: then l ends there too). */
static __always_inline bool str_is(const char *l, const char *want, int n)
{
	bool same = true;

#pragma unroll
	for (int i = 0; i < 24; i++)
		if (i < n && l[i] != want[i])
			same = false;
	return same;
}

/* NSS's SECItem: what freebl's TLS PRF writes the master secret into. */
struct nss_secitem {
	__u32 type;
	__u64 data;
	__u32 len;
};

/*
 * TLS 1.2: freebl's TLS_P_hash(hash, secret, label, seed, result, fips)
 * derives the master secret from the premaster. Its seed holds the client
 * random first ("master secret"), or the session hash ("extended master
 * secret": then the transcript, hashed by PK11_DigestOp just before on
 * this thread, named the session).
 */
SEC("uprobe.multi")
int BPF_KPROBE(uprobe_freebl_tls_p_hash, __u32 hash, void *secret, const char *label,
	       struct nss_secitem *seed, struct nss_secitem *result)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct nss_derive *d = bpf_map_lookup_elem(&nss_derives, &id);
	struct nss_derive fresh = {};
	struct nss_secitem in = {}, out = {};
	char l[24] = {};
	bool extended;

	if (bpf_probe_read_user_str(l, sizeof(l), label) <= 0)
		return 0;
	extended = str_is(l, "extended master secret", 23);
	if (!extended && !str_is(l, "master secret", 14))
		return 0;
	if (bpf_probe_read_user(&out, sizeof(out), result) || !out.data)
		return 0;
	if (!extended) {
		/* client random, then server random */
		if (!process_allowed(id, (__u32)bpf_get_current_uid_gid()) ||
		    bpf_probe_read_user(&in, sizeof(in), seed) || in.len < 64 ||
		    bpf_probe_read_user(fresh.client_random, sizeof(fresh.client_random),
					(const void *)in.data))
			return 0;
		d = &fresh;
	} else if (!d) {
		return 0;
	}
	d->label = NSS_LABEL_MASTER;
	d->hmac = 0;
	d->result = out.data;
	d->result_len = (__u64)result + __builtin_offsetof(struct nss_secitem, len);
	if (d == &fresh)
		bpf_map_update_elem(&nss_derives, &id, &fresh, BPF_ANY);
	return 0;
}

static __always_inline void nss_label_name(char *out, __u32 label)
{
	switch (label) {
	case NSS_LABEL_CLIENT_HS:
		__builtin_memcpy(out, "CLIENT_HANDSHAKE_TRAFFIC_SECRET", 32);
		break;
	case NSS_LABEL_SERVER_HS:
		__builtin_memcpy(out, "SERVER_HANDSHAKE_TRAFFIC_SECRET", 32);
		break;
	case NSS_LABEL_CLIENT_AP:
		__builtin_memcpy(out, "CLIENT_TRAFFIC_SECRET_0", 24);
		break;
	case NSS_LABEL_SERVER_AP:
		__builtin_memcpy(out, "SERVER_TRAFFIC_SECRET_0", 24);
		break;
	case NSS_LABEL_EXPORTER:
		__builtin_memcpy(out, "EXPORTER_SECRET", 16);
		break;
	case NSS_LABEL_CLIENT_EARLY:
		__builtin_memcpy(out, "CLIENT_EARLY_TRAFFIC_SECRET", 28);
		break;
	case NSS_LABEL_EARLY_EXPORTER:
		__builtin_memcpy(out, "EARLY_EXPORTER_SECRET", 22);
		break;
	default:
		__builtin_memcpy(out, "CLIENT_RANDOM", 14);
		break;
	}
}

/*
 * A derivation returned: its secret is written (ret SECSuccess, 0). The
 * PRF's own HMAC_Finish calls return inside TLS_P_hash: they are not it.
 */
static __always_inline int nss_derived(long ret, bool master)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct nss_derive *d = bpf_map_lookup_elem(&nss_derives, &id);
	__u32 zero = 0, n = 0;
	struct tls_keylog *r;

	if (!d || !d->result || (d->label == NSS_LABEL_MASTER) != master)
		return 0;
	r = bpf_map_lookup_elem(&keylog_scratch, &zero);
	/* SECSuccess is 0; the length is the hash's (32, 48) or the master secret's (48) */
	if (r && (int)ret == 0 &&
	    !bpf_probe_read_user(&n, sizeof(n), (const void *)d->result_len) && n > 0) {
		n = n < TLS_SECRET_MAX ? n : TLS_SECRET_MAX;
		__builtin_memset(r->secret, 0, sizeof(r->secret));
		__builtin_memset(r->label, 0, sizeof(r->label));
		nss_label_name(r->label, d->label);
		__builtin_memcpy(r->client_random, d->client_random, sizeof(r->client_random));
		if (!bpf_probe_read_user(r->secret, n, (const void *)d->result))
			send_keylog(r, id, d->hmac, n);
	}
	bpf_map_delete_elem(&nss_derives, &id);
	return 0;
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_freebl_tls_p_hash, long ret)
{
	return nss_derived(ret, true);
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_freebl_hmac_finish, long ret)
{
	return nss_derived(ret, false);
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_ssl_call, long ret)
{
	return call_return(ctx, (int)ret, false);
}

SEC("uretprobe.multi")
int BPF_KRETPROBE(uretprobe_ssl_call_ex, long ret)
{
	return call_return(ctx, (int)ret, true);
}

/* The library's own read/write inside SSL_read/SSL_write names the socket. */
static __always_inline void name_call_socket(struct bpf_raw_tracepoint_args *ctx)
{
	struct tls_calls *st;
	struct tls_call *c;
	struct pt_regs *regs;
	__u64 id;

	if (!any_call_in_flight() || !is_io_syscall(ctx->args[1]))
		return;
	id = bpf_get_current_pid_tgid();
	st = bpf_map_lookup_elem(&active_calls, &id);
	c = st ? top_call(st) : NULL;
	if (!c || c->fd_seen)
		return;
	regs = (struct pt_regs *)ctx->args[0];
	c->fd = (__s32)PT_REGS_PARM1_CORE_SYSCALL(regs);
	c->fd_seen = 1;
}

SEC("raw_tp/sys_enter")
int raw_tp_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (watch_mmap_inline)
		watch_mmap(ctx);
	name_call_socket(ctx);
	return sys_enter_next(ctx);
}
