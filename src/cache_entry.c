/*
 * cache_entry — entry format, validation and L2 authentication (see cache_entry.h).
 */
#include "cache_entry.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 8                /* magic, count */
#define MAX_FIELDS 1664             /* PostgreSQL's MaxTupleAttributeNumber */
#define FIELD_FIXED_LEN 18          /* table OID, column, type OID, size, modifier, format */
static const char MAC_CONTEXT[] = "pgrelay-l2-v1"; /* with its NUL */

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

static uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

void cache_entry_build(Buf *out, const uint64_t *versions, size_t count, const void *names, size_t names_len,
		       const void *reply, size_t reply_len)
{
	uint8_t head[HEADER_LEN];
	put_le32(head, CACHE_ENTRY_MAGIC);
	put_le32(head + 4, (uint32_t)count);
	buf_append(out, head, sizeof head);
	for (size_t i = 0; i < count; i++) {
		uint8_t v[8];
		put_le32(v, (uint32_t)versions[i]);
		put_le32(v + 4, (uint32_t)(versions[i] >> 32));
		buf_append(out, v, 8);
	}
	uint8_t nl[2] = {(uint8_t)names_len, (uint8_t)(names_len >> 8)};
	buf_append(out, nl, 2);
	buf_append(out, names, names_len);
	buf_append(out, reply, reply_len);
}

bool cache_entry_parse(const uint8_t *blob, size_t len, CacheEntryView *out)
{
	if (!blob || len < HEADER_LEN || get_le32(blob) != CACHE_ENTRY_MAGIC)
		return false;
	uint32_t count = get_le32(blob + 4);
	if (count == 0 || count > CACHE_ENTRY_MAX_VERSIONS)
		return false;
	size_t at = HEADER_LEN + 8 * (size_t)count;
	if (len < at + 2)
		return false;
	size_t names_len = (size_t)blob[at] | (size_t)blob[at + 1] << 8;
	at += 2;
	if (len - at < names_len)
		return false;
	out->count = count;
	out->versions = blob + HEADER_LEN;
	out->names = (const char *)blob + at;
	out->names_len = names_len;
	out->reply = blob + at + names_len;
	out->reply_len = len - at - names_len;
	return true;
}

uint64_t cache_entry_version(const CacheEntryView *e, size_t i)
{
	return get_le64(e->versions + 8 * i);
}

bool cache_entry_versions_equal(const CacheEntryView *e, const uint64_t *versions, size_t n)
{
	if (e->count != n)
		return false;
	for (size_t i = 0; i < n; i++)
		if (cache_entry_version(e, i) != versions[i])
			return false;
	return true;
}

const char *cache_entry_check(const uint8_t *blob, size_t len, size_t count, const void *want_names,
			      size_t want_names_len, CacheShape shape)
{
	CacheEntryView e;
	if (!cache_entry_parse(blob, len, &e))
		return "malformed header";
	if (e.count != count)
		return "wrong number of versions";
	if (e.names_len != want_names_len || memcmp(e.names, want_names, want_names_len) != 0)
		return "names of another service or other tables";
	return cache_entry_check_reply(e.reply, e.reply_len, shape);
}

/* A RowDescription body: its field count, or -1 when malformed. */
static long row_description_fields(const uint8_t *p, size_t len)
{
	if (len < 2)
		return -1;
	size_t n = get_be16(p), at = 2;
	if (n > MAX_FIELDS)
		return -1;
	for (size_t i = 0; i < n; i++) {
		const uint8_t *z = memchr(p + at, 0, len - at);
		if (!z)
			return -1;
		at = (size_t)(z - p) + 1;
		if (len - at < FIELD_FIXED_LEN)
			return -1;
		uint16_t format = get_be16(p + at + 16);
		if (format > 1)
			return -1;
		at += FIELD_FIXED_LEN;
	}
	return at == len ? (long)n : -1;
}

/* A DataRow body: true when it has `fields` columns whose lengths add up to len exactly. */
static bool data_row_ok(const uint8_t *p, size_t len, size_t fields)
{
	if (len < 2 || get_be16(p) != fields)
		return false;
	size_t at = 2;
	for (size_t i = 0; i < fields; i++) {
		if (len - at < 4)
			return false;
		uint32_t n = get_be32(p + at);
		at += 4;
		if (n == 0xFFFFFFFFu)
			continue; /* NULL */
		if (n > 0x7FFFFFFFu || len - at < n)
			return false;
		at += n;
	}
	return at == len;
}

/* "SELECT n\0" with n = rows, in decimal without sign or leading zeros. */
static bool select_tag_ok(const uint8_t *p, size_t len, uint64_t rows)
{
	char want[32];
	int n = snprintf(want, sizeof want, "SELECT %llu", (unsigned long long)rows);
	return n > 0 && len == (size_t)n + 1 && memcmp(p, want, (size_t)n + 1) == 0;
}

