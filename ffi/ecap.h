/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * libecap: the narrow C API that lib/core/ffi.ts binds. Every call that can fail
 * returns a negative errno and leaves a message on the handle
 * (ecap_last_error); nothing here prints or exits.
 */
#ifndef LIBECAP_H
#define LIBECAP_H

#include <stddef.h>
#include <stdint.h>

#define ECAP_API __attribute__((visibility("default")))

struct ecap;

/* A handle holding one BPF object, its links and its ring buffer. */
ECAP_API struct ecap *ecap_new(void);
/* Opens an object from memory (copied: the caller may free it). */
ECAP_API int ecap_object_open_mem(struct ecap *h, const void *buf, size_t len, const char *name);
/* Sets a `const volatile` global before load. */
ECAP_API int ecap_object_set_rodata(struct ecap *h, const char *var, const void *val, size_t len);
/* Sets a map's max_entries before load (e.g. the ring buffer's size in bytes). */
ECAP_API int ecap_map_set_size(struct ecap *h, const char *map, uint32_t max_entries);
/*
 * Of the programs in uprobe and uretprobe sections, loads only those named
 * in names (NUL-separated, ended by an empty name): an object shared by
 * several libraries (kern/tls.bpf.c) need not verify the others' programs.
 * Programs of other kinds are all loaded.
 */
ECAP_API int ecap_object_load_uprobes(struct ecap *h, const char *names);
ECAP_API int ecap_object_load(struct ecap *h);
/* Attaches; returns a link id >= 0. func names the target in messages only. */
ECAP_API int ecap_attach_uprobe(struct ecap *h, const char *prog, const char *path, uint64_t offset,
				int retprobe, int pid, const char *func);
/* 1 when a program is SEC("uprobe.multi"): one link for many offsets. */
ECAP_API int ecap_program_is_multi(struct ecap *h, const char *prog);
/* Attaches a uprobe.multi program at n offsets of one file, as one link
 * (one detach, one RCU wait, where n perf-event uprobes wait n times). */
ECAP_API int ecap_attach_uprobe_multi(struct ecap *h, const char *prog, const char *path,
				      const uint64_t *offsets, const uint64_t *cookies, uint32_t n,
				      int retprobe, int pid, const char *funcs);
/* Attaches a tcx/ingress or tcx/egress program: an fd-based link that, unlike
 * a netlink TC filter, goes away with the process. With a filter expression
 * (tcpdump's language, compiled by libpcap for linktype: 1 Ethernet, 101 raw
 * IP), a program in front of prog runs it only for the packets kept. */
ECAP_API int ecap_attach_tcx(struct ecap *h, const char *prog, int ifindex, const char *expr,
			     int linktype, uint32_t snaplen);
/* 0 when libpcap compiles expr for linktype, else -EINVAL with its message in msg. */
ECAP_API int ecap_filter_check(const char *expr, int linktype, uint32_t snaplen, char *msg, size_t len);
/* Runs one packet through prog behind the filter expr (BPF_PROG_TEST_RUN), as
 * attach would place it; link_offset bytes of the packet precede the link
 * layer (a raw-IP filter run behind an Ethernet header). A kept packet
 * reaches the ring buffer; the packet itself always goes on (TCX_NEXT). */
ECAP_API int ecap_filter_test_run(struct ecap *h, const char *prog, const char *expr, int linktype,
				  uint32_t snaplen, uint32_t link_offset, const void *packet, uint32_t len);
/*
 * Makes a map of no object (type: enum bpf_map_type) for several handles
 * to share (ecap_map_reuse); returns its fd or -errno.
 */
ECAP_API int ecap_shared_map_new(int type, const char *name, uint32_t key_size, uint32_t value_size,
				 uint32_t entries);
