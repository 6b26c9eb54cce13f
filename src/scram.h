/*
 * scram — password authentication as PostgreSQL does it, on both sides of the proxy:
 * SCRAM-SHA-256 (RFC 5802 / RFC 7677, no channel binding) and md5, with OpenSSL's primitives.
 *
 * Owns: parsing and building SCRAM verifiers, the server role (pgrelay checking a client), the
 * client role (pgrelay logging in to PostgreSQL), and md5 hashing. Pure functions over strings:
 * no sockets, no event loop, no logging. Secrets never leave this module except as the protocol
 * messages they produce.
 */
#ifndef PGRELAY_SCRAM_H
#define PGRELAY_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SCRAM_KEY_LEN 32
#define SCRAM_MAX_SALT_LEN 64
#define SCRAM_DEFAULT_ITERATIONS 4096
/* Bytes of the secret that derives per-user salts and the mock exchange of unknown users. */
#define SCRAM_SALT_SECRET_LEN 32
#define SCRAM_DERIVED_SALT_LEN 16
/*
 * The largest iteration count pgrelay accepts from a server (as a SCRAM client). PostgreSQL's
 * default (scram_iterations) is 4096; each iteration costs about a microsecond on the event loop,
 * so 100000 bounds one server login to about 0.1 s of CPU. Larger counts are refused.
 */
#define SCRAM_CLIENT_MAX_ITERATIONS 100000

/* A parsed "SCRAM-SHA-256$<iterations>:<salt b64>$<StoredKey b64>:<ServerKey b64>". */
typedef struct ScramVerifier {
	int iterations;
	uint8_t salt[SCRAM_MAX_SALT_LEN];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
} ScramVerifier;

/* True if text looks like a SCRAM-SHA-256 verifier (prefix check only). */
bool scram_is_verifier(const char *text);
/* Parses a verifier; false if malformed. */
bool scram_parse_verifier(const char *text, ScramVerifier *out);
/* Derives a verifier from a plain password with a fresh random salt (16 bytes). */
bool scram_verifier_from_password(const char *password, int iterations, ScramVerifier *out);
/* Derives a verifier from a plain password with the given salt. */
bool scram_verifier_from_password_salt(const char *password, int iterations, const uint8_t *salt, size_t salt_len,
				       ScramVerifier *out);
/* The salt of user: HMAC-SHA-256(secret, "pgrelay-scram-salt" NUL user), first 16 bytes. The same
 * derivation serves users whose configured password is plain text and unknown users, so that the
 * salt an unauthenticated client sees does not tell one from the other. */
bool scram_user_salt(const uint8_t secret[SCRAM_SALT_SECRET_LEN], const char *user,
		     uint8_t salt[SCRAM_DERIVED_SALT_LEN]);
/* The verifier of a mock exchange for a user pgrelay does not know (as PostgreSQL's mock
 * authentication): scram_user_salt's salt, the default iteration count, random keys. Use it with
 * scram_server_init_mock: no proof is ever accepted. */
bool scram_mock_verifier(const uint8_t secret[SCRAM_SALT_SECRET_LEN], const char *user, ScramVerifier *out);
/* Formats a verifier as PostgreSQL stores it; returns a malloc'd string. */
char *scram_verifier_format(const ScramVerifier *v);

/*
 * Verifiers derived from plain-text passwords (PBKDF2 is slow: once per user and password),
 * salted with scram_user_salt(secret, user); secret also salts unknown users' mock exchanges so
 * that both look alike. The caller fills secret with random bytes once.
 */
typedef struct ScramCache {
	struct ScramCacheEntry *entries;
	size_t n;
	uint8_t secret[SCRAM_SALT_SECRET_LEN];
} ScramCache;
/* The verifier for user's plain-text password (cached); NULL if it cannot be derived. */
const ScramVerifier *scram_cache_verifier_for(ScramCache *sc, const char *user, const char *password);
/* Forgets every cached verifier (the secret stays). */
void scram_cache_clear(ScramCache *sc);

