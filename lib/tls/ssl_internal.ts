/**
 * Cheaper probe sites for TLS libraries' data calls.
 *
 * A uprobe on an instruction the kernel must single-step out of line costs
 * two exceptions; one on an instruction it emulates (push, call, jmp, nop)
 * costs one. On this VM that is 20 µs against 5.5 µs a hit (measured with
 * bpftrace on hand-written functions). SSL_read, SSL_write and their _ex
 * forms start with `sub $N,%rsp` (single-stepped) and first call the
 * library's own ssl_read_internal / ssl_write_internal(s, buf, num,
 * &processed), which start with pushes (OpenSSL 1.1.1 and 3.x alike).
 * Probing those, found as the function both public forms call first,
 * catches every SSL_read* and SSL_write* for the cheap trap, entry and
 * return alike (a uretprobe's hidden entry probe is the same trap).
 *
 * GnuTLS's gnutls_record_send starts with `xor` (single-stepped) and only
 * sets two arguments and jumps to gnutls_record_send2, which starts with a
 * push and is probed anyway: where it is that plain forward, send2 alone
 * sees every send.
 * @module
 */
import type { ElfFile } from "../binary/elf.ts";
import { openElf } from "../core/targets.ts";
import { decodeInstruction, X86DecodeError } from "../binary/x86_ret.ts";
import { pltTarget } from "../binary/elf_plt.ts";

/** File offsets of the internal read and write functions. */
export interface InternalCalls {
  read: number;
  write: number;
}

/** Bytes of a public function searched for its first call. */
const SCAN_BYTES = 128;

/**
 * The internal functions of the OpenSSL in path, when both public forms of
 * each call the same one first and it starts with an instruction the kernel
 * emulates; undefined otherwise (then the public functions are probed).
 */
export function opensslInternalCalls(path: string): Promise<InternalCalls | undefined> {
  return byIdentity(path, "openssl", find, undefined);
}

/**
 * True when the GnuTLS in path has gnutls_record_send only forward to
 * gnutls_record_send2 (then send2's probes see every send); false when
 * not, or unsure (then both are probed, and a send is reported once).
 */
export function gnutlsSendForwards(path: string): Promise<boolean> {
  return byIdentity(path, "gnutls", async (p) => {
    if (Deno.build.arch !== "x86_64") return false;
    const elf = await openElf(p, "libgnutls");
    return tailCalls(elf, "gnutls_record_send", "gnutls_record_send2");
  }, false);
}

/**
 * One answer per file and question, by the file's identity, not its name:
 * a library upgraded in place has other offsets, and a probe at a stale one
 * would break its code. A file that cannot be read or parsed gets `none`.
 */
async function byIdentity<T>(
  path: string,
  question: string,
  answer: (path: string) => Promise<T>,
  none: T,
): Promise<T> {
  let key: string;
  try {
    const st = await Deno.stat(path);
    key = `${question}:${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
  } catch {
    return none;
  }
  let found = cache.get(key) as Promise<T> | undefined;
  if (!found) {
    found = answer(path).catch(() => none);
    cache.set(key, found);
    if (cache.size > 64) cache.delete(cache.keys().next().value!);
  }
  return await found;
}

const cache = new Map<string, Promise<unknown>>();

/**
 * Whether function `from` does nothing but move registers and jump to `to`
 * (directly, or through its PLT stub); its body is at most 32 bytes.
 */
function tailCalls(elf: ElfFile, from: string, to: string): boolean {
  const sym = elf.symbol(from), target = elf.symbol(to);
  if (sym?.fileOffset === undefined || sym.type !== "FUNC" || target === undefined) return false;
  const code = elf.bytesAt(sym.fileOffset, 32);
  try {
    for (let at = 0; at < code.length;) {
      const ins = decodeInstruction(code, at);
      at += ins.length;
      if (ins.map === 0 && (ins.opcode === 0xe9 || ins.opcode === 0xeb)) {
        const view = new DataView(code.buffer, code.byteOffset);
        const rel = ins.opcode === 0xe9 ? view.getInt32(at - 4, true) : view.getInt8(at - 1);
        const dest = sym.value + at + rel;
        return dest === target.value || pltTarget(elf, dest) === to;
      }
      // argument set-up only: xor or mov between registers (31/33, 89/8b, ModRM mod 11)
      let op = ins.offset;
      while (op < at && (code[op] & 0xf0) === 0x40) op++; // REX
      const plain = ins.map === 0 && op + 2 === at && code[op] === ins.opcode;
      if (!plain || ![0x31, 0x33, 0x89, 0x8b].includes(ins.opcode) || code[op + 1] < 0xc0) {
        return false;
      }
    }
  } catch (e) {
    if (!(e instanceof X86DecodeError)) throw e;
  }
  return false;
}

async function find(path: string): Promise<InternalCalls | undefined> {
  if (Deno.build.arch !== "x86_64") return undefined;
  const elf = await openElf(path, "libssl");
  const read = sharedCallee(elf, "SSL_read", "SSL_read_ex");
  const write = sharedCallee(elf, "SSL_write", "SSL_write_ex");
  if (read === undefined || write === undefined || read === write) return undefined;
  return { read, write };
}

/** The file offset of the function a and b both call first, if cheap to probe. */
function sharedCallee(elf: ElfFile, a: string, b: string): number | undefined {
  const ta = firstCallTarget(elf, a);
  if (ta === undefined || ta !== firstCallTarget(elf, b)) return undefined;
  const offset = elf.fileOffset(ta);
  if (offset === undefined || !emulatedFirst(elf.bytesAt(offset, 16))) return undefined;
  return offset;
}

/** The address the first direct call in a function goes to, before any branch. */
function firstCallTarget(elf: ElfFile, name: string): number | undefined {
  const sym = elf.symbol(name);
  if (sym?.fileOffset === undefined || sym.type !== "FUNC") return undefined;
  const code = elf.bytesAt(sym.fileOffset, Math.min(sym.size || SCAN_BYTES, SCAN_BYTES));
  try {
    for (let at = 0; at < code.length;) {
      const ins = decodeInstruction(code, at);
      at += ins.length;
      if (ins.map !== 0) continue;
      if (ins.opcode === 0xe8 && ins.length === 5) {
        const rel = new DataView(code.buffer, code.byteOffset + at - 4, 4).getInt32(0, true);
        return sym.value + at + rel;
      }
      // a jump or return first: the function is not the plain wrapper looked for
      if (ins.opcode === 0xc3 || ins.opcode === 0xe9 || ins.opcode === 0xeb) return undefined;
    }
  } catch (e) {
    if (!(e instanceof X86DecodeError)) throw e;
  }
  return undefined;
}

/** Whether code starts with an instruction x86 uprobes emulate (no single step). */
export function emulatedFirst(code: Uint8Array): boolean {
  try {
    const ins = decodeInstruction(code, 0);
    if (ins.map === 0) {
      // push r64 (REX.B allowed), nop, call rel32, jmp rel32/rel8
      return (ins.opcode >= 0x50 && ins.opcode <= 0x57) || ins.opcode === 0x90 ||
        ins.opcode === 0xe8 || ins.opcode === 0xe9 || ins.opcode === 0xeb;
    }
    return ins.map === 1 && ins.opcode === 0x1f; // nopl
  } catch (e) {
    if (!(e instanceof X86DecodeError)) throw e;
    return false;
  }
}
