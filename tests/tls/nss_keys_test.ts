/**
 * lib/tls/nss_keys.ts against binutils' readelf: the functions it finds
 * in freebl are the targets of relative relocations in the table's slots
 * (loader.h's order), and unwind-table function starts; doctored copies
 * are refused.
 * @module
 */
import assert from "node:assert/strict";
import { FreeblError, locateFreeblFunctions } from "../../lib/tls/nss_keys.ts";

const SYSTEM = "/usr/lib/x86_64-linux-gnu/libfreeblpriv3.so";
const FIREFOX = "/usr/lib/firefox-esr/libfreeblpriv3.so";

function readelf(...args: string[]): string {
  const out = new Deno.Command("readelf", { args: ["-W", ...args], stdout: "piped" }).outputSync();
  assert.ok(out.success, `readelf ${args.join(" ")}`);
  return new TextDecoder().decode(out.stdout);
}

/** readelf's PT_LOAD lines: [file offset, vaddr, file size]. */
function loads(path: string): number[][] {
  return [...readelf("-l", path).matchAll(/^\s*LOAD\s+(0x\w+)\s+(0x\w+)\s+0x\w+\s+(0x\w+)/gm)]
    .map((m) => [m[1], m[2], m[3]].map(Number));
}

/** File offset to virtual address. */
function vaddrOf(path: string, offset: number): number {
  const seg = loads(path).find(([off, , size]) => offset >= off && offset < off + size);
  if (!seg) throw new Error(`offset 0x${offset.toString(16)} is in no PT_LOAD of ${path}`);
  return offset - seg[0] + seg[1];
}

/** Virtual address to file offset. */
function offsetOf(path: string, va: number): number {
  const seg = loads(path).find(([, v, size]) => va >= v && va < v + size);
  if (!seg) throw new Error(`0x${va.toString(16)} is in no PT_LOAD of ${path}`);
  return va - seg[1] + seg[0];
}

/** Start addresses of readelf's FDEs. */
function fdeStarts(path: string): Set<number> {
  return new Set(
    [...readelf("--debug-dump=frames", path).matchAll(/ FDE .* pc=(\w+)\.\./g)]
      .map((m) => parseInt(m[1], 16)),
  );
}

async function check(path: string) {
  const found = await locateFreeblFunctions(path);
  assert.deepEqual(found.map((f) => f.symbol), ["HMAC_Update", "HMAC_Finish", "TLS_P_hash"]);
  const [update, finish, pHash] = found.map((f) => vaddrOf(path, f.offset));
  const starts = fdeStarts(path);
  assert.ok([update, finish, pHash].every((va) => starts.has(va)), "unwind-table function starts");
  return { update, finish, pHash };
}

Deno.test("locateFreeblFunctions() in Debian's freebl: relocated table entries, function starts", async () => {
  const { update, finish, pHash } = await check(SYSTEM);
  // RELA: each entry is a relative relocation whose addend is the function
  const slots = new Map<number, number>();
  for (const m of readelf("-r", SYSTEM).matchAll(/^(\w+)\s+\w+\s+R_X86_64_RELATIVE\s+(\w+)$/gm)) {
    slots.set(parseInt(m[2], 16), parseInt(m[1], 16));
  }
  assert.ok(slots.has(update) && slots.has(finish), "both are relocated function pointers");
  assert.equal(slots.get(finish)! - slots.get(update)!, 16, "HMAC_Finish two slots after Update");
  assert.equal(slots.get(pHash)! - slots.get(update)!, 33 * 8, "TLS_P_hash 33 slots after");
});

Deno.test("locateFreeblFunctions() in Firefox ESR's own freebl (RELR)", async () => {
  try {
    Deno.statSync(FIREFOX);
  } catch {
    throw new Error(`${FIREFOX} is missing: scripts/bootstrap.sh --test installs firefox-esr`);
  }
  await check(FIREFOX);
});

/** A copy of the system freebl, changed by edit, given to run. */
async function doctored(edit: (bytes: Uint8Array) => void, run: (path: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    const bytes = await Deno.readFile(SYSTEM);
    edit(bytes);
    await Deno.writeFile(`${dir}/libfreeblpriv3.so`, bytes);
    await run(`${dir}/libfreeblpriv3.so`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("locateFreeblFunctions() refuses a table of another version and an entry off a function start", async () => {
  const { update } = await check(SYSTEM);
  // the relocation whose addend is HMAC_Update, in .rela.dyn's bytes
  const bytes = await Deno.readFile(SYSTEM);
  const view = new DataView(bytes.buffer);
  const rela = readelf("-S", SYSTEM).match(/\.rela\.dyn\s+RELA\s+\w+\s+(\w+)\s+(\w+)/)!;
  const [start, size] = [parseInt(rela[1], 16), parseInt(rela[2], 16)];
  let entry = -1;
  for (let i = start; i < start + size; i += 24) {
    if (Number(view.getBigInt64(i + 16, true)) === update) entry = i;
  }
  assert.ok(entry > 0, "HMAC_Update's relocation");
  const table = Number(view.getBigUint64(entry, true)) - 8 - 141 * 8;
  const tableOffset = offsetOf(SYSTEM, table);
  await doctored((b) => b[tableOffset + 3] = 4, async (path) => {
    await assert.rejects(locateFreeblFunctions(path), FreeblError, "a version 4 table");
  });
  await doctored(
    (b) => new DataView(b.buffer).setBigInt64(entry + 16, BigInt(update + 4), true),
    async (path) => {
      await assert.rejects(locateFreeblFunctions(path), /HMAC_Update .* is not a function start/);
    },
  );
});

Deno.test("locateFreeblFunctions() says why a library without the table is not freebl", async () => {
  await assert.rejects(
    locateFreeblFunctions("/usr/lib/x86_64-linux-gnu/libnss3.so"),
    /no FREEBL_GetVector symbol/,
  );
});
