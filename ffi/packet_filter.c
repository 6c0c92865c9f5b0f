// SPDX-License-Identifier: BSD-3-Clause
/*
 * Classic BPF, as libpcap compiles tcpdump's expressions, translated to an
 * eBPF tcx program and loaded in front of the capture program: a packet the
 * expression drops is never copied to the ring buffer.
 *
 * The classic machine maps onto eBPF registers: A is r7, X is r8, the
 * scratch words M[] live on the stack, r6 keeps the context. Packet loads go
 * through bpf_skb_load_bytes (a load past the end drops the packet, as in
 * classic BPF) and are converted from network order. A kept packet
 * tail-calls the capture program; every exit otherwise returns TCX_NEXT, so
 * the filter never changes what happens to the packet itself.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <bpf/bpf.h>
#include "packet_filter.h"

enum { R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 };
#define REG_CTX R6
#define REG_A R7
#define REG_X R8
#define REG_LOOPS R9 /* backward jumps left: the verifier must see every loop end */
#define MAX_LOOPS 16  /* IPv6 extension headers protochain walks, at most */
#define LOAD_SLOT (-8) /* stack bytes a packet load lands in */
#define MEM_SLOT(k) (-8 - 4 * BPF_MEMWORDS + 4 * (int)(k))
#define TCX_NEXT (-1)

struct emitter {
	struct bpf_insn *out; /* NULL while sizing */
	int n;
	const int *start;     /* eBPF index of each classic instruction (NULL while sizing) */
	int drop, keep;       /* the two exits */
	uint32_t link_offset;
	int array_fd;
	char *msg;
	size_t msg_len;
};

static void emit(struct emitter *e, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
	if (e->out)
		e->out[e->n] = (struct bpf_insn){ .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm };
	e->n++;
}

/* A jump to eBPF index `to`; offsets are only known in the second pass. */
static int jump(struct emitter *e, uint8_t code, uint8_t dst, uint8_t src, int32_t imm, int to)
{
	int off = e->out ? to - (e->n + 1) : 0;

	if (off < INT16_MIN || off > INT16_MAX) {
		snprintf(e->msg, e->msg_len, "packet filter too long to translate");
		return -E2BIG;
	}
	emit(e, code, dst, src, (int16_t)off, imm);
	return 0;
}

static int target(struct emitter *e, int classic_index)
{
	return e->start ? e->start[classic_index] : 0;
}

/* dst = the size-byte big-endian number at k (+ X when indirect); drops the packet past its end. */
static int load_packet(struct emitter *e, uint8_t dst, int size, uint32_t k, int indirect)
{
	uint64_t at = (uint64_t)k + e->link_offset;
	int err;

	if (!indirect && at > INT32_MAX) {
		/* SKF_AD_OFF and SKF_NET_OFF: socket-filter extensions, not packet bytes */
		snprintf(e->msg, e->msg_len, "the filter uses a Linux socket-filter extension (offset %d)", (int32_t)k);
		return -EOPNOTSUPP;
	}
	emit(e, BPF_ALU64 | BPF_MOV | BPF_X, R1, REG_CTX, 0, 0);
	if (indirect) {
		emit(e, BPF_ALU | BPF_MOV | BPF_X, R2, REG_X, 0, 0);
		emit(e, BPF_ALU | BPF_ADD | BPF_K, R2, 0, 0, (int32_t)(uint32_t)at);
	} else {
		emit(e, BPF_ALU | BPF_MOV | BPF_K, R2, 0, 0, (int32_t)at);
	}
	emit(e, BPF_ALU64 | BPF_MOV | BPF_X, R3, R10, 0, 0);
	emit(e, BPF_ALU64 | BPF_ADD | BPF_K, R3, 0, 0, LOAD_SLOT);
	emit(e, BPF_ALU64 | BPF_MOV | BPF_K, R4, 0, 0, size);
	emit(e, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_skb_load_bytes);
	err = jump(e, BPF_JMP | BPF_JNE | BPF_K, R0, 0, 0, e->drop);
	if (err)
		return err;
	emit(e, BPF_LDX | BPF_MEM | (size == 4 ? BPF_W : size == 2 ? BPF_H : BPF_B), dst, R10, LOAD_SLOT, 0);
	if (size > 1)
		emit(e, BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, size * 8);
	return 0;
}

