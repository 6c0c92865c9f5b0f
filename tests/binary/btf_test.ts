import assert from "node:assert/strict";
import { Btf, BtfError } from "../../lib/binary/btf.ts";
import { ElfFile, readElf } from "../../lib/binary/elf.ts";
import { mulberry32 } from "../_random.ts";

// Offsets are checked twice: by _Static_assert in the C, and against BTF here.
const PROBE_C = `
typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;

enum ecap_event_kind {
  ECAP_EV_READ = 1,
  ECAP_EV_WRITE = 2,
  ECAP_EV_CLOSE = 7,
  ECAP_EV_ERR = -3,
};
enum ecap_flags64 { ECAP_F_SMALL = 5, ECAP_F_BIG = 0x100000000ULL };

struct ecap_event {
  __u64 ts_ns;
  __u32 pid;
  __u8 kind;
  __u64 len;
  char comm[16];
  __u16 port;
  void *ptr;
  union { __u32 u32v; __u64 u64v; };
  struct { __u16 x; __u16 y; } pos;
  __u32 grid[3][2];
};
typedef struct ecap_event ecap_event_t;

struct ecap_bits { __u32 lo : 3; __u32 hi : 5; __u32 word; };

#define AT(f, o) _Static_assert(__builtin_offsetof(struct ecap_event, f) == o, #f)
AT(ts_ns, 0); AT(pid, 8); AT(kind, 12); AT(len, 16); AT(comm, 24);
AT(port, 40); AT(ptr, 48); AT(u32v, 56); AT(u64v, 56); AT(pos, 64);
AT(grid, 68);
_Static_assert(sizeof(struct ecap_event) == 96, "size");

struct ecap_event *unused_event __attribute__((unused));
ecap_event_t *unused_event_t __attribute__((unused));
enum ecap_event_kind unused_kind __attribute__((unused));
enum ecap_flags64 unused_flags __attribute__((unused));
struct ecap_bits unused_bits __attribute__((unused));

int ecap_probe(struct ecap_event *e) {
  return e->kind == ECAP_EV_WRITE ? (int)e->pid : ECAP_EV_ERR;
}
`;

let compiled: Promise<Uint8Array> | undefined;

