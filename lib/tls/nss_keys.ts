/**
 * Where NSS's secrets can be seen (kern/tls.bpf.c, "NSS (Firefox)"): freebl's
 * HMAC_Update and HMAC_Finish (TLS 1.3's HKDF) and TLS_P_hash (TLS 1.2's
 * PRF), which freebl does not export. Its
 * one export for NSS, FREEBL_GetVector, returns a table of its functions
 * whose layout is a stable interface between NSS's libraries (lib/freebl/
 * loader.h: a length, a version whose high byte is 3, then pointers in an
 * order only ever appended to). The table's entries are function pointers,
 * so function starts; each is also checked to be an unwind-table function
 * start inside the executable segment before anything is probed there.
 * @module
 */
import { type ElfFile, PF_X, PT_LOAD, readElf } from "../binary/elf.ts";
import { Reader, Unwind, UnwindError } from "../binary/eh_frame.ts";

/** Index of each function in FREEBLVector after its 8-byte header. */
const VECTOR_SLOTS = { HMAC_Update: 141, HMAC_Finish: 143, TLS_P_hash: 174 } as const;
const VECTOR_MAJOR = 3;
const SHT_RELA = 4;
const R_X86_64_RELATIVE = 8;
/** Bytes of FREEBL_GetVector searched for the table's address. */
const GET_VECTOR_BYTES = 96;

/** A freebl function ecap probes, at its offset in the file. */
export interface FreeblFunction {
  symbol: keyof typeof VECTOR_SLOTS;
  offset: number;
}

/** Why a freebl cannot be used: one line. */
export class FreeblError extends Error {}

function fail(why: string): never {
  throw new FreeblError(why);
}

/** The value a dynamic relocation gives the 8 bytes at va, else what the file holds there. */
function pointerAt(elf: ElfFile, va: number): number {
  for (const s of elf.sections) {
    if (s.type !== SHT_RELA || s.entsize !== 24) continue;
    const b = elf.bytesAt(s.offset, s.size);
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    for (let i = 0; i + 24 <= b.length; i += 24) {
      if (Number(v.getBigUint64(i, true)) !== va) continue;
      if (Number(v.getBigUint64(i + 8, true) & 0xffffffffn) !== R_X86_64_RELATIVE) {
        fail(`the table entry at 0x${va.toString(16)} is not a relative relocation`);
      }
      return Number(v.getBigInt64(i + 16, true));
    }
  }
  // RELR packs relative relocations as bitmaps; their addends stay in place
  const off = elf.fileOffset(va) ?? fail("the function table is outside the file");
  const b = elf.bytesAt(off, 8);
  return Number(new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true));
}

/** The FREEBLVector's address: the lea in FREEBL_GetVector whose target reads as one. */
function vectorAddress(elf: ElfFile): number {
  const get = elf.symbol("FREEBL_GetVector") ?? fail("no FREEBL_GetVector symbol");
  const code = elf.bytesAt(
    get.fileOffset ?? fail("FREEBL_GetVector not in the file"),
    GET_VECTOR_BYTES,
  );
  const need = 8 + (Math.max(...Object.values(VECTOR_SLOTS)) + 1) * 8;
  for (let i = 0; i + 7 <= code.length; i++) {
    // lea r64, [rip + disp32]: REX.W, 8d, ModRM mod 00 r/m 101
    if ((code[i] & 0xfb) !== 0x48 || code[i + 1] !== 0x8d || (code[i + 2] & 0xc7) !== 0x05) {
      continue;
    }
    const disp = new DataView(code.buffer, code.byteOffset + i + 3, 4).getInt32(0, true);
    const va = get.value + i + 7 + disp;
    const off = elf.fileOffset(va);
    if (off === undefined) continue;
    const h = elf.bytesAt(off, 4);
    const length = h[0] | h[1] << 8, version = h[2] | h[3] << 8;
    if (version >> 8 === VECTOR_MAJOR && length >= need && length % 8 === 0) return va;
  }
  fail("FREEBL_GetVector's function table not found");
}

/**
 * HMAC_Update, HMAC_Finish and TLS_P_hash in a libfreeblpriv3.so, as file offsets;
 * throws FreeblError saying why not.
 */
export async function locateFreeblFunctions(path: string): Promise<FreeblFunction[]> {
  const elf = await readElf(path);
  const vector = vectorAddress(elf);
  const exec = elf.segments.filter((s) => s.type === PT_LOAD && (s.flags & PF_X) !== 0);
  using file = await Deno.open(path);
  let unwind: Unwind;
  try {
    unwind = await Unwind.open(new Reader(file), elf);
  } catch (e) {
    if (e instanceof UnwindError) fail(`unwind tables: ${e.message}`);
    throw e;
  }
  const out: FreeblFunction[] = [];
  for (const [symbol, slot] of Object.entries(VECTOR_SLOTS)) {
    const va = pointerAt(elf, vector + 8 + slot * 8);
    const at = `${symbol} (0x${va.toString(16)})`;
    if (!exec.some((s) => va >= s.vaddr && va < s.vaddr + s.filesz)) {
      fail(`${at} is outside the executable segment`);
    }
    if ((await unwind.before(va))?.[0] !== va) fail(`${at} is not a function start`);
    out.push({ symbol: symbol as FreeblFunction["symbol"], offset: elf.fileOffset(va)! });
  }
  return out;
}
