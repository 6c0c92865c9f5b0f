/**
 * Where each OpenSSL release keeps the state TLS secrets are read from:
 * offsets measured from Debian's OpenSSL sources (1.1.1, 3.0, 3.5) and from
 * upstream's release tags (3.1 to 3.4), in lib/tls/openssl_offsets.json made by
 * scripts/openssl_offsets.sh, encoded as kern/ecap.h's `struct ssl_layout`
 * for the kernel's ssl_layouts map.
 * @module
 */
import offsets from "./openssl_offsets.json" with { type: "json" };
import type { Btf } from "../binary/btf.ts";

type Entry = (typeof offsets.versions)[keyof typeof offsets.versions];

/** Release branches measured, and the versions each one covers. */
const FAMILIES: { family: string; covers: RegExp }[] = [
  { family: "1.1.1", covers: /^1\.1\.1[a-z]*$/ },
  { family: "3.0", covers: /^3\.0\.\d+$/ },
  { family: "3.1", covers: /^3\.1\.\d+$/ },
  { family: "3.2", covers: /^3\.2\.\d+$/ },
  { family: "3.3", covers: /^3\.3\.\d+$/ },
  { family: "3.4", covers: /^3\.4\.\d+$/ },
  { family: "3.5", covers: /^3\.5\.\d+$/ },
];

/** The releases an upstream entry was measured on (Debian's have none). */
function releasesOf(e: Entry): string[] {
  return "releases" in e ? e.releases : [];
}

/** Orders "3.2.10" after "3.2.9". */
function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number), pb = b.split(".").map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d) return d;
  }
  return 0;
}

/**
 * The measured layout for an OpenSSL version, or undefined if none applies.
 * A branch whose layout changed in a patch release (3.2.4, 3.3.3 and 3.4.1
 * added SSL_CONNECTION.user_ssl) has one entry per layout, each listing the
 * releases it was measured on; a release none lists (a newer one) takes the
 * newest layout of its branch. `family` names the layout for messages: the
 * branch ("3.3"), or where a branch has several, their releases ("3.3.0-3.3.2",
 * "3.4.0", "3.3.3+").
 */
export function layoutFor(
  version: string | undefined,
): { family: string; entry: Entry } | undefined {
  if (!version) return undefined;
  const fam = FAMILIES.find((f) => f.covers.test(version))?.family;
  if (!fam) return undefined;
  const entries = Object.entries(offsets.versions)
    .filter(([, e]) => e.family === fam)
    .sort(([a], [b]) => compareVersions(a, b));
  if (entries.length === 0) return undefined;
  if (entries.length === 1) return { family: fam, entry: entries[0][1] };
  const newest = entries[entries.length - 1][1];
  const entry = entries.find(([, e]) => releasesOf(e).includes(version))?.[1] ?? newest;
  const releases = releasesOf(entry);
  const name = entry === newest
    ? `${releases[0]}+`
    : releases.length === 1
    ? releases[0]
    : `${releases[0]}-${releases[releases.length - 1]}`;
  return { family: name, entry };
}

/** Branches ecap has offsets for, for messages. */
export const KNOWN_FAMILIES = FAMILIES.map((f) => f.family);

/**
 * A zeroed `struct ssl_layout` as the object's BTF lays it out, and a setter
 * of its (u32) members by name.
 */
export function sslLayoutWriter(
  btf: Btf,
): { out: Uint8Array; set: (member: string, value: number) => void } {
  const s = btf.struct("ssl_layout");
  const out = new Uint8Array(s.size);
  const view = new DataView(out.buffer);
  const set = (member: string, value: number) => {
    const m = s.members.get(member);
    if (!m) throw new Error(`struct ssl_layout has no member "${member}"`);
    view.setUint32(m.offset, value, true);
  };
  return { out, set };
}

/**
 * Encodes `struct ssl_layout` at the offsets of the object's BTF for the
 * given release. 3.0.12 alone keeps `session` 32 bytes further on (as
 * eCapture's offset tables record; its neighbours match ours).
 */
export function encodeSslLayout(btf: Btf, e: Entry, version = ""): Uint8Array {
  const sessionShift = version === "3.0.12" ? 32 : 0;
  const { out, set } = sslLayoutWriter(btf);
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