/** Compiles PROBE_C once with clang and returns the object file's bytes. */
function probeObject(): Promise<Uint8Array> {
  compiled ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "ecap_btf_test_" });
    try {
      await Deno.writeTextFile(`${dir}/probe.c`, PROBE_C);
      const out = await new Deno.Command("clang-19", {
        args: [
          "-g",
          "-O2",
          "-target",
          "bpf",
          "-c",
          `${dir}/probe.c`,
          "-o",
          `${dir}/probe.o`,
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!out.success) {
        throw new Error(
          `clang-19 failed: ${new TextDecoder().decode(out.stderr)}`,
        );
      }
      return await Deno.readFile(`${dir}/probe.o`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  })();
  return compiled;
}

async function probeBtf(): Promise<Btf> {
  return Btf.fromElf(ElfFile.parse(await probeObject()));
}

Deno.test("Btf.struct() matches the C layout of struct ecap_event", async () => {
  const btf = await probeBtf();
  const s = btf.struct("ecap_event");
  assert.equal(s.name, "ecap_event");
  assert.equal(s.size, 96);
  const layout = Object.fromEntries(
    [...s.members].map(([name, m]) => [name, [m.offset, m.size, m.typeName]]),
  );
  assert.deepEqual(layout, {
    ts_ns: [0, 8, "__u64"],
    pid: [8, 4, "__u32"],
    kind: [12, 1, "__u8"],
    len: [16, 8, "__u64"],
    comm: [24, 16, "char[16]"],
    port: [40, 2, "__u16"],
    ptr: [48, 8, "void *"],
    // Members of the anonymous union are flattened into the struct.
    u32v: [56, 4, "__u32"],
    u64v: [56, 8, "__u64"],
    pos: [64, 4, "struct {...}"],
    grid: [68, 24, "__u32[3][2]"],
  });
  for (const m of s.members.values()) assert.equal(m.bitfield, undefined);
  // A typedef of the struct gives the same layout.
  assert.deepEqual([...btf.struct("ecap_event_t").members], [...s.members]);
});

Deno.test("Btf.offsetOf() and sizeOf() agree with the C compiler", async () => {
  const btf = await probeBtf();
  assert.equal(btf.offsetOf("ecap_event", "len"), 16);
  assert.equal(btf.offsetOf("ecap_event", "grid"), 68);
  assert.throws(() => btf.offsetOf("ecap_event", "nope"), BtfError);
  const [id] = btf.idsByName("ecap_event");
  assert.equal(btf.sizeOf(id), 96);
  const [u16] = btf.idsByName("__u16");
  assert.equal(btf.sizeOf(u16), 2);
});

Deno.test("Btf.enumValues() reads ENUM (signed) and ENUM64 values", async () => {
  const btf = await probeBtf();
  assert.deepEqual(
    btf.enumValues("ecap_event_kind"),
    new Map([["ECAP_EV_READ", 1], ["ECAP_EV_WRITE", 2], ["ECAP_EV_CLOSE", 7], [
      "ECAP_EV_ERR",
      -3,
    ]]),
  );
  assert.deepEqual(
    btf.enumValues("ecap_flags64"),
    new Map([["ECAP_F_SMALL", 5], ["ECAP_F_BIG", 2 ** 32]]),
  );
});

Deno.test("Btf.struct() marks bitfield members", async () => {
  const s = (await probeBtf()).struct("ecap_bits");
  assert.deepEqual(s.members.get("lo")?.bitfield, { bitOffset: 0, bitSize: 3 });
  assert.deepEqual(s.members.get("hi")?.bitfield, { bitOffset: 3, bitSize: 5 });
  assert.equal(s.members.get("word")?.offset, 4);
  assert.equal(s.members.get("word")?.bitfield, undefined);
});

Deno.test("Btf lookups of missing types throw BtfError", async () => {
  const btf = await probeBtf();
  assert.throws(
    () => btf.struct("nope"),
    (e) => e instanceof BtfError && e.message === 'struct "nope" not found in BTF',
  );
  // An enum is not a struct, and a struct is not an enum.
  assert.throws(() => btf.struct("ecap_event_kind"), BtfError);
  assert.throws(
    () => btf.enumValues("ecap_event"),
    /enum "ecap_event" not found/,
  );
  assert.throws(() => btf.sizeOf(0), BtfError);
  assert.throws(() => btf.type(btf.types.length), BtfError);
});

Deno.test("Btf.fromElf() throws BtfError without a .BTF section", async () => {
  const bash = await readElf("/usr/bin/bash");
  assert.throws(
    () => Btf.fromElf(bash),
    (e) => e instanceof BtfError && /\.BTF/.test(e.message),
  );
});

/** Assembles a raw BTF blob type by type. */
class BtfBuilder {
  #strings: number[] = [0];
  #words: number[] = [];
  #next = 1;

  str(s: string): number {
    if (s === "") return 0;
    const off = this.#strings.length;
    this.#strings.push(...new TextEncoder().encode(s), 0);
    return off;
  }

  /** Adds a type and returns its id; `extra` are the kind-specific u32s. */
  add(
    kind: number,
    name: string,
    sizeOrType: number,
    opts: { vlen?: number; kindFlag?: boolean; extra?: number[] } = {},
  ): number {
    const { vlen = 0, kindFlag = false, extra = [] } = opts;
    const info = ((kindFlag ? 1 : 0) << 31) | (kind << 24) | vlen;
    this.#words.push(
      this.str(name),
      info >>> 0,
      sizeOrType,
      ...extra.map((x) => x >>> 0),
    );
    return this.#next++;
  }

  build(): Uint8Array {
    const typeLen = this.#words.length * 4;
    const out = new Uint8Array(24 + typeLen + this.#strings.length);
    const v = new DataView(out.buffer);
    v.setUint16(0, 0xeb9f, true);
    v.setUint8(2, 1);
    v.setUint32(4, 24, true);
    v.setUint32(8, 0, true);
    v.setUint32(12, typeLen, true);
    v.setUint32(16, typeLen, true);
    v.setUint32(20, this.#strings.length, true);
    this.#words.forEach((w, i) => v.setUint32(24 + i * 4, w, true));
    out.set(this.#strings, 24 + typeLen);
    return out;
  }
}

Deno.test("Btf.parse() decodes every BTF kind", () => {
  const b = new BtfBuilder();
  const int = b.add(1, "int", 4, { extra: [(1 << 24) | 32] });
  const ptr = b.add(2, "", int);
  const arr = b.add(3, "", 0, { extra: [int, int, 10] });
  const pair = b.add(4, "pair", 16, {
    vlen: 2,
    extra: [b.str("a"), int, 0, b.str("p"), ptr, 64],
  });
  const union = b.add(5, "u", 8, {
    vlen: 2,
    extra: [b.str("i"), int, 0, b.str("q"), ptr, 0],
  });
  const color = b.add(6, "color", 4, {
    vlen: 2,
    kindFlag: true,
    extra: [b.str("RED"), 0, b.str("NEG"), -1],
  });
  const fwd = b.add(7, "later", 0, { kindFlag: true });
  const typedef = b.add(8, "pair_t", pair);
  const vol = b.add(9, "", int);
  const cnst = b.add(10, "", vol);
  const restrict = b.add(11, "", ptr);
  const func = b.add(12, "f", 13, { vlen: 1 }); // forward ref to the proto
  const proto = b.add(13, "", int, {
    vlen: 2,
    extra: [b.str("x"), int, b.str("y"), ptr],
  });
  const variable = b.add(14, "g", pair, { extra: [1] });
  const datasec = b.add(15, ".data", 16, { vlen: 1, extra: [variable, 0, 16] });
  const float = b.add(16, "double", 8);
  const tag = b.add(17, "tag", pair, { extra: [-1] });
  const typeTag = b.add(18, "user", int);
  const big = b.add(19, "big", 8, { vlen: 1, extra: [b.str("HUGE"), 0, 1] });
  assert.equal(func + 1, proto);

  const btf = Btf.parse(b.build());
  assert.equal(btf.types.length, 20);
  assert.deepEqual(btf.types.slice(1).map((t) => t!.kind), [
    "INT",
    "PTR",
    "ARRAY",
    "STRUCT",
    "UNION",
    "ENUM",
    "FWD",
    "TYPEDEF",
    "VOLATILE",
    "CONST",
    "RESTRICT",
    "FUNC",
    "FUNC_PROTO",
    "VAR",
    "DATASEC",
    "FLOAT",
    "DECL_TAG",
    "TYPE_TAG",
    "ENUM64",
  ]);
  const sizes: [number, number][] = [
    [int, 4],
    [ptr, 8],
    [arr, 40],
    [pair, 16],
    [union, 8],
    [color, 4],
    [typedef, 16],
    [vol, 4],
    [cnst, 4],
    [restrict, 8],
    [variable, 16],
    [datasec, 16],
    [float, 8],
    [typeTag, 4],
    [big, 8],
  ];
  for (const [id, size] of sizes) {
    assert.equal(btf.sizeOf(id), size, `type ${id}`);
  }
  for (const id of [fwd, func, proto, tag]) {
    assert.throws(() => btf.sizeOf(id), BtfError);
  }

  assert.equal(btf.typeName(arr), "int[10]");
  assert.equal(btf.typeName(cnst), "const volatile int");
  assert.equal(btf.typeName(proto), "int (int, int *)");
  assert.equal(btf.typeName(fwd), "union later");
  assert.equal(btf.typeName(typedef), "pair_t");
  assert.deepEqual(btf.type(int), {
    kind: "INT",
    name: "int",
    size: 4,
    encoding: 1,
    bitOffset: 0,
    bits: 32,
  });
  assert.deepEqual(btf.type(tag), {
    kind: "DECL_TAG",
    name: "tag",
    type: pair,
    componentIdx: -1,
  });
  assert.deepEqual(btf.type(datasec), {
    kind: "DATASEC",
    name: ".data",
    size: 16,
    vars: [{ type: variable, offset: 0, size: 16 }],
  });
  assert.equal(btf.offsetOf("pair", "p"), 8);
  assert.equal(btf.offsetOf("pair_t", "p"), 8);
  assert.deepEqual(btf.enumValues("color"), new Map([["RED", 0], ["NEG", -1]]));
  assert.deepEqual(btf.enumValues("big"), new Map([["HUGE", 2 ** 32]]));
});

/** Header with the given fields, followed by `rest`. */
function blob(
  fields: {
    magic?: number;
    version?: number;
    hdrLen?: number;
    typeLen?: number;
    strLen?: number;
  },
  rest = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(24 + rest.length);
  const v = new DataView(out.buffer);
  v.setUint16(0, fields.magic ?? 0xeb9f, true);
  v.setUint8(2, fields.version ?? 1);
  v.setUint32(4, fields.hdrLen ?? 24, true);
  v.setUint32(12, fields.typeLen ?? 0, true);
  v.setUint32(16, fields.typeLen ?? 0, true);
  v.setUint32(20, fields.strLen ?? 0, true);
  out.set(rest, 24);
  return out;
}

Deno.test("Btf.parse() throws BtfError on corrupt headers", async () => {
  const real = ElfFile.parse(await probeObject()).section(".BTF")!;
  const cases: [Uint8Array, RegExp][] = [
    [new Uint8Array(0), /truncated BTF header/],
    [real.slice(0, 10), /truncated BTF header/],
    [real.slice(0, real.length - 1), /exceeds/],
    [crypto.getRandomValues(new Uint8Array(64)).fill(0, 0, 2), /bad magic/],
    [blob({ magic: 0x9feb }), /big-endian/],
    [blob({ version: 2 }), /version 2/],
    [blob({ hdrLen: 8 }), /header length/],
    [blob({ hdrLen: 0xffffffff }), /header length/],
    [blob({ typeLen: 0xfffffff0 }), /exceeds/],
    [blob({ strLen: 0xffffffff }), /exceeds/],
  ];
  for (const [bytes, message] of cases) {
    assert.throws(
      () => Btf.parse(bytes),
      (e) => e instanceof BtfError && message.test(e.message),
      String(message),
    );
  }
});

Deno.test("Btf.parse() rejects huge vlen, unknown kinds and bad strings quickly", () => {
  const started = performance.now();
  const huge = new BtfBuilder();
  huge.add(4, "s", 8, { vlen: 0xffff });
  assert.throws(() => Btf.parse(huge.build()), /truncated BTF type section/);
  for (const kind of [0, 20, 31]) {
    const b = new BtfBuilder();
    b.add(kind, "x", 4);
    assert.throws(
      () => Btf.parse(b.build()),
      (e) => e instanceof BtfError && /unknown BTF kind/.test(e.message),
    );
  }
  const badName = new BtfBuilder();
  badName.add(1, "", 4, { extra: [32] });
  const bytes = badName.build();
  new DataView(bytes.buffer).setUint32(24, 1000, true); // name_off past the strings
  assert.throws(() => Btf.parse(bytes), /string offset 1000/);
  const partial = new BtfBuilder();
  partial.add(1, "int", 4, { extra: [32] });
  assert.throws(() => Btf.parse(partial.build().slice(0, 24 + 12)), BtfError);
  assert.ok(performance.now() - started < 1000);
});

Deno.test("Btf resolution stops on cycles and dangling ids", () => {
  const b = new BtfBuilder();
  const a = b.add(8, "a", 2); // typedef a -> b
  b.add(8, "b", a); // typedef b -> a
  const c1 = b.add(10, "", 4); // const -> const
  b.add(10, "", c1);
  const dangling = b.add(2, "", 999);
  b.add(4, "s", 4, { vlen: 1, extra: [b.str("m"), c1, 0] });
  const self = b.add(4, "self", 4, { vlen: 1, extra: [0, 7, 0] }); // anonymous member of itself
  assert.equal(self, 7);
  const loop = b.add(3, "", 0, { extra: [8, 8, 2] }); // array of itself
  assert.equal(loop, 8);
  const btf = Btf.parse(b.build());
  assert.throws(() => btf.sizeOf(a), /cyclic/);
  assert.throws(() => btf.typeName(c1), /cyclic/);
  assert.throws(() => btf.typeName(dangling), /out of range/);
  assert.throws(() => btf.struct("s"), BtfError);
  assert.throws(() => btf.struct("self"), BtfError);
  assert.throws(() => btf.sizeOf(loop), BtfError);
  assert.throws(() => btf.typeName(loop), BtfError);
});

/** Calls every query on every type; BtfError is an allowed answer. */
function exercise(bytes: Uint8Array): void {
  const btf = Btf.parse(bytes);
  const allow = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      if (!(e instanceof BtfError)) throw e;
    }
  };
  for (let id = 0; id <= btf.types.length; id++) {
    allow(() => btf.sizeOf(id));
    allow(() => btf.typeName(id));
    allow(() => btf.resolve(id));
    const t = btf.types[id];
    if (t?.kind === "STRUCT") allow(() => btf.struct(t.name));
    if (t?.kind === "ENUM" || t?.kind === "ENUM64") {
      allow(() => btf.enumValues(t.name));
    }
  }
}

Deno.test("Btf survives 2,000 seeded mutations with only BtfError", async () => {
  const original = ElfFile.parse(await probeObject()).section(".BTF")!.slice();
  exercise(original);
  const rand = mulberry32(0xb7f);
  const int = (n: number) => Math.floor(rand() * n);
  const extremes = [0, 1, 0xff, 0xffff, 0x7fffffff, 0xffffffff, 0x80000000];
  let rejected = 0;
  const started = performance.now();
  for (let iter = 0; iter < 2000; iter++) {
    let bytes = original.slice();
    const mode = int(3);
    if (mode === 0) {
      for (let i = 1 + int(8); i > 0; i--) bytes[int(bytes.length)] = int(256);
    } else if (mode === 1) {
      // BTF is all u32 words: set some to values that stress counts and ids.
      const v = new DataView(bytes.buffer);
      for (let i = 1 + int(3); i > 0; i--) {
        v.setUint32(
          int(Math.floor(bytes.length / 4)) * 4,
          extremes[int(extremes.length)],
          true,
        );
      }
    } else {
      bytes = bytes.slice(0, int(bytes.length));
    }
    try {
      exercise(bytes);
    } catch (e) {
      if (!(e instanceof BtfError)) {
        throw new Error(
          `iteration ${iter} (mode ${mode}) threw a non-BtfError: ${e}`,
          { cause: e },
        );
      }
      rejected++;
    }
  }
  const ms = performance.now() - started;
  assert.ok(rejected > 100, `only ${rejected} mutations were rejected`);
  assert.ok(ms < 20_000, `fuzzing took ${ms} ms`);
});
