/// <reference lib="dom" />
/**
 * The live web view in a real browser (headless chromium): `ecap tls --web`
 * with nginx and curl on loopback, each request in the page's table within
 * 2 s with its status and process, its body in the detail pane, the filter;
 * `ecap bash --web` beyond loopback behind its token, with typed commands.
 * A screenshot of the page is kept in build/artifacts/ (the README's).
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, TmuxPane, waitFor } from "./_helpers.ts";
import { HeadlessChromium, type Page } from "./_browser.ts";
import { freePort, Nginx } from "./_nginx.ts";

const ARTIFACTS = new URL("../build/artifacts/", import.meta.url).pathname;

/** The data-col of the column labelled `label`, from the page's own meta. */
async function column(base: string, label: string, headers = {}): Promise<string> {
  const meta = await (await fetch(new URL("/api/meta", base), { headers })).json();
  const i = meta.columns.findIndex((c: { label: string }) => c.label === label);
  assert.ok(i >= 0, `a ${label} column`);
  return `c${i}`;
}

/** The cells of the rendered row whose `col` cell contains `text`, by column. */
function rowWith(page: Page, col: string, text: string) {
  return page.evaluate(
    (col: string, text: string) => {
      for (const row of document.querySelectorAll("#rows .row")) {
        if (!row.querySelector(`[data-col="${col}"]`)?.textContent?.includes(text)) continue;
        const cells: Record<string, string> = { id: row.getAttribute("data-id") ?? "" };
        for (const c of row.querySelectorAll(".cell")) {
          cells[c.getAttribute("data-col")!] = c.textContent ?? "";
        }
        return cells;
      }
      return null;
    },
    col,
    text,
  );
}

const text = (page: Page, selector: string) =>
  page.evaluate((s: string) => document.querySelector(s)?.textContent ?? "", selector);

