/**
 * Where an x86-64 PLT stub goes: the symbol its GOT slot is bound to, read
 * from the stub's `jmp *GOT(%rip)` and the slot's R_X86_64_JUMP_SLOT
 * relocation in .rela.plt. Lets a probe site be checked to be a tail call
 * of a named function when the call goes through the PLT (a library
 * calling its own exported function, as GnuTLS's gnutls_record_send does).
 * @module
 */
import type { ElfFile } from "./elf.ts";
import { decodeInstruction, X86DecodeError } from "./x86_ret.ts";

const R_X86_64_JUMP_SLOT = 7;
const RELA_SIZE = 24;
const SYM_SIZE = 24;

/** The GOT address a stub's first indirect jump reads, if it is a PLT stub's. */
function gotSlotOf(elf: ElfFile, va: number): number | undefined {
  const offset = elf.fileOffset(va);
  if (offset === undefined) return undefined;
  const code = elf.bytesAt(offset, 16);
  try {
    for (let at = 0; at < code.length;) {
      const ins = decodeInstruction(code, at);
      at += ins.length;
      // endbr64 (.plt.sec stubs) and a bnd prefix's nothing else come first
      if (ins.map === 1 && ins.opcode === 0x1e) continue;
      // jmp *disp32(%rip): ff /4 with ModRM 0x25, the displacement last
      if (ins.map === 0 && ins.opcode === 0xff && code[at - 5] === 0x25) {
        const disp = new DataView(code.buffer, code.byteOffset + at - 4, 4).getInt32(0, true);
        return va + at + disp;
      }
      return undefined;
    }
  } catch (e) {
    if (!(e instanceof X86DecodeError)) throw e;
  }
  return undefined;
}

/** The name of the function the PLT stub at virtual address `va` jumps to, if it is one. */
export function pltTarget(elf: ElfFile, va: number): string | undefined {
  const slot = gotSlotOf(elf, va);
  const dynsym = elf.sectionHeader(".dynsym");
  if (slot === undefined || dynsym === undefined) return undefined;
  const relocs = elf.section(".rela.plt");
  const syms = elf.section(".dynsym");
  const names = elf.section(elf.sections[dynsym.link]?.name ?? ".dynstr");
  if (relocs === undefined || syms === undefined || names === undefined) return undefined;
  const r = new DataView(relocs.buffer, relocs.byteOffset, relocs.byteLength);
  for (let i = 0; i + RELA_SIZE <= relocs.length; i += RELA_SIZE) {
    if (Number(r.getBigUint64(i, true)) !== slot) continue;
    const info = r.getBigUint64(i + 8, true);
    if (Number(info & 0xffffffffn) !== R_X86_64_JUMP_SLOT) return undefined;
    const at = Number(info >> 32n) * SYM_SIZE;
    if (at + SYM_SIZE > syms.length) return undefined;
    const nameAt = new DataView(syms.buffer, syms.byteOffset + at, 4).getUint32(0, true);
    const end = names.indexOf(0, nameAt);
    if (nameAt >= names.length || end < 0) return undefined;
    return new TextDecoder().decode(names.subarray(nameAt, end));
  }
  return undefined;
}
