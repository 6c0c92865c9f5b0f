/**
 * The exchange view (ecap tls's default) decodes each call from the batch
 * the ring was read into, and that batch is overwritten by the next read:
 * what it keeps must be its own. Records are built at the offsets the
 * object's BTF gives and decoded by the tls module's own decoder; the batch
 * is scribbled over after every record.
 * @module
 */
import assert from "node:assert/strict";
import { Btf } from "../../lib/binary/btf.ts";
import { ElfFile } from "../../lib/binary/elf.ts";
import { tls, type TlsEvent } from "../../lib/modules/tls.ts";
import type { RecordDecoder } from "../../lib/core/module_spec.ts";

const btf = Btf.fromElf(ElfFile.parse(tls.object));
const hdr = btf.struct("ecap_hdr");
const rec = btf.struct("tls_data");
const flags = btf.enumValues("tls_data_flags");
const READ = flags.get("TLS_DATA_READ")!, LAST = flags.get("TLS_DATA_LAST")!;
const DATA = btf.enumValues("ecap_kind").get("ECAP_KIND_TLS_DATA")!;
const CHUNK = 16384;

/** One batch buffer, reused for every record as the ring reader's is. */
const batch = new Uint8Array(1 << 20);
const view = new DataView(batch.buffer);
let clock = 1_000_000_000n;

/** Decodes one call (its chunks, one record each), then scribbles over the batch. */
function call(
  decoder: RecordDecoder<TlsEvent>,
  conn: number,
  direction: "read" | "write",
  bytes: Uint8Array,
): TlsEvent[] {
  const out: TlsEvent[] = [];
  const m = (name: string, s = rec) => s.members.get(name)!.offset;
  for (let o = 0; o === 0 || o < bytes.length; o += CHUNK) {
    const part = bytes.subarray(o, o + CHUNK);
    batch.fill(0, 0, rec.size);
    view.setUint32(m("kind", hdr), DATA, true);
    view.setUint32(m("pid", hdr), 4242, true);
    view.setUint32(m("tid", hdr), 4242, true);
    view.setBigUint64(m("ts_ns", hdr), clock += 1000n, true);
    batch.set(new TextEncoder().encode("client"), m("comm", hdr));
    view.setBigUint64(m("conn"), BigInt(0x7000 + conn), true);
    view.setUint32(m("len"), part.length, true);
    view.setUint32(m("offset"), o, true);
    view.setUint32(m("total"), bytes.length, true);
    const last = o + CHUNK >= bytes.length ? LAST : 0;
    view.setUint32(m("flags"), (direction === "read" ? READ : 0) | last, true);
    view.setInt32(m("fd"), 7, true);
    view.setUint16(m("family"), 2, true);
    view.setUint16(m("lport"), 40000 + conn, true);
    view.setUint16(m("rport"), 8443, true);
    batch.set([127, 0, 0, 1], m("laddr"));
    batch.set([127, 0, 0, 1], m("raddr"));
    batch.set(part, rec.size);
    out.push(...decoder.decode(view, 0, rec.size + part.length));
    batch.fill(0x5a); // the next read of the ring
  }
  return out;
}

function exchangeView() {
  return tls.decoder({ btf, wallClock: (ns) => ns }, { exchangeTimeout: 30 } as never);
}

const text = (s: string) => new TextEncoder().encode(s);

function randomBody(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
  return b;
}

Deno.test("the exchange view keeps its own copy of bodies and headers read from a reused batch", () => {
  const decoder = exchangeView();
  const upload = randomBody(5000);
  const download = randomBody(40000); // three records: 16 KiB chunks of one call
  const events = [
    ...call(
      decoder,
      1,
      "write",
      text("POST /up?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5000\r\n\r\n"),
    ),
    ...call(decoder, 1, "write", upload), // one record: lent to the parser
    ...call(
      decoder,
      1,
      "read",
      text(`HTTP/1.1 200 OK\r\nX-Tag: abc\r\nContent-Length: ${download.length}\r\n\r\n`),
    ),
    ...call(decoder, 1, "read", download.subarray(0, 1000)),
    ...call(decoder, 1, "read", download.subarray(1000)),
    ...decoder.flush(),
  ];
  const exchanges = events.filter((e) => e.kind === "http");
  assert.equal(exchanges.length, 1, JSON.stringify(events.map((e) => e.kind)));
  const x = exchanges[0] as unknown as {
    request: { path: string; body: Uint8Array; headers: [string, string][] };
    response: { status: number; body: Uint8Array; headers: [string, string][] };
  };
  assert.equal(x.request.path, "/up?x=1");
  assert.deepEqual(x.request.body, upload);
  assert.equal(x.response.status, 200);
  assert.ok(x.response.headers.some(([k, v]) => k.toLowerCase() === "x-tag" && v === "abc"));
  assert.deepEqual(x.response.body, download);
});

Deno.test("the exchange view keeps its own copy of bytes that are not HTTP", () => {
  const decoder = exchangeView();
  const first = randomBody(3000), second = randomBody(2000);
  const events = [
    ...call(decoder, 2, "write", first),
    ...call(decoder, 2, "write", second),
    ...decoder.flush(),
  ];
  const streams = events.filter((e) => e.kind === "stream") as unknown as { data: Uint8Array }[];
  const got = streams.flatMap((s) => [...s.data]);
  assert.deepEqual(new Uint8Array(got), new Uint8Array([...first, ...second]));
});