bpfTest("ecap tls --web: every request in the table within 2 s; detail, filter", async () => {
  const body = `plain body ${crypto.randomUUID()}\n`;
  const json = JSON.stringify({ name: "ecap", items: [1, 2], nested: { ok: true } });
  await using nginx = await Nginx.start({ "x.txt": body, "data.json": json });
  const port = freePort();
  await using run = await EcapRun.start(["tls", "--web", `127.0.0.1:${port}`]);
  const base = `http://127.0.0.1:${port}/`;
  assert.ok(run.stderr.includes(`ecap: live view at ${base}\n`), run.stderr);
  const [client, path, status] = await Promise.all(
    ["Client", "Path", "Status"].map((l) => column(base, l)),
  );
  await using chromium = await HeadlessChromium.launch();
  // tall enough that all 50 rows are rendered: the table renders only what shows
  const page = await chromium.open(base, 1400, 1900);
  await waitFor(async () => (await text(page, "#status")).includes("live"), "the page live");

  const tokens: string[] = [];
  const slowest = { ms: 0 };
  for (let i = 0; i < 50; i++) {
    const token = crypto.randomUUID();
    tokens.push(token);
    const file = i === 7 ? "data.json" : "x.txt";
    const curl = new Deno.Command("curl", {
      args: [
        "-sk",
        "--max-time",
        "20",
        i % 2 ? "--http2" : "--http1.1",
        nginx.url(`/${file}?t=${token}`),
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = await curl.output();
    assert.equal(out.code, 0);
    const done = performance.now();
    let row: Record<string, string> | null = null;
    await waitFor(async () => (row = await rowWith(page, path, token)) !== null, `row ${i}`, 5000);
    const ms = performance.now() - done;
    slowest.ms = Math.max(slowest.ms, ms);
    assert.ok(ms <= 2000, `request ${i} showed after ${ms.toFixed(0)} ms`);
    assert.equal(row![status], "200");
    assert.equal(row![client], `curl[${curl.pid}]`);
  }
  console.error(`slowest of 50 requests to show: ${slowest.ms.toFixed(0)} ms`);

  // its detail: the JSON body indented, as DevTools shows it
  const picked = (await rowWith(page, path, tokens[7]))!;
  await page.click(`#rows .row[data-id="${picked.id}"]`);
  await waitFor(
    async () => (await text(page, "#detail")).includes('\n  "name": "ecap"'),
    "the JSON body pretty-printed in the detail pane",
  );
  const plain = (await rowWith(page, path, tokens[8]))!;
  await page.click(`#rows .row[data-id="${plain.id}"]`);
  await waitFor(async () => (await text(page, "#detail pre.body")).includes(body.trim()), "body");

  // the filter: one token, one row
  await page.type("#filter", tokens[31]);
  await waitFor(
    async () => (await page.$$("#rows .row")).length === 1,
    "one row left by the filter",
  );
  assert.ok((await rowWith(page, path, tokens[31])) !== null);
  assert.match(await text(page, "#count"), /^1 shown of \d+/);
  await page.click("#filter", { count: 3 });
  await page.keyboard.press("Backspace");
  await waitFor(async () => (await page.$$("#rows .row")).length >= 50, "every row back");

  // the README's screenshot
  await page.click(`#rows .row[data-id="${picked.id}"]`);
  await page.setViewport({ width: 1400, height: 860 });
  await new Promise((r) => setTimeout(r, 1200)); // the timeline's once-a-second redraw
  await Deno.mkdir(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}web_view.png` });
  assert.equal((await text(page, "#lost")).trim(), "0");
  assert.deepEqual(chromium.errors, [], "no errors on the page (a CSP violation is one)");
  assert.equal(await run.stop(), 0);
});

bpfTest("ecap bash --web beyond loopback: 401 without the token; typed commands show", async () => {
  const port = freePort();
  await using run = await EcapRun.start(["bash", "--web", `0.0.0.0:${port}`]);
  const printed = /live view at http:\/\/0\.0\.0\.0:(\d+)\/\?token=([\w-]+)\n/.exec(run.stderr);
  assert.ok(printed, run.stderr);
  const token = printed[2];
  assert.equal(run.stderr.split(token).length, 2, "the token is printed once");
  const local = `http://127.0.0.1:${port}`;
  for (const path of ["/", "/api/meta", "/api/events"]) {
    const r = await fetch(local + path);
    assert.equal(r.status, 401, `${path} without the token, from loopback too`);
    await r.body?.cancel();
  }
  const ok = await fetch(`${local}/api/meta`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(ok.status, 200);
  await ok.body?.cancel();
  const command = await column(local, "Command", { authorization: `Bearer ${token}` });

  await using chromium = await HeadlessChromium.launch();
  const page = await chromium.open(`${local}/?token=${token}`);
  assert.equal(new URL(page.url()).search, "", "the token leaves the address bar");
  await waitFor(async () => (await text(page, "#status")).includes("live"), "the page live");
  await using pane = await TmuxPane.start(["bash", "--norc", "--noprofile", "-i"]);
  const marker = `web-${crypto.randomUUID()}`;
  await pane.type(`echo ${marker}`);
  await waitFor(async () => (await rowWith(page, command, marker)) !== null, "the command", 5000);
  assert.deepEqual(chromium.errors, []);
  assert.equal(await run.stop(), 0);
  assert.ok(!run.stdout.includes(token), "the token is not in the output");
});

bpfTest("--web's bad input: one line and exit 2, before anything is probed", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (busy.addr as Deno.NetAddr).port;
  const cases: [string[], RegExp][] = [
    [
      ["--web", `127.0.0.1:${port}`],
      /^ecap: Cannot serve the live view on 127\.0\.0\.1:\d+: the address is in use \(choose another with --web ADDR:PORT\)\n$/,
    ],
    [["--web", "127.0.0.1:70000"], /^ecap: Invalid --web "127\.0\.0\.1:70000"/],
    [["--web-token", "abcdefgh"], /^ecap: --web-token and --web-history go with --web/],
    [["--web", "--web-history", "0"], /^ecap: Invalid --web-history "0"/],
    [["--web", "--web-token", "short"], /^ecap: Invalid --web-token/],
  ];
  try {
    for (const [args, message] of cases) {
      const run = await EcapRun.start(["bash", ...args], { wait: false });
      assert.equal(await run.wait(), 2, args.join(" "));
      assert.match(run.stderr, message);
    }
  } finally {
    busy.close();
  }
});
