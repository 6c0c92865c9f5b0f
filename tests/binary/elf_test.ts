import assert from "node:assert/strict";
import {
  ElfError,
  ElfFile,
  PT_LOAD,
  readElf,
  SHN_UNDEF,
  SHT_NOBITS,
} from "../../lib/binary/elf.ts";
import { mulberry32 } from "../_random.ts";

const BASH = "/usr/bin/bash";
const BASH_SYMBOLS = [
  "readline",
  "readline_internal_teardown",
  "execute_command",
];

/** Runs a tool and returns its stdout, failing the test on a non-zero exit. */
async function run(cmd: string, ...args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, {
    args,
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const text = new TextDecoder();
  if (!out.success) {
    throw new Error(
      `${cmd} ${args.join(" ")} failed: ${text.decode(out.stderr)}`,
    );
  }
  return text.decode(out.stdout);
}

/** Symbols as `readelf -Ws` prints them, by name (version suffix dropped). */
async function readelfSymbols(
  path: string,
  table: "--dyn-syms" | "--syms",
): Promise<Map<string, { value: number; size: number; type: string }>> {
  const out = new Map<string, { value: number; size: number; type: string }>();
  for (const line of (await run("readelf", "-W", table, path)).split("\n")) {
    const m = /^\s*\d+:\s+([0-9a-f]+)\s+(\d+)\s+(\w+)\s+\w+\s+\w+\s+(\w+)\s+(\S+)/
      .exec(line);
    if (m === null || m[4] === "UND") continue;
    out.set(m[5].split("@")[0], {
      value: parseInt(m[1], 16),
      size: Number(m[2]),
      type: m[3],
    });
  }
  return out;
}

/** PT_LOAD segments as `readelf -lW` prints them. */
async function readelfLoads(
  path: string,
): Promise<{ offset: number; vaddr: number; filesz: number; memsz: number }[]> {
  const loads = [];
  for (const line of (await run("readelf", "-lW", path)).split("\n")) {
    const m =
      /^\s*LOAD\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x[0-9a-f]+\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)/
        .exec(line);
    if (m === null) continue;
    const [offset, vaddr, filesz, memsz] = m.slice(1).map((h) => parseInt(h, 16));
    loads.push({ offset, vaddr, filesz, memsz });
  }
  return loads;
}

/** The bytes objdump shows at a virtual address: an independent vaddr→file check. */
async function objdumpBytes(
  path: string,
  vaddr: number,
  n: number,
): Promise<number[]> {
  const out = await run(
    "objdump",
    "-s",
    `--start-address=0x${vaddr.toString(16)}`,
    `--stop-address=0x${(vaddr + n).toString(16)}`,
    path,
  );
  const bytes: number[] = [];
  for (const line of out.split("\n")) {
    // " 4ba50 41544c8d 25289a0a 00554889 fdbf1000  ATL.%(...UH....."
    const m = /^ ([0-9a-f]+) (.{35})/.exec(line);
    if (m === null) continue;
    const hex = m[2].replaceAll(" ", "");
    for (let i = 0; i + 2 <= hex.length; i += 2) {
      bytes.push(parseInt(hex.slice(i, i + 2), 16));
    }
  }
  return bytes.slice(0, n);
}

/** Compiles C source with gcc into a temp dir; returns the dir. */
async function compile(
  files: Record<string, string>,
  builds: string[][],
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ecap_elf_test_" });
  for (const [name, text] of Object.entries(files)) {
    await Deno.writeTextFile(`${dir}/${name}`, text);
  }
  for (const [cmd, ...args] of builds) {
    await run(cmd, ...args.map((a) => a.replaceAll("$D", dir)));
  }
  return dir;
}

const PROG_C = `
#include <stdio.h>
int ecap_exported_fn(int x) { return x * 3 + 1; }
static int __attribute__((noinline)) ecap_static_fn(int x) { return x + 7; }
int main(int argc, char **argv) {
  (void)argv;
  printf("%d\\n", ecap_exported_fn(argc) + ecap_static_fn(argc));
  return 0;
}
`;

