/**
 * pltTarget, judged against objdump's names for PLT stubs (`name@plt`),
 * which binutils derives on its own from the same relocations.
 * @module
 */
import assert from "node:assert/strict";
import { readElf } from "../../lib/binary/elf.ts";
import { pltTarget } from "../../lib/binary/elf_plt.ts";

async function objdumpStubs(path: string): Promise<Map<number, string>> {
  const out = await new Deno.Command("objdump", {
    args: ["-d", "-j", ".plt", path],
    stdout: "piped",
  })
    .output();
  const stubs = new Map<number, string>();
  for (const m of new TextDecoder().decode(out.stdout).matchAll(/^([0-9a-f]+) <(.+)@plt>:$/gm)) {
    stubs.set(parseInt(m[1], 16), m[2].replace(/@.*/, ""));
  }
  return stubs;
}

for (const path of ["/lib/x86_64-linux-gnu/libgnutls.so.30", "/usr/bin/curl"]) {
  Deno.test(`pltTarget names every PLT stub of ${path} as objdump does`, async () => {
    const stubs = await objdumpStubs(path);
    assert.ok(stubs.size > 50, `objdump found ${stubs.size} stubs`);
    const elf = await readElf(path);
    for (const [va, name] of stubs) {
      assert.equal(pltTarget(elf, va), name, `stub at 0x${va.toString(16)}`);
    }
    // the PLT's first entry (the resolver's) and a function's own code are no stub
    assert.equal(pltTarget(elf, elf.sectionHeader(".plt")!.addr), undefined);
    const own = elf.symbol(path.includes("gnutls") ? "gnutls_record_send2" : "main");
    if (own) assert.equal(pltTarget(elf, own.value), undefined);
  });
}
