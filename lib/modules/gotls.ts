/**
 * gotls: plaintext and key log lines of Go programs using crypto/tls.
 * kern/gotls.bpf.c probes (*Conn).Read and (*Conn).Write at their entry and
 * at each of their RET instructions (Go moves goroutine stacks: uretprobes
 * are unsafe), the handshake functions for the socket, and
 * (*Config).writeKeyLog for the secrets. Functions are found in the Go
 * function table (.gopclntab), so stripped binaries work; what every TLS
 * module shares (events, models, decoder, sinks) is in lib/tls/tls_family.ts.
 *
 * The socket comes from the read/write syscall the runtime makes inside a
 * call, matched to the call by the goroutine (R14 at sys_enter), and is
 * cached per *tls.Conn; no struct offsets are needed. Limits: Go >= 1.17 on
 * amd64 (register ABI); a connection whose calls never make a syscall
 * while probed (all served from bytes read before ecap started) has fd -1
 * and no addresses; a Read buffer on the goroutine's stack that moves while
 * the call blocks would be read at its old place (buffers passed through
 * io.Reader live on the heap). Go logs no EXPORTER_SECRET, so a TLS 1.3
 * handshake's key lines end with SERVER_TRAFFIC_SECRET_0.
 * @module
 */
import gotlsObject from "../../build/gotls.bpf.o" with { type: "bytes" };
import { EcapError } from "../base/errors.ts";
import { ElfError, ElfFile } from "../binary/elf.ts";
import { type GoBinary, GoBinaryError, mayBeGoBinary, readGoBinary } from "../binary/gopclntab.ts";
import {
  type FileTarget,
  type ListedTarget,
  type ModuleSpec,
  rawTracepoint,
  uprobeAt,
} from "../core/module_spec.ts";
import { formatDev, isDevInode, listPids, mappedPath } from "../binary/proc_maps.ts";
import { checkArchitecture } from "../core/targets.ts";
import {
  PACKET_PROBES,
  packetInterfaces,
  SECRET_MODELS,
  TEXT_MODEL,
  tlsFamily,
} from "../tls/tls_family.ts";
import type {
  TlsDataEvent as DataEvent,
  TlsFamilyEvent,
  TlsFamilyOptions,
  TlsPacketEvent as PacketEvent,
  TlsSecretEvent as SecretEvent,
} from "../tls/tls_events.ts";
import { retOffsets, X86DecodeError } from "../binary/x86_ret.ts";

/** Options of the gotls module. */
export interface GotlsOptions extends TlsFamilyOptions {
  /** A Go program (stripped or not); default: every Go program running that uses crypto/tls. */
  elfpath?: string;
}

/** Bytes one (*tls.Conn).Read or Write call moved (`-m text`). */
export type GotlsDataEvent = DataEvent<"gotls">;
/** One key log line of a handshake (`-m keylog`, `-m pcap`). */
export type GotlsSecretEvent = SecretEvent<"gotls">;
/** A packet seen by the tcx classifier (`-m pcap`). */
export type GotlsPacketEvent = PacketEvent<"gotls">;
/** What the gotls module reports. */
export type GotlsEvent = TlsFamilyEvent<"gotls">;

const ROLE = "elfpath";
const READ = "crypto/tls.(*Conn).Read";
const WRITE = "crypto/tls.(*Conn).Write";
const CLIENT_HS = "crypto/tls.(*Conn).clientHandshake";
const SERVER_HS = "crypto/tls.(*Conn).serverHandshake";
const KEYLOG = "crypto/tls.(*Config).writeKeyLog";

/** What gotls found in one Go binary. */
interface GoTarget {
  binary: GoBinary;
  /** "Go go1.19.8" or "Go (version unknown)". */
  what: string;
}

/** Parsed binaries by identity (dev, inode, size, mtime): the several probes of one start parse once. */
const analyzed = new Map<string, Promise<GoTarget>>();

/**
 * Reads a Go binary that uses crypto/tls; throws a one-line EcapError when
 * it is not one or uses the stack ABI of Go < 1.17.
 */
