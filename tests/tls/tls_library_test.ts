import assert from "node:assert/strict";
import {
  discoverTlsLibraries,
  inspectTlsLibrary,
  scanTlsVersion,
  TLS_SYMBOLS,
} from "../../lib/tls/tls_library.ts";
import { mappedFiles } from "../../lib/binary/proc_maps.ts";
import { EcapError } from "../../lib/base/errors.ts";
import { mulberry32 } from "../_random.ts";

const encoder = new TextEncoder();
const text = new TextDecoder();

/** Runs a command; its stdout, or undefined if it cannot run or fails. */
async function run(cmd: string, ...args: string[]): Promise<string | undefined> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "null" }).output();
    return out.success ? text.decode(out.stdout) : undefined;
  } catch {
    return undefined;
  }
}

/** The libssl.so.3 that ldconfig knows, e.g. /lib/x86_64-linux-gnu/libssl.so.3. */
async function systemLibssl(): Promise<string | undefined> {
  const listing = await run("ldconfig", "-p");
  return /^\tlibssl\.so\.3 \(libc6,x86-64\) => (\S+)$/m.exec(listing ?? "")?.[1];
}

/** Names among TLS_SYMBOLS that `nm -D --defined-only` lists for `path`. */
async function nmDefined(path: string): Promise<Set<string>> {
  const out = (await run("nm", "-D", "--defined-only", path)) ?? "";
  const names = new Set(out.split("\n").map((l) => l.split(" ")[2]?.split("@")[0]));
  return new Set(TLS_SYMBOLS.filter((s) => names.has(s)));
}

function rejectsWith(kind: string, message: string) {
  return (e: unknown) => {
    assert.ok(e instanceof EcapError, String(e));
    assert.equal(e.kind, kind);
    assert.equal(e.message, message);
    return true;
  };
}

Deno.test("inspectTlsLibrary identifies the system libssl.so.3", async () => {
  const path = await systemLibssl();
  assert.ok(path, "ldconfig lists libssl.so.3");
  const info = await inspectTlsLibrary(path);
  assert.equal(info.flavor, "openssl");
  assert.equal(info.statically, false);
  const cli = /^OpenSSL (\d+\.\d+\.\d+[a-z]?)/.exec((await run("openssl", "version")) ?? "");
  assert.ok(cli, "openssl version runs");
  assert.equal(info.version, cli[1]);
  // Debian's libssl has no version text: it must come from the libcrypto it links.
  assert.match(info.versionSource!, /libcrypto\.so\.3 \(\.rodata\)$/);
  assert.deepEqual(new Set(Object.keys(info.symbols)), await nmDefined(path));
  const size = (await Deno.stat(path)).size;
  for (const [name, offset] of Object.entries(info.symbols)) {
    assert.ok(offset > 0 && offset < size, `${name} at ${offset}`);
  }
});

Deno.test({
  // node is a test dependency (scripts/bootstrap.sh --test): missing, this fails
  name: "inspectTlsLibrary sees OpenSSL built into /usr/bin/node",
  fn: async () => {
    const defined = await nmDefined("/usr/bin/node");
    if (!defined.has("SSL_write")) {
      // A node linked against the shared libssl has no TLS code of its own.
      await assert.rejects(inspectTlsLibrary("/usr/bin/node"), EcapError);
      return;
    }
    const info = await inspectTlsLibrary("/usr/bin/node");
    assert.equal(info.statically, true);
    assert.equal(info.flavor, "openssl");
    const bundled = await run("/usr/bin/node", "-p", "process.versions.openssl");
    assert.equal(info.version, /^\d+\.\d+\.\d+[a-z]?/.exec(bundled ?? "")?.[0]);
    assert.equal(info.versionSource, "/usr/bin/node (.rodata)");
    assert.deepEqual(new Set(Object.keys(info.symbols)), defined);
  },
});

