/**
 * `ecap tls` with no library named: every TLS library family at once, in
 * one stream. Clients of each family (curl and python3 on OpenSSL,
 * gnutls-cli on GnuTLS, tstclnt on NSS, a Go client started after ecap)
 * talk to nginx (OpenSSL) on loopback in one run.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { programs, runClient } from "./_go.ts";
import { httpRequestUris, stopAfterHandshakes, TsharkCapture } from "./_tshark.ts";

type Exchange = {
  kind: string;
  module: string;
  client: { comm?: string } | null;
  server: { comm?: string } | null;
  request: { method?: string; path?: string } | null;
  response: { status?: number; body: unknown } | null;
};

/** Runs argv with the request in a file on stdin (gnutls-cli) or named (tstclnt). */
async function run(argv: string[], stdinFile?: string) {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    stdin: stdinFile ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (stdinFile) {
    const w = child.stdin.getWriter();
    await w.write(await Deno.readFile(stdinFile));
    await w.close();
  }
  const out = await child.output();
  const d = new TextDecoder();
  assert.equal(out.code, 0, `${argv[0]}: ${d.decode(out.stderr)}`);
  return d.decode(out.stdout);
}

/** Links of process pid attached to the sys_enter raw tracepoint (its fdinfo). */
async function sysEnterLinks(pid: number): Promise<number> {
  let n = 0;
  for await (const fd of Deno.readDir(`/proc/${pid}/fdinfo`)) {
    const info = await Deno.readTextFile(`/proc/${pid}/fdinfo/${fd.name}`).catch(() => "");
    if (/^link_type:\s*raw_tracepoint$/m.test(info) && /^tp_name:\s*sys_enter$/m.test(info)) n++;
  }
  return n;
}

async function requestFile(nginx: Nginx, path: string): Promise<string> {
  const file = `${nginx.dir}/req-${crypto.randomUUID()}.txt`;
  await Deno.writeTextFile(
    file,
    `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`,
  );
  return file;
}

bpfTest(
  "ecap tls captures OpenSSL, GnuTLS, NSS and Go clients in one run, as exchanges",
  async () => {
    const go = await programs();
    const body = `every library ${crypto.randomUUID()}\n`;
    await using nginx = await Nginx.start({ "all.txt": body });
    await using ecap = await EcapRun.start(["tls", "--json"]);
    for (const family of ["OpenSSL/BoringSSL", "GnuTLS", "NSS", "Go crypto/tls"]) {
      assert.match(ecap.stderr, new RegExp(`capturing tls \\(.*${family}: \\d+ probes`));
    }
    // one program on sys_enter, not one per family: each runs on every syscall
    // of every process (lib/core/sys_enter_chain.ts); the others are chained
    assert.equal(await sysEnterLinks(ecap.pid), 1, "raw_tracepoint links on sys_enter");
    const t = crypto.randomUUID();
    const path = (who: string) => `/all.txt?${who}=${t}`;
    assert.equal(await run(["curl", "-sk", "--http1.1", nginx.url(path("curl"))]), body);
    await run([
      "/usr/bin/python3",
      "-c",
      `import ssl, urllib.request
urllib.request.urlopen("${
        nginx.url(path("python"))
      }", context=ssl._create_unverified_context()).read()`,
    ]);
    await run(
      ["gnutls-cli", "--insecure", "-p", String(nginx.port), "127.0.0.1"],
      await requestFile(nginx, path("gnutls")),
    );
    await run([
      "tstclnt",
      "-h",
      "127.0.0.1",
      "-p",
      String(nginx.port),
      "-D",
      "-o",
      "-A",
      await requestFile(nginx, path("nss")),
    ]);
    // a Go program no capture has seen, started after ecap: followed at exec
    const goClient = await runClient(go.client, [nginx.url(path("go"))]);
    assert.match(goClient.stdout, /^200 /);
    const clients = [
      ["curl", "curl", "tls"],
      ["python", "python3", "tls"],
      ["gnutls", "gnutls-cli", "gnutls"],
      ["nss", "tstclnt", "nss"],
      ["go", "gotls-client", "gotls"],
    ];
    const exchanges = () => (ecap.json() as unknown as Exchange[]).filter((e) => e.kind === "http");
    await waitFor(
      () => clients.every(([who]) => exchanges().some((x) => x.request?.path === path(who))),
      "an exchange from every client",
    );
    assert.equal(await ecap.stop(), 0);
    for (const [who, comm] of clients) {
      const mine = exchanges().filter((x) => x.request?.path === path(who));
      assert.equal(
        mine.length,
        1,
        `${who}: one exchange, both ends in it: ${JSON.stringify(mine)}`,
      );
      const x = mine[0];
      assert.equal(x.request?.method, "GET");
      assert.equal(x.response?.status, 200);
      assert.equal(x.response?.body, body, who);
      assert.match(x.client?.comm ?? "", new RegExp(`^${comm}`), who); // python's is python3.11 or so
      assert.equal(x.server?.comm, "nginx", who);
    }
    assert.match(ecap.stderr, /ecap: \d+ events, 0 lost/);
  },
);

