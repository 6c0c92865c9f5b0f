/* SPDX-License-Identifier: GPL-2.0 OR BSD-3-Clause */
/*
 * The endpoints of the socket behind a file descriptor, by CO-RE reads of
 * task -> files -> socket -> sock: no per-library struct offsets. Shared by
 * every TLS module.
 */
#ifndef TLS_SOCKET_BPF_H
#define TLS_SOCKET_BPF_H

#define S_IFMT 0170000
#define S_IFSOCK 0140000
#define AF_INET 2
#define AF_INET6 10

/* The endpoints of a socket. */
struct sock_info {
	__u16 family; /* 0 if fd is not an IPv4/IPv6 socket */
	__u16 lport;
	__u16 rport;
	__u8 laddr[16];
	__u8 raddr[16];
};

/* Fills family, ports and addresses from the socket behind fd, if it is one. */
static __always_inline void read_socket(struct sock_info *d, int fd)
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

#define COPY_SOCK(dst, si)                                              \
	do {                                                            \
		(dst)->family = (si)->family;                           \
		(dst)->lport = (si)->lport;                             \
		(dst)->rport = (si)->rport;                             \
		__builtin_memcpy((dst)->laddr, (si)->laddr, 16);        \
		__builtin_memcpy((dst)->raddr, (si)->raddr, 16);        \
	} while (0)


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

#endif
