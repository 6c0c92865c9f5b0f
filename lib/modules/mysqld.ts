/**
 * mysqld: every query a MySQL or MariaDB server executes, with its
 * connection, how it ended and how long it took. kern/mysqld.bpf.c streams
 * the text from dispatch_command's entry (or, for a prepared statement's run,
 * from general_log_write) and reports the end from its return; the decoder
 * here joins the two by thread.
 * @module
 */
import mysqldObject from "../../build/mysqld.bpf.o" with { type: "bytes" };
import { type ElfFile, EM_AARCH64, EM_X86_64 } from "../binary/elf.ts";
import { EcapError } from "../base/errors.ts";
import { formatTime } from "../base/format.ts";
import {
  type CommonOptions,
  type DecodeContext,
  type EventBase,
  type ModuleSpec,
  type RecordDecoder,
  s32,
  u32,
  uprobe,
  uretprobe,
} from "../core/module_spec.ts";
import { hostPath, listPids } from "../binary/proc_maps.ts";
import { RecordError } from "../core/record_header.ts";
import { openElf } from "../core/targets.ts";
import { mayDefineSymbol } from "../binary/elf_peek.ts";
import { textChunkReader, TextJoiner } from "../core/text_chunks.ts";

/** Options of the mysqld module. */
export interface MysqldOptions extends CommonOptions {
  /** The server binary to probe; default: the running mariadbd or mysqld. */
  mysqld?: string;
}

/** The protocol command that carried a query. */
export type MysqldCommand = "query" | "prepare" | "execute";

/** One command a MySQL or MariaDB server ran, and how it ended. */
export interface MysqldEvent extends EventBase {
  module: "mysqld";
  /**
   * The connection id (CONNECTION_ID()) when ecap could find it in the
   * server (see the start-up note), else the server thread's id, which is
   * one per connection unless a thread pool is configured.
   */
  conn: number;
  /**
   * "query" (COM_QUERY: a text query, possibly several statements),
   * "prepare" (COM_STMT_PREPARE) or "execute" (COM_STMT_EXECUTE).
   */
  command: MysqldCommand;
  /**
   * The statement's text. For "execute", the text as the server logs it
   * (parameters substituted); "" if the server logged none.
   */
  query: string;
  /** The text was longer than the 1 MiB cap: `query` is its first 1 MiB. */
  truncated: boolean;
  /** From the command's start to its end, in microseconds. */
  durationUs: number;
  /** "error" when the server sent the client an error for the command. */
  result: "ok" | "error";
  /** dispatch_command's return: 1 when the server closes the connection after it. */
  retval: number;
}

/** Demangled signatures of dispatch_command, by argument layout. */
const DISPATCH_PACKET = [
  // MariaDB 10.6 and later: (enum_server_command, THD*, char*, unsigned, bool)
  "_Z16dispatch_command19enum_server_commandP3THDPcjb",
  // MariaDB 10.2 to 10.5: (..., bool is_com_multi, bool is_next_command)
  "_Z16dispatch_command19enum_server_commandP3THDPcjbb",
  // MariaDB 10.0, 10.1, MySQL 5.6: (enum_server_command, THD*, char*, unsigned)
  "_Z16dispatch_command19enum_server_commandP3THDPcj",
];
// MySQL 5.7, 8.x: (THD*, const COM_DATA*, enum_server_command)
const DISPATCH_COM_DATA = ["_Z16dispatch_commandP3THDPK8COM_DATA19enum_server_command"];
const DISPATCH = [...DISPATCH_PACKET, ...DISPATCH_COM_DATA];

/** Hooks that see the text of a prepared statement's run. */
const GENERAL_LOG = ["_Z17general_log_writeP3THD19enum_server_commandPKcm"];
const QUERY_LOGGER = [
  "_ZN12Query_logger17general_log_writeEP3THD19enum_server_commandPKcm",
];

/** Functions that send an error packet to the client. */
const SEND_ERROR = [
  // MariaDB 10.x: what Protocol::send_error, at a statement's end, and
  // net_send_error, at a connection's, both call through the vtable
  "_ZN8Protocol21net_send_error_packetEP3THDjPKcS3_",
  "_ZN16Protocol_classic10send_errorEjPKcS1_", // MySQL 5.7, 8.x
  "_Z14net_send_errorP3THDjPKcS2_", // MySQL 5.6
];

const SERVERS = ["mariadbd", "mysqld"];
const DEFAULT_PATHS = ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"];
const ROLE = "mysqld";

/** Where THD keeps the connection id, as the server's own accessor reads it. */
interface ThdId {
  offset: number;
  size: 4 | 8;
}

