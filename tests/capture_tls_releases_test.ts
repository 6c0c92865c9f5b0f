/**
 * ecap tls against OpenSSL releases other than the system's 3.0: Debian's
 * 1.1.1 (bullseye) and 3.5 (trixie, with its own glibc and loader), which
 * scripts/bootstrap.sh --test unpacks. A small C client linked to each talks
 * to nginx; plaintext is captured and tshark decrypts the pcapng.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, sh } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import {
  clientRandoms,
  httpRequestUris,
  pcapArgs,
  stopAfterKeys,
  TsharkCapture,
  tsharkFields,
} from "./_tshark.ts";

const HOME = Deno.env.get("HOME") ?? "/root";
const RELEASES = Deno.env.get("ECAP_OPENSSL_RELEASES") ?? `${HOME}/.cache/ecap/openssl-releases-v1`;
const CLIENT_C = new URL("./fixtures/tls_client.c", import.meta.url).pathname;

interface Release {
  name: string;
  /** What ecap says of the library in -m pcap. */
  version: RegExp;
  /** ecap has its struct offsets: keys are captured. */
  keys: boolean;
  /** The key log file's lines are checked too, against a capture of tshark's own. */
  keylogLines?: string[];
  /** -I for the client's build. */
  include?: string;
  libdir: string;
  ssl: string;
  crypto: string;
  /** argv prefix that runs a program with this release (its own loader for 3.5). */
  run: (client: string) => string[];
}

const LIB = "usr/lib/x86_64-linux-gnu";
const RELEASE_LIST: Release[] = [
  {
    name: "1.1.1",
    version: /OpenSSL 1\.1\.1\w*; keys from the 1\.1\.1 layout/,
    keys: true,
    libdir: `${RELEASES}/1.1.1/${LIB}`,
    ssl: "libssl.so.1.1",
    crypto: "libcrypto.so.1.1",
    run: (client) => [client],
  },
  {
    name: "3.5",
    version: /OpenSSL 3\.5\.\d+; keys from the 3\.5 layout/,
    keys: true,
    libdir: `${RELEASES}/3.5/${LIB}`,
    ssl: "libssl.so.3",
    crypto: "libcrypto.so.3",
    run: (client) => [
      `${RELEASES}/3.5/${LIB}/ld-linux-x86-64.so.2`,
      "--library-path",
      `${RELEASES}/3.5/${LIB}`,
      client,
    ],
  },
  {
    // Debian's android-libboringssl: keys for its build (lib/tls/boringssl_offsets.json)
    name: "BoringSSL",
    version:
      /libssl\.so\.0: BoringSSL; keys from the layout of Debian bookworm's 13\.0\.0\+r24-2 build/,
    keys: true,
    keylogLines: [
      "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
      "CLIENT_RANDOM",
      "CLIENT_TRAFFIC_SECRET_0",
      "EXPORTER_SECRET",
      "SERVER_HANDSHAKE_TRAFFIC_SECRET",
      "SERVER_TRAFFIC_SECRET_0",
    ],
    include: "/usr/include/android",
    libdir: "/usr/lib/x86_64-linux-gnu/android",
    ssl: "libssl.so.0",
    crypto: "libcrypto.so.0",
    run: (client) => [client],
  },
];

async function buildClient(dir: string, r: Release): Promise<string> {
  const out = `${dir}/client-${r.name}`;
  const cc = await sh("gcc", [
    "-O1",
    ...(r.include ? [`-I${r.include}`] : []),
    "-o",
    out,
    CLIENT_C,
    `-L${r.libdir}`,
    `-l:${r.ssl}`,
    `-l:${r.crypto}`,
    "-Wl,--allow-shlib-undefined", // 3.5 needs trixie's glibc symbols, found at run time
    "-Wl,--disable-new-dtags",
    `-Wl,-rpath,${r.libdir}`,
  ]);
  assert.equal(cc.code, 0, cc.stderr);
  return out;
}

