/**
 * V8 flags ecap's command line runs with: in the compiled binary (baked in
 * by scripts/build.ts), under `deno task capture` (deno.json), and wherever
 * tests and benchmarks start the CLI.
 *
 * --max-semi-space-size=2: V8 grows its young generation up to 16 MiB per
 * semi-space for a program that allocates fast, as a capture under load
 * does; its batches live shorter than that. 2 MiB took ecap's peak RSS
 * under full HTTPS load from about 200 MB to about 145 MB at the same
 * throughput (measured).
 *
 * --expose-gc: an idle capture collects before it gives its free heap back
 * (releaseMemory in lib/core/ffi.ts): 4 to 9 MiB less RSS for an idle
 * `ecap tls`, whose start-up buffers V8 would otherwise keep (measured).
 * @module
 */
export const V8_FLAGS = ["--max-semi-space-size=2", "--expose-gc"];

/** The flags as one `deno run` / `deno compile` argument. */
export const V8_FLAGS_ARG = `--v8-flags=${V8_FLAGS.join(",")}`;
