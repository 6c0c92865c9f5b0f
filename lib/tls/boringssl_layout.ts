/**
 * Where Debian's BoringSSL (android-libboringssl) keeps the secrets of a
 * finished handshake: offsets measured from the source Debian built it from,
 * in lib/tls/boringssl_offsets.json made by scripts/boringssl_offsets.sh, and
 * checked against the library's machine code (SSL_is_server,
 * SSL_get_client_random, SSL_version, SSL_in_init, SSL_get_session,
 * bssl::SSL_get_traffic_secrets, SSL_SESSION_get_master_key read the same
 * offsets). BoringSSL has no release numbers and its structs change from one
 * snapshot to the next, so a layout applies only to the build it was
 * measured for, named by its GNU build-id. Encoded as kern/ecap.h's
 * `struct ssl_layout` with flavor SSL_FLAVOR_BORINGSSL.
 * @module
 */
import offsets from "./boringssl_offsets.json" with { type: "json" };
import type { Btf } from "../binary/btf.ts";
import { type ElfFile, readElf } from "../binary/elf.ts";
import { sslLayoutWriter } from "./ssl_layout.ts";

/** One measured build. */
export type BoringsslBuild = (typeof offsets.builds)[number];

const NT_GNU_BUILD_ID = 3;

/** The GNU build-id of an ELF file, as hex; undefined if it has none. */
export function buildIdOf(elf: ElfFile): string | undefined {
  const notes = elf.section(".note.gnu.build-id");
  if (!notes) return undefined;
  const view = new DataView(notes.buffer, notes.byteOffset, notes.byteLength);
  const align4 = (n: number) => (n + 3) & ~3;
  for (let at = 0; at + 12 <= notes.length;) {
    const namesz = view.getUint32(at, true), descsz = view.getUint32(at + 4, true);
    const type = view.getUint32(at + 8, true);
    const name = at + 12, desc = name + align4(namesz);
    if (desc + descsz > notes.length) return undefined;
    if (type === NT_GNU_BUILD_ID && namesz === 4 && notes[name] === 0x47) { // "GNU\0"
      return Array.from(notes.subarray(desc, desc + descsz), (b) => b.toString(16).padStart(2, "0"))
        .join("");
    }
    at = desc + align4(descsz);
  }
  return undefined;
}

/** The measured build a BoringSSL library file is, if any. */
export async function boringsslBuildOf(path: string): Promise<BoringsslBuild | undefined> {
  // sparsely: Chromium, a BoringSSL too, is a 296 MB file (read whole: 2.3 s)
  const id = buildIdOf(await readElf(path));
  return id === undefined ? undefined : offsets.builds.find((b) => b.build_id === id);
}

/** Builds ecap has offsets for, for messages. */
export const KNOWN_BORINGSSL_BUILDS = offsets.builds.map((b) =>
  `Debian ${b.suite} android-libboringssl ${b.debian_version} (${b.arch})`
);

/** Encodes `struct ssl_layout` at the offsets of the object's BTF for a build. */
export function encodeBoringsslLayout(btf: Btf, b: BoringsslBuild): Uint8Array {
  const { out, set } = sslLayoutWriter(btf);
  set("valid", 1);
  set("flavor", btf.enumValues("ssl_flavor").get("SSL_FLAVOR_BORINGSSL")!);
  set("version", b.ssl.version);
  set("s3", b.ssl.s3);
  set("s3_indirect", 1);
  set("server_byte", b.ssl.server_byte);
  set("server_mask", b.ssl.server_mask);
  set("client_random", b.s3.client_random);
  set("hs", b.s3.hs);
  set("write_traffic_secret", b.s3.write_traffic_secret);
  set("read_traffic_secret", b.s3.read_traffic_secret);
  set("exporter_secret", b.s3.exporter_secret);
  set("write_traffic_secret_len", b.s3.write_traffic_secret_len);
  set("read_traffic_secret_len", b.s3.read_traffic_secret_len);
  set("exporter_secret_len", b.s3.exporter_secret_len);
  set("established_session", b.s3.established_session);
  set("hs_hash_len", b.hs.hash_len);
  set("hs_client_handshake_secret", b.hs.client_handshake_secret);
  set("hs_server_handshake_secret", b.hs.server_handshake_secret);
  set("session_master_key_length", b.session.secret_length);
  set("session_master_key", b.session.secret);
  return out;
}
