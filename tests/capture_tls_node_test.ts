/**
 * ecap tls against node's own HTTP clients (fetch/undici, https, http2),
 * which run JavaScript from inside OpenSSL calls: undici writes the next
 * request from a callback that runs while SSL_read is still on the stack.
 * Every byte both ways must be captured, and anything not followed counted.
 * @module
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";

type Json = {
  pid: number;
  comm: string;
  kind: string;
  direction: "read" | "write";
  conn: string;
  data: string;
  gap: boolean;
  incomplete: boolean;
};

const NODE = "/usr/bin/node";

function bytesOf(e: Json): Uint8Array {
  return Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0));
}

/** Each connection's bytes in one direction, as sha256 digests, sorted. */
function streams(events: Json[], pid: number, direction: "read" | "write"): string[] {
  const byConn = new Map<string, Uint8Array[]>();
  for (const e of events) {
    if (e.kind !== "data" || e.pid !== pid || e.direction !== direction) continue;
    byConn.set(e.conn, [...byConn.get(e.conn) ?? [], bytesOf(e)]);
  }
  return [...byConn.values()].map((parts) => {
    const h = createHash("sha256");
    for (const p of parts) h.update(p);
    return h.digest("hex");
  }).sort();
}

function text(events: Json[], pid: number, direction: "read" | "write"): string {
  const d = new TextDecoder();
  return events.filter((e) => e.kind === "data" && e.pid === pid && e.direction === direction)
    .map((e) => d.decode(bytesOf(e))).join("");
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

/** Runs a node script (argv: port, then args); returns its pid and stdout. */
async function node(script: string, args: string[]) {
  const out = await new Deno.Command(NODE, {
    args: ["-e", script, ...args],
    env: { NODE_TLS_REJECT_UNAUTHORIZED: "0", NODE_NO_WARNINGS: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, `node failed: ${new TextDecoder().decode(out.stderr)}`);
  const [pidLine, ...rest] = stdout.split("\n");
  return { pid: Number(pidLine), stdout: rest.join("\n") };
}

// Each client prints its pid first, then each response body; requests carry
// their token in the path: /body.txt?<token>-<i>.
const FETCH = `
const [port, n, token] = process.argv.slice(1);
console.log(process.pid);
for (let i = 0; i < Number(n); i++) {
  const r = await fetch(\`https://127.0.0.1:\${port}/body.txt?\${token}-\${i}\`);
  process.stdout.write(await r.text());
}`;

const HTTPS = `
const https = require("https");
const [port, n, token] = process.argv.slice(1);
console.log(process.pid);
const agent = new https.Agent({ keepAlive: true, maxSockets: 1 });
(async () => {
  for (let i = 0; i < Number(n); i++) {
    await new Promise((resolve, reject) => {
      https.get({ host: "127.0.0.1", port, path: \`/body.txt?\${token}-\${i}\`, agent,
        rejectUnauthorized: false }, (res) => {
        res.on("data", (d) => process.stdout.write(d));
        res.on("end", resolve);
      }).on("error", reject);
    });
  }
  agent.destroy();
})();`;

const HTTP2 = `
const http2 = require("http2");
const [port, n, token] = process.argv.slice(1);
console.log(process.pid);
const session = http2.connect(\`https://127.0.0.1:\${port}\`, { rejectUnauthorized: false });
(async () => {
  for (let i = 0; i < Number(n); i++) {
    await new Promise((resolve, reject) => {
      const req = session.request({ ":path": \`/body.txt?\${token}-\${i}\` });
      req.on("data", (d) => process.stdout.write(d));
      req.on("end", resolve);
      req.on("error", reject);
      req.end();
    });
  }
  session.close();
})();`;

interface Client {
  name: string;
  script: string;
  requests: number;
  /** HTTP/2: request lines are HPACK-coded, the path is checked in the decoded view. */
  http2?: boolean;
}

const CLIENTS: Client[] = [
  { name: "fetch() x4", script: FETCH, requests: 4 },
  { name: "fetch() x20", script: FETCH, requests: 20 },
  { name: "https.get x4 (keep-alive)", script: HTTPS, requests: 4 },
  { name: "http2 x4 (one session)", script: HTTP2, requests: 4, http2: true },
];

for (const client of CLIENTS) {
  bpfTest(`ecap tls captures node's ${client.name} byte-exact both ways, 0 lost`, async () => {
    const body = `node body ${crypto.randomUUID()}\n`;
    await using nginx = await Nginx.start({ "body.txt": body });
    await using run = await EcapRun.start(["tls", "--calls", "--json"]);
    const token = crypto.randomUUID();
    const r = await node(client.script, [String(nginx.port), String(client.requests), token]);
    assert.equal(r.stdout, body.repeat(client.requests), "what node received");

    // the server's side is the independent record of what node sent
    const events = () => run.json() as Json[];
    await waitFor(
      () =>
        count(text(events(), nginx.workerPid(), "write"), body) === client.requests &&
        count(text(events(), r.pid, "read"), body) === client.requests,
      `${client.requests} responses seen from both ends`,
    );
    assert.equal(await run.stop(), 0);
    const all = events();
    const serverPid = nginx.workerPid();
    const sent = text(all, r.pid, "write");
    if (!client.http2) {
      for (let i = 0; i < client.requests; i++) {
        assert.equal(
          count(sent, `GET /body.txt?${token}-${i} `),
          1,
          `request ${i} in node's writes`,
        );
      }
    }
    assert.deepEqual(
      streams(all, r.pid, "write"),
      streams(all, serverPid, "read"),
      "node -> nginx",
    );
    assert.deepEqual(
      streams(all, serverPid, "write"),
      streams(all, r.pid, "read"),
      "nginx -> node",
    );
    assert.ok(all.every((e) => e.kind !== "data" || (!e.gap && !e.incomplete)));
    const stats = run.stats()!;
    assert.equal(stats.lost, 0, JSON.stringify(stats));
    assert.equal(stats.unfollowed, 0, JSON.stringify(stats));
  });
}

bpfTest("ecap tls: node's http2 paths are decoded from the captured HPACK", async () => {
  await using nginx = await Nginx.start({ "body.txt": "h2\n" });
  await using run = await EcapRun.start(["tls", "--calls"]);
  const token = crypto.randomUUID();
  await node(HTTP2, [String(nginx.port), "3", token]);
  for (let i = 0; i < 3; i++) {
    await waitFor(() => run.stdout.includes(`/body.txt?${token}-${i}`), `request ${i} decoded`);
  }
  assert.equal(await run.stop(), 0);
  assert.match(run.stderr, /ecap: \d+ events, 0 lost/);
});