const LIB_C = `
#include <stdio.h>
int ecap_lib_fn(const char *s) { return puts(s); }
`;

interface Fixtures {
  prog: string;
  stripped: string;
  lib: string;
}

/** Builds the test program (plain and stripped) and a shared library in a temp dir. */
async function withFixtures(fn: (f: Fixtures) => Promise<void>): Promise<void> {
  const dir = await compile({ "prog.c": PROG_C, "lib.c": LIB_C }, [
    ["gcc", "-O1", "-rdynamic", "-o", "$D/prog", "$D/prog.c"],
    ["strip", "-o", "$D/prog.stripped", "$D/prog"],
    [
      "gcc",
      "-O1",
      "-shared",
      "-fPIC",
      "-Wl,-soname,libecaptest.so.1",
      "-o",
      "$D/libecaptest.so",
      "$D/lib.c",
    ],
  ]);
  try {
    await fn({
      prog: `${dir}/prog`,
      stripped: `${dir}/prog.stripped`,
      lib: `${dir}/libecaptest.so`,
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("readElf() reads bash's header, sections and segments", async () => {
  const elf = await readElf(BASH);
  const arch = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
  assert.equal(elf.machineName, arch);
  assert.equal(elf.machine, arch === "x86_64" ? 62 : 183);
  assert.ok(elf.type === "DYN" || elf.type === "EXEC");

  const sectionLines = (await run("readelf", "-SW", BASH)).split("\n");
  let compared = 0;
  for (const line of sectionLines) {
    const m = /^\s*\[\s*(\d+)\]\s+(\S+)\s+(\S+)\s+([0-9a-f]{16})\s+([0-9a-f]+)\s+([0-9a-f]+)/
      .exec(line);
    if (m === null) continue;
    const s = elf.sections[Number(m[1])];
    assert.equal(s.name, m[2]);
    assert.equal(s.addr, parseInt(m[4], 16), s.name);
    assert.equal(s.offset, parseInt(m[5], 16), s.name);
    assert.equal(s.size, parseInt(m[6], 16), s.name);
    compared++;
  }
  assert.equal(compared, elf.sections.length - 1);

  const loads = elf.segments.filter((s) => s.type === PT_LOAD).map((s) => ({
    offset: s.offset,
    vaddr: s.vaddr,
    filesz: s.filesz,
    memsz: s.memsz,
  }));
  assert.deepEqual(loads, await readelfLoads(BASH));
});

Deno.test("ElfFile.section() returns section bytes, not NOBITS ones", async () => {
  const bytes = await Deno.readFile(BASH);
  const elf = ElfFile.parse(bytes);
  const hdr = elf.sectionHeader(".text")!;
  const text = elf.section(".text")!;
  assert.equal(text.length, hdr.size);
  assert.deepEqual(
    text.subarray(0, 16),
    bytes.subarray(hdr.offset, hdr.offset + 16),
  );
  assert.equal(elf.sectionHeader(".bss")?.type, SHT_NOBITS);
  assert.equal(elf.section(".bss"), undefined);
  assert.equal(elf.section(".no.such.section"), undefined);
});

Deno.test("ElfFile.symbol() finds readline in bash's .dynsym", async () => {
  const elf = await readElf(BASH);
  const expected = await readelfSymbols(BASH, "--dyn-syms");
  const loads = await readelfLoads(BASH);
  for (const name of BASH_SYMBOLS) {
    const sym = elf.symbol(name);
    assert.ok(sym, `${name} not found`);
    const want = expected.get(name)!;
    assert.equal(sym.name, name);
    assert.equal(sym.value, want.value, name);
    assert.equal(sym.size, want.size, name);
    assert.equal(sym.type, "FUNC");
    assert.equal(sym.bind, "GLOBAL");
    assert.equal(sym.table, ".dynsym");
    assert.notEqual(sym.shndx, SHN_UNDEF);

    const seg = loads.find((l) => want.value >= l.vaddr && want.value < l.vaddr + l.filesz)!;
    assert.equal(sym.fileOffset, want.value - seg.vaddr + seg.offset, name);
    // objdump reads the bytes by virtual address; ours come by file offset.
    const bytes = await Deno.readFile(BASH);
    assert.deepEqual(
      [...bytes.subarray(sym.fileOffset!, sym.fileOffset! + 16)],
      await objdumpBytes(BASH, sym.value, 16),
    );
  }
});

Deno.test("ElfFile.symbol() ignores imports and unknown names", async () => {
  const elf = await readElf(BASH);
  // bash imports these from libc: present in .dynsym but undefined.
  assert.equal(elf.symbol("strlen"), undefined);
  assert.equal(elf.symbol("no_such_symbol_ecap"), undefined);
});

Deno.test("ElfFile.findFirst() returns the first name that exists", async () => {
  const elf = await readElf(BASH);
  assert.equal(
    elf.findFirst(["nope_a", "readline", "execute_command"])?.name,
    "readline",
  );
  assert.equal(
    elf.findFirst(["execute_command", "readline"])?.name,
    "execute_command",
  );
  assert.equal(elf.findFirst(["nope_a", "nope_b"]), undefined);
  assert.equal(elf.findFirst([]), undefined);
});

Deno.test("ElfFile.symbols() lists defined symbols once each", async () => {
  const elf = await readElf(BASH);
  const all = [...elf.symbols()];
  const keys = new Set(all.map((s) => `${s.name}@${s.value}`));
  assert.equal(keys.size, all.length);
  assert.ok(all.every((s) => s.shndx !== SHN_UNDEF && s.name !== ""));
  const expected = await readelfSymbols(BASH, "--dyn-syms");
  const names = new Set(all.map((s) => s.name));
  for (const name of expected.keys()) assert.ok(names.has(name), name);
});

Deno.test("ElfFile.fileOffset() is undefined outside PT_LOAD file data", async () => {
  const elf = await readElf(BASH);
  const last = elf.segments.filter((s) => s.type === PT_LOAD).at(-1)!;
  assert.equal(elf.fileOffset(last.vaddr + last.memsz + 0x100000), undefined);
  assert.equal(elf.fileOffset(last.vaddr), last.offset);
});

Deno.test("ElfFile.symbol() finds exported functions of a stripped binary via .dynsym", () =>
  withFixtures(async ({ prog, stripped }) => {
    const full = await readElf(prog);
    const bare = await readElf(stripped);
    assert.ok(full.sectionHeader(".symtab"));
    assert.equal(bare.sectionHeader(".symtab"), undefined);

    // The static function exists only in .symtab, so stripping loses it.
    assert.equal(full.symbol("ecap_static_fn")?.table, ".symtab");
    assert.equal(bare.symbol("ecap_static_fn"), undefined);

    const sym = bare.symbol("ecap_exported_fn");
    assert.ok(sym);
    assert.equal(sym.table, ".dynsym");
    assert.equal(sym.type, "FUNC");
    assert.equal(sym.value, full.symbol("ecap_exported_fn")?.value);
    const nm = (await run("nm", "-D", stripped)).split("\n")
      .find((l) => l.endsWith(" ecap_exported_fn"));
    assert.equal(sym.value, parseInt(nm!.split(" ")[0], 16));
    const bytes = await Deno.readFile(stripped);
    assert.deepEqual(
      [...bytes.subarray(sym.fileOffset!, sym.fileOffset! + 8)],
      await objdumpBytes(stripped, sym.value, 8),
    );
  }));

Deno.test("ElfFile.needed and soname come from the dynamic section", async () => {
  const curl = await readElf("/usr/bin/curl");
  assert.ok(curl.needed.includes("libcurl.so.4"), curl.needed.join(","));
  assert.equal(curl.soname, undefined);

  await withFixtures(async ({ lib }) => {
    const so = await readElf(lib);
    assert.equal(so.soname, "libecaptest.so.1");
    assert.ok(so.needed.includes("libc.so.6"), so.needed.join(","));
    assert.equal(so.symbol("ecap_lib_fn")?.type, "FUNC");
  });
});

/** A 64-byte ELF header with the given class and data encoding. */
function header(cls: number, data: number): Uint8Array {
  const b = new Uint8Array(64);
  b.set([0x7f, 0x45, 0x4c, 0x46, cls, data, 1]);
  return b;
}

Deno.test("ElfFile.parse() rejects non-ELF, ELF32 and big-endian input", () => {
  const text = new TextEncoder().encode("#!/bin/sh\necho hello\n");
  assert.throws(
    () => ElfFile.parse(text),
    (e) => e instanceof ElfError && /not an ELF file/.test(e.message),
  );
  assert.throws(() => ElfFile.parse(new Uint8Array(0)), /not an ELF file/);
  assert.throws(
    () => ElfFile.parse(header(1, 1)),
    (e) => e instanceof ElfError && /ELF32/.test(e.message),
  );
  assert.throws(
    () => ElfFile.parse(header(2, 2)),
    (e) => e instanceof ElfError && /big-endian/.test(e.message),
  );
  assert.throws(() => ElfFile.parse(header(3, 1)), ElfError);
});

Deno.test("ElfFile.parse() throws ElfError on truncated or garbage input", async () => {
  const bytes = await Deno.readFile(BASH);
  for (const n of [4, 5, 6, 20, 63, 64, 2000, bytes.length - 1]) {
    assert.throws(
      () => ElfFile.parse(bytes.slice(0, n)),
      ElfError,
      `length ${n}`,
    );
  }
  const garbage = new Uint8Array(4096);
  let x = 1;
  for (let i = 0; i < garbage.length; i++) {
    garbage[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  }
  assert.throws(() => ElfFile.parse(garbage), ElfError);
  garbage.set(header(2, 1));
  garbage.fill(0xff, 32, 64); // huge offsets and counts
  assert.throws(() => ElfFile.parse(garbage), ElfError);
});

/** Touches every lazily parsed part of an ElfFile. */
function exercise(bytes: Uint8Array): void {
  const elf = ElfFile.parse(bytes);
  for (const s of elf.sections) elf.section(s.name);
  for (const s of elf.symbols()) elf.fileOffset(s.value);
  elf.symbol("main");
  elf.findFirst(["ecap_static_fn", "ecap_exported_fn"]);
  void elf.needed;
  void elf.soname;
}

Deno.test("ElfFile survives 2,000 seeded mutations with only ElfError", () =>
  withFixtures(async ({ prog }) => {
    const original = await Deno.readFile(prog);
    exercise(original);
    const elf = ElfFile.parse(original);
    // Mutations focus on the structures the parser reads, not on code bytes.
    const regions: [number, number][] = [[0, 64]];
    const view = new DataView(original.buffer);
    const phoff = Number(view.getBigUint64(32, true));
    const shoff = Number(view.getBigUint64(40, true));
    regions.push([phoff, phoff + elf.segments.length * 56]);
    regions.push([shoff, shoff + elf.sections.length * 64]);
    for (const s of elf.sections) {
      if (s.type !== SHT_NOBITS && s.size > 0) {
        regions.push([s.offset, s.offset + s.size]);
      }
    }

    const rand = mulberry32(0xecab);
    const int = (n: number) => Math.floor(rand() * n);
    let failures = 0;
    const started = performance.now();
    for (let iter = 0; iter < 2000; iter++) {
      let bytes = original.slice();
      const mode = int(4);
      if (mode === 3) {
        bytes = bytes.slice(0, int(bytes.length));
      } else {
        const [start, end] = mode === 0 ? [0, bytes.length] : regions[int(regions.length)];
        const flips = 1 + int(8);
        for (let i = 0; i < flips; i++) {
          const at = start + int(end - start);
          bytes[at] = mode === 2 ? [0, 0xff, 0x7f, 0x80][int(4)] : int(256);
        }
      }
      try {
        exercise(bytes);
      } catch (e) {
        if (!(e instanceof ElfError)) {
          throw new Error(
            `iteration ${iter} (mode ${mode}) threw a non-ElfError: ${e}`,
            { cause: e },
          );
        }
        failures++;
      }
    }
    const ms = performance.now() - started;
    assert.ok(failures > 100, `only ${failures} mutations were rejected`);
    assert.ok(ms < 20_000, `fuzzing took ${ms} ms`);
  }));

Deno.test("readElf reads a file sparsely and gives what parsing it whole gives", async () => {
  for (const path of ["/usr/bin/bash", "/usr/lib/x86_64-linux-gnu/libssl.so.3"]) {
    const sparse = await readElf(path);
    const whole = ElfFile.parse(await Deno.readFile(path));
    assert.deepStrictEqual(sparse.needed, whole.needed);
    assert.equal(sparse.soname, whole.soname);
    for (const s of whole.sections) {
      assert.deepStrictEqual(sparse.section(s.name), whole.section(s.name), `${path} ${s.name}`);
    }
    const names = [...whole.symbols()].map((s) => s.name);
    assert.ok(names.length > 100);
    for (const name of names.slice(0, 200)) {
      assert.deepStrictEqual(sparse.symbol(name), whole.symbol(name), name);
    }
    assert.equal(sparse.symbol("no_such_symbol_anywhere"), undefined);
    const main = whole.symbol(names[0])!;
    assert.deepStrictEqual(
      sparse.bytesAt(main.fileOffset!, 64),
      whole.bytesAt(main.fileOffset!, 64),
    );
  }
});

Deno.test("readElf() keeps one parse per file, whatever path reaches it", async () => {
  // a capture following node reached it as /proc/PID/root/usr/bin/node, one
  // path per process: a parse per path held 700 MB
  const direct = await readElf("/usr/bin/bash");
  const viaRoot = await readElf(`/proc/${Deno.pid}/root/usr/bin/bash`);
  assert.equal(viaRoot, direct);
  // a file of other content is another parse
  assert.notEqual(await readElf("/usr/bin/env"), direct);
});

Deno.test("symbol() through .gnu.hash finds every dynamic symbol nm -D lists, at nm's address", async () => {
  for (
    const path of [
      "/usr/lib/x86_64-linux-gnu/libc.so.6",
      "/usr/lib/x86_64-linux-gnu/libgnutls.so.30",
      "/usr/sbin/mariadbd",
    ]
  ) {
    const out = await new Deno.Command("nm", {
      args: ["-D", "--defined-only", path],
      stdout: "piped",
    }).output();
    // a name may have several versions (memcpy@GLIBC_2.2.5, memcpy@@GLIBC_2.14): any of their addresses
    const values = new Map<string, Set<number>>();
    for (const m of new TextDecoder().decode(out.stdout).matchAll(/^([0-9a-f]+) \w (\S+)$/gm)) {
      const name = m[2].replace(/@.*/, "");
      values.set(name, (values.get(name) ?? new Set()).add(parseInt(m[1], 16)));
    }
    assert.ok(values.size > 1000, `${path}: nm listed ${values.size}`);
    assert.ok((await readElf(path)).sectionHeader(".gnu.hash"), `${path} has .gnu.hash`);
    const elf = await readElf(path);
    for (const [name, addrs] of values) {
      const sym = elf.symbol(name);
      assert.ok(sym && addrs.has(sym.value), `${path}: ${name} at ${sym?.value.toString(16)}`);
    }
    for (const missing of ["no_such_symbol_anywhere", "", "memcpy_"]) {
      assert.equal(elf.symbol(missing), undefined, `${path}: ${missing}`);
    }
  }
});
