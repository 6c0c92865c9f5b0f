/**
 * Runs the test suite and ends with one plain line, "N passed, N failed,
 * N skipped", read by CI. Extra arguments go to `deno test` (e.g. a file or
 * `--filter NAME`).
 * @module
 */

const args = Deno.args.length > 0 ? Deno.args : ["tests/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--no-check", ...args],
  env: { NO_COLOR: "1" },
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Pass the output through while keeping its summary line.
let summary = "";
let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  tail += decoder.decode(chunk, { stream: true });
  const lines = tail.split("\n");
  tail = lines.pop() ?? "";
  for (const line of lines) {
    if (/^(ok|FAILED) \| \d+ passed/.test(line)) summary = line;
  }
}
const { code } = await child.status;
const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(summary)?.[1] ?? 0);
if (!summary) {
  console.log("0 passed, 1 failed (deno test printed no summary)");
  Deno.exit(code || 1);
}
console.log(`${count("passed")} passed, ${count("failed")} failed, ${count("ignored")} skipped`);
Deno.exit(code);
