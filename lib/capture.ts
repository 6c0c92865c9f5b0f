/**
 * Runs one module: opens its object, sets its filters, loads it, attaches
 * its probes, and yields decoded events until stopped. Events already in the
 * ring buffer when it stops are still delivered.
 * @module
 */
import { Btf } from "./btf.ts";
import { ElfFile } from "./elf.ts";
import { EcapError } from "./errors.ts";
import { BpfHandle, monotonicNs } from "./ffi.ts";
import type {
  CommonOptions,
  EventBase,
  ModuleSpec,
  ProbeSpec,
  RecordDecoder,
} from "./module_spec.ts";
import { bool, u32 } from "./module_spec.ts";
import { RecordError } from "./record_header.ts";
import { locateSymbol } from "./targets.ts";

/** Bytes copied out of the ring per FFI call. */
const BATCH_BYTES = 4 << 20;
/** How long one poll waits before checking the deadline again. */
const POLL_MS = 200;
const DEFAULT_RING_BYTES = 8 << 20;

/** Counters of a capture: what was delivered, and what was not. */
export interface CaptureStats {
  /** Records the kernel wrote to the ring buffer. */
  records: number;
  /** Records the kernel could not write (ring buffer full), per CPU. */
  lostPerCpu: number[];
  /** Sum of lostPerCpu. */
  lost: number;
  /** Records cut at a documented cap. */
  truncated: number;
  /** Records user space could not decode. */
  malformed: number;
  /** Events yielded. */
  events: number;
}

/** One attached probe, as reported to the user. */
export interface AttachedProbe {
  program: string;
  kind: ProbeSpec["kind"];
  /** "path:symbol" for uprobes, the tracepoint name otherwise. */
  where: string;
}

/** The ring buffer's size must be a power of two of at least a page. */
function ringBytes(requested?: number): number {
  if (requested === undefined) return DEFAULT_RING_BYTES;
  if (!Number.isInteger(requested) || requested < 4096 || requested > (1 << 30)) {
    throw new EcapError(`Invalid ring buffer size ${requested}: expected 4 KiB to 1 GiB`, {
      kind: "usage",
    });
  }
  let n = 4096;
  while (n < requested) n *= 2;
  return n;
}

/**
 * A running capture of one module: an async iterable of its events that
 * detaches every probe when disposed. Made by `capture()` in mod.ts.
 *
 * @example Count commands for five seconds, then read the loss counters
 * ```ts ignore
 * await using cap = await capture("bash", {});
 * setTimeout(() => cap.stop(), 5_000);
 * let n = 0;
 * for await (const _ of cap) n++;
 * console.log(n, cap.stats().lost);
 * ```
 */
export class Capture<E extends EventBase> implements AsyncIterable<E>, AsyncDisposable {
  readonly module: string;
  /** What was attached, in order. */
  readonly probes: readonly AttachedProbe[];
  /** What the module found out about its targets (e.g. library versions). */
  readonly notes: readonly string[];
  #handle: BpfHandle;
  #decoder: RecordDecoder<E>;
  #stopping = false;
  #closed = false;
  #iterating = false;
  #inflight?: Promise<number>;
  #malformed = 0;
  #events = 0;
  #final?: CaptureStats;

  private constructor(
    module: string,
    handle: BpfHandle,
    decoder: RecordDecoder<E>,
    probes: AttachedProbe[],
    notes: string[],
  ) {
    this.module = module;
    this.notes = notes;
    this.#handle = handle;
    this.#decoder = decoder;
    this.probes = probes;
  }

