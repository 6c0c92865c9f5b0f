/**
 * Where the command line finds each module: loaded only when it runs. The
 * TLS modules' imports take ~80 ms to load (node:zlib, node:crypto, the
 * HTTP decoders), a quarter of a start-up that a shell or SQL capture does
 * not need. Names and aliases repeat each module's spec (the one
 * description of it); tests/modules_index_test.ts keeps them equal.
 * @module
 */
import type { CommonOptions, EventBase, ModuleSpec } from "../core/module_spec.ts";

type AnySpec = ModuleSpec<CommonOptions, EventBase>;

interface IndexEntry {
  aliases: readonly string[];
  load: () => Promise<AnySpec>;
}

const spec = (m: unknown) => m as AnySpec;

/** The modules, in the order help lists them. */
export const MODULE_INDEX: Record<string, IndexEntry> = {
  bash: { aliases: [], load: () => import("./bash.ts").then((m) => spec(m.bash)) },
  zsh: { aliases: [], load: () => import("./zsh.ts").then((m) => spec(m.zsh)) },
  tls: { aliases: ["openssl"], load: () => import("./tls.ts").then((m) => spec(m.tls)) },
  gotls: { aliases: ["go"], load: () => import("./gotls.ts").then((m) => spec(m.gotls)) },
  gnutls: { aliases: [], load: () => import("./gnutls.ts").then((m) => spec(m.gnutls)) },
  nss: { aliases: [], load: () => import("./nss.ts").then((m) => spec(m.nss)) },
  mysqld: {
    aliases: ["mysql", "mariadb", "mariadbd"],
    load: () => import("./mysqld.ts").then((m) => spec(m.mysqld)),
  },
  postgres: {
    aliases: ["postgresql", "pg"],
    load: () => import("./postgres.ts").then((m) => spec(m.postgres)),
  },
};

/** Loads the module called name (or one of its aliases); undefined if there is none. */
export function loadModule(name: string): Promise<AnySpec> | undefined {
  for (const [key, entry] of Object.entries(MODULE_INDEX)) {
    if (key === name || entry.aliases.includes(name)) return entry.load();
  }
  return undefined;
}

/** True if name is a module's name or alias. */
export function isModuleName(name: string): boolean {
  return Object.entries(MODULE_INDEX).some(([key, e]) => key === name || e.aliases.includes(name));
}

/** Every module (for help). */
export function loadAllModules(): Promise<AnySpec[]> {
  return Promise.all(Object.values(MODULE_INDEX).map((e) => e.load()));
}
