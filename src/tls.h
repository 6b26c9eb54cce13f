/*
 * tls — OpenSSL contexts for both sides of the proxy: the server role towards clients
 * (listen.tls: certificate, key, optional CA that client certificates must chain to) and the
 * client role towards PostgreSQL (services.X.tls: require, or verify-full against a CA and the
 * host name). Per-connection TLS I/O lives in conn.
 */
#ifndef PGRELAY_TLS_H
#define PGRELAY_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Both roles: TLS 1.2 at least; for TLS 1.2 only forward-secret AEAD cipher suites (ECDHE or DHE
 * key exchange with AES-GCM or ChaCha20-Poly1305; no CBC, no static RSA key exchange, no SHA-1
 * MACs); TLS 1.3 suites are OpenSSL's defaults (all AEAD, all forward-secret). PostgreSQL's
 * servers and libpq clients since 9.x negotiate these.
 */
#define TLS_CIPHERS_TLS12 "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL"

/* A context for accepting TLS from clients, or NULL with err set. */
SSL_CTX *tls_server_context(const ConfigTls *cfg, char *err, size_t errlen);
/* A context for TLS towards servers (NULL with err set), or NULL without error for disable. */
SSL_CTX *tls_client_context(const ConfigTls *cfg, char *err, size_t errlen);
/* The last OpenSSL error as text (for logs). */
const char *tls_error_string(char *buf, size_t len);

#endif
