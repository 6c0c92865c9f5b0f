import assert from "node:assert/strict";
import { readElf } from "../../lib/binary/elf.ts";
import {
  emulatedFirst,
  gnutlsSendForwards,
  opensslInternalCalls,
} from "../../lib/tls/ssl_internal.ts";

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

const LIBGNUTLS = "/usr/lib/x86_64-linux-gnu/libgnutls.so.30";

/** A shared library built from C source, in a temporary directory. */
async function buildLibrary(source: string): Promise<string> {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/lib.c`, source);
  const out = await new Deno.Command("gcc", {
    args: ["-O2", "-shared", "-fPIC", "-o", `${dir}/lib.so`, `${dir}/lib.c`],
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return `${dir}/lib.so`;
}

Deno.test("gnutlsSendForwards() sees Debian's gnutls_record_send jump to send2, as objdump does", async () => {
  // objdump's own reading of the function: argument set-up, then a jump to send2's PLT stub
  const out = await new Deno.Command("objdump", {
    args: ["-d", "--disassemble=gnutls_record_send", LIBGNUTLS],
    stdout: "piped",
  }).output();
  const body = new TextDecoder().decode(out.stdout);
  assert.match(body, /jmp\s+[0-9a-f]+ <gnutls_record_send2@plt>/);
  assert.equal(await gnutlsSendForwards(LIBGNUTLS), true);
});

Deno.test("gnutlsSendForwards() is false when gnutls_record_send does more than forward", async () => {
  const common = `#include <sys/types.h>
volatile long seen;
__attribute__((noinline)) ssize_t gnutls_record_send2(void *s, const void *d, size_t n,
                                                     size_t pad, unsigned flags)
{ seen += n + pad + flags + (long)s + (long)d; return (ssize_t)n; }
`;
  // the same forward through the PLT is recognised; work before the jump is not
  const forward = await buildLibrary(`${common}
ssize_t gnutls_record_send(void *s, const void *d, size_t n)
{ return gnutls_record_send2(s, d, n, 0, 0); }`);
  const more = await buildLibrary(`${common}
ssize_t gnutls_record_send(void *s, const void *d, size_t n)
{ seen++; return gnutls_record_send2(s, d, n, 0, 0); }`);
  try {
    assert.equal(await gnutlsSendForwards(forward), true);
    assert.equal(await gnutlsSendForwards(more), false);
    assert.equal(await gnutlsSendForwards(LIBSSL), false);
  } finally {
    for (const p of [forward, more]) {
      await Deno.remove(p.replace(/\/lib\.so$/, ""), { recursive: true });
    }
  }
});