static void load_length(struct emitter *e, uint8_t dst)
{
	emit(e, BPF_LDX | BPF_MEM | BPF_W, dst, REG_CTX, offsetof(struct __sk_buff, len), 0);
	if (e->link_offset)
		emit(e, BPF_ALU | BPF_SUB | BPF_K, dst, 0, 0, (int32_t)e->link_offset);
}

static int bad(struct emitter *e, int i, uint16_t code)
{
	snprintf(e->msg, e->msg_len, "classic BPF instruction %d (code 0x%04x) cannot be translated", i, code);
	return -EOPNOTSUPP;
}

static int memory_word(struct emitter *e, int i, const struct cbpf_insn *c)
{
	return c->k < BPF_MEMWORDS ? 0 : bad(e, i, c->code);
}

static int alu(struct emitter *e, int i, const struct cbpf_insn *c)
{
	uint8_t op = BPF_OP(c->code);
	int err;

	if (op == BPF_NEG) {
		emit(e, BPF_ALU | BPF_NEG, REG_A, 0, 0, 0);
		return 0;
	}
	if (BPF_SRC(c->code) == BPF_K) {
		if ((op == BPF_DIV || op == BPF_MOD) && c->k == 0)
			return jump(e, BPF_JMP | BPF_JA, 0, 0, 0, e->drop);
		if ((op == BPF_LSH || op == BPF_RSH) && c->k >= 32)
			return bad(e, i, c->code);
		emit(e, BPF_ALU | op | BPF_K, REG_A, 0, 0, (int32_t)c->k);
		return 0;
	}
	if (op == BPF_DIV || op == BPF_MOD) {
		/* classic BPF ends the filter on a division by zero: the packet is dropped */
		err = jump(e, BPF_JMP32 | BPF_JEQ | BPF_K, REG_X, 0, 0, e->drop);
		if (err)
			return err;
	} else if (op == BPF_LSH || op == BPF_RSH) {
		/* libpcap's interpreter: a shift by 32 or more gives 0 (eBPF would mask it) */
		emit(e, BPF_JMP32 | BPF_JLT | BPF_K, REG_X, 0, 2, 32);
		emit(e, BPF_ALU | BPF_MOV | BPF_K, REG_A, 0, 0, 0);
		emit(e, BPF_JMP | BPF_JA, 0, 0, 1, 0);
	}
	emit(e, BPF_ALU | op | BPF_X, REG_A, REG_X, 0, 0);
	return 0;
}

static int conditional(struct emitter *e, int i, int n, const struct cbpf_insn *c)
{
	uint8_t op = BPF_OP(c->code), src = BPF_SRC(c->code) == BPF_X ? REG_X : 0;
	uint8_t code = BPF_JMP32 | op | BPF_SRC(c->code), inverse;
	int32_t imm = src ? 0 : (int32_t)c->k;
	int t = i + 1 + c->jt, f = i + 1 + c->jf, err;

	if (op != BPF_JEQ && op != BPF_JGT && op != BPF_JGE && op != BPF_JSET)
		return bad(e, i, c->code);
	if (t >= n || f >= n)
		return bad(e, i, c->code);
	if (c->jt == c->jf)
		return c->jt ? jump(e, BPF_JMP | BPF_JA, 0, 0, 0, target(e, t)) : 0;
	if (c->jf == 0)
		return jump(e, code, REG_A, src, imm, target(e, t));
	if (c->jt == 0 && op != BPF_JSET) {
		inverse = op == BPF_JEQ ? BPF_JNE : op == BPF_JGT ? BPF_JLE : BPF_JLT;
		return jump(e, BPF_JMP32 | inverse | BPF_SRC(c->code), REG_A, src, imm, target(e, f));
	}
	err = jump(e, code, REG_A, src, imm, target(e, t));
	return err ? err : jump(e, BPF_JMP | BPF_JA, 0, 0, 0, target(e, f));
}

