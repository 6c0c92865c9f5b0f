/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Records that cross the ring buffer, and the constants both sides use.
 * This is the only definition: lib/binary/btf.ts reads these layouts from each
 * object's BTF, so TypeScript never retypes an offset or a constant.
 */
#ifndef ECAP_H
#define ECAP_H

#define ECAP_COMM_LEN 16

/* Picks the decoder for a record. */
enum ecap_kind {
	ECAP_KIND_BASH_LINE = 1,	/* struct text_chunk */
	ECAP_KIND_BASH_STATUS = 2,	/* struct bash_status */
	ECAP_KIND_TLS_DATA = 3,		/* struct tls_data */
	ECAP_KIND_ZSH_LINE = 4,		/* struct text_chunk */
	ECAP_KIND_MYSQL_QUERY = 5,	/* struct text_chunk: the query's text */
	ECAP_KIND_MYSQL_DONE = 6,	/* how it ended */
	ECAP_KIND_PG_QUERY = 7,		/* struct text_chunk: the statement's text */
	ECAP_KIND_PG_DONE = 8,		/* how it ended */
	ECAP_KIND_PG_BACKEND = 18,	/* struct text_chunk: a backend's process title */
	ECAP_KIND_TLS_SECRET = 9,	/* struct tls_secret */
	ECAP_KIND_TLS_PACKET = 10,	/* struct tls_packet */
	ECAP_KIND_TLS_KEYLOG = 11,	/* struct tls_keylog */
	ECAP_KIND_ZSH_STATUS = 16,	/* struct zsh_status */
	ECAP_KIND_WATCH = 32,		/* struct ecap_watch: read by lib/core/capture.ts itself */
};

/* Slots of the per-CPU "ecap_stats" array every object carries. */
enum ecap_stat {
	ECAP_STAT_EVENTS = 0,	/* records written to the ring */
	ECAP_STAT_LOST = 1,	/* records the ring had no room for */
	ECAP_STAT_TRUNCATED = 2, /* records cut at a documented cap */
	ECAP_STAT_UNFOLLOWED = 3, /* calls not reported: nested too deep, or their return never seen */
	ECAP_STAT_SHED = 4,	/* records kept short while the ring was filling (shed_above_bytes) */
	ECAP_STAT_MAX = 5,
};

/* Starts every record. */
struct ecap_hdr {
	__u32 kind;	/* enum ecap_kind */
	__u32 pid;	/* tgid, what users call a pid */
	__u32 tid;
	__u32 uid;
	__u64 ts_ns;	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	char comm[ECAP_COMM_LEN];	/* the thread's name */
	__u64 cgroup_id;	/* cgroup v2 id: the inode number of its directory */
	/* The process's name (its thread group leader's comm) when the record
	 * comes from another thread (Firefox's "Socket Thread"), else empty. */
	char process[ECAP_COMM_LEN];
};

/*
 * Text of any length read from user memory (a shell line, an SQL query),
 * streamed as chunks: kern/text_chunks.bpf.h writes them, lib/core/text_chunks.ts
 * reads them. The record kind says whose text it is.
 */
enum text_chunk_flags {
	TEXT_MORE = 1,		/* another chunk of the same text follows */
	TEXT_CUT = 2,		/* the text was longer than TEXT_CHUNKS chunks: cut there */
};

#define TEXT_CHUNK 8192		/* bytes of text per record, NUL included */
#define TEXT_CHUNKS 128		/* chunks per text: about 1 MiB */

struct text_chunk {
	struct ecap_hdr hdr;
	__u32 len;		/* bytes of data that follow */
	__u32 flags;		/* enum text_chunk_flags */
	/* char data[len]; */
};

/* bash: how the command read last ended. */
enum bash_end {
	BASH_END_RETURN = 1,	/* execute_command returned */
	BASH_END_EXIT = 2,	/* the shell exited (exit builtin, errexit) */
	BASH_END_EXEC = 3,	/* the shell replaced itself (exec builtin) */
	BASH_END_SYNTAX = 4,	/* the line did not parse: nothing ran */
	BASH_END_NONE = 5,	/* nothing to run (empty line, comment) */
};

