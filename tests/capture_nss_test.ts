/**
 * The nss module against NSS's tstclnt and nginx on loopback: plaintext of
 * the TLS socket both ways, and nothing of the other descriptors NSPR
 * serves (tstclnt reads its request file and writes the response to stdout
 * through NSPR too); with -m keylog, TLS 1.2 and 1.3 keys that decrypt
 * tshark's own capture.
 * @module
 */
import assert from "node:assert/strict";
import { bpfTest, EcapRun, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import { clientRandoms, httpRequestUris, httpResponseBodies, TsharkCapture } from "./_tshark.ts";

type Json = Record<string, unknown> & {
  pid: number;
  kind: string;
  direction: "read" | "write";
  fd: number;
  data: string;
  remote: { addr: string; port: number } | null;
};

const SYSTEM_NSPR = "/usr/lib/x86_64-linux-gnu/libnspr4.so";

function textOf(e: Json): string {
  return new TextDecoder().decode(Uint8Array.from(atob(e.data), (c) => c.charCodeAt(0)));
}

/** Runs tstclnt with its request in a FILE (with a pipe it spins once the server closes). */
async function tstclnt(
  nginx: Nginx,
  path: string,
  version: string,
  env: Record<string, string> = {},
): Promise<{ pid: number; request: string; stdout: string }> {
  const request = `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`;
  const file = `${nginx.dir}/req-${crypto.randomUUID()}.txt`;
  await Deno.writeTextFile(file, request);
  const child = new Deno.Command("tstclnt", {
    args: ["-h", "127.0.0.1", "-p", String(nginx.port), "-D", "-o", "-V", version, "-A", file],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env,
  }).spawn();
  const out = await child.output();
  assert.equal(out.code, 0, `tstclnt: ${new TextDecoder().decode(out.stderr)}`);
  return { pid: child.pid, request, stdout: new TextDecoder().decode(out.stdout) };
}

bpfTest(
  "ecap nss captures tstclnt's TLS 1.2 and 1.3 plaintext, and no other descriptor",
  async () => {
    const page = "hello from nginx to NSS\n";
    await using nginx = await Nginx.start({ "index.html": page });
    await using run = await EcapRun.start(["nss", "--calls", "--json"]);
    assert.match(run.stderr, /libnspr4\.so: NSPR 4\.\d+, NSS SSL sockets only; -m keylog for keys/);
    const clients = [
      await tstclnt(nginx, `/index.html?v12-${crypto.randomUUID()}`, "tls1.2:tls1.2"),
      await tstclnt(nginx, `/index.html?v13-${crypto.randomUUID()}`, "tls1.3:tls1.3"),
    ];
    await waitFor(
      () =>
        clients.every((c) =>
          (run.json() as Json[]).some((e) =>
            e.pid === c.pid && e.direction === "read" && textOf(e).includes(page)
          )
        ),
      "both responses",
    );
    assert.equal(await run.stop(), 0);
    const events = run.json() as Json[];
    for (const c of clients) {
      assert.ok(c.stdout.includes(page), "tstclnt printed the page");
      const mine = events.filter((e) => e.pid === c.pid);
      // the request once (not also as read from its file), the response once
      // (not also as written to stdout)
      const writes = mine.filter((e) => e.direction === "write").map(textOf).join("");
      assert.equal(writes, c.request);
      const reads = mine.filter((e) => e.direction === "read").map(textOf).join("");
      assert.match(reads, /^HTTP\/1\.1 200 OK\r\n/);
      assert.ok(reads.endsWith(`\r\n\r\n${page}`), reads);
      assert.equal(reads.split("HTTP/1.1 200").length, 2);
      // every event is the TLS socket's
      assert.deepEqual(new Set(mine.map((e) => e.fd)).size, 1);
      for (const e of mine) assert.deepEqual(e.remote, { addr: "127.0.0.1", port: nginx.port });
    }
  },
);

bpfTest("ecap nss follows a libnspr4 copy a process maps after it started", async () => {
  const dir = await Deno.makeTempDir({ prefix: "ecap-nss-" });
  try {
    await Deno.copyFile(SYSTEM_NSPR, `${dir}/libnspr4.so`);
    await using nginx = await Nginx.start({ "f.txt": "followed by nss\n" });
    await using run = await EcapRun.start(["nss", "--calls", "--json", "--debug"]);
    const c = await tstclnt(nginx, "/f.txt", "tls1.3:tls1.3", { LD_LIBRARY_PATH: dir });
    await waitFor(
      () =>
        (run.json() as Json[]).some((e) =>
          e.pid === c.pid && e.direction === "read" && textOf(e).includes("followed by nss")
        ),
      "the response of the process using the copy",
    );
    assert.equal(await run.stop(), 0);
    assert.match(
      run.stderr,
      new RegExp(
        `attach \\S*${dir}/libnspr4\\.so \\(inode \\d+, NSPR [\\d.]+.*\\) for tstclnt\\[${c.pid}\\]`,
      ),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest(
  "ecap nss -m keylog: tstclnt's TLS 1.2 and 1.3 keys decrypt tshark's own capture",
  async () => {
    const token = crypto.randomUUID();
    // tshark would show a newline as \\n
    await using nginx = await Nginx.start({ "k.txt": `keys ${token}` });
    const keys = `${nginx.dir}/keys.log`, wire = `${nginx.dir}/wire.pcapng`;
    await using run = await EcapRun.start(["nss", "-m", "keylog", "-k", keys]);
    assert.match(run.stderr, /libnss3\.so: NSS 3\.\d+.*: the client random of each handshake/);
    assert.match(run.stderr, /libfreeblpriv3\.so: freebl: the secrets, HMAC_Update at 0x/);
    await using cap = await TsharkCapture.start(wire, nginx.port);
    await tstclnt(nginx, `/k.txt?v12-${token}`, "tls1.2:tls1.2");
    await tstclnt(nginx, `/k.txt?v13-${token}`, "tls1.3:tls1.3");
    await waitFor(
      async () =>
        (await Deno.readTextFile(keys).catch(() => "")).includes("SERVER_TRAFFIC_SECRET_0"),
      "the sessions' keys",
    );
    await new Promise((r) => setTimeout(r, 300)); // the last packets to tshark
    await cap.stop();
    assert.equal(await run.stop(), 0, run.stderr);
    // TLS 1.2: the master secret; TLS 1.3: five secrets; each under its ClientHello's random
    const lines = (await Deno.readTextFile(keys)).trim().split("\n").map((l) => l.split(" "));
    const randoms = await clientRandoms(wire);
    assert.equal(randoms.length, 2);
    const labelsOf = (random: string) =>
      lines.filter((l) => l[1] === random).map((l) => l[0]).sort();
    assert.deepEqual(labelsOf(randoms[0]), ["CLIENT_RANDOM"]);
    assert.deepEqual(labelsOf(randoms[1]), [
      "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
      "CLIENT_TRAFFIC_SECRET_0",
      "EXPORTER_SECRET",
      "SERVER_HANDSHAKE_TRAFFIC_SECRET",
      "SERVER_TRAFFIC_SECRET_0",
    ]);
    assert.equal(lines.length, 6, lines.join("\n"));
    assert.deepEqual(await httpRequestUris(wire, keys), [
      `/k.txt?v12-${token}`,
      `/k.txt?v13-${token}`,
    ]);
    assert.deepEqual(await httpResponseBodies(wire, keys), [`keys ${token}`, `keys ${token}`]);
  },
);

bpfTest(
  "ecap nss -k FILE --list-targets names libnss3 and freebl, and writes no file",
  async () => {
    const keys = `${await Deno.makeTempDir()}/keys.log`;
    await using run = await EcapRun.start(["nss", "-k", keys, "--list-targets"], { wait: false });
    assert.equal(await run.wait(), 0, run.stderr);
    assert.match(run.stdout, /libnss3\.so inode=\d+ .*NSS 3\.\d+/);
    assert.match(run.stdout, /libfreeblpriv3\.so inode=\d+ .*HMAC_Update at 0x[0-9a-f]+/);
    assert.doesNotMatch(run.stdout, /libnspr4/);
    await assert.rejects(Deno.stat(keys), Deno.errors.NotFound);
    await Deno.remove(keys.replace(/\/keys\.log$/, ""), { recursive: true });
  },
);

bpfTest("ecap nss --nss /nonexistent fails in one line (exit 4)", async () => {
  await using run = await EcapRun.start(["nss", "--calls", "--nss", "/nonexistent"], {
    wait: false,
  });
  assert.equal(await run.wait(), 4);
  const lines = run.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, run.stderr);
  assert.match(lines[0], /^ecap: NSPR library "\/nonexistent" not found/);
});
