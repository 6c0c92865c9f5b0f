import assert from "node:assert/strict";
import { controlBytes, hexdump, printableText } from "../../lib/base/hexdump.ts";
import { mulberry32 } from "../_random.ts";

Deno.test("hexdump() lays out offset, two hex groups and the printable ASCII", () => {
  const bytes = new TextEncoder().encode("GET / HTTP/1.1\r\nHost");
  assert.equal(
    hexdump(bytes),
    "00000000  47 45 54 20 2f 20 48 54  54 50 2f 31 2e 31 0d 0a  |GET / HTTP/1.1..|\n" +
      "00000010  48 6f 73 74                                       |Host|",
  );
  assert.equal(hexdump(new Uint8Array(0)), "");
  // a short last row, at the group boundary
  const nine = hexdump(Uint8Array.from({ length: 25 }, (_, i) => i * 11));
  assert.equal(
    nine.split("\n")[1],
    "00000010  b0 bb c6 d1 dc e7 f2 fd  08                       |.........|",
  );
  const big = hexdump(new Uint8Array(0x10010));
  assert.equal(big.split("\n").length, 0x1001);
  assert.ok(big.split("\n")[0x1000].startsWith("00010000  00 00 "));
});

Deno.test("printableText() keeps text, refuses binary and invalid UTF-8", () => {
  const enc = new TextEncoder();
  assert.equal(printableText(enc.encode("héllo\tworld\r\n")), "héllo\tworld\r\n");
  // one control in 100 characters is shown as a dot; more makes it binary
  const one = "a".repeat(99) + "\x01";
  assert.equal(printableText(enc.encode(one)), "a".repeat(99) + ".");
  assert.equal(printableText(enc.encode("a".repeat(98) + "\x01\x02")), undefined);
  // 100 bytes but 99 characters: the limit is taken on characters
  assert.equal(printableText(enc.encode("é" + "a".repeat(97) + "\x01")), undefined);
  assert.equal(printableText(new Uint8Array([0x61, 0xff, 0x62])), undefined);
  assert.equal(printableText(new Uint8Array(0)), "");
});

Deno.test("controlBytes() counts controls, not tab, LF or CR, and stops past its limit", () => {
  const b = new Uint8Array([0, 9, 10, 13, 0x1f, 0x7f, 0x20, 0x80]);
  assert.equal(controlBytes(b), 3);
  assert.equal(controlBytes(new Uint8Array(1000), 5), 6);
});

Deno.test("hexdump() prints what util-linux's `hexdump -C` prints, with or without an indent", async () => {
  const rand = mulberry32(5);
  for (const n of [1, 15, 16, 17, 100, 256, 1000]) {
    // random bytes: no two rows alike, which `hexdump -C` would fold into "*"
    const bytes = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
    const cmd = new Deno.Command("hexdump", { args: ["-C"], stdin: "piped", stdout: "piped" });
    const child = cmd.spawn();
    const writer = child.stdin.getWriter();
    await writer.write(bytes);
    await writer.close();
    const out = new TextDecoder().decode((await child.output()).stdout);
    // its last line is the length alone
    const want = out.split("\n").slice(0, -2);
    assert.deepEqual(hexdump(bytes).split("\n"), want, `${n} bytes`);
    assert.deepEqual(hexdump(bytes, "  ").split("\n"), want.map((l) => "  " + l), `${n} bytes`);
  }
});