/** What targets() found out, for globals(). */
const resolved = new WeakMap<MysqldOptions, ThdId | undefined>();

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** `path` itself when it names the same file as `host` (the process shares our root). */
async function sameFile(host: string, path: string): Promise<string> {
  try {
    const [a, b] = await Promise.all([Deno.stat(host), Deno.stat(path)]);
    return a.dev === b.dev && a.ino === b.ino ? path : host;
  } catch {
    return host;
  }
}

/** Executables of the running servers (or of process `pid`), as host paths. */
async function runningServers(pid?: number): Promise<string[]> {
  const found = new Set<string>();
  for (const p of pid === undefined ? await listPids() : [pid]) {
    let exe: string;
    try {
      exe = await Deno.readLink(`/proc/${p}/exe`);
    } catch {
      continue; // gone, a kernel thread, or not ours to read
    }
    const name = exe.replace(/ \(deleted\)$/, "").split("/").pop() ?? "";
    if (!SERVERS.includes(name)) continue;
    const host = await hostPath(p, exe).catch(() => undefined);
    found.add(host ? await sameFile(host, exe) : `/proc/${p}/exe`);
  }
  return [...found];
}

/** The server binaries to probe: --mysqld, else the running ones, else the usual paths. */
async function findServers(opts: MysqldOptions): Promise<string[]> {
  if (opts.mysqld) {
    if (!await isFile(opts.mysqld)) {
      throw new EcapError(`mysqld "${opts.mysqld}" not found`, {
        kind: "not-found",
        hint: "pass --mysqld with the path of a mysqld or mariadbd binary",
      });
    }
    return [await Deno.realPath(opts.mysqld)];
  }
  const running = await runningServers(opts.pid);
  if (running.length > 0) return running;
  if (opts.pid !== undefined) {
    throw new EcapError(`Process ${opts.pid} is not a mariadbd or mysqld`, {
      kind: "not-found",
      hint: "pass --mysqld PATH with the server's binary",
    });
  }
  for (const p of DEFAULT_PATHS) if (await isFile(p)) return [await Deno.realPath(p)];
  throw new EcapError("No mariadbd or mysqld running, nor in /usr/sbin", {
    kind: "not-found",
    hint: "pass --mysqld PATH",
  });
}

/**
 * Reads `thd_get_thread_id`, the plugin API's accessor of the connection id:
 * built optimised it is one load from its argument and a return, whose
 * displacement is the field's offset. Undefined for any other shape.
 */
export function decodeThdIdLoad(code: Uint8Array, machine: number): ThdId | undefined {
  const dv = new DataView(code.buffer, code.byteOffset, code.byteLength);
  if (machine === EM_X86_64) {
    let i = 0;
    if (code[0] === 0xf3 && code[1] === 0x0f && code[2] === 0x1e && code[3] === 0xfa) i = 4; // endbr64
    let size: 4 | 8 = 4;
    if (code[i] === 0x48) size = 8, i++; // REX.W: a 64-bit load
    if (code[i] !== 0x8b) return undefined; // mov r, r/m
    const modrm = code[i + 1];
    // mov eax/rax, [rdi + disp]: reg = 0 (rax), rm = 7 (rdi)
    if ((modrm & 0x3f) !== 0x07) return undefined;
    if (modrm >> 6 === 2 && code[i + 6] === 0xc3) {
      return { offset: dv.getInt32(i + 2, true), size };
    }
    if (modrm >> 6 === 1 && code[i + 3] === 0xc3) return { offset: dv.getInt8(i + 2), size };
    return undefined;
  }
  if (machine === EM_AARCH64 && code.length >= 8) {
    const insn = dv.getUint32(0, true);
    if (dv.getUint32(4, true) !== 0xd65f03c0) return undefined; // ret
    const imm = (insn >>> 10) & 0xfff;
    const op = (insn & 0xffc003ff) >>> 0; // the load with both registers x0/w0
    if (op === 0xf9400000) return { offset: imm * 8, size: 8 }; // ldr x0, [x0, #]
    if (op === 0xb9400000) return { offset: imm * 4, size: 4 }; // ldr w0, [x0, #]
  }
  return undefined;
}

async function thdIdOf(elf: ElfFile, path: string): Promise<ThdId | undefined> {
  const sym = elf.symbol("thd_get_thread_id");
  if (sym?.fileOffset === undefined) return undefined;
  const code = new Uint8Array(16);
  using f = await Deno.open(path);
  await f.seek(sym.fileOffset, Deno.SeekMode.Start);
  let n = 0;
  while (n < code.length) {
    const r = await f.read(code.subarray(n));
    if (r === null) break;
    n += r;
  }
  const id = decodeThdIdLoad(code.subarray(0, n), elf.machine);
  return id && id.offset > 0 && id.offset < 1 << 20 ? id : undefined;
}

