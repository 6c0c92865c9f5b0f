/**
 * zsh: command lines typed into interactive zsh, with their exit status.
 * kern/zsh.bpf.c streams each line as zle (the line editor, a module zsh
 * dlopens) hands it over, and reports how its command ended; the decoder here
 * joins the two by pid and undoes zsh's metafication of the text.
 * @module
 */
import zshObject from "../../build/zsh.bpf.o" with { type: "bytes" };
import type { ElfFile } from "../binary/elf.ts";
import { EcapError } from "../base/errors.ts";
import {
  type CommonOptions,
  type DecodeContext,
  type ModuleSpec,
  rawTracepoint,
  type RecordDecoder,
  uprobe,
  uretprobe,
} from "../core/module_spec.ts";
import { listPids, mappedFiles } from "../binary/proc_maps.ts";
import {
  formatShellEvent,
  shellDecoder,
  type ShellEnd,
  type ShellEvent,
  shellEventJSON,
  shellView,
} from "../shell/shell_decoder.ts";
import { findShell, openElf } from "../core/targets.ts";

/** Options of the zsh module. */
export interface ZshOptions extends CommonOptions {
  /** The zsh binary to probe; default from $SHELL or /etc/shells. */
  zsh?: string;
}

/** How a command ended. */
/**
 * How a command ended: "return" (it ran), "exit" (the shell exited: status
 * is its exit status, 128 + N when killed by signal N), "exec" (the shell
 * replaced itself), "syntax" (it did not parse), "none" (nothing ran).
 */
export type ZshEnd = ShellEnd;

/** A command line typed into zsh, and how it ended ($? as status). */
export type ZshEvent = ShellEvent<"zsh">;

/** zle functions zleread() calls last, in this order, and nowhere else. */
const ZLE_SYMBOLS = ["zleread", "freeundo", "zlegetline", "forget_edits"];
/** What the zsh binary must define: it runs the lines and holds $?. */
const ZSH_SYMBOLS = ["execode", "parse_event", "lastval", "zerr", "zwarn"];

/** zsh's Meta byte: the next byte was XORed with 32 (zsh.h). */
const META = 0x83;

/** Undoes zsh's metafication: Meta, then the byte XOR 32. */
export function unmetafy(bytes: Uint8Array): Uint8Array {
  if (!bytes.includes(META)) return bytes;
  const out = new Uint8Array(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    out[n++] = bytes[i] === META && i + 1 < bytes.length ? bytes[++i] ^ 32 : bytes[i];
  }
  return out.subarray(0, n);
}

const utf8 = new TextDecoder();

/** Joins line chunks and status records into events. */
function zshDecoder(ctx: DecodeContext): RecordDecoder<ZshEvent> {
  return shellDecoder(ctx, {
    module: "zsh",
    lineKind: "ECAP_KIND_ZSH_LINE",
    statusKind: "ECAP_KIND_ZSH_STATUS",
    statusStruct: "zsh_status",
    endEnum: "zsh_end",
    endPrefix: "ZSH_END_",
    text(bytes, cut) {
      // zle ends each line it hands over with the Enter that ended it
      const text = utf8.decode(unmetafy(bytes));
      return !cut && text.endsWith("\n") ? text.slice(0, -1) : text;
    },
    noStatus: ["exec"],
  });
}

/** The files to probe and the addresses the BPF side needs, per zsh binary. */
interface ZshTargets {
  zsh: string;
  zle: string;
  execode: bigint;
  parseEvent: bigint;
  lastval: bigint;
}

/** What targets() found, for globals() of the same capture. */
const resolved = new WeakMap<ZshOptions, ZshTargets>();

