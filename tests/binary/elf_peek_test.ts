/**
 * mayDefineSymbol: a look at string tables only.
 * @module
 */
import assert from "node:assert/strict";
import { mayDefineSymbol } from "../../lib/binary/elf_peek.ts";

Deno.test("mayDefineSymbol finds SSL_write in libssl and not in /usr/bin/true", async () => {
  assert.equal(await mayDefineSymbol("/usr/lib/x86_64-linux-gnu/libssl.so.3", "SSL_write"), true);
  assert.equal(await mayDefineSymbol("/usr/bin/true", "SSL_write"), false);
  // a prefix of a name is not the name
  assert.equal(await mayDefineSymbol("/usr/lib/x86_64-linux-gnu/libssl.so.3", "SSL_wri"), false);
});

Deno.test("mayDefineSymbol leaves files that are not ELF to the full check", async () => {
  const path = await Deno.makeTempFile();
  try {
    await Deno.writeTextFile(path, "#!/bin/sh\necho SSL_write\n");
    assert.equal(await mayDefineSymbol(path, "SSL_write"), true);
  } finally {
    await Deno.remove(path);
  }
});
