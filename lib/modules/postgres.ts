/**
 * postgres: every statement PostgreSQL backends run, through the simple and
 * the extended protocol, with the database user, duration and result.
 *
 * kern/postgres.bpf.c hooks only exported functions, so Debian's stripped
 * server works: pgstat_report_activity (a Query, Parse, Bind or Execute
 * message starts; or the backend is idle again, right before
 * ReadyForQuery: the statement ends), PortalRun (it executes: the text is
 * sent) and PortalErrorCleanup (the main loop recovers from an ERROR). One
 * event is one Query
 * message (all the statements of its string) or one Execute of the extended
 * protocol, with the text of the statement it ran; a Parse that never runs
 * is not reported, a failed one is. The user and database come from each
 * backend's process title, sent once per backend.
 * @module
 */
import postgresObject from "../../build/postgres.bpf.o" with { type: "bytes" };
import { EcapError } from "../base/errors.ts";
import { formatTime } from "../base/format.ts";
import {
  type CommonOptions,
  type DecodeContext,
  type EventBase,
  type ModuleSpec,
  rawTracepoint,
  type RecordDecoder,
  uprobe,
} from "../core/module_spec.ts";
import { listPids } from "../binary/proc_maps.ts";
import { RecordError, type RecordHeader } from "../core/record_header.ts";
import { followPrograms, locateSymbol, openElf } from "../core/targets.ts";
import { textChunkReader, TextJoiner } from "../core/text_chunks.ts";

/** Options of the postgres module. */
export interface PostgresOptions extends CommonOptions {
  /** The server binary to probe; default: the running postgres. */
  postgres?: string;
}

/** One statement a backend ran. */
export interface PostgresEvent extends EventBase {
  module: "postgres";
  /** Database user from the backend's process title; null if unreadable. */
  user: string | null;
  /** Database from the backend's process title; null if unreadable. */
  database: string | null;
  /** The text as the client sent it: a whole Query string, or a prepared statement's. */
  query: string;
  /** The text was longer than the 1 MiB cap and was cut there. */
  truncated: boolean;
  /** From the backend starting on it to its end (idle again, or the next one). */
  durationUs: number;
  /** "error" when an ERROR reached the backend's main loop, or it exited inside it. */
  result: "ok" | "error";
}

const TARGET = "postgres";
/** What marks a file as a PostgreSQL server binary. */
const SERVER_SYMBOL = "pgstat_report_activity";
const HINT = "pass --postgres with the path of a postgres server binary";

/** The running servers' binaries: processes named postgres whose exe is a server. */
async function runningServers(): Promise<string[]> {
  const found = new Set<string>();
  for (const pid of await listPids()) {
    let exe: string;
    try {
      const comm = (await Deno.readTextFile(`/proc/${pid}/comm`)).trim();
      if (comm !== "postgres" && comm !== "postmaster") continue;
      exe = await Deno.realPath(`/proc/${pid}/exe`);
    } catch {
      continue; // gone, a kernel thread, or another mount namespace
    }
    if (found.has(exe)) continue;
    try {
      if (await locateSymbol(exe, [SERVER_SYMBOL], "postgres")) found.add(exe);
    } catch { /* unreadable: not ours to probe */ }
  }
  return [...found];
}

/** Installed servers, newest major version first (Debian's layout). */
async function installedServers(): Promise<string[]> {
  const out: { version: number; path: string }[] = [];
  try {
    for await (const e of Deno.readDir("/usr/lib/postgresql")) {
      const path = `/usr/lib/postgresql/${e.name}/bin/postgres`;
      try {
        if ((await Deno.stat(path)).isFile) out.push({ version: parseFloat(e.name) || 0, path });
      } catch { /* no server in this version's directory */ }
    }
  } catch { /* no /usr/lib/postgresql */ }
  return out.sort((a, b) => b.version - a.version).map((s) => s.path);
}

/** The files to probe and a note on where they came from. */
async function findPostgres(explicit?: string): Promise<{ files: string[]; note: string }> {
  if (explicit) {
    try {
      await openElf(explicit, "postgres");
    } catch (e) {
      if (!(e instanceof EcapError)) throw e;
      throw new EcapError(e.message, { kind: e.kind, hint: HINT, cause: e });
    }
    const path = await Deno.realPath(explicit);
    return { files: [path], note: `probing ${path}` };
  }
  const running = await runningServers();
  if (running.length > 0) {
    return { files: running, note: `probing the running server ${running.join(", ")}` };
  }
  const installed = await installedServers();
  if (installed.length > 0) {
    return {
      files: [installed[0]],
      note: `probing ${installed[0]} (no server running yet: backends it starts are seen)`,
    };
  }
  throw new EcapError("No PostgreSQL server found: none running, none in /usr/lib/postgresql", {
    kind: "not-found",
    hint: HINT,
  });
}

/** Who a backend serves, from its title "postgres: [CLUSTER: ]USER DB HOST ACTIVITY". */
export function parseTitle(title: string): { user: string; database: string } | undefined {
  const host = String.raw`(?:\[local\]|\S+\(\d+\))`;
  const plain = new RegExp(String.raw`^postgres: (\S+) (\S+) ${host}(?: |$)`);
  const cluster = new RegExp(String.raw`^postgres: .*?: (\S+) (\S+) ${host}(?: |$)`);
  const m = plain.exec(title) ?? cluster.exec(title);
  return m ? { user: m[1], database: m[2] } : undefined;
}

