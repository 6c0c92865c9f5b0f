/**
 * Writes the man page made from the command line's tables to the path given
 * (build/ecap.1), only when its text changed. Run by scripts/build.ts as a
 * process of its own once the BPF objects exist: the modules embed them, and
 * a process that started before they were built cannot import them.
 * @module
 */
import { manPage } from "../lib/cli/manpage.ts";
import { loadAllModules } from "../lib/modules/index.ts";

const out = Deno.args[0];
if (!out) {
  console.error("usage: deno run -A scripts/manpage.ts OUT");
  Deno.exit(2);
}
const text = manPage(await loadAllModules());
if (await Deno.readTextFile(out).catch(() => "") !== text) {
  await Deno.writeTextFile(out, text);
  console.log("changed");
}
