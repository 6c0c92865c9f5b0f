/**
 * lib/'s folders are floors: a file imports only from its own folder or one
 * below. This keeps the architecture visible and free of cycles.
 * @module
 */
import assert from "node:assert/strict";

const LIB = new URL("../lib/", import.meta.url).pathname;

/** Each folder's floor; a folder may import from floors below its own. */
const FLOORS: Record<string, number> = {
  base: 0, // errors, byte and text helpers: nothing of ours
  binary: 1, // ELF, BTF, Go and x86 readers, ld.so.cache, /proc
  http: 1, // HTTP/1, HTTP/2, HPACK: bytes in, messages out
  core: 2, // FFI, the capture loop, module specs, record headers, output
  pcap: 3, // pcapng, packet headers
  shell: 3, // what the shell modules share
  web: 3, // the live web view: its server and its page
  tls: 4, // what the TLS modules share
  modules: 5, // one file per module
  cli: 6, // the command line: options, help, completions, the man page
};

function importsOf(text: string): string[] {
  return [...text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1]);
}

Deno.test("lib/ folders import only from their own floor or below", async () => {
  const wrong: string[] = [];
  const top: string[] = [];
  for await (const e of Deno.readDir(LIB)) {
    if (e.isFile) top.push(e.name);
    if (!e.isDirectory) continue;
    assert.ok(e.name in FLOORS, `lib/${e.name}/ has no floor in this test`);
    for await (const f of Deno.readDir(`${LIB}${e.name}`)) {
      if (!f.name.endsWith(".ts")) continue;
      const text = await Deno.readTextFile(`${LIB}${e.name}/${f.name}`);
      for (const spec of importsOf(text)) {
        const target = new URL(spec, `file://${LIB}${e.name}/${f.name}`).pathname;
        if (!target.startsWith(LIB)) continue; // build/ objects, deno.json
        const folder = target.slice(LIB.length).split("/")[0];
        if (
          FLOORS[folder] > FLOORS[e.name] ||
          (folder !== e.name && FLOORS[folder] === FLOORS[e.name])
        ) {
          wrong.push(`lib/${e.name}/${f.name} imports ${spec}`);
        }
      }
    }
  }
  assert.deepEqual(top, [], "every file of lib/ is in a folder");
  assert.deepEqual(wrong, []);
});
