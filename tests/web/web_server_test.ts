/**
 * The live view's server without a capture: events made here go in, and
 * what a browser would get is read back over HTTP (rows as Server-Sent
 * Events, details, HAR checked by har-validator, JSON lines), with the
 * view's refusals: writes, foreign host names, requests without the token.
 * @module
 */
import assert from "node:assert/strict";
// a dev dependency of this test alone: deno.json's imports stay empty for the product
// deno-lint-ignore no-import-prefix
import hv from "npm:har-validator@5.1.5";
import type { CaptureStats } from "../../lib/core/capture.ts";
import type { HttpExchange } from "../../lib/http/exchanges.ts";
import { tlsEventJSON } from "../../lib/tls/tls_format.ts";
import type { TlsFamilyEvent } from "../../lib/tls/tls_events.ts";
import { TLS_VIEW } from "../../lib/tls/tls_view.ts";
import { WebView } from "../../lib/web/web_server.ts";

const enc = new TextEncoder();
const STATS: CaptureStats = {
  records: 9,
  lostPerCpu: [0, 2],
  unfollowed: 0,
  lost: 2,
  truncated: 0,
  shed: 0,
  malformed: 0,
  events: 7,
  bytes: 1234,
};

function exchange(i: number, body: Uint8Array = enc.encode(`body ${i}\n`)): TlsFamilyEvent {
  const t = 1_764_000_000_000_000_000n + BigInt(i) * 1_000_000n;
  const x: HttpExchange = {
    kind: "http",
    protocol: "HTTP/1.1",
    client: { pid: 100 + i, comm: "curl" },
    server: { pid: 50, comm: "nginx" },
    clientAddr: { addr: "127.0.0.1", port: 40000 + i },
    serverAddr: { addr: "127.0.0.1", port: 8443 },
    request: {
      version: "HTTP/1.1",
      method: "GET",
      authority: "127.0.0.1:8443",
      path: `/item/${i}`,
      headers: [["host", "127.0.0.1:8443"]],
      body: new Uint8Array(0),
      bodySize: 0,
      bodyTruncated: false,
      incomplete: false,
    },
    response: {
      version: "HTTP/1.1",
      status: i % 2 ? 200 : 503,
      reason: i % 2 ? "OK" : "Service Unavailable",
      headers: [["content-type", "text/plain"]],
      body,
      bodySize: body.length,
      bodyTruncated: false,
      incomplete: false,
    },
    timings: { requestStart: t, requestEnd: t + 1000n, responseStart: t + 2_000_000n },
    incomplete: false,
  };
  return { ...x, module: "tls", timeNs: t, pid: 100 + i, tid: 100 + i, uid: 0, comm: "curl" };
}

function start(history = 100, address = { hostname: "127.0.0.1", port: 0 }, token?: string) {
  return WebView.start<TlsFamilyEvent>({
    module: "tls",
    version: "0.0.0-test",
    view: TLS_VIEW,
    toJSON: tlsEventJSON,
    stats: () => STATS,
  }, { address, history, token });
}