for (const r of RELEASE_LIST) {
  bpfTest(`ecap tls captures plaintext${r.keys ? " and keys" : ""} of ${r.name}`, async () => {
    await Deno.stat(`${r.libdir}/${r.ssl}`).catch(() => {
      throw new Error(`${r.libdir}/${r.ssl} is missing: run scripts/bootstrap.sh --test`);
    });
    const dir = await Deno.makeTempDir({ prefix: `ecap-ssl-${r.name}-` });
    try {
      const client = await buildClient(dir, r);
      await using nginx = await Nginx.start({ "r.txt": `release ${r.name}\n` });
      const lib = `${r.libdir}/${r.ssl}`;
      const get = async (path: string, version: string) => {
        const [cmd, ...args] = r.run(client);
        const out = await sh(cmd, [...args, String(nginx.port), path, version]);
        assert.equal(out.code, 0, out.stderr);
        assert.match(out.stdout, new RegExp(`release ${r.name}`));
      };

      // plaintext, text model
      {
        await using run = await EcapRun.start(["tls", "--calls", "--json", "--libssl", lib]);
        await get("/r.txt?plain", "13");
        assert.equal(await run.stop(), 0);
        const text = run.json().map((e) => atob(e.data as string)).join("");
        assert.ok(text.includes("GET /r.txt?plain HTTP/1.1"), text);
        assert.ok(text.includes(`release ${r.name}`));
      }
      // keys: tshark decrypts TLS 1.3 and 1.2
      if (!r.keys) {
        await using run = await EcapRun.start([
          "tls",
          "-m",
          "keylog",
          "-k",
          `${dir}/k.log`,
          "--libssl",
          lib,
        ]);
        assert.match(run.stderr, r.version);
        assert.equal(await run.stop(), 0);
      } else {
        const out = `${dir}/out.pcapng`;
        await using run = await EcapRun.start(
          pcapArgs("tls", out, "--libssl", lib, "port", String(nginx.port)),
        );
        assert.match(run.stderr, r.version);
        await get("/r.txt?v13", "13");
        await get("/r.txt?v12", "12");
        await new Promise((res) => setTimeout(res, 700));
        assert.equal(await run.stop(), 0);
        const uris = await httpRequestUris(out);
        assert.deepEqual(uris.sort(), ["/r.txt?v12", "/r.txt?v13"]);
      }
      // the key log file: its client randoms are the ClientHellos', and its
      // lines alone decrypt the requests and responses
      if (r.keylogLines) {
        const keys = `${dir}/keys.log`, cap = `${dir}/cap.pcapng`;
        await using run = await EcapRun.start([
          "tls",
          "--calls",
          "-m",
          "keylog",
          "-k",
          keys,
          "--libssl",
          lib,
        ]);
        await using dumper = await TsharkCapture.start(cap, nginx.port);
        await get("/r.txt?k13", "13");
        await get("/r.txt?k12", "12");
        await stopAfterKeys(keys, dumper);
        assert.equal(await run.stop(), 0);
        const lines = (await Deno.readTextFile(keys)).trim().split("\n");
        assert.deepEqual(lines.map((l) => l.split(" ")[0]).sort(), r.keylogLines);
        assert.match(run.stderr, /2 handshakes, 6 key log lines written/);
        const randoms = await clientRandoms(cap);
        assert.equal(randoms.length, 2);
        assert.deepEqual(new Set(lines.map((l) => l.split(" ")[1])), new Set(randoms));
        const requests = (await httpRequestUris(cap, keys)).sort();
        assert.deepEqual(requests, ["/r.txt?k12", "/r.txt?k13"]);
        // the 200 responses' bodies, as the "http" packets with code 200 were
        const responses = await tsharkFields(
          cap,
          "http.response.code == 200",
          ["http.file_data"],
          keys,
        );
        assert.equal(responses.length, 2, JSON.stringify(responses));
        for (const body of responses) {
          // tshark prints the body as text or as hex, by version
          const text = /^[0-9a-f]+$/.test(body)
            ? new TextDecoder().decode(Uint8Array.from(body.match(/../g)!, (h) => parseInt(h, 16)))
            : body;
          assert.match(text, new RegExp(`release ${r.name}`));
        }
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}