  /** Loads and attaches `spec` with `opts`; throws EcapError on failure. */
  static async start<O extends CommonOptions, E extends EventBase>(
    spec: ModuleSpec<O, E>,
    opts: O,
  ): Promise<Capture<E>> {
    const targets = await spec.targets(opts);
    const model = opts.model ?? "text";
    const probes = spec.probes.filter((p) => !p.models || p.models.includes(model));
    const plan = await planProbes(spec.name, probes, targets.files);
    const btf = Btf.fromElf(ElfFile.parse(spec.object));
    const offsetNs = BigInt(Date.now()) * 1_000_000n - monotonicNs();
    const decoder = spec.decoder({ btf, wallClock: (mono) => mono + offsetNs }, opts);

    const handle = BpfHandle.open(spec.object, spec.name);
    try {
      handle.setGlobal("filter_pid", u32(opts.pid ?? 0));
      handle.setGlobal("filter_uid", u32(opts.uid ?? 0));
      handle.setGlobal("filter_uid_set", bool(opts.uid !== undefined));
      for (const [name, value] of Object.entries(spec.globals(opts))) {
        handle.setGlobal(name, value);
      }
      handle.setMapSize("events", ringBytes(opts.mapSize));
      for (const [map, entries] of Object.entries(spec.mapSizes?.(opts) ?? {})) {
        handle.setMapSize(map, entries);
      }
      handle.load();
      for (const e of targets.mapEntries ?? []) handle.updateMap(e.map, e.key, e.value);
      const attached: AttachedProbe[] = [];
      for (const p of groupMulti(plan, (prog) => handle.isMultiUprobe(prog))) {
        if (p.kind === "raw_tp") {
          handle.attachRawTracepoint(p.program, p.tracepoint);
          attached.push({ program: p.program, kind: p.kind, where: p.tracepoint });
        } else if (p.kind === "tcx") {
          for (const iface of targets.interfaces ?? []) {
            if (iface.loopback && p.direction === "ingress") continue;
            handle.attachTcx(p.program, iface.index);
            attached.push({
              program: p.program,
              kind: p.kind,
              where: `${iface.name}/${p.direction}`,
            });
          }
        } else if ("offsets" in p) {
          handle.attachUprobeMulti(p.program, p.path, p.offsets, {
            retprobe: p.kind === "uretprobe",
            pid: opts.pid,
            funcs: p.symbols,
            cookies: p.cookies,
          });
          for (const sym of p.symbols) {
            attached.push({ program: p.program, kind: p.kind, where: `${p.path}:${sym}` });
          }
        } else {
          handle.attachUprobe(p.program, p.path, p.offset, {
            retprobe: p.kind === "uretprobe",
            pid: opts.pid,
            func: p.symbol,
          });
          attached.push({ program: p.program, kind: p.kind, where: `${p.path}:${p.symbol}` });
        }
      }
      return new Capture(spec.name, handle, decoder, attached, targets.notes);
    } catch (e) {
      handle.close();
      throw e;
    }
  }

  /** Number of kernel links this capture holds (0 once closed). */
  get linkCount(): number {
    return this.#handle.linkCount;
  }

  /** Asks the capture to end: events already captured are still yielded. */
  stop() {
    this.#stopping = true;
    this.#handle.wake();
  }

