/**
 * Following new processes: the watch records the kernel sends (a library
 * mapped, a program exec'd, a process gone), files as the kernel keys them,
 * and the processes held (stopped) while their new file is probed.
 * @module
 */
import type { Btf } from "../binary/btf.ts";
import { headerReader, readCString, RecordError, type RecordHeader } from "./record_header.ts";

/** Values of watch_files (enum watch_state in kern/ecap.h). */
export const IGNORE = 1, PINNED = 2, PROBED = 3, STOP = 4;
/** enum watch_what. */
export const WATCH_USES = 2, WATCH_GONE = 4;
export const WATCH_NAME_LEN = 32;
/** File name prefixes one capture follows at most (kern/ecap.h). */
export const WATCH_PREFIXES = 3;

/** A struct ecap_watch record. */
export interface WatchRecord extends RecordHeader {
  what: number;
  ino: number;
  dev: number;
  fd: number;
  stopped: boolean;
  name: string;
}

/** Reads watch records of an object; undefined for every other record. */
export function watchReader(btf: Btf) {
  const hdr = headerReader(btf, (m) => m);
  const kind = btf.enumValues("ecap_kind").get("ECAP_KIND_WATCH")!;
  const s = btf.struct("ecap_watch");
  const at = (m: string) => s.members.get(m)!.offset;
  const o = {
    ino: at("ino"),
    dev: at("dev"),
    fd: at("fd"),
    what: at("what"),
    stopped: at("stopped"),
    name: at("name"),
  };
  const nameLen = s.members.get("name")!.size;
  const kindAt = btf.struct("ecap_hdr").members.get("kind")!.offset;
  return (view: DataView, offset: number, length: number): WatchRecord | undefined => {
    if (length < 4 || view.getUint32(offset + kindAt, true) !== kind) return undefined;
    if (length < s.size) throw new RecordError("watch record too short");
    return {
      ...hdr.read(view, offset, length),
      what: view.getUint32(offset + o.what, true),
      ino: Number(view.getBigUint64(offset + o.ino, true)),
      dev: view.getUint32(offset + o.dev, true),
      fd: view.getInt32(offset + o.fd, true),
      stopped: view.getUint32(offset + o.stopped, true) !== 0,
      name: readCString(view, offset + o.name, nameLen),
    };
  };
}

/** A stat dev_t (glibc's encoding) as the kernel's: major << 20 | minor. */
export function kernelDev(dev: number): number {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn);
  const minor = (d & 0xffn) | ((d >> 12n) & ~0xffn);
  return Number((major << 20n) | minor);
}

/** struct watch_file_key of (dev, ino). */
export function fileKeyBytes(kdev: number, ino: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, BigInt(ino), true);
  v.setUint32(8, kdev, true);
  return b;
}

/** The kernel's key of the file at path, or undefined when it cannot be stat'ed. */
export function fileKeyOf(path: string): { text: string; bytes: Uint8Array } | undefined {
  try {
    const st = Deno.statSync(path);
    const kdev = kernelDev(st.dev!);
    return { text: `${kdev}:${st.ino}`, bytes: fileKeyBytes(kdev, st.ino!) };
  } catch {
    return undefined;
  }
}

export function pidExists(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Processes held (stopped at an exec or a mapping) by this process's
 * captures, and by how many. Several captures (ecap tls's families) may
 * hold one process at once; it runs on when the last is done with it.
 */
const holds = new Map<number, number>();
/** Captures running in this process (a process is held a little longer when several do). */
export const liveCaptures = new Set<object>();
/**
 * How long a process is still held once the captures that had its record
 * are done, when others run too: theirs may still be on its way.
 */
const SIBLING_GRACE_MS = 60;

export function holdProcess(pid: number) {
  holds.set(pid, (holds.get(pid) ?? 0) + 1);
}

export async function releaseProcess(pid: number) {
  const left = (holds.get(pid) ?? 1) - 1;
  if (left > 0) {
    holds.set(pid, left);
    return;
  }
  holds.delete(pid);
  if (liveCaptures.size > 1) {
    await new Promise((r) => setTimeout(r, SIBLING_GRACE_MS));
    if (holds.has(pid)) return; // another capture took it up meanwhile
  }
  try {
    Deno.kill(pid, "SIGCONT");
  } catch { /* it is gone */ }
}
