/**
 * Seeded fuzzing of every parser of untrusted bytes, for longer than the
 * test suite does: mutations of real inputs, each parser given the same
 * time. A parser may reject input only with its own SyntaxError subclass
 * (a RangeError is an out-of-bounds read: the bug this is for); push-style
 * decoders may not throw at all; no call may take a second.
 *
 *   deno task fuzz [SECONDS_PER_PARSER] [SEED]
 * @module
 */
import { Btf } from "../lib/binary/btf.ts";
import { ElfFile } from "../lib/binary/elf.ts";
import { HpackDecoder, HpackEncoder } from "../lib/http/hpack.ts";
import { Http1Exchange, loadZlib } from "../lib/http/http1.ts";
import { Http2Connection } from "../lib/http/http2.ts";
import { HttpConversation } from "../lib/http/http_stream.ts";
import { parseLdCache } from "../lib/binary/ld_cache.ts";
import { bash } from "../lib/modules/bash.ts";
import { tls } from "../lib/modules/tls.ts";
import { parseMaps } from "../lib/binary/proc_maps.ts";
import { scanTlsVersion } from "../lib/tls/tls_library.ts";
import { MODULES } from "../lib/modules/mod.ts";
import type { CommonOptions, EventBase, ModuleSpec } from "../lib/core/module_spec.ts";

type AnySpec = ModuleSpec<CommonOptions, EventBase>;

await loadZlib(); // gzip bodies are decoded as in a capture
const seconds = Number(Deno.args[0] ?? 10);
let seed = Number(Deno.args[1] ?? 20261125) >>> 0;

function random(): number {
  // mulberry32
  seed = (seed + 0x6d2b79f5) >>> 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
}

const int = (n: number) => Math.floor(random() * n);

/** A copy of input with a few random edits: flips, cuts, splices, repeats. */
function mutate(input: Uint8Array): Uint8Array {
  let b = input.slice();
  for (let edits = 1 + int(4); edits > 0; edits--) {
    const at = int(Math.max(1, b.length));
    switch (int(5)) {
      case 0:
        if (b.length) b[at] = int(256);
        break;
      case 1:
        if (b.length) b[at] ^= 1 << int(8);
        break;
      case 2:
        b = b.slice(0, at);
        break;
      case 3: {
        const piece = b.slice(int(b.length + 1), int(b.length + 1) + int(64));
        const out = new Uint8Array(b.length + piece.length);
        out.set(b.subarray(0, at));
        out.set(piece, at);
        out.set(b.subarray(at), at + piece.length);
        b = out;
        break;
      }
      default:
        if (b.length >= 4) new DataView(b.buffer).setUint32(int(b.length - 3), int(2 ** 32), true);
    }
  }
  return b;
}

/** Splits bytes at random points, as a capture's chunks would. */
function chunks(b: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < b.length;) {
    const n = 1 + int(64);
    out.push(b.subarray(at, at + n));
    at += n;
  }
  return out;
}

type Target = {
  name: string;
  inputs: Uint8Array[];
  run: (b: Uint8Array) => void;
  strict?: boolean;
};

const te = new TextEncoder();
const bashElf = await Deno.readFile("/usr/bin/bash");
const objects = [bash.object, tls.object];
const h2 = (() => {
  const headers = new HpackEncoder({ huffman: true }).encode([[":method", "GET"], [":path", "/x"]]);
  const frame = (type: number, flags: number, stream: number, payload: Uint8Array) => {
    const f = new Uint8Array(9 + payload.length);
    const v = new DataView(f.buffer);
    v.setUint32(0, payload.length << 8 | type);
    v.setUint8(4, flags);
    v.setUint32(5, stream);
    f.set(payload, 9);
    return f;
  };
  const parts = [
    te.encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    frame(4, 0, 0, new Uint8Array(6)),
    frame(1, 4, 1, headers),
    frame(0, 1, 1, te.encode("body")),
  ];
  const all = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) all.set(p, at), at += p.length;
  return all;
})();
const http1 = te.encode(
  "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n" +
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
);

/** Feeds a module's decoder mutations of a valid record of `struct`/`kind`. */
function decoderTarget(spec: typeof bash | typeof tls, struct: string, kind: string): Target {
  const btf = Btf.fromElf(ElfFile.parse(spec.object));
  const s = btf.struct(struct);
  const record = new Uint8Array(s.size + 16).fill(0x41);
  const view = new DataView(record.buffer);
  view.setUint32(btf.offsetOf("ecap_hdr", "kind"), btf.enumValues("ecap_kind").get(kind)!, true);
  view.setUint32(s.members.get("len")!.offset, 16, true);
  view.setUint32(s.members.get("flags")!.offset, 0, true);
  if (s.members.has("offset")) view.setUint32(s.members.get("offset")!.offset, 0, true);
  // deno-lint-ignore no-explicit-any
  const decoder = (spec as any).decoder({ btf, wallClock: (m: bigint) => m }, {});
  return {
    name: `${spec.name} decoder`,
    inputs: [record],
    run: (b) => {
      decoder.decode(new DataView(b.buffer, b.byteOffset, b.byteLength), 0, b.byteLength);
    },
  };
}

