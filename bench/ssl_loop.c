/*
 * Benchmark 2's target: SSL_write in a loop over a memory BIO, so the time
 * per call is OpenSSL's own work plus whatever probes sit on SSL_write.
 *
 *   ssl_loop CERT KEY SIZE
 *
 * Does a TLS handshake between two SSL objects in memory, prints "ready",
 * then for each line "N" on stdin times N calls of SSL_write(SIZE bytes)
 * (the ciphertext is thrown away) and prints "ns_per_call=X"; exits at EOF.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "loop_timer.h"

static void die(const char *what)
{
	fprintf(stderr, "ssl_loop: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

/* Moves pending bytes from one BIO to another. */
static void pump(BIO *from, BIO *to)
{
	char buf[16384];
	int n;

	while ((n = BIO_read(from, buf, sizeof(buf))) > 0)
		if (BIO_write(to, buf, n) != n)
			die("BIO_write");
}

/* One SSL_write of the loop; the ciphertext is thrown away. */
struct writer {
	SSL *ssl;
	BIO *out;
	char *data;
	size_t size;
};

static void write_once(void *arg)
{
	struct writer *w = arg;

	if (SSL_write(w->ssl, w->data, (int)w->size) != (int)w->size)
		die("SSL_write");
	(void)BIO_reset(w->out);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: ssl_loop CERT KEY SIZE\n");
		return 2;
	}
	size_t size = strtoul(argv[3], NULL, 10);
	SSL_CTX *sctx = SSL_CTX_new(TLS_server_method());
	SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());

	if (!sctx || !cctx)
		die("SSL_CTX_new");
	if (SSL_CTX_use_certificate_file(sctx, argv[1], SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_use_PrivateKey_file(sctx, argv[2], SSL_FILETYPE_PEM) != 1)
		die("load certificate");
	SSL *s = SSL_new(sctx), *c = SSL_new(cctx);
	BIO *s_in = BIO_new(BIO_s_mem()), *s_out = BIO_new(BIO_s_mem());
	BIO *c_in = BIO_new(BIO_s_mem()), *c_out = BIO_new(BIO_s_mem());

	SSL_set_bio(s, s_in, s_out);
	SSL_set_bio(c, c_in, c_out);
	SSL_set_accept_state(s);
	SSL_set_connect_state(c);
	for (int i = 0; i < 100; i++) {
		int rc = SSL_do_handshake(c), rs = SSL_do_handshake(s);

		pump(c_out, s_in);
		pump(s_out, c_in);
		if (rc == 1 && rs == 1)
			break;
		if (i == 99)
			die("handshake did not finish");
	}
	struct writer w = { c, c_out, malloc(size ? size : 1), size };

	memset(w.data, 'x', size);
	time_calls(write_once, &w);
	return 0;
}
