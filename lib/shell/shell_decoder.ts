/**
 * The decoder bash and zsh share: a shell streams each line it reads as
 * text chunks, then one status record says how the command ended; lines
 * read before that status belong to one (multi-line) command.
 * @module
 */
import { formatTime } from "../base/format.ts";
import type { DecodeContext, EventBase, ModuleView, RecordDecoder } from "../core/module_spec.ts";
import { RecordError, type RecordHeader } from "../core/record_header.ts";
import { textChunkReader, TextJoiner } from "../core/text_chunks.ts";

/** How a shell's command ended. */
export type ShellEnd = "return" | "exit" | "exec" | "syntax" | "none";

/** A command line typed into a shell, and how it ended. */
export interface ShellEvent<M extends string> extends EventBase {
  module: M;
  /** The line as typed; lines of a multi-line command joined by "\n". */
  line: string;
  /** Exit status; null when it has none (exec, and for bash a comment). */
  status: number | null;
  end: ShellEnd;
  /** The line was longer than the 1 MiB cap and was cut there. */
  truncated: boolean;
}

/** What tells one shell's records apart from another's. */
export interface ShellRecords<M extends string> {
  module: M;
  /** enum ecap_kind names of its line chunks and its status record. */
  lineKind: string;
  statusKind: string;
  /** Its status struct and the enum (with its name prefix) of how commands end. */
  statusStruct: string;
  endEnum: string;
  endPrefix: string;
  /** The line's text from its bytes (a shell may escape or terminate them). */
  text(bytes: Uint8Array, cut: boolean): string;
  /** Ends that carry no status. */
  noStatus: readonly ShellEnd[];
  /** Only commands that ended with this status. */
  errnumber?: number;
}

/** Makes a decoder joining a shell's line chunks with its status records. */
export function shellDecoder<M extends string>(
  ctx: DecodeContext,
  r: ShellRecords<M>,
): RecordDecoder<ShellEvent<M>> {
  const chunks = textChunkReader(ctx.btf, ctx.wallClock);
  const kinds = ctx.btf.enumValues("ecap_kind");
  const lineKind = kinds.get(r.lineKind)!;
  const statusKind = kinds.get(r.statusKind)!;
  const ends = new Map<number, ShellEnd>();
  for (const [name, value] of ctx.btf.enumValues(r.endEnum)) {
    ends.set(value, name.replace(r.endPrefix, "").toLowerCase() as ShellEnd);
  }
  const status = ctx.btf.struct(r.statusStruct);
  const statusStatus = status.members.get("status")!.offset;
  const statusEnd = status.members.get("end")!.offset;
  const lines = new TextJoiner<number>();

  /** Per shell: the lines read since its last command ended. */
  const pending = new Map<number, { header: RecordHeader; lines: string[]; cut: boolean }>();

  return {
    decode(view, offset, length) {
      const h = chunks.header.read(view, offset, length);
      if (h.kind === lineKind) {
        const line = lines.add(h.pid, chunks.read(view, offset, length, h));
        if (!line) return [];
        const text = r.text(line.bytes, line.cut);
        const p = pending.get(h.pid);
        // another line before the command ended: a multi-line command
        if (p) p.lines.push(text), p.cut ||= line.cut;
        else pending.set(h.pid, { header: line.header, lines: [text], cut: line.cut });
        return [];
      }
      if (h.kind === statusKind) {
        if (length < status.size) throw new RecordError(`${r.module} status record too short`);
        const p = pending.get(h.pid);
        if (!p) return []; // a line from before ecap started, or lost
        pending.delete(h.pid);
        const end = ends.get(view.getUint32(offset + statusEnd, true)) ?? "return";
        const code = r.noStatus.includes(end) ? null : view.getInt32(offset + statusStatus, true);
        if (r.errnumber !== undefined && code !== r.errnumber) return [];
        const text = p.lines.join("\n");
        if (end === "none" && text.trim() === "") return []; // just Enter
        // when and by whom it was typed: after exec the comm is another's
        const { kind: _, ...base } = p.header;
        return [{ module: r.module, ...base, line: text, status: code, end, truncated: p.cut }];
      }
      throw new RecordError(`unknown record kind ${h.kind} in ${r.module} capture`);
    },
    flush() {
      pending.clear();
      lines.clear();
      return [];
    },
  };
}

/** A shell event as text: a header line, then the command indented. */
export function formatShellEvent<M extends string>(ev: ShellEvent<M>): string {
  const status = ev.status === null
    ? ev.end
    : `${ev.status}${ev.end === "return" ? "" : ` ${ev.end}`}`;
  const cut = ev.truncated ? " [cut at 1 MiB]" : "";
  const line = ev.line.replaceAll("\n", "\n    ");
  return `${
    formatTime(ev.timeNs)
  } pid=${ev.pid} uid=${ev.uid} comm=${ev.comm} status=${status}${cut}\n    ${line}`;
}

/** A shell event's --json object (field names in the README). */
export function shellEventJSON<M extends string>(ev: ShellEvent<M>): Record<string, unknown> {
  return {
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
  };
}

/** Shell commands in the live web view. */
export function shellView<M extends string>(): ModuleView<ShellEvent<M>> {
  return {
    columns: [
      { label: "Process", as: "party", role: "process", value: (ev) => `${ev.comm}[${ev.pid}]` },
      { label: "User", as: "number", value: (ev) => ev.uid },
      {
        label: "Status",
        as: "status",
        role: "status",
        value: (ev) => ev.status ?? (ev.end === "none" ? null : ev.end),
      },
      { label: "Command", as: "text", role: "main", value: (ev) => ev.line },
    ],
  };
}
