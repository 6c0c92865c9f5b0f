/**
 * An x86-64 instruction length decoder, enough for compiler-generated code
 * (Go's in particular): legacy prefixes, REX, VEX, EVEX, the one-, two- and
 * three-byte opcode maps, ModRM/SIB/displacement and immediates. It finds
 * the return instructions of a function: a uretprobe is unsafe in Go (the
 * runtime moves goroutine stacks, and the return address the kernel swaps
 * in would be copied to the new stack), so ecap probes each RET instead.
 * Walking instruction by instruction is what keeps a 0xC3 byte inside
 * another instruction (an immediate, a displacement, a ModRM) from counting.
 * @module
 */

/** Raised when bytes do not decode as an instruction this decoder knows. */
export class X86DecodeError extends Error {
  /** Creates an error saying where decoding failed. */
  constructor(message: string) {
    super(message);
    this.name = "X86DecodeError";
  }
}

const LEGACY_PREFIXES = new Set([0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0x66, 0x67]);

/** One-byte opcodes followed by a ModRM byte. */
function oneByteHasModrm(op: number): boolean {
  if (op < 0x40) return (op & 0x07) < 0x04; // ALU r/m forms: 00-03, 08-0B, ...
  if (op === 0x63 || op === 0x69 || op === 0x6b) return true;
  if (op >= 0x80 && op <= 0x8f) return true;
  if (op === 0xc0 || op === 0xc1 || op === 0xc6 || op === 0xc7) return true;
  if (op >= 0xd0 && op <= 0xd3) return true;
  if (op >= 0xd8 && op <= 0xdf) return true; // x87
  return op === 0xf6 || op === 0xf7 || op === 0xfe || op === 0xff;
}

/** Bytes of immediate of a one-byte opcode; z = 2 or 4 (operand size), v = 2, 4 or 8. */
function oneByteImmediate(op: number, modrm: number, z: number, v: number, a: number): number {
  if (op < 0x40) {
    const low = op & 0x07;
    if (low === 0x04) return 1; // AL, imm8
    if (low === 0x05) return z; // eAX, imm
    return 0;
  }
  switch (op) {
    case 0x68:
    case 0x69:
    case 0x81:
    case 0xa9:
    case 0xc7:
    case 0xe8:
    case 0xe9:
      return z;
    case 0x6a:
    case 0x6b:
    case 0x80:
    case 0x82:
    case 0x83:
    case 0xa8:
    case 0xc0:
    case 0xc1:
    case 0xc6:
    case 0xcd:
    case 0xd4:
    case 0xd5:
    case 0xeb:
      return 1;
    case 0xc2:
    case 0xca:
      return 2;
    case 0xc8:
      return 3; // ENTER imm16, imm8
    case 0xf6:
      return ((modrm >> 3) & 7) < 2 ? 1 : 0; // TEST r/m8, imm8
    case 0xf7:
      return ((modrm >> 3) & 7) < 2 ? z : 0; // TEST r/m, imm
  }
  if (op >= 0x70 && op <= 0x7f) return 1; // Jcc rel8
  if (op >= 0xe0 && op <= 0xe7) return 1; // LOOP, JRCXZ, IN, OUT
  if (op >= 0xb0 && op <= 0xb7) return 1; // MOV r8, imm8
  if (op >= 0xb8 && op <= 0xbf) return v; // MOV r, imm (imm64 with REX.W)
  if (op >= 0xa0 && op <= 0xa3) return a; // MOV AL/eAX, moffs
  return 0;
}

const TWO_BYTE_NO_MODRM = new Set([
  0x05, // SYSCALL
  0x06,
  0x07,
  0x08,
  0x09,
  0x0b, // UD2
  0x0e,
  0x77, // EMMS
  0xa0,
  0xa1,
  0xa2, // CPUID
  0xa8,
  0xa9,
  0xaa,
]);

/** Two-byte (0F xx) opcodes followed by a ModRM byte. */
function twoByteHasModrm(op: number): boolean {
  if (TWO_BYTE_NO_MODRM.has(op)) return false;
  if (op >= 0x30 && op <= 0x37) return false; // WRMSR, RDTSC, SYSENTER, ...
  if (op >= 0x80 && op <= 0x8f) return false; // Jcc rel32
  if (op >= 0xc8 && op <= 0xcf) return false; // BSWAP
  return true;
}

const TWO_BYTE_IMM8 = new Set([0x0f, 0xa4, 0xac, 0xba, 0xc2, 0xc4, 0xc5, 0xc6]);

