/**
 * `ecap tls -m keylog` and `-m pcap` against curl, python3 and nginx on
 * loopback, checked by tshark (Wireshark's engine) and by our own reader.
 * @module
 */
import assert from "node:assert/strict";
import { pcapngBlocksComplete, readPcapng } from "../lib/pcap/pcapng_reader.ts";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { Nginx } from "./_nginx.ts";
import {
  clientRandoms,
  httpRequestUris,
  httpResponseBodies,
  pcapArgs,
  stopAfterKeys,
  TsharkCapture,
  tsharkFields,
} from "./_tshark.ts";

const BLOCK_DSB = 0x0a;
const BLOCK_EPB = 0x06;

async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "ecap-keys-" });
  return dir;
}

async function curl(args: string[]) {
  const r = await sh("curl", ["-sk", "--max-time", "20", ...args]);
  assert.equal(r.code, 0, `curl ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

bpfTest(
  "ecap tls -m keylog writes TLS 1.2 and 1.3 keys that let tshark decrypt a capture",
  async () => {
    const dir = await tempDir();
    try {
      await using nginx = await Nginx.start({ "k.txt": "secret body\n" });
      const keys = `${dir}/keys.log`;
      await using run = await EcapRun.start(["tls", "--calls", "-m", "keylog", "-k", keys]);
      await using cap = await TsharkCapture.start(`${dir}/cap.pcapng`, nginx.port);
      await curl(["--http1.1", "--tlsv1.3", nginx.url("/k.txt?v13")]);
      await curl(["--http1.1", "--tls-max", "1.2", nginx.url("/k.txt?v12")]);
      await stopAfterKeys(keys, cap);
      assert.equal(await run.stop(), 0);
      assert.equal((await Deno.stat(keys)).mode! & 0o777, 0o600);
      const lines = (await Deno.readTextFile(keys)).trim().split("\n");
      assert.equal(new Set(lines).size, lines.length, "no line twice");
      const labels = lines.map((l) => l.split(" ")[0]).sort();
      assert.deepEqual(labels, [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_RANDOM",
        "CLIENT_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_TRAFFIC_SECRET_0",
      ]);
      // the client randoms are those of the ClientHellos on the wire
      const randoms = await clientRandoms(`${dir}/cap.pcapng`);
      assert.deepEqual(new Set(lines.map((l) => l.split(" ")[1])), new Set(randoms));
      const uris = await httpRequestUris(`${dir}/cap.pcapng`, keys);
      assert.deepEqual(uris.sort(), ["/k.txt?v12", "/k.txt?v13"]);
      assert.match(run.stderr, /2 handshakes, 6 key log lines written/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest("ecap tls -m keylog appends to its file and never repeats a line", async () => {
  const dir = await tempDir();
  try {
    await using nginx = await Nginx.start({ "a.txt": "a\n" });
    const keys = `${dir}/keys.log`;
    for (let round = 0; round < 2; round++) {
      await using run = await EcapRun.start(["tls", "--calls", "-m", "keylog", "-k", keys]);
      await curl(["--http1.1", "--tls-max", "1.2", nginx.url("/a.txt")]);
      await waitFor(
        async () =>
          (await Deno.readTextFile(keys).catch(() => "")).split("\n").filter(Boolean).length ===
            round + 1,
        "one more line",
      );
      assert.equal(await run.stop(), 0);
    }
    const lines = (await Deno.readTextFile(keys)).trim().split("\n");
    assert.equal(lines.length, 2);
    assert.notEqual(lines[0], lines[1]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest(
  "ecap tls -m pcap writes pcapng that tshark decrypts: TLS 1.2, 1.3, HTTP/2, python3",
  async () => {
    const dir = await tempDir();
    try {
      await using nginx = await Nginx.start({ "p.txt": "pcap body text\n" });
      await using other = await Nginx.start({ "o.txt": "other server\n" });
      const out = `${dir}/out.pcapng`;
      await using run = await EcapRun.start(
        pcapArgs("tls", out, "tcp", "port", String(nginx.port)),
      );
      await curl(["--http1.1", "--tlsv1.3", nginx.url("/p.txt?curl13")]);
      await curl(["--http1.1", "--tls-max", "1.2", nginx.url("/p.txt?curl12")]);
      await curl(["--http2", nginx.url("/p.txt?curlh2")]);
      await curl(["--http1.1", other.url("/o.txt?excluded")]);
      const py = await sh("/usr/bin/python3", [
        "-c",
        `import ssl, urllib.request
ctx = ssl._create_unverified_context()
print(urllib.request.urlopen("${nginx.url("/p.txt?python")}", context=ctx).read().decode())`,
      ]);
      assert.equal(py.code, 0, py.stderr);
      await new Promise((r) => setTimeout(r, 1200)); // packets are held 500 ms
      assert.equal(await run.stop(), 0);

      const bytes = await Deno.readFile(out);
      assert.ok(pcapngBlocksComplete(bytes));
      const file = readPcapng(bytes);
      assert.deepEqual(file.interfaces.map((i) => [i.name, i.linkType]), [["lo", 1]]);
      assert.ok(file.packets.length > 20);
      assert.ok(file.secrets.length >= 1);
      // secrets come before the packets they decrypt: the first DSB precedes
      // the first packet carrying TLS application data
      const firstDsb = file.blocks.findIndex((b) => b.type === BLOCK_DSB);
      const epbs = file.blocks.filter((b) => b.type === BLOCK_EPB);
      const firstApp = file.packets.findIndex((p) => tlsContentTypes(p.data).includes(23));
      assert.ok(firstApp >= 0);
      assert.ok(file.blocks.indexOf(epbs[firstApp]) > firstDsb, "a DSB before application data");
      // packets carry the process that sent them
      const comments = file.packets.flatMap((p) => p.comments);
      assert.ok(comments.some((c) => /^pid=\d+ comm=curl$/.test(c)), comments.slice(0, 5).join());
      assert.ok(comments.some((c) => /^pid=\d+ comm=nginx$/.test(c)));
      assert.ok(comments.some((c) => /^pid=\d+ comm=python3$/.test(c)));

      const uris = (await tsharkFields(out, "http.request or http2.header", [
        "http.request.uri",
        "http2.header.value",
      ])).join("\n");
      for (const t of ["/p.txt?curl13", "/p.txt?curl12", "/p.txt?curlh2", "/p.txt?python"]) {
        assert.ok(uris.includes(t), `tshark decrypted ${t}: ${uris}`);
      }
      assert.ok(!uris.includes("excluded"), "the filter kept the other server out");
      const bodies = (await httpResponseBodies(out)).join("\n");
      assert.match(bodies, /pcap body text/);
      assert.match(run.stderr, /\d+ packets, \d+ key log lines written to/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** TLS record content types at the start of a TCP payload (Ethernet + IPv4). */
function tlsContentTypes(frame: Uint8Array): number[] {
  if (frame.length < 34 || frame[12] !== 0x08 || frame[13] !== 0x00) return [];
  const ihl = (frame[14] & 0x0f) * 4;
  const tcp = 14 + ihl;
  if (frame.length < tcp + 20) return [];
  const payload = tcp + (frame[tcp + 12] >> 4) * 4;
  const types: number[] = [];
  for (let at = payload; at + 5 <= frame.length;) {
    types.push(frame[at]);
    at += 5 + ((frame[at + 3] << 8) | frame[at + 4]);
  }
  return types;
}

for (const signal of ["SIGINT", "SIGTERM", "SIGKILL"] as const) {
  bpfTest(`ecap tls -m pcap leaves a valid file after ${signal}`, async () => {
    const dir = await tempDir();
    try {
      await using nginx = await Nginx.start({ "s.txt": "signal\n" });
      const out = `${dir}/out.pcapng`;
      await using run = await EcapRun.start([
        "tls",
        "--calls",
        "-m",
        "pcap",
        "-w",
        out,
        "-i",
        "lo",
      ]);
      await curl(["--http1.1", nginx.url("/s.txt")]);
      if (signal === "SIGKILL") await new Promise((r) => setTimeout(r, 1600)); // flushed each second
      await run.stop(signal);
      const bytes = await Deno.readFile(out);
      assert.ok(pcapngBlocksComplete(bytes), "the file ends at a block boundary");
      const file = readPcapng(bytes);
      assert.ok(file.packets.length > 0, "packets up to the last flush");
      assert.equal((await Deno.stat(out)).mode! & 0o777, 0o600);
      if (signal === "SIGKILL") {
        // tcx links belong to the process: nothing stays on the interface
        await waitFor(
          async () => {
            const net = await sh("bpftool", ["net", "show", "dev", "lo"]);
            return !net.stdout.includes("tc_ingress") && !net.stdout.includes("tc_egress");
          },
          "the kernel to drop the killed run's classifiers",
          5_000,
        );
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

bpfTest("ecap tls -m pcap stops with one line on a full disk and leaves a valid file", async () => {
  const dir = await tempDir();
  const mounted = await sh("mount", ["-t", "tmpfs", "-o", "size=96k", "ecap-test", dir]);
  assert.equal(mounted.code, 0, mounted.stderr);
  try {
    await using nginx = await Nginx.start({ "big.bin": new Uint8Array(1 << 20).fill(7) });
    await using run = await EcapRun.start(pcapArgs("tls", `${dir}/out.pcapng`));
    await sh("curl", ["-sk", "--http1.1", "-o", "/dev/null", nginx.url("/big.bin")]);
    const code = await run.wait(10_000);
    assert.equal(code, 6, run.stderr);
    assert.match(run.stderr, /ecap: Cannot write to "[^"]+out.pcapng": No space left on device\n/);
    assert.ok(pcapngBlocksComplete(await Deno.readFile(`${dir}/out.pcapng`)));
  } finally {
    await sh("umount", [dir]);
    await Deno.remove(dir, { recursive: true });
  }
});