async function analyze(path: string): Promise<GoTarget> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (e) {
    throw new EcapError(`Go program "${path}" not found`, { kind: "not-found", cause: e });
  }
  if (!st.isFile) {
    throw new EcapError(`Go program "${path}" is not a regular file`, { kind: "not-found" });
  }
  const key = `${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
  let target = analyzed.get(key);
  if (!target) {
    target = analyzeNow(path);
    analyzed.set(key, target);
    if (analyzed.size > 32) analyzed.delete(analyzed.keys().next().value!);
  }
  return await target;
}

async function analyzeNow(path: string): Promise<GoTarget> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new EcapError(`Cannot read Go program "${path}": permission denied`, {
        kind: "permission",
      });
    }
    throw new EcapError(`Go program "${path}" not found`, { kind: "not-found", cause: e });
  }
  const notGo = (why: string) =>
    new EcapError(`Cannot capture gotls: "${path}" is not a Go program (${why})`, {
      kind: "unsupported",
      hint: "pass --elfpath with a Go program that uses crypto/tls",
    });
  let elf: ElfFile;
  try {
    elf = ElfFile.parse(bytes);
  } catch (e) {
    if (e instanceof ElfError) throw notGo(e.message);
    throw e;
  }
  checkArchitecture(elf, path, "Go program");
  if (elf.machineName !== "x86_64") {
    throw new EcapError(`Cannot capture gotls: "${path}" is not an x86-64 program`, {
      kind: "unsupported",
    });
  }
  let binary: GoBinary;
  try {
    binary = readGoBinary(bytes, elf);
  } catch (e) {
    if (e instanceof GoBinaryError || e instanceof ElfError) throw notGo(e.message);
    throw e;
  }
  const read = binary.functions.get(READ);
  if (!read || !binary.functions.has(WRITE)) {
    throw new EcapError(`Cannot capture gotls: Go program "${path}" does not use crypto/tls`, {
      kind: "unsupported",
      hint: "pass --elfpath with a Go program that uses crypto/tls",
    });
  }
  const version = binary.version ?? "(version unknown)";
  // ABIInternal code (Go >= 1.17) checks the stack bound through g in R14:
  // CMPQ 0x10(R14), SP or CMPQ 0x10(R14), R12
  const head = binary.code(read)?.subarray(0, 24) ?? new Uint8Array();
  const hex = Array.from(head, (b) => b.toString(16).padStart(2, "0")).join("");
  if (!/(49|4d)3b6610/.test(hex)) {
    throw new EcapError(
      `Cannot capture gotls: "${path}" is built by Go ${version}, which passes arguments on the stack`,
      { kind: "unsupported", hint: "gotls reads Go >= 1.17's register ABI (amd64)" },
    );
  }
  return { binary, what: `Go ${version.replace(/^go/, "")}` };
}

/**
 * Where `name` is entered, as a probe place; none if the binary lacks it.
 * Go functions open with their stack check (`cmp [r14+0x10]`, after a `lea`
 * for bigger frames), which the kernel single-steps (about 20 µs a hit
 * here), then a `jbe` to grow the stack, which it emulates (5.5 µs): the
 * probe sits on that jump. The arguments are still in their registers
 * there, and a call whose stack grows passes it twice, as it does the entry.
 */
function entryOf(name: string) {
  return async (path: string) => {
    const { binary } = await analyze(path);
    const fn = binary.functions.get(name);
    const offset = fn && binary.fileOffset(fn.entry);
    if (!fn || offset === undefined) return [];
    const code = binary.code(fn);
    const at = code ? stackCheckJump(code) : undefined;
    return at === undefined
      ? [{ symbol: name, offset }]
      : [{ symbol: `${name}+0x${at.toString(16)}`, offset: offset + at }];
  };
}

/**
 * The offset of the `jbe` that ends a Go function's stack check: `cmp
 * rsp|r12, 0x10(%r14)` (an optional `lea -N(%rsp),%r12` before it), then
 * jbe rel8 or rel32. Undefined for any other start (no check: NOSPLIT).
 */
export function stackCheckJump(code: Uint8Array): number | undefined {
  let at = 0;
  // lea -N(%rsp),%r12: 4c 8d 64 24 disp8 or 4c 8d a4 24 disp32
  if (code[0] === 0x4c && code[1] === 0x8d && code[3] === 0x24) {
    if (code[2] === 0x64) at = 5;
    else if (code[2] === 0xa4) at = 8;
    else return undefined;
  }
  // cmp 0x10(%r14),%rsp|%r12: 49|4d 3b 66 10
  if (!(code[at] === 0x49 || code[at] === 0x4d) || code[at + 1] !== 0x3b) return undefined;
  if (code[at + 2] !== 0x66 || code[at + 3] !== 0x10) return undefined;
  at += 4;
  const jbe = code[at] === 0x76 || (code[at] === 0x0f && code[at + 1] === 0x86);
  return jbe ? at : undefined;
}

/** The RET instructions of `name` as probe places. */
function returnsOf(name: string) {
  return async (path: string) => {
    const { binary } = await analyze(path);
    const fn = binary.functions.get(name);
    const code = fn && binary.code(fn);
    const start = fn && binary.fileOffset(fn.entry);
    if (!fn || !code || start === undefined) return [];
    let rets: number[];
    try {
      rets = retOffsets(code);
    } catch (e) {
      if (!(e instanceof X86DecodeError)) throw e;
      throw new EcapError(
        `Cannot capture gotls: cannot decode ${name} in "${path}": ${e.message}`,
        {
          kind: "unsupported",
        },
      );
    }
    return rets.map((r) => ({ symbol: `${name}+0x${r.toString(16)}`, offset: start + r }));
  };
}

/** A Go program running now, by its binary. */
interface RunningGo {
  path: string;
  inode: number;
  dev: string;
  pids: number[];
}

/** Go programs of running processes (or of `only`) that use crypto/tls. */
async function findRunningGo(only?: number[]): Promise<RunningGo[]> {
  const byFile = new Map<string, RunningGo>();
  const self = Deno.pid;
  for (const pid of only ?? await listPids()) {
    if (pid === self) continue;
    const exe = `/proc/${pid}/exe`;
    let st: Deno.FileInfo;
    try {
      st = await Deno.stat(exe);
    } catch {
      continue; // gone, or a kernel thread
    }
    const key = `${st.dev}:${st.ino}`;
    const known = byFile.get(key);
    if (known) {
      known.pids.push(pid);
      continue;
    }
    let path: string | undefined;
    try {
      if (!await mayBeGoBinary(exe)) continue;
      // a name for people: the path the host opens it by (see mappedPath)
      const seen = await Deno.readLink(exe);
      const isIt = isDevInode(formatDev(st.dev!), st.ino!);
      path = await mappedPath(pid, seen, isIt) ?? exe;
      await analyze(path);
    } catch {
      continue; // not a Go program using crypto/tls
    }
    byFile.set(key, { path, inode: st.ino!, dev: formatDev(st.dev!), pids: [pid] });
  }
  return [...byFile.values()];
}

function pidsOf(opts: GotlsOptions): number[] {
  return [...new Set([...(opts.pids ?? []), ...(opts.pid ? [opts.pid] : [])])];
}

async function commOf(pid: number): Promise<string> {
  return (await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "?")).trim();
}

async function fileTarget(path: string): Promise<FileTarget> {
  const t = await analyze(path);
  const stripped = t.binary.elf.sectionHeader(".symtab") ? "" : ", stripped";
  return { note: `${t.what}${stripped}, function table found by ${t.binary.foundBy}` };
}

/** The gotls module, described once. */
export const gotls: ModuleSpec<GotlsOptions, GotlsEvent> = {
  name: "gotls",
  aliases: ["go"],
  summary: "Plaintext, keys and packets of Go programs using crypto/tls",
  examples: [
    { command: "ecap gotls", does: "plaintext of every running Go program using crypto/tls" },
    {
      command: "ecap gotls -e ./server --json",
      does: "the plaintext of the Go program ./server, as JSON",
    },
    {
      command: "ecap gotls -w go.pcapng -i lo tcp port 8443",
      does: "loopback packets of port 8443 with their keys",
    },
  ],
  object: gotlsObject,
  probes: [
    uprobeAt("uprobe_go_write", ROLE, WRITE, entryOf(WRITE), { models: TEXT_MODEL }),
    uprobeAt("uprobe_go_data_ret", ROLE, `RET of ${WRITE}`, returnsOf(WRITE), {
      models: TEXT_MODEL,
    }),
    uprobeAt("uprobe_go_read", ROLE, READ, entryOf(READ), { models: TEXT_MODEL }),
    uprobeAt("uprobe_go_data_ret", ROLE, `RET of ${READ}`, returnsOf(READ), {
      models: TEXT_MODEL,
    }),
    // the socket before the first Read or Write; the connection of key log lines
    uprobeAt("uprobe_go_handshake", ROLE, CLIENT_HS, entryOf(CLIENT_HS), { optional: true }),
    uprobeAt("uprobe_go_handshake", ROLE, SERVER_HS, entryOf(SERVER_HS), { optional: true }),
    uprobeAt("uprobe_go_keylog", ROLE, KEYLOG, entryOf(KEYLOG), { models: SECRET_MODELS }),
    rawTracepoint("raw_tp_sys_enter", "sys_enter"),
    ...PACKET_PROBES,
  ],
  ...tlsFamily<GotlsOptions, "gotls">("gotls", [{
    name: "elfpath",
    short: "e",
    type: "string",
    arg: "PATH",
    help: "a Go program, stripped or not (default: every running Go program using crypto/tls)",
  }], (v) => ({ elfpath: typeof v.elfpath === "string" ? v.elfpath : undefined })),
  async targets(opts) {
    const pids = pidsOf(opts);
    let paths: string[];
    if (opts.elfpath) {
      await analyze(opts.elfpath);
      paths = [opts.elfpath];
    } else {
      paths = (await findRunningGo(pids.length ? pids : undefined)).map((g) => g.path);
      const following = opts.follow && (pids.length === 0 || opts.followChildren);
      if (paths.length === 0 && !following) {
        throw new EcapError(
          pids.length
            ? `Process ${pids.join(", ")} is no Go program using crypto/tls`
            : "No running Go program uses crypto/tls",
          { kind: "not-found", hint: "pass --elfpath PATH" },
        );
      }
    }
    const notes: string[] = [];
    for (const path of paths) notes.push(`${path}: ${(await fileTarget(path)).note}`);
    if (paths.length === 0) notes.push("no Go program using crypto/tls runs yet: watching execs");
    const packets = packetInterfaces(opts);
    notes.push(...packets.notes);
    return { files: { [ROLE]: paths }, notes, interfaces: packets.interfaces };
  },
  follow(opts) {
    // a program named by the user is all it asked for
    if (opts.elfpath) return undefined;
    if (pidsOf(opts).length > 0 && !opts.followChildren) return undefined;
    return {
      role: ROLE,
      exec: true,
      // a Go program linking crypto/tls is several MB (a client: ~6 MB)
      holdExecBytes: 2 << 20,
      async inspect(path) {
        try {
          // most programs run while capturing are not Go: their section
          // names say so from a few KiB, before the full parse
          if (!await mayBeGoBinary(path)) return undefined;
          return await fileTarget(path);
        } catch (e) {
          if (e instanceof EcapError) return undefined; // not a Go program using crypto/tls
          throw e;
        }
      },
    };
  },
  async listTargets(opts) {
    const pids = pidsOf(opts);
    const found: RunningGo[] = opts.elfpath
      ? [
        await (async () => {
          const st = await Deno.stat(opts.elfpath!).catch(() => undefined);
          return { path: opts.elfpath!, inode: st?.ino ?? 0, dev: st ? formatDev(st.dev!) : "?" };
        })(),
      ].map((f) => ({ ...f, pids: [] }))
      : await findRunningGo(pids.length ? pids : undefined);
    const out: ListedTarget[] = [];
    for (const g of found) {
      const kind = await fileTarget(g.path).then(
        (t) => t.note,
        (e) => `not usable: ${(e as Error).message}`,
      );
      out.push({
        path: g.path,
        inode: g.inode,
        dev: g.dev,
        kind,
        processes: await Promise.all(g.pids.map(async (pid) => ({ pid, comm: await commOf(pid) }))),
      });
    }
    return out;
  },
};
