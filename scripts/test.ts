/**
 * Runs the test suite and ends with one plain line, "N passed, N failed,
 * N skipped", read by CI. Extra arguments go to `deno test` (e.g. a file or
 * `--filter NAME`). A suite silent for SILENCE_MS (a test hung where no
 * limit of its own reaches) is killed and that test counted as failed.
 * @module
 */

const SILENCE_MS = 10 * 60_000;

const args = Deno.args.length > 0 ? Deno.args : ["tests/"];
const child = new Deno.Command(Deno.execPath(), {
  args: ["test", "-A", "--no-check", ...args],
  env: { NO_COLOR: "1" },
  stdout: "piped",
  stderr: "inherit",
}).spawn();

let lastOutput = Date.now();
let running = ""; // the test deno test last started
let hung = false;
const watchdog = setInterval(() => {
  if (Date.now() - lastOutput < SILENCE_MS) return;
  hung = true;
  console.log(
    `\ntest: no output for ${SILENCE_MS / 60_000} min; killing the suite in "${running}"`,
  );
  try {
    child.kill("SIGKILL");
  } catch { /* it ended meanwhile */ }
}, 5_000);

// Pass the output through while keeping its summary line and a tally.
let summary = "";
let tail = "";
const tally = { passed: 0, failed: 0, ignored: 0 };
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  lastOutput = Date.now();
  await Deno.stdout.write(chunk);
  tail += decoder.decode(chunk, { stream: true });
  const lines = tail.split("\n");
  tail = lines.pop() ?? "";
  for (const line of lines) {
    if (/^(ok|FAILED) \| \d+ passed/.test(line)) summary = line;
    const result = / \.\.\. (ok|FAILED|ignored)\b/.exec(line);
    if (result) {
      tally[result[1] === "ok" ? "passed" : result[1] === "FAILED" ? "failed" : "ignored"]++;
    }
  }
  if (tail.endsWith(" ...")) running = tail.slice(0, -4);
}
clearInterval(watchdog);
const { code } = await child.status;
if (hung || !summary) {
  const why = hung ? `"${running}" hung` : "deno test printed no summary";
  console.log(
    `${tally.passed} passed, ${tally.failed + 1} failed, ${tally.ignored} skipped (${why})`,
  );
  Deno.exit(code || 1);
}
const count = (word: string) => Number(new RegExp(`(\\d+) ${word}`).exec(summary)?.[1] ?? 0);
console.log(`${count("passed")} passed, ${count("failed")} failed, ${count("ignored")} skipped`);
Deno.exit(code);
