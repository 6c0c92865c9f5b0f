/**
 * lib/tls/nss_keys.ts against binutils' readelf: the HMAC functions it
 * finds in freebl are the targets of relative relocations two table slots
 * apart, and unwind-table function starts; doctored copies are refused.
 * @module
 */
import assert from "node:assert/strict";
import { FreeblError, locateFreeblHmac } from "../../lib/tls/nss_keys.ts";

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
  const found = await locateFreeblHmac(path);
  assert.deepEqual(found.map((f) => f.symbol), ["HMAC_Update", "HMAC_Finish"]);
  const [update, finish] = found.map((f) => vaddrOf(path, f.offset));
  const starts = fdeStarts(path);
  assert.ok(starts.has(update) && starts.has(finish), "unwind-table function starts");
  return { update, finish };
}

Deno.test("locateFreeblHmac() in Debian's freebl: relocated table entries, function starts", async () => {
  const { update, finish } = await check(SYSTEM);
  // RELA: each entry is a relative relocation whose addend is the function
  const slots = new Map<number, number>();
  for (const m of readelf("-r", SYSTEM).matchAll(/^(\w+)\s+\w+\s+R_X86_64_RELATIVE\s+(\w+)$/gm)) {
    slots.set(parseInt(m[2], 16), parseInt(m[1], 16));
  }
  assert.ok(slots.has(update) && slots.has(finish), "both are relocated function pointers");
  assert.equal(slots.get(finish)! - slots.get(update)!, 16, "HMAC_Finish two slots after Update");
});

Deno.test("locateFreeblHmac() in Firefox ESR's own freebl (RELR)", async () => {
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

Deno.test("locateFreeblHmac() refuses a table of another version and an entry off a function start", async () => {
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
    await assert.rejects(locateFreeblHmac(path), FreeblError, "a version 4 table");
  });
  await doctored(
    (b) => new DataView(b.buffer).setBigInt64(entry + 16, BigInt(update + 4), true),
    async (path) => {
      await assert.rejects(locateFreeblHmac(path), /HMAC_Update .* is not a function start/);
    },
  );
});

Deno.test("locateFreeblHmac() says why a library without the table is not freebl", async () => {
  await assert.rejects(
    locateFreeblHmac("/usr/lib/x86_64-linux-gnu/libnss3.so"),
    /no FREEBL_GetVector symbol/,
  );
});