Deno.test("inspectTlsLibrary explains files it cannot use", async () => {
  await assert.rejects(
    inspectTlsLibrary("/usr/bin/true"),
    rejectsWith(
      "unsupported",
      `"/usr/bin/true" has no SSL_read/SSL_write symbols, nor a BoringSSL ecap can locate without them`,
    ),
  );
  await assert.rejects(
    inspectTlsLibrary("/nonexistent/libssl.so.3"),
    rejectsWith("not-found", `library "/nonexistent/libssl.so.3" not found`),
  );
  const notElf = await Deno.makeTempFile({ suffix: ".so" });
  try {
    await Deno.writeTextFile(notElf, "INPUT(-lssl)\n");
    await assert.rejects(
      inspectTlsLibrary(notElf),
      rejectsWith("unsupported", `"${notElf}" is not an ELF file`),
    );
  } finally {
    await Deno.remove(notElf);
  }
});

Deno.test("scanTlsVersion reads OpenSSL and BoringSSL markers", () => {
  const scan = (s: string) => scanTlsVersion(encoder.encode(s));
  assert.deepEqual(scan("\0OpenSSL 3.0.17 1 Jul 2025\0"), { flavor: "openssl", version: "3.0.17" });
  assert.deepEqual(scan("x\0OpenSSL 1.1.1w  11 Sep 2023\0"), {
    flavor: "openssl",
    version: "1.1.1w",
  });
  assert.deepEqual(scan("OpenSSL 3.5.0 8 Apr 2025"), { flavor: "openssl", version: "3.5.0" });
  assert.deepEqual(scan("\0OpenSSL 1.0.2k-fips  26 Jan 2017\0"), {
    flavor: "openssl",
    version: "1.0.2k",
  });
  // BoringSSL's version text looks like OpenSSL's but without a date.
  assert.deepEqual(scan("\0OpenSSL 1.1.1 (compatible; BoringSSL)\0BoringSSL\0"), {
    flavor: "boringssl",
  });
  // A dated OpenSSL version wins over a mention of BoringSSL.
  assert.deepEqual(scan("\0BoringSSL\0OpenSSL 3.0.2 15 Mar 2022\0"), {
    flavor: "openssl",
    version: "3.0.2",
  });
  assert.deepEqual(scan("\0OpenSSL 1.1.1\0"), { flavor: "openssl", version: "1.1.1" });
  assert.equal(scan("requires OpenSSL 1.1.0 or later\0"), undefined);
  assert.equal(scan("\0OpenSSL 3.0 legacy provider\0"), undefined);
  assert.equal(scan(""), undefined);
});

Deno.test("fuzz: scanTlsVersion never throws", () => {
  const seed = encoder.encode(
    "\0OpenSSL 3.0.17 1 Jul 2025\0OpenSSL 1.1.1 (compatible; BoringSSL)" +
      "\0OpenSSL 1.1.1w  11 Sep 2023",
  );
  const alphabet = encoder.encode("OpenSSL BoringSSL 0123456789.abz\0 JulSep");
  const rand = mulberry32(0x7150);
  const int = (n: number) => Math.floor(rand() * n);
  for (let i = 0; i < 2000; i++) {
    const bytes = seed.slice(0, int(seed.length + 1));
    for (let n = 1 + int(6); n > 0; n--) {
      bytes[int(bytes.length)] = int(3) === 0 ? int(256) : alphabet[int(alphabet.length)];
    }
    const found = scanTlsVersion(bytes);
    if (found?.version !== undefined) assert.match(found.version, /^\d+\.\d+\.\d+[a-z]{0,2}$/);
  }
});

