/**
 * Runs one module: opens its object, sets its filters, loads it, attaches
 * its probes, and yields decoded events until stopped. Events already in the
 * ring buffer when it stops are still delivered.
 * @module
 */
import { Btf } from "../binary/btf.ts";
import { ElfFile } from "../binary/elf.ts";
import { EcapError } from "../base/errors.ts";
import { BpfHandle, monotonicNs, prefetchKernelBtf, releaseMemory, tuneMalloc } from "./ffi.ts";
import type {
  CommonOptions,
  EventBase,
  FileTarget,
  FollowSpec,
  ModuleSpec,
  ProbeSpec,
  RecordDecoder,
  TargetSet,
} from "./module_spec.ts";
import { bool, u32 } from "./module_spec.ts";
import { resolveCgroup } from "../binary/cgroup.ts";
import { mappedPath } from "../binary/proc_maps.ts";
import { RecordError } from "./record_header.ts";
import type { ChainSlot } from "./sys_enter_chain.ts";
import { groupMulti, type MultiProbe, type PlannedProbe, planProbes } from "./probe_plan.ts";
import {
  fileKeyBytes,
  fileKeyOf,
  holdProcess,
  IGNORE,
  liveCaptures,
  pidExists,
  PINNED,
  PROBED,
  releaseProcess,
  STOP,
  WATCH_GONE,
  WATCH_NAME_LEN,
  WATCH_PREFIXES,
  WATCH_USES,
  watchReader,
  type WatchRecord,
} from "./watch.ts";

/**
 * Bytes copied out of the ring per FFI call: at least the largest record
 * (a 64 KiB packet). Not more: a batch's events stay alive until it is
 * handled, and a smaller live set made GC cheaper: 256 KiB took 12.6 µs
 * of CPU per HTTPS event where 4 MiB took 18.9 µs, and lost none.
 */
const BATCH_BYTES = 256 << 10;
/**
 * Lets the event loop run its other tasks once: a message to ourselves is
 * a task of its own (64 µs here), where setTimeout(0) is clamped (2.3 ms).
 */
function eventLoopTurn(): Promise<void> {
  const { port1, port2 } = new MessageChannel();
  return new Promise((resolve) => {
    port1.onmessage = () => {
      port1.close();
      resolve();
    };
    port2.postMessage(null);
  });
}

/** Longest run of polls that do not give the event loop a turn. */
const SYNC_TURN_MS = 20;
/** How long one poll waits before checking the deadline again. */
const POLL_MS = 50;
/**
 * Time between a decoder's ticks (what is due by time alone). Ticked after
 * every poll, the exchange view walked its connections a few thousand times
 * a second under load: 10 KiB of garbage per HTTPS request (measured); its
 * shortest wait is 200 ms.
 */
const TICK_MS = 20;
/** Each object's BTF, parsed once (10-15 ms): the TLS libraries share one object. */
const objectBtf = new WeakMap<Uint8Array, Btf>();

function btfOf(object: Uint8Array): Btf {
  let btf = objectBtf.get(object);
  if (!btf) objectBtf.set(object, btf = Btf.fromElf(ElfFile.parse(object)));
  return btf;
}

/** A capture with no record for this long gives its free heap back (see tuneMalloc). */
const IDLE_RELEASE_MS = 2000;
/** Part of the ring that must fill before the kernel wakes the reader. */
const WAKEUP_FRACTION = 16;
const DEFAULT_RING_BYTES = 8 << 20;

/** Counters of a capture: what was delivered, and what was not. */
export interface CaptureStats {
  /** Records the kernel wrote to the ring buffer. */
  records: number;
  /** Records the kernel could not write (ring buffer full), per CPU. */
  lostPerCpu: number[];
  /**
   * Calls the probes could not follow (nested deeper than they track, or
   * whose return was never seen): their bytes are not reported.
   */
  unfollowed: number;
  /** Everything not delivered: the sum of lostPerCpu, and unfollowed. */
  lost: number;
  /** Records cut at a documented cap. */
  truncated: number;
  /**
   * Records kept short because the ring buffer was over half full (the
   * reader behind): a TLS call's first 1 KiB, a packet's first 128 bytes.
   */
  shed: number;
  /** Records user space could not decode. */
  malformed: number;
  /** Events yielded. */
  events: number;
  /** Bytes of the records read from the ring buffer (payloads and their headers). */
  bytes: number;
}