/** Reads Server-Sent Events until `until` says enough; returns them. */
async function readEvents(
  url: string,
  until: (events: { event: string; id?: string; data: string }[]) => boolean,
  headers: Record<string, string> = {},
) {
  const ac = new AbortController();
  const res = await fetch(url, { headers, signal: ac.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /^text\/event-stream/);
  const events: { event: string; id?: string; data: string }[] = [];
  const dec = new TextDecoder();
  let text = "";
  for await (const chunk of res.body!) {
    text += dec.decode(chunk, { stream: true });
    let end;
    while ((end = text.indexOf("\n\n")) >= 0) {
      const block = text.slice(0, end);
      text = text.slice(end + 2);
      const field = (n: string) =>
        block.split("\n").find((l) => l.startsWith(`${n}: `))?.slice(n.length + 2);
      if (field("event")) {
        events.push({ event: field("event")!, id: field("id"), data: field("data")! });
      }
    }
    if (until(events)) break;
  }
  ac.abort();
  return events;
}

const rowsOf = (events: { event: string; data: string }[]) =>
  events.filter((e) => e.event === "rows").flatMap((e) => JSON.parse(e.data) as unknown[][]);

Deno.test("web view: page, meta, rows as events from Last-Event-ID, detail, downloads", async () => {
  await using web = start();
  const base = web.url;
  const page = await fetch(base);
  assert.equal(page.status, 200);
  assert.match(page.headers.get("content-security-policy") ?? "", /default-src 'none'/);
  assert.match(await page.text(), /<script type="module" src="\/app\.js"><\/script>/);
  for (const asset of ["/app.js", "/app.css", "/table.js"]) {
    const r = await fetch(new URL(asset, base));
    assert.equal(r.status, 200, asset);
    await r.body?.cancel();
  }
  const meta = await (await fetch(new URL("/api/meta", base))).json();
  assert.equal(meta.module, "tls");
  assert.equal(meta.har, true);
  assert.deepEqual(meta.columns.map((c: { label: string }) => c.label).slice(0, 6), [
    "Client",
    "Server",
    "Method",
    "Host",
    "Path",
    "Status",
  ]);

  // a byte array that is a view into a bigger buffer (a ring batch) is copied out
  const batch = new Uint8Array(1 << 20);
  batch.set(enc.encode("from the batch\n"), 4096);
  web.add([exchange(1), exchange(2, batch.subarray(4096, 4096 + 15)), exchange(3)]);
  const kept = web.history.get(2)!.event as HttpExchange;
  assert.notEqual(kept.response!.body.buffer, batch.buffer, "the batch is not kept alive");
  batch.fill(0); // the ring's next records
  assert.equal(new TextDecoder().decode(kept.response!.body), "from the batch\n");

  const first = await readEvents(new URL("/api/events", base).href, (ev) => rowsOf(ev).length >= 3);
  const rows = rowsOf(first);
  assert.deepEqual(rows.map((r) => [r[0], r[2], r[3], r[7], r[8]]), [
    [1, 101, "curl[101]", "/item/1", 200],
    [2, 102, "curl[102]", "/item/2", 503],
    [3, 103, "curl[103]", "/item/3", 200],
  ]);
  assert.equal(first.find((e) => e.event === "rows")!.id, "3");

  // reconnecting with the last id it had, a page gets only what came since
  const later = readEvents(
    new URL("/api/events", base).href,
    // the counters: once on connecting, then every second
    (ev) =>
      rowsOf(ev).length >= 1 && ev.some((e) => e.event === "stats" && /"kept":4/.test(e.data)),
    { "last-event-id": "3" },
  );
  await new Promise((r) => setTimeout(r, 50));
  web.add([exchange(4)]);
  const next = await later;
  assert.deepEqual(rowsOf(next).map((r) => r[0]), [4]);
  const stats = JSON.parse(next.findLast((e) => e.event === "stats")!.data);
  assert.equal(stats.lost, 2);
  assert.equal(stats.kept, 4);

  const detail = await (await fetch(new URL("/api/entry/2", base))).json();
  assert.equal(detail.kind, "http");
  assert.equal(detail.json.response.body, "from the batch\n");
  assert.equal((await fetch(new URL("/api/entry/99", base))).status, 404);

  const har = await fetch(new URL("/api/har", base));
  assert.match(har.headers.get("content-disposition") ?? "", /attachment; filename="ecap-tls-/);
  const doc = await har.json();
  assert.equal(doc.log.entries.length, 4);
  await hv.har(doc); // throws on what HAR 1.2 does not allow
  const lines = (await (await fetch(new URL("/api/jsonl", base))).text()).trim().split("\n");
  assert.deepEqual(lines.map((l) => JSON.parse(l).request.path), [
    "/item/1",
    "/item/2",
    "/item/3",
    "/item/4",
  ]);
});

Deno.test("web view: the oldest rows go past --web-history, and are counted", async () => {
  await using web = start(5);
  web.add(Array.from({ length: 12 }, (_, i) => exchange(i + 1)));
  assert.equal(web.history.kept, 5);
  assert.equal(web.history.dropped, 7);
  assert.equal((await fetch(new URL("/api/entry/7", web.url))).status, 404);
  assert.equal((await fetch(new URL("/api/entry/8", web.url))).status, 200);
  const ev = await readEvents(new URL("/api/events", web.url).href, (e) => rowsOf(e).length >= 5);
  assert.deepEqual(rowsOf(ev).map((r) => r[0]), [8, 9, 10, 11, 12]);
});

Deno.test("web view: reads only, and only for loopback names", async () => {
  await using web = start();
  const post = await fetch(web.url, { method: "POST", body: "x" });
  assert.equal(post.status, 405);
  await post.body?.cancel();
  // a site that rebinds its own name to 127.0.0.1 names itself in Host
  const port = Number(new URL(web.url).port);
  assert.match(await rawGet(port, "evil.example"), /^HTTP\/1\.1 403/);
  assert.match(await rawGet(port, "localhost"), /^HTTP\/1\.1 200/);
});

Deno.test("web view: beyond loopback, every request needs the token", async () => {
  await using web = start(100, { hostname: "0.0.0.0", port: 0 });
  const url = new URL(web.url);
  const token = url.searchParams.get("token")!;
  assert.match(token, /^[\w-]{22}$/, "a random token of 128 bits");
  const at = (path: string) => `http://127.0.0.1:${url.port}${path}`;
  for (const path of ["/", "/api/meta", "/api/events", "/api/har", "/app.js"]) {
    const r = await fetch(at(path));
    assert.equal(r.status, 401, `${path} from loopback, without the token`);
    await r.body?.cancel();
  }
  const wrong = await fetch(at(`/?token=${token.slice(1)}x`), { redirect: "manual" });
  assert.equal(wrong.status, 401);
  await wrong.body?.cancel();
  const bearer = await fetch(at("/api/meta"), { headers: { authorization: `Bearer ${token}` } });
  assert.equal(bearer.status, 200);
  await bearer.body?.cancel();
  // the printed address: the token becomes a cookie only this page sends
  const login = await fetch(at(`/?token=${token}`), { redirect: "manual" });
  assert.equal(login.status, 303);
  assert.equal(login.headers.get("location"), "/");
  const cookie = login.headers.get("set-cookie")!;
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  const page = await fetch(at("/"), { headers: { cookie: cookie.split(";")[0] } });
  assert.equal(page.status, 200);
  await page.body?.cancel();
});

/** A GET of /api/meta naming `host` in its Host header; returns the response's head. */
async function rawGet(port: number, host: string): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(
    enc.encode(`GET /api/meta HTTP/1.1\r\nHost: ${host}:${port}\r\nConnection: close\r\n\r\n`),
  );
  const bytes = new Uint8Array(await new Response(conn.readable).arrayBuffer());
  return new TextDecoder().decode(bytes);
}
