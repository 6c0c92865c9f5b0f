/**
 * Where each OpenSSL release keeps the state TLS secrets are read from:
 * offsets measured from Debian's OpenSSL sources (lib/openssl_offsets.json,
 * made by scripts/openssl_offsets.sh), encoded as kern/ecap.h's
 * `struct ssl_layout` for the kernel's ssl_layouts map.
 * @module
 */
import offsets from "./openssl_offsets.json" with { type: "json" };
import type { Btf } from "./btf.ts";

type Entry = (typeof offsets.versions)[keyof typeof offsets.versions];

/** Layout families measured, and the releases each one covers. */
const FAMILIES: { family: string; covers: RegExp }[] = [
  { family: "1.1.1", covers: /^1\.1\.1[a-z]*$/ },
  { family: "3.0", covers: /^3\.0\.\d+$/ },
  { family: "3.5", covers: /^3\.5\.\d+$/ },
];

/** The measured layout for an OpenSSL version, or undefined if none applies. */
export function layoutFor(
  version: string | undefined,
): { family: string; entry: Entry } | undefined {
  if (!version) return undefined;
  const fam = FAMILIES.find((f) => f.covers.test(version))?.family;
  if (!fam) return undefined;
  const entry = Object.values(offsets.versions).find((e) => e.family === fam);
  return entry ? { family: fam, entry } : undefined;
}

/** Families ecap has offsets for, for messages. */
export const KNOWN_FAMILIES = FAMILIES.map((f) => f.family);

/**
 * Encodes `struct ssl_layout` at the offsets of the object's BTF for the
 * given release. 3.0.12 alone keeps `session` 32 bytes further on (as
 * eCapture's offset tables record; its neighbours match ours).
 */
export function encodeSslLayout(btf: Btf, e: Entry, version = ""): Uint8Array {
  const sessionShift = version === "3.0.12" ? 32 : 0;
  const s = btf.struct("ssl_layout");
  const out = new Uint8Array(s.size);
  const view = new DataView(out.buffer);
  const set = (member: string, value: number) => {
    const m = s.members.get(member);
    if (!m) throw new Error(`struct ssl_layout has no member "${member}"`);
    view.setUint32(m.offset, value, true);
  };
  // 3.2+ hands API calls an SSL that the connection struct starts with
  const base = e.ssl_to_connection;
  set("valid", 1);
  set("version", base + e.ssl.version);
  set("s3", base + e.ssl.s3);
  set("s3_indirect", e.s3_is_pointer ? 1 : 0);
  set("client_random", e.s3.client_random);
  set("new_cipher", e.s3.tmp_new_cipher);
  set("session", base + e.ssl.session + sessionShift);
  set("session_master_key_length", e.session.master_key_length);
  set("session_master_key", e.session.master_key);
  set("cipher_id", e.cipher.id);
  set("handshake_secret", base + e.ssl.handshake_secret);
  set("handshake_traffic_hash", base + e.ssl.handshake_traffic_hash);
  set("client_app_traffic_secret", base + e.ssl.client_app_traffic_secret);
  set("server_app_traffic_secret", base + e.ssl.server_app_traffic_secret);
  set("exporter_master_secret", base + e.ssl.exporter_master_secret);
  return out;
}