/* Before load: the object's map name is the map behind fd (duplicated). */
ECAP_API int ecap_map_reuse(struct ecap *h, const char *map, int fd);
/* After load: puts program prog in slot of the program array map. */
ECAP_API int ecap_map_set_program(struct ecap *h, const char *map, uint32_t slot, const char *prog);
/* Closes an fd ecap_shared_map_new returned. */
ECAP_API void ecap_fd_close(int fd);
/* Writes one entry of a map after load. */
ECAP_API int ecap_map_update(struct ecap *h, const char *map, const void *key, uint32_t key_size,
			     const void *value, uint32_t value_size);
/* Deletes one entry of a map; a missing entry is not an error. */
ECAP_API int ecap_map_delete(struct ecap *h, const char *map, const void *key, uint32_t key_size);
/* Copies up to max keys of a hash map into out (key_size bytes each); returns
 * how many. Entries changing meanwhile may be missed or seen twice. */
ECAP_API int ecap_map_keys(struct ecap *h, const char *map, void *out, uint32_t key_size,
			   uint32_t max);
ECAP_API int ecap_attach_raw_tp(struct ecap *h, const char *prog, const char *tp);
ECAP_API int ecap_detach(struct ecap *h, int link);
/* Number of links currently attached. */
ECAP_API int ecap_link_count(struct ecap *h);
/*
 * Copies ring-buffer records into buf, each as {u32 size, u32 0, data,
 * padding to 8}, waiting up to timeout_ms (-1: forever) for the first one.
 * Returns bytes written; 0 after a timeout or ecap_wake.
 */
ECAP_API int ecap_ring_poll(struct ecap *h, uint8_t *buf, size_t cap, int timeout_ms);
/* Wakes a waiting ecap_ring_poll; safe from any thread. */
ECAP_API int ecap_wake(struct ecap *h);
/* Reads a per-CPU map value of 8 bytes per CPU; returns the CPU count. */
ECAP_API int ecap_map_read_percpu(struct ecap *h, const char *map, uint32_t key, uint64_t *out, uint32_t n);
ECAP_API int ecap_num_cpus(void);
/*
 * Keeps freed heap memory of the process for reuse: buffers of up to 32 MiB
 * come from the heap, and up to 16 MiB of free heap stays mapped, so the
 * reader's short-lived buffers are not page-faulted in again and again.
 */
ECAP_API void ecap_tune_malloc(void);
/*
 * Starts parsing the kernel's BTF on a thread of its own, for the object
 * loads to come; loads running together share one parse (kernel_btf.c).
 */
ECAP_API void ecap_prefetch_kernel_btf(void);
/*
 * Gives the heap's free memory back to the kernel (malloc_trim), which the
 * tuning above keeps while the reader is busy: for an idle capture.
 */
ECAP_API void ecap_release_memory(void);
/*
 * Takes SIGUSR1 from whatever handles it (since Deno 2.9.2, `deno run` opens
 * a V8 inspector on 127.0.0.1:9229 on SIGUSR1: code execution as root for
 * any local user) and only counts it, for ecap_sigusr1_count to read.
 */
ECAP_API int ecap_own_sigusr1(void);
/* How many SIGUSR1 came since ecap_own_sigusr1. */
ECAP_API uint32_t ecap_sigusr1_count(void);
/* CLOCK_MONOTONIC now, the clock of bpf_ktime_get_ns(). */
ECAP_API uint64_t ecap_monotonic_ns(void);
ECAP_API const char *ecap_last_error(struct ecap *h);
/* libbpf's own log (verifier output included) since the handle was made. */
ECAP_API const char *ecap_log(struct ecap *h);
/*
 * Starts a guardian process that sends SIGCONT to every pid left in the
 * named map (u32 keys) if this process dies without closing the handle:
 * processes a BPF program stopped are never left stopped.
 */
ECAP_API int ecap_guard(struct ecap *h, const char *map);
/* Detaches everything and frees the handle. */
ECAP_API void ecap_close(struct ecap *h);

#endif
