/**
 * The text of `ecap --help` and `ecap MODULE --help`, from the option
 * tables and the modules' specs.
 * @module
 */
import type { CommonOptions, EventBase, ModuleSpec, OptionSpec } from "../core/module_spec.ts";
import { COMMON_OPTIONS } from "./common_options.ts";
import { EXIT_CODE_ROWS } from "./exit_codes.ts";
import { VERSION } from "./version.ts";

type AnySpec = ModuleSpec<CommonOptions, EventBase>;

/** How an option is spelled in help: `-c, --count N`. */
export function optionFlags(o: OptionSpec): string {
  return `${o.short ? `-${o.short}, ` : ""}--${o.name}${o.arg ? ` ${o.arg}` : ""}`;
}

function optionRows(opts: readonly OptionSpec[]): string {
  const rows = opts.map((o) => {
    const flag = `${o.short ? "" : "    "}${optionFlags(o)}`;
    return `  ${flag.padEnd(28)} ${o.help}`;
  });
  return rows.join("\n");
}

function exitCodes(): string[] {
  return ["Exit codes:", ...EXIT_CODE_ROWS.map(([code, what]) => `  ${code}  ${what}`)];
}

/** What `ecap`, `ecap --help` and `ecap help` print. */
export function mainHelp(modules: readonly AnySpec[]): string {
  return [
    `ecap ${VERSION}: see what processes say in the clear, with eBPF`,
    "",
    "Usage: ecap MODULE [options]",
    "       ecap help MODULE | ecap completions bash|zsh | ecap --version",
    "",
    "Modules:",
    ...modules.map((m) => `  ${m.name.padEnd(10)} ${m.summary}`),
    "",
    "Options of every module (before or after its name):",
    optionRows(COMMON_OPTIONS),
    "",
    ...exitCodes(),
    "",
    "Run `ecap MODULE --help` for a module's own options and examples. Needs root.",
  ].join("\n");
}

/** What `ecap MODULE --help` prints: usage, options, three examples, exit codes. */
export function moduleHelp(spec: AnySpec): string {
  const examples = (spec.examples ?? []).flatMap((e) => [`  ${e.command}`, `      ${e.does}`]);
  return [
    `ecap ${spec.name}: ${spec.summary}`,
    "",
    `Usage: ecap ${spec.name} [options]${spec.positionals ? ` [${spec.positionals}]` : ""}`,
    "",
    "Options:",
    optionRows([...spec.options, ...COMMON_OPTIONS]),
    "",
    ...(examples.length ? ["Examples:", ...examples, ""] : []),
    ...exitCodes(),
  ].join("\n");
}