bpfTest("ecap tls -m keylog writes the keys of GnuTLS and Go clients into one file", async () => {
  const go = await programs();
  await using nginx = await Nginx.start({ "k.txt": "keys of two libraries\n" });
  const dir = await Deno.makeTempDir({ prefix: "ecap-allkeys-" });
  try {
    const keys = `${dir}/keys.log`;
    // nginx (OpenSSL) is left out: the keys must come from the clients
    await using ecap = await EcapRun.start([
      "tls",
      "--lib",
      "gnutls,go",
      "-m",
      "keylog",
      "-k",
      keys,
    ]);
    await using cap = await TsharkCapture.start(`${dir}/cap.pcapng`, nginx.port);
    await run(
      ["gnutls-cli", "--insecure", "-p", String(nginx.port), "127.0.0.1"],
      await requestFile(nginx, "/k.txt?gnutls"),
    );
    await runClient(go.client, [nginx.url("/k.txt?go")]);
    await stopAfterHandshakes(keys, cap, 2);
    assert.equal(await ecap.stop(), 0);
    assert.match(ecap.stderr, /2 handshakes/);
    const uris = await httpRequestUris(`${dir}/cap.pcapng`, keys);
    assert.deepEqual(uris.sort(), ["/k.txt?gnutls", "/k.txt?go"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap tls names a family with nothing to probe and captures the others", async () => {
  await using nginx = await Nginx.start({ "n.txt": "the others\n" });
  await using ecap = await EcapRun.start([
    "tls",
    "--json",
    "--lib",
    "openssl,gnutls",
    "--gnutls",
    "/nonexistent/libgnutls.so.30",
  ]);
  assert.match(ecap.stderr, /ecap: GnuTLS: nothing to probe \(.*\/nonexistent\/libgnutls\.so\.30/);
  const t = crypto.randomUUID();
  await run(["curl", "-sk", "--http1.1", nginx.url(`/n.txt?${t}`)]);
  await waitFor(
    () => (ecap.json() as unknown as Exchange[]).some((x) => x.request?.path === `/n.txt?${t}`),
    "curl's exchange",
  );
  assert.equal(await ecap.stop(), 0);
});

bpfTest("ecap tls --lib with an unknown family is one line and exit 2", async () => {
  const r = await sh(Deno.execPath(), [
    "run",
    "-A",
    new URL("../cli.ts", import.meta.url).pathname,
    "tls",
    "--lib",
    "openssl,wolfssl",
  ]);
  assert.equal(r.code, 2);
  assert.equal(
    r.stderr,
    'ecap: Unknown --lib "wolfssl" (libraries: openssl, gnutls, nss, go)\n',
  );
});
