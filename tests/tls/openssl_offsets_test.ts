/**
 * Checks lib/tls/openssl_offsets.json (made by scripts/openssl_offsets.sh from
 * Debian's OpenSSL sources and upstream's release tags): its shape, how
 * lib/tls/ssl_layout.ts maps versions to its entries, and, against this machine's
 * real libssl.so.3 without BPF, the 3.0 entry: a small C program, built here with gcc against the system's libssl,
 * opens TLS 1.2 and TLS 1.3 connections over a socketpair (client and server
 * in one process), then prints both what the public API says and the bytes at
 * the JSON's offsets from each `SSL *`. The TLS 1.3 secrets are checked
 * against the key log and against the RFC 8446 key schedule.
 * Needs gcc, libssl-dev (headers and libssl.so) and the openssl CLI.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { KNOWN_FAMILIES, layoutFor } from "../../lib/tls/ssl_layout.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const decoder = new TextDecoder();

type Offsets = Record<string, number>;
interface Entry {
  /** Debian's entries: the source package measured. */
  debian_version?: string;
  /** Upstream's entries: the newest release tag measured, and every release with this layout. */
  git_tag?: string;
  releases?: string[];
  family: string;
  openssl_version_number: number;
  evp_max_md_size: number;
  ssl3_random_size: number;
  ssl_max_master_key_length: number;
  ssl_to_connection: number;
  ssl_type_ssl_connection?: number;
  s3_is_pointer: boolean;
  ssl: Offsets;
  s3: Offsets;
  session: Offsets;
  cipher: Offsets;
  bio: Offsets;
  bio_method: Offsets;
  sizes: Offsets;
}
interface Table {
  source: string;
  versions: Record<string, Entry>;
}

const table: Table = JSON.parse(
  Deno.readTextFileSync(`${ROOT}lib/tls/openssl_offsets.json`),
);

/** The entry of a family with one layout ("1.1.1", "3.0", "3.5"), with its version key. */
function entryOf(family: string): [string, Entry] {
  const found = Object.entries(table.versions).filter(([, e]) => e.family === family);
  assert.equal(found.length, 1, `exactly one ${family} entry in lib/tls/openssl_offsets.json`);
  return found[0];
}

/** "3.0.19" / "3.0.19+quic" / "OpenSSL 3.0.22 1 Jul 2025" -> "3.0". */
function familyOf(version: string): string {
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(version);
  assert.ok(m, `no version number in ${JSON.stringify(version)}`);
  return m[1] === "1" ? `${m[1]}.${m[2]}.${m[3]}` : `${m[1]}.${m[2]}`;
}

// The TLS 1.3 secrets, in their order in the connection struct.
const SECRETS = [
  "early_secret",
  "handshake_secret",
  "master_secret",
  "resumption_master_secret",
  "client_finished_secret",
  "server_finished_secret",
  "server_finished_hash",
  "handshake_traffic_hash",
  "client_app_traffic_secret",
  "server_app_traffic_secret",
  "exporter_master_secret",
  "early_exporter_master_secret",
];

// Where each release's layout comes from: Debian's packages, or upstream's
// tags, where 3.2.4, 3.3.3 and 3.4.1 changed the layout within their branch.
const UPSTREAM_LAYOUTS: Record<string, string[]> = {
  "3.1.8": ["3.1.0", "3.1.1", "3.1.2", "3.1.3", "3.1.4", "3.1.5", "3.1.6", "3.1.7", "3.1.8"],
  "3.2.3": ["3.2.0", "3.2.1", "3.2.2", "3.2.3"],
  "3.2.6": ["3.2.4", "3.2.5", "3.2.6"],
  "3.3.2": ["3.3.0", "3.3.1", "3.3.2"],
  "3.3.5": ["3.3.3", "3.3.4", "3.3.5"],
  "3.4.0": ["3.4.0"],
  "3.4.3": ["3.4.1", "3.4.2", "3.4.3"],
};