static int translate_one(struct emitter *e, int i, int n, const struct cbpf_insn *c)
{
	uint8_t size = BPF_SIZE(c->code) == BPF_W ? 4 : BPF_SIZE(c->code) == BPF_H ? 2 : 1;
	int err;

	switch (BPF_CLASS(c->code)) {
	case BPF_LD:
	case BPF_LDX: {
		uint8_t dst = BPF_CLASS(c->code) == BPF_LD ? REG_A : REG_X;

		switch (BPF_MODE(c->code)) {
		case BPF_IMM:
			emit(e, BPF_ALU | BPF_MOV | BPF_K, dst, 0, 0, (int32_t)c->k);
			return 0;
		case BPF_ABS:
		case BPF_IND:
			if (dst != REG_A)
				return bad(e, i, c->code);
			return load_packet(e, dst, size, c->k, BPF_MODE(c->code) == BPF_IND);
		case BPF_MEM:
			if ((err = memory_word(e, i, c)))
				return err;
			emit(e, BPF_LDX | BPF_MEM | BPF_W, dst, R10, MEM_SLOT(c->k), 0);
			return 0;
		case BPF_LEN:
			load_length(e, dst);
			return 0;
		case BPF_MSH: /* X = 4 * (P[k] & 0xf): an IPv4 header's length */
			if (dst != REG_X || size != 1)
				return bad(e, i, c->code);
			if ((err = load_packet(e, REG_X, 1, c->k, 0)))
				return err;
			emit(e, BPF_ALU | BPF_AND | BPF_K, REG_X, 0, 0, 0xf);
			emit(e, BPF_ALU | BPF_LSH | BPF_K, REG_X, 0, 0, 2);
			return 0;
		}
		return bad(e, i, c->code);
	}
	case BPF_ST:
	case BPF_STX:
		if ((err = memory_word(e, i, c)))
			return err;
		emit(e, BPF_STX | BPF_MEM | BPF_W, R10, BPF_CLASS(c->code) == BPF_ST ? REG_A : REG_X,
		     MEM_SLOT(c->k), 0);
		return 0;
	case BPF_ALU:
		return alu(e, i, c);
	case BPF_JMP:
		if (BPF_OP(c->code) == BPF_JA) {
			/* libpcap's protochain loops over IPv6 headers: a jump back */
			int64_t to = (int64_t)i + 1 + (int32_t)c->k;

			if (to < 0 || to >= n)
				return bad(e, i, c->code);
			if (to <= i) {
				/* a longer chain than MAX_LOOPS is not followed: the packet is dropped */
				emit(e, BPF_ALU | BPF_SUB | BPF_K, REG_LOOPS, 0, 0, 1);
				if ((err = jump(e, BPF_JMP32 | BPF_JEQ | BPF_K, REG_LOOPS, 0, 0, e->drop)))
					return err;
			}
			return jump(e, BPF_JMP | BPF_JA, 0, 0, 0, target(e, (int)to));
		}
		return conditional(e, i, n, c);
	case BPF_RET:
		if (BPF_RVAL(c->code) == BPF_K)
			return jump(e, BPF_JMP | BPF_JA, 0, 0, 0, c->k ? e->keep : e->drop);
		if (BPF_RVAL(c->code) != BPF_A)
			return bad(e, i, c->code);
		err = jump(e, BPF_JMP32 | BPF_JEQ | BPF_K, REG_A, 0, 0, e->drop);
		return err ? err : jump(e, BPF_JMP | BPF_JA, 0, 0, 0, e->keep);
	case BPF_MISC:
		if (BPF_MISCOP(c->code) == BPF_TAX)
			emit(e, BPF_ALU | BPF_MOV | BPF_X, REG_X, REG_A, 0, 0);
		else
			emit(e, BPF_ALU | BPF_MOV | BPF_X, REG_A, REG_X, 0, 0);
		return 0;
	}
	return bad(e, i, c->code);
}

