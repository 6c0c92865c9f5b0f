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
import { RecordError, type RecordHeader } from "../record_header.ts";
import { textChunkReader, TextJoiner } from "../text_chunks.ts";
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
  const chunks = textChunkReader(ctx.btf, ctx.wallClock);
  const kinds = ctx.btf.enumValues("ecap_kind");
  const lineKind = kinds.get("ECAP_KIND_BASH_LINE")!;
  const statusKind = kinds.get("ECAP_KIND_BASH_STATUS")!;
  const ends = new Map<number, BashEnd>();
  for (const [name, value] of ctx.btf.enumValues("bash_end")) {
    ends.set(value, name.replace("BASH_END_", "").toLowerCase() as BashEnd);
  }
  const status = ctx.btf.struct("bash_status");
  const statusStatus = status.members.get("status")!.offset;
  const statusEnd = status.members.get("end")!.offset;
  const utf8 = new TextDecoder();
  const lines = new TextJoiner<number>();

  /** Per shell: the lines read since its last command ended. */
  const pending = new Map<number, { header: RecordHeader; lines: Uint8Array[]; cut: boolean }>();

  return {
    decode(view, offset, length) {
      const h = chunks.header.read(view, offset, length);
      if (h.kind === lineKind) {
        const line = lines.add(h.pid, chunks.read(view, offset, length, h));
        if (!line) return [];
        const p = pending.get(h.pid);
        // another line before the command ended: a multi-line command
        if (p) p.lines.push(line.bytes), p.cut ||= line.cut;
        else pending.set(h.pid, { header: line.header, lines: [line.bytes], cut: line.cut });
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
        const text = p.lines.map((l) => utf8.decode(l)).join("\n");
        if (end === "none" && text.trim() === "") return []; // just Enter
        // when and by whom it was typed: after exec the comm is another's
        const { kind: _, ...base } = p.header;
        return [{ module: "bash", ...base, line: text, status: code, end, truncated: p.cut }];
      }
      throw new RecordError(`unknown record kind ${h.kind} in bash capture`);
    },
    flush() {
      pending.clear();
      lines.clear();
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
