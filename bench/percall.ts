/**
 * Benchmark 2: the cost ecap adds to one captured call. bench/ssl_loop.c
 * calls SSL_write (64 bytes, memory BIO) in a loop, bench/gnutls_loop.c
 * gnutls_record_send; one process is timed bare, with an empty
 * uprobe+uretprobe on the public write function (where peers attach), with
 * them at ecap's own sites (OpenSSL: the internal function SSL_write calls;
 * GnuTLS: gnutls_record_send2; see lib/tls/ssl_internal.ts; attached as ecap
 * attaches: uprobe.multi with the process's pid), and under ecap with
 * `-p PID`, interleaved. Cost = time per call minus the bare time of the
 * same round.
 * @module
 */
import emptyObject from "../build/bench_empty.bpf.o" with { type: "bytes" };
import { BpfHandle } from "../lib/core/ffi.ts";
import { gnutlsSendForwards, opensslInternalCalls } from "../lib/tls/ssl_internal.ts";
import { locateSymbol } from "../lib/core/targets.ts";
import {
  type BenchOptions,
  compileHelper,
  Ecap,
  fmt,
  median,
  ratioText,
  type Row,
  selfSignedCert,
  sh,
} from "./_util.ts";

const SIZE = 64;

/** A running ssl_loop, driven a line at a time. */
class Loop implements AsyncDisposable {
  #writer: WritableStreamDefaultWriter<Uint8Array>;
  #child: Deno.ChildProcess;
  #out = "";
  #reader: ReadableStreamDefaultReader<string>;

  constructor(bin: string, cert: string, key: string) {
    this.#child = new Deno.Command(bin, {
      args: [cert, key, String(SIZE)],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#writer = this.#child.stdin.getWriter();
    this.#reader = this.#child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  }

  get pid() {
    return this.#child.pid;
  }

  async #line(): Promise<string> {
    while (!this.#out.includes("\n")) {
      const { value, done } = await this.#reader.read();
      if (done) throw new Error("ssl_loop exited");
      this.#out += value;
    }
    const i = this.#out.indexOf("\n");
    const l = this.#out.slice(0, i);
    this.#out = this.#out.slice(i + 1);
    return l;
  }

  async ready() {
    const l = await this.#line();
    if (l !== "ready") throw new Error(`ssl_loop: ${l}`);
  }

  /** ns per SSL_write over n calls. */
  async time(n: number): Promise<number> {
    await this.#writer.write(new TextEncoder().encode(`${n}\n`));
    const l = await this.#line();
    const m = /ns_per_call=([\d.]+)/.exec(l);
    if (!m) throw new Error(`ssl_loop: ${l}`);
    return Number(m[1]);
  }

  async [Symbol.asyncDispose]() {
    await this.#writer.close().catch(() => {});
    await this.#child.status;
    await this.#reader.cancel().catch(() => {});
  }
}

/** A library whose write call the loop times, and where peers and ecap probe it. */
interface LoopTarget {
  /** Its name in the rows, e.g. "OpenSSL". */
  name: string;
  /** bench/NAME.c and the libraries it links. */
  helper: string;
  link: string[];
  /** The library's soname as ldd prints it. */
  soname: RegExp;
  /** The public write function: where peers (bpftrace, eCapture) attach. */
  publicWrite: string;
  /** Where ecap attaches for a write, as file offsets, and what they are. */
  ecapSites(lib: string): Promise<{ offsets: number[]; where: string }>;
  /** ecap's command line for this library and process. */
  ecapArgs(lib: string, pid: number): string[];
}

const TARGETS: LoopTarget[] = [
  {
    name: "OpenSSL",
    helper: "ssl_loop",
    link: ["-lssl", "-lcrypto"],
    soname: /libssl\.so\.3 => (\S+)/,
    publicWrite: "SSL_write",
    // the internal write function when it finds one (lib/tls/ssl_internal.ts)
    async ecapSites(lib) {
      const internal = await opensslInternalCalls(lib);
      if (internal) return { offsets: [internal.write], where: "ssl_write_internal" };
      return {
        offsets: [(await locateSymbol(lib, ["SSL_write"], "libssl"))!.offset],
        where: "SSL_write",
      };
    },
    ecapArgs: (lib, pid) => ["tls", "--libssl", lib, "-p", String(pid)],
  },
  {
    name: "GnuTLS",
    helper: "gnutls_loop",
    link: ["-lgnutls"],
    soname: /libgnutls\.so\.30 => (\S+)/,
    publicWrite: "gnutls_record_send",
    // send2 alone where send only jumps to it, else both (lib/modules/gnutls.ts)
    async ecapSites(lib) {
      const at = async (f: string) => (await locateSymbol(lib, [f], "libgnutls"))!.offset;
      if (await gnutlsSendForwards(lib)) {
        return { offsets: [await at("gnutls_record_send2")], where: "gnutls_record_send2" };
      }
      return {
        offsets: [await at("gnutls_record_send"), await at("gnutls_record_send2")],
        where: "gnutls_record_send and send2",
      };
    },
    ecapArgs: (lib, pid) => ["gnutls", "--gnutls", lib, "-p", String(pid)],
  },
];

