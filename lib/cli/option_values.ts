/**
 * Values of the common options, checked: each bad one is a one-line usage
 * error that names the option and what it expects.
 * @module
 */
import { EcapError } from "../base/errors.ts";
import { usageError } from "./usage_error.ts";
import type { WebOptions } from "../web/web_server.ts";
import { parseWebAddress } from "../web/web_access.ts";
import { DEFAULT_WEB_HISTORY } from "../web/web_history.ts";

/** What parsed options look like before they are checked. */
export type OptionValues = Record<string, string | boolean | undefined>;

/** A pid or uid. */
export function parseId(name: string, v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || !/^\d+$/.test(v) || Number(v) > 0xffffffff) {
    throw usageError(`Invalid --${name} "${v}": expected a non-negative integer`);
  }
  return Number(v);
}

/** --duration. */
export function parseSeconds(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (typeof v !== "string" || v.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw usageError(`Invalid --duration "${v}": expected a positive number of seconds`);
  }
  return n;
}

/** -c N, as tcpdump's: before it spelled --comm, hence the hint for a name. */
export function parseCount(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  if (typeof v === "string" && /^\d+$/.test(v) && Number(v) > 0 && Number.isSafeInteger(+v)) {
    return Number(v);
  }
  const hint = typeof v === "string" && /^\D/.test(v)
    ? `--comm ${v} filters on a process name`
    : "see ecap --help";
  throw new EcapError(`Invalid -c "${v}": expected a positive number of events`, {
    kind: "usage",
    hint,
  });
}

/** See --nice and lib/core/priority.ts. */
export const DEFAULT_NICE = -10;

/** --nice. */
export function parseNice(v: unknown): number {
  if (v === undefined) return DEFAULT_NICE;
  const n = Number(v);
  if (typeof v !== "string" || !/^-?\d+$/.test(v) || n < -20 || n > 19) {
    throw usageError(`Invalid --nice "${v}": expected an integer from -20 to 19`);
  }
  return n;
}

/** --mapsize: bytes, with K, M or G. */
export function parseSize(v: unknown): number | undefined {
  if (v === undefined) return undefined;
  const m = typeof v === "string" ? /^(\d+)([KMG]?)(i?B)?$/i.exec(v) : null;
  if (!m) throw usageError(`Invalid --mapsize "${v}": expected bytes such as 8M or 65536`);
  const scale: Record<string, number> = { "": 1, K: 1 << 10, M: 1 << 20, G: 1 << 30 };
  return Number(m[1]) * scale[m[2].toUpperCase()];
}

/** --comm: a task name, as the kernel keeps it (15 bytes). */
export function parseComm(v: unknown): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== "string" || v === "") {
    throw usageError(`Invalid --comm "${v}": expected a task name`);
  }
  if (new TextEncoder().encode(v).length > 15) {
    throw usageError(`Invalid --comm "${v}": task names are at most 15 bytes`);
  }
  return v;
}

/** --web, --web-token, --web-history. */
export function parseWeb(values: OptionValues): WebOptions | undefined {
  const { web } = values;
  const token = values["web-token"] ?? Deno.env.get("ECAP_WEB_TOKEN");
  const history = values["web-history"];
  if (web === undefined) {
    if (values["web-token"] !== undefined || history !== undefined) {
      throw usageError("--web-token and --web-history go with --web");
    }
    return undefined;
  }
  if (typeof token === "string" && !/^[\x21-\x7e]{8,}$/.test(token)) {
    throw usageError("Invalid --web-token: expected at least 8 printable characters, no spaces");
  }
  const n = history === undefined ? DEFAULT_WEB_HISTORY : Number(history);
  if (!Number.isInteger(n) || n < 1 || String(history ?? n).trim() === "") {
    throw usageError(`Invalid --web-history "${history}": expected a positive number of rows`);
  }
  return {
    address: parseWebAddress(String(web)),
    token: typeof token === "string" ? token : undefined,
    history: n,
  };
}