struct bash_status {
	struct ecap_hdr hdr;
	__s32 status;		/* exit status; 0 for BASH_END_EXEC */
	__u32 end;		/* enum bash_end */
};

#define ECAP_ANY_STATUS 0x7fffffff

/* zsh: how the command read last ended. */
enum zsh_end {
	ZSH_END_RETURN = 1,	/* the top-level execode returned */
	ZSH_END_EXIT = 2,	/* the shell exited (exit builtin, errexit) */
	ZSH_END_EXEC = 3,	/* the shell replaced itself (exec builtin) */
	ZSH_END_NONE = 4,	/* nothing ran (empty line) */
	ZSH_END_SYNTAX = 5,	/* it did not parse: nothing ran */
};

struct zsh_status {
	struct ecap_hdr hdr;
	__s32 status;		/* $? after it; 0 for ZSH_END_EXEC */
	__u32 end;		/* enum zsh_end */
};

/* mysqld, postgres: how a query ended, sent when it ends. */
enum query_result {
	QUERY_OK = 1,
	QUERY_ERROR = 2,	/* the server reported an error for it */
};

struct query_done {
	struct ecap_hdr hdr;
	__u64 duration_ns;	/* from its text being seen to its end */
	__s64 conn;		/* connection or thread id; -1 if unknown */
	__s32 retval;		/* the hooked function's return value */
	__u32 result;		/* enum query_result */
	__u32 command;		/* mysqld: enum_server_command; postgres: 0 */
	__u32 pad;
};

/* mysqld: the commands of the client/server protocol ecap reports (the
 * server's enum_server_command values, fixed by the protocol). */
enum mysql_command {
	MYSQL_COM_QUERY = 3,		/* text query */
	MYSQL_COM_STMT_PREPARE = 22,	/* prepared statement: its text */
	MYSQL_COM_STMT_EXECUTE = 23,	/* prepared statement: a run of it */
};

/* tls: plaintext passed to SSL_write or returned by SSL_read, in chunks. */
enum tls_data_flags {
	TLS_DATA_READ = 1,	/* SSL_read*: the process received it (else sent) */
	TLS_DATA_LAST = 2,	/* last chunk of this call */
	TLS_DATA_CUT = 4,	/* the call moved more than was captured (max_call_bytes, or kept short
				 * while the ring was filling): total says how much */
	TLS_DATA_GAP = 8,	/* records of this connection and direction were lost before this call */
};

#define TLS_CHUNK 16384		/* bytes per record at most (a TLS record's plaintext) */

struct tls_data {
	struct ecap_hdr hdr;
	__u64 conn;		/* the SSL object's address: one per connection in a process */
	__u32 len;		/* bytes of data that follow */
	__u32 offset;		/* where they start within the call's bytes */
	__u32 total;		/* bytes the call moved */
	__u32 flags;		/* enum tls_data_flags */
	__s32 fd;		/* socket fd, -1 if unknown */
	__u16 family;		/* AF_INET or AF_INET6; 0 if unknown */
	__u16 lport;		/* local port */
	__u16 rport;		/* remote port */
	__u16 pad;
	__u8 laddr[16];		/* IPv4 in the first 4 bytes */
	__u8 raddr[16];
	/* char data[len]; */
};

/*
 * tls: a connection's secrets, read from the library's own state when its
 * handshake completes. Offsets of the library's structs are set per version
 * (lib/tls/openssl_offsets.json); user space turns this into key log lines.
 */
#define TLS_SECRET_MAX 64	/* EVP_MAX_MD_SIZE */

