// Prints, as JSON, where BoringSSL keeps what ecap reads for its key log:
// offsets in ssl_st, SSL3_STATE, SSL_HANDSHAKE and ssl_session_st. Built by
// scripts/boringssl_offsets.sh against the internal headers of the source
// Debian built (android-platform-external-boringssl), with the defines of
// its debian/rules that can change layouts.
//   boringssl_offsets DEBIAN_VERSION
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <new>
#include <type_traits>
#include <utility>

// SSL_HANDSHAKE keeps its secrets private: offsetof needs them public.
#define private public
#include "ssl/internal.h"
#undef private

using bssl::SSL3_STATE;
using bssl::SSL_HANDSHAKE;

// ssl_st::server is a bit-field: offsetof cannot name it, so set it in a
// zeroed buffer and see which byte and bit change.
static void server_bit(size_t *byte, unsigned *mask) {
  alignas(ssl_st) static unsigned char buf[sizeof(ssl_st)];
  memset(buf, 0, sizeof(buf));
  reinterpret_cast<ssl_st *>(buf)->server = true;
  for (size_t i = 0; i < sizeof(buf); i++) {
    if (buf[i]) {
      *byte = i;
      *mask = buf[i];
      return;
    }
  }
  *byte = 0;
  *mask = 0;
}

int main(int argc, char **argv) {
  size_t server_byte;
  unsigned server_mask;
  server_bit(&server_byte, &server_mask);
  printf("{\n");
  printf("  \"debian_version\": \"%s\",\n", argc > 1 ? argv[1] : "");
  printf("  \"ssl\": {\n");
  printf("    \"version\": %zu,\n", offsetof(ssl_st, version));
  printf("    \"s3\": %zu,\n", offsetof(ssl_st, s3));
  printf("    \"server_byte\": %zu,\n", server_byte);
  printf("    \"server_mask\": %u\n", server_mask);
  printf("  },\n");
  printf("  \"s3\": {\n");
  printf("    \"client_random\": %zu,\n", offsetof(SSL3_STATE, client_random));
  printf("    \"hs\": %zu,\n", offsetof(SSL3_STATE, hs));
  printf("    \"write_traffic_secret\": %zu,\n", offsetof(SSL3_STATE, write_traffic_secret));
  printf("    \"read_traffic_secret\": %zu,\n", offsetof(SSL3_STATE, read_traffic_secret));
  printf("    \"exporter_secret\": %zu,\n", offsetof(SSL3_STATE, exporter_secret));
  printf("    \"write_traffic_secret_len\": %zu,\n",
         offsetof(SSL3_STATE, write_traffic_secret_len));
  printf("    \"read_traffic_secret_len\": %zu,\n",
         offsetof(SSL3_STATE, read_traffic_secret_len));
  printf("    \"exporter_secret_len\": %zu,\n", offsetof(SSL3_STATE, exporter_secret_len));
  printf("    \"established_session\": %zu\n", offsetof(SSL3_STATE, established_session));
  printf("  },\n");
  printf("  \"hs\": {\n");
  printf("    \"hash_len\": %zu,\n", offsetof(SSL_HANDSHAKE, hash_len_));
  printf("    \"client_handshake_secret\": %zu,\n",
         offsetof(SSL_HANDSHAKE, client_handshake_secret_));
  printf("    \"server_handshake_secret\": %zu\n",
         offsetof(SSL_HANDSHAKE, server_handshake_secret_));
  printf("  },\n");
  printf("  \"session\": {\n");
  printf("    \"secret_length\": %zu,\n", offsetof(ssl_session_st, secret_length));
  printf("    \"secret\": %zu\n", offsetof(ssl_session_st, secret));
  printf("  },\n");
  printf("  \"secret_max\": %zu\n", sizeof(SSL3_STATE::write_traffic_secret));
  printf("}\n");
  return 0;
}
