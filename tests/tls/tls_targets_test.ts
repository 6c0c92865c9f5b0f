/**
 * lib/tls/tls_targets.ts: what a module's targets are when one of its
 * files is refused (an optional helper library of an unknown build).
 * @module
 */
import assert from "node:assert/strict";
import { EcapError } from "../../lib/base/errors.ts";
import { libraryTargets, type TlsLibraryModule } from "../../lib/tls/tls_targets.ts";

const refusing: TlsLibraryModule<Record<string, never>> = {
  role: "x",
  what: "X",
  kind: { prefix: "libx.so", symbol: "x_function" },
  explicit: () => "/dev/null",
  fileTarget: (path) =>
    Promise.reject(new EcapError(`"${path}": not recognised`, { kind: "unsupported" })),
};

Deno.test("libraryTargets() leaves a refused file out, with a note, when its module allows", async () => {
  const t = await libraryTargets({ ...refusing, skipUnusable: true }, {});
  assert.deepEqual(t.files.x, []);
  assert.deepEqual(t.notes, ['not probed: "/dev/null": not recognised']);
});

Deno.test("libraryTargets() stops at a refused file by default", async () => {
  await assert.rejects(libraryTargets(refusing, {}), /"\/dev\/null": not recognised/);
});