Deno.test("openssl offsets: the table has 1.1.1 and 3.0 to 3.5, well formed", () => {
  assert.equal(table.source, "Debian source packages; upstream git tags");
  const families = [...new Set(Object.values(table.versions).map((e) => e.family))].sort();
  assert.deepEqual(families, ["1.1.1", "3.0", "3.1", "3.2", "3.3", "3.4", "3.5"]);
  assert.deepEqual(KNOWN_FAMILIES, families);
  const upstream = Object.entries(table.versions).filter(([, e]) => e.git_tag);
  assert.deepEqual(
    Object.fromEntries(upstream.map(([v, e]) => [v, e.releases])),
    UPSTREAM_LAYOUTS,
  );
  for (const [version, e] of Object.entries(table.versions)) {
    assert.equal(familyOf(version), e.family, version);
    if (e.git_tag) {
      assert.equal(e.git_tag, `openssl-${version}`);
      assert.equal(e.debian_version, undefined);
      assert.equal(e.releases?.at(-1), version, "keyed by the newest release");
      for (const r of e.releases ?? []) assert.equal(familyOf(r), e.family, r);
    } else {
      assert.ok(e.debian_version?.startsWith(version), `${version}: ${e.debian_version}`);
      assert.equal(e.releases, undefined);
    }
    // OPENSSL_VERSION_NUMBER is 0xMNN00PP0 in 3.x
    if (e.family !== "1.1.1") {
      const [major, minor, patch] = version.split(".").map(Number);
      const n = e.openssl_version_number;
      assert.deepEqual([n >>> 28, (n >>> 20) & 0xff, (n >>> 4) & 0xff], [major, minor, patch]);
    }
    assert.equal(e.evp_max_md_size, 64);
    assert.equal(e.ssl3_random_size, 32);
    assert.equal(e.ssl_to_connection, 0, "SSL * is the connection struct");
    assert.equal(e.s3_is_pointer, e.family === "1.1.1");
    const all = [e.ssl, e.s3, e.session, e.cipher, e.bio, e.bio_method, e.sizes];
    for (const group of all) {
      for (const [k, v] of Object.entries(group)) {
        assert.ok(Number.isInteger(v) && v >= 0, `${version} ${k}: ${v}`);
      }
    }
    // The secrets are consecutive EVP_MAX_MD_SIZE arrays.
    SECRETS.forEach((name, i) => {
      assert.equal(e.ssl[name], e.ssl.early_secret + i * e.evp_max_md_size, `${version} ${name}`);
    });
    const connSize = e.sizes.connection;
    for (const [k, v] of Object.entries(e.ssl)) assert.ok(v < connSize, `${version} ssl.${k}`);
    assert.equal(e.s3.client_random, e.s3.server_random + e.ssl3_random_size);
    assert.ok(e.s3.tmp_new_cipher < e.sizes.s3);
    assert.ok(e.session.master_key + e.session.master_key_size <= e.sizes.session);
    assert.ok(e.session.master_key_size >= e.ssl_max_master_key_length);
    assert.ok(e.cipher.id < e.sizes.cipher && e.bio.num < e.sizes.bio);
    if (["1.1.1", "3.0", "3.1"].includes(e.family)) {
      // SSL is the connection struct itself
      assert.equal(e.sizes.ssl, e.sizes.connection, version);
      assert.equal(e.ssl.version, 0, version);
      assert.equal(e.ssl_type_ssl_connection, undefined, version);
    } else {
      // SSL_CONNECTION starts with struct ssl_st; user_ssl (when there)
      // follows it, then version
      assert.equal(e.ssl.type, 0);
      assert.equal(e.ssl_type_ssl_connection, 0);
      const userSsl = e.ssl.user_ssl !== undefined;
      if (userSsl) assert.equal(e.ssl.user_ssl, e.sizes.ssl, version);
      assert.equal(e.ssl.version, e.sizes.ssl + (userSsl ? 8 : 0), version);
      // the patch releases that added user_ssl
      const added: Record<string, number> = { "3.2": 4, "3.3": 3, "3.4": 1, "3.5": 0 };
      assert.ok(e.family in added, version);
      for (const r of e.releases ?? [version]) {
        const later: boolean = Number(r.split(".")[2]) >= added[e.family];
        assert.equal(userSsl, later, `${r}: user_ssl ${userSsl ? "present" : "absent"}`);
      }
    }
  }
});

