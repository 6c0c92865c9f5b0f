/**
 * How a capture module is described: once, as data. lib/core/capture.ts turns a
 * spec into loaded, attached BPF programs; lib/cli/ turns it into a
 * subcommand with its help, completions and man page; mod.ts types its events.
 * @module
 */
import type { Btf } from "../binary/btf.ts";
import type { PacketFilter } from "./ffi.ts";

/** What every probe may say about when it is attached. */
interface ProbeCommon {
  /** Program name in the object (its C function name). */
  program: string;
  /** Output models (`-m`) that need this probe; every model by default. */
  models?: readonly string[];
}

/** Where one BPF program hooks in. */
export type ProbeSpec =
  | ProbeCommon & {
    kind: "uprobe" | "uretprobe";
    /**
     * Which files of the module's targets() hold the function. A probe's
     * BPF cookie is the file's index in that list.
     */
    target: string;
    /** Candidate symbols, first found wins. */
    symbols: readonly string[];
    /** Missing symbol is not an error (an older release lacks it). */
    optional?: boolean;
    /**
     * Probes only the target files this accepts (their BPF cookies stay
     * their index in the role's list); every file by default.
     */
    only?: (path: string) => boolean | Promise<boolean>;
    /**
     * Finds the places to probe in a file instead of looking up `symbols`
     * (which then only name them in messages): file offsets, e.g. the return
     * instructions of a Go function, where uretprobes are unsafe. None found
     * is "missing".
     */
    locate?: (path: string) => Promise<readonly { symbol: string; offset: number }[]>;
  }
  | ProbeCommon & { kind: "raw_tp"; tracepoint: string }
  | ProbeCommon & { kind: "tcx"; direction: "ingress" | "egress" };

type ProbeOpts = {
  optional?: boolean;
  models?: readonly string[];
  only?: (path: string) => boolean | Promise<boolean>;
};

/** Finds the places to probe in a file (see ProbeSpec.locate). */
type Locate = (path: string) => Promise<readonly { symbol: string; offset: number }[]>;

function fileProbe(
  kind: "uprobe" | "uretprobe",
  program: string,
  target: string,
  symbols: string | readonly string[],
  opts: ProbeOpts,
  locate?: Locate,
): ProbeSpec {
  return { kind, program, target, symbols: [symbols].flat(), ...opts, ...locate && { locate } };
}

/** A uprobe on the first of `symbols` found in the `target` file. */
export function uprobe(
  program: string,
  target: string,
  symbols: string | readonly string[],
  opts: ProbeOpts = {},
): ProbeSpec {
  return fileProbe("uprobe", program, target, symbols, opts);
}

/** A uretprobe (on the function's return) on the first of `symbols` found. */
export function uretprobe(
  program: string,
  target: string,
  symbols: string | readonly string[],
  opts: ProbeOpts = {},
): ProbeSpec {
  return fileProbe("uretprobe", program, target, symbols, opts);
}

/**
 * A uprobe at the places `locate` finds in the `target` file (file offsets);
 * `what` names them in messages.
 */
export function uprobeAt(
  program: string,
  target: string,
  what: string,
  locate: Locate,
  opts: ProbeOpts = {},
): ProbeSpec {
  return fileProbe("uprobe", program, target, what, opts, locate);
}

/** A uretprobe at the function starting at the place `locate` finds (see uprobeAt). */
export function uretprobeAt(
  program: string,
  target: string,
  what: string,
  locate: Locate,
  opts: ProbeOpts = {},
): ProbeSpec {
  return fileProbe("uretprobe", program, target, what, opts, locate);
}

/** A raw tracepoint: needs neither tracefs nor kprobes. */
export function rawTracepoint(
  program: string,
  tracepoint: string,
  opts: { models?: readonly string[] } = {},
): ProbeSpec {
  return { kind: "raw_tp", program, tracepoint, ...opts };
}

/** A tcx classifier on every interface of targets(); on loopback egress only (each packet once). */
export function tcx(
  program: string,
  direction: "ingress" | "egress",
  opts: { models?: readonly string[] } = {},
): ProbeSpec {
  return { kind: "tcx", program, direction, ...opts };
}

/** Options every module takes: process filters applied in the kernel. */
export interface CommonOptions {
  /** Only this process (tgid); the first of `pids` when both are given. */
  pid?: number;
  /** Only these processes (-p, repeatable). */
  pids?: number[];
  /** With pids: also the processes they fork (and what those exec) later. */
  followChildren?: boolean;
  /** Only processes of this user id. */
  uid?: number;
  /** Only tasks of this name (comm, at most 15 bytes). */
  comm?: string;
  /** Only processes in this cgroup v2 (a path below /sys/fs/cgroup) or below it. */
  cgroup?: string;
  /**
   * Probe what processes started later map (modules with follow()): the CLI's
   * default. Off by default for library callers: a process that maps a new
   * library is held until the capture's consumer reads the record about it,
   * so the capture must be iterated promptly.
   */
  follow?: boolean;
  /** Ring buffer size in bytes (a power of two, at least one page). */
  mapSize?: number;
  /** Output model (`-m`) for modules that have several; "text" by default. */
  model?: string;
  /**
   * Stop after this many events (`-c`). A sink counts what it writes
   * (packets in a pcapng) and says when it is full; else the CLI counts.
   */
  count?: number;
}

