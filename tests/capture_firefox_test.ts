/**
 * Firefox (ESR, headless) under the nss module: its NSS is bundled
 * (/usr/lib/firefox-esr), mapped after ecap started, so each test also
 * shows that the module follows it. Keys (-m keylog) decrypt tshark's own
 * capture of HTTP/2 and HTTP/1.1 sessions with nginx, TLS 1.3 and 1.2; -w writes a pcapng
 * tshark decrypts alone; plaintext keeps working. Tokens in the path and
 * in the response body say the bytes are the real ones, both ways.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { caSignedCert, Nginx } from "./_nginx.ts";
import { TsharkCapture, tsharkFields } from "./_tshark.ts";
import { firefoxLoad, firefoxProfile } from "./_firefox.ts";

function hexOf(text: string): string {
  return [...new TextEncoder().encode(text)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Decrypted HTTP/2 paths, HTTP/1.1 URIs and response bodies (hex for HTTP/2) of a pcapng. */
async function decrypted(file: string, keys?: string) {
  return {
    h2: await tsharkFields(file, "http2.headers.path", ["http2.headers.path"], keys),
    h1: await tsharkFields(file, "http.request", ["http.request.uri"], keys),
    bodies: (await tsharkFields(file, "http2.data.data || http.file_data", [
      "http2.data.data",
      "http.file_data",
    ], keys)).map((d) => d.replaceAll(":", "")),
  };
}

bpfTest(
  "firefox's keys (ecap nss -m keylog) decrypt tshark's own capture: HTTP/2, HTTP/1.1, TLS 1.2",
  async () => {
    const token = crypto.randomUUID().slice(0, 8), body = crypto.randomUUID();
    const dir = await Deno.makeTempDir({ prefix: "ecap-firefox-keys-" });
    try {
      await using nginx = await Nginx.start({ [`${token}.html`]: `<p>${body}</p>\n` }, "", {
        certificate: caSignedCert,
      });
      const keys = `${dir}/keys.log`, wire = `${dir}/wire.pcapng`;
      await using run = await EcapRun.start(["nss", "-m", "keylog", "-k", keys, "--debug"]);
      await using cap = await TsharkCapture.start(wire, nginx.port);
      const sessions = [
        { tag: "h2", http2: true, tls12: false },
        { tag: "h1", http2: false, tls12: false },
        { tag: "tls12", http2: true, tls12: true },
      ];
      for (const { tag, ...prefs } of sessions) {
        const profile = await firefoxProfile(`${dir}/${tag}`, `${nginx.dir}/ca.pem`, prefs);
        await firefoxLoad(nginx.url(`/${token}.html?${tag}`), profile);
      }
      await waitFor(async () => {
        const text = await Deno.readTextFile(keys).catch(() => "");
        return text.split("CLIENT_TRAFFIC_SECRET_0").length > 2 && text.includes("CLIENT_RANDOM");
      }, "the three sessions' keys");
      await new Promise((r) => setTimeout(r, 500)); // the last packets to tshark
      await cap.stop();
      assert.equal(await run.stop(), 0, run.stderr);
      // Firefox's own NSS, probed as Firefox mapped it
      assert.match(run.stderr, /attach \/usr\/lib\/firefox-esr\/libfreeblpriv3\.so .*firefox/);
      assert.match(run.stderr, /attach \/usr\/lib\/firefox-esr\/libnss3\.so .*firefox/);
      const d = await decrypted(wire, keys);
      assert.ok(d.h2.some((p) => p.includes(`/${token}.html?h2`)), `HTTP/2 decrypted: ${d.h2}`);
      assert.ok(d.h1.some((p) => p.includes(`/${token}.html?h1`)), `HTTP/1.1 decrypted: ${d.h1}`);
      assert.ok(d.h2.some((p) => p.includes(`/${token}.html?tls12`)), `TLS 1.2: ${d.h2}`);
      assert.ok(
        d.bodies.filter((b) => b.includes(hexOf(body)) || b.includes(body)).length >= 3,
        "the three responses' bodies decrypted",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest("firefox with ecap nss -w: the pcapng alone decrypts", async () => {
  const token = crypto.randomUUID().slice(0, 8);
  const dir = await Deno.makeTempDir({ prefix: "ecap-firefox-pcap-" });
  try {
    await using nginx = await Nginx.start({ [`${token}.html`]: "<p>pcap</p>\n" }, "", {
      certificate: caSignedCert,
    });
    const out = `${dir}/out.pcapng`;
    await using run = await EcapRun.start(
      ["nss", "-w", out, "-i", "lo", "tcp", "port", String(nginx.port)],
    );
    const profile = await firefoxProfile(dir, `${nginx.dir}/ca.pem`);
    await firefoxLoad(nginx.url(`/${token}.html?pcap`), profile);
    // stopping drains the ring and writes every packet held for its keys
    assert.equal(await run.stop(), 0, run.stderr);
    const { h2 } = await decrypted(out);
    assert.ok(h2.some((p) => p.includes(`/${token}.html?pcap`)), `decrypted: ${h2}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// Firefox peeks a byte of a connection (PR_Recv, PR_MSG_PEEK) to see whether it is alive: were
// that byte reported, the response stream would hold it twice and not parse (it failed 5 in 5).
bpfTest("firefox's plaintext (ecap nss): the exchange with its path and body", async () => {
  const token = crypto.randomUUID().slice(0, 8), body = crypto.randomUUID();
  const dir = await Deno.makeTempDir({ prefix: "ecap-firefox-text-" });
  try {
    await using nginx = await Nginx.start({ [`${token}.html`]: `<p>${body}</p>\n` }, "", {
      certificate: caSignedCert,
    });
    await using run = await EcapRun.start(["nss", "--json"]);
    const path = `/${token}.html?text`;
    const said = await firefoxLoad(
      nginx.url(path),
      await firefoxProfile(dir, `${nginx.dir}/ca.pem`),
    );
    type Exchange = {
      kind: string;
      protocol: string;
      request: { path: string } | null; // null: a response whose request was not seen
      response?: { status: number };
    };
    const seen = () =>
      (run.json() as Exchange[]).find((e) => e.kind === "http" && e.request?.path === path);
    await waitFor(() => !!seen()?.response, "firefox's exchange").catch((e) => {
      throw new Error(
        `${e.message}; ecap wrote ${run.stdout.slice(0, 2000)}; firefox said ${said}`,
      );
    });
    assert.equal(seen()!.protocol, "HTTP/2");
    assert.equal(seen()!.response!.status, 200);
    assert.ok(JSON.stringify(seen()!.response).includes(body), "the body firefox read");
    assert.equal(await run.stop(), 0, run.stderr);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