/** One attached probe, as reported to the user. */
export interface AttachedProbe {
  program: string;
  kind: ProbeSpec["kind"];
  /** "path:symbol" for uprobes, the tracepoint name otherwise. */
  where: string;
}

/** What a capture tells its caller while it runs. */
export interface CaptureHooks {
  /** One line per file probed or released on demand (--debug). */
  log?: (line: string) => void;
  /** Runs the capture's sys_enter program from a chain (see sys_enter_chain.ts). */
  sysEnter?: ChainSlot;
}

/** A file probed for the follow role, and who maps it. */
interface ProbedFile {
  /** "kdev:ino", the kernel's view. */
  key: string;
  keyBytes: Uint8Array;
  path: string;
  /** Its probes' BPF cookie. */
  index: number;
  links: number[];
  pids: Set<number>;
  /** Probed for the whole capture (installed on the host, or named by the user). */
  pinned: boolean;
  /** A binary (exec'd), not a library (mapped). */
  fromExec: boolean;
  /** Pending release (see #releaseLater). */
  releaseTimer?: ReturnType<typeof setTimeout>;
}

/** How long a file with no process left stays probed (see #releaseLater). */
const RELEASE_GRACE_MS = 200;

/** A comm filter as the kernel compares it: at most 15 bytes and a NUL. */
function commBytes(comm: string): Uint8Array {
  const b = new Uint8Array(16);
  b.set(new TextEncoder().encode(comm).subarray(0, 15));
  return b;
}

