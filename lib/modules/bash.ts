/**
 * bash: command lines typed into interactive bash, with their exit status.
 * kern/bash.bpf.c streams each line from readline's return and reports how
 * its command ended; the decoder here joins the two by pid.
 * @module
 */
import bashObject from "../../build/bash.bpf.o" with { type: "bytes" };
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
import {
  formatShellEvent,
  shellDecoder,
  type ShellEnd,
  type ShellEvent,
  shellEventJSON,
  shellView,
} from "../shell/shell_decoder.ts";
import { findShell, followPrograms } from "../core/targets.ts";

/** Options of the bash module. */
export interface BashOptions extends CommonOptions {
  /** The bash binary to probe; default from $SHELL or /etc/shells. */
  bash?: string;
  /** Only commands that ended with this status. */
  errnumber?: number;
}

/**
 * How a command ended: "return" (it ran), "exit" (the shell exited), "exec"
 * (the shell replaced itself), "syntax" (it did not parse; status 2), "none"
 * (a comment).
 */
export type BashEnd = ShellEnd;

/** A command line typed into bash, and how it ended. */
export type BashEvent = ShellEvent<"bash">;

// readline_internal_teardown also sees the line being typed when ecap
// starts (a uretprobe on readline misses a call already in progress).
const READLINE = ["readline_internal_teardown", "readline"];

const utf8 = new TextDecoder();

/** Joins line chunks and status records into events. */
function bashDecoder(ctx: DecodeContext, opts: BashOptions): RecordDecoder<BashEvent> {
  return shellDecoder(ctx, {
    module: "bash",
    lineKind: "ECAP_KIND_BASH_LINE",
    statusKind: "ECAP_KIND_BASH_STATUS",
    statusStruct: "bash_status",
    endEnum: "bash_end",
    endPrefix: "BASH_END_",
    text: (bytes) => utf8.decode(bytes),
    noStatus: ["exec", "none"],
    errnumber: opts.errnumber,
  });
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
  examples: [
    {
      command: "ecap bash -c 10",
      does: "the next 10 command lines typed into any bash, then stop",
    },
    {
      command: "ecap bash -e 127 --json",
      does: "commands that were not found (status 127), as JSON",
    },
    {
      command: "ecap bash -p 4242 -o commands.log",
      does: "what the shell with pid 4242 runs, appended to a file",
    },
  ],
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
  // another bash binary run later (a container's) gets the same probes
  follow: (opts) => followPrograms(opts, opts.bash, "bash", "execute_command", 512 << 10),
  decoder: bashDecoder,
  format: formatShellEvent,
  toJSON: shellEventJSON,
  view: shellView(),
};
