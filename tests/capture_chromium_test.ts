/**
 * Chromium's own TLS: BoringSSL linked into a stripped binary, found by
 * lib/tls/boringssl_static.ts. Headless chromium fetches a page from nginx
 * on loopback, over HTTP/2 and over HTTP/1.1; ecap, probing chromium only,
 * reports each exchange with the request chromium wrote (a token in the
 * path) and the response it read (a token in the body) — both directions;
 * and with -k, keys with which tshark decrypts its own capture of both
 * sessions (TLS 1.3; HTTP/2 and HTTP/1.1).
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { TsharkCapture, tsharkFields } from "./_tshark.ts";
import { HeadlessChromium } from "./_browser.ts";

const CHROMIUM = "/usr/lib/chromium/chromium";

type Exchange = {
  kind: string;
  protocol: string;
  request: { path: string };
  response?: { status: number; body: string };
};

/** The exchange of the request for path, once its response is there. */
async function exchangeOf(run: EcapRun, path: string, what: string): Promise<Exchange> {
  const seen = () =>
    (run.json() as Exchange[]).find((e) => e.kind === "http" && e.request.path === path);
  await waitFor(() => seen()?.response !== undefined, what);
  return seen()!;
}

/** chromium --dump-dom of url: the page as it rendered (the body token in it). */
async function dumpDom(url: string, profile: string, flags: string[]): Promise<string> {
  const out = await new Deno.Command("/usr/bin/chromium", {
    args: [
      "--headless=new",
      "--no-sandbox", // root
      "--ignore-certificate-errors",
      "--no-first-run",
      "--disable-background-networking",
      `--user-data-dir=${profile}`,
      ...flags,
      "--dump-dom",
      url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

bpfTest(
  "chromium's statically linked, stripped BoringSSL: HTTP/2 and HTTP/1.1 both ways",
  async () => {
    const token = crypto.randomUUID().slice(0, 8), body = crypto.randomUUID();
    const profile = await Deno.makeTempDir({ prefix: "ecap-chromium-" });
    try {
      await using nginx = await Nginx.start({ [`${token}.html`]: `<p>${body}</p>\n` });
      await using run = await EcapRun.start(["tls", "--libssl", CHROMIUM, "--json"]);
      assert.match(run.stderr, /BoringSSL, linked statically/, run.stderr);
      for (
        const [protocol, flags] of [["HTTP/2", []], ["HTTP/1.1", ["--disable-http2"]]] as const
      ) {
        const path = `/${token}.html?${protocol === "HTTP/2" ? "h2" : "h1"}`;
        assert.match(await dumpDom(nginx.url(path), profile, [...flags]), new RegExp(body));
        const x = await exchangeOf(run, path, `the ${protocol} exchange`);
        assert.equal(x.protocol, protocol);
        assert.equal(x.response!.status, 200);
        assert.ok(JSON.stringify(x.response).includes(body), "the body chromium read");
      }
      assert.equal(await run.stop(), 0, run.stderr);
      assert.match(run.stderr, /ecap: \d+ events, 0 lost/);
    } finally {
      await Deno.remove(profile, { recursive: true });
    }
  },
);

bpfTest("chromium's keys (-k) decrypt tshark's own capture, HTTP/2 and HTTP/1.1", async () => {
  const token = crypto.randomUUID().slice(0, 8), body = crypto.randomUUID();
  const dir = await Deno.makeTempDir({ prefix: "ecap-chromium-keys-" });
  try {
    await using nginx = await Nginx.start({ [`${token}.html`]: `<p>${body}</p>\n` });
    const keys = `${dir}/keys.log`, wire = `${dir}/wire.pcapng`;
    await using run = await EcapRun.start(["tls", "--libssl", CHROMIUM, "-k", keys]);
    assert.match(run.stderr, /keys from ssl_log_secret/, run.stderr);
    await using cap = await TsharkCapture.start(wire, nginx.port);
    for (const [tag, flags] of [["h2", []], ["h1", ["--disable-http2"]]] as const) {
      assert.match(
        await dumpDom(nginx.url(`/${token}.html?${tag}`), `${dir}/profile`, [...flags]),
        new RegExp(body),
      );
    }
    await waitFor(
      async () =>
        (await Deno.readTextFile(keys).catch(() => "")).split("CLIENT_TRAFFIC_SECRET_0").length > 2,
      "both sessions' keys",
    );
    await new Promise((r) => setTimeout(r, 500)); // the last packets to tshark
    await cap.stop();
    assert.equal(await run.stop(), 0, run.stderr);
    const h2 = await tsharkFields(wire, "http2.headers.path", ["http2.headers.path"], keys);
    const h1 = await tsharkFields(wire, "http.request", ["http.request.uri"], keys);
    assert.ok(h2.some((p) => p.includes(`/${token}.html?h2`)), `HTTP/2 decrypted: ${h2}`);
    assert.ok(h1.some((p) => p.includes(`/${token}.html?h1`)), `HTTP/1.1 decrypted: ${h1}`);
    // the response too: the body token in a decrypted DATA frame or HTTP/1.1 body
    const data = await tsharkFields(wire, "http2.data.data || http.file_data", [
      "http2.data.data",
      "http.file_data",
    ], keys);
    const hex = [...new TextEncoder().encode(body)].map((b) => b.toString(16).padStart(2, "0"))
      .join("");
    assert.ok(
      data.some((d) => d.replaceAll(":", "").includes(hex) || d.includes(body)),
      "a response body decrypted",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("a chromium started after ecap tls (no --libssl) is found and captured", async () => {
  const token = crypto.randomUUID().slice(0, 8), body = crypto.randomUUID();
  const profile = await Deno.makeTempDir({ prefix: "ecap-chromium-follow-" });
  try {
    await using nginx = await Nginx.start({ [`${token}.html`]: `<p>${body}</p>\n` });
    await using run = await EcapRun.start(["tls", "--json", "--lib", "openssl"]);
    const path = `/${token}.html?followed`;
    assert.match(await dumpDom(nginx.url(path), profile, []), new RegExp(body));
    const x = await exchangeOf(run, path, "the exchange of the new chromium");
    assert.ok(JSON.stringify(x.response).includes(body));
    assert.equal(await run.stop(), 0, run.stderr);
  } finally {
    await Deno.remove(profile, { recursive: true });
  }
});

bpfTest("a chromium running before ecap tls (no --libssl) is found at start", async () => {
  const token = crypto.randomUUID().slice(0, 8), body = crypto.randomUUID();
  await using nginx = await Nginx.start({ [`${token}.html`]: `<p>${body}</p>\n` });
  await using browser = await HeadlessChromium.launch(["--ignore-certificate-errors"]);
  await using run = await EcapRun.start(["tls", "--json", "--lib", "openssl"]);
  assert.match(run.stderr, /chromium: BoringSSL, linked statically/, run.stderr);
  const path = `/${token}.html?running`;
  const page = await browser.open(nginx.url(path));
  assert.match(await page.content(), new RegExp(body));
  const x = await exchangeOf(run, path, "the exchange of the running chromium");
  assert.ok(JSON.stringify(x.response).includes(body));
  assert.equal(await run.stop(), 0, run.stderr);
});

bpfTest("chromium with -w: the pcapng carries packets and keys that decrypt them", async () => {
  const token = crypto.randomUUID().slice(0, 8);
  const dir = await Deno.makeTempDir({ prefix: "ecap-chromium-pcap-" });
  try {
    await using nginx = await Nginx.start({ [`${token}.html`]: "<p>pcap</p>\n" });
    const out = `${dir}/out.pcapng`;
    await using run = await EcapRun.start(
      ["tls", "--libssl", CHROMIUM, "-w", out, "-i", "lo", "tcp", "port", String(nginx.port)],
    );
    await dumpDom(nginx.url(`/${token}.html?pcap`), `${dir}/profile`, []);
    // stopping drains the ring and writes every packet held for its keys
    assert.equal(await run.stop(), 0, run.stderr);
    // tshark needs nothing but the file: the keys are in its Decryption Secrets Block
    const paths = await tsharkFields(out, "http2.headers.path", ["http2.headers.path"]);
    assert.ok(paths.some((p) => p.includes(`/${token}.html?pcap`)), `decrypted: ${paths}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
