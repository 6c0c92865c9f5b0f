import assert from "node:assert/strict";
import { mainHelp, moduleHelp } from "../../lib/cli/help.ts";
import { EXIT_CODES } from "../../lib/base/errors.ts";
import { loadAllModules } from "../../lib/modules/index.ts";
import { parseCommandLine } from "../../lib/cli/parse_command_line.ts";

const modules = await loadAllModules();

Deno.test("moduleHelp() ends with three examples and the exit codes of every module", () => {
  for (const m of modules) {
    const text = moduleHelp(m);
    const examples = text.slice(text.indexOf("\nExamples:\n"), text.indexOf("\nExit codes:\n"));
    const commands = examples.split("\n").filter((l) => /^ {2}ecap /.test(l));
    assert.equal(commands.length, 3, `${m.name}: ${examples}`);
    for (const c of commands) assert.ok(c.trim().startsWith(`ecap ${m.name}`), c);
    const codes = text.slice(text.indexOf("\nExit codes:\n")).trim().split("\n").slice(1);
    assert.deepEqual(
      codes.map((l) => Number(l.trim().split(" ")[0])),
      [0, 1, 2, 3, 4, 5, 6],
      m.name,
    );
    assert.match(codes[2], /usage/);
    assert.match(codes[4], /target not found/);
  }
});

Deno.test("every example in help parses as a command line", async () => {
  for (const m of modules) {
    for (const e of m.examples ?? []) {
      // the shell's part: a pipe, $(…) (a pid)
      const words = e.command.split(" | ")[0].replace(/"\$\([^)]*\)"/, "4242").split(" ");
      const p = await parseCommandLine(words.slice(1));
      assert.notEqual(typeof p, "string", e.command);
    }
  }
});

Deno.test("mainHelp() lists every module, -c and --comm, and the exit codes", () => {
  const text = mainHelp(modules);
  for (const m of modules) assert.ok(text.includes(`  ${m.name} `), m.name);
  assert.match(text, /-c, --count N +stop after N events/);
  assert.match(text, / {6}--comm NAME +only processes of this name/);
  assert.match(text, /-v, --verbose/);
  assert.match(text, /-q, --quiet/);
  assert.equal(Object.keys(EXIT_CODES).length, 6);
  for (const code of Object.values(EXIT_CODES)) assert.match(text, new RegExp(`\n  ${code}  `));
});
