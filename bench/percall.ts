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
import { gotls } from "../lib/modules/gotls.ts";
import {
  type BenchOptions,
  compileGoHelper,
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

/** Where probes sit for one write call: uprobe+uretprobe at `entries`, or Go's way. */
interface Sites {
  entries: number[];
  /** Go: uprobes at the function's RET instructions instead of a uretprobe. */
  returns?: number[];
  /** What they are, for the rows. */
  where: string;
}

/** A library whose write call the loop times, and where peers and ecap probe it. */
interface LoopTarget {
  /** Its name in the rows, e.g. "OpenSSL". */
  name: string;
  /** The loop program (bench/NAME.c or .go), built. */
  build(): Promise<string>;
  /** The file the probes go in: the library the loop links, or the loop itself. */
  library(bin: string): Promise<string>;
  /** The public write function: where peers (bpftrace, eCapture) attach. */
  publicWrite: string;
  /** Where peers attach (the public function's entry unless said). */
  peerSites?(lib: string): Promise<Sites>;
  /** Where ecap attaches for a write. */
  ecapSites(lib: string): Promise<Sites>;
  /** ecap's command line for this library and process. */
  ecapArgs(lib: string, pid: number): string[];
}

/** The library whose soname matches, as ldd resolves it for bin. */
async function linked(bin: string, soname: RegExp): Promise<string> {
  return await Deno.realPath(soname.exec((await sh("ldd", [bin])).stdout)?.[1] ?? "");
}

/** Where a gotls probe of ecap's attaches in a Go binary (its spec's own locate). */
async function gotlsSites(path: string, program: string): Promise<number[]> {
  const probe = gotls.probes.find((p) => p.program === program && "locate" in p && p.locate);
  if (!probe || !("locate" in probe) || !probe.locate) throw new Error(`gotls has no ${program}`);
  return (await probe.locate(path)).map((l) => l.offset);
}

const TARGETS: LoopTarget[] = [
  {
    name: "OpenSSL",
    build: () => compileHelper("ssl_loop", ["-lssl", "-lcrypto"]),
    library: (bin) => linked(bin, /libssl\.so\.3 => (\S+)/),
    publicWrite: "SSL_write",
    // the internal write function when it finds one (lib/tls/ssl_internal.ts)
    async ecapSites(lib) {
      const internal = await opensslInternalCalls(lib);
      if (internal) return { entries: [internal.write], where: "ssl_write_internal" };
      return {
        entries: [(await locateSymbol(lib, ["SSL_write"], "libssl"))!.offset],
        where: "SSL_write",
      };
    },
    ecapArgs: (lib, pid) => ["tls", "--libssl", lib, "-p", String(pid)],
  },
  {
    name: "GnuTLS",
    build: () => compileHelper("gnutls_loop", ["-lgnutls"]),
    library: (bin) => linked(bin, /libgnutls\.so\.30 => (\S+)/),
    publicWrite: "gnutls_record_send",
    // send2 alone where send only jumps to it, else both (lib/modules/gnutls.ts)
    async ecapSites(lib) {
      const at = async (f: string) => (await locateSymbol(lib, [f], "libgnutls"))!.offset;
      if (await gnutlsSendForwards(lib)) {
        return { entries: [await at("gnutls_record_send2")], where: "gnutls_record_send2" };
      }
      return {
        entries: [await at("gnutls_record_send"), await at("gnutls_record_send2")],
        where: "gnutls_record_send and send2",
      };
    },
    ecapArgs: (lib, pid) => ["gnutls", "--gnutls", lib, "-p", String(pid)],
  },
  {
    name: "Go",
    build: () => compileGoHelper("go_loop"),
    library: (bin) => Promise.resolve(bin),
    publicWrite: "crypto/tls.(*Conn).Write",
    // uretprobes break Go's moving stacks: peers and ecap alike probe its RETs;
    // ecap enters at the stack check's jump (lib/modules/gotls.ts), peers at the entry
    async ecapSites(bin) {
      return {
        entries: await gotlsSites(bin, "uprobe_go_write"),
        returns: await gotlsSites(bin, "uprobe_go_data_ret"),
        where: "(*Conn).Write's stack-check jump and RETs",
      };
    },
    async peerSites(bin) {
      const entry = await locateSymbol(bin, ["crypto/tls.(*Conn).Write"], "Go");
      return {
        entries: [entry!.offset],
        returns: await gotlsSites(bin, "uprobe_go_data_ret"),
        where: "(*Conn).Write's entry and RETs",
      };
    },
    ecapArgs: (bin, pid) => ["gotls", "--elfpath", bin, "-p", String(pid)],
  },
];

export async function runPerCall(o: BenchOptions): Promise<Row[]> {
  const rows: Row[] = [];
  for (const t of TARGETS) rows.push(...await perCall(o, t));
  return rows;
}

async function perCall(o: BenchOptions, t: LoopTarget): Promise<Row[]> {
  const bin = await t.build();
  const cert = `${o.tmp}/loop-cert.pem`, key = `${o.tmp}/loop-key.pem`;
  await selfSignedCert("localhost", key, cert);
  const lib = await t.library(bin);
  const calls = o.quick ? 5_000 : 100_000;
  const reps = o.quick ? 1 : 3;
  await using loop = new Loop(bin, cert, key);
  await loop.ready();
  await loop.time(calls / 10); // warm up
  o.log(`percall: ${calls} ${t.publicWrite}(${SIZE} B) per round, ${reps} rounds; ${lib}`);

  const publicSites = async (): Promise<Sites> => {
    const loc = await locateSymbol(lib, [t.publicWrite], t.name);
    if (!loc) throw new Error(`${lib} has no ${t.publicWrite}`);
    return { entries: [loc.offset], where: t.publicWrite };
  };
  const peer = await (t.peerSites?.(lib) ?? publicSites());
  const site = await t.ecapSites(lib);
  const sameSite = site.where === peer.where;
  const bare: number[] = [], empty: number[] = [], emptySite: number[] = [], ecap: number[] = [];
  const out = `/dev/shm/ecap-bench-${Deno.pid}-percall`;
  let lost = 0, events = 0;
  /** Time per call minus bare with empty probes at the sites. */
  const emptyAt = async (at: Sites, b: number) => {
    const h = BpfHandle.open(emptyObject, "bench_empty");
    try {
      h.load();
      const pid = loop.pid;
      h.attachUprobeMulti("uprobe_ssl_write", lib, at.entries, { pid });
      if (at.returns) h.attachUprobeMulti("uprobe_ssl_read", lib, at.returns, { pid });
      else h.attachUprobeMulti("uretprobe_ssl_call", lib, at.entries, { retprobe: true, pid });
      return await loop.time(calls) - b;
    } finally {
      h.close();
    }
  };
  for (let rep = 0; rep < reps; rep++) {
    const b = await loop.time(calls);
    bare.push(b);
    empty.push(await emptyAt(peer, b));
    emptySite.push(sameSite ? empty.at(-1)! : await emptyAt(site, b));

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
  // an empty uprobe at entry and a uretprobe, or (Go) uprobes at entry and at every RET
  const probes = (at: Sites) =>
    `empty ${at.returns ? "uprobes" : "uprobe+uretprobe"} at ${at.where}`;
  const row = (figure: string, value: string, baseline = "-", ratio = "-"): Row => ({
    bench,
    figure,
    value,
    baseline,
    ratio,
    target: "-",
  });
  return [
    row(`bare ${t.publicWrite}(${SIZE} B), in memory`, `${fmt(median(bare))} ns`),
    ...sameSite ? [] : [
      row(
        `${probes(site)} (ecap's site) vs at ${peer.where}`,
        `${fmt(es)} ns`,
        `${fmt(e)} ns (${peer.where})`,
        ratioText(es / e),
      ),
    ],
    {
      ...row(`added by ecap vs ${probes(site)}`, `${fmt(c)} ns`, `${fmt(es)} ns (empty)`),
      ratio: ratioText(r),
      target: "<= 1.2",
      pass: r <= 1.2,
    },
    ...sameSite ? [] : [
      row(
        `added by ecap vs ${probes(peer)}`,
        `${fmt(c)} ns`,
        `${fmt(e)} ns (empty)`,
        ratioText(c / e),
      ),
    ],
    {
      ...row("ecap --calls: calls captured; records lost", `${events}; ${lost} lost`),
      baseline: `${calls * reps} calls`,
      ratio: ratioText(events / (calls * reps)),
      target: "= 1; 0",
      pass: events === calls * reps && lost === 0,
    },
  ];
}
