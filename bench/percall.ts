/**
 * Benchmark 2: the cost ecap adds to one captured call. bench/ssl_loop.c
 * calls SSL_write (64 bytes, memory BIO) in a loop; one process is timed
 * bare, with an empty uprobe+uretprobe on SSL_write (where peers attach),
 * with one at ecap's own site (the internal function SSL_write calls, see
 * lib/tls/ssl_internal.ts; attached as ecap attaches: uprobe.multi with the
 * process's pid), and under `ecap tls -p PID`, interleaved. Cost = time per
 * call minus the bare time of the same round.
 * @module
 */
import emptyObject from "../build/bench_empty.bpf.o" with { type: "bytes" };
import { BpfHandle } from "../lib/core/ffi.ts";
import { opensslInternalCalls } from "../lib/tls/ssl_internal.ts";
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

export async function runPerCall(o: BenchOptions): Promise<Row[]> {
  const bin = await compileHelper("ssl_loop", ["-lssl", "-lcrypto"]);
  const cert = `${o.tmp}/loop-cert.pem`, key = `${o.tmp}/loop-key.pem`;
  await selfSignedCert("localhost", key, cert);
  const ldd = await sh("ldd", [bin]);
  const libssl = await Deno.realPath(/libssl\.so\.3 => (\S+)/.exec(ldd.stdout)?.[1] ?? "");
  const loc = await locateSymbol(libssl, ["SSL_write"], "libssl");
  if (!loc) throw new Error(`${libssl} has no SSL_write`);
  const calls = o.quick ? 5_000 : 100_000;
  const reps = o.quick ? 1 : 3;
  await using loop = new Loop(bin, cert, key);
  await loop.ready();
  await loop.time(calls / 10); // warm up
  o.log(`percall: ${calls} SSL_write(${SIZE} B) per round, ${reps} rounds; ${libssl}`);

  // ecap's own site: the internal write function when it finds one (lib/tls/ssl_internal.ts)
  const internal = await opensslInternalCalls(libssl);
  const site = internal ? { path: libssl, offset: internal.write } : loc;
  const bare: number[] = [], empty: number[] = [], emptySite: number[] = [], ecap: number[] = [];
  const out = `/dev/shm/ecap-bench-${Deno.pid}-percall`;
  let lost = 0, events = 0;
  /** Time per call minus bare with an empty uprobe+uretprobe at offset. */
  const emptyAt = async (at: { path: string; offset: number }, b: number) => {
    const h = BpfHandle.open(emptyObject, "bench_empty");
    try {
      h.load();
      h.attachUprobeMulti("uprobe_ssl_write", at.path, [at.offset], { pid: loop.pid });
      h.attachUprobeMulti("uretprobe_ssl_call", at.path, [at.offset], {
        retprobe: true,
        pid: loop.pid,
      });
      return await loop.time(calls) - b;
    } finally {
      h.close();
    }
  };
  for (let rep = 0; rep < reps; rep++) {
    const b = await loop.time(calls);
    bare.push(b);
    empty.push(await emptyAt(loc, b));
    emptySite.push(internal ? await emptyAt(site, b) : empty.at(-1)!);

    await Deno.remove(out).catch(() => {});
    const e = await Ecap.start(["tls", "--libssl", libssl, "-p", String(loop.pid), "-o", out]);
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
      `  round ${rep + 1}: bare ${fmt(b)} ns, +empty at SSL_write ${fmt(empty.at(-1)!)} ns, ` +
        `+empty at ecap's site ${fmt(emptySite.at(-1)!)} ns, +ecap ${fmt(ecap.at(-1)!)} ns ` +
        `(ecap: ${s?.events} events, ${s?.lost} lost)`,
    );
  }
  const e = median(empty), es = median(emptySite), c = median(ecap), r = c / es;
  const where = internal ? "ssl_write_internal" : "SSL_write";
  return [
    {
      bench: "2 per call",
      figure: `bare SSL_write(${SIZE} B), memory BIO`,
      value: `${fmt(median(bare))} ns`,
      baseline: "-",
      ratio: "-",
      target: "-",
    },
    {
      bench: "2 per call",
      figure: `empty uprobe+uretprobe at ${where} (ecap's site) vs at SSL_write`,
      value: `${fmt(es)} ns`,
      baseline: `${fmt(e)} ns (SSL_write)`,
      ratio: ratioText(es / e),
      target: "-",
    },
    {
      bench: "2 per call",
      figure: `added by ecap tls vs empty uprobe+uretprobe at ${where}`,
      value: `${fmt(c)} ns`,
      baseline: `${fmt(es)} ns (empty)`,
      ratio: ratioText(r),
      target: "<= 1.2",
      pass: r <= 1.2,
    },
    {
      bench: "2 per call",
      figure: "added by ecap tls vs empty uprobe+uretprobe at SSL_write",
      value: `${fmt(c)} ns`,
      baseline: `${fmt(e)} ns (empty)`,
      ratio: ratioText(c / e),
      target: "-",
    },
    {
      bench: "2 per call",
      figure: "ecap tls events lost during the loop",
      value: `${lost} of ${lost + events}`,
      baseline: "-",
      ratio: "-",
      target: "-",
    },
  ];
}
