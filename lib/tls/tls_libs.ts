/**
 * The TLS library families `ecap tls` probes, by their --lib names, and the
 * module that knows each.
 * @module
 */
import { EcapError } from "../base/errors.ts";

/** Each family: its module, its name for people, and the option naming one file of it. */
export const TLS_LIBS = {
  openssl: { module: "tls", what: "OpenSSL/BoringSSL", pathOption: "libssl" },
  gnutls: { module: "gnutls", what: "GnuTLS", pathOption: "gnutls" },
  nss: { module: "nss", what: "NSS", pathOption: "nss" },
  go: { module: "gotls", what: "Go crypto/tls", pathOption: "elfpath" },
} as const;

/** A family's --lib name. */
export type TlsLib = keyof typeof TLS_LIBS;

/** --lib openssl,go: the families named, in that order; undefined when not given. */
export function parseLibs(v: string | boolean | undefined): TlsLib[] | undefined {
  if (v === undefined || typeof v === "boolean") return undefined;
  const names = v.split(",").map((s) => s.trim()).filter(Boolean);
  const known = Object.keys(TLS_LIBS);
  const unknown = names.find((n) => !known.includes(n));
  if (unknown !== undefined || names.length === 0) {
    throw new EcapError(`Unknown --lib "${unknown ?? v}" (libraries: ${known.join(", ")})`, {
      kind: "usage",
    });
  }
  return [...new Set(names)] as TlsLib[];
}
