import assert from "node:assert/strict";
import { MODULE_INDEX } from "../../lib/modules/index.ts";
import { MODULES } from "../../lib/modules/mod.ts";

Deno.test("the CLI's module index names every module with its spec's aliases, in order", async () => {
  assert.deepStrictEqual(Object.keys(MODULE_INDEX), Object.keys(MODULES));
  for (const [name, entry] of Object.entries(MODULE_INDEX)) {
    const spec = await entry.load();
    assert.equal(spec, (MODULES as Record<string, unknown>)[name]);
    assert.equal(spec.name, name);
    assert.deepStrictEqual(entry.aliases, spec.aliases ?? []);
  }
});

Deno.test("every module shows its events in the web view: a process column and a main one", () => {
  for (const spec of Object.values(MODULES)) {
    const roles = spec.view?.columns.map((c) => c.role) ?? [];
    assert.ok(roles.includes("process"), `${spec.name}: a process column`);
    assert.equal(roles.filter((r) => r === "main").length, 1, `${spec.name}: one main column`);
  }
});