struct tls_secret {
	struct ecap_hdr hdr;
	__u64 conn;		/* the SSL object's address */
	__s32 fd;		/* socket fd, -1 if unknown */
	__u16 family;		/* AF_INET or AF_INET6; 0 if unknown */
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u32 version;		/* negotiated: 0x0303 TLS 1.2, 0x0304 TLS 1.3 */
	__u8 laddr[16];
	__u8 raddr[16];
	__u32 cipher_id;	/* SSL_CIPHER id, e.g. 0x03001302 */
	__u32 master_key_len;	/* TLS <= 1.2 */
	__u8 client_random[32];
	__u8 master_key[48];
	/* TLS 1.3; the handshake traffic secrets are derived from these two */
	__u8 handshake_secret[TLS_SECRET_MAX];
	__u8 handshake_traffic_hash[TLS_SECRET_MAX];
	__u8 client_app_traffic_secret[TLS_SECRET_MAX];
	__u8 server_app_traffic_secret[TLS_SECRET_MAX];
	__u8 exporter_master_secret[TLS_SECRET_MAX];
};

/*
 * One key log line's parts, for libraries that hand out their secrets one
 * label at a time (GnuTLS's keylog hook, Go's writeKeyLog): user space
 * prints "LABEL CLIENT_RANDOM SECRET".
 */
#define TLS_LABEL_MAX 48

struct tls_keylog {
	struct ecap_hdr hdr;
	__u64 conn;		/* the library's connection object's address */
	__s32 fd;		/* socket fd, -1 if unknown */
	__u16 family;		/* AF_INET or AF_INET6; 0 if unknown */
	__u16 lport;
	__u16 rport;
	__u16 pad;
	__u32 secret_len;	/* bytes of secret used */
	__u8 laddr[16];
	__u8 raddr[16];
	char label[TLS_LABEL_MAX];	/* NUL-terminated, e.g. CLIENT_TRAFFIC_SECRET_0 */
	__u8 client_random[32];
	__u8 secret[TLS_SECRET_MAX];
};

/* Where one library release keeps what tls_secret needs: byte offsets from
 * the SSL* an API call receives (0 in valid = no secrets for it). */
struct ssl_layout {
	__u32 valid;
	__u32 version;			/* int: negotiated protocol version */
	__u32 s3;			/* the s3 state: embedded, or a pointer (1.1.1) */
	__u32 s3_indirect;		/* 1: s3 is a pointer to follow */
	__u32 client_random;		/* s3->client_random[32], from s3 */
	__u32 new_cipher;		/* s3->tmp.new_cipher, from s3: const SSL_CIPHER * */
	__u32 session;			/* SSL_SESSION * */
	__u32 session_master_key_length;	/* size_t, in SSL_SESSION */
	__u32 session_master_key;	/* in SSL_SESSION */
	__u32 cipher_id;		/* uint32 id, in SSL_CIPHER */
	__u32 handshake_secret;
	__u32 handshake_traffic_hash;
	__u32 client_app_traffic_secret;
	__u32 server_app_traffic_secret;
	__u32 exporter_master_secret;
	/*
	 * flavor SSL_FLAVOR_BORINGSSL: BoringSSL keeps ready-made secrets in its
	 * SSL3_STATE (s3, a pointer); they go out as tls_keylog lines. Of the
	 * members above it uses version (uint16_t here), s3, client_random,
	 * session_master_key_length (int) and session_master_key (in the
	 * SSL_SESSION s3->established_session points to).
	 */
	__u32 flavor;			/* enum ssl_flavor */
	__u32 server_byte;		/* byte of SSL holding the `server` bit-field */
	__u32 server_mask;		/* its bit */
	__u32 hs;			/* SSL_HANDSHAKE *, from s3: NULL once the handshake is done */
	__u32 write_traffic_secret;	/* from s3; its length is a uint8_t */
	__u32 read_traffic_secret;
	__u32 exporter_secret;
	__u32 write_traffic_secret_len;
	__u32 read_traffic_secret_len;
	__u32 exporter_secret_len;
	__u32 established_session;	/* SSL_SESSION *, from s3 */
	/* in SSL_HANDSHAKE (s3->hs), read while the handshake runs */
	__u32 hs_hash_len;		/* size_t: bytes of each secret */
	__u32 hs_client_handshake_secret;
	__u32 hs_server_handshake_secret;
};

