/**
 * V8 flags ecap's command line runs with: in the compiled binary (baked in
 * by scripts/build.ts), under `deno task capture` (deno.json), and wherever
 * tests and benchmarks start the CLI.
 *
 * --max-semi-space-size=8: V8 would grow its young generation up to 16 MiB
 * per semi-space for a program that allocates fast, as a capture under load
 * does. 2 MiB once took the peak RSS under full HTTPS load from about 200 to
 * 145 MB, but since the parsers borrow call bytes the peaks with 2, 4 and 8
 * are the same within the runs' spread (158-172 MiB, 1 KiB and 64 KiB
 * responses), while 8 halves the collections' time with 1 KiB responses
 * (1,050 scavenges and 0.95 s in 5 s of load -> 285 and 0.47 s; ecap's CPU
 * 59-63 -> 49-53 µs a request), measured 2026-12-07.
 *
 * --expose-gc: an idle capture collects before it gives its free heap back
 * (releaseMemory in lib/core/ffi.ts): 4 to 9 MiB less RSS for an idle
 * `ecap tls`, whose start-up buffers V8 would otherwise keep (measured).
 * @module
 */
export const V8_FLAGS = ["--max-semi-space-size=8", "--expose-gc"];

/** The flags as one `deno run` / `deno compile` argument. */
export const V8_FLAGS_ARG = `--v8-flags=${V8_FLAGS.join(",")}`;