/** Checks a server binary; returns what to tell the user and where the conn id is. */
async function inspectServer(path: string): Promise<{ note: string; thdId?: ThdId }> {
  const elf = await openElf(path, "mysqld");
  const has = (names: readonly string[]) => names.find((n) => elf.symbol(n)?.fileOffset);
  const dispatch = has(DISPATCH);
  if (!dispatch) {
    const other = [...elf.symbols()].find((s) => s.name.includes("16dispatch_command"));
    throw new EcapError(
      `Cannot capture mysqld: "${path}" defines no dispatch_command (looked for ${
        DISPATCH.join(", ")
      })${other ? ` (it has ${other.name}, an unknown signature)` : ""}`,
      { kind: "unsupported", hint: "pass --mysqld with a MariaDB 10.x or MySQL 5.6-8.x server" },
    );
  }
  const thdId = await thdIdOf(elf, path);
  const layout = DISPATCH_COM_DATA.includes(dispatch)
    ? "MySQL 5.7/8.x"
    : "MariaDB 10.x (or MySQL 5.6)";
  const parts = [`${path}: ${layout} dispatch_command`];
  parts.push(
    thdId
      ? `conn is the connection id (THD+0x${thdId.offset.toString(16)})`
      : "conn is the server thread's id (no usable thd_get_thread_id)",
  );
  if (!has(SEND_ERROR)) parts.push("no error-sending function found: every result reads ok");
  if (!has(GENERAL_LOG) && !has(QUERY_LOGGER)) parts.push("no text for prepared-statement runs");
  return { note: parts.join("; "), thdId };
}

/** Joins query text and end records into events. */
function mysqldDecoder(ctx: DecodeContext): RecordDecoder<MysqldEvent> {
  const chunks = textChunkReader(ctx.btf, ctx.wallClock);
  const kinds = ctx.btf.enumValues("ecap_kind");
  const queryKind = kinds.get("ECAP_KIND_MYSQL_QUERY")!;
  const doneKind = kinds.get("ECAP_KIND_MYSQL_DONE")!;
  const done = ctx.btf.struct("query_done");
  const at = (m: string) => done.members.get(m)!.offset;
  const durationAt = at("duration_ns"), connAt = at("conn"), retvalAt = at("retval");
  const resultAt = at("result"), commandAt = at("command");
  const errorValue = ctx.btf.enumValues("query_result").get("QUERY_ERROR")!;
  const commands = new Map<number, MysqldCommand>();
  const names: Record<string, MysqldCommand> = {
    MYSQL_COM_QUERY: "query",
    MYSQL_COM_STMT_PREPARE: "prepare",
    MYSQL_COM_STMT_EXECUTE: "execute",
  };
  for (const [name, value] of ctx.btf.enumValues("mysql_command")) {
    if (names[name]) commands.set(value, names[name]);
  }
  const utf8 = new TextDecoder();
  const texts = new TextJoiner<number>();
  /** Per server thread: the text of the command running on it. */
  const pending = new Map<number, { bytes: Uint8Array; cut: boolean }>();

  return {
    decode(view, offset, length) {
      const h = chunks.header.read(view, offset, length);
      if (h.kind === queryKind) {
        const text = texts.add(h.tid, chunks.read(view, offset, length, h));
        if (text) pending.set(h.tid, { bytes: text.bytes, cut: text.cut });
        return [];
      }
      if (h.kind === doneKind) {
        if (length < done.size) throw new RecordError("query_done record too short");
        const text = pending.get(h.tid);
        pending.delete(h.tid);
        const durationNs = view.getBigUint64(offset + durationAt, true);
        const command = commands.get(view.getUint32(offset + commandAt, true));
        if (!command) throw new RecordError("query_done of an unknown command");
        const { kind: _, timeNs, ...base } = h;
        return [{
          module: "mysqld",
          ...base,
          timeNs: timeNs - durationNs, // when it started
          conn: Number(view.getBigInt64(offset + connAt, true)),
          command,
          query: text ? utf8.decode(text.bytes) : "",
          truncated: text?.cut ?? false,
          durationUs: Number(durationNs / 1000n),
          result: view.getUint32(offset + resultAt, true) === errorValue ? "error" : "ok",
          retval: view.getInt32(offset + retvalAt, true),
        }];
      }
      throw new RecordError(`unknown record kind ${h.kind} in mysqld capture`);
    },
    flush() {
      pending.clear();
      texts.clear();
      return [];
    },
  };
}

