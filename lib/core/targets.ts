/**
 * Finds the files to probe: a shell from $SHELL or /etc/shells, and the file
 * (the binary or one of its DT_NEEDED libraries) that defines a symbol.
 * @module
 */
import { type ElfFile, readElf } from "../binary/elf.ts";
import { EcapError } from "../base/errors.ts";
import { mayDefineSymbol } from "../binary/elf_peek.ts";
import type { CommonOptions, FollowSpec } from "./module_spec.ts";

const LIB_DIRS = [
  "/lib/x86_64-linux-gnu",
  "/usr/lib/x86_64-linux-gnu",
  "/lib/aarch64-linux-gnu",
  "/usr/lib/aarch64-linux-gnu",
  "/lib64",
  "/usr/lib64",
  "/lib",
  "/usr/lib",
  "/usr/local/lib",
];

/** A function found in a file: what the kernel's uprobe API needs. */
export interface SymbolLocation {
  path: string;
  symbol: string;
  offset: number;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** Reads an ELF file, turning every failure into a one-line EcapError. */
export async function openElf(path: string, what: string): Promise<ElfFile> {
  try {
    const st = await Deno.stat(path);
    if (!st.isFile) {
      throw new EcapError(`${what} "${path}" is not a regular file`, { kind: "not-found" });
    }
  } catch (e) {
    if (e instanceof EcapError) throw e;
    throw new EcapError(`${what} "${path}" not found`, { kind: "not-found", cause: e });
  }
  let elf: ElfFile;
  try {
    elf = await readElf(path);
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new EcapError(`Cannot read ${what} "${path}": permission denied`, {
        kind: "permission",
      });
    }
    throw new EcapError(`${what} "${path}" is not a usable ELF file: ${(e as Error).message}`, {
      kind: "unsupported",
      cause: e,
    });
  }
  checkArchitecture(elf, path, what);
  return elf;
}

const HOST_MACHINE: Record<string, string> = { x86_64: "x86_64", aarch64: "aarch64" };

/** Throws unless the ELF file is for this machine's architecture. */
export function checkArchitecture(elf: ElfFile, path: string, what: string) {
  const host = HOST_MACHINE[Deno.build.arch];
  if (host && elf.machineName !== host) {
    throw new EcapError(
      `${what} "${path}" is built for ${elf.machineName}, this machine is ${host}`,
      { kind: "unsupported", hint: `pass a ${host} ${what}` },
    );
  }
}

/**
 * Picks the shell to probe: the explicit path, else $SHELL when it is this
 * shell, else the first such entry of /etc/shells, else /usr/bin/NAME.
 */
export async function findShell(name: string, explicit?: string): Promise<string> {
  if (explicit) {
    if (!await isFile(explicit)) {
      throw new EcapError(`${name} "${explicit}" not found`, {
        kind: "not-found",
        hint: `pass --${name} with the path of a ${name} binary`,
      });
    }
    return await Deno.realPath(explicit);
  }
  const candidates: string[] = [];
  const env = Deno.env.get("SHELL");
  if (env && env.endsWith(`/${name}`)) candidates.push(env);
  try {
    for (const line of (await Deno.readTextFile("/etc/shells")).split("\n")) {
      const p = line.trim();
      if (p.startsWith("/") && p.endsWith(`/${name}`)) candidates.push(p);
    }
  } catch { /* no /etc/shells: fall through to the usual paths */ }
  candidates.push(`/usr/bin/${name}`, `/bin/${name}`);
  for (const c of candidates) if (await isFile(c)) return await Deno.realPath(c);
  throw new EcapError(`No ${name} found in $SHELL, /etc/shells or /usr/bin`, {
    kind: "not-found",
    hint: `install ${name} or pass --${name} PATH`,
  });
}

/** Resolves a DT_NEEDED name the way the dynamic loader's default dirs would. */
async function resolveNeeded(name: string, root = ""): Promise<string | undefined> {
  if (name.includes("/")) return await isFile(root + name) ? root + name : undefined;
  for (const dir of LIB_DIRS) {
    const p = `${root}${dir}/${name}`;
    if (await isFile(p)) return p;
  }
  return undefined;
}

/**
 * Finds the first of `symbols` in `path` or, failing that, in the libraries
 * it links (DT_NEEDED). Returns undefined when none defines any of them.
 */
export async function locateSymbol(
  path: string,
  symbols: readonly string[],
  what: string,
): Promise<SymbolLocation | undefined> {
  const elf = await openElf(path, what);
  const own = findIn(elf, path, symbols);
  if (own) return own;
  for (const needed of elf.needed) {
    const lib = await resolveNeeded(needed);
    if (!lib) continue;
    let libElf: ElfFile;
    try {
      libElf = await readElf(lib);
    } catch {
      continue;
    }
    const found = findIn(libElf, lib, symbols);
    if (found) return found;
  }
  return undefined;
}

function findIn(elf: ElfFile, path: string, symbols: readonly string[]) {
  for (const name of symbols) {
    const sym = elf.symbol(name);
    if (sym?.fileOffset !== undefined) return { path, symbol: name, offset: sym.fileOffset };
  }
  return undefined;
}

/**
 * How a module that probes a program (not a library) follows new processes:
 * a binary exec'd later that defines `symbol` (another copy, e.g. in a
 * container) gets the module's probes; one at least `holdExecBytes` big is
 * held until inspected (see FollowSpec). Undefined when the user named the
 * binary, or asked for given processes only.
 */
export function followPrograms(
  opts: CommonOptions,
  explicit: string | undefined,
  role: string,
  symbol: string,
  holdExecBytes: number,
): FollowSpec | undefined {
  if (explicit) return undefined;
  const pids = opts.pids?.length ?? (opts.pid ? 1 : 0);
  if (pids > 0 && !opts.followChildren) return undefined;
  return {
    role,
    exec: true,
    holdExecBytes,
    async inspect(path) {
      try {
        // most programs run are not this one: their string tables say so
        if (!await mayDefineSymbol(path, symbol)) return undefined;
        return await locateSymbol(path, [symbol], role) ? { note: role } : undefined;
      } catch {
        return undefined; // unreadable, or not an ELF file
      }
    },
  };
}