Deno.test("openssl offsets: ssl_layout.ts maps each release to its entry", () => {
  const keyOf = (v: string) => {
    const l = layoutFor(v);
    if (!l) return undefined;
    // ssl_layout.ts imports its own copy of the JSON
    const want = JSON.stringify(l.entry);
    const found = Object.entries(table.versions).find(([, e]) => JSON.stringify(e) === want);
    return found ? [found[0], l.family] : undefined;
  };
  // every measured upstream release, by its own entry
  for (const [key, releases] of Object.entries(UPSTREAM_LAYOUTS)) {
    for (const r of releases) assert.equal(keyOf(r)?.[0], key, r);
  }
  assert.deepEqual(keyOf("1.1.1k"), ["1.1.1w", "1.1.1"]);
  assert.deepEqual(keyOf("3.0.2"), ["3.0.20", "3.0"]);
  assert.deepEqual(keyOf("3.1.0"), ["3.1.8", "3.1"]);
  assert.deepEqual(keyOf("3.1.9"), ["3.1.8", "3.1"]);
  assert.deepEqual(keyOf("3.2.1"), ["3.2.3", "3.2.0-3.2.3"]);
  assert.deepEqual(keyOf("3.2.4"), ["3.2.6", "3.2.4+"]);
  assert.deepEqual(keyOf("3.2.7"), ["3.2.6", "3.2.4+"], "a newer release: the newest layout");
  assert.deepEqual(keyOf("3.3.2"), ["3.3.2", "3.3.0-3.3.2"]);
  assert.deepEqual(keyOf("3.3.3"), ["3.3.5", "3.3.3+"]);
  assert.deepEqual(keyOf("3.4.0"), ["3.4.0", "3.4.0"]);
  assert.deepEqual(keyOf("3.4.3"), ["3.4.3", "3.4.1+"]);
  assert.deepEqual(keyOf("3.5.2"), ["3.5.7", "3.5"]);
  for (const v of ["3.6.0", "1.1.0l", "1.0.2u", "", undefined]) {
    assert.equal(keyOf(v as string), undefined);
  }
});

Deno.test("openssl offsets: node's bundled OpenSSL is in the 3.0 family", async () => {
  const out = await new Deno.Command("node", {
    args: ["-p", "process.versions.openssl"],
    stdout: "piped",
  }).output();
  assert.equal(out.code, 0, "node -p process.versions.openssl");
  const version = decoder.decode(out.stdout).trim();
  // Node statically links OpenSSL 3.0.x (node 18-22); ecap reads its SSL
  // objects with the "3.0" entry, which the next test checks on a live 3.0.
  assert.equal(familyOf(version), "3.0", `node bundles OpenSSL ${version}`);
  const [key] = entryOf("3.0");
  assert.match(key, /^3\.0\.\d+$/);
});

/** HKDF-Expand (RFC 5869) with node:crypto's HMAC. */
function hkdfExpand(hash: string, prk: Uint8Array, info: Uint8Array, length: number) {
  const out: Uint8Array[] = [];
  let t = new Uint8Array(0);
  let have = 0;
  for (let i = 1; have < length; i++) {
    const h = createHmac(hash, prk);
    h.update(t);
    h.update(info);
    h.update(new Uint8Array([i]));
    t = new Uint8Array(h.digest());
    out.push(t);
    have += t.length;
  }
  const all = new Uint8Array(have);
  let at = 0;
  for (const b of out) all.set(b, (at += b.length) - b.length);
  return all.subarray(0, length);
}