/* One pass over the program; with e->out NULL it only counts, filling start. */
static int translate(struct emitter *e, const struct cbpf_insn *insns, int n, int *start)
{
	int err;

	e->n = 0;
	emit(e, BPF_ALU64 | BPF_MOV | BPF_X, REG_CTX, R1, 0, 0);
	emit(e, BPF_ALU | BPF_MOV | BPF_K, REG_A, 0, 0, 0);
	emit(e, BPF_ALU | BPF_MOV | BPF_K, REG_X, 0, 0, 0);
	emit(e, BPF_ALU | BPF_MOV | BPF_K, REG_LOOPS, 0, 0, MAX_LOOPS);
	/* M[] starts zeroed, as the verifier wants every stack read initialised */
	for (int off = MEM_SLOT(0); off <= LOAD_SLOT; off += 8)
		emit(e, BPF_ST | BPF_MEM | BPF_DW, R10, 0, (int16_t)off, 0);
	for (int i = 0; i < n; i++) {
		if (!e->out)
			start[i] = e->n;
		if ((err = translate_one(e, i, n, &insns[i])))
			return err;
	}
	e->drop = e->n;
	emit(e, BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, TCX_NEXT);
	emit(e, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	e->keep = e->n;
	emit(e, BPF_ALU64 | BPF_MOV | BPF_X, R1, REG_CTX, 0, 0);
	emit(e, BPF_LD | BPF_DW | BPF_IMM, R2, BPF_PSEUDO_MAP_FD, 0, e->array_fd);
	emit(e, 0, 0, 0, 0, 0);
	emit(e, BPF_ALU64 | BPF_MOV | BPF_K, R3, 0, 0, 0);
	emit(e, BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_tail_call);
	emit(e, BPF_ALU64 | BPF_MOV | BPF_K, R0, 0, 0, TCX_NEXT); /* the capture program is gone */
	emit(e, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
	return 0;
}

int packet_filter_load(const struct cbpf_insn *insns, int n, int next, int attach_type,
		       uint32_t link_offset, int *array_fd, char *msg, size_t msg_len, char *log,
		       size_t log_len)
{
	struct emitter e = { .link_offset = link_offset, .array_fd = -1, .msg = msg, .msg_len = msg_len };
	int *start = calloc(n ? n : 1, sizeof(int)), fd = -1, err;
	uint32_t zero = 0;

	*array_fd = -1;
	if (!start) {
		snprintf(msg, msg_len, "translate the packet filter");
		return -ENOMEM;
	}
	err = translate(&e, insns, n, start);
	if (err)
		goto out;
	/* the second pass knows every target */
	e.start = start;
	e.out = calloc(e.n, sizeof(*e.out));
	if (!e.out) {
		err = -ENOMEM;
		snprintf(msg, msg_len, "translate the packet filter");
		goto out;
	}
	e.array_fd = bpf_map_create(BPF_MAP_TYPE_PROG_ARRAY, "ecap_pkt_next", 4, 4, 1, NULL);
	if (e.array_fd < 0) {
		err = -errno;
		snprintf(msg, msg_len, "create the packet filter's program array");
		goto out;
	}
	if (bpf_map_update_elem(e.array_fd, &zero, &next, BPF_ANY) < 0) {
		err = -errno;
		snprintf(msg, msg_len, "put the capture program behind the packet filter");
		goto out;
	}
	err = translate(&e, insns, n, start);
	if (err)
		goto out;
	{
		LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type = attach_type);

		fd = bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "ecap_pkt_filter", "Dual BSD/GPL", e.out, e.n,
				   &opts);
		if (fd < 0) {
			err = -errno;
			snprintf(msg, msg_len, "load the packet filter (%d instructions)", e.n);
			/* again for the verifier's log only: a log that overflows would
			 * replace the real error with ENOSPC (its end is what is kept) */
			if (log && log_len) {
				opts.log_buf = log;
				opts.log_size = (uint32_t)log_len;
				opts.log_level = 1;
				close(bpf_prog_load(BPF_PROG_TYPE_SCHED_CLS, "ecap_pkt_filter", "Dual BSD/GPL",
						    e.out, e.n, &opts));
			}
		}
	}
out:
	free(start);
	free(e.out);
	if (fd < 0 && e.array_fd >= 0)
		close(e.array_fd);
	else
		*array_fd = e.array_fd;
	return fd < 0 ? err : fd;
}
