/**
 * Part of benchmark 3: what the text path costs per event in user space,
 * without the kernel or a target in the way. Records an HTTPS conversation
 * would produce (wrk's request and nginx's response, each seen by both
 * ends, 50 connections) are laid out as in a ring batch, then decoded
 * (lib/tls/tls_family.ts), formatted and encoded into an output sink writing
 * to /dev/null, as `ecap tls` does; with --web, also kept as rows of the
 * live view and serialised for one page. Reported: µs of one CPU per event.
 * @module
 */
import tlsObject from "../build/tls.bpf.o" with { type: "bytes" };
import { Btf } from "../lib/binary/btf.ts";
import { ElfFile } from "../lib/binary/elf.ts";
import { loadZlib } from "../lib/http/http1.ts";
import { loadCrypto } from "../lib/tls/keylog.ts";
import { OutputSink } from "../lib/core/output_sink.ts";
import { tls, type TlsOptions } from "../lib/modules/tls.ts";
import { formatTlsEvent } from "../lib/tls/tls_format.ts";
import { TLS_VIEW } from "../lib/tls/tls_view.ts";
import { WebHistory } from "../lib/web/web_history.ts";
import { type BenchOptions, fmt, median, ratioText, type Row } from "./_util.ts";

const CONNECTIONS = 50;

/** A batch of tls_data records (each {u32 size, u32 0, record, pad}) for responses of bodyBytes. */
function conversationBatch(btf: Btf, bodyBytes: number): { batch: Uint8Array; records: number } {
  const s = btf.struct("tls_data");
  const at = (m: string) => s.members.get(m)!.offset;
  const hs = btf.struct("ecap_hdr");
  const hat = (m: string) => hs.members.get(m)!.offset;
  const kind = btf.enumValues("ecap_kind").get("ECAP_KIND_TLS_DATA")!;
  const f = btf.enumValues("tls_data_flags");
  const READ = f.get("TLS_DATA_READ")!, LAST = f.get("TLS_DATA_LAST")!;
  const enc = new TextEncoder();
  const body = new Uint8Array(bodyBytes);
  for (let i = 0; i < body.length; i += 65536) {
    crypto.getRandomValues(body.subarray(i, i + 65536));
  }
  const req = enc.encode("GET /file.bin HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n\r\n");
  const head = enc.encode(
    "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 15:00:00 GMT\r\n" +
      `Content-Type: application/octet-stream\r\nContent-Length: ${bodyBytes}\r\n` +
      "Last-Modified: Wed, 25 Nov 2026 14:00:00 GMT\r\nConnection: keep-alive\r\n" +
      'ETag: "6b06f2dc-400"\r\nAccept-Ranges: bytes\r\n\r\n',
  );
  const res = new Uint8Array(head.length + body.length);
  res.set(head);
  res.set(body, head.length);
  const batch = new Uint8Array(16 << 20);
  const view = new DataView(batch.buffer);
  let off = 0, records = 0;
  const put = (pid: number, conn: number, read: boolean, data: Uint8Array, lport: number) => {
    for (let o = 0; o < data.length; o += 16384) {
      const part = data.subarray(o, o + 16384);
      const len = s.size + part.length;
      const b = off + 8;
      view.setUint32(off, len, true);
      view.setUint32(b + hat("kind"), kind, true);
      view.setUint32(b + hat("pid"), pid, true);
      view.setUint32(b + hat("tid"), pid, true);
      view.setBigUint64(b + hat("ts_ns"), BigInt(records) * 1000n, true);
      batch.set(enc.encode(pid === 1 ? "wrk" : "nginx"), b + hat("comm"));
      view.setBigUint64(b + at("conn"), BigInt(0x5555_0000 + conn * 64), true);
      view.setUint32(b + at("len"), part.length, true);
      view.setUint32(b + at("offset"), o, true);
      view.setUint32(b + at("total"), data.length, true);
      view.setUint32(
        b + at("flags"),
        (read ? READ : 0) | (o + 16384 >= data.length ? LAST : 0),
        true,
      );
      view.setInt32(b + at("fd"), 10 + conn, true);
      view.setUint16(b + at("family"), 2, true);
      view.setUint16(b + at("lport"), lport, true);
      view.setUint16(b + at("rport"), lport === 8443 ? 40000 + conn : 8443, true);
      batch.set([127, 0, 0, 1], b + at("laddr"));
      batch.set([127, 0, 0, 1], b + at("raddr"));
      batch.set(part, b + s.size);
      off = b + ((len + 7) & ~7);
      records++;
    }
  };
  for (let i = 0; off < batch.length - 4 * (res.length + 4096) - 4096; i++) {
    const c = i % CONNECTIONS;
    put(1, c, false, req, 40000 + c);
    put(2, c, true, req, 8443);
    put(2, c, false, res, 8443);
    put(1, c, true, res, 40000 + c);
  }
  return { batch: batch.subarray(0, off), records };
}

