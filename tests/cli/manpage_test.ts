import assert from "node:assert/strict";
import { manPage } from "../../lib/cli/manpage.ts";
import { loadAllModules } from "../../lib/modules/index.ts";

const modules = await loadAllModules();
const page = manPage(modules);

async function has(cmd: string): Promise<boolean> {
  const r = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`] }).output();
  return r.code === 0;
}

Deno.test("manPage() has the sections of a man page and every module, option and code", () => {
  const sections = [...page.matchAll(/^\.SH (.+)$/gm)].map((m) => m[1]);
  assert.deepEqual(sections.slice(0, 4), ["NAME", "SYNOPSIS", "DESCRIPTION", "MODULES"]);
  assert.deepEqual(sections.slice(-3), ["EXAMPLES", "EXIT STATUS", "SEE ALSO"]);
  assert.match(page, /^\.TH ECAP 1 /);
  for (const m of modules) {
    assert.ok(sections.includes(`OPTIONS OF ${m.name.toUpperCase()}`), m.name);
    assert.match(page, new RegExp(`^\\.SS ${m.name}$`, "m"));
  }
  assert.match(page, /\\fB\\-c\\fR, \\fB\\-\\-count\\fR \\fIN\\fR/);
  for (const code of [0, 1, 2, 3, 4, 5, 6]) assert.match(page, new RegExp(`^\\.B ${code}$`, "m"));
  // no line that roff would take for a request by mistake
  for (const line of page.split("\n")) {
    if (line.startsWith(".") || line.startsWith("'")) {
      assert.match(line, /^\.[A-Z]{1,2}\b|^\.(nf|fi|br)$/);
    }
  }
});

Deno.test("manPage() renders with groff without a warning", async (t) => {
  if (!await has("groff")) {
    await t.step({ name: "groff is not installed", ignore: true, fn: () => {} });
    return;
  }
  const file = await Deno.makeTempFile({ suffix: ".1" });
  try {
    await Deno.writeTextFile(file, page);
    const out = await new Deno.Command("groff", {
      args: ["-man", "-Tutf8", "-ww", "-P", "-cbou", file], // -P -cbou: plain text, no overstrike
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(new TextDecoder().decode(out.stderr), "");
    assert.equal(out.code, 0);
    const text = new TextDecoder().decode(out.stdout);
    assert.match(text, /EXIT STATUS/);
    assert.match(text, /ecap tls -w - \| wireshark -k -i -/);
  } finally {
    await Deno.remove(file);
  }
});
