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

/* A context for accepting TLS from clients, or NULL with err set. */
SSL_CTX *tls_server_context(const ConfigTls *cfg, char *err, size_t errlen);
/* A context for TLS towards servers (NULL with err set), or NULL without error for disable. */
SSL_CTX *tls_client_context(const ConfigTls *cfg, char *err, size_t errlen);
/* The last OpenSSL error as text (for logs). */
const char *tls_error_string(char *buf, size_t len);

#endif
