/**
 * ecap.1, the man page, in roff (man macros), from the same tables as
 * help: modules, options, examples and exit codes. scripts/build.ts
 * writes it to build/ecap.1.
 * @module
 */
import type { CommonOptions, EventBase, ModuleSpec, OptionSpec } from "../core/module_spec.ts";
import { COMMON_OPTIONS } from "./common_options.ts";
import { EXIT_CODE_ROWS } from "./exit_codes.ts";
import { VERSION } from "./version.ts";

type AnySpec = ModuleSpec<CommonOptions, EventBase>;

/** Text as roff reads it literally: backslashes, hyphens, a leading dot. */
function roff(text: string): string {
  return text.replaceAll("\\", "\\e").replaceAll("-", "\\-").replace(/^([.'])/, "\\&$1");
}

function optionItem(o: OptionSpec): string[] {
  const names = [...(o.short ? [`\\fB\\-${o.short}\\fR`] : []), `\\fB${roff(`--${o.name}`)}\\fR`];
  const arg = o.arg ? ` \\fI${roff(o.arg)}\\fR` : "";
  return [".TP", `${names.join(", ")}${arg}`, roff(o.help)];
}

function example(e: { command: string; does: string }): string[] {
  return [".PP", roff(e.does) + ":", ".RS", ".nf", `\\f(CW${roff(e.command)}\\fR`, ".fi", ".RE"];
}

/**
 * The man page.
 *
 * @param modules Every module, in help's order.
 * @param date The page's date, e.g. "2025-01-31" (a build stamps it).
 * @returns roff text for `man -l`.
 */
export function manPage(modules: readonly AnySpec[], date = ""): string {
  return [
    `.TH ECAP 1 "${date}" "ecap ${VERSION}" "User Commands"`,
    ".SH NAME",
    "ecap \\- see what processes say in the clear, with eBPF",
    ".SH SYNOPSIS",
    ".B ecap",
    ".I MODULE",
    "[\\fIoptions\\fR] [\\fIFILTER EXPRESSION\\fR]",
    ".br",
    ".B ecap help",
    ".I MODULE",
    ".br",
    ".B ecap completions",
    "\\fBbash\\fR|\\fBzsh\\fR",
    ".br",
    ".B ecap \\-\\-version",
    ".SH DESCRIPTION",
    "ecap attaches eBPF probes to programs and libraries and prints what " +
    "passes through them: command lines typed into shells, statements database " +
    "servers run, and the plaintext, keys and packets of TLS connections. " +
    "Options go before or after the module's name. It needs root " +
    "(CAP_BPF and CAP_PERFMON).",
    ".PP",
    "SIGINT and SIGTERM stop a capture: what is held is written and the " +
    "probes removed. SIGUSR1 prints the counters so far on stderr and goes on.",
    ".SH MODULES",
    ...modules.flatMap((m) => [
      ".TP",
      `.B ${m.name}`,
      roff(m.summary) +
      (m.aliases?.length ? ` (also: ${roff(m.aliases.join(", "))})` : ""),
    ]),
    ".SH OPTIONS OF EVERY MODULE",
    ...COMMON_OPTIONS.flatMap(optionItem),
    ...modules.flatMap((m) => [
      `.SH OPTIONS OF ${m.name.toUpperCase()}`,
      ...(m.positionals ? [".PP", `Arguments: ${roff(m.positionals)}.`] : []),
      ...m.options.flatMap(optionItem),
    ]),
    ".SH EXAMPLES",
    ...modules.flatMap((m) => [`.SS ${m.name}`, ...(m.examples ?? []).flatMap(example)]),
    ".SH EXIT STATUS",
    ...EXIT_CODE_ROWS.flatMap(([code, what]) => [".TP", `.B ${code}`, roff(what)]),
    ".SH SEE ALSO",
    ".BR tcpdump (8),",
    ".BR wireshark (1),",
    ".BR tshark (1)",
    "",
  ].join("\n");
}
