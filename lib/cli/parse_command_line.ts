/**
 * From argv to what to run: the module, its options checked, and the
 * habits people bring from tcpdump (`-c N`, `-w -`, `-q`, `-v`, options on
 * either side of the module name, `--help` and `--version` anywhere). A
 * bad word is one line that names it and, when one is close, what was meant.
 * @module
 */
import type { CommonOptions, EventBase, ModuleSpec } from "../core/module_spec.ts";
import type { WebOptions } from "../web/web_server.ts";
import { loadAllModules, loadModule, MODULE_INDEX } from "../modules/index.ts";
import { COMMON_OPTIONS } from "./common_options.ts";
import { closestName } from "./closest_name.ts";
import { completionScript, SHELLS } from "./completions.ts";
import { mainHelp, moduleHelp } from "./help.ts";
import {
  type OptionValues,
  parseComm,
  parseCount,
  parseId,
  parseNice,
  parseSeconds,
  parseSize,
  parseWeb,
} from "./option_values.ts";
import { OptionTable, type OptionWord, splitCommandLine } from "./split_command_line.ts";
import { usageError } from "./usage_error.ts";
import { VERSION } from "./version.ts";

type AnySpec = ModuleSpec<CommonOptions, EventBase>;

/** What to run: a module, its options, and how the CLI reports. */
export interface Parsed {
  spec: AnySpec;
  opts: CommonOptions;
  listTargets: boolean;
  debug: boolean;
  json: boolean;
  /** -o FILE; undefined: stdout. */
  output?: string;
  duration?: number;
  /** -c N: stop once N events are written (a sink that counts stops itself). */
  count?: number;
  nice: number;
  verbose: boolean;
  /** -q: no start and summary lines. */
  quiet: boolean;
  /** The module's sink writes to stdout (`-w -`): events text goes to -o FILE or stderr. */
  sinkOnStdout: boolean;
  web?: WebOptions;
}

/** Words that are commands of ecap itself, not modules. */
const COMMANDS = ["help", "completions"];

const COMMON_TABLE = new OptionTable(COMMON_OPTIONS);

function moduleNames(): string[] {
  return Object.entries(MODULE_INDEX).flatMap(([name, e]) => [name, ...e.aliases]);
}

function unknownModule(word: string) {
  const near = closestName(word, [...moduleNames(), ...COMMANDS]);
  return usageError(
    `Unknown module "${word}"`,
    near ? `did you mean ${near}?` : `modules: ${Object.keys(MODULE_INDEX).join(", ")}`,
  );
}

/** Help's address for a module, or ecap's. */
const seeHelp = (spec?: AnySpec) => `see ecap ${spec ? `${spec.name} ` : ""}--help`;

function unknownOption(o: OptionWord, table: OptionTable, spec?: AnySpec) {
  // "-json" was meant as "--json"; single letters are too short to guess from
  const typed = /^-[^-]{2,}/.test(o.typed) ? `-${o.typed}` : o.typed;
  const near = typed.startsWith("--")
    ? closestName(typed, table.specs.map((s) => `--${s.name}`))
    : undefined;
  return usageError(`Unknown option ${o.typed}`, near ? `did you mean ${near}?` : seeHelp(spec));
}

/** Checks each option against the module's table; returns their values by long name. */
function optionValues(options: OptionWord[], table: OptionTable, spec?: AnySpec) {
  const values: Record<string, string | boolean | string[] | undefined> = {};
  for (const o of options) {
    const s = o.name === undefined ? undefined : table.long(o.name);
    if (!s) throw unknownOption(o, table, spec);
    if (s.type === "boolean") {
      if (o.value !== undefined) {
        throw usageError(`Option ${o.typed} takes no value`, seeHelp(spec));
      }
      values[s.name] = true;
    } else if (o.value === undefined) {
      throw usageError(`Option ${o.typed} needs a value (${s.arg ?? "VALUE"})`, seeHelp(spec));
    } else if (s.multiple) {
      values[s.name] = [...(values[s.name] as string[] | undefined ?? []), o.value];
    } else values[s.name] = o.value;
  }
  return values;
}

async function completions(shell: string | undefined): Promise<string> {
  if (shell === undefined) {
    throw usageError(`ecap completions needs a shell: ${SHELLS.join(" or ")}`);
  }
  if (!SHELLS.includes(shell)) {
    throw usageError(`Unknown shell "${shell}" for completions (shells: ${SHELLS.join(", ")})`);
  }
  return completionScript(shell, await loadAllModules());
}

