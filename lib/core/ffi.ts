/**
 * The only caller of Deno.dlopen: binds libecap (ffi/ecap.c), embedded in
 * the program as bytes, and turns each negative return into an EcapError.
 * @module
 */
import libecapBytes from "../../build/libecap.so" with { type: "bytes" };
import { EcapError, type EcapErrorKind, errnoName } from "../base/errors.ts";

const SYMBOLS = {
  ecap_new: { parameters: [], result: "pointer" },
  ecap_object_open_mem: { parameters: ["pointer", "buffer", "usize", "buffer"], result: "i32" },
  ecap_object_set_rodata: { parameters: ["pointer", "buffer", "buffer", "usize"], result: "i32" },
  ecap_map_set_size: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  ecap_object_load_uprobes: { parameters: ["pointer", "buffer"], result: "i32" },
  ecap_object_load: { parameters: ["pointer"], result: "i32" },
  ecap_attach_uprobe: {
    parameters: ["pointer", "buffer", "buffer", "u64", "i32", "i32", "buffer"],
    result: "i32",
  },
  ecap_program_is_multi: { parameters: ["pointer", "buffer"], result: "i32" },
  ecap_attach_uprobe_multi: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "buffer", "u32", "i32", "i32", "buffer"],
    result: "i32",
  },
  ecap_attach_tcx: {
    parameters: ["pointer", "buffer", "i32", "buffer", "i32", "u32"],
    result: "i32",
  },
  ecap_filter_check: { parameters: ["buffer", "i32", "u32", "buffer", "usize"], result: "i32" },
  ecap_filter_test_run: {
    parameters: ["pointer", "buffer", "buffer", "i32", "u32", "u32", "buffer", "u32"],
    result: "i32",
  },
  ecap_map_update: {
    parameters: ["pointer", "buffer", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },
  ecap_map_delete: { parameters: ["pointer", "buffer", "buffer", "u32"], result: "i32" },
  ecap_shared_map_new: { parameters: ["i32", "buffer", "u32", "u32", "u32"], result: "i32" },
  ecap_map_reuse: { parameters: ["pointer", "buffer", "i32"], result: "i32" },
  ecap_map_set_program: { parameters: ["pointer", "buffer", "u32", "buffer"], result: "i32" },
  ecap_fd_close: { parameters: ["i32"], result: "void" },
  ecap_guard: { parameters: ["pointer", "buffer"], result: "i32" },
  ecap_map_keys: { parameters: ["pointer", "buffer", "buffer", "u32", "u32"], result: "i32" },
  ecap_attach_raw_tp: { parameters: ["pointer", "buffer", "buffer"], result: "i32" },
  ecap_detach: { parameters: ["pointer", "i32"], result: "i32" },
  ecap_link_count: { parameters: ["pointer"], result: "i32" },
  /** The object's load on a worker thread: the caller goes on meanwhile. */
  ecap_object_load_async: {
    name: "ecap_object_load",
    parameters: ["pointer"],
    result: "i32",
    nonblocking: true,
  },
  ecap_ring_poll: {
    parameters: ["pointer", "buffer", "usize", "i32"],
    result: "i32",
    nonblocking: true,
  },
  /** The same poll, on the caller's thread, for records already there (timeout 0). */
  ecap_ring_poll_now: {
    name: "ecap_ring_poll",
    parameters: ["pointer", "buffer", "usize", "i32"],
    result: "i32",
  },
  ecap_wake: { parameters: ["pointer"], result: "i32" },
  ecap_map_read_percpu: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32"],
    result: "i32",
  },
  ecap_num_cpus: { parameters: [], result: "i32" },
  ecap_tune_malloc: { parameters: [], result: "void" },
  ecap_prefetch_kernel_btf: { parameters: [], result: "void" },
  ecap_release_memory: { parameters: [], result: "void" },
  ecap_monotonic_ns: { parameters: [], result: "u64" },
  ecap_own_sigusr1: { parameters: [], result: "i32" },
  ecap_sigusr1_count: { parameters: [], result: "u32" },
  ecap_last_error: { parameters: ["pointer"], result: "pointer" },
  ecap_log: { parameters: ["pointer"], result: "pointer" },
  ecap_close: { parameters: ["pointer"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

type Lib = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];
let lib: Lib | undefined;

/** Places the embedded shim where dlopen can map it, then opens it. */
function openLibrary(): Lib {
  if (lib) return lib;
  const override = Deno.env.get("ECAP_LIBECAP");
  const failures: string[] = [];
  // /tmp may be mounted noexec on servers: try a few places.
  for (const dir of override ? [] : ["/dev/shm", Deno.env.get("TMPDIR") ?? "/tmp", "/run"]) {
    let path: string | undefined;
    try {
      path = Deno.makeTempFileSync({ dir, prefix: "libecap-", suffix: ".so" });
      Deno.writeFileSync(path, libecapBytes, { mode: 0o700 });
      lib = Deno.dlopen(path, SYMBOLS).symbols;
      return lib;
    } catch (e) {
      failures.push(`${dir}: ${(e as Error).message}`);
    } finally {
      if (path) Deno.removeSync(path);
    }
  }
  if (override) {
    lib = Deno.dlopen(override, SYMBOLS).symbols;
    return lib;
  }
  throw new EcapError(`Cannot load the libbpf shim: ${failures.join("; ")}`, {
    kind: "io",
    hint: "make /dev/shm or TMPDIR writable and executable",
  });
}

const encoder = new TextEncoder();

/** A NUL-terminated UTF-8 copy of s, for `buffer` parameters. */
function cstr(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(encoder.encode(s).length + 1);
  encoder.encodeInto(s, bytes);
  return bytes;
}

function readCString(ptr: Deno.PointerValue): string {
  return ptr ? Deno.UnsafePointerView.getCString(ptr) : "";
}

function kindOf(errno: number): EcapErrorKind {
  switch (errno) {
    case 1:
    case 13:
      return "permission";
    case 2:
    case 3:
      return "not-found";
    case 38:
    case 95:
    case 524:
      return "unsupported";
    default:
      return "internal";
  }
}

/** CLOCK_MONOTONIC in ns, the clock of the kernel's event timestamps. */
export function monotonicNs(): bigint {
  return BigInt(openLibrary().ecap_monotonic_ns());
}

/**
 * Has glibc keep freed memory for reuse (mallopt; see ffi/ecap.h). A
 * capture allocates a 256 KiB block per few hundred events: each new one
 * used to be page-faulted in, which made copying 16 KiB events 2.5x slower
 * (6.3 vs 2.5 µs, measured). Process-wide, done once per process.
 */
export function tuneMalloc(): void {
  if (mallocTuned) return;
  mallocTuned = true;
  openLibrary().ecap_tune_malloc();
}
let mallocTuned = false;

/**
 * Starts parsing the kernel's BTF on a thread of libecap's while the caller
 * prepares an object load; loads running together share the parse.
 */
export function prefetchKernelBtf(): void {
  openLibrary().ecap_prefetch_kernel_btf();
}

/**
 * Gives the heap's free memory back (see ffi/ecap.h): when a capture is idle.
 * A buffer nothing references keeps its malloc memory until V8 collects it,
 * and an idle process allocates nothing that would make V8 collect: so a
 * collection first, where ecap runs with --expose-gc (lib/core/v8_flags.ts).
 */
export function releaseMemory(): void {
  // a collection is process-wide and takes 7-9 ms: the captures of one
  // `ecap tls` fall idle within a few polls of each other, and one serves
  // them all. Each still trims: V8 frees dead buffers on a thread of its
  // own, after the collection, and a later trim gives that back too.
  const now = performance.now();
  if (now - lastCollection >= COLLECTION_SPACING_MS) {
    lastCollection = now;
    (globalThis as { gc?: () => void }).gc?.();
  }
  openLibrary().ecap_release_memory();
}
let lastCollection = -Infinity;
/** releaseMemory's collections are at least this far apart. */
const COLLECTION_SPACING_MS = 1000;

/**
 * Takes SIGUSR1 from Deno's handler, which since Deno 2.9.2 opens a V8
 * inspector on 127.0.0.1:9229 for `deno run` (code execution as root for any
 * local user), and only counts it: see {@link sigusr1Count}. Deno installs
 * its process handler once, at the first listener of a signal: one is added
 * first, so that no later listener (Deno's own, 500 ms after start) puts it
 * back over ours.
 */
export function ownSigusr1(): void {
  if (sigusr1Owned) return;
  Deno.addSignalListener("SIGUSR1", () => {});
  const rc = openLibrary().ecap_own_sigusr1();
  if (rc < 0) {
    throw new EcapError(`Cannot handle SIGUSR1: ${errnoName(-rc)}`, { kind: "internal" });
  }
  sigusr1Owned = true;
}
let sigusr1Owned = false;

/** SIGUSR1 signals received since {@link ownSigusr1}. */
export function sigusr1Count(): number {
  return openLibrary().ecap_sigusr1_count();
}

/** Possible CPUs, as per-CPU maps count them. */
export function numCpus(): number {
  return openLibrary().ecap_num_cpus();
}

/** tcpdump's filter expression for the packets of one kind of interface. */
export interface PacketFilter {
  expression: string;
  /** pcap link type of the interface: 1 Ethernet, 101 raw IP */
  linkType: number;
  snapLen: number;
}

/** libpcap's complaint about a filter expression, or undefined when it compiles. */
export function packetFilterError(f: PacketFilter): string | undefined {
  const msg = new Uint8Array(512);
  const ret = openLibrary().ecap_filter_check(cstr(f.expression), f.linkType, f.snapLen, msg, 512n);
  if (ret >= 0) return undefined;
  return new TextDecoder().decode(msg.subarray(0, msg.indexOf(0))) || errnoName(-ret);
}

/**
 * One BPF object in the kernel, its links and its ring buffer. Close it to
 * detach everything; a closed handle refuses every call.
 */
export class BpfHandle {
  #lib: Lib;
  #ptr: Deno.PointerValue;
  #polling = false;
  readonly name: string;

  private constructor(lib: Lib, ptr: Deno.PointerValue, name: string) {
    this.#lib = lib;
    this.#ptr = ptr;
    this.name = name;
  }

  /** Opens an object from its bytes (not yet loaded). */
  static open(bytes: Uint8Array, name: string): BpfHandle {
    const l = openLibrary();
    const ptr = l.ecap_new();
    if (!ptr) throw new EcapError("Cannot allocate a BPF handle", { kind: "internal" });
    const h = new BpfHandle(l, ptr, name);
    try {
      h.#check(
        l.ecap_object_open_mem(
          ptr,
          bytes as Uint8Array<ArrayBuffer>,
          BigInt(bytes.length),
          cstr(name),
        ),
      );
    } catch (e) {
      h.close();
      throw e;
    }
    return h;
  }

  #live(): Deno.PointerValue {
    if (!this.#ptr) throw new EcapError(`BPF object "${this.name}" is closed`);
    return this.#ptr;
  }

  #check(ret: number): number {
    if (ret >= 0) return ret;
    const message = readCString(this.#lib.ecap_last_error(this.#ptr));
    const log = readCString(this.#lib.ecap_log(this.#ptr)).trim();
    throw new EcapError(message, {
      kind: kindOf(-ret),
      code: errnoName(-ret),
      detail: log || undefined,
    });
  }

  /** Sets a `const volatile` global; value is its exact bytes. */
  setGlobal(name: string, value: Uint8Array) {
    this.#check(
      this.#lib.ecap_object_set_rodata(
        this.#live(),
        cstr(name),
        value as Uint8Array<ArrayBuffer>,
        BigInt(value.length),
      ),
    );
  }

  /** Sets a map's max_entries (bytes, for a ring buffer) before load. */
  setMapSize(map: string, entries: number) {
    this.#check(this.#lib.ecap_map_set_size(this.#live(), cstr(map), entries));
  }

  /** Before load: the object's map `map` is `shared` (one map for several objects). */
  reuseMap(map: string, shared: SharedMap) {
    this.#check(this.#lib.ecap_map_reuse(this.#live(), cstr(map), shared.fd));
  }

  /** After load: `program` goes in `slot` of the program array `map`. */
  setProgramSlot(map: string, slot: number, program: string) {
    this.#check(this.#lib.ecap_map_set_program(this.#live(), cstr(map), slot, cstr(program)));
  }

  /** Loads only these of the object's uprobe programs (other kinds all load). */
  loadUprobesOnly(programs: Iterable<string>) {
    this.#check(
      this.#lib.ecap_object_load_uprobes(this.#live(), cstr([...programs, ""].join("\0"))),
    );
  }

  load() {
    this.#check(this.#lib.ecap_object_load(this.#live()));
  }

  /**
   * load() on a worker thread. Nothing else may use the handle until it
   * settles (close() included: the load would touch freed memory).
   */
  async loadAsync(): Promise<void> {
    this.#check(await this.#lib.ecap_object_load_async(this.#live()));
  }

  /** Attaches a uprobe (or uretprobe) at a file offset; pid 0 = every process. */
  attachUprobe(
    program: string,
    path: string,
    offset: number,
    opts: { retprobe?: boolean; pid?: number; func?: string } = {},
  ): number {
    return this.#check(
      this.#lib.ecap_attach_uprobe(
        this.#live(),
        cstr(program),
        cstr(path),
        BigInt(offset),
        opts.retprobe ? 1 : 0,
        opts.pid ?? 0,
        cstr(opts.func ?? ""),
      ),
    );
  }

  /** True when the program is SEC("uprobe.multi") (attached with attachUprobeMulti). */
  isMultiUprobe(program: string): boolean {
    return this.#check(this.#lib.ecap_program_is_multi(this.#live(), cstr(program))) === 1;
  }

  /** Attaches a uprobe.multi program at several offsets of one file, as one link. */
  attachUprobeMulti(
    program: string,
    path: string,
    offsets: readonly number[],
    opts: {
      retprobe?: boolean;
      pid?: number;
      funcs?: readonly string[];
      /** bpf_get_attach_cookie() of each offset; 0 by default. */
      cookies?: readonly number[];
    } = {},
  ): number {
    const packed = new BigUint64Array(offsets.map(BigInt));
    const cookies = new BigUint64Array(offsets.map((_, i) => BigInt(opts.cookies?.[i] ?? 0)));
    return this.#check(
      this.#lib.ecap_attach_uprobe_multi(
        this.#live(),
        cstr(program),
        cstr(path),
        new Uint8Array(packed.buffer),
        new Uint8Array(cookies.buffer),
        offsets.length,
        opts.retprobe ? 1 : 0,
        opts.pid ?? 0,
        cstr((opts.funcs ?? []).join(", ")),
      ),
    );
  }

  /**
   * Attaches a tcx program to an interface (ingress or egress per its
   * section); with a filter, only the packets it keeps reach the program.
   */
  attachTcx(program: string, ifindex: number, filter?: PacketFilter): number {
    return this.#check(
      this.#lib.ecap_attach_tcx(
        this.#live(),
        cstr(program),
        ifindex,
        filter ? cstr(filter.expression) : null,
        filter?.linkType ?? 0,
        filter?.snapLen ?? 0,
      ),
    );
  }

  /**
   * Runs one packet through program behind filter, in the kernel, as
   * attachTcx places them; linkOffset bytes precede the link layer. A kept
   * packet reaches the ring buffer.
   */
  testFilter(program: string, filter: PacketFilter, packet: Uint8Array, linkOffset = 0): void {
    this.#check(
      this.#lib.ecap_filter_test_run(
        this.#live(),
        cstr(program),
        cstr(filter.expression),
        filter.linkType,
        filter.snapLen,
        linkOffset,
        packet as Uint8Array<ArrayBuffer>,
        packet.length,
      ),
    );
  }

  /** Writes one entry of a map after load. */
  updateMap(map: string, key: Uint8Array, value: Uint8Array) {
    this.#check(
      this.#lib.ecap_map_update(
        this.#live(),
        cstr(map),
        key as Uint8Array<ArrayBuffer>,
        key.length,
        value as Uint8Array<ArrayBuffer>,
        value.length,
      ),
    );
  }

  /** Deletes one entry of a map after load; a missing entry is fine. */
  deleteMapEntry(map: string, key: Uint8Array) {
    this.#check(
      this.#lib.ecap_map_delete(
        this.#live(),
        cstr(map),
        key as Uint8Array<ArrayBuffer>,
        key.length,
      ),
    );
  }

  /**
   * Starts a guardian process that continues (SIGCONT) every pid left in
   * `map` if this process dies without closing the handle.
   */
  guard(map: string) {
    this.#check(this.#lib.ecap_guard(this.#live(), cstr(map)));
  }

  /** Up to `max` keys of a hash map, each `keySize` bytes. */
  mapKeys(map: string, keySize: number, max = 4096): Uint8Array[] {
    const out = new Uint8Array(keySize * max);
    const n = this.#check(this.#lib.ecap_map_keys(this.#live(), cstr(map), out, keySize, max));
    return Array.from({ length: n }, (_, i) => out.slice(i * keySize, (i + 1) * keySize));
  }

  attachRawTracepoint(program: string, tracepoint: string): number {
    return this.#check(
      this.#lib.ecap_attach_raw_tp(this.#live(), cstr(program), cstr(tracepoint)),
    );
  }

  detach(link: number) {
    this.#check(this.#lib.ecap_detach(this.#live(), link));
  }

  get linkCount(): number {
    return this.#ptr ? this.#lib.ecap_link_count(this.#ptr) : 0;
  }

  /**
   * Copies ring-buffer records into buf (each {u32 size, u32 0, data, pad
   * to 8}); resolves with the bytes written, 0 on timeout or wake().
   */
  async poll(buf: Uint8Array<ArrayBuffer>, timeoutMs: number): Promise<number> {
    const ptr = this.#live();
    if (this.#polling) throw new EcapError(`BPF object "${this.name}" is already polled`);
    this.#polling = true;
    try {
      return this.#check(await this.#lib.ecap_ring_poll(ptr, buf, BigInt(buf.length), timeoutMs));
    } finally {
      this.#polling = false;
    }
  }

  /**
   * Copies the records already in the ring buffer, without waiting and on
   * this thread: no hand-off to a worker thread and back (as poll() makes)
   * while a reader is behind.
   */
  pollNow(buf: Uint8Array<ArrayBuffer>): number {
    const ptr = this.#live();
    if (this.#polling) throw new EcapError(`BPF object "${this.name}" is already polled`);
    return this.#check(this.#lib.ecap_ring_poll_now(ptr, buf, BigInt(buf.length), 0));
  }

  /** Ends a poll that is waiting; safe to call at any time. */
  wake() {
    if (this.#ptr) this.#lib.ecap_wake(this.#ptr);
  }

  /** Reads the per-CPU u64 values of one key of a per-CPU array. */
  readPerCpu(map: string, key: number): bigint[] {
    const cpus = Math.max(1, numCpus());
    const out = new BigUint64Array(cpus);
    const n = this.#check(
      this.#lib.ecap_map_read_percpu(
        this.#live(),
        cstr(map),
        key,
        new Uint8Array(out.buffer),
        cpus,
      ),
    );
    return Array.from(out.subarray(0, n));
  }

  /** Detaches every link and frees the object. Idempotent. */
  close() {
    if (!this.#ptr) return;
    if (this.#polling) throw new EcapError(`BPF object "${this.name}" is closed while polled`);
    this.#lib.ecap_close(this.#ptr);
    this.#ptr = null;
  }
}

/** A BPF map of no object, for several objects to share (ecap_map_reuse). */
export class SharedMap implements Disposable {
  #fd: number;

  private constructor(type: number, name: string, valueSize: number, entries: number) {
    const fd = openLibrary().ecap_shared_map_new(type, cstr(name), 4, valueSize, entries);
    if (fd < 0) {
      throw new EcapError(`Cannot make BPF map ${name}: ${errnoName(-fd)}`, {
        kind: kindOf(-fd),
        code: errnoName(-fd),
      });
    }
    this.#fd = fd;
  }

  /** An array of `entries` values of `valueSize` bytes (u32 keys). */
  static array(name: string, valueSize: number, entries: number): SharedMap {
    return new SharedMap(BPF_MAP_TYPE_ARRAY, name, valueSize, entries);
  }

  /** A program array of `slots` (tail calls' targets). */
  static programArray(name: string, slots: number): SharedMap {
    return new SharedMap(BPF_MAP_TYPE_PROG_ARRAY, name, 4, slots);
  }

  get fd(): number {
    if (this.#fd < 0) throw new EcapError("shared BPF map is closed");
    return this.#fd;
  }

  /** The objects that reuse it keep it; this closes only the first fd. */
  [Symbol.dispose]() {
    if (this.#fd >= 0) openLibrary().ecap_fd_close(this.#fd);
    this.#fd = -1;
  }
}

/** enum bpf_map_type (uapi/linux/bpf.h). */
const BPF_MAP_TYPE_ARRAY = 2;
const BPF_MAP_TYPE_PROG_ARRAY = 3;