/** The mysqld module, described once. */
export const mysqld: ModuleSpec<MysqldOptions, MysqldEvent> = {
  name: "mysqld",
  aliases: ["mysql", "mariadb", "mariadbd"],
  summary: "Queries a MySQL/MariaDB server runs, with result and duration",
  examples: [
    { command: "ecap mysqld", does: "queries the running MySQL or MariaDB server runs" },
    { command: "ecap mysqld --json -o queries.jsonl", does: "as JSON lines in a file" },
    { command: "ecap mysqld -c 100", does: "the next 100 queries, then stop" },
  ],
  object: mysqldObject,
  probes: [
    uprobe("uprobe_dispatch_packet", ROLE, DISPATCH_PACKET, { optional: true }),
    uprobe("uprobe_dispatch_com_data", ROLE, DISPATCH_COM_DATA, { optional: true }),
    uretprobe("uretprobe_dispatch", ROLE, DISPATCH),
    uprobe("uprobe_general_log_write", ROLE, GENERAL_LOG, { optional: true }),
    uprobe("uprobe_query_logger_write", ROLE, QUERY_LOGGER, { optional: true }),
    uprobe("uprobe_send_error", ROLE, SEND_ERROR, { optional: true }),
  ],
  options: [
    {
      name: "mysqld",
      type: "string",
      arg: "PATH",
      help: "server binary (default: the running mariadbd/mysqld, else /usr/sbin's)",
    },
  ],
  parseOptions: (v) => ({ mysqld: typeof v.mysqld === "string" ? v.mysqld : undefined }),
  async targets(opts) {
    const paths = await findServers(opts);
    const notes: string[] = [];
    const ids: (ThdId | undefined)[] = [];
    for (const path of paths) {
      const info = await inspectServer(path);
      notes.push(info.note);
      ids.push(info.thdId);
    }
    // one offset for every server probed: binaries that disagree fall back to thread ids
    const same = ids.every((id) => id && id.offset === ids[0]!.offset && id.size === ids[0]!.size);
    resolved.set(opts, same ? ids[0] : undefined);
    if (!same && ids.some((id) => id)) {
      notes.push("servers keep the connection id in different places: conn is the thread id");
    }
    // struct thd_id_at: size 0 when unknown
    const id = resolved.get(opts);
    const at = new Uint8Array([...s32(id?.offset ?? 0), ...u32(id?.size ?? 0)]);
    return {
      files: { [ROLE]: paths },
      notes,
      mapEntries: [{ map: "thd_id", key: u32(0), value: at }],
    };
  },
  follow(opts) {
    // a server named by the user, or given processes only, is all it asked for
    if (opts.mysqld) return undefined;
    if ((opts.pids?.length ?? (opts.pid ? 1 : 0)) > 0 && !opts.followChildren) return undefined;
    return {
      role: ROLE,
      exec: true,
      holdExecBytes: 8 << 20, // mariadbd: 26 MB
      async inspect(path) {
        try {
          if (!await mayDefineSymbol(path, DISPATCH)) return undefined;
          // the connection id's offset is one global for every server probed
          const info = await inspectServer(path);
          const id = resolved.get(opts);
          if (id?.offset !== info.thdId?.offset || id?.size !== info.thdId?.size) return undefined;
          return { note: "mysqld (the connection id where the first server keeps it)" };
        } catch {
          return undefined; // not a server we can read
        }
      },
    };
  },
  globals: () => ({}),
  decoder: mysqldDecoder,
  format(ev) {
    const cut = ev.truncated ? " [cut at 1 MiB]" : "";
    const ms = (ev.durationUs / 1000).toFixed(3);
    const query = ev.query.replaceAll("\n", "\n    ");
    return `${
      formatTime(ev.timeNs)
    } pid=${ev.pid} conn=${ev.conn} ${ev.command} ${ev.result} ${ms} ms${cut}\n    ${query}`;
  },
  toJSON: (ev) => ({
    module: ev.module,
    time: formatTime(ev.timeNs, true),
    pid: ev.pid,
    tid: ev.tid,
    uid: ev.uid,
    comm: ev.comm,
    conn: ev.conn,
    command: ev.command,
    query: ev.query,
    truncated: ev.truncated,
    durationUs: ev.durationUs,
    result: ev.result,
    retval: ev.retval,
  }),
  view: {
    columns: [
      { label: "Process", as: "party", role: "process", value: (ev) => `${ev.comm}[${ev.pid}]` },
      { label: "Conn", as: "number", value: (ev) => ev.conn },
      { label: "Command", as: "text", value: (ev) => ev.command },
      { label: "Result", as: "status", role: "status", value: (ev) => ev.result },
      { label: "Duration", as: "us", role: "duration", value: (ev) => ev.durationUs },
      { label: "Query", as: "text", role: "main", value: (ev) => ev.query },
    ],
  },
};
