/**
 * The bash decoder on records built at the offsets the object's BTF gives,
 * so the test breaks if kern/ecap.h and the decoder disagree.
 * @module
 */
import assert from "node:assert/strict";
import { Btf } from "../../lib/binary/btf.ts";
import { ElfFile } from "../../lib/binary/elf.ts";
import { bash, type BashEvent } from "../../lib/modules/bash.ts";
import { RecordError } from "../../lib/core/record_header.ts";

const btf = Btf.fromElf(ElfFile.parse(bash.object));
const kinds = btf.enumValues("ecap_kind");
const hdr = btf.struct("ecap_hdr");
const lineRec = btf.struct("text_chunk");
const statusRec = btf.struct("bash_status");
const ends = btf.enumValues("bash_end");
const flags = btf.enumValues("text_chunk_flags");

function header(view: DataView, kind: string, pid: number) {
  view.setUint32(hdr.members.get("kind")!.offset, kinds.get(kind)!, true);
  view.setUint32(hdr.members.get("pid")!.offset, pid, true);
  view.setUint32(hdr.members.get("tid")!.offset, pid, true);
  view.setUint32(hdr.members.get("uid")!.offset, 1000, true);
  view.setBigUint64(hdr.members.get("ts_ns")!.offset, 5_000_000_000n, true);
  new Uint8Array(view.buffer).set(
    new TextEncoder().encode("bash"),
    hdr.members.get("comm")!.offset,
  );
}

function line(pid: number, text: string, flag = 0): DataView {
  const data = new TextEncoder().encode(text);
  const view = new DataView(new ArrayBuffer(lineRec.size + data.length));
  header(view, "ECAP_KIND_BASH_LINE", pid);
  view.setUint32(lineRec.members.get("len")!.offset, data.length, true);
  view.setUint32(lineRec.members.get("flags")!.offset, flag, true);
  new Uint8Array(view.buffer).set(data, lineRec.size);
  return view;
}

function status(pid: number, code: number, end: string): DataView {
  const view = new DataView(new ArrayBuffer(statusRec.size));
  header(view, "ECAP_KIND_BASH_STATUS", pid);
  view.setInt32(statusRec.members.get("status")!.offset, code, true);
  view.setUint32(statusRec.members.get("end")!.offset, ends.get(end)!, true);
  return view;
}

function decoder(opts = {}) {
  const d = bash.decoder({ btf, wallClock: (mono) => mono + 1_000n }, opts);
  return (v: DataView): BashEvent[] => d.decode(v, 0, v.byteLength);
}

Deno.test("kern/ecap.h records are in the bash object's BTF", () => {
  assert.equal(hdr.members.get("comm")!.size, 16);
  assert.equal(hdr.size % 8, 0);
  assert.ok(lineRec.members.get("hdr")!.offset === 0 && statusRec.members.get("hdr")!.offset === 0);
  assert.deepEqual([...ends.keys()].sort(), [
    "BASH_END_EXEC",
    "BASH_END_EXIT",
    "BASH_END_NONE",
    "BASH_END_RETURN",
    "BASH_END_SYNTAX",
  ]);
});

Deno.test("bash decoder joins chunks of one line and reports its status", () => {
  const decode = decoder();
  const more = flags.get("TEXT_MORE")!;
  assert.deepEqual(decode(line(7, "echo ab", more)), []);
  assert.deepEqual(decode(line(7, "cd", 0)), []);
  const [ev] = decode(status(7, 0, "BASH_END_RETURN"));
  assert.equal(ev.line, "echo abcd");
  assert.equal(ev.status, 0);
  assert.equal(ev.end, "return");
  assert.equal(ev.timeNs, 5_000_001_000n);
  assert.equal(ev.comm, "bash");
  assert.equal(ev.uid, 1000);
});

Deno.test("bash decoder keeps shells apart and joins multi-line commands with newlines", () => {
  const decode = decoder();
  decode(line(1, "for i in 1; do"));
  decode(line(2, "true"));
  decode(line(1, "echo $i; done"));
  assert.deepEqual(decode(status(2, 0, "BASH_END_RETURN")).map((e) => e.line), ["true"]);
  assert.deepEqual(decode(status(1, 0, "BASH_END_RETURN")).map((e) => e.line), [
    "for i in 1; do\necho $i; done",
  ]);
});

Deno.test("bash decoder drops empty lines, marks cut lines and filters by status", () => {
  const decode = decoder({ errnumber: 1 });
  decode(line(3, ""));
  assert.deepEqual(decode(status(3, 0, "BASH_END_NONE")), []);
  decode(line(3, "false", flags.get("TEXT_CUT")!));
  const [ev] = decode(status(3, 1, "BASH_END_RETURN"));
  assert.equal(ev.truncated, true);
  decode(line(3, "true"));
  assert.deepEqual(decode(status(3, 0, "BASH_END_RETURN")), []);
});

Deno.test("bash decoder rejects records shorter than they claim", () => {
  const decode = decoder();
  const v = line(4, "echo hi");
  assert.throws(() => decode(new DataView(v.buffer, 0, lineRec.size + 2)), RecordError);
  assert.throws(() => decode(new DataView(v.buffer, 0, 10)), RecordError);
  const bad = status(4, 0, "BASH_END_RETURN");
  bad.setUint32(hdr.members.get("kind")!.offset, 999, true);
  assert.throws(() => decode(bad), RecordError);
});

Deno.test("bash decoder throws only RecordError on random bytes", () => {
  let seed = 12345;
  const rand = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  const decode = decoder();
  for (let i = 0; i < 3000; i++) {
    const bytes = new Uint8Array(Math.floor(rand() * 200));
    for (let j = 0; j < bytes.length; j++) bytes[j] = rand() * 256;
    if (bytes.length >= 4 && rand() < 0.5) bytes[0] = kinds.get("ECAP_KIND_BASH_LINE")!;
    try {
      decode(new DataView(bytes.buffer));
    } catch (e) {
      assert.ok(e instanceof RecordError, String(e));
    }
  }
});