/** Joins statement text, backend titles and end records into events. */
function postgresDecoder(ctx: DecodeContext): RecordDecoder<PostgresEvent> {
  const chunks = textChunkReader(ctx.btf, ctx.wallClock);
  const kinds = ctx.btf.enumValues("ecap_kind");
  const queryKind = kinds.get("ECAP_KIND_PG_QUERY")!;
  const doneKind = kinds.get("ECAP_KIND_PG_DONE")!;
  const backendKind = kinds.get("ECAP_KIND_PG_BACKEND")!;
  const results = ctx.btf.enumValues("query_result");
  const ERROR = results.get("QUERY_ERROR")!;
  const done = ctx.btf.struct("query_done");
  const durationAt = done.members.get("duration_ns")!.offset;
  const resultAt = done.members.get("result")!.offset;
  const utf8 = new TextDecoder();
  const texts = new TextJoiner<number>();
  const titles = new TextJoiner<number>();
  /** Who each backend serves, by pid. */
  const backends = new Map<number, { user: string; database: string } | undefined>();
  /** Per backend: the text of the statement that has not ended yet. */
  const pending = new Map<number, { header: RecordHeader; query: string; cut: boolean }>();

  return {
    decode(view, offset, length) {
      const h = chunks.header.read(view, offset, length);
      if (h.kind === queryKind) {
        const t = texts.add(h.pid, chunks.read(view, offset, length, h));
        if (t) pending.set(h.pid, { header: t.header, query: utf8.decode(t.bytes), cut: t.cut });
        return [];
      }
      if (h.kind === backendKind) {
        const t = titles.add(h.pid, chunks.read(view, offset, length, h));
        if (t) backends.set(h.pid, parseTitle(utf8.decode(t.bytes)));
        return [];
      }
      if (h.kind === doneKind) {
        if (length < done.size) throw new RecordError("postgres done record too short");
        const p = pending.get(h.pid);
        if (!p) return []; // its text was lost (ring buffer full)
        pending.delete(h.pid);
        const durationNs = view.getBigUint64(offset + durationAt, true);
        const who = backends.get(h.pid);
        const { kind: _, ...base } = p.header;
        return [{
          module: "postgres",
          ...base,
          timeNs: h.timeNs - durationNs, // when it started
          user: who?.user ?? null,
          database: who?.database ?? null,
          query: p.query,
          truncated: p.cut,
          durationUs: Number(durationNs / 1000n),
          result: view.getUint32(offset + resultAt, true) === ERROR ? "error" : "ok",
        }];
      }
      throw new RecordError(`unknown record kind ${h.kind} in postgres capture`);
    },
    flush() {
      pending.clear();
      texts.clear();
      titles.clear();
      return [];
    },
  };
}

/** The postgres module, described once. */
export const postgres: ModuleSpec<PostgresOptions, PostgresEvent> = {
  name: "postgres",
  aliases: ["postgresql", "pg"],
  summary: "Statements PostgreSQL backends run, with user, duration and result",
  examples: [
    { command: "ecap postgres", does: "statements the PostgreSQL backends run" },
    { command: "ecap postgres --json -c 50", does: "the next 50, as JSON" },
    {
      command: "ecap postgres --duration 60 -o statements.log",
      does: "a minute of them, into a file",
    },
  ],
  object: postgresObject,
  probes: [
    uprobe("uprobe_report_activity", TARGET, SERVER_SYMBOL),
    uprobe("uprobe_portal_run", TARGET, "PortalRun"),
    uprobe("uprobe_portal_error_cleanup", TARGET, "PortalErrorCleanup"),
    rawTracepoint("raw_tp_sched_process_exit", "sched_process_exit"),
  ],
  options: [
    {
      name: "postgres",
      type: "string",
      arg: "PATH",
      help: "postgres server binary (default: the running postgres)",
    },
  ],
  parseOptions: (v) => ({ postgres: typeof v.postgres === "string" ? v.postgres : undefined }),
  async targets(opts) {
    const { files, note } = await findPostgres(opts.postgres);
    return { files: { [TARGET]: files }, notes: [note] };
  },
  // a server started later from another binary (a container's) gets the same probes
  follow: (opts) => followPrograms(opts, opts.postgres, TARGET, SERVER_SYMBOL, 4 << 20),
  globals: () => ({}),
  decoder: postgresDecoder,
  format(ev) {
    const who = `user=${ev.user ?? "?"} db=${ev.database ?? "?"}`;
    const ms = (ev.durationUs / 1000).toFixed(3);
    const cut = ev.truncated ? " [cut at 1 MiB]" : "";
    const query = ev.query.replaceAll("\n", "\n    ");
    return `${
      formatTime(ev.timeNs)
    } pid=${ev.pid} ${who} ${ms} ms ${ev.result}${cut}\n    ${query}`;
  },
  toJSON: (ev) => ({
    module: ev.module,
    time: formatTime(ev.timeNs, true),
    pid: ev.pid,
    tid: ev.tid,
    uid: ev.uid,
    comm: ev.comm,
    user: ev.user,
    database: ev.database,
    query: ev.query,
    truncated: ev.truncated,
    durationUs: ev.durationUs,
    result: ev.result,
  }),
  view: {
    columns: [
      { label: "Process", as: "party", role: "process", value: (ev) => `${ev.comm}[${ev.pid}]` },
      { label: "User", as: "text", value: (ev) => ev.user },
      { label: "Database", as: "text", value: (ev) => ev.database },
      { label: "Result", as: "status", role: "status", value: (ev) => ev.result },
      { label: "Duration", as: "us", role: "duration", value: (ev) => ev.durationUs },
      { label: "Query", as: "text", role: "main", value: (ev) => ev.query },
    ],
  },
};