/** HKDF-Expand-Label (RFC 8446 7.1). */
function expandLabel(
  hash: string,
  secret: Uint8Array,
  label: string,
  context: Uint8Array,
  length: number,
) {
  const full = new TextEncoder().encode(`tls13 ${label}`);
  const info = new Uint8Array(2 + 1 + full.length + 1 + context.length);
  info[0] = length >> 8;
  info[1] = length & 0xff;
  info[2] = full.length;
  info.set(full, 3);
  info[3 + full.length] = context.length;
  info.set(context, 4 + full.length);
  return hkdfExpand(hash, secret, info, length);
}

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => new Uint8Array(s.match(/../g)?.map((x) => parseInt(x, 16)) ?? []);

// Connects a client and a server SSL over a socketpair and prints, per
// connection and side, "api.*" values from the public API and "mem.*" values
// read at the offsets given as name=value arguments.
const PROBE_C = String.raw`
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

static int nargs;
static char **args;

static long off(const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < nargs; i++)
        if (strncmp(args[i], name, n) == 0 && args[i][n] == '=')
            return strtol(args[i] + n + 1, NULL, 0);
    fprintf(stderr, "probe: no offset %s\n", name);
    exit(2);
}

static const unsigned char *at(const void *base, long o) { return (const unsigned char *)base + o; }
static const void *ptr_at(const void *base, long o) { const void *p; memcpy(&p, at(base, o), sizeof p); return p; }
static int int_at(const void *base, long o) { int v; memcpy(&v, at(base, o), sizeof v); return v; }
static size_t size_at(const void *base, long o) { size_t v; memcpy(&v, at(base, o), sizeof v); return v; }
static uint32_t u32_at(const void *base, long o) { uint32_t v; memcpy(&v, at(base, o), sizeof v); return v; }

static const char *prefix;
static void hex(const char *key, const unsigned char *p, size_t n)
{
    printf("%s.%s=", prefix, key);
    for (size_t i = 0; i < n; i++)
        printf("%02x", p[i]);
    printf("\n");
}
static void num(const char *key, unsigned long v) { printf("%s.%s=%lu\n", prefix, key, v); }

static const char *conn_name;
static void keylog(const SSL *ssl, const char *line)
{
    if (!SSL_is_server(ssl))
        printf("%s.keylog=%s\n", conn_name, line);
}

static const char *SECRETS[] = {"early_secret", "handshake_secret", "master_secret",
    "client_finished_secret", "server_finished_secret", "server_finished_hash",
    "handshake_traffic_hash", "client_app_traffic_secret", "server_app_traffic_secret",
    "exporter_master_secret"};

static void dump(const char *side, SSL *s)
{
    char pfx[128], key[128];
    unsigned char buf[1024];
    snprintf(pfx, sizeof pfx, "%s.%s", conn_name, side);
    prefix = pfx;
    const unsigned char *conn = at(s, off("ssl_to_connection"));

    num("api.version", SSL_version(s));
    num("mem.version", int_at(conn, off("ssl.version")));

    const void *s3 = off("s3_is_pointer") ? ptr_at(conn, off("ssl.s3")) : at(conn, off("ssl.s3"));
    hex("api.client_random", buf, SSL_get_client_random(s, buf, sizeof buf));
    hex("mem.client_random", at(s3, off("s3.client_random")), 32);
    hex("api.server_random", buf, SSL_get_server_random(s, buf, sizeof buf));
    hex("mem.server_random", at(s3, off("s3.server_random")), 32);

    const SSL_CIPHER *cipher = SSL_get_current_cipher(s);
    num("api.cipher_id", SSL_CIPHER_get_id(cipher));
    num("mem.cipher_id", u32_at(ptr_at(s3, off("s3.tmp_new_cipher")), off("cipher.id")));
    num("api.md_size", EVP_MD_size(SSL_CIPHER_get_handshake_digest(cipher)));

    SSL_SESSION *sess = SSL_get_session(s);
    const void *msess = ptr_at(conn, off("ssl.session"));
    num("api.session", (unsigned long)sess);
    num("mem.session", (unsigned long)msess);
    num("api.session_version", SSL_SESSION_get_protocol_version(sess));
    num("mem.session_version", int_at(msess, off("session.ssl_version")));
    hex("api.master_key", buf, SSL_SESSION_get_master_key(sess, buf, sizeof buf));
    hex("mem.master_key", at(msess, off("session.master_key")), size_at(msess, off("session.master_key_length")));

    const void *rbio = ptr_at(conn, off("ssl.rbio")), *wbio = ptr_at(conn, off("ssl.wbio"));
    num("api.rbio", (unsigned long)SSL_get_rbio(s));
    num("mem.rbio", (unsigned long)rbio);
    num("api.wbio", (unsigned long)SSL_get_wbio(s));
    num("mem.wbio", (unsigned long)wbio);
    num("api.rfd", SSL_get_rfd(s));
    num("mem.rfd", int_at(rbio, off("bio.num")));
    num("api.wfd", SSL_get_wfd(s));
    num("mem.wfd", int_at(wbio, off("bio.num")));
    num("api.rbio_type", BIO_method_type(SSL_get_rbio(s)));
    num("mem.rbio_type", int_at(ptr_at(rbio, off("bio.method")), off("bio_method.type")));

    for (size_t i = 0; i < sizeof SECRETS / sizeof *SECRETS; i++) {
        snprintf(key, sizeof key, "ssl.%s", SECRETS[i]);
        long o = off(key);
        snprintf(key, sizeof key, "mem.%s", SECRETS[i]);
        hex(key, at(conn, o), (size_t)off("evp_max_md_size"));
    }
}

static void fail(const char *what)
{
    fprintf(stderr, "probe: %s failed\n", what);
    ERR_print_errors_fp(stderr);
    exit(1);
}

static void progress(SSL *s, int rc, const char *what)
{
    if (rc == 1)
        return;
    int e = SSL_get_error(s, rc);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
        fail(what);
}

static void run(const char *name, int version, const char *ciphers, const char *cert, const char *key)
{
    conn_name = name;
    SSL_CTX *sctx = SSL_CTX_new(TLS_server_method()), *cctx = SSL_CTX_new(TLS_client_method());
    if (!sctx || !cctx)
        fail("SSL_CTX_new");
    for (int i = 0; i < 2; i++) {
        SSL_CTX *c = i ? cctx : sctx;
        SSL_CTX_set_min_proto_version(c, version);
        SSL_CTX_set_max_proto_version(c, version);
        if (version == TLS1_3_VERSION ? !SSL_CTX_set_ciphersuites(c, ciphers) : !SSL_CTX_set_cipher_list(c, ciphers))
            fail("setting ciphers");
    }
    if (SSL_CTX_use_certificate_file(sctx, cert, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_use_PrivateKey_file(sctx, key, SSL_FILETYPE_PEM) != 1)
        fail("loading the certificate");
    SSL_CTX_set_keylog_callback(cctx, keylog);

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        fail("socketpair");
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    fcntl(sv[1], F_SETFL, O_NONBLOCK);
    SSL *c = SSL_new(cctx), *s = SSL_new(sctx);
    SSL_set_fd(c, sv[0]);
    SSL_set_fd(s, sv[1]);
    SSL_set_connect_state(c);
    SSL_set_accept_state(s);
    int i, cdone = 0, sdone = 0;
    for (i = 0; i < 1000 && !(cdone && sdone); i++) {
        if (!cdone) { int rc = SSL_do_handshake(c); progress(c, rc, "client handshake"); cdone = rc == 1; }
        if (!sdone) { int rc = SSL_do_handshake(s); progress(s, rc, "server handshake"); sdone = rc == 1; }
    }
    if (!(cdone && sdone))
        fail("handshake");
    /* some application data both ways (the client reads the session tickets) */
    char rbuf[16];
    if (SSL_write(c, "ping", 4) != 4) fail("client write");
    for (i = 0; i < 1000; i++) { int rc = SSL_read(s, rbuf, sizeof rbuf); if (rc > 0) break; progress(s, rc, "server read"); }
    if (SSL_write(s, "pong", 4) != 4) fail("server write");
    for (i = 0; i < 1000; i++) { int rc = SSL_read(c, rbuf, sizeof rbuf); if (rc > 0) break; progress(c, rc, "client read"); }
    fflush(stdout);
    dump("client", c);
    dump("server", s);
    SSL_free(c);
    SSL_free(s);
    SSL_CTX_free(cctx);
    SSL_CTX_free(sctx);
    close(sv[0]);
    close(sv[1]);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: probe CERT KEY name=offset...\n");
        return 2;
    }
    nargs = argc - 3;
    args = argv + 3;
    printf("runtime=%s\n", OpenSSL_version(OPENSSL_VERSION));
    run("tls12", TLS1_2_VERSION, "ECDHE-ECDSA-AES128-GCM-SHA256", argv[1], argv[2]);
    run("tls13_sha256", TLS1_3_VERSION, "TLS_AES_128_GCM_SHA256", argv[1], argv[2]);
    run("tls13_sha384", TLS1_3_VERSION, "TLS_AES_256_GCM_SHA384", argv[1], argv[2]);
    return 0;
}
`;

