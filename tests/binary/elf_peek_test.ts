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
