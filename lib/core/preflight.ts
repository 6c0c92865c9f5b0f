/**
 * Checks made before loading anything, so a missing privilege or kernel
 * feature is named in one line instead of surfacing as a libbpf errno.
 * @module
 */
import { EcapError } from "../base/errors.ts";

const CAP_SYS_ADMIN = 21n;
const CAP_PERFMON = 38n;
const CAP_BPF = 39n;

/** Effective capabilities of this process, from /proc/self/status. */
export function effectiveCapabilities(): bigint {
  const status = Deno.readTextFileSync("/proc/self/status");
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

/** Throws unless this process may load and attach tracing BPF programs. */
export function checkPrivileges(caps = effectiveCapabilities()) {
  const has = (c: bigint) => (caps >> c & 1n) === 1n;
  if (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) return;
  throw new EcapError("Cannot load BPF programs: missing CAP_BPF and CAP_PERFMON", {
    kind: "permission",
    hint: "run ecap as root",
  });
}

/** Throws unless the kernel describes itself in BTF (CO-RE needs it). */
export function checkKernel() {
  try {
    Deno.statSync("/sys/kernel/btf/vmlinux");
  } catch {
    throw new EcapError("The kernel has no BTF (/sys/kernel/btf/vmlinux is missing)", {
      kind: "unsupported",
      hint: "use a kernel built with CONFIG_DEBUG_INFO_BTF=y",
    });
  }
}

/** Throws unless a process with this pid exists. */
export function checkPid(pid: number) {
  try {
    Deno.statSync(`/proc/${pid}`);
  } catch {
    throw new EcapError(`No process with pid ${pid}`, {
      kind: "not-found",
      hint: "check the pid with ps",
    });
  }
}
