/**
 * Every capture module, in the order help lists them. Adding a module is
 * one entry here plus its kern/<name>.bpf.c and lib/modules/<name>.ts.
 * @module
 */
import type { ModuleSpec } from "../core/module_spec.ts";
import { bash, type BashEvent, type BashOptions } from "./bash.ts";
import { zsh, type ZshEvent, type ZshOptions } from "./zsh.ts";
import { tls, type TlsEvent, type TlsOptions } from "./tls.ts";
import { gotls, type GotlsEvent, type GotlsOptions } from "./gotls.ts";
import { gnutls, type GnutlsEvent, type GnutlsOptions } from "./gnutls.ts";
import { nss, type NssEvent, type NssOptions } from "./nss.ts";
import { mysqld, type MysqldEvent, type MysqldOptions } from "./mysqld.ts";
import { postgres, type PostgresEvent, type PostgresOptions } from "./postgres.ts";

/** Options of each module, by name. */
export interface ModuleOptions {
  bash: BashOptions;
  zsh: ZshOptions;
  tls: TlsOptions;
  gotls: GotlsOptions;
  gnutls: GnutlsOptions;
  nss: NssOptions;
  mysqld: MysqldOptions;
  postgres: PostgresOptions;
}

/** Events of each module, by name. */
export interface ModuleEvents {
  bash: BashEvent;
  zsh: ZshEvent;
  tls: TlsEvent;
  gotls: GotlsEvent;
  gnutls: GnutlsEvent;
  nss: NssEvent;
  mysqld: MysqldEvent;
  postgres: PostgresEvent;
}

/** The modules, by name. */
export const MODULES: {
  [K in keyof ModuleOptions]: ModuleSpec<ModuleOptions[K], ModuleEvents[K]>;
} = {
  bash,
  zsh,
  tls,
  gotls,
  gnutls,
  nss,
  mysqld,
  postgres,
};
