/**
 * `ecap gotls` against an HTTPS server and client built here from
 * tests/fixtures/gotls with Debian's Go (standard library only, no module
 * downloads): plaintext both ways, key log lines tshark decrypts with, a
 * stripped build, a client started after ecap, and the function table and
 * RET finder checked against `go tool nm` and `objdump -d`.
 * @module
 */
import assert from "node:assert/strict";
import { readGoBinary } from "../lib/binary/gopclntab.ts";
import { instructions, retOffsets } from "../lib/binary/x86_ret.ts";
import { bpfTest, EcapRun, sh, waitFor } from "./_helpers.ts";
import { httpRequestUris, pcapArgs, TsharkCapture, tsharkFields } from "./_tshark.ts";
import { GoServer, pattern, programs, runClient } from "./_go.ts";

type Json = Record<string, unknown> & {
  pid: number;
  kind: string;
  direction: string;
  data: string;
  fd: number;
  local: { addr: string; port: number } | null;
  remote: { addr: string; port: number } | null;
};

function fromBase64(s: string): Uint8Array {
  return Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
}

function joined(events: Json[]): Uint8Array {
  const parts = events.map((e) => fromBase64(e.data));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) out.set(p, at), at += p.length;
  return out;
}

/** An HTTP/1.1 message's head (as text) and body. */
function splitHttp(bytes: Uint8Array): { head: string; body: Uint8Array } {
  const text = new TextDecoder("latin1").decode(bytes);
  const end = text.indexOf("\r\n\r\n");
  assert.ok(end > 0, `no HTTP head in ${text.slice(0, 80)}`);
  return { head: text.slice(0, end), body: bytes.subarray(end + 4) };
}

function dataOf(run: EcapRun, pid: number, direction: "read" | "write"): Json[] {
  return (run.json() as Json[]).filter((e) =>
    e.pid === pid && e.kind === "data" && e.direction === direction
  );
}

const bytesOf = (events: Json[]) => events.reduce((n, e) => n + fromBase64(e.data).length, 0);