/** Fields every event carries. */
export interface EventBase {
  /** Module that produced the event, e.g. "bash". */
  module: string;
  /** Wall-clock time in nanoseconds since the Unix epoch. */
  timeNs: bigint;
  /** Process id (tgid). */
  pid: number;
  /** Thread id. */
  tid: number;
  uid: number;
  /** The task's (thread's) name, at most 15 bytes. */
  comm: string;
  /**
   * The process's name (its first thread's comm) when the event comes from
   * a thread named otherwise (Firefox's "Socket Thread"); else absent.
   */
  process?: string;
  /** cgroup v2 id of the task (0 or absent when not known). */
  cgroupId?: number;
}

/** A CLI option of a module, described for parseArgs and for help. */
export interface OptionSpec {
  name: string;
  short?: string;
  type: "string" | "boolean";
  /** May be given several times (values come as an array). */
  multiple?: boolean;
  /** Placeholder in help, e.g. "PATH". */
  arg?: string;
  help: string;
}

/** Reads records of one capture; it may hold state (e.g. to join records). */
export interface RecordDecoder<E> {
  /** Events completed by this record (often none or one). */
  decode(view: DataView, offset: number, length: number): E[];
  /** Events still held when the capture ends. */
  flush(): E[];
  /**
   * Events due by time alone (a timeout, a quiet connection), asked after
   * a poll of the ring, records or not, at most every 20 ms; `nowNs` is
   * wall-clock ns.
   */
  tick?(nowNs: bigint): E[];
}

/** What a decoder needs besides the bytes. */
export interface DecodeContext {
  /** The object's BTF: record layouts come from here, never from literals. */
  btf: Btf;
  /** Turns a bpf_ktime_get_ns() stamp into wall-clock ns since the epoch. */
  wallClock: (monoNs: bigint) => bigint;
}

/** A capture module: its object, its hooks, its records and its output. */
export interface ModuleSpec<
  O extends CommonOptions = CommonOptions,
  E extends EventBase = EventBase,
> {
  name: string;
  aliases?: readonly string[];
  /** One line for help. */
  summary: string;
  /** The compiled BPF object, embedded by a bytes import. */
  object: Uint8Array;
  probes: readonly ProbeSpec[];
  /** CLI options beyond the common ones. */
  options: readonly OptionSpec[];
  /** Typed options from parsed CLI values (throws EcapError on bad input). */
  parseOptions(values: Record<string, string | boolean | undefined>): Partial<O>;
  /** The files probes attach to, by role, and what to tell the user about them. */
  targets(opts: O): Promise<TargetSet>;
  /** Maps to size before load (max_entries), e.g. a scratch array per CPU. */
  mapSizes?(opts: O): Record<string, number>;
  /**
   * Loads what the decoder and sinks need that is slow to import; a capture
   * runs it while its BPF object loads, and waits for it before events.
   */
  prepare?(opts: O): Promise<void>;
  /** Module-specific `const volatile` globals, as their exact bytes. */
  globals(opts: O): Record<string, Uint8Array>;
  /**
   * globals() uses what targets() found (a struct offset read from the
   * binary): the object is then loaded after targets(), not while they are
   * sought (which saves the load's time, ~150 ms, or the search's).
   */
  globalsNeedTargets?: boolean;
  /** Makes a (possibly stateful) decoder for one capture. */
  decoder(ctx: DecodeContext, opts: O): RecordDecoder<E>;
  /** One human-readable block per event. */
  format(event: E, opts: O): string;
  /**
   * Where events go for models that write files (keylog, pcapng); text and
   * --json output use format()/toJSON() when this is absent or returns undefined.
   */
  createSink?(opts: O): EventSink<E> | undefined;
  /** The files createSink will write that may be FIFOs (-k, -w), opened before it. */
  outputPaths?(opts: O): string[];
  /** Help for trailing arguments the module accepts (e.g. a filter expression). */
  positionals?: string;
  /** Command lines help and the man page show, each with what it does. */
  examples?: readonly ModuleExample[];
  /**
   * The sink writes its file to stdout (`-w -`): events text must go
   * elsewhere. Absent: never.
   */
  writesStdout?(opts: O): boolean;
  /** The --json object for an event: stable field names (see README). */
  toJSON(event: E): Record<string, unknown>;
  /** How the capture keeps up with processes started after it; absent: it does not. */
  follow?(opts: O): FollowSpec | undefined;
  /** What --list-targets prints: the files the capture would probe. */
  listTargets?(opts: O): Promise<ListedTarget[]>;
  /** Its events as rows of the live web view (--web); absent: a generic row. */
  view?: ModuleView<E>;
}

