import assert from "node:assert/strict";
import { readElf } from "../../lib/binary/elf.ts";
import { emulatedFirst, opensslInternalCalls } from "../../lib/tls/ssl_internal.ts";

const LIBSSL = "/usr/lib/x86_64-linux-gnu/libssl.so.3";

Deno.test("emulatedFirst() knows the instructions x86 uprobes do not single-step", () => {
  const yes = [[0x41, 0x55], [0x53], [0xe8, 1, 0, 0, 0], [0xe9, 1, 0, 0, 0], [0xeb, 2], [0x90], [
    0x0f,
    0x1f,
    0x44,
    0,
    0,
  ]];
  const no = [[0x48, 0x83, 0xec, 0x18], [0xf3, 0x0f, 0x1e, 0xfa], [0xc3], [0x48, 0x89, 0xf8], []];
  for (const b of yes) assert.equal(emulatedFirst(new Uint8Array(b)), true, `${b}`);
  for (const b of no) assert.equal(emulatedFirst(new Uint8Array(b)), false, `${b}`);
});

Deno.test("opensslInternalCalls() finds the functions Debian's SSL_read* and SSL_write* share", async () => {
  const calls = await opensslInternalCalls(LIBSSL);
  assert.ok(calls, "found");
  assert.notEqual(calls.read, calls.write);
  const elf = await readElf(LIBSSL);
  // the public entries are single-stepped (the reason to look), the internal ones are not
  for (const name of ["SSL_read", "SSL_write"]) {
    assert.equal(emulatedFirst(elf.bytesAt(elf.symbol(name)!.fileOffset!, 16)), false, name);
  }
  assert.equal(emulatedFirst(elf.bytesAt(calls.read, 16)), true);
  assert.equal(emulatedFirst(elf.bytesAt(calls.write, 16)), true);
  // neither is an exported function
  const exported = new Set(
    ["SSL_read", "SSL_read_ex", "SSL_write", "SSL_write_ex"].map((n) => elf.symbol(n)!.fileOffset),
  );
  assert.ok(!exported.has(calls.read) && !exported.has(calls.write));
});

Deno.test("opensslInternalCalls() finds nothing in a library that is not OpenSSL", async () => {
  assert.equal(await opensslInternalCalls("/usr/lib/x86_64-linux-gnu/libz.so.1"), undefined);
});

Deno.test("opensslInternalCalls() looks again when the file at a path is replaced", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/libssl.so.3`;
    await Deno.copyFile(LIBSSL, path);
    assert.ok(await opensslInternalCalls(path));
    // an upgrade in place: another file under the same name
    await Deno.remove(path);
    await Deno.copyFile("/usr/lib/x86_64-linux-gnu/libz.so.1", path);
    assert.equal(await opensslInternalCalls(path), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