enum ssl_flavor {
	SSL_FLAVOR_OPENSSL = 0,		/* struct tls_secret */
	SSL_FLAVOR_BORINGSSL = 1,	/* struct tls_keylog lines */
};

/* tls -m pcap: a packet seen by the TC classifier. */
enum tls_packet_dir {
	TLS_PACKET_INGRESS = 1,
	TLS_PACKET_EGRESS = 2,
};

#define TLS_PACKET_MAX 65536	/* bytes of a packet captured at most (loopback's MTU) */

struct tls_packet {
	struct ecap_hdr hdr;	/* kind and ts_ns only: TC runs in no process's name */
	__u32 ifindex;
	__u32 len;		/* bytes on the wire */
	__u32 caplen;		/* bytes of data that follow */
	__u32 dir;		/* enum tls_packet_dir */
	/* __u8 data[caplen]; */
};

/*
 * Following the machine (kern/common.bpf.h): files and processes the
 * capture learns about while it runs, so user space can probe a library
 * mapped after start and release it when its last user is gone.
 */
enum watch_what {
	WATCH_MAPPED = 1,	/* a process maps a file named like a target, not known yet */
	WATCH_USES = 2,		/* a process maps (or execs) a file probed on demand */
	WATCH_EXEC = 3,		/* a process execs a binary not known yet */
	WATCH_GONE = 4,		/* a process that used such a file exited or exec'd */
};

/* What user space decided about a file (watch_files values). */
enum watch_state {
	WATCH_FILE_IGNORE = 1,	/* not a target: say nothing */
	WATCH_FILE_PINNED = 2,	/* probed for the whole capture: say nothing */
	WATCH_FILE_PROBED = 3,	/* probed while used: report its users */
	WATCH_FILE_STOP = 4,	/* a target, not probed now: stop who execs it */
};

#define WATCH_NAME_LEN 32
#define WATCH_PREFIXES 3	/* file name prefixes a capture follows at most */
#define SYS_ENTER_CHAIN_SLOTS 8	/* captures whose sys_enter programs run as one */

struct watch_file_key {
	__u64 ino;
	__u32 dev;		/* the kernel's dev_t: major << 20 | minor */
	__u32 pad;
};

struct ecap_watch {
	struct ecap_hdr hdr;
	__u64 ino;
	__u32 dev;
	__s32 fd;		/* WATCH_MAPPED: the fd being mapped, -1 otherwise */
	__u32 what;		/* enum watch_what */
	__u32 stopped;		/* 1: the process was sent SIGSTOP; user space sends SIGCONT */
	char name[WATCH_NAME_LEN];	/* the file's name (its dentry), NUL-terminated */
};

/* Anchors the types above in each object's BTF (types only referenced by
 * constants would otherwise be dropped by the compiler). */
struct ecap_types {
	enum ecap_kind kind;
	enum ecap_stat stat;
	enum text_chunk_flags text_chunk_flags;
	enum bash_end bash_end;
	enum query_result query_result;
	struct query_done query_done;
	enum mysql_command mysql_command;
	struct ecap_hdr hdr;
	struct text_chunk text_chunk;
	struct bash_status bash_status;
	enum tls_data_flags tls_data_flags;
	struct tls_data tls_data;
	struct tls_secret tls_secret;
	struct tls_keylog tls_keylog;
	struct ssl_layout ssl_layout;
	enum ssl_flavor ssl_flavor;
	enum tls_packet_dir tls_packet_dir;
	struct tls_packet tls_packet;
	enum zsh_end zsh_end;
	struct zsh_status zsh_status;
	enum watch_what watch_what;
	enum watch_state watch_state;
	struct watch_file_key watch_file_key;
	struct ecap_watch ecap_watch;
};

#endif