/** How the page shows a column's values. */
export type ColumnFormat = "text" | "party" | "number" | "bytes" | "ms" | "us" | "status";

/** One column of the web view's table. */
export interface ViewColumn<E> {
  label: string;
  as: ColumnFormat;
  /**
   * What the page does with it beyond showing it: "process" and "status"
   * are filter terms, "duration" feeds the timeline's percentiles, "main"
   * takes the width left over.
   */
  role?: "process" | "status" | "duration" | "main";
  value(event: E): string | number | null | undefined;
}

/** A module's events in the live web view, as data. */
export interface ModuleView<E> {
  columns: readonly ViewColumn<E>[];
  /** Events that make rows (e.g. not key-log secrets); every one by default. */
  shows?(event: E): boolean;
  /** The HAR entry of an event that is an HTTP exchange. */
  har?(event: E): Record<string, unknown> | undefined;
}

/** What a module probes in a file found while capturing, or undefined: not a target. */
export interface FileTarget {
  /** One line for the user, e.g. "OpenSSL 3.0.17". */
  note: string;
  /** Map entries for this file, given the probes' BPF cookie (its index). */
  mapEntries?: (index: number) => { map: string; key: Uint8Array; value: Uint8Array }[];
}

/**
 * How a module follows new processes: files they map executable whose name
 * starts with `mappedPrefix` (the process is held until they are probed), and,
 * with `exec`, binaries they run (a target linked statically).
 */
export interface FollowSpec {
  /** The targets() role whose probes new files get. */
  role: string;
  /** Name prefix of libraries to probe when mapped, e.g. "libssl.so" (at most 3). */
  mappedPrefix?: string | readonly string[];
  /**
   * The module's own sys_enter program that also watches mmaps when the
   * object's `watch_mmap_inline` is set (one program run per syscall, not
   * two); attached when it is, ecap_watch_mmap is not.
   */
  mmapWatchIn?: string;
  /** Inspect binaries exec'd too. */
  exec?: boolean;
  /**
   * With exec: an unknown binary at least this big is held (stopped) until
   * inspected, so a target linked in statically runs nothing unprobed;
   * smaller ones (most commands) run on while inspected. Absent: none held.
   */
  holdExecBytes?: number;
  /** Decides about a file (a host path that opens it). */
  inspect(path: string): Promise<FileTarget | undefined>;
}

/** A file --list-targets names. */
export interface ListedTarget {
  path: string;
  inode: number;
  /** "major:minor" in hex, as /proc/PID/maps prints it. */
  dev: string;
  /** What it is, e.g. "OpenSSL 3.0.17" or "bash". */
  kind: string;
  /** Processes mapping it. */
  processes: { pid: number; comm: string }[];
}

/** Files to probe, by role (e.g. { bash: ["/usr/bin/bash"] }), and notes on them. */
export interface TargetSet {
  files: Record<string, readonly string[]>;
  /** Lines for the user, e.g. a library's version; printed at start. */
  notes: string[];
  /** Network interfaces for tcx probes. */
  interfaces?: readonly {
    name: string;
    index: number;
    loopback: boolean;
    /** Packets kept (tcpdump's language), run in the kernel before the program. */
    filter?: PacketFilter;
  }[];
  /** Map entries to write after load (e.g. struct offsets per probed file). */
  mapEntries?: readonly { map: string; key: Uint8Array; value: Uint8Array }[];
  /**
   * Files probed only while processes map them (found in those processes'
   * maps, not installed on the host): released once these pids are gone.
   */
  users?: Record<string, readonly number[]>;
}

/** A command line in help: `ecap tls -w - | wireshark -k -i -`. */
export interface ModuleExample {
  command: string;
  /** What it does, one line. */
  does: string;
}

/** A consumer of events that owns files, e.g. a pcapng writer. */
export interface EventSink<E> {
  /** Takes a batch of events; returns text for stdout ("" for none). */
  write(batch: readonly E[]): string;
  /**
   * With CommonOptions.count: true once the sink has taken that many of
   * what it counts (packets, handshakes, exchanges); it takes no more.
   * Absent: the CLI counts events.
   */
  readonly full?: boolean;
  /** Called about four times a second: time-based flushing. */
  tick(): void;
  /** Writes what it holds and closes its files; returns a summary for stderr. */
  close(): string | undefined;
}

/** Encodes a u32 global. */
export function u32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n >>> 0, true);
  return b;
}

/** Encodes a u16 global. */
export function u16(n: number): Uint8Array {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, n, true);
  return b;
}

/** Encodes an s32 global. */
export function s32(n: number): Uint8Array {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setInt32(0, n | 0, true);
  return b;
}

/** Encodes a bool global (one byte). */
export function bool(v: boolean): Uint8Array {
  return new Uint8Array([v ? 1 : 0]);
}
