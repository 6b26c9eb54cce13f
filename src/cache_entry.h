/*
 * cache_entry — the result cache's entry format, its validation, and the authentication of the
 * entries pgrelay keeps in Redis (L2). Pure: no sockets, no clock, no globals (OpenSSL's HMAC).
 *
 * Owns: the entry layout (below; little-endian, the same in L1 and in Redis), the structural check
 * of an entry read from Redis against what the lookup expects (header, names, and the reply: one
 * RowDescription when the statement's form produces one, DataRows that agree with it, exactly one
 * CommandComplete "SELECT n" at the end, nothing else), and the L2 envelope: a 32-byte
 * HMAC-SHA256 tag, then the entry. The tag covers the Redis key the entry is stored under, so an
 * entry copied to another key (another statement, role or database) is refused.
 *
 *     entry = magic u32 | count u32 | count x version u64 | names_len u16 | names | reply
 *     names = service \0, then schema \0 table \0 per dependency (count - 1 of them)
 *     L2 value = HMAC-SHA256(signing key, "pgrelay-l2-v1\0" | Redis key | \0 | entry) | entry
 *
 * Does not own: keys, versions, stores (cache.c, cache_l1.c), what a reply means.
 */
#ifndef PGRELAY_CACHE_ENTRY_H
#define PGRELAY_CACHE_ENTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define CACHE_ENTRY_MAGIC 0x32726770u /* "pgr2" as little-endian bytes */
#define CACHE_ENTRY_MAX_VERSIONS 33   /* the service's + CACHE_MAX_TABLES dependencies */
#define CACHE_ENTRY_MAC_LEN 32
#define CACHE_ENTRY_MIN_KEY 32        /* bytes of a signing key, at least */
/* An entry's bytes besides its reply, at most: header, versions, names (u16 length) */
#define CACHE_ENTRY_MAX_OVERHEAD ((size_t)8 + 8 * CACHE_ENTRY_MAX_VERSIONS + 2 + 65535)

/* The form of the statement an entry answers, which decides whether its reply starts with a
 * RowDescription. */
typedef enum CacheShape {
	CACHE_SHAPE_UNKNOWN = 0,  /* RowDescription optional */
	CACHE_SHAPE_QUERY = 'Q',  /* simple Query: RowDescription required */
	CACHE_SHAPE_DESCRIBED = 'D', /* extended batch with Describe of the portal: required */
	CACHE_SHAPE_EXECUTE = 'E',   /* extended batch without Describe: none */
} CacheShape;

/* An entry's parts, pointing into the blob. */
typedef struct CacheEntryView {
	uint32_t count;           /* versions */
	const uint8_t *versions;  /* count x u64 little-endian: cache_entry_version */
	const char *names;        /* names_len bytes */
	size_t names_len;
	const uint8_t *reply;
	size_t reply_len;
} CacheEntryView;

/* Appends an entry to out. */
void cache_entry_build(Buf *out, const uint64_t *versions, size_t count, const void *names, size_t names_len,
		       const void *reply, size_t reply_len);

/* Reads the header (magic, count within 1..CACHE_ENTRY_MAX_VERSIONS, the names within the blob).
 * False when it is malformed. Does not look at the reply. */
bool cache_entry_parse(const uint8_t *blob, size_t len, CacheEntryView *out);

uint64_t cache_entry_version(const CacheEntryView *e, size_t i);

/* Whether the entry's versions are exactly versions[0..n). */
bool cache_entry_versions_equal(const CacheEntryView *e, const uint64_t *versions, size_t n);

/*
 * The full check of an entry read from outside (Redis): the header; exactly `count` versions;
 * names byte for byte equal to want_names (what this lookup expects: its service and
 * dependencies); and the reply (cache_entry_check_reply). NULL when it passes, else why not (a
 * static string).
 */
const char *cache_entry_check(const uint8_t *blob, size_t len, size_t count, const void *want_names,
			      size_t want_names_len, CacheShape shape);

/*
 * A reply as pgrelay stores one: [RowDescription] DataRow* CommandComplete. RowDescription:
 * required for QUERY and DESCRIBED, absent for EXECUTE, optional for UNKNOWN; well-formed (field
 * count 0..1664, each field's name, OIDs, sizes, format 0 or 1, nothing left over). Every DataRow
 * has the RowDescription's field count (or, without one, the first DataRow's), and column lengths
 * (-1 for NULL) that add up to its length exactly. Exactly one CommandComplete, the last message,
 * "SELECT n" with n the number of DataRows. Nothing else. NULL when it passes, else why not.
 */
const char *cache_entry_check_reply(const uint8_t *reply, size_t len, CacheShape shape);

/* HMAC-SHA256 keyed once, for signing and verifying L2 entries. */
typedef struct CacheSigner CacheSigner;

/* NULL when key_len < CACHE_ENTRY_MIN_KEY or OpenSSL fails. The key is copied. */
CacheSigner *cache_signer_new(const void *key, size_t key_len);
void cache_signer_free(CacheSigner *s);

/* The L2 value of entry under redis_key: the tag, then the entry, appended to out. False if OpenSSL
 * failed (nothing appended). */
bool cache_signer_wrap(CacheSigner *s, const char *redis_key, size_t redis_key_len, const uint8_t *entry,
		       size_t entry_len, Buf *out);

/* The entry inside an L2 value read under redis_key, when its tag is right (constant-time compare):
 * *entry and *entry_len point into value. False otherwise. */
bool cache_signer_unwrap(CacheSigner *s, const char *redis_key, size_t redis_key_len, const uint8_t *value,
			 size_t value_len, const uint8_t **entry, size_t *entry_len);

#endif
