/**
 * cli.ts as a user runs it, for what ends during parsing: help, versions,
 * scripts and usage errors. Capabilities are dropped, so that a command
 * line parsed by mistake stops at the privilege check and loads nothing.
 * @module
 */
import assert from "node:assert/strict";

const CLI = new URL("../../cli.ts", import.meta.url).pathname;

async function ecap(...args: string[]) {
  const out = await new Deno.Command("setpriv", {
    args: ["--bounding-set=-all", "--inh-caps=-all", Deno.execPath(), "run", "-A", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

for (
  const [args, line] of [
    [["tls", "--har"], "ecap: Option --har needs a value (FILE) (see ecap tls --help)"],
    [["tls", "--hexx"], "ecap: Unknown option --hexx (did you mean --hex?)"],
    [["bash", "--har", "x.har"], "ecap: Unknown option --har (see ecap bash --help)"],
    [["tsl"], 'ecap: Unknown module "tsl" (did you mean tls?)'],
    [
      ["tls", "-c", "curl"],
      'ecap: Invalid -c "curl": expected a positive number of events ' +
      "(--comm curl filters on a process name)",
    ],
    [["tls", "-m", "text", "-w", "x"], "ecap: -w writes pcapng: it cannot go with -m text"],
    [["tls", "-m", "text", "-k", "x"], "ecap: -k writes a key log: it cannot go with -m text"],
    [
      ["tls", "-w", "-", "-o", "-"],
      "ecap: -w - and -o - both write to stdout: " +
      "give -o FILE for the events (see ecap --help)",
    ],
    [["tls", "-w", "x", "-s", "0"], 'ecap: Invalid -s "0": expected a positive number of bytes'],
  ] as const
) {
  Deno.test(`ecap ${args.join(" ")} is one line on stderr and exit 2`, async () => {
    const r = await ecap(...args);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, line + "\n");
    assert.equal(r.stdout, "");
  });
}

Deno.test("ecap MODULE --version, ecap -h and ecap help MODULE print and exit 0", async () => {
  const v = await ecap("tls", "--version");
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^ecap \d+\.\d+\.\d+\n$/);
  const h = await ecap("-h");
  assert.equal(h.code, 0);
  assert.match(h.stdout, /^Usage: ecap MODULE \[options\]$/m);
  const m = await ecap("help", "bash");
  assert.equal(m.code, 0);
  assert.match(m.stdout, /^ecap bash: /);
  assert.match(m.stdout, /\nExit codes:\n {2}0 {2}success/);
});

Deno.test("ecap --json bash and ecap bash --json reach the same check", async () => {
  // both parse; without capabilities both stop at the privilege check
  const a = await ecap("--json", "bash", "-c", "1");
  const b = await ecap("bash", "--json", "-c", "1");
  assert.equal(a.code, 3, a.stderr);
  assert.equal(a.stderr, b.stderr);
});
