/**
 * TLS secrets as NSS key log lines (the SSLKEYLOGFILE format Wireshark and
 * tshark read), and a file that keeps each line once.
 * @module
 */
import { openOutputFile } from "../core/output_file.ts";
import { OutputSink } from "../core/output_sink.ts";
import { type ClosableWriter, writerOf } from "../core/pipe_writer.ts";

/** What the kernel read out of a connection's TLS state. */
export interface TlsSecrets {
  /** Negotiated version: 0x0303 TLS 1.2, 0x0304 TLS 1.3. */
  version: number;
  /** SSL_CIPHER id, e.g. 0x03001302 (TLS_AES_256_GCM_SHA384). */
  cipherId: number;
  clientRandom: Uint8Array;
  /** TLS <= 1.2: the master secret (48 bytes). */
  masterKey: Uint8Array;
  /** TLS 1.3 state, each EVP_MAX_MD_SIZE bytes of which the hash's length count. */
  handshakeSecret: Uint8Array;
  handshakeTrafficHash: Uint8Array;
  clientAppTrafficSecret: Uint8Array;
  serverAppTrafficSecret: Uint8Array;
  exporterMasterSecret: Uint8Array;
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

/** TLS 1.3 cipher suites whose hash is SHA-384 (only TLS_AES_256_GCM_SHA384 today). */
const SHA384_SUITES = new Set([0x03001302]);

let nodeCrypto: typeof import("node:crypto") | undefined;

/**
 * Loads node:crypto for hkdfExpandLabel() (TLS 1.3 key log lines): its
 * import takes time a capture spends while its BPF object loads instead.
 */
export async function loadCrypto(): Promise<void> {
  nodeCrypto ??= await import("node:crypto");
}

/** HKDF-Expand-Label of TLS 1.3 (RFC 8446 §7.1), for outputs of at most one hash block. */
export function hkdfExpandLabel(
  hash: "sha256" | "sha384",
  secret: Uint8Array,
  label: string,
  context: Uint8Array,
  length: number,
): Uint8Array {
  const full = new TextEncoder().encode(`tls13 ${label}`);
  const info = new Uint8Array(2 + 1 + full.length + 1 + context.length + 1);
  let at = 0;
  info[at++] = length >> 8;
  info[at++] = length & 0xff;
  info[at++] = full.length;
  info.set(full, at), at += full.length;
  info[at++] = context.length;
  info.set(context, at), at += context.length;
  info[at] = 1; // HKDF-Expand's block counter: one block is enough
  if (!nodeCrypto) throw new Error("hkdfExpandLabel() before loadCrypto()");
  return new Uint8Array(nodeCrypto.createHmac(hash, secret).update(info).digest()).subarray(
    0,
    length,
  );
}

/** The key log lines of one handshake (none if the secrets are incomplete). */
export function keylogLines(s: TlsSecrets): string[] {
  const cr = hex(s.clientRandom);
  if (s.version !== 0x0304) {
    return s.masterKey.length === 48 ? [`CLIENT_RANDOM ${cr} ${hex(s.masterKey)}`] : [];
  }
  const hash = SHA384_SUITES.has(s.cipherId) ? "sha384" : "sha256";
  const n = hash === "sha384" ? 48 : 32;
  const hth = s.handshakeTrafficHash.subarray(0, n);
  const hs = s.handshakeSecret.subarray(0, n);
  return [
    `CLIENT_HANDSHAKE_TRAFFIC_SECRET ${cr} ${
      hex(hkdfExpandLabel(hash, hs, "c hs traffic", hth, n))
    }`,
    `SERVER_HANDSHAKE_TRAFFIC_SECRET ${cr} ${
      hex(hkdfExpandLabel(hash, hs, "s hs traffic", hth, n))
    }`,
    `CLIENT_TRAFFIC_SECRET_0 ${cr} ${hex(s.clientAppTrafficSecret.subarray(0, n))}`,
    `SERVER_TRAFFIC_SECRET_0 ${cr} ${hex(s.serverAppTrafficSecret.subarray(0, n))}`,
    `EXPORTER_SECRET ${cr} ${hex(s.exporterMasterSecret.subarray(0, n))}`,
  ];
}

/**
 * A key log file: created 0600 (never through a link), appended to, and
 * never given the same line twice, also across runs.
 */
export class KeylogFile {
  #sink: OutputSink;
  #writer: ClosableWriter;
  #seen = new Set<string>();
  /** Lines written by this run. */
  written = 0;

  constructor(readonly path: string) {
    const file = openOutputFile(path);
    // lines of earlier runs, from a file (a FIFO's reader has them, if anyone)
    if (file.statSync().isFile) {
      try {
        for (const line of Deno.readTextFileSync(path).split("\n")) if (line) this.#seen.add(line);
      } catch { /* unreadable: only this run's lines are deduplicated */ }
    }
    this.#writer = writerOf(file, path);
    this.#sink = new OutputSink(this.#writer, path);
  }

  /** Appends the lines not written before; returns those. */
  add(lines: readonly string[]): string[] {
    const fresh = lines.filter((l) => !this.#seen.has(l));
    if (fresh.length === 0) return [];
    this.#sink.write(fresh.join("\n") + "\n");
    for (const l of fresh) this.#seen.add(l);
    this.written += fresh.length;
    return fresh;
  }

  /** Closes the file (a FIFO once its reader has taken every line). */
  close() {
    this.#writer.close();
  }
}
