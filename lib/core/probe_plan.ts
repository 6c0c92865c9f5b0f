/**
 * Where a module's probes go: each probe of a spec resolved to file offsets
 * in each target file, and the uprobe.multi ones on one file folded into one
 * attach.
 * @module
 */
import { EcapError } from "../base/errors.ts";
import type { ProbeSpec } from "./module_spec.ts";
import { locateSymbol } from "./targets.ts";

export type PlannedProbe =
  | {
    kind: "uprobe" | "uretprobe";
    program: string;
    path: string;
    offset: number;
    symbol: string;
    /** Index of path in its role's list: the probe's BPF cookie. */
    cookie: number;
  }
  | { kind: "raw_tp"; program: string; tracepoint: string }
  | { kind: "tcx"; program: string; direction: "ingress" | "egress" };

export type MultiProbe = {
  kind: "uprobe" | "uretprobe";
  program: string;
  path: string;
  offsets: number[];
  symbols: string[];
  cookies: number[];
};

/** Folds the probes of each uprobe.multi program on one file into one attach. */
export function groupMulti(
  plan: PlannedProbe[],
  isMulti: (program: string) => boolean,
): (PlannedProbe | MultiProbe)[] {
  const out: (PlannedProbe | MultiProbe)[] = [];
  const groups = new Map<string, MultiProbe>();
  for (const p of plan) {
    if (p.kind === "raw_tp" || p.kind === "tcx" || !isMulti(p.program)) {
      out.push(p);
      continue;
    }
    const key = `${p.program}\0${p.path}`;
    let g = groups.get(key);
    if (!g) {
      g = { kind: p.kind, program: p.program, path: p.path, offsets: [], symbols: [], cookies: [] };
      groups.set(key, g);
      out.push(g);
    }
    g.offsets.push(p.offset);
    g.symbols.push(p.symbol);
    g.cookies.push(p.cookie);
  }
  return out;
}

/** Resolves every probe of a spec to file offsets, or says what is missing. */
export async function planProbes(
  module: string,
  probes: readonly ProbeSpec[],
  files: Record<string, readonly string[]>,
  firstCookie = 0,
  emptyRole?: string,
): Promise<PlannedProbe[]> {
  const plan: PlannedProbe[] = [];
  for (const p of probes) {
    if (p.kind === "raw_tp" || p.kind === "tcx") {
      plan.push(p);
      continue;
    }
    const paths = files[p.target];
    if (p.target === emptyRole && paths?.length === 0) continue;
    if (!paths || paths.length === 0) {
      throw new EcapError(`Module ${module} has no target "${p.target}"`);
    }
    for (const [cookie, path] of paths.entries()) {
      if (p.only && !(await p.only(path))) continue;
      const locs = p.locate
        ? (await p.locate(path)).map((l) => ({ path, symbol: l.symbol, offset: l.offset }))
        : [await locateSymbol(path, p.symbols, p.target)].filter((l) => l !== undefined);
      if (locs.length === 0) {
        if (p.optional) continue;
        throw new EcapError(
          `Cannot capture ${module}: "${path}" defines none of ${p.symbols.join(", ")}`,
          { kind: "unsupported", hint: `pass --${p.target} with another ${p.target} binary` },
        );
      }
      for (const loc of locs) {
        plan.push({ kind: p.kind, program: p.program, ...loc, cookie: cookie + firstCookie });
      }
    }
  }
  return plan;
}
