/**
 * stackCheckJump: where gotls enters a Go function, judged against
 * objdump's disassembly of the Go test client's crypto/tls functions.
 * @module
 */
import assert from "node:assert/strict";
import { readElf } from "../../lib/binary/elf.ts";
import { stackCheckJump } from "../../lib/modules/gotls.ts";
import { programs } from "../_go.ts";

const FUNCTIONS = [
  "crypto/tls.(*Conn).Read",
  "crypto/tls.(*Conn).Write",
  "crypto/tls.(*Conn).clientHandshake",
  "crypto/tls.(*Config).writeKeyLog",
];

Deno.test("stackCheckJump() finds the jbe of each Go function's stack check, as objdump shows it", async () => {
  const { client } = await programs();
  const elf = await readElf(client);
  for (const name of FUNCTIONS) {
    const sym = elf.symbol(name)!;
    const out = await new Deno.Command("objdump", {
      args: ["-d", `--disassemble=${name}`, client],
      stdout: "piped",
    }).output();
    // objdump's own decoding: the first jbe after a cmp of 0x10(%r14), as an offset
    const lines = new TextDecoder().decode(out.stdout).split("\n")
      .map((l) => /^\s+([0-9a-f]+):\s+(?:[0-9a-f]{2} )+\s*(\S+)\s*(.*)$/.exec(l))
      .filter((m) => m !== null);
    const cmp = lines.findIndex((m) => m[2] === "cmp" && m[3].startsWith("0x10(%r14)"));
    assert.ok(cmp >= 0 && cmp <= 1, `${name}: stack check first`);
    assert.equal(lines[cmp + 1][2], "jbe", name);
    const expected = parseInt(lines[cmp + 1][1], 16) - sym.value;
    assert.equal(stackCheckJump(elf.bytesAt(sym.fileOffset!, 32)), expected, name);
  }
  // a start that is no stack check (a NOSPLIT function, or other code) is not one
  assert.equal(stackCheckJump(new Uint8Array([0x48, 0x8b, 0x44, 0x24, 0x08, 0xc3])), undefined);
  assert.equal(stackCheckJump(new Uint8Array([0x49, 0x3b, 0x66, 0x18, 0x76, 0x10])), undefined);
});
