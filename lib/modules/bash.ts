/**
 * bash: command lines typed into interactive bash, with their exit status.
 * kern/bash.bpf.c streams each line from readline's return and reports how
 * its command ended; the decoder here joins the two by pid.
 * @module
 */
import bashObject from "../../build/bash.bpf.o" with { type: "bytes" };
import { EcapError } from "../errors.ts";
import { formatTime } from "../format.ts";
import {
  type CommonOptions,
  type DecodeContext,
  type EventBase,
  type ModuleSpec,
  rawTracepoint,
  type RecordDecoder,
  uprobe,
  uretprobe,
} from "../module_spec.ts";
import { headerReader, RecordError, type RecordHeader } from "../record_header.ts";
import { findShell } from "../targets.ts";

/** Options of the bash module. */
export interface BashOptions extends CommonOptions {
  /** The bash binary to probe; default from $SHELL or /etc/shells. */
  bash?: string;
  /** Only commands that ended with this status. */
  errnumber?: number;
}

/** How a command ended. */
export type BashEnd = "return" | "exit" | "exec" | "syntax" | "none";

/** A command line typed into bash, and how it ended. */
export interface BashEvent extends EventBase {
  module: "bash";
  /** The line as typed; lines of a multi-line command joined by "\n". */
  line: string;
  /** Exit status; null when nothing ran or the shell exec'd another program. */
  status: number | null;
  /**
   * "return" (it ran), "exit" (the shell exited), "exec" (the shell replaced
   * itself), "syntax" (it did not parse; status 2), "none" (a comment).
   */
  end: BashEnd;
  /** The line was longer than the 1 MiB cap and was cut there. */
  truncated: boolean;
}

// readline_internal_teardown also sees the line being typed when ecap
// starts (a uretprobe on readline misses a call already in progress).
const READLINE = ["readline_internal_teardown", "readline"];

/** Joins line chunks and status records into events. */
function bashDecoder(ctx: DecodeContext, opts: BashOptions): RecordDecoder<BashEvent> {
  const hdr = headerReader(ctx.btf, ctx.wallClock);
  const kinds = ctx.btf.enumValues("ecap_kind");
  const lineKind = kinds.get("ECAP_KIND_BASH_LINE")!;
  const statusKind = kinds.get("ECAP_KIND_BASH_STATUS")!;
  const flags = ctx.btf.enumValues("bash_line_flags");
  const MORE = flags.get("BASH_LINE_MORE")!, CUT = flags.get("BASH_LINE_CUT")!;
  const ends = new Map<number, BashEnd>();
  for (const [name, value] of ctx.btf.enumValues("bash_end")) {
    ends.set(value, name.replace("BASH_END_", "").toLowerCase() as BashEnd);
  }
  const line = ctx.btf.struct("bash_line");
  const lineLen = line.members.get("len")!.offset;
  const lineFlags = line.members.get("flags")!.offset;
  const status = ctx.btf.struct("bash_status");
  const statusStatus = status.members.get("status")!.offset;
  const statusEnd = status.members.get("end")!.offset;
  const utf8 = new TextDecoder();

  /** Per shell: the lines read since its last command ended. */
  const pending = new Map<
    number,
    { header: RecordHeader; parts: Uint8Array[]; open: boolean; cut: boolean }
  >();

  return {
    decode(view, offset, length) {
      const h = hdr.read(view, offset, length);
      if (h.kind === lineKind) {
        if (length < line.size) throw new RecordError("bash line record too short");
        const len = view.getUint32(offset + lineLen, true);
        const f = view.getUint32(offset + lineFlags, true);
        if (line.size + len > length) {
          throw new RecordError(
            `bash line claims ${len} bytes, record holds ${length - line.size}`,
          );
        }
        const bytes = new Uint8Array(view.buffer, view.byteOffset + offset + line.size, len)
          .slice();
        let p = pending.get(h.pid);
        if (!p) pending.set(h.pid, p = { header: h, parts: [], open: false, cut: false });
        // a new line after a finished one joins it with "\n" (multi-line command)
        if (!p.open && p.parts.length > 0) p.parts.push(new Uint8Array([10]));
        p.parts.push(bytes);
        p.open = (f & MORE) !== 0;
        p.cut ||= (f & CUT) !== 0;
        return [];
      }
      if (h.kind === statusKind) {
        if (length < status.size) throw new RecordError("bash status record too short");
        const p = pending.get(h.pid);
        if (!p) return []; // a line from before ecap started, or lost
        pending.delete(h.pid);
        const end = ends.get(view.getUint32(offset + statusEnd, true)) ?? "return";
        const code = end === "exec" || end === "none"
          ? null
          : view.getInt32(offset + statusStatus, true);
        if (opts.errnumber !== undefined && code !== opts.errnumber) return [];
        const total = p.parts.reduce((n, b) => n + b.length, 0);
        const all = new Uint8Array(total);
        let at = 0;
        for (const b of p.parts) all.set(b, at), at += b.length;
        const text = utf8.decode(all);
        if (end === "none" && text.trim() === "") return []; // just Enter
        // when and by whom it was typed: after exec the comm is another's
        const { kind: _, ...base } = p.header;
        return [{
          module: "bash",
          ...base,
          line: text,
          status: code,
          end,
          truncated: p.cut,
        }];
      }
      throw new RecordError(`unknown record kind ${h.kind} in bash capture`);
    },
    flush() {
      pending.clear();
      return [];
    },
  };
}