/** Starts python3 with the ssl module loaded; resolves once libssl is mapped. */
async function pythonWithSsl(
  env: Record<string, string> = {},
): Promise<{ child: Deno.ChildProcess; libssl: string }> {
  const child = new Deno.Command("python3", {
    args: ["-c", "import ssl,time; time.sleep(30)"],
    env,
    stdout: "null",
    stderr: "null",
  }).spawn();
  for (let i = 0; i < 500; i++) {
    const files = await mappedFiles(child.pid, { all: true }).catch(() => []);
    const libssl = files.find((f) => f.path.split("/").pop()!.startsWith("libssl.so"));
    if (libssl) return { child, libssl: libssl.path };
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill("SIGKILL");
  await child.status;
  throw new Error("python3 never mapped libssl");
}

Deno.test("discoverTlsLibraries finds the libssl a python3 process maps", async () => {
  const { child, libssl } = await pythonWithSsl();
  try {
    const inode = (await Deno.stat(`/proc/${child.pid}/root${libssl}`)).ino;

    // the path as maps names it: this process shares ecap's root
    const forPid = await discoverTlsLibraries({ pid: child.pid });
    assert.deepEqual(forPid.map((l) => [l.path, l.inode, l.pids, l.source]), [
      [libssl, inode, [child.pid], "maps"],
    ]);

    const all = await discoverTlsLibraries();
    const hit = all.filter((l) => l.inode === inode);
    assert.equal(hit.length, 1, "listed once though both the cache and maps know it");
    assert.ok(hit[0].pids.includes(child.pid));
    const keys = all.map((l) => `${l.dev}:${l.inode}`);
    assert.equal(new Set(keys).size, keys.length, "deduplicated by (dev, inode)");
    // Every ld.so.cache libssl.so* that exists is listed.
    const cached = ((await run("ldconfig", "-p")) ?? "").split("\n")
      .map((l) => /^\tlibssl\.so\S* \(.*\) => (\S+)$/.exec(l)?.[1])
      .filter((p): p is string => p !== undefined);
    for (const path of cached) {
      const ino = (await Deno.stat(path)).ino;
      assert.ok(all.some((l) => l.inode === ino), path);
    }
  } finally {
    child.kill("SIGKILL");
    await child.status;
  }
});

Deno.test("discoverTlsLibraries reaches a deleted libssl through map_files", async () => {
  // What a process still running the old libssl looks like after an upgrade.
  const dir = await Deno.makeTempDir({ prefix: "ecap_tls_" });
  const copy = `${dir}/libssl.so.3`;
  await Deno.copyFile((await systemLibssl())!, copy);
  const { child, libssl } = await pythonWithSsl({ LD_LIBRARY_PATH: dir });
  try {
    assert.equal(libssl, copy);
    const inode = (await Deno.stat(copy)).ino;
    await Deno.remove(dir, { recursive: true });

    const forPid = await discoverTlsLibraries({ pid: child.pid });
    assert.equal(forPid.length, 1);
    assert.match(forPid[0].path, new RegExp(`^/proc/${child.pid}/map_files/[0-9a-f]+-[0-9a-f]+$`));
    assert.equal(forPid[0].inode, inode);
    assert.equal((await Deno.stat(forPid[0].path)).ino, inode, "map_files opens the deleted file");
    assert.equal((await inspectTlsLibrary(forPid[0].path)).flavor, "openssl");

    const all = await discoverTlsLibraries();
    const hit = all.find((l) => l.inode === inode && l.pids.includes(child.pid));
    assert.equal(hit?.source, "maps");
    assert.match(hit.path, /\/map_files\//);
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test({
  name: "discoverTlsLibraries reports a node process's own executable",
  fn: async () => {
    const child = new Deno.Command("/usr/bin/node", {
      args: ["-e", "setTimeout(() => {}, 30000)"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const node = Deno.realPathSync("/usr/bin/node");
      for (let i = 0; i < 500; i++) {
        const files = await mappedFiles(child.pid).catch(() => []);
        if (files.some((f) => f.path === node)) break;
        await new Promise((r) => setTimeout(r, 20));
      }
      const found = await discoverTlsLibraries({ pid: child.pid });
      const exe = found.find((l) => l.path === node);
      assert.ok(exe, JSON.stringify(found));
      assert.equal(exe.inode, (await Deno.stat(node)).ino);
      assert.deepEqual(exe.pids, [child.pid]);
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  },
});

Deno.test("discoverTlsLibraries with a vanished pid is not-found", async () => {
  const child = new Deno.Command("true").spawn();
  await child.status;
  await assert.rejects(
    discoverTlsLibraries({ pid: child.pid }),
    rejectsWith("not-found", `No process with pid ${child.pid}`),
  );
});