/**
 * µs of CPU per read/write call of the text path, for responses of
 * bodyBytes: each call an event (--calls), or calls paired into exchanges.
 */
function usPerCall(
  btf: Btf,
  bodyBytes: number,
  rounds: number,
  shape: "calls" | "exchanges" | "web",
): number {
  const { batch } = conversationBatch(btf, bodyBytes);
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  const ctx = { btf, wallClock: (m: bigint) => m + 1_764_000_000n * 10n ** 9n };
  // the tls module's own decoders: what `ecap tls --calls` and `ecap tls` run
  const decoderOf = (opts: TlsOptions) => tls.decoder(ctx, opts);
  const callsOnly = decoderOf({ calls: true });
  const decoder = shape === "calls" ? callsOnly : decoderOf({});
  let calls = 0;
  using devnull = Deno.openSync("/dev/null", { write: true });
  const sink = new OutputSink(devnull, "/dev/null");
  // --web: each event kept as a row too, and sent to one page as the server does
  const history = shape === "web" ? new WebHistory(TLS_VIEW) : undefined;
  let sent = 0;
  const run = () => {
    // a batch's text is its events' joined, as lib/cli/run_capture.ts makes it
    let events = 0, parts: string[] = [], length = 0;
    for (let p = 0; p < batch.length;) {
      const len = view.getUint32(p, true);
      const decoded = decoder.decode(view, p + 8, len);
      for (const ev of decoded) {
        const text = formatTlsEvent(ev, { model: "text" }) + "\n";
        parts.push(text);
        length += text.length;
        events++;
      }
      if (history && decoded.length) sent += JSON.stringify(history.add(decoded)).length;
      p += 8 + ((len + 7) & ~7);
      if (length > 1 << 18) sink.write(parts.join("")), parts = [], length = 0;
    }
    sink.write(parts.join(""));
    return events;
  };
  // the calls the batch holds: what the per-call view makes events of
  for (let p = 0; p < batch.length;) {
    const len = view.getUint32(p, true);
    calls += callsOnly.decode(view, p + 8, len).length;
    p += 8 + ((len + 7) & ~7);
  }
  run(); // warm up: the JIT, the connections
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const t0 = performance.now();
    run();
    times.push((performance.now() - t0) * 1000 / calls);
  }
  if (sent < 0) throw new Error("unreachable: keeps the rows' JSON from being optimised away");
  return median(times);
}

export async function runDecode(o: BenchOptions): Promise<Row[]> {
  await Promise.all([loadZlib(), loadCrypto()]);
  const btf = Btf.fromElf(ElfFile.parse(tlsObject));
  const rows: Row[] = [];
  for (const [label, bytes] of [["1 KiB", 1024], ["64 KiB", 65536]] as const) {
    const calls = usPerCall(btf, bytes, o.quick ? 1 : 5, "calls");
    const exchanges = usPerCall(btf, bytes, o.quick ? 1 : 5, "exchanges");
    const web = usPerCall(btf, bytes, o.quick ? 1 : 5, "web");
    o.log(
      `  decode ${label} responses: ${fmt(calls)} us per call (--calls), ` +
        `${fmt(exchanges)} us per call (exchanges)`,
    );
    rows.push({
      bench: "3 text path",
      figure: `decode + format + encode per call, ${label} responses: exchanges vs --calls`,
      value: `${fmt(exchanges)} µs`,
      baseline: `${fmt(calls)} µs`,
      ratio: ratioText(exchanges / calls),
      target: "-",
    });
    o.log(`  decode ${label} responses with --web: ${fmt(web)} us per call`);
    rows.push({
      bench: "3 text path",
      figure: `--web's cost: text and a live page vs text alone, ${label} responses`,
      value: `${fmt(web)} µs`,
      baseline: `${fmt(exchanges)} µs`,
      ratio: ratioText(web / exchanges),
      target: "-",
    });
  }
  return rows;
}