async function run(cmd: string, args: string[], cwd?: string) {
  const out = await new Deno.Command(cmd, { args, cwd, stdout: "piped", stderr: "piped" })
    .output()
    .catch((e) => {
      throw new Error(`${cmd}: ${e.message}`);
    });
  const stdout = decoder.decode(out.stdout);
  const stderr = decoder.decode(out.stderr);
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")} failed:\n${stderr}`);
  return stdout;
}

/** The JSON entry as the probe's name=value arguments. */
function probeArgs(e: Entry): string[] {
  const a = [
    `ssl_to_connection=${e.ssl_to_connection}`,
    `s3_is_pointer=${e.s3_is_pointer ? 1 : 0}`,
    `evp_max_md_size=${e.evp_max_md_size}`,
  ];
  const groups = { ssl: e.ssl, s3: e.s3, session: e.session, cipher: e.cipher, bio: e.bio };
  for (const [g, offs] of Object.entries({ ...groups, bio_method: e.bio_method })) {
    for (const [k, v] of Object.entries(offs)) a.push(`${g}.${k}=${v}`);
  }
  return a;
}

Deno.test("openssl offsets: the 3.0 entry matches this machine's libssl.so.3", async () => {
  try {
    Deno.statSync("/usr/include/openssl/ssl.h");
  } catch {
    throw new Error(
      "no /usr/include/openssl/ssl.h: install libssl-dev (apt-get install libssl-dev)",
    );
  }
  const [key, e] = entryOf("3.0");
  const dir = Deno.makeTempDirSync({ prefix: "ecap-openssl-offsets-" });
  try {
    Deno.writeTextFileSync(`${dir}/probe.c`, PROBE_C);
    await run("gcc", ["-O1", "-Wall", "-o", "probe", "probe.c", "-lssl", "-lcrypto"], dir);
    await run("openssl", [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      "key.pem",
      "-out",
      "cert.pem",
      "-subj",
      "/CN=localhost",
      "-days",
      "1",
    ], dir);
    const out = await run("./probe", ["cert.pem", "key.pem", ...probeArgs(e)], dir);

    const values = new Map<string, string>();
    const keylog = new Map<string, Map<string, string>>(); // conn -> label -> secret
    for (const line of out.trim().split("\n")) {
      const eq = line.indexOf("=");
      const [name, value] = [line.slice(0, eq), line.slice(eq + 1)];
      if (name.endsWith(".keylog")) {
        const conn = name.slice(0, -".keylog".length);
        const [label, , secret] = value.split(" ");
        if (!keylog.has(conn)) keylog.set(conn, new Map());
        keylog.get(conn)!.set(label, secret);
      } else {
        values.set(name, value);
      }
    }
    const runtime = values.get("runtime") ?? "";
    assert.equal(familyOf(runtime), "3.0", `libssl at run time is ${runtime}, JSON entry ${key}`);
    const get = (k: string) => {
      const v = values.get(k);
      assert.ok(v !== undefined, `probe printed no ${k}`);
      return v;
    };

    for (const conn of ["tls12", "tls13_sha256", "tls13_sha384"]) {
      const tls13 = conn !== "tls12";
      const log = keylog.get(conn);
      assert.ok(log, `${conn}: no key log lines`);
      for (const side of ["client", "server"]) {
        const p = `${conn}.${side}`;
        // Everything the public API can tell must be at the offsets.
        const same = [
          "version",
          "client_random",
          "server_random",
          "cipher_id",
          "session",
          "session_version",
          "rbio",
          "wbio",
          "rfd",
          "wfd",
          "rbio_type",
        ];
        if (!tls13) same.push("master_key"); // TLS 1.3: the resumption PSK
        for (const f of same) assert.equal(get(`${p}.mem.${f}`), get(`${p}.api.${f}`), `${p} ${f}`);
        assert.equal(get(`${p}.api.version`), String(tls13 ? 0x0304 : 0x0303));
        assert.equal(get(`${p}.api.rbio_type`), String(0x0500 | 5), "BIO_TYPE_SOCKET");
        assert.notEqual(get(`${p}.api.rfd`), "4294967295", "a socket fd");
        if (!tls13) {
          assert.equal(get(`${p}.mem.master_key`).length, 96, "48-byte master secret");
          assert.equal(log.get("CLIENT_RANDOM"), get(`${p}.mem.master_key`));
          continue;
        }
        // TLS 1.3 secrets: each is md_size bytes at the start of its array.
        const mdSize = Number(get(`${p}.api.md_size`));
        const hash = { 32: "sha256", 48: "sha384" }[mdSize];
        assert.ok(hash, `${p} md size ${mdSize}`);
        const secret = (name: string) => unhex(get(`${p}.mem.${name}`)).subarray(0, mdSize);
        const hexOf = (name: string) => hex(secret(name));
        assert.equal(hexOf("client_app_traffic_secret"), log.get("CLIENT_TRAFFIC_SECRET_0"));
        assert.equal(hexOf("server_app_traffic_secret"), log.get("SERVER_TRAFFIC_SECRET_0"));
        assert.equal(hexOf("exporter_master_secret"), log.get("EXPORTER_SECRET"));
        // The key schedule ties the rest together (RFC 8446 7.1).
        const none = new Uint8Array(0);
        const zeros = new Uint8Array(mdSize);
        const early = new Uint8Array(createHmac(hash, zeros).update(zeros).digest());
        assert.equal(hexOf("early_secret"), hex(early), "early secret, no PSK");
        const chs = expandLabel(
          hash,
          secret("handshake_secret"),
          "c hs traffic",
          secret("handshake_traffic_hash"),
          mdSize,
        );
        assert.equal(hex(chs), log.get("CLIENT_HANDSHAKE_TRAFFIC_SECRET"));
        const shs = expandLabel(
          hash,
          secret("handshake_secret"),
          "s hs traffic",
          secret("handshake_traffic_hash"),
          mdSize,
        );
        assert.equal(hex(shs), log.get("SERVER_HANDSHAKE_TRAFFIC_SECRET"));
        assert.equal(
          hexOf("client_finished_secret"),
          hex(expandLabel(hash, chs, "finished", none, mdSize)),
        );
        assert.equal(
          hexOf("server_finished_secret"),
          hex(expandLabel(hash, shs, "finished", none, mdSize)),
        );
        const cap = expandLabel(
          hash,
          secret("master_secret"),
          "c ap traffic",
          secret("server_finished_hash"),
          mdSize,
        );
        assert.equal(hex(cap), log.get("CLIENT_TRAFFIC_SECRET_0"));
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
