import assert from "node:assert/strict";
import {
  describeLdCacheFlags,
  findInLdCache,
  type LdCacheEntry,
  LdCacheError,
  parseLdCache,
  readLdCache,
} from "../../lib/binary/ld_cache.ts";
import { EcapError } from "../../lib/base/errors.ts";
import { mulberry32 } from "../_random.ts";

const encoder = new TextEncoder();

type Layout = "new" | "compat" | "old";

/** Builds a cache image the way ldconfig lays one out. */
function buildCache(
  libs: { name: string; path: string; flags: number }[],
  layout: Layout,
  littleEndian = true,
): Uint8Array {
  // Strings follow the new table; offsets count from the new header.
  const newTableSize = 48 + libs.length * 24;
  const strings: number[] = [];
  const offsets = libs.map((l) => {
    const key = strings.length;
    strings.push(...encoder.encode(l.name), 0);
    const value = strings.length;
    strings.push(...encoder.encode(l.path), 0);
    return { key, value };
  });

  const newPart = new Uint8Array(newTableSize + strings.length);
  const nv = new DataView(newPart.buffer);
  newPart.set(encoder.encode("glibc-ld.so.cache1.1"), 0);
  nv.setUint32(20, libs.length, littleEndian);
  nv.setUint32(24, strings.length, littleEndian);
  newPart[28] = littleEndian ? 2 : 3;
  libs.forEach((l, i) => {
    const o = 48 + i * 24;
    nv.setInt32(o, l.flags, littleEndian);
    nv.setUint32(o + 4, newTableSize + offsets[i].key, littleEndian);
    nv.setUint32(o + 8, newTableSize + offsets[i].value, littleEndian);
  });
  newPart.set(strings, newTableSize);
  if (layout === "new") return newPart;

  const oldEnd = 16 + libs.length * 12;
  const newBase = layout === "compat" ? (oldEnd + 7) & ~7 : oldEnd;
  const out = new Uint8Array(newBase + (layout === "compat" ? newPart.length : strings.length));
  const ov = new DataView(out.buffer);
  out.set(encoder.encode("ld.so-1.7.0"), 0);
  ov.setUint32(12, libs.length, true);
  // Old offsets count from the end of the old table; in compat files the new
  // table is hidden at the start of that string area.
  const stringsAt = layout === "compat" ? newBase - oldEnd + newTableSize : 0;
  libs.forEach((l, i) => {
    const o = 16 + i * 12;
    ov.setInt32(o, l.flags, true);
    ov.setUint32(o + 4, stringsAt + offsets[i].key, true);
    ov.setUint32(o + 8, stringsAt + offsets[i].value, true);
  });
  if (layout === "compat") out.set(newPart, newBase);
  else out.set(strings, newBase);
  return out;
}

const SAMPLE = [
  { name: "libssl.so.3", path: "/lib/x86_64-linux-gnu/libssl.so.3", flags: 0x303 },
  { name: "libssl.so", path: "/lib/x86_64-linux-gnu/libssl.so", flags: 0x303 },
  { name: "libc.so.6", path: "/lib/i386-linux-gnu/libc.so.6", flags: 0x3 },
];

/** `ldconfig -p` as (name, flags text, path) rows. */
async function ldconfigP(): Promise<{ name: string; desc: string; path: string }[]> {
  const out = await new Deno.Command("ldconfig", { args: ["-p"], stdout: "piped" }).output();
  assert.ok(out.success, "ldconfig -p failed");
  const rows = [];
  for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
    const m = /^\t(.+?) \(([^)]*)\) => (.*)$/.exec(line);
    // hwcap / OS ABI details follow the flags after a comma-space.
    if (m) rows.push({ name: m[1], desc: m[2].split(", ")[0], path: m[3] });
  }
  return rows;
}

Deno.test("parseLdCache matches ldconfig -p on this machine", async () => {
  const entries = await readLdCache();
  const expected = await ldconfigP();
  assert.ok(expected.length > 0);
  assert.deepEqual(
    entries.map((e) => ({ name: e.name, desc: describeLdCacheFlags(e.flags), path: e.path })),
    expected,
  );
});

Deno.test("findInLdCache returns the libssl.so entries ldconfig lists", async () => {
  const found = await findInLdCache("libssl.so");
  const expected = (await ldconfigP()).filter((r) => r.name.startsWith("libssl.so"));
  assert.deepEqual(found.map((e) => [e.name, e.path]), expected.map((r) => [r.name, r.path]));
  assert.ok(found.every((e) => !e.name.startsWith("libssl3")), "NSS's libssl3.so is not OpenSSL");
});

