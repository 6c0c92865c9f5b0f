import assert from "node:assert/strict";
import { locateBoringssl, type LocatedBoringssl } from "../../lib/tls/boringssl_static.ts";
import offsets from "../../lib/tls/boringssl_offsets.json" with { type: "json" };

// Debian's android-libboringssl: BoringSSL with symbols, to check against
const ANDROID = "/usr/lib/x86_64-linux-gnu/android/libssl.so.0";
const CHROMIUM = "/usr/lib/chromium/chromium";
/** Debian 12's chromium, measured with /tmp/issue19/find_boringssl.py and its symbols-free method. */
const CHROMIUM_BUILD = "fedd2dee222a71e0243fa57139a185a5db6d1b44";
const CHROMIUM_OFFSETS = {
  sslWrite: 0x9dab690,
  sslRead: 0x9dab260,
  sslDoHandshake: 0x9daada0,
  logSecret: 0x9da8b80,
  sslS3: 0x30,
  s3ClientRandom: 0x30,
};

/** Output of readelf (binutils): an implementation independent of ecap's ELF reader. */
function readelf(...args: string[]): string {
  const out = new Deno.Command("readelf", { args: ["-W", ...args], stdout: "piped" }).outputSync();
  assert.ok(out.success, `readelf ${args.join(" ")}`);
  return new TextDecoder().decode(out.stdout);
}

/** The named functions' addresses and file offsets, from the symbol table and PT_LOAD headers. */
function symbols(path: string, names: string[]): Record<string, { value: number; offset: number }> {
  const loads = [
    ...readelf("-l", path).matchAll(/^\s*LOAD\s+(0x\w+)\s+(0x\w+)\s+0x\w+\s+(0x\w+)/gm),
  ]
    .map((m) => ({ offset: Number(m[1]), vaddr: Number(m[2]), filesz: Number(m[3]) }));
  const out: Record<string, { value: number; offset: number }> = {};
  for (const line of readelf("-s", "--dyn-syms", path).split("\n")) {
    const f = line.trim().split(/\s+/); // Num: Value Size Type Bind Vis Ndx Name
    if (f.length < 8 || f[3] !== "FUNC" || f[6] === "UND") continue;
    const name = f[7].split("@")[0];
    if (!names.includes(name)) continue;
    const value = parseInt(f[1], 16);
    const seg = loads.find((s) => value >= s.vaddr && value < s.vaddr + s.filesz)!;
    out[name] = { value, offset: value - seg.vaddr + seg.offset };
  }
  return out;
}

function buildId(path: string): string | undefined {
  return readelf("-n", path).match(/Build ID: (\w+)/)?.[1];
}

function executableRange(path: string): [number, number] {
  const m = readelf("-l", path).match(
    /^\s*LOAD\s+(0x\w+)\s+0x\w+\s+0x\w+\s+(0x\w+)\s+0x\w+\s+R E/m,
  )!;
  return [Number(m[1]), Number(m[1]) + Number(m[2])];
}

async function timed(path: string): Promise<[LocatedBoringssl | undefined, number]> {
  const t0 = performance.now();
  const found = await locateBoringssl(path);
  return [found, performance.now() - t0];
}

const hex = (n?: number) => n === undefined ? "-" : `0x${n.toString(16)}`;

const androidFunctions = () => symbols(ANDROID, ["SSL_write", "SSL_read", "SSL_do_handshake"]);
const androidSymbols = () =>
  Object.fromEntries(Object.entries(androidFunctions()).map(([k, v]) => [k, v.offset]));

/** Nothing found, or only what the symbol table says: never a wrong address. */
function assertNeverWrong(found: LocatedBoringssl | undefined, what: string) {
  if (found === undefined) return;
  const sym = androidSymbols();
  assert.equal(found.sslWrite, sym.SSL_write, `${what}: SSL_write`);
  assert.equal(found.sslRead, sym.SSL_read, `${what}: SSL_read`);
  assert.equal(found.sslDoHandshake, sym.SSL_do_handshake, `${what}: SSL_do_handshake`);
}