/**
 * Parses argv.
 *
 * @param argv The arguments after the program name.
 * @returns What to print and exit 0 with (help, version, a completion
 *   script), or what to run.
 * @throws {EcapError} A usage error (exit 2) naming the bad word.
 */
export async function parseCommandLine(argv: readonly string[]): Promise<Parsed | string> {
  let wide: OptionTable | undefined;
  const words = await splitCommandLine(argv, async (command, widen) => {
    const spec = command === undefined ? undefined : await loadModule(command);
    if (spec) return new OptionTable([...spec.options, ...COMMON_OPTIONS]);
    if (!widen) return COMMON_TABLE;
    // an option before the module's name may be the module's own (-m pcap tls)
    wide ??= new OptionTable([
      ...(await loadAllModules()).flatMap((m) => m.options),
      ...COMMON_OPTIONS,
    ]);
    return wide;
  });
  const options = words.filter((w) => w.kind === "option");
  const [command, ...args] = words.filter((w) => w.kind === "word").map((w) => w.value);
  const asked = (name: string) => options.some((o) => o.name === name);
  if (asked("version")) return `ecap ${VERSION}`;
  if (command === "help" || (command === undefined && (asked("help") || argv.length === 0))) {
    const spec = args[0] === undefined ? undefined : await loadModule(args[0]);
    if (args[0] !== undefined && !spec) throw unknownModule(args[0]);
    return spec ? moduleHelp(spec) : mainHelp(await loadAllModules());
  }
  if (command === "completions") return await completions(args[0]);
  if (command === undefined) {
    optionValues(options, COMMON_TABLE);
    throw usageError(
      "Missing module: ecap MODULE [options]",
      `modules: ${Object.keys(MODULE_INDEX).join(", ")}`,
    );
  }
  const spec = await loadModule(command);
  if (!spec) throw unknownModule(command);
  if (asked("help")) return moduleHelp(spec);
  const values = optionValues(options, new OptionTable([...spec.options, ...COMMON_OPTIONS]), spec);
  if (args.length > 0) {
    if (!spec.positionals) throw usageError(`Unexpected argument '${args[0]}'`, seeHelp(spec));
    values.positionals = args.join(" ");
  }
  return toParsed(spec, values);
}

/** The checked values as what to run. */
function toParsed(
  spec: AnySpec,
  all: Record<string, string | boolean | string[] | undefined>,
): Parsed {
  const { pid = [], ...rest } = all;
  const values = rest as OptionValues;
  const pids = [...new Set((pid as string[]).map((v) => parseId("pid", v)!))];
  if (values["follow-children"] && pids.length === 0) {
    throw usageError("--follow-children needs -p PID");
  }
  const count = parseCount(values.count);
  const opts: CommonOptions = {
    ...spec.parseOptions(values),
    pid: pids[0],
    pids: pids.length > 0 ? pids : undefined,
    followChildren: values["follow-children"] === true,
    follow: values["no-follow"] !== true,
    uid: parseId("uid", values.uid),
    comm: parseComm(values.comm),
    cgroup: typeof values.cgroup === "string" ? values.cgroup : undefined,
    mapSize: parseSize(values.mapsize),
    count,
  };
  const json = values.json === true;
  const listTargets = values["list-targets"] === true;
  const output = typeof values.output === "string" && values.output !== "-"
    ? values.output
    : undefined;
  const sinkOnStdout = spec.writesStdout?.(opts) ?? false;
  if (sinkOnStdout) {
    if (values.output === "-") {
      throw usageError("-w - and -o - both write to stdout: give -o FILE for the events");
    }
    if (json && output === undefined) {
      throw usageError("--json writes to stdout, which -w - takes: add -o FILE");
    }
    if (listTargets) throw usageError("--list-targets prints to stdout, which -w - takes");
  }
  return {
    spec,
    opts,
    listTargets,
    debug: values.debug === true,
    json,
    output,
    duration: parseSeconds(values.duration),
    count,
    nice: parseNice(values.nice),
    verbose: values.verbose === true || values.debug === true,
    quiet: values.quiet === true,
    sinkOnStdout,
    web: parseWeb(values),
  };
}