const char *cache_entry_check_reply(const uint8_t *reply, size_t len, CacheShape shape)
{
	size_t at = 0;
	long fields = -1; /* unknown until a RowDescription or the first DataRow */
	uint64_t rows = 0;
	bool first = true;
	while (at < len) {
		if (len - at < 5)
			return "truncated message";
		uint8_t type = reply[at];
		uint32_t mlen = get_be32(reply + at + 1);
		if (mlen < 4 || mlen > len - at - 1)
			return "message length out of bounds";
		const uint8_t *body = reply + at + 5;
		size_t blen = mlen - 4;
		at += 1 + (size_t)mlen;
		switch (type) {
		case 'T':
			if (!first)
				return "RowDescription not first";
			if (shape == CACHE_SHAPE_EXECUTE)
				return "RowDescription without a Describe";
			if ((fields = row_description_fields(body, blen)) < 0)
				return "malformed RowDescription";
			break;
		case 'D':
			if (first && (shape == CACHE_SHAPE_QUERY || shape == CACHE_SHAPE_DESCRIBED))
				return "no RowDescription";
			if (fields < 0) {
				if (blen < 2)
					return "malformed DataRow";
				fields = get_be16(body);
			}
			if (!data_row_ok(body, blen, (size_t)fields))
				return "DataRow does not match the RowDescription";
			rows++;
			break;
		case 'C':
			if (first && (shape == CACHE_SHAPE_QUERY || shape == CACHE_SHAPE_DESCRIBED))
				return "no RowDescription";
			if (at != len)
				return "CommandComplete not last";
			if (!select_tag_ok(body, blen, rows))
				return "CommandComplete is not SELECT <number of rows>";
			return NULL;
		default:
			return "a message other than RowDescription, DataRow, CommandComplete";
		}
		first = false;
	}
	return "no CommandComplete";
}

/* ---- L2 authentication ---- */

struct CacheSigner {
	EVP_MAC *mac;
	EVP_MAC_CTX *ctx;
};

CacheSigner *cache_signer_new(const void *key, size_t key_len)
{
	if (!key || key_len < CACHE_ENTRY_MIN_KEY)
		return NULL;
	CacheSigner *s = calloc(1, sizeof *s);
	if (!s)
		return NULL;
	OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
			       OSSL_PARAM_construct_end()};
	s->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	s->ctx = s->mac ? EVP_MAC_CTX_new(s->mac) : NULL;
	/* keyed once here; EVP_MAC_init with no key starts over with this one */
	if (!s->ctx || !EVP_MAC_init(s->ctx, key, key_len, params)) {
		cache_signer_free(s);
		return NULL;
	}
	return s;
}

void cache_signer_free(CacheSigner *s)
{
	if (!s)
		return;
	EVP_MAC_CTX_free(s->ctx);
	EVP_MAC_free(s->mac);
	free(s);
}

static bool mac_of(CacheSigner *s, const char *redis_key, size_t redis_key_len, const uint8_t *entry,
		   size_t entry_len, uint8_t out[CACHE_ENTRY_MAC_LEN])
{
	size_t n = 0;
	return EVP_MAC_init(s->ctx, NULL, 0, NULL) &&
	       EVP_MAC_update(s->ctx, (const unsigned char *)MAC_CONTEXT, sizeof MAC_CONTEXT) &&
	       EVP_MAC_update(s->ctx, (const unsigned char *)redis_key, redis_key_len) &&
	       EVP_MAC_update(s->ctx, (const unsigned char *)"", 1) && EVP_MAC_update(s->ctx, entry, entry_len) &&
	       EVP_MAC_final(s->ctx, out, &n, CACHE_ENTRY_MAC_LEN) && n == CACHE_ENTRY_MAC_LEN;
}

bool cache_signer_wrap(CacheSigner *s, const char *redis_key, size_t redis_key_len, const uint8_t *entry,
		       size_t entry_len, Buf *out)
{
	uint8_t tag[CACHE_ENTRY_MAC_LEN];
	if (!mac_of(s, redis_key, redis_key_len, entry, entry_len, tag))
		return false;
	buf_append(out, tag, sizeof tag);
	buf_append(out, entry, entry_len);
	return true;
}

bool cache_signer_unwrap(CacheSigner *s, const char *redis_key, size_t redis_key_len, const uint8_t *value,
			 size_t value_len, const uint8_t **entry, size_t *entry_len)
{
	uint8_t tag[CACHE_ENTRY_MAC_LEN];
	if (value_len < CACHE_ENTRY_MAC_LEN ||
	    !mac_of(s, redis_key, redis_key_len, value + CACHE_ENTRY_MAC_LEN, value_len - CACHE_ENTRY_MAC_LEN, tag) ||
	    CRYPTO_memcmp(tag, value, CACHE_ENTRY_MAC_LEN) != 0)
		return false;
	*entry = value + CACHE_ENTRY_MAC_LEN;
	*entry_len = value_len - CACHE_ENTRY_MAC_LEN;
	return true;
}