/** A copy of the android libssl in a temp dir, changed by edit. */
async function doctored(
  edit: (bytes: Uint8Array) => void,
  run: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/libssl.so.0`;
    const bytes = await Deno.readFile(ANDROID);
    edit(bytes);
    await Deno.writeFile(path, bytes);
    await run(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("locateBoringssl() finds in android's libssl what its symbol table says", async () => {
  const [found, ms] = await timed(ANDROID);
  assert.ok(found, "found");
  const sym = androidSymbols();
  assert.equal(found.sslWrite, sym.SSL_write);
  assert.equal(found.sslRead, sym.SSL_read);
  assert.equal(found.sslDoHandshake, sym.SSL_do_handshake);
  assert.ok(found.logSecret !== undefined, "ssl_log_secret found");
  assert.ok(!Object.values(sym).includes(found.logSecret), "ssl_log_secret is none of them");
  // the struct offsets measured from this build's source (scripts/boringssl_offsets.sh)
  const build = offsets.builds.find((b) => b.build_id === buildId(ANDROID));
  if (build) {
    assert.equal(found.sslS3, build.ssl.s3);
    assert.equal(found.s3ClientRandom, build.s3.client_random);
  } else {
    console.log(`${ANDROID} is not the measured build; s3 offsets not compared`);
  }
  assert.match(found.how, /\.eh_frame/);
  console.log(`${ANDROID}: ${ms.toFixed(0)} ms; ${found.how}`);
});

Deno.test("locateBoringssl() finds BoringSSL in Chromium, which has no symbols", async () => {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    console.log(`skipped: ${CHROMIUM} is not installed (apt install chromium)`);
    return;
  }
  const [found, ms] = await timed(CHROMIUM);
  console.log(`${CHROMIUM}: ${ms.toFixed(0)} ms; ${found?.how ?? "not found"}`);
  const id = buildId(CHROMIUM);
  if (id === CHROMIUM_BUILD) {
    assert.ok(found, "found");
    const { how: _, ...got } = found;
    assert.deepEqual(got, CHROMIUM_OFFSETS);
  } else {
    // another build: offsets unknown here, so the answer need only hang together
    console.log(
      `build ${id} is not ${CHROMIUM_BUILD}: found ${
        JSON.stringify(found, (_, v) => typeof v === "number" ? hex(v) : v)
      }`,
    );
    if (found) {
      const [lo, hi] = executableRange(CHROMIUM);
      const fns = [found.sslWrite, found.sslRead, found.sslDoHandshake, found.logSecret]
        .filter((v) => v !== undefined);
      assert.equal(new Set(fns).size, fns.length, "distinct functions");
      for (const f of fns) assert.ok(f >= lo && f < hi, `${hex(f)} in the executable segment`);
    }
  }
  // answers are kept by file identity
  const [again, msAgain] = await timed(CHROMIUM);
  assert.deepEqual(again, found);
  assert.ok(msAgain < 50, `second call took ${msAgain.toFixed(1)} ms`);
});

Deno.test("locateBoringssl() finds nothing in files without BoringSSL", async () => {
  for (
    const path of ["/usr/bin/bash", "/usr/lib/x86_64-linux-gnu/libssl.so.3", "/etc/os-release"]
  ) {
    assert.equal(await locateBoringssl(path), undefined, path);
  }
});

Deno.test("locateBoringssl() gives no address when SSL_write's code does not decode", async () => {
  const at = androidSymbols().SSL_write;
  // C4 E0: a VEX prefix naming no opcode map, so decoding stops at the first instruction
  await doctored((b) => b.set([0xc4, 0xe0], at), async (path) => {
    const found = await locateBoringssl(path);
    assert.equal(found, undefined);
  });
});

Deno.test("locateBoringssl() gives no address when an FDE stops covering SSL_write's sites", async () => {
  const { value: vaddr } = androidFunctions().SSL_write;
  const frames = readelf("-wf", ANDROID);
  const fde = frames.match(
    new RegExp(`^(\\w+) \\w+ \\w+ FDE cie=\\w+ pc=0*${vaddr.toString(16)}\\.\\.`, "m"),
  );
  assert.ok(fde, "SSL_write's FDE");
  const section = readelf("-S", ANDROID).match(/\.eh_frame\s+PROGBITS\s+\w+\s+(\w+)/)!;
  // length, CIE pointer, pc_begin (pcrel sdata4), then pc_range: 16 bytes now
  const range = parseInt(section[1], 16) + parseInt(fde[1], 16) + 12;
  await doctored((b) => new DataView(b.buffer).setUint32(range, 16, true), async (path) => {
    assertNeverWrong(await locateBoringssl(path), "FDE shrunk");
  });
});

Deno.test("locateBoringssl() finds no safe start in android's libssl without its unwind tables", async () => {
  // exported functions are called through the PLT, never directly: the scan
  // without FDEs has no evidence for their starts, and must not guess one
  await doctored((b) => {
    const v = new DataView(b.buffer);
    const phoff = Number(v.getBigUint64(32, true)), phnum = v.getUint16(56, true);
    for (let i = 0; i < phnum; i++) {
      const at = phoff + i * v.getUint16(54, true);
      if (v.getUint32(at, true) === 0x6474e550) v.setUint32(at, 0, true); // PT_GNU_EH_FRAME
    }
    const name = new TextEncoder().encode(".eh_frame");
    for (let i = 0; i < b.length - name.length; i++) {
      if (name.every((c, k) => b[i + k] === c)) b[i + 1] = 0x45; // ".Eh_frame"
    }
  }, async (path) => {
    assertNeverWrong(await locateBoringssl(path), "no unwind tables");
  });
});

Deno.test("locateBoringssl() looks again when the file at a path is replaced", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/lib.so`;
    await Deno.copyFile(ANDROID, path);
    assert.ok(await locateBoringssl(path));
    await Deno.remove(path);
    await Deno.copyFile("/usr/lib/x86_64-linux-gnu/libssl.so.3", path);
    assert.equal(await locateBoringssl(path), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