  /** Counters so far; after the capture ends, its final counters. */
  stats(): CaptureStats {
    if (this.#final) return this.#final;
    const lostPerCpu = this.#handle.readPerCpu("ecap_stats", 1).map(Number);
    const sum = (slot: number) =>
      this.#handle.readPerCpu("ecap_stats", slot).reduce((a, b) => a + Number(b), 0);
    return {
      records: sum(0),
      lostPerCpu,
      lost: lostPerCpu.reduce((a, b) => a + b, 0),
      truncated: sum(2),
      malformed: this.#malformed,
      events: this.#events,
    };
  }

  /** Events one by one, until the capture is stopped. */
  async *[Symbol.asyncIterator](): AsyncGenerator<E> {
    for await (const batch of this.batches()) yield* batch;
  }

  /**
   * Events as they come out of the kernel, a batch per poll: cheaper for
   * consumers that write them out together. Ends after stop(), once the
   * ring buffer is drained.
   */
  async *batches(): AsyncGenerator<E[]> {
    if (this.#iterating) throw new EcapError(`Capture of ${this.module} is already iterated`);
    this.#iterating = true;
    const buf = new Uint8Array(BATCH_BYTES);
    const view = new DataView(buf.buffer);
    try {
      while (!this.#closed) {
        const draining = this.#stopping;
        this.#inflight = this.#handle.poll(buf, draining ? 0 : POLL_MS);
        let n: number;
        try {
          n = await this.#inflight;
        } finally {
          this.#inflight = undefined;
        }
        if (n === 0 && draining) break;
        const events = this.#decodeBatch(view, n);
        this.#events += events.length;
        if (events.length > 0) yield events;
      }
      const rest = this.#decoder.flush();
      this.#events += rest.length;
      if (rest.length > 0) yield rest;
    } finally {
      this.#close();
    }
  }

  #decodeBatch(view: DataView, length: number): E[] {
    const out: E[] = [];
    let off = 0;
    while (off + 8 <= length) {
      const size = view.getUint32(off, true);
      const body = off + 8;
      off = body + ((size + 7) & ~7);
      if (off > length) break;
      try {
        for (const ev of this.#decoder.decode(view, body, size)) out.push(ev);
      } catch (e) {
        if (!(e instanceof RecordError) && !(e instanceof RangeError)) throw e;
        this.#malformed++;
      }
    }
    return out;
  }

  #close() {
    if (this.#closed) return;
    try {
      this.#final = this.stats();
    } finally {
      this.#closed = true;
      this.#handle.close();
    }
  }

  /** Stops, waits for a poll in flight, and detaches everything. */
  async [Symbol.asyncDispose]() {
    this.stop();
    // The loop may start one more (draining) poll after each one ends.
    while (this.#inflight) await this.#inflight.catch(() => 0);
    this.#close();
  }
}

type PlannedProbe =
  | {
    kind: "uprobe" | "uretprobe";
    program: string;
    path: string;
    offset: number;
    symbol: string;
    /** Index of path in its role's list: the probe's BPF cookie. */
    cookie: number;
  }
  | { kind: "raw_tp"; program: string; tracepoint: string }
  | { kind: "tcx"; program: string; direction: "ingress" | "egress" };

type MultiProbe = {
  kind: "uprobe" | "uretprobe";
  program: string;
  path: string;
  offsets: number[];
  symbols: string[];
  cookies: number[];
};

/** Folds the probes of each uprobe.multi program on one file into one attach. */
function groupMulti(
  plan: PlannedProbe[],
  isMulti: (program: string) => boolean,
): (PlannedProbe | MultiProbe)[] {
  const out: (PlannedProbe | MultiProbe)[] = [];
  const groups = new Map<string, MultiProbe>();
  for (const p of plan) {
    if (p.kind === "raw_tp" || p.kind === "tcx" || !isMulti(p.program)) {
      out.push(p);
      continue;
    }
    const key = `${p.program}\0${p.path}`;
    let g = groups.get(key);
    if (!g) {
      g = { kind: p.kind, program: p.program, path: p.path, offsets: [], symbols: [], cookies: [] };
      groups.set(key, g);
      out.push(g);
    }
    g.offsets.push(p.offset);
    g.symbols.push(p.symbol);
    g.cookies.push(p.cookie);
  }
  return out;
}

/** Resolves every probe of a spec to file offsets, or says what is missing. */
async function planProbes(
  module: string,
  probes: readonly ProbeSpec[],
  files: Record<string, readonly string[]>,
): Promise<PlannedProbe[]> {
  const plan: PlannedProbe[] = [];
  for (const p of probes) {
    if (p.kind === "raw_tp" || p.kind === "tcx") {
      plan.push(p);
      continue;
    }
    const paths = files[p.target];
    if (!paths || paths.length === 0) {
      throw new EcapError(`Module ${module} has no target "${p.target}"`);
    }
    for (const [cookie, path] of paths.entries()) {
      const loc = await locateSymbol(path, p.symbols, p.target);
      if (!loc) {
        if (p.optional) continue;
        throw new EcapError(
          `Cannot capture ${module}: "${path}" defines none of ${p.symbols.join(", ")}`,
          { kind: "unsupported", hint: `pass --${p.target} with another ${p.target} binary` },
        );
      }
      plan.push({ kind: p.kind, program: p.program, ...loc, cookie });
    }
  }
  return plan;
}