function parseStatus(v: string | boolean | undefined): number | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  if (!/^-?\d+$/.test(v) || Number(v) < -2147483648 || Number(v) > 2147483647) {
    throw new EcapError(`Invalid --errnumber "${v}": expected an exit status such as 0 or 127`, {
      kind: "usage",
    });
  }
  return Number(v);
}

/** The bash module, described once. */
export const bash: ModuleSpec<BashOptions, BashEvent> = {
  name: "bash",
  summary: "Command lines typed into interactive bash, with exit status",
  object: bashObject,
  probes: [
    uretprobe("uretprobe_readline", "bash", READLINE),
    uprobe("uprobe_execute_command", "bash", "execute_command"),
    uretprobe("uretprobe_execute_command", "bash", "execute_command"),
    uprobe("uprobe_parse_command", "bash", "parse_command"),
    uprobe("uprobe_parser_error", "bash", "parser_error"),
    uprobe("uprobe_exit_shell", "bash", "exit_shell"),
    rawTracepoint("raw_tp_sched_process_exec", "sched_process_exec"),
  ],
  options: [
    {
      name: "bash",
      type: "string",
      arg: "PATH",
      help: "bash binary (default: $SHELL, /etc/shells)",
    },
    {
      name: "errnumber",
      short: "e",
      type: "string",
      arg: "N",
      help: "only commands that ended with exit status N",
    },
  ],
  parseOptions: (v) => ({
    bash: typeof v.bash === "string" ? v.bash : undefined,
    errnumber: parseStatus(v.errnumber),
  }),
  targets: async (opts) => ({ files: { bash: [await findShell("bash", opts.bash)] }, notes: [] }),
  globals: () => ({}),
  decoder: bashDecoder,
  format(ev) {
    const status = ev.status === null
      ? ev.end
      : `${ev.status}${ev.end === "return" ? "" : ` ${ev.end}`}`;
    const cut = ev.truncated ? " [cut at 1 MiB]" : "";
    const line = ev.line.replaceAll("\n", "\n    ");
    return `${
      formatTime(ev.timeNs)
    } pid=${ev.pid} uid=${ev.uid} comm=${ev.comm} status=${status}${cut}\n    ${line}`;
  },
  toJSON: (ev) => ({
    module: ev.module,
    time: formatTime(ev.timeNs, true),
    pid: ev.pid,
    tid: ev.tid,
    uid: ev.uid,
    comm: ev.comm,
    line: ev.line,
    status: ev.status,
    end: ev.end,
    truncated: ev.truncated,
  }),
};
