/**
 * mayDefineSymbol: a look at string tables only; findInFile: a search read a chunk at a time.
 * @module
 */
import assert from "node:assert/strict";
import { findInFile, mayDefineSymbol } from "../../lib/binary/elf_peek.ts";

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

Deno.test("mayDefineSymbol finds names that cross its 1 MiB reads (node's 5 MB .dynstr)", async () => {
  // the table's place from readelf, its names from nm: neither is our parser
  const sections = new TextDecoder().decode(
    (await new Deno.Command("readelf", { args: ["-SW", "/usr/bin/node"], stdout: "piped" })
      .output()).stdout,
  );
  const row = /\.dynstr\s+STRTAB\s+[0-9a-f]+ ([0-9a-f]+) ([0-9a-f]+)/.exec(sections)!;
  const [offset, size] = [parseInt(row[1], 16), parseInt(row[2], 16)];
  const nm = new TextDecoder().decode(
    (await new Deno.Command("nm", {
      args: ["-D", "--defined-only", "/usr/bin/node"],
      stdout: "piped",
    })
      .output()).stdout,
  );
  const defined = new Set(
    nm.split("\n").map((l) => l.split(" ")[2]?.split("@")[0]).filter(Boolean),
  );
  const table = new Uint8Array(size);
  using f = await Deno.open("/usr/bin/node");
  await f.seek(offset, Deno.SeekMode.Start);
  for (let got = 0; got < size;) got += (await f.read(table.subarray(got)))!;
  const crossing: string[] = [];
  for (let boundary = 1 << 20; boundary < size; boundary += 1 << 20) {
    let start = table.lastIndexOf(0, boundary - 1) + 1; // the name the boundary cuts
    if (start === boundary) start = table.lastIndexOf(0, boundary - 2) + 1;
    const name = new TextDecoder().decode(table.subarray(start, table.indexOf(0, start)));
    if (defined.has(name)) crossing.push(name);
  }
  assert.ok(crossing.length >= 2, `names across boundaries: ${crossing}`);
  for (const name of crossing) {
    assert.equal(await mayDefineSymbol("/usr/bin/node", name), true, name);
  }
  assert.equal(await mayDefineSymbol("/usr/bin/node", "gnutls_record_recv"), false);
});

Deno.test("findInFile finds a needle at every place around its 1 MiB reads", async () => {
  const path = await Deno.makeTempFile();
  const MiB = 1 << 20, needle = new TextEncoder().encode("Enabled GnuTLS ");
  try {
    // where a chunk ends, where the next begins, and a match cut by the range's end
    for (const at of [0, MiB - 7, MiB - needle.length, MiB, 2 * MiB - 3, 3 * MiB - 20]) {
      const bytes = new Uint8Array(3 * MiB).fill(0x45); // "E": the needle's first byte everywhere
      bytes.set(needle, at);
      const tail = new TextEncoder().encode("3.7.9 logging");
      bytes.set(tail.subarray(0, bytes.length - at - needle.length), at + needle.length);
      await Deno.writeFile(path, bytes);
      const found = await findInFile(path, { offset: 0, size: bytes.length }, needle, 28);
      const expected = bytes.slice(at, Math.min(at + 28, bytes.length));
      assert.deepEqual(found, expected, `needle at ${at}`);
      // a range that starts after it, or ends inside it, does not find it
      const after = await findInFile(path, { offset: at + 1, size: MiB }, needle, 28);
      assert.equal(after, undefined, `range after ${at}`);
      const cut = await findInFile(path, { offset: 0, size: at + needle.length - 1 }, needle, 28);
      assert.equal(cut, undefined, `range ending inside the needle at ${at}`);
    }
  } finally {
    await Deno.remove(path);
  }
});