bpfTest(
  "ecap gotls captures a server and a stripped client byte-exact both ways (128 KiB up, 200 KiB down)",
  async () => {
    const p = await programs();
    await using server = await GoServer.start(p.server);
    await using srvRun = await EcapRun.start(["gotls", "--calls", "-e", p.server, "--json"]);
    await using cliRun = await EcapRun.start([
      "gotls",
      "--calls",
      "--elfpath",
      p.strippedClient,
      "--json",
    ]);
    assert.match(cliRun.stderr, /stripped, function table found by section/);
    const up = 128 << 10, down = 200 << 10;
    const client = await runClient(p.strippedClient, [
      "-post",
      String(up),
      server.url(`/body?n=${down}`),
    ]);
    assert.equal(client.stdout, `200 ${down}\n`);
    // the server reads the request and writes the response; the client the other way
    await waitFor(
      () =>
        bytesOf(dataOf(srvRun, server.pid, "read")) > up &&
        bytesOf(dataOf(cliRun, client.pid, "read")) > down,
      "both sides' bytes",
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await srvRun.stop(), 0);
    assert.equal(await cliRun.stop(), 0);

    const sent = joined(dataOf(cliRun, client.pid, "write"));
    const received = joined(dataOf(srvRun, server.pid, "read"));
    assert.deepEqual(received, sent, "what the server read is what the client wrote");
    const request = splitHttp(sent);
    assert.match(request.head, new RegExp(`^POST /body\\?n=${down} HTTP/1\\.1\r\n`));
    assert.match(request.head, new RegExp(`\r\nContent-Length: ${up}(\r\n|$)`));
    assert.deepEqual(request.body, pattern(up));

    const answered = joined(dataOf(srvRun, server.pid, "write"));
    const got = joined(dataOf(cliRun, client.pid, "read"));
    assert.deepEqual(got, answered, "what the client read is what the server wrote");
    const response = splitHttp(got);
    assert.match(response.head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.deepEqual(response.body, pattern(down));

    // several Read calls, each in 16 KiB chunks at most; nothing lost or cut
    const reads = dataOf(cliRun, client.pid, "read");
    assert.ok(reads.length > 1, `${reads.length} client reads`);
    const srvReads = dataOf(srvRun, server.pid, "read");
    assert.ok(srvReads.length > 1, `${srvReads.length} server reads`);
    for (const e of [...reads, ...srvReads]) assert.equal(e.truncated, false);
    for (const e of [...reads, ...srvReads]) assert.equal(e.incomplete, false);
    // the socket: one connection, seen from both ends
    const local = reads[0].local!, remote = reads[0].remote!;
    assert.deepEqual(remote, { addr: "127.0.0.1", port: server.port });
    for (const e of [...reads, ...dataOf(cliRun, client.pid, "write")]) {
      assert.ok(e.fd >= 0);
      assert.deepEqual([e.local, e.remote], [local, remote]);
    }
    for (const e of [...srvReads, ...dataOf(srvRun, server.pid, "write")]) {
      assert.deepEqual([e.local, e.remote], [remote, local]);
    }
  },
);

bpfTest(
  "ecap gotls -m keylog writes Go's own key log lines (TLS 1.3 and 1.2); tshark decrypts with them",
  async () => {
    const p = await programs();
    const dir = await Deno.makeTempDir({ prefix: "ecap-gotls-keys-" });
    try {
      await using s13 = await GoServer.start(p.server);
      await using s12 = await GoServer.start(p.server, ["-tls12"]);
      const keys = `${dir}/keys.log`, own = `${dir}/own.log`;
      // the captures first: ecap's start gives them time to settle before any traffic
      await using cap13 = await TsharkCapture.start(`${dir}/v13.pcapng`, s13.port);
      await using cap12 = await TsharkCapture.start(`${dir}/v12.pcapng`, s12.port);
      await using run = await EcapRun.start([
        "gotls",
        "--calls",
        "-e",
        p.client,
        "-m",
        "keylog",
        "-k",
        keys,
      ]);
      await runClient(p.client, ["-keylog", own, s13.url("/body?n=10&v13"), s13.url("/body?n=5")]);
      await runClient(p.client, ["-keylog", own, s12.url("/body?n=10&v12")]);
      const ownLines = (await Deno.readTextFile(own)).trim().split("\n");
      assert.equal(ownLines.length, 5, "Go wrote 4 TLS 1.3 lines and 1 TLS 1.2 line");
      await waitFor(
        async () => (await Deno.readTextFile(keys).catch(() => "")).trim().split("\n").length >= 5,
        "five key log lines",
      );
      await new Promise((r) => setTimeout(r, 500));
      for (const c of [cap13, cap12]) await c.stop();
      assert.equal(await run.stop(), 0);
      const lines = (await Deno.readTextFile(keys)).trim().split("\n");
      assert.deepEqual(lines.toSorted(), ownLines.toSorted(), "the lines Go itself wrote");
      assert.deepEqual(lines.map((l) => l.split(" ")[0]).sort(), [
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_RANDOM",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_TRAFFIC_SECRET_0",
      ]);
      assert.match(run.stderr, /5 key log lines written/);
      assert.deepEqual(await httpRequestUris(`${dir}/v13.pcapng`, keys), [
        "/body?n=10&v13",
        "/body?n=5",
      ]);
      assert.deepEqual(await httpRequestUris(`${dir}/v12.pcapng`, keys), ["/body?n=10&v12"]);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

bpfTest("ecap gotls -m pcap writes a pcapng tshark decrypts on its own", async () => {
  const p = await programs();
  const dir = await Deno.makeTempDir({ prefix: "ecap-gotls-pcap-" });
  try {
    await using server = await GoServer.start(p.server);
    const file = `${dir}/cap.pcapng`;
    await using run = await EcapRun.start(
      pcapArgs("gotls", file, "-e", p.server, `tcp port ${server.port}`),
    );
    await runClient(p.client, [server.url("/body?n=70000&a"), server.url("/body?n=3&b")]);
    await new Promise((r) => setTimeout(r, 700));
    assert.equal(await run.stop(), 0);
    assert.deepEqual(await httpRequestUris(file), ["/body?n=70000&a", "/body?n=3&b"]);
    const lengths = await tsharkFields(file, "http.response", ["http.content_length"]);
    assert.deepEqual(lengths, ["70000", "3"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap gotls with no --elfpath captures a Go client started after it", async () => {
  const p = await programs();
  await using server = await GoServer.start(p.server);
  // a copy: a binary this capture has never seen (a new inode)
  const dir = await Deno.makeTempDir({ prefix: "ecap-gotls-late-" });
  try {
    const late = `${dir}/late-client`;
    await Deno.copyFile(p.client, late);
    await using run = await EcapRun.start(["gotls", "--calls", "--json", "--debug"]);
    assert.match(
      run.stderr,
      new RegExp(`ecap: ${p.server}: Go 1\\.`),
      "the running server is found",
    );
    // No wait in the client: its exec is held until ecap has read the new
    // binary and attached (tens of ms), so its first request is seen.
    const client = await runClient(late, ["-wait", "0", server.url("/body?n=70000&late")]);
    await waitFor(
      () => bytesOf(dataOf(run, client.pid, "read")) > 70000,
      "the late client's response",
    ).catch((e) => {
      throw new Error(`${e.message}; ecap said: ${run.stderr}`);
    });
    await run.stop();
    const request = splitHttp(joined(dataOf(run, client.pid, "write")));
    assert.match(request.head, /^GET \/body\?n=70000&late HTTP\/1\.1\r\n/);
    assert.deepEqual(splitHttp(joined(dataOf(run, client.pid, "read"))).body, pattern(70000));
    assert.match(run.stderr, /attach .*late-client.*held until then/);
    // the server side too: it was running before
    const served = joined(dataOf(run, server.pid, "read"));
    assert.match(new TextDecoder().decode(served), /GET \/body\?n=70000&late/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

bpfTest("ecap gotls -e /nonexistent: one line, exit 4; -e /bin/ls: one line, exit 5", async () => {
  for (const [path, code, what] of [["/nonexistent", 4, /not found/], ["/bin/ls", 5, /not a Go/]]) {
    await using run = await EcapRun.start(["gotls", "--calls", "-e", path as string], {
      wait: false,
    });
    assert.equal(await run.wait(), code, run.stderr);
    const lines = run.stderr.trim().split("\n");
    assert.equal(lines.length, 1, run.stderr);
    assert.match(lines[0], what as RegExp);
  }
});

bpfTest(
  "ecap gotls refuses a Go program built for the stack ABI (Go < 1.17): one line, exit 5",
  async () => {
    // Debian has no Go older than 1.17 and Go 1.19 cannot build for the stack ABI, so the
    // client's (*Conn).Read gets the prologue Go 1.16 compiled: the stack bound read through
    // a g loaded into RCX (cmp 0x10(%rcx),%rsp), not through R14 (cmp 0x10(%r14),%rsp)
    const p = await programs();
    const bytes = await Deno.readFile(p.client);
    const read = (await goNm(p.client)).get("crypto/tls.(*Conn).Read")![0];
    const at = fileOffset(await sh("readelf", ["-lW", p.client]), read);
    const prologue = bytes.subarray(at, at + 24);
    const r14Check = [0x49, 0x3b, 0x66, 0x10];
    const i = prologue.findIndex((_, k) => r14Check.every((b, j) => prologue[k + j] === b));
    assert.ok(i >= 0, "Go 1.19's Read checks the stack through R14");
    prologue.set([0x48, 0x3b, 0x61, 0x10], i);
    const dir = await Deno.makeTempDir({ prefix: "ecap-go116-" });
    try {
      await Deno.writeFile(`${dir}/old-abi-client`, bytes, { mode: 0o755 });
      await using run = await EcapRun.start(["gotls", "-e", `${dir}/old-abi-client`], {
        wait: false,
      });
      assert.equal(await run.wait(), 5, run.stderr);
      assert.match(
        run.stderr,
        /^ecap: Cannot capture gotls: ".*old-abi-client" is built by Go go1\.\d+.*, which passes arguments on the stack.*\n$/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

/** The file offset of vaddr, from readelf -lW's LOAD segments. */
function fileOffset(readelf: { stdout: string }, vaddr: number): number {
  for (
    const m of readelf.stdout.matchAll(/LOAD\s+0x([0-9a-f]+) 0x([0-9a-f]+) \S+ 0x([0-9a-f]+)/g)
  ) {
    const [offset, start, size] = [m[1], m[2], m[3]].map((h) => parseInt(h, 16));
    if (vaddr >= start && vaddr < start + size) return vaddr - start + offset;
  }
  throw new Error(`no LOAD segment holds 0x${vaddr.toString(16)}`);
}

/** `go tool nm`'s text symbols: name -> addresses (ABI wrappers share a name). */
async function goNm(path: string): Promise<Map<string, number[]>> {
  const r = await sh("go", ["tool", "nm", path]);
  assert.equal(r.code, 0, r.stderr);
  const out = new Map<string, number[]>();
  for (const line of r.stdout.split("\n")) {
    const m = /^\s*([0-9a-f]+) [Tt] (.+)$/.exec(line);
    if (m) out.set(m[2], [...out.get(m[2]) ?? [], parseInt(m[1], 16)]);
  }
  return out;
}

Deno.test("gopclntab: the function table of a Go binary, stripped or not, and its version", async () => {
  const p = await programs();
  const full = readGoBinary(await Deno.readFile(p.client));
  const stripped = readGoBinary(await Deno.readFile(p.strippedClient));
  const version = (await sh("go", ["env", "GOVERSION"])).stdout.trim();
  assert.equal(full.version, version);
  assert.equal(stripped.version, version);
  assert.equal(full.format, "1.18"); // Go 1.18 and 1.19 share it
  const nm = await goNm(p.client);
  let checked = 0;
  for (const [name, fn] of full.functions) {
    if (!nm.has(name)) continue;
    // nm names an assembly function's ABI0 body NAME.abi0; the table, NAME
    const addrs = [...nm.get(name)!, ...nm.get(`${name}.abi0`) ?? []];
    assert.ok(addrs.includes(fn.entry), name);
    checked++;
  }
  assert.ok(checked > 0.9 * full.functions.size, `${checked} of ${full.functions.size} in nm`);
  for (const name of ["crypto/tls.(*Conn).Read", "crypto/tls.(*Conn).Write", "runtime.main"]) {
    assert.deepEqual(nm.get(name), [stripped.functions.get(name)?.entry], name);
  }
  // a binary whose section headers are gone: the table is found by its magic
  const bytes = await Deno.readFile(p.strippedClient);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0x28, 0n, true); // e_shoff
  view.setUint16(0x3c, 0, true); // e_shnum
  view.setUint16(0x3e, 0, true); // e_shstrndx
  const headless = readGoBinary(bytes);
  assert.equal(headless.foundBy, "magic");
  assert.equal(headless.version, version);
  assert.deepEqual(
    headless.functions.get("crypto/tls.(*Conn).Read"),
    stripped.functions.get("crypto/tls.(*Conn).Read"),
  );
  assert.equal(headless.functions.size, stripped.functions.size);
});

Deno.test("x86_ret: instructions and RETs of every crypto/tls function are objdump's", async () => {
  const p = await programs();
  const bin = readGoBinary(await Deno.readFile(p.server));
  const fns = [...bin.functions.values()].filter((f) => f.name.startsWith("crypto/tls."));
  assert.ok(fns.length > 300, `${fns.length} crypto/tls functions`);
  const lo = Math.min(...fns.map((f) => f.entry)), hi = Math.max(...fns.map((f) => f.end));
  const r = await sh("objdump", [
    "-d",
    "--no-show-raw-insn",
    `--start-address=0x${lo.toString(16)}`,
    `--stop-address=0x${hi.toString(16)}`,
    p.server,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const starts = new Set<number>(), rets = new Set<number>();
  for (const line of r.stdout.split("\n")) {
    const m = /^\s+([0-9a-f]+):\s+(\S+)/.exec(line);
    if (!m) continue;
    starts.add(parseInt(m[1], 16));
    if (/^ret/.test(m[2])) rets.add(parseInt(m[1], 16));
  }
  let c3Elsewhere = 0, retCount = 0;
  for (const fn of fns) {
    const code = bin.code(fn)!;
    const ours = [...instructions(code)].map((i) => fn.entry + i.offset);
    const theirs = [...starts].filter((a) => a >= fn.entry && a < fn.end).sort((a, b) => a - b);
    assert.deepEqual(ours, theirs, `instruction starts of ${fn.name}`);
    const ourRets = retOffsets(code).map((o) => fn.entry + o);
    const theirRets = [...rets].filter((a) => a >= fn.entry && a < fn.end);
    assert.deepEqual(ourRets, theirRets.sort((a, b) => a - b), `RETs of ${fn.name}`);
    retCount += ourRets.length;
    c3Elsewhere += code.filter((b) => b === 0xc3).length - ourRets.length;
  }
  // the test means something: 0xC3 bytes that are not RETs were there to misread
  assert.ok(c3Elsewhere > 0, `${c3Elsewhere} 0xC3 bytes inside other instructions`);
  const read = bin.functions.get("crypto/tls.(*Conn).Read")!;
  assert.ok(retOffsets(bin.code(read)!).length >= 2, "Read returns in several places");
  assert.ok(retCount > fns.length / 2);
});