/** NUL-terminated strings of the binary naming a zsh module dir, e.g. /usr/lib/…/zsh/5.9. */
function moduleDirs(elf: ElfFile): string[] {
  const dirs: string[] = [];
  const rodata = elf.section(".rodata");
  if (!rodata) return dirs;
  const text = new TextDecoder("latin1").decode(rodata);
  for (const m of text.matchAll(/\/[\x21-\x7e]*\/zsh\/\d[\x21-\x7e]*(?=\0)/g)) {
    if (!dirs.includes(m[0])) dirs.push(m[0]);
  }
  return dirs;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** zle.so as a running instance of `zsh` mapped it (module_path may differ). */
async function zleOfRunningShell(zsh: string): Promise<string | undefined> {
  for (const pid of await listPids()) {
    try {
      if (await Deno.realPath(`/proc/${pid}/exe`) !== zsh) continue;
      const zle = (await mappedFiles(pid)).find((f) => f.path.endsWith("/zsh/zle.so"));
      if (zle && !zle.deleted && await isFile(zle.path)) return zle.path;
    } catch { /* gone, or not ours to read */ }
  }
  return undefined;
}

/**
 * The zsh binary and its line editor. Debian's zsh dlopens zle.so from its
 * compiled-in module dir (not DT_NEEDED): find that dir in the binary, else
 * ask a running zsh, else fail saying where it looked.
 */
async function zshTargets(opts: ZshOptions): Promise<ZshTargets> {
  const zsh = await findShell("zsh", opts.zsh);
  const elf = await openElf(zsh, "zsh");
  // lastval is in .bss: defined, but not in the file
  const missing = ZSH_SYMBOLS.filter((s) => !elf.symbol(s)?.value);
  if (missing.length > 0) {
    throw new EcapError(
      `Cannot capture zsh: "${zsh}" is not zsh (it lacks ${missing.join(", ")})`,
      { kind: "unsupported", hint: "pass --zsh with the path of a zsh binary" },
    );
  }
  const addr = (name: string) => BigInt(elf.symbol(name)!.value);
  let zle: string | undefined;
  if (ZLE_SYMBOLS.every((s) => elf.symbol(s)?.fileOffset !== undefined)) zle = zsh; // linked in
  const dirs = moduleDirs(elf);
  for (const dir of dirs) {
    if (zle) break;
    if (await isFile(`${dir}/zsh/zle.so`)) zle = `${dir}/zsh/zle.so`;
  }
  zle ??= await zleOfRunningShell(zsh);
  if (!zle) {
    const where = dirs.length ? dirs.map((d) => `${d}/zsh/zle.so`).join(", ") : "nowhere";
    throw new EcapError(
      `Cannot capture zsh: no line editor (zle.so) found for "${zsh}" (looked at ${where})`,
      { kind: "not-found", hint: "install zsh's zle module, or start a zsh that loads it" },
    );
  }
  return {
    zsh,
    zle,
    execode: addr("execode"),
    parseEvent: addr("parse_event"),
    lastval: addr("lastval"),
  };
}

function u64(n: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, n, true);
  return b;
}

/** The zsh module, described once. */
export const zsh: ModuleSpec<ZshOptions, ZshEvent> = {
  name: "zsh",
  summary: "Command lines typed into interactive zsh, with exit status",
  examples: [
    { command: "ecap zsh", does: "command lines typed into every interactive zsh" },
    {
      command: "ecap zsh -u 1000 --json",
      does: "command lines typed into zsh by user 1000, as JSON",
    },
    {
      command: "ecap zsh -q -c 5 -o zsh.log",
      does: "the next 5 command lines into a file, nothing on stderr",
    },
  ],
  object: zshObject,
  probes: [
    uprobe("uprobe_zleread", "zle", "zleread"),
    uprobe("uprobe_freeundo", "zle", "freeundo"),
    uretprobe("uretprobe_zlegetline", "zle", "zlegetline"),
    uprobe("uprobe_forget_edits", "zle", "forget_edits"),
    uprobe("uprobe_parse_event", "zsh", "parse_event"),
    uprobe("uprobe_execode", "zsh", "execode"),
    uretprobe("uretprobe_execode", "zsh", "execode"),
    uprobe("uprobe_zerr", "zsh", "zerr"),
    uprobe("uprobe_zwarn", "zsh", "zwarn"),
    rawTracepoint("raw_tp_sched_process_exec", "sched_process_exec"),
    rawTracepoint("raw_tp_sched_process_exit", "sched_process_exit"),
  ],
  options: [
    {
      name: "zsh",
      type: "string",
      arg: "PATH",
      help: "zsh binary (default: $SHELL, /etc/shells); its zle.so is found from it",
    },
  ],
  parseOptions: (v) => ({ zsh: typeof v.zsh === "string" ? v.zsh : undefined }),
  async targets(opts) {
    const t = await zshTargets(opts);
    resolved.set(opts, t);
    return { files: { zsh: [t.zsh], zle: [t.zle] }, notes: [`zsh line editor: ${t.zle}`] };
  },
  globalsNeedTargets: true,
  globals(opts) {
    const t = resolved.get(opts);
    if (!t) throw new EcapError("zsh: globals() called before targets() for these options");
    return {
      execode_vaddr: u64(t.execode),
      parse_event_vaddr: u64(t.parseEvent),
      lastval_vaddr: u64(t.lastval),
    };
  },
  decoder: zshDecoder,
  format: formatShellEvent,
  toJSON: shellEventJSON,
  view: shellView(),
};
