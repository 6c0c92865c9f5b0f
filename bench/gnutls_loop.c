/*
 * Benchmark 2's GnuTLS target: gnutls_record_send in a loop over memory, so
 * the time per call is GnuTLS's own work plus whatever probes sit on it.
 *
 *   gnutls_loop CERT KEY SIZE
 *
 * Does a TLS handshake between two sessions whose transport is a buffer in
 * memory, prints "ready", then for each line "N" on stdin times N calls of
 * gnutls_record_send(SIZE bytes) (the ciphertext is thrown away) and prints
 * "ns_per_call=X"; exits at EOF.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include "loop_timer.h"

/* One direction's bytes in flight. */
struct pipe {
	char buf[1 << 16];
	size_t len;
	gnutls_session_t reader; /* whose errno says "try again" when empty */
};

static void die(const char *what, int rc)
{
	fprintf(stderr, "gnutls_loop: %s: %s\n", what, gnutls_strerror(rc));
	exit(1);
}

static ssize_t push(gnutls_transport_ptr_t p, const void *data, size_t n)
{
	struct pipe *to = p;

	if (n > sizeof(to->buf) - to->len)
		n = sizeof(to->buf) - to->len; /* the loop empties it: only the handshake fills it */
	memcpy(to->buf + to->len, data, n);
	to->len += n;
	return (ssize_t)n;
}

static ssize_t pull(gnutls_transport_ptr_t p, void *data, size_t n)
{
	struct pipe *from = p;

	if (from->len == 0) {
		gnutls_transport_set_errno(from->reader, EAGAIN);
		return -1;
	}
	if (n > from->len)
		n = from->len;
	memcpy(data, from->buf, n);
	memmove(from->buf, from->buf + n, from->len - n);
	from->len -= n;
	return (ssize_t)n;
}

/* A session writing to `out` and reading from `in`. */
static gnutls_session_t session(unsigned flags, gnutls_certificate_credentials_t creds,
				struct pipe *in, struct pipe *out)
{
	gnutls_session_t s;
	int rc = gnutls_init(&s, flags | GNUTLS_NONBLOCK);

	if (rc < 0)
		die("gnutls_init", rc);
	if ((rc = gnutls_set_default_priority(s)) < 0 ||
	    (rc = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, creds)) < 0)
		die("session setup", rc);
	in->reader = s;
	gnutls_transport_set_push_function(s, push);
	gnutls_transport_set_pull_function(s, pull);
	gnutls_transport_set_ptr2(s, in, out);
	return s;
}

/* One gnutls_record_send of the loop; the ciphertext is thrown away. */
struct writer {
	gnutls_session_t session;
	char *data;
	size_t size;
};

static struct pipe to_server, to_client;

static void write_once(void *arg)
{
	struct writer *w = arg;

	if (gnutls_record_send(w->session, w->data, w->size) != (ssize_t)w->size)
		die("gnutls_record_send", 0);
	to_server.len = 0;
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: gnutls_loop CERT KEY SIZE\n");
		return 2;
	}
	size_t size = strtoul(argv[3], NULL, 10);
	gnutls_certificate_credentials_t creds;
	int rc;

	if ((rc = gnutls_certificate_allocate_credentials(&creds)) < 0 ||
	    (rc = gnutls_certificate_set_x509_key_file(creds, argv[1], argv[2],
						       GNUTLS_X509_FMT_PEM)) < 0)
		die("load certificate", rc);
	gnutls_session_t s = session(GNUTLS_SERVER, creds, &to_server, &to_client);
	gnutls_session_t c = session(GNUTLS_CLIENT, creds, &to_client, &to_server);
	int c_done = 0, s_done = 0;

	for (int i = 0; i < 100 && !(c_done && s_done); i++) {
		if (!c_done && (rc = gnutls_handshake(c)) == 0)
			c_done = 1;
		else if (!c_done && gnutls_error_is_fatal(rc))
			die("client handshake", rc);
		if (!s_done && (rc = gnutls_handshake(s)) == 0)
			s_done = 1;
		else if (!s_done && gnutls_error_is_fatal(rc))
			die("server handshake", rc);
	}
	if (!(c_done && s_done))
		die("handshake did not finish", 0);
	struct writer w = { c, malloc(size ? size : 1), size };

	memset(w.data, 'x', size);
	time_calls(write_once, &w);
	return 0;
}