/** Encodes a u64 global. */
function u64(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
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
  /** Records read from the ring so far (a failing one is named by its number). */
  #records = 0;
  #recordBytes = 0;
  /** A decoder's unexpected exception: thrown once the events before it are out. */
  #failure?: EcapError;
  #final?: CaptureStats;
  #probes: AttachedProbe[];
  #log?: (line: string) => void;
  /** The chain place its sys_enter program takes, until it has taken it. */
  #sysEnter?: ChainSlot;
  /** The chain slot its program is in: emptied before the object closes. */
  #chainSlot?: ChainSlot;
  #attachPid?: number;
  #pidFilter = false;
  #follow?: FollowSpec;
  #followProbes: ProbeSpec[] = [];
  #files = new Map<string, ProbedFile>();
  #inspected = new Map<string, FileTarget | null>();
  #nextIndex = 0;
  #freeIndices: number[] = [];
  #watchRecord?: (view: DataView, offset: number, length: number) => WatchRecord | undefined;
  #handlers = new Set<Promise<void>>();
  #probing = new Map<string, Promise<ProbedFile | undefined>>();

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
    this.#probes = probes;
  }

  /** What is attached now, in order (files probed on demand included). */
  get probes(): readonly AttachedProbe[] {
    return this.#probes;
  }

  /** Loads and attaches `spec` with `opts`; throws EcapError on failure. */
  static async start<O extends CommonOptions, E extends EventBase>(
    spec: ModuleSpec<O, E>,
    opts: O,
    hooks: CaptureHooks = {},
  ): Promise<Capture<E>> {
    tuneMalloc();
    prefetchKernelBtf(); // the cli has begun it already; a caller of mod.ts has not
    // slow imports run while the object loads (awaited before returning)
    const preparing = spec.prepare?.(opts);
    preparing?.catch(() => {}); // awaited below: not an unhandled rejection meanwhile
    const early = spec.globalsNeedTargets ? await spec.targets(opts) : undefined;
    const model = opts.model ?? "text";
    const probes = spec.probes.filter((p) => !p.models || p.models.includes(model));
    const follow = opts.follow ? spec.follow?.(opts) : undefined;
    // the module's sys_enter program watches mmaps too, if it is attached
    const mmapInline = follow?.mappedPrefix !== undefined && follow.mmapWatchIn !== undefined &&
      probes.some((p) => p.kind === "raw_tp" && p.program === follow.mmapWatchIn);
    const btf = btfOf(spec.object);
    const offsetNs = BigInt(Date.now()) * 1_000_000n - monotonicNs();
    const decoder = spec.decoder({ btf, wallClock: (mono) => mono + offsetNs }, opts);
    const pids = [...new Set([...(opts.pids ?? []), ...(opts.pid ? [opts.pid] : [])])];
    const cgroup = opts.cgroup === undefined ? undefined : resolveCgroup(opts.cgroup);
    // One process, not its children: the kernel puts the probes in it alone.
    const attachPid = pids.length === 1 && !opts.followChildren ? pids[0] : undefined;

    const handle = BpfHandle.open(spec.object, spec.name);
    try {
      handle.setGlobal("filter_pids_on", bool(pids.length > 0));
      handle.setGlobal("follow_children", bool(opts.followChildren === true));
      handle.setGlobal("wakeup_bytes", u32(ringBytes(opts.mapSize) / WAKEUP_FRACTION));
      // past half full, big records are kept short rather than lost (kern/common.bpf.h)
      handle.setGlobal("shed_above_bytes", u64(ringBytes(opts.mapSize) / 2));
      handle.setGlobal("filter_uid", u32(opts.uid ?? 0));
      handle.setGlobal("filter_uid_set", bool(opts.uid !== undefined));
      if (opts.comm !== undefined) {
        handle.setGlobal("filter_comm", commBytes(opts.comm));
        handle.setGlobal("filter_comm_set", bool(true));
      }
      if (cgroup) {
        handle.setGlobal("filter_cgroup_id", u64(cgroup.id));
        handle.setGlobal("filter_cgroup_level", u32(cgroup.level));
      }
      if (follow) {
        const prefixes = [follow.mappedPrefix ?? []].flat();
        if (prefixes.length > WATCH_PREFIXES) {
          throw new Error(`${spec.name}: more than ${WATCH_PREFIXES} library prefixes to follow`);
        }
        const names = new Uint8Array(WATCH_PREFIXES * WATCH_NAME_LEN);
        const lengths = new Uint8Array(WATCH_PREFIXES * 4);
        prefixes.forEach((p, i) => {
          const name = new TextEncoder().encode(p).subarray(0, WATCH_NAME_LEN - 1);
          names.set(name, i * WATCH_NAME_LEN);
          lengths.set(u32(name.length), i * 4);
        });
        handle.setGlobal("watch_prefix", names);
        handle.setGlobal("watch_prefix_len", lengths);
        handle.setGlobal("watch_exec", bool(follow.exec === true));
        if (follow.holdExecBytes !== undefined) {
          handle.setGlobal("watch_exec_hold_bytes", u64(follow.holdExecBytes));
        }
        handle.setGlobal("ecap_tgid", u32(Deno.pid));
        if (mmapInline) handle.setGlobal("watch_mmap_inline", bool(true));
      }
      for (const [name, value] of Object.entries(spec.globals(opts))) {
        handle.setGlobal(name, value);
      }
      if (hooks.sysEnter) {
        handle.reuseMap("sys_enter_chain", hooks.sysEnter.chain.programs);
        handle.reuseMap("calls_in_flight", hooks.sysEnter.chain.callsInFlight);
        handle.setGlobal("sys_enter_chained", bool(true));
        handle.setGlobal("sys_enter_slot", u32(hooks.sysEnter.slot));
      }
      handle.setMapSize("events", ringBytes(opts.mapSize));
      // a hash map's entries are all allocated as it is made (65,536: 6 ms):
      // as many as the pids given, unless their children join them
      if (!opts.followChildren) handle.setMapSize("allowed_pids", Math.max(1, pids.length));
      for (const [map, entries] of Object.entries(spec.mapSizes?.(opts) ?? {})) {
        handle.setMapSize(map, entries);
      }
      // the object may serve other libraries or models too: their programs
      // are not verified (kern/tls.bpf.c's: 3 of 4 for gnutls or nss)
      handle.loadUprobesOnly(
        probes.filter((p) => p.kind === "uprobe" || p.kind === "uretprobe").map((p) => p.program),
      );
      // the kernel loads the object while targets are sought (tls: ~70 ms of ~150)
      const loading = handle.loadAsync();
      let targets: TargetSet, plan: PlannedProbe[];
      try {
        targets = early ?? await spec.targets(opts);
        // The follow role may start with no file: they come as processes map them.
        const files = follow && !targets.files[follow.role]?.length
          ? { ...targets.files, [follow.role]: [] }
          : targets.files;
        plan = await planProbes(spec.name, probes, files, 0, follow?.role);
      } finally {
        // settled before anything else touches the handle, even on failure
        await loading.catch(() => {});
      }
      await loading;
      await preparing;
      for (const pid of pids) handle.updateMap("allowed_pids", u32(pid), new Uint8Array([1]));
      for (const e of targets.mapEntries ?? []) handle.updateMap(e.map, e.key, e.value);
      const cap = new Capture(spec.name, handle, decoder, [], targets.notes);
      liveCaptures.add(cap);
      cap.#log = hooks.log;
      cap.#sysEnter = hooks.sysEnter;
      cap.#attachPid = attachPid;
      cap.#pidFilter = pids.length > 0;
      cap.#attachPlan(plan, targets.interfaces ?? [], targets, follow?.role);
      if (follow) {
        cap.#follow = follow;
        cap.#followProbes = probes.filter((p) =>
          (p.kind === "uprobe" || p.kind === "uretprobe") && p.target === follow.role
        );
        cap.#nextIndex = targets.files[follow.role]?.length ?? 0;
        cap.#watchRecord = watchReader(btf);
        // held processes are continued even if this process is killed
        handle.guard("held_tgids");
        if (follow.mappedPrefix && !mmapInline) cap.#attachRaw("ecap_watch_mmap", "sys_enter");
        cap.#attachRaw("ecap_watch_exec", "sched_process_exec");
      }
      if (follow || opts.followChildren) cap.#attachRaw("ecap_watch_exit", "sched_process_exit");
      if (opts.followChildren) cap.#attachRaw("ecap_follow_fork", "sched_process_fork");
      return cap;
    } catch (e) {
      if (hooks.sysEnter) hooks.sysEnter.chain.left(hooks.sysEnter.slot);
      handle.close();
      throw e;
    }
  }

  #attachRaw(program: string, tracepoint: string) {
    const chained = tracepoint === "sys_enter" ? this.#sysEnter : undefined;
    if (chained) {
      // its program runs from the chain's first (one of a capture only)
      this.#sysEnter = undefined;
      this.#handle.setProgramSlot("sys_enter_chain", chained.slot, program);
      this.#chainSlot = chained;
      const handle = this.#handle;
      chained.chain.joined(chained.slot, () => {
        handle.attachRawTracepoint(program, tracepoint);
      });
    } else {
      this.#handle.attachRawTracepoint(program, tracepoint);
    }
    this.#probes.push({ program, kind: "raw_tp", where: tracepoint });
  }

  /** Attaches what start() planned, and remembers which links belong to which file. */
  #attachPlan(
    plan: PlannedProbe[],
    interfaces: NonNullable<TargetSet["interfaces"]>,
    targets: TargetSet,
    followRole: string | undefined,
  ) {
    const handle = this.#handle;
    const files = new Map<string, number[]>();
    for (const p of groupMulti(plan, (prog) => handle.isMultiUprobe(prog))) {
      if (p.kind === "raw_tp") {
        this.#attachRaw(p.program, p.tracepoint);
      } else if (p.kind === "tcx") {
        for (const iface of interfaces) {
          if (iface.loopback && p.direction === "ingress") continue;
          handle.attachTcx(p.program, iface.index, iface.filter);
          this.#probes.push({
            program: p.program,
            kind: p.kind,
            where: `${iface.name}/${p.direction}`,
          });
        }
      } else {
        const links = files.get(p.path) ?? [];
        files.set(p.path, links);
        links.push(...this.#attachUprobes([p]));
      }
    }
    if (followRole === undefined) return;
    // The follow role's files: a probed file is never asked about again;
    // one found only in processes' maps is released with its last user.
    for (const [index, path] of (targets.files[followRole] ?? []).entries()) {
      const key = fileKeyOf(path);
      if (!key) continue;
      const users = targets.users?.[path];
      const f: ProbedFile = {
        key: key.text,
        keyBytes: key.bytes,
        path,
        index,
        links: files.get(path) ?? [],
        pids: new Set(users ?? []),
        pinned: users === undefined,
        fromExec: false,
      };
      this.#files.set(f.key, f);
      handle.updateMap("watch_files", f.keyBytes, new Uint8Array([f.pinned ? PINNED : PROBED]));
      for (const pid of f.pids) handle.updateMap("watch_tgids", u32(pid), new Uint8Array([1]));
    }
  }

  /** Attaches uprobes (grouped as groupMulti does); returns their link ids. */
  #attachUprobes(planned: (PlannedProbe | MultiProbe)[]): number[] {
    const links: number[] = [];
    const pid = this.#attachPid;
    // Return probes first: a call that entered before its return probe was
    // attached would look, to modules that pair the two, like one whose
    // return was lost.
    const returnsFirst = [
      ...planned.filter((p) => p.kind === "uretprobe"),
      ...planned.filter((p) => p.kind === "uprobe"),
    ];
    for (const p of returnsFirst) {
      if (p.kind !== "uprobe" && p.kind !== "uretprobe") continue;
      if ("offsets" in p) {
        links.push(this.#handle.attachUprobeMulti(p.program, p.path, p.offsets, {
          retprobe: p.kind === "uretprobe",
          pid,
          funcs: p.symbols,
          cookies: p.cookies,
        }));
        for (const sym of p.symbols) {
          this.#probes.push({ program: p.program, kind: p.kind, where: `${p.path}:${sym}` });
        }
      } else {
        links.push(this.#handle.attachUprobe(p.program, p.path, p.offset, {
          retprobe: p.kind === "uretprobe",
          pid,
          func: p.symbol,
        }));
        this.#probes.push({ program: p.program, kind: p.kind, where: `${p.path}:${p.symbol}` });
      }
    }
    return links;
  }

  /** Files probed now (for --debug and tests): path, pids using it, pinned. */
  probedFiles(): { path: string; inode: number; pids: number[]; pinned: boolean }[] {
    return [...this.#files.values()].filter((f) => f.links.length > 0).map((f) => ({
      path: f.path,
      inode: Number(f.key.split(":")[1]),
      pids: [...f.pids].sort((a, b) => a - b),
      pinned: f.pinned,
    }));
  }

  /** Processes the -p filter allows now (with --follow-children, their descendants too). */
  allowedPids(): number[] {
    if (!this.#pidFilter || this.#closed) return [];
    return this.#handle.mapKeys("allowed_pids", 4, 65536).map((k) =>
      new DataView(k.buffer).getUint32(0, true)
    );
  }

  /** Waits until every watch record read so far is handled (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.#handlers.size > 0) await Promise.all(this.#handlers);
  }

  #queueWatch(rec: WatchRecord) {
    if (rec.stopped) holdProcess(rec.pid);
    const p: Promise<void> = this.#onWatch(rec).catch((e) => {
      if (!this.#closed) this.#log?.(`follow: ${(e as Error).message}`);
    }).finally(() => this.#handlers.delete(p));
    this.#handlers.add(p);
  }

  async #onWatch(rec: WatchRecord) {
    try {
      if (rec.what === WATCH_GONE) {
        for (const f of [...this.#files.values()]) {
          if (f.pinned || !f.pids.delete(rec.pid) || f.pids.size > 0) continue;
          this.#releaseLater(f, `no process maps it (last: ${rec.comm}[${rec.pid}])`);
        }
        return;
      }
      const key = `${rec.dev}:${rec.ino}`;
      let f = this.#files.get(key);
      if (rec.what === WATCH_USES && f) {
        f.pids.add(rec.pid);
        clearTimeout(f.releaseTimer);
        return;
      }
      // (a USES of a file released meanwhile is probed again below)
      // ending: a held process is let go at once (finally)
      if (this.#closed || this.#stopping) return;
      if (!f) {
        // processes mapping one file at once wait for one inspection
        let probing = this.#probing.get(key);
        if (!probing) {
          probing = this.#probeNew(rec, key).finally(() => this.#probing.delete(key));
          this.#probing.set(key, probing);
        }
        f = await probing;
      }
      if (!f || this.#closed || this.#files.get(key) !== f) return;
      f.pids.add(rec.pid);
      clearTimeout(f.releaseTimer);
      this.#handle.updateMap("watch_tgids", u32(rec.pid), new Uint8Array([1]));
      // a process not held may have ended while its file was read: its
      // exit was reported before it was counted
      if (!rec.stopped && !pidExists(rec.pid)) {
        f.pids.delete(rec.pid);
        if (f.pids.size === 0 && !f.pinned) this.#releaseLater(f, "its process already exited");
      }
    } finally {
      if (rec.stopped) {
        if (!this.#closed) this.#handle.deleteMapEntry("held_tgids", u32(rec.pid));
        await releaseProcess(rec.pid);
      }
    }
  }

  /** Inspects a file a process just mapped or exec'd; probes it if it is a target. */
  async #probeNew(rec: WatchRecord, key: string): Promise<ProbedFile | undefined> {
    const follow = this.#follow!;
    const fdPath = rec.fd >= 0 ? `/proc/${rec.pid}/fd/${rec.fd}` : `/proc/${rec.pid}/exe`;
    // A name for people, resolved in the process's own root (its container);
    // the fd path opens the very file while the process is held.
    const seen = await Deno.readLink(fdPath).catch(() => undefined);
    const path = seen === undefined
      ? undefined
      : await mappedPath(rec.pid, seen, (p) => Promise.resolve(fileKeyOf(p)?.text === key));
    const opener = path ?? fdPath;
    let target = this.#inspected.get(key);
    if (target === undefined) {
      if (fileKeyOf(opener)?.text !== key) return undefined; // gone meanwhile
      target = await follow.inspect(opener).catch(() => null) ?? null;
      this.#inspected.set(key, target);
    }
    const keyBytes = fileKeyBytes(rec.dev, rec.ino);
    if (this.#closed) return undefined;
    if (target === null) {
      this.#handle.updateMap("watch_files", keyBytes, new Uint8Array([IGNORE]));
      this.#log?.(
        `follow: ${path ?? rec.name} (inode ${rec.ino}) of ${rec.comm}[${rec.pid}] ` +
          `is not a ${follow.role} target`,
      );
      return undefined;
    }
    if (this.#stopping) return undefined;
    const index = this.#freeIndices.shift() ?? this.#nextIndex++;
    const t0 = performance.now();
    const plan = await planProbes(
      this.module,
      this.#followProbes,
      { [follow.role]: [opener] },
      index,
    );
    if (this.#closed) return undefined;
    for (const e of target.mapEntries?.(index) ?? []) this.#handle.updateMap(e.map, e.key, e.value);
    const links = this.#attachUprobes(groupMulti(plan, (p) => this.#handle.isMultiUprobe(p)));
    const f: ProbedFile = {
      key,
      keyBytes,
      path: path ?? rec.name,
      index,
      links,
      pids: new Set(),
      pinned: false,
      fromExec: rec.fd < 0,
    };
    this.#files.set(key, f);
    this.#handle.updateMap("watch_files", keyBytes, new Uint8Array([PROBED]));
    const sinceNs = monotonicNs() - rec.timeNs; // watch records keep the monotonic stamp
    this.#log?.(
      `attach ${f.path} (inode ${rec.ino}, ${target.note}) for ${rec.comm}[${rec.pid}]: ` +
        `${links.length} links in ${Math.round(performance.now() - t0)} ms, ` +
        `${(Number(sinceNs) / 1e6).toFixed(1)} ms after it ${
          rec.fd >= 0 ? "mapped" : "exec'd"
        } it` +
        (rec.stopped ? " (held until then)" : ""),
    );
    return f;
  }

  /**
   * Releases a file a little later: a process that maps it meanwhile was
   * reported as a user (not held) and keeps it.
   */
  #releaseLater(f: ProbedFile, why: string) {
    clearTimeout(f.releaseTimer);
    f.releaseTimer = setTimeout(() => {
      if (f.pids.size === 0 && this.#files.get(f.key) === f) this.#release(f, why);
    }, RELEASE_GRACE_MS);
  }

  /** Detaches a file's probes once no process maps it. */
  #release(f: ProbedFile, why: string) {
    if (this.#closed) return;
    for (const l of f.links) this.#handle.detach(l);
    this.#log?.(`detach ${f.path} (inode ${f.key.split(":")[1]}): ${why}`);
    f.links = [];
    this.#freeIndices.push(f.index);
    // A library is asked about again when mapped; a binary is held at exec.
    if (f.fromExec) this.#handle.updateMap("watch_files", f.keyBytes, new Uint8Array([STOP]));
    else this.#handle.deleteMapEntry("watch_files", f.keyBytes);
    this.#files.delete(f.key);
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
    const unfollowed = sum(3);
    return {
      records: sum(0),
      lostPerCpu,
      unfollowed,
      lost: lostPerCpu.reduce((a, b) => a + b, 0) + unfollowed,
      truncated: sum(2),
      shed: sum(4),
      malformed: this.#malformed,
      events: this.#events,
      bytes: this.#recordBytes,
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
      let turn = performance.now();
      // records came since the heap was last given back (the start-up's
      // parsing and loading count as records: an idle capture gives that back)
      let busy = true;
      let lastRecord = turn;
      let lastTick = 0; // Date.now() of the decoder's last tick
      while (!this.#closed) {
        const draining = this.#stopping;
        // Records already there are taken at once, on this thread; a worker
        // thread waits only for an empty ring (under load it may wait for a
        // CPU, and the reader with it).
        let n = draining ? 0 : this.#handle.pollNow(buf);
        if (n === 0) {
          this.#inflight = this.#handle.poll(buf, draining ? 0 : POLL_MS);
          try {
            n = await this.#inflight;
          } finally {
            this.#inflight = undefined;
          }
          turn = performance.now();
        } else if (performance.now() - turn >= SYNC_TURN_MS) {
          await eventLoopTurn(); // signals and timers run while the reader is behind
          turn = performance.now();
        }
        if (n === 0 && draining) break;
        if (n > 0) busy = true, lastRecord = performance.now();
        else if (busy && turn - lastRecord > IDLE_RELEASE_MS) busy = false, releaseMemory();
        const events = this.#decodeBatch(view, n);
        const failure = this.#failure;
        let due: E[] | undefined;
        const now = Date.now();
        if (!failure && now - lastTick >= TICK_MS) {
          lastTick = now;
          due = this.#decoder.tick?.(BigInt(now) * 1_000_000n);
        }
        if (due) { for (const ev of due) events.push(ev); }
        this.#events += events.length;
        if (events.length > 0) yield events;
        if (failure) throw failure; // after the events decoded before it are out
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
      this.#records++;
      this.#recordBytes += size;
      try {
        const watch = this.#watchRecord?.(view, body, size);
        if (watch) {
          this.#queueWatch(watch);
          continue;
        }
        for (const ev of this.#decoder.decode(view, body, size)) out.push(ev);
      } catch (e) {
        if (e instanceof RecordError) {
          this.#malformed++;
          continue;
        }
        // a decoder bug: the capture ends, but what was decoded before it is delivered
        this.#failure = new EcapError(
          `The ${this.module} decoder failed on record ${this.#records} (${size} bytes): ${
            e instanceof Error ? `${e.name}: ${e.message}` : String(e)
          }`,
          { kind: "internal", cause: e, hint: "please report it with the record" },
        );
        break;
      }
    }
    return out;
  }

  #close() {
    if (this.#closed) return;
    liveCaptures.delete(this);
    for (const f of this.#files.values()) clearTimeout(f.releaseTimer);
    try {
      this.#final = this.stats();
      // the chain's others would go on running a closed capture's program
      if (this.#chainSlot) {
        this.#chainSlot.chain.left(this.#chainSlot.slot);
        this.#handle.deleteMapEntry("sys_enter_chain", u32(this.#chainSlot.slot));
      }
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
    // Processes held for a probe are let go by their handlers.
    await this.settled();
    this.#close();
  }
}