/* ---- server role: pgrelay authenticates a client ---- */
typedef enum {
	SCRAM_SERVER_INIT = 0,
	SCRAM_SERVER_SENT_FIRST,
	SCRAM_SERVER_DONE,
	SCRAM_SERVER_FAILED,
} ScramServerState;

typedef struct ScramServer {
	ScramServerState state;
	ScramVerifier verifier;
	char *client_first_bare; /* malloc'd */
	char *server_first;      /* malloc'd */
	char *nonce;             /* combined client+server nonce, malloc'd */
	char cbind_flag;         /* 'n' or 'y' */
	bool mock;               /* an unknown user: the exchange runs, the proof always fails */
} ScramServer;

void scram_server_init(ScramServer *s, const ScramVerifier *verifier);
/* As scram_server_init, for a mock exchange: every message is checked as in a real one, and the
 * client-final-message always ends with SCRAM_ERR_WRONG_PASSWORD. */
void scram_server_init_mock(ScramServer *s, const ScramVerifier *verifier);
void scram_server_free(ScramServer *s);
/*
 * Takes the client-first-message (the SASLInitialResponse data). On success sets *reply to the
 * malloc'd server-first-message. On failure returns false and sets *err to a static message
 * suitable for an ErrorResponse (malformed message, channel binding requested, ...).
 */
bool scram_server_handle_first(ScramServer *s, const char *msg, size_t len, char **reply, const char **err);
/*
 * Takes the client-final-message. Returns true and sets *reply to the malloc'd
 * server-final-message ("v=...") when the proof is right; false with *err otherwise. A wrong
 * password yields err == SCRAM_ERR_WRONG_PASSWORD (compare by pointer).
 */
bool scram_server_handle_final(ScramServer *s, const char *msg, size_t len, char **reply, const char **err);
extern const char SCRAM_ERR_WRONG_PASSWORD[];

/* ---- client role: pgrelay logs in to a PostgreSQL server ---- */
typedef enum {
	SCRAM_CLIENT_INIT = 0,
	SCRAM_CLIENT_SENT_FIRST,
	SCRAM_CLIENT_SENT_FINAL,
	SCRAM_CLIENT_DONE,
} ScramClientState;

typedef struct ScramClient {
	ScramClientState state;
	char *password;          /* malloc'd copy, wiped on free */
	char *client_nonce;      /* malloc'd */
	char *client_first_bare; /* malloc'd */
	uint8_t server_signature[SCRAM_KEY_LEN];
} ScramClient;

void scram_client_init(ScramClient *c, const char *password);
void scram_client_free(ScramClient *c);
/* Builds the client-first-message ("n,,n=,r=<nonce>"), malloc'd. */
char *scram_client_first(ScramClient *c);
/* Takes the server-first-message, returns the malloc'd client-final-message, or NULL with *err
 * (an iteration count above SCRAM_CLIENT_MAX_ITERATIONS is refused before any hashing). */
char *scram_client_handle_server_first(ScramClient *c, const char *msg, size_t len, const char **err);
/* Checks the server-final-message's signature. */
bool scram_client_verify_server_final(ScramClient *c, const char *msg, size_t len, const char **err);
/* True once the server-final-message's signature was verified: only then may a server's
 * AuthenticationOk end a SCRAM exchange (a server that skips it has not proved it knows the
 * password). */
bool scram_client_done(const ScramClient *c);

/* ---- md5 ---- */
/* True if text is "md5" followed by 32 lowercase hex digits. */
bool scram_is_md5_hash(const char *text);
/* out = "md5" + hex(md5(password || user)); out must hold 36 bytes. */
void scram_md5_password_hash(const char *user, const char *password, char out[36]);
/* out = "md5" + hex(md5(hex_part_of(md5hash) || salt)); md5hash as built above. */
void scram_md5_salted(const char *md5hash, const uint8_t salt[4], char out[36]);
/*
 * Checks a client's md5 response against the stored secret (plain password or md5 hash) for
 * that user and salt, in constant time.
 */
bool scram_md5_check(const char *stored_secret, const char *user, const uint8_t salt[4], const char *response);

/* Constant-time comparison. */
bool scram_secure_equal(const void *a, const void *b, size_t len);

#endif
