/**
 * The ecap command line: `ecap MODULE [options]`. This file imports little
 * on purpose: Deno runs a module only once everything it imports statically
 * is loaded (all of ecap: about 70 ms), and a capture's first step, parsing
 * the kernel's BTF, can run on a thread of its own meanwhile. The rest is in
 * lib/cli/run_capture.ts.
 * @module
 */
import { prefetchKernelBtf } from "./lib/core/ffi.ts";
import { isModuleName } from "./lib/modules/index.ts";

if (import.meta.main) {
  const argv = Deno.args;
  if (isModuleName(argv[0] ?? "") && !argv.some((a) => a === "-h" || a === "--help")) {
    prefetchKernelBtf();
  }
  const { main } = await import("./lib/cli/run_capture.ts");
  // main's StopSignals goes with main: a signal between its return and the
  // exit would otherwise kill ecap by the default action, after it had
  // written everything (exit 143 for a second SIGTERM). Listened to from
  // here on, a signal does nothing more once main has begun.
  for (const s of ["SIGINT", "SIGTERM"] as const) Deno.addSignalListener(s, () => {});
  Deno.exit(await main(argv));
}
