/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * One parse of the kernel's BTF shared by the object loads that run
 * together (kernel_btf.c). Internal to libecap.so; nothing here prints.
 */
#ifndef ECAP_KERNEL_BTF_H
#define ECAP_KERNEL_BTF_H

/* A load begins or ends: the parse is kept while one runs. */
void kernel_btf_load_begins(void);
void kernel_btf_load_ends(void);
/*
 * Parses the kernel's BTF on a thread of its own, for a load to come: kept
 * until the loads running when the first of them ends have all ended.
 */
void kernel_btf_prefetch(void);

#endif