export async function runPerCall(o: BenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  for (const t of TARGETS) rows.push(...await perCall(o, t));
  return rows;
}

async function perCall(o: BenchOptions, t: LoopTarget): Promise<Row[]> {
  const bin = await compileHelper(t.helper, t.link);
  const cert = `${o.tmp}/loop-cert.pem`, key = `${o.tmp}/loop-key.pem`;
  await selfSignedCert("localhost", key, cert);
  const ldd = await sh("ldd", [bin]);
  const lib = await Deno.realPath(t.soname.exec(ldd.stdout)?.[1] ?? "");
  const loc = await locateSymbol(lib, [t.publicWrite], t.name);
  if (!loc) throw new Error(`${lib} has no ${t.publicWrite}`);
  const calls = o.quick ? 5_000 : 100_000;
  const reps = o.quick ? 1 : 3;
  await using loop = new Loop(bin, cert, key);
  await loop.ready();
  await loop.time(calls / 10); // warm up
  o.log(`percall: ${calls} ${t.publicWrite}(${SIZE} B) per round, ${reps} rounds; ${lib}`);

  const site = await t.ecapSites(lib);
  const atPublic = [loc.offset];
  const sameSite = site.offsets.length === 1 && site.offsets[0] === loc.offset;
  const bare: number[] = [], empty: number[] = [], emptySite: number[] = [], ecap: number[] = [];
  const out = `/dev/shm/ecap-bench-${Deno.pid}-percall`;
  let lost = 0, events = 0;
  /** Time per call minus bare with an empty uprobe+uretprobe at each offset. */
  const emptyAt = async (offsets: number[], b: number) => {
    const h = BpfHandle.open(emptyObject, "bench_empty");
    try {
      h.load();
      h.attachUprobeMulti("uprobe_ssl_write", lib, offsets, { pid: loop.pid });
      h.attachUprobeMulti("uretprobe_ssl_call", lib, offsets, { retprobe: true, pid: loop.pid });
      return await loop.time(calls) - b;
    } finally {
      h.close();
    }
  };
  for (let rep = 0; rep < reps; rep++) {
    const b = await loop.time(calls);
    bare.push(b);
    empty.push(await emptyAt(atPublic, b));
    emptySite.push(sameSite ? empty.at(-1)! : await emptyAt(site.offsets, b));

    await Deno.remove(out).catch(() => {});
    // --calls: an event per call, so that every call is seen to be captured
    const e = await Ecap.start([...t.ecapArgs(lib, loop.pid), "--calls", "-o", out]);
    let s;
    try {
      ecap.push(await loop.time(calls) - b);
      s = await e.finish();
    } finally {
      await e.stop("SIGKILL");
      await Deno.remove(out).catch(() => {});
    }
    lost += s.lost;
    events += s.events;
    o.log(
      `  round ${rep + 1}: bare ${fmt(b)} ns, +empty at ${t.publicWrite} ${
        fmt(empty.at(-1)!)
      } ns, ` +
        `+empty at ecap's site ${fmt(emptySite.at(-1)!)} ns, +ecap ${fmt(ecap.at(-1)!)} ns ` +
        `(ecap: ${s?.events} events, ${s?.lost} lost)`,
    );
  }
  const e = median(empty), es = median(emptySite), c = median(ecap), r = c / es;
  const bench = `2 per call, ${t.name}`;
  return [
    {
      bench,
      figure: `bare ${t.publicWrite}(${SIZE} B), in memory`,
      value: `${fmt(median(bare))} ns`,
      baseline: "-",
      ratio: "-",
      target: "-",
    },
    {
      bench,
      figure: `empty uprobe+uretprobe at ${site.where} (ecap's site) vs at ${t.publicWrite}`,
      value: `${fmt(es)} ns`,
      baseline: `${fmt(e)} ns (${t.publicWrite})`,
      ratio: ratioText(es / e),
      target: "-",
    },
    {
      bench,
      figure: `added by ecap vs empty uprobe+uretprobe at ${site.where}`,
      value: `${fmt(c)} ns`,
      baseline: `${fmt(es)} ns (empty)`,
      ratio: ratioText(r),
      target: "<= 1.2",
      pass: r <= 1.2,
    },
    {
      bench,
      figure: `added by ecap vs empty uprobe+uretprobe at ${t.publicWrite}`,
      value: `${fmt(c)} ns`,
      baseline: `${fmt(e)} ns (empty)`,
      ratio: ratioText(c / e),
      target: "-",
    },
    {
      bench,
      figure: "ecap --calls: calls captured; records lost",
      value: `${events}; ${lost} lost`,
      baseline: `${calls * reps} calls`,
      ratio: ratioText(events / (calls * reps)),
      target: "= 1; 0",
      pass: events === calls * reps && lost === 0,
    },
  ];
}
