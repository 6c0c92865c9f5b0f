import assert from "node:assert/strict";
import { completionScript } from "../../lib/cli/completions.ts";
import { loadAllModules } from "../../lib/modules/index.ts";

const modules = await loadAllModules();

async function run(cmd: string, args: string[]) {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  const text = (b: Uint8Array) => new TextDecoder().decode(b);
  return { code: out.code, stdout: text(out.stdout), stderr: text(out.stderr) };
}

async function written(text: string): Promise<string> {
  const file = await Deno.makeTempFile({ prefix: "ecap-completion-" });
  await Deno.writeTextFile(file, text);
  return file;
}

Deno.test("completionScript() for bash passes bash -n", async () => {
  const file = await written(completionScript("bash", modules));
  try {
    const r = await run("bash", ["-n", file]);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("completionScript() for zsh passes zsh -n", async (t) => {
  if ((await run("sh", ["-c", "command -v zsh"])).code !== 0) {
    t.step({ name: "zsh is not installed", ignore: true, fn: () => {} });
    return;
  }
  const file = await written(completionScript("zsh", modules));
  try {
    const r = await run("zsh", ["-n", file]);
    assert.equal(r.code, 0, r.stderr);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("completionScript() for bash offers modules, their options and files", async () => {
  const file = await written(completionScript("bash", modules));
  const target = await written("");
  try {
    const complete = async (...words: string[]) => {
      const quoted = words.map((w) => `'${w}'`).join(" ");
      const r = await run("bash", [
        "-c",
        `source '${file}'; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _ecap; ` +
        'printf "%s\\n" "${COMPREPLY[@]}"',
      ]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.split("\n").filter(Boolean);
    };
    assert.deepEqual(await complete("ecap", "ts"), []);
    assert.deepEqual(await complete("ecap", "tl"), ["tls"]);
    assert.deepEqual(await complete("ecap", "tls", "--he"), ["--hex", "--help"]);
    assert.deepEqual(await complete("ecap", "--json", "bash", "--er"), ["--errnumber"]);
    assert.deepEqual(await complete("ecap", "tls", "-w", target), [target], "-w takes a FILE");
    assert.deepEqual(await complete("ecap", "bash", "-e", ""), [], "bash's -e is a number");
    assert.deepEqual(await complete("ecap", "tls", "-e", target), [target], "tls's -e a PATH");
    assert.deepEqual(await complete("ecap", "completions", "z"), ["zsh"]);
    assert.ok((await complete("ecap", "bash", "-")).includes("-c"));
  } finally {
    await Deno.remove(file);
    await Deno.remove(target);
  }
});