/**
 * Feeds a module's decoder mutations of a record of each kind its object
 * knows (the header's kind set, the rest bytes that look like lengths and
 * text), so every module's decoder is fuzzed, whatever its records are.
 */
function moduleTarget(spec: AnySpec): Target {
  const btf = Btf.fromElf(ElfFile.parse(spec.object));
  const kindAt = btf.offsetOf("ecap_hdr", "kind");
  const inputs = [...btf.enumValues("ecap_kind").values()].map((kind) => {
    const record = new Uint8Array(256);
    for (let i = 0; i < record.length; i++) record[i] = i % 7 === 0 ? 8 : 0x41;
    new DataView(record.buffer).setUint32(kindAt, kind, true);
    return record;
  });
  const decoder = spec.decoder({ btf, wallClock: (m: bigint) => m }, {} as CommonOptions);
  return {
    name: `${spec.name} records`,
    inputs,
    run: (b) => {
      decoder.decode(new DataView(b.buffer, b.byteOffset, b.byteLength), 0, b.byteLength);
    },
  };
}

const targets: Target[] = [
  {
    name: "ElfFile",
    inputs: [bashElf.subarray(0, 65536), ...objects],
    run: (b) => {
      const elf = ElfFile.parse(b);
      elf.symbol("readline");
      void elf.needed;
    },
  },
  {
    name: "Btf",
    inputs: objects.map((o) => ElfFile.parse(o).section(".BTF")!),
    run: (b) => {
      const btf = Btf.parse(b);
      btf.struct("ecap_hdr");
    },
  },
  {
    name: "parseLdCache",
    inputs: [await Deno.readFile("/etc/ld.so.cache")],
    run: (b) => void parseLdCache(b),
  },
  {
    name: "parseMaps",
    inputs: [te.encode(await Deno.readTextFile("/proc/self/maps"))],
    run: (b) => void parseMaps(new TextDecoder().decode(b)),
  },
  {
    name: "scanTlsVersion",
    inputs: [te.encode("x\0OpenSSL 3.0.17 1 Jul 2025\0BoringSSL\0")],
    run: (b) => void scanTlsVersion(b),
  },
  {
    name: "HpackDecoder",
    inputs: [h2.subarray(24 + 9 + 6 + 9, h2.length - 13)],
    run: (b) => void new HpackDecoder().decode(b),
  },
  {
    name: "Http1Exchange",
    strict: true,
    inputs: [http1],
    run: (b) => {
      const x = new Http1Exchange();
      for (const c of chunks(b)) x.push(int(2) ? "request" : "response", c);
      x.end();
    },
  },
  {
    name: "Http2Connection",
    strict: true,
    inputs: [h2],
    run: (b) => {
      const c = new Http2Connection();
      for (const part of chunks(b)) c.push(int(4) ? "client" : "server", part);
      c.end();
    },
  },
  {
    name: "HttpConversation",
    strict: true,
    inputs: [h2, http1],
    run: (b) => {
      const c = new HttpConversation();
      for (const part of chunks(b)) c.push(int(2) ? "out" : "in", part);
      c.end();
    },
  },
  decoderTarget(bash, "text_chunk", "ECAP_KIND_BASH_LINE"),
  decoderTarget(tls, "tls_data", "ECAP_KIND_TLS_DATA"),
  ...Object.values(MODULES).map((m) => moduleTarget(m as unknown as AnySpec)),
];

let failed = 0;
for (const t of targets) {
  const end = performance.now() + seconds * 1000;
  let runs = 0, rejected = 0, slowest = 0;
  while (performance.now() < end) {
    const input = mutate(t.inputs[int(t.inputs.length)]);
    const t0 = performance.now();
    try {
      t.run(input);
    } catch (e) {
      const allowed = !t.strict && e instanceof SyntaxError;
      if (!allowed) {
        failed++;
        console.error(`${t.name}: ${t.strict ? "threw" : "unexpected"} ${e}`);
        break;
      }
      rejected++;
    }
    const ms = performance.now() - t0;
    slowest = Math.max(slowest, ms);
    if (ms > 1000) {
      failed++;
      console.error(`${t.name}: one input took ${Math.round(ms)} ms`);
      break;
    }
    runs++;
  }
  console.log(
    `${t.name.padEnd(18)} ${String(runs).padStart(8)} inputs, ${rejected} rejected, slowest ${
      slowest.toFixed(1)
    } ms`,
  );
}
console.log(failed ? `fuzz: ${failed} parsers failed` : "fuzz: every parser held");
Deno.exit(failed ? 1 : 0);