Deno.test("readLdCache reports a missing file as not-found", async () => {
  await assert.rejects(
    readLdCache("/nonexistent/ld.so.cache"),
    (e: unknown) => e instanceof EcapError && e.kind === "not-found",
  );
});

Deno.test("parseLdCache reads new, compat, old and big-endian layouts", () => {
  const plain: LdCacheEntry[] = SAMPLE.map((l) => ({ ...l }));
  assert.deepEqual(parseLdCache(buildCache(SAMPLE, "new")), plain);
  assert.deepEqual(parseLdCache(buildCache(SAMPLE, "compat")), plain);
  assert.deepEqual(parseLdCache(buildCache(SAMPLE, "old")), plain);
  assert.deepEqual(parseLdCache(buildCache(SAMPLE, "new", false)), plain);
  assert.deepEqual(parseLdCache(buildCache([], "new")), []);
  // Compat with an odd count exercises the 8-byte alignment of the new table.
  assert.deepEqual(parseLdCache(buildCache(SAMPLE.slice(0, 1), "compat")), plain.slice(0, 1));
});

Deno.test("describeLdCacheFlags follows ldconfig's wording", () => {
  assert.equal(describeLdCacheFlags(0x303), "libc6,x86-64");
  assert.equal(describeLdCacheFlags(0xa03), "libc6,AArch64");
  assert.equal(describeLdCacheFlags(0x3), "libc6");
  assert.equal(describeLdCacheFlags(0x7f07), "unknown,32512");
});

Deno.test("parseLdCache rejects malformed images with LdCacheError", () => {
  const good = buildCache(SAMPLE, "new");
  const cases: [string, Uint8Array][] = [
    ["empty", new Uint8Array(0)],
    ["bad magic", encoder.encode("not a cache at all, really not")],
    ["truncated header", good.subarray(0, 30)],
    ["truncated table", good.subarray(0, 60)],
    ["truncated strings", good.subarray(0, good.length - 3)],
    [
      "bad version",
      (() => {
        const b = good.slice();
        b[19] = 0x39;
        return b;
      })(),
    ],
    [
      "huge nlibs",
      (() => {
        const b = good.slice();
        new DataView(b.buffer).setUint32(20, 0xffffffff, true);
        return b;
      })(),
    ],
    [
      "string offset past end",
      (() => {
        const b = good.slice();
        new DataView(b.buffer).setUint32(48 + 4, 0xfffffff0, true);
        return b;
      })(),
    ],
  ];
  for (const [what, bytes] of cases) {
    assert.throws(() => parseLdCache(bytes), LdCacheError, what);
  }
});

Deno.test("fuzz: parseLdCache only ever throws LdCacheError", async () => {
  const real = await Deno.readFile("/etc/ld.so.cache").catch(() => buildCache(SAMPLE, "new"));
  const seeds = [buildCache(SAMPLE, "new"), buildCache(SAMPLE, "compat"), real];
  const rand = mulberry32(0x1dc0ffee);
  const int = (n: number) => Math.floor(rand() * n);
  const started = performance.now();
  for (let i = 0; i < 2000; i++) {
    const bytes = seeds[i % seeds.length].slice();
    const view = new DataView(bytes.buffer);
    for (let n = 1 + int(4); n > 0; n--) {
      const at = int(bytes.length);
      switch (int(4)) {
        case 0:
          bytes[at] = int(256);
          break;
        case 1: // counts and offsets are the interesting fields
          if (at + 4 <= bytes.length) {
            view.setUint32(at & ~3, int(2) ? int(1 << 16) : -1 >>> 0, true);
          }
          break;
        case 2:
          bytes[at] = 0;
          break;
        default:
          bytes.fill(0xff, at, at + int(16));
      }
    }
    const input = int(8) === 0 ? bytes.subarray(0, int(bytes.length)) : bytes;
    try {
      const entries = parseLdCache(input);
      for (const e of entries) assert.equal(typeof e.path, "string");
    } catch (e) {
      if (!(e instanceof LdCacheError)) throw new Error(`iteration ${i}: ${e}`, { cause: e });
    }
  }
  assert.ok(performance.now() - started < 5000, "fuzzing took too long");
});

Deno.test("findInLdCache reads a cache again once ldconfig has replaced it", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ld.so.cache`;
  try {
    const write = async (libs: typeof SAMPLE) => {
      // as ldconfig does: a new file renamed over the old one
      await Deno.writeFile(`${path}~`, buildCache(libs, "new"));
      await Deno.rename(`${path}~`, path);
    };
    await write(SAMPLE);
    const before = await findInLdCache("", path);
    assert.equal(before.length, SAMPLE.length);
    assert.deepEqual(await findInLdCache("", path), before); // asked again: the same
    await write(SAMPLE.slice(0, 1));
    assert.equal((await findInLdCache("", path)).length, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