/** Bytes of immediate of a two-byte (0F xx) opcode. */
function twoByteImmediate(op: number, z: number): number {
  if (op >= 0x80 && op <= 0x8f) return z === 2 ? 2 : 4;
  if (op >= 0x70 && op <= 0x73) return 1; // PSHUF*, shift groups 12-14
  return TWO_BYTE_IMM8.has(op) ? 1 : 0;
}

/** Bytes of ModRM, SIB and displacement starting at `at`. */
function modrmLength(code: Uint8Array, at: number): number {
  if (at >= code.length) throw new X86DecodeError("truncated ModRM");
  const modrm = code[at];
  const mod = modrm >> 6, rm = modrm & 7;
  if (mod === 3) return 1;
  let n = 1;
  if (rm === 4) {
    if (at + 1 >= code.length) throw new X86DecodeError("truncated SIB");
    const base = code[at + 1] & 7;
    n++;
    if (mod === 0 && base === 5) return n + 4;
  } else if (mod === 0 && rm === 5) {
    return n + 4; // RIP-relative
  }
  return n + (mod === 1 ? 1 : mod === 2 ? 4 : 0);
}

/** What one decoded instruction is. */
export interface X86Instruction {
  /** Offset of its first byte (prefixes included). */
  offset: number;
  length: number;
  /** The opcode byte (of its map); 0xC3 in map 0 is RET. */
  opcode: number;
  /** 0: one-byte map, 1: 0F, 2: 0F38, 3: 0F3A. */
  map: number;
}

/** Decodes the instruction at `at` in `code`. */
export function decodeInstruction(code: Uint8Array, at: number): X86Instruction {
  let i = at;
  let opsize16 = false, addr32 = false, rexW = false;
  const byte = () => {
    if (i >= code.length) throw new X86DecodeError(`truncated instruction at ${at}`);
    return code[i++];
  };
  const done = (opcode: number, map: number): X86Instruction => {
    if (i > code.length) throw new X86DecodeError(`truncated instruction at ${at}`);
    return { offset: at, length: i - at, opcode, map };
  };
  let b = byte();
  while (LEGACY_PREFIXES.has(b)) {
    if (b === 0x66) opsize16 = true;
    if (b === 0x67) addr32 = true;
    b = byte();
  }
  if (b >= 0x40 && b <= 0x4f) {
    rexW = (b & 8) !== 0;
    b = byte();
  }
  const z = opsize16 && !rexW ? 2 : 4;
  const v = rexW ? 8 : opsize16 ? 2 : 4;
  const a = addr32 ? 4 : 8;

  // VEX (C4, C5) and EVEX (62): always so in 64-bit mode
  if (b === 0xc4 || b === 0xc5 || b === 0x62) {
    let map: number;
    if (b === 0xc5) {
      byte();
      map = 1;
    } else if (b === 0xc4) {
      map = byte() & 0x1f;
      byte();
    } else {
      map = byte() & 0x07;
      byte();
      byte();
    }
    const op = byte();
    if (map === 1 && op === 0x77) return done(op, map); // VZEROUPPER, VZEROALL
    if (map < 1 || map > 3) throw new X86DecodeError(`unknown VEX/EVEX map ${map} at ${at}`);
    i += modrmLength(code, i);
    if (map === 3 || (map === 1 && twoByteImmediate(op, 4) === 1)) i += 1;
    return done(op, map);
  }

  if (b === 0x0f) {
    const op = byte();
    if (op === 0x38 || op === 0x3a) {
      const op3 = byte();
      i += modrmLength(code, i);
      if (op === 0x3a) i += 1;
      return done(op3, op === 0x38 ? 2 : 3);
    }
    if (twoByteHasModrm(op)) i += modrmLength(code, i);
    i += twoByteImmediate(op, z);
    return done(op, 1);
  }

  let modrm = 0;
  if (oneByteHasModrm(b)) {
    modrm = code[i] ?? 0;
    i += modrmLength(code, i);
  }
  i += oneByteImmediate(b, modrm, z, v, a);
  return done(b, 0);
}

/** Every instruction of `code`, in order (code is one function's bytes). */
export function* instructions(code: Uint8Array): Generator<X86Instruction> {
  for (let at = 0; at < code.length;) {
    const ins = decodeInstruction(code, at);
    yield ins;
    at += ins.length;
  }
}

/**
 * Offsets (from the start of `code`) of the RET instructions of a function
 * whose machine code is `code`. Throws X86DecodeError if it does not decode.
 */
export function retOffsets(code: Uint8Array): number[] {
  const out: number[] = [];
  for (const ins of instructions(code)) {
    if (ins.map === 0 && ins.opcode === 0xc3) out.push(ins.offset);
  }
  return out;
}
