/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * Records that cross the ring buffer, and the constants both sides use.
 * This is the only definition: lib/btf.ts reads these layouts from each
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
	ECAP_KIND_TLS_SECRET = 9,	/* reserved: TLS secrets */
};

/* Slots of the per-CPU "ecap_stats" array every object carries. */
enum ecap_stat {
	ECAP_STAT_EVENTS = 0,	/* records written to the ring */
	ECAP_STAT_LOST = 1,	/* records the ring had no room for */
	ECAP_STAT_TRUNCATED = 2, /* records cut at a documented cap */
	ECAP_STAT_MAX = 3,
};

/* Starts every record. */
struct ecap_hdr {
	__u32 kind;	/* enum ecap_kind */
	__u32 pid;	/* tgid, what users call a pid */
	__u32 tid;
	__u32 uid;
	__u64 ts_ns;	/* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	char comm[ECAP_COMM_LEN];
};

/*
 * Text of any length read from user memory (a shell line, an SQL query),
 * streamed as chunks: kern/text_chunks.bpf.h writes them, lib/text_chunks.ts
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

/* tls: plaintext passed to SSL_write or returned by SSL_read, in chunks. */
enum tls_data_flags {
	TLS_DATA_READ = 1,	/* SSL_read*: the process received it (else sent) */
	TLS_DATA_LAST = 2,	/* last chunk of this call */
	TLS_DATA_CUT = 4,	/* the call moved more than max_call_bytes: the rest is not captured */
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

/* Anchors the types above in each object's BTF (types only referenced by
 * constants would otherwise be dropped by the compiler). */
struct ecap_types {
	enum ecap_kind kind;
	enum ecap_stat stat;
	enum text_chunk_flags text_chunk_flags;
	enum bash_end bash_end;
	enum query_result query_result;
	struct query_done query_done;
	struct ecap_hdr hdr;
	struct text_chunk text_chunk;
	struct bash_status bash_status;
	enum tls_data_flags tls_data_flags;
	struct tls_data tls_data;
};

#endif
