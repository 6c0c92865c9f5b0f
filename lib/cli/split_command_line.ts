/**
 * Splits a command line the way people type it: options before or after
 * the module name, short ones grouped (`-qv`) or glued to their value
 * (`-c10`), long ones as `--name value` or `--name=value`. Nothing is
 * refused here: an option no table knows is kept as typed, for the caller
 * to name in its error.
 * @module
 */
import type { OptionSpec } from "../core/module_spec.ts";
import { OPTIONAL_VALUES, SHORT_ALIASES } from "./common_options.ts";

/** An option as typed, and its long name once a table knows it. */
export interface OptionWord {
  kind: "option";
  /** The long name ("duration"); undefined when no table knows the option. */
  name?: string;
  /** As typed: "-c", "--hexx", "-json". */
  typed: string;
  value?: string;
}

/** A word that is not an option: the module, or an argument of it. */
export interface PlainWord {
  kind: "word";
  value: string;
}

/** One piece of a command line. */
export type Word = OptionWord | PlainWord;

/** Options by long and short name. */
export class OptionTable {
  #long = new Map<string, OptionSpec>();
  #short = new Map<string, OptionSpec>();

  constructor(readonly specs: readonly OptionSpec[]) {
    for (const s of specs) {
      this.#long.set(s.name, s);
      if (s.short) this.#short.set(s.short, s);
    }
  }

  /** The option called --name. */
  long(name: string): OptionSpec | undefined {
    return this.#long.get(name);
  }

  /** The option called -c (or an alias kept from earlier releases). */
  short(c: string): OptionSpec | undefined {
    return this.#short.get(c) ?? (SHORT_ALIASES[c] ? this.#short.get(SHORT_ALIASES[c]) : undefined);
  }
}

/**
 * Where the splitter learns which options take a value: before the first
 * word (command undefined; wide: the options of every module, asked only
 * when the narrow table lacks one) and after it.
 */
export type TableLookup = (command: string | undefined, wide: boolean) => Promise<OptionTable>;

/**
 * Splits argv into options and words.
 *
 * @param argv The arguments after the program name.
 * @param tables Which options exist before and after the first word.
 * @returns Options (long names where known) and words, in order.
 */
export async function splitCommandLine(argv: readonly string[], tables: TableLookup) {
  const out: Word[] = [];
  let command: string | undefined;
  let table = await tables(undefined, false);
  /** The spec of a name, widening the table before the command once one is missing. */
  const find = async (get: (t: OptionTable) => OptionSpec | undefined) =>
    get(table) ?? (command === undefined ? get(await tables(undefined, true)) : undefined);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") {
      for (const w of argv.slice(i + 1)) out.push({ kind: "word", value: w });
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      out.push({ kind: "word", value: a });
      if (command === undefined) table = await tables(command = a, false);
      continue;
    }
    const next = () => {
      if (i + 1 < argv.length) return argv[++i];
    };
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = a.slice(2, eq < 0 ? undefined : eq);
      const typed = eq < 0 ? a : a.slice(0, eq);
      const inline = eq < 0 ? undefined : a.slice(eq + 1);
      const spec = await find((t) => t.long(name));
      if (!spec) out.push({ kind: "option", typed, value: inline });
      else if (inline !== undefined || spec.type === "boolean") {
        out.push({ kind: "option", name, typed, value: inline });
      } else {
        const optional = OPTIONAL_VALUES[name];
        const value = !optional
          ? next()
          : optional.fits.test(argv[i + 1] ?? "")
          ? next()
          : optional.otherwise;
        out.push({ kind: "option", name, typed, value });
      }
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const spec = await find((t) => t.short(a[j]));
      if (!spec) {
        // "-json": a long option with one dash, named whole in the error
        out.push({ kind: "option", typed: j === 1 ? a : `-${a[j]}` });
        break;
      }
      const typed = `-${a[j]}`;
      if (spec.type === "boolean") {
        out.push({ kind: "option", name: spec.name, typed });
        continue;
      }
      const glued = a.slice(j + 1);
      out.push({ kind: "option", name: spec.name, typed, value: glued || next() });
      break;
    }
  }
  return out;
}
