/*
 * tls — OpenSSL contexts (see tls.h).
 */
#include "tls.h"

#include <openssl/err.h>
#include <stdio.h>

const char *tls_error_string(char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	if (!e) {
		snprintf(buf, len, "unknown TLS error");
		return buf;
	}
	ERR_error_string_n(e, buf, len);
	ERR_clear_error();
	return buf;
}

static bool common_options(SSL_CTX *ctx)
{
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_TLS12) != 1)
		return false;
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
				      SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/* One read(2) per burst instead of two per record (header, then body); conn decrypts what
	 * OpenSSL holds (SSL_has_pending) before it waits on the socket again. */
	SSL_CTX_set_read_ahead(ctx, 1);
	return true;
}

SSL_CTX *tls_server_context(const ConfigTls *cfg, char *err, size_t errlen)
{
	char e[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context: %s", tls_error_string(e, sizeof e));
		return NULL;
	}
	if (!common_options(ctx)) {
		snprintf(err, errlen, "cannot set the TLS cipher list: %s", tls_error_string(e, sizeof e));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert) != 1) {
		snprintf(err, errlen, "cannot load listen.tls.cert \"%s\": %s", cfg->cert, tls_error_string(e, sizeof e));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "cannot load listen.tls.key \"%s\": %s", cfg->key, tls_error_string(e, sizeof e));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "listen.tls.key does not match listen.tls.cert");
		goto fail;
	}
	if (cfg->ca) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
			snprintf(err, errlen, "cannot load listen.tls.ca \"%s\": %s", cfg->ca, tls_error_string(e, sizeof e));
			goto fail;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

SSL_CTX *tls_client_context(const ConfigTls *cfg, char *err, size_t errlen)
{
	if (cfg->mode == CONFIG_TLS_DISABLE)
		return NULL;
	char e[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx) {
		snprintf(err, errlen, "cannot create a TLS context: %s", tls_error_string(e, sizeof e));
		return NULL;
	}
	if (!common_options(ctx)) {
		snprintf(err, errlen, "cannot set the TLS cipher list: %s", tls_error_string(e, sizeof e));
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (cfg->ca) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->ca, NULL) != 1) {
			snprintf(err, errlen, "cannot load tls.ca \"%s\": %s", cfg->ca, tls_error_string(e, sizeof e));
			SSL_CTX_free(ctx);
			return NULL;
		}
	}
	SSL_CTX_set_verify(ctx, cfg->mode == CONFIG_TLS_VERIFY_FULL ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	return ctx;
}
