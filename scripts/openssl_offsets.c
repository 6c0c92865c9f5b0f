/*
 * Prints, as one JSON object, the byte offsets of the OpenSSL internals that
 * ecap reads from an `SSL *` (TLS secrets, randoms, session, cipher, BIOs).
 * Built by scripts/openssl_offsets.sh against a configured OpenSSL source
 * tree (1.1.1, 3.0 or 3.1+), with -I<src> -I<src>/include -I<src>/ssl, and
 * -DHAVE_USER_SSL when SSL_CONNECTION has a `user_ssl` member (the script
 * greps ssl/ssl_local.h for it: C cannot ask whether a member exists).
 *
 * Layout model printed (all numbers are bytes on x86_64):
 *   "ssl"      offsets from the `SSL *` an application passes to SSL_write().
 *              In 3.2+ that pointer is the `struct ssl_st ssl` member at
 *              offset 0 of SSL_CONNECTION (for TLS, not QUIC, objects), so the
 *              connection fields are at the same offsets from `SSL *`.
 *   "s3"       offsets inside the SSLv3/TLS state: in 1.1.1 `ssl.s3` holds a
 *              pointer to it (s3_is_pointer true), in 3.x it is embedded at
 *              `ssl.s3` (s3_is_pointer false).
 *   "session"  offsets inside SSL_SESSION (pointer at ssl.session).
 *   "cipher"   offsets inside SSL_CIPHER (pointer at s3.tmp_new_cipher).
 *   "bio"      offsets inside BIO (pointers at ssl.rbio / ssl.wbio), and
 *   "bio_method" inside BIO_METHOD (pointer at bio.method).
 *   "sizes"    sizeof of these structs, for sanity checks.
 */
#include <stddef.h>
#include <stdio.h>
/* bio_local.h insists on coming before openssl/bio.h and internal/cryptlib.h */
#include "crypto/bio/bio_local.h"
#include "ssl/ssl_local.h"
#include <openssl/opensslv.h>

#if OPENSSL_VERSION_NUMBER < 0x10101000L
#error "OpenSSL 1.1.1 or later is needed"
#endif

#if OPENSSL_VERSION_NUMBER >= 0x30200000L
typedef SSL_CONNECTION conn_t; /* struct ssl_connection_st, embeds SSL */
#else
typedef SSL conn_t; /* struct ssl_st holds everything */
#endif

#if OPENSSL_VERSION_NUMBER < 0x30000000L
typedef struct ssl3_state_st s3_t; /* SSL has `SSL3_STATE *s3` */
#define S3_OFF(f) offsetof(s3_t, f)
#define S3_SIZE sizeof(s3_t)
#define S3_IS_POINTER "true"
#else
/* SSL(_CONNECTION) embeds an anonymous `struct {...} s3` */
#define S3_OFF(f) (offsetof(conn_t, s3.f) - offsetof(conn_t, s3))
#define S3_SIZE sizeof(((conn_t *)0)->s3)
#define S3_IS_POINTER "false"
#endif

static int first;
static void open_obj(const char *name)
{
    printf("%s\n    \"%s\": {", first ? "" : ",", name);
    first = 0;
}
static int first_field;
static void field(const char *name, size_t value)
{
    printf("%s\n      \"%s\": %zu", first_field ? "" : ",", name, value);
    first_field = 0;
}
static void close_obj(void)
{
    printf("\n    }");
    first_field = 1;
}

#define CONN(f) field(#f, offsetof(conn_t, f))

/* argv[1]: the family name to record ("1.1.1", "3.0", ..., "3.5") */
int main(int argc, char **argv)
{
    first = 1;
    first_field = 1;
    printf("{");
    printf("\n    \"family\": \"%s\",", argc > 1 ? argv[1] : "");
    printf("\n    \"openssl_version_number\": %lu,", (unsigned long)OPENSSL_VERSION_NUMBER);
    printf("\n    \"evp_max_md_size\": %d,", EVP_MAX_MD_SIZE);
    printf("\n    \"ssl3_random_size\": %d,", SSL3_RANDOM_SIZE);
    printf("\n    \"ssl_max_master_key_length\": %d,", SSL_MAX_MASTER_KEY_LENGTH);
    /* offset of the connection struct from SSL *: 0 in every family */
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
    printf("\n    \"ssl_to_connection\": %zu,", offsetof(SSL_CONNECTION, ssl));
    printf("\n    \"ssl_type_ssl_connection\": %d,", SSL_TYPE_SSL_CONNECTION);
#else
    printf("\n    \"ssl_to_connection\": 0,");
#endif
    printf("\n    \"s3_is_pointer\": %s,", S3_IS_POINTER);
    first = 1;

    open_obj("ssl");
#if OPENSSL_VERSION_NUMBER >= 0x30200000L
    field("type", offsetof(SSL_CONNECTION, ssl.type)); /* int, 0 = TLS conn */
#endif
#ifdef HAVE_USER_SSL
    CONN(user_ssl); /* from 3.2.4, 3.3.3, 3.4.1 and 3.5.0 on: moves what follows by 8 */
#endif
    CONN(version);
    CONN(rbio);
    CONN(wbio);
    CONN(s3);
    CONN(session);
    CONN(early_secret);
    CONN(handshake_secret);
    CONN(master_secret);
    CONN(resumption_master_secret);
    CONN(client_finished_secret);
    CONN(server_finished_secret);
    CONN(server_finished_hash);
    CONN(handshake_traffic_hash);
    CONN(client_app_traffic_secret);
    CONN(server_app_traffic_secret);
    CONN(exporter_master_secret);
    CONN(early_exporter_master_secret);
    close_obj();

    open_obj("s3");
    field("server_random", S3_OFF(server_random));
    field("client_random", S3_OFF(client_random));
    field("tmp_new_cipher", S3_OFF(tmp.new_cipher));
    close_obj();

    open_obj("session");
    field("ssl_version", offsetof(SSL_SESSION, ssl_version));
    field("master_key_length", offsetof(SSL_SESSION, master_key_length));
    field("master_key", offsetof(SSL_SESSION, master_key));
    field("master_key_size", sizeof(((SSL_SESSION *)0)->master_key));
    close_obj();

    open_obj("cipher");
    field("id", offsetof(SSL_CIPHER, id));
    close_obj();

    open_obj("bio");
    field("method", offsetof(BIO, method));
    field("num", offsetof(BIO, num));
    field("next_bio", offsetof(BIO, next_bio));
    close_obj();

    open_obj("bio_method");
    field("type", offsetof(BIO_METHOD, type));
    close_obj();

    open_obj("sizes");
    field("ssl", sizeof(SSL));
    field("connection", sizeof(conn_t));
    field("s3", S3_SIZE);
    field("session", sizeof(SSL_SESSION));
    field("cipher", sizeof(SSL_CIPHER));
    field("bio", sizeof(BIO));
    close_obj();

    printf("\n  }\n");
    return 0;
}
