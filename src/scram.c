/*
 * scram — SCRAM-SHA-256 (RFC 5802 / RFC 7677, no channel binding) and md5 password
 * authentication, byte-compatible with PostgreSQL 15, built on OpenSSL 3 primitives only.
 *
 * Passwords are used as raw bytes: PostgreSQL runs SASLprep over the password first, which is
 * the identity for ASCII passwords and for passwords that are already in normalized form (and
 * PostgreSQL itself falls back to the raw bytes when the password is not valid UTF-8 or contains
 * prohibited characters). Non-normalized Unicode passwords would derive different keys here.
 *
 * Every protocol message arrives as (pointer, length) and is not NUL-terminated: it is checked
 * for embedded NUL bytes and copied into a NUL-terminated buffer before any parsing.
 */
#include "scram.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#define SCRAM_PREFIX "SCRAM-SHA-256$"
#define SCRAM_RAW_NONCE_LEN 18      /* as PostgreSQL: 18 random bytes -> 24 base64 chars */
#define SCRAM_DEFAULT_SALT_LEN 16   /* as PostgreSQL's scram_sha_256 default */
#define SCRAM_MAX_MESSAGE_LEN 65536 /* far above anything a real peer sends */

const char SCRAM_ERR_WRONG_PASSWORD[] = "password authentication failed";

static const char SERR_OOM[] = "out of memory";
static const char SERR_CRYPTO[] = "SCRAM cryptographic operation failed";
static const char SERR_STATE[] = "SCRAM message received in an unexpected state";
static const char SERR_MALFORMED[] = "malformed SCRAM message";
static const char SERR_TOO_LONG[] = "malformed SCRAM message (message too long)";
static const char SERR_NUL[] = "malformed SCRAM message (unexpected NUL byte)";

/* ------------------------------------------------------------------------------------------ */
/* small helpers                                                                              */
/* ------------------------------------------------------------------------------------------ */

static char *dup_mem(const char *src, size_t len)
{
	char *out = malloc(len + 1);
	if (!out)
		return NULL;
	memcpy(out, src, len);
	out[len] = '\0';
	return out;
}

static char *dup_str(const char *src)
{
	return dup_mem(src, strlen(src));
}

/* Frees a heap string after wiping it. */
static void free_secret_str(char *p)
{
	if (p) {
		OPENSSL_cleanse(p, strlen(p));
		free(p);
	}
}

static void set_err(const char **err, const char *msg)
{
	if (err)
		*err = msg;
}

/*
 * Copies a length-delimited protocol message into a NUL-terminated heap buffer, refusing
 * embedded NULs and absurd sizes.
 */
static char *copy_message(const char *msg, size_t len, const char **err)
{
	if (!msg && len > 0) {
		set_err(err, SERR_MALFORMED);
		return NULL;
	}
	if (len > SCRAM_MAX_MESSAGE_LEN) {
		set_err(err, SERR_TOO_LONG);
		return NULL;
	}
	if (len > 0 && memchr(msg, '\0', len) != NULL) {
		set_err(err, SERR_NUL);
		return NULL;
	}
	char *out = dup_mem(len > 0 ? msg : "", len);
	if (!out)
		set_err(err, SERR_OOM);
	return out;
}

/* Base64 (RFC 4648, with padding) of in[0..len), malloc'd and NUL-terminated. */
static char *b64_encode(const uint8_t *in, size_t len)
{
	if (len > (size_t)INT_MAX / 2)
		return NULL;
	size_t outlen = 4 * ((len + 2) / 3);
	char *out = malloc(outlen + 1);
	if (!out)
		return NULL;
	int n = EVP_EncodeBlock((unsigned char *)out, in, (int)len);
	if (n < 0 || (size_t)n != outlen) {
		free(out);
		return NULL;
	}
	out[outlen] = '\0';
	return out;
}

/* The 6-bit value of a base64 alphabet character, or -1. */
static int b64_value(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Strict base64 decoding: length a multiple of 4, alphabet characters only, at most two '='
 * and only at the very end, no whitespace, and the unused bits before the padding zero (so a
 * value has exactly one accepted encoding). EVP_DecodeBlock always returns 3 bytes per 4-char
 * group (padding bytes included as zeros), so the real length is computed from the '=' count.
 * Writes at most outcap bytes; false if the text is malformed or decodes to more than outcap.
 */
static bool b64_decode(const char *in, size_t inlen, uint8_t *out, size_t outcap, size_t *outlen)
{
	if (inlen % 4 != 0 || inlen > (size_t)INT_MAX)
		return false;
	size_t pad = 0;
	if (inlen >= 4 && in[inlen - 1] == '=') {
		pad = 1;
		if (in[inlen - 2] == '=')
			pad = 2;
	}
	/* Everything before the padding must be an alphabet character: no '=' in the middle. */
	for (size_t i = 0; i < inlen - pad; i++)
		if (b64_value(in[i]) < 0)
			return false;
	/* "xx==" carries 8 bits of 12, "xxx=" 16 of 18: the rest must be zero. */
	if (pad == 2 && (b64_value(in[inlen - 3]) & 0x0F) != 0)
		return false;
	if (pad == 1 && (b64_value(in[inlen - 2]) & 0x03) != 0)
		return false;
	size_t full = inlen / 4 * 3;
	size_t real = full - pad;
	if (real > outcap)
		return false;
	if (inlen == 0) {
		*outlen = 0;
		return true;
	}
	uint8_t *tmp = malloc(full);
	if (!tmp)
		return false;
	int n = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)inlen);
	bool ok = n >= 0 && (size_t)n == full;
	if (ok) {
		memcpy(out, tmp, real);
		*outlen = real;
	}
	OPENSSL_cleanse(tmp, full);
	free(tmp);
	return ok;
}

/* Base64 of SCRAM_RAW_NONCE_LEN fresh random bytes (a nonce), malloc'd. */
static char *random_nonce(void)
{
	uint8_t raw[SCRAM_RAW_NONCE_LEN];
	if (RAND_bytes(raw, sizeof raw) != 1)
		return NULL;
	char *out = b64_encode(raw, sizeof raw);
	OPENSSL_cleanse(raw, sizeof raw);
	return out;
}

static bool sha256(const void *data, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int mdlen = 0;
	if (EVP_Digest(data, len, out, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != SCRAM_KEY_LEN)
		return false;
	return true;
}

static bool hmac_sha256(const uint8_t key[SCRAM_KEY_LEN], const void *data, size_t len,
			uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int mdlen = 0;
	if (!HMAC(EVP_sha256(), key, SCRAM_KEY_LEN, data, len, out, &mdlen) || mdlen != SCRAM_KEY_LEN)
		return false;
	return true;
}

static bool salted_password(const char *password, const uint8_t *salt, size_t salt_len,
			    int iterations, uint8_t out[SCRAM_KEY_LEN])
{
	size_t plen = strlen(password);
	if (plen > (size_t)INT_MAX || salt_len > (size_t)INT_MAX || iterations < 1)
		return false;
	return PKCS5_PBKDF2_HMAC(password, (int)plen, salt, (int)salt_len, iterations, EVP_sha256(),
				 SCRAM_KEY_LEN, out) == 1;
}

/* StoredKey and ServerKey from SaltedPassword; ClientKey optionally returned. */
static bool derive_keys(const uint8_t salted[SCRAM_KEY_LEN], uint8_t client_key[SCRAM_KEY_LEN],
			uint8_t stored_key[SCRAM_KEY_LEN], uint8_t server_key[SCRAM_KEY_LEN])
{
	static const char ck[] = "Client Key";
	static const char sk[] = "Server Key";
	return hmac_sha256(salted, ck, strlen(ck), client_key) && sha256(client_key, SCRAM_KEY_LEN, stored_key) &&
	       hmac_sha256(salted, sk, strlen(sk), server_key);
}

/* client-first-bare "," server-first "," client-final-without-proof, malloc'd. */
static char *auth_message(const char *client_first_bare, const char *server_first,
			  const char *client_final_wo_proof, size_t final_len)
{
	size_t a = strlen(client_first_bare), b = strlen(server_first);
	char *out = malloc(a + b + final_len + 3);
	if (!out)
		return NULL;
	memcpy(out, client_first_bare, a);
	out[a] = ',';
	memcpy(out + a + 1, server_first, b);
	out[a + 1 + b] = ',';
	memcpy(out + a + b + 2, client_final_wo_proof, final_len);
	out[a + b + 2 + final_len] = '\0';
	return out;
}

/* printable = %x21-2B / %x2D-7E (RFC 5802: no comma). Non-empty. */
static bool is_printable_nonce(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c < 0x21 || c > 0x7E || c == ',')
			return false;
	}
	return true;
}

static bool is_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/*
 * Reads "<attr>=<value>" at *p (a NUL-terminated buffer we own), NUL-terminates the value in
 * place and advances *p past the following comma (or to the terminating NUL). A comma that
 * ends the message is refused (stricter than PostgreSQL, which ignores it). attr == 0
 * accepts any letter and stores it in *found. Returns the value or NULL.
 */
static char *read_attr(char **p, char attr, char *found)
{
	char *s = *p;
	if (attr ? *s != attr : !is_alpha(*s))
		return NULL;
	if (found)
		*found = *s;
	if (s[1] != '=')
		return NULL;
	char *val = s + 2;
	char *end = strchr(val, ',');
	if (end) {
		if (end[1] == '\0')
			return NULL; /* a trailing comma must introduce another attribute */
		*end = '\0';
		*p = end + 1;
	} else {
		*p = val + strlen(val);
	}
	return val;
}

/* Parses a positive decimal int (no sign, no spaces, no trailing garbage). */
static bool parse_positive_int(const char *s, long max, int *out)
{
	if (*s < '0' || *s > '9')
		return false;
	errno = 0;
	char *end = NULL;
	long v = strtol(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < 1 || v > max || v > INT_MAX)
		return false;
	*out = (int)v;
	return true;
}

bool scram_secure_equal(const void *a, const void *b, size_t len)
{
	if (len == 0)
		return true;
	return CRYPTO_memcmp(a, b, len) == 0;
}

/* ------------------------------------------------------------------------------------------ */
/* verifiers                                                                                  */
/* ------------------------------------------------------------------------------------------ */

bool scram_is_verifier(const char *text)
{
	return text && strncmp(text, SCRAM_PREFIX, strlen(SCRAM_PREFIX)) == 0;
}

bool scram_parse_verifier(const char *text, ScramVerifier *out)
{
	if (!text || !out || !scram_is_verifier(text))
		return false;
	char *buf = dup_str(text + strlen(SCRAM_PREFIX));
	if (!buf)
		return false;
	ScramVerifier v;
	memset(&v, 0, sizeof v);
	bool ok = false;

	/* <iterations>:<salt>$<stored>:<server> */
	char *iter_s = buf;
	char *colon1 = strchr(iter_s, ':');
	if (!colon1)
		goto done;
	*colon1 = '\0';
	char *salt_s = colon1 + 1;
	char *dollar = strchr(salt_s, '$');
	if (!dollar)
		goto done;
	*dollar = '\0';
	char *stored_s = dollar + 1;
	char *colon2 = strchr(stored_s, ':');
	if (!colon2)
		goto done;
	*colon2 = '\0';
	char *server_s = colon2 + 1;

	if (!parse_positive_int(iter_s, INT_MAX, &v.iterations))
		goto done;
	if (!b64_decode(salt_s, strlen(salt_s), v.salt, sizeof v.salt, &v.salt_len) || v.salt_len == 0)
		goto done;
	size_t klen = 0;
	if (!b64_decode(stored_s, strlen(stored_s), v.stored_key, SCRAM_KEY_LEN, &klen) ||
	    klen != SCRAM_KEY_LEN)
		goto done;
	if (!b64_decode(server_s, strlen(server_s), v.server_key, SCRAM_KEY_LEN, &klen) ||
	    klen != SCRAM_KEY_LEN)
		goto done;
	*out = v;
	ok = true;
done:
	OPENSSL_cleanse(&v, sizeof v);
	OPENSSL_cleanse(buf, strlen(text + strlen(SCRAM_PREFIX)));
	free(buf);
	return ok;
}

bool scram_verifier_from_password_salt(const char *password, int iterations, const uint8_t *salt, size_t salt_len,
				       ScramVerifier *out)
{
	if (!password || !out || iterations < 1 || !salt || salt_len == 0 || salt_len > SCRAM_MAX_SALT_LEN)
		return false;
	ScramVerifier v;
	uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN];
	memset(&v, 0, sizeof v);
	v.iterations = iterations;
	v.salt_len = salt_len;
	memcpy(v.salt, salt, salt_len);
	bool ok = salted_password(password, v.salt, v.salt_len, iterations, salted) &&
		  derive_keys(salted, client_key, v.stored_key, v.server_key);
	if (ok)
		*out = v;
	OPENSSL_cleanse(&v, sizeof v);
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(client_key, sizeof client_key);
	return ok;
}

bool scram_verifier_from_password(const char *password, int iterations, ScramVerifier *out)
{
	uint8_t salt[SCRAM_DEFAULT_SALT_LEN];
	if (RAND_bytes(salt, (int)sizeof salt) != 1)
		return false;
	return scram_verifier_from_password_salt(password, iterations, salt, sizeof salt, out);
}

bool scram_user_salt(const uint8_t secret[SCRAM_SALT_SECRET_LEN], const char *user,
		     uint8_t salt[SCRAM_DERIVED_SALT_LEN])
{
	static const char label[] = "pgrelay-scram-salt"; /* sizeof includes the NUL separator */
	if (!secret || !user)
		return false;
	size_t ul = strlen(user);
	uint8_t *msg = malloc(sizeof label + ul);
	uint8_t mac[SCRAM_KEY_LEN];
	unsigned int maclen = 0;
	if (!msg)
		return false;
	memcpy(msg, label, sizeof label);
	memcpy(msg + sizeof label, user, ul);
	bool ok = HMAC(EVP_sha256(), secret, SCRAM_SALT_SECRET_LEN, msg, sizeof label + ul, mac, &maclen) &&
		  maclen == SCRAM_KEY_LEN;
	if (ok)
		memcpy(salt, mac, SCRAM_DERIVED_SALT_LEN);
	OPENSSL_cleanse(mac, sizeof mac);
	free(msg);
	return ok;
}

bool scram_mock_verifier(const uint8_t secret[SCRAM_SALT_SECRET_LEN], const char *user, ScramVerifier *out)
{
	if (!out)
		return false;
	ScramVerifier v;
	memset(&v, 0, sizeof v);
	v.iterations = SCRAM_DEFAULT_ITERATIONS;
	v.salt_len = SCRAM_DERIVED_SALT_LEN;
	bool ok = scram_user_salt(secret, user, v.salt) && RAND_bytes(v.stored_key, SCRAM_KEY_LEN) == 1 &&
		  RAND_bytes(v.server_key, SCRAM_KEY_LEN) == 1;
	if (ok)
		*out = v;
	OPENSSL_cleanse(&v, sizeof v);
	return ok;
}

char *scram_verifier_format(const ScramVerifier *v)
{
	if (!v || v->iterations < 1 || v->salt_len == 0 || v->salt_len > SCRAM_MAX_SALT_LEN)
		return NULL;
	char *salt = b64_encode(v->salt, v->salt_len);
	char *stored = b64_encode(v->stored_key, SCRAM_KEY_LEN);
	char *server = b64_encode(v->server_key, SCRAM_KEY_LEN);
	char *out = NULL;
	if (salt && stored && server) {
		int n = snprintf(NULL, 0, SCRAM_PREFIX "%d:%s$%s:%s", v->iterations, salt, stored, server);
		if (n > 0) {
			out = malloc((size_t)n + 1);
			if (out)
				snprintf(out, (size_t)n + 1, SCRAM_PREFIX "%d:%s$%s:%s", v->iterations, salt,
					 stored, server);
		}
	}
	free(salt);
	free_secret_str(stored);
	free_secret_str(server);
	return out;
}

/* ------------------------------------------------------------------------------------------ */
/* server role                                                                                */
/* ------------------------------------------------------------------------------------------ */

void scram_server_init(ScramServer *s, const ScramVerifier *verifier)
{
	memset(s, 0, sizeof *s);
	s->state = SCRAM_SERVER_INIT;
	if (verifier) {
		s->verifier = *verifier;
		return;
	}
	/*
	 * No verifier: a mock exchange with a random salt (scram_server_init_mock with
	 * scram_mock_verifier's verifier makes repeated attempts look like a real user's).
	 */
	s->mock = true;
	s->verifier.iterations = SCRAM_DEFAULT_ITERATIONS;
	s->verifier.salt_len = SCRAM_DEFAULT_SALT_LEN;
	if (RAND_bytes(s->verifier.salt, (int)s->verifier.salt_len) != 1 ||
	    RAND_bytes(s->verifier.stored_key, SCRAM_KEY_LEN) != 1 ||
	    RAND_bytes(s->verifier.server_key, SCRAM_KEY_LEN) != 1)
		s->state = SCRAM_SERVER_FAILED;
}

void scram_server_init_mock(ScramServer *s, const ScramVerifier *verifier)
{
	scram_server_init(s, verifier);
	s->mock = true;
}

void scram_server_free(ScramServer *s)
{
	if (!s)
		return;
	free_secret_str(s->client_first_bare);
	free_secret_str(s->server_first);
	free_secret_str(s->nonce);
	OPENSSL_cleanse(s, sizeof *s);
	s->client_first_bare = NULL;
	s->server_first = NULL;
	s->nonce = NULL;
}

static bool server_fail(ScramServer *s, const char **err, const char *msg)
{
	s->state = SCRAM_SERVER_FAILED;
	set_err(err, msg);
	return false;
}

/*
 * Parses client-first-message in buf (cut up in place): records the channel-binding flag and
 * client-first-message-bare in s, points *client_nonce into buf. Returns NULL, or the error.
 */
static const char *parse_client_first(ScramServer *s, char *buf, char **client_nonce)
{
	char *p = buf;

	/* gs2-cbind-flag = ("p=" cb-name) / "n" / "y" */
	switch (*p) {
	case 'n':
	case 'y':
		s->cbind_flag = *p;
		p++;
		break;
	case 'p':
		return "channel binding is not supported by pgrelay";
	case '\0':
		return "malformed SCRAM message (empty client-first-message)";
	default:
		return "malformed SCRAM message (unexpected channel-binding flag)";
	}
	if (*p != ',')
		return "malformed SCRAM message (unexpected channel-binding flag)";
	p++;
	/* [authzid] "," — PostgreSQL does not support authorization identities. */
	if (*p == 'a')
		return "client uses authorization identity, but it is not supported";
	if (*p != ',')
		return "malformed SCRAM message (unexpected attribute in client-first-message)";
	p++;

	/* client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions] */
	free_secret_str(s->client_first_bare);
	s->client_first_bare = dup_str(p);
	if (!s->client_first_bare)
		return SERR_OOM;
	if (*p == 'm')
		return "client requires an unsupported SCRAM extension";
	/* The user name is ignored: PostgreSQL uses the one from the startup packet. */
	if (!read_attr(&p, 'n', NULL))
		return "malformed SCRAM message (expected username attribute)";
	*client_nonce = read_attr(&p, 'r', NULL);
	if (!*client_nonce)
		return "malformed SCRAM message (expected nonce attribute)";
	if (!is_printable_nonce(*client_nonce))
		return "malformed SCRAM message (invalid characters in SCRAM nonce)";
	/* Optional extensions: syntactically checked, otherwise ignored. */
	while (*p) {
		if (!read_attr(&p, 0, NULL))
			return "malformed SCRAM message (invalid attribute in client-first-message)";
	}
	return NULL;
}

/*
 * Draws the server nonce and stores the combined nonce and server-first-message in s; *reply
 * gets a malloc'd copy of the message. Returns NULL, or the error.
 */
static const char *make_server_first(ScramServer *s, const char *client_nonce, char **reply)
{
	const char *e = NULL;
	char *server_nonce = random_nonce();
	char *salt_b64 = b64_encode(s->verifier.salt, s->verifier.salt_len);
	if (!server_nonce || !salt_b64) {
		e = SERR_CRYPTO;
		goto done;
	}
	size_t cn = strlen(client_nonce), sn = strlen(server_nonce);
	free_secret_str(s->nonce);
	s->nonce = malloc(cn + sn + 1);
	if (!s->nonce) {
		e = SERR_OOM;
		goto done;
	}
	memcpy(s->nonce, client_nonce, cn);
	memcpy(s->nonce + cn, server_nonce, sn + 1);

	int n = snprintf(NULL, 0, "r=%s,s=%s,i=%d", s->nonce, salt_b64, s->verifier.iterations);
	if (n < 0) {
		e = SERR_OOM;
		goto done;
	}
	free_secret_str(s->server_first);
	s->server_first = malloc((size_t)n + 1);
	char *out = malloc((size_t)n + 1);
	if (!s->server_first || !out) {
		free(out);
		e = SERR_OOM;
		goto done;
	}
	snprintf(s->server_first, (size_t)n + 1, "r=%s,s=%s,i=%d", s->nonce, salt_b64, s->verifier.iterations);
	memcpy(out, s->server_first, (size_t)n + 1);
	*reply = out;

done:
	free(server_nonce);
	free(salt_b64);
	return e;
}

bool scram_server_handle_first(ScramServer *s, const char *msg, size_t len, char **reply, const char **err)
{
	if (reply)
		*reply = NULL;
	if (!s || !reply) {
		set_err(err, SERR_STATE);
		return false;
	}
	if (s->state != SCRAM_SERVER_INIT)
		return server_fail(s, err, SERR_STATE);

	const char *e = NULL;
	char *buf = copy_message(msg, len, &e);
	if (!buf)
		return server_fail(s, err, e);
	char *client_nonce = NULL;
	e = parse_client_first(s, buf, &client_nonce);
	if (!e)
		e = make_server_first(s, client_nonce, reply);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (e)
		return server_fail(s, err, e);
	s->state = SCRAM_SERVER_SENT_FIRST;
	return true;
}

/*
 * Parses client-final-message in buf (cut up in place) and checks its channel binding and nonce
 * against s: decodes the proof into proof, sets *wo_proof_len to the length of
 * client-final-message-without-proof. Returns NULL, or the error.
 */
static const char *parse_client_final(const ScramServer *s, char *buf, uint8_t proof[SCRAM_KEY_LEN],
				      size_t *wo_proof_len)
{
	char *p = buf;

	/* channel-binding: base64 of the gs2 header the client sent ("n,," or "y,,") */
	char *cbind = read_attr(&p, 'c', NULL);
	if (!cbind)
		return "malformed SCRAM message (expected channel-binding attribute)";
	const char *expected_cbind = s->cbind_flag == 'y' ? "eSws" : "biws";
	if (strcmp(cbind, expected_cbind) != 0)
		return "unexpected SCRAM channel-binding attribute in client-final-message";
	char *nonce = read_attr(&p, 'r', NULL);
	if (!nonce)
		return "malformed SCRAM message (expected nonce attribute)";
	if (strcmp(nonce, s->nonce) != 0)
		return "malformed SCRAM message (nonce does not match)";
	/* [extensions ","] proof — the proof is the last attribute. */
	char *proof_b64;
	for (;;) {
		if (!*p)
			return "malformed SCRAM message (missing proof in client-final-message)";
		/* The comma that precedes this attribute ends client-final-without-proof. */
		*wo_proof_len = (size_t)(p - buf) - 1;
		char attr = 0;
		char *val = read_attr(&p, 0, &attr);
		if (!val)
			return "malformed SCRAM message (invalid attribute in client-final-message)";
		if (attr == 'p') {
			proof_b64 = val;
			break;
		}
	}
	if (*p)
		return "malformed SCRAM message (garbage at end of client-final-message)";
	size_t proof_len = 0;
	if (!b64_decode(proof_b64, strlen(proof_b64), proof, SCRAM_KEY_LEN, &proof_len) ||
	    proof_len != SCRAM_KEY_LEN)
		return "malformed SCRAM message (malformed proof in client-final-message)";
	return NULL;
}

/*
 * Checks the client's proof over authmsg against the verifier's StoredKey (a mock exchange never
 * matches). Returns NULL when it matches, or the error.
 */
static const char *check_client_proof(const ScramServer *s, const uint8_t proof[SCRAM_KEY_LEN],
				      const char *authmsg)
{
	const char *e = NULL;
	uint8_t sig[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	if (!hmac_sha256(s->verifier.stored_key, authmsg, strlen(authmsg), sig)) {
		e = SERR_CRYPTO;
		goto done;
	}
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		client_key[i] = proof[i] ^ sig[i];
	if (!sha256(client_key, SCRAM_KEY_LEN, stored)) {
		e = SERR_CRYPTO;
		goto done;
	}
	if (CRYPTO_memcmp(stored, s->verifier.stored_key, SCRAM_KEY_LEN) != 0 || s->mock)
		e = SCRAM_ERR_WRONG_PASSWORD;

done:
	OPENSSL_cleanse(sig, sizeof sig);
	OPENSSL_cleanse(client_key, sizeof client_key);
	OPENSSL_cleanse(stored, sizeof stored);
	return e;
}

/*
 * Builds server-final-message ("v=" and the base64 ServerSignature over authmsg) into *reply,
 * malloc'd. Returns NULL, or the error.
 */
static const char *make_server_final(const ScramServer *s, const char *authmsg, char **reply)
{
	uint8_t server_sig[SCRAM_KEY_LEN];
	if (!hmac_sha256(s->verifier.server_key, authmsg, strlen(authmsg), server_sig)) {
		OPENSSL_cleanse(server_sig, sizeof server_sig);
		return SERR_CRYPTO;
	}
	char *sig_b64 = b64_encode(server_sig, SCRAM_KEY_LEN);
	OPENSSL_cleanse(server_sig, sizeof server_sig);
	char *out = sig_b64 ? malloc(strlen(sig_b64) + 3) : NULL;
	if (!out) {
		free(sig_b64);
		return SERR_OOM;
	}
	out[0] = 'v';
	out[1] = '=';
	memcpy(out + 2, sig_b64, strlen(sig_b64) + 1);
	free(sig_b64);
	*reply = out;
	return NULL;
}

bool scram_server_handle_final(ScramServer *s, const char *msg, size_t len, char **reply, const char **err)
{
	if (reply)
		*reply = NULL;
	if (!s || !reply) {
		set_err(err, SERR_STATE);
		return false;
	}
	if (s->state != SCRAM_SERVER_SENT_FIRST || !s->nonce || !s->server_first || !s->client_first_bare)
		return server_fail(s, err, SERR_STATE);

	const char *e = NULL;
	char *buf = copy_message(msg, len, &e);
	if (!buf)
		return server_fail(s, err, e);
	char *authmsg = NULL;
	uint8_t proof[SCRAM_KEY_LEN];
	size_t wo_proof_len = 0;

	e = parse_client_final(s, buf, proof, &wo_proof_len);
	if (!e) {
		/* The message bytes before ",p=" are intact in the caller's buffer (ours was cut up). */
		authmsg = auth_message(s->client_first_bare, s->server_first, msg, wo_proof_len);
		e = authmsg ? check_client_proof(s, proof, authmsg) : SERR_OOM;
	}
	if (!e)
		e = make_server_final(s, authmsg, reply);

	OPENSSL_cleanse(proof, sizeof proof);
	free_secret_str(authmsg);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (e)
		return server_fail(s, err, e);
	s->state = SCRAM_SERVER_DONE;
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* client role                                                                                */
/* ------------------------------------------------------------------------------------------ */

void scram_client_init(ScramClient *c, const char *password)
{
	memset(c, 0, sizeof *c);
	c->state = SCRAM_CLIENT_INIT;
	c->password = dup_str(password ? password : "");
}

void scram_client_free(ScramClient *c)
{
	if (!c)
		return;
	free_secret_str(c->password);
	free_secret_str(c->client_nonce);
	free_secret_str(c->client_first_bare);
	OPENSSL_cleanse(c, sizeof *c);
	c->password = NULL;
	c->client_nonce = NULL;
	c->client_first_bare = NULL;
}

char *scram_client_first(ScramClient *c)
{
	if (!c || c->state != SCRAM_CLIENT_INIT || !c->password)
		return NULL;
	char *nonce = random_nonce();
	if (!nonce)
		return NULL;
	size_t nl = strlen(nonce);
	char *bare = malloc(nl + 6);      /* "n=,r=" + nonce */
	char *first = malloc(nl + 9);     /* "n,," + bare */
	if (!bare || !first) {
		free(nonce);
		free(bare);
		free(first);
		return NULL;
	}
	memcpy(bare, "n=,r=", 5);
	memcpy(bare + 5, nonce, nl + 1);
	memcpy(first, "n,,", 3);
	memcpy(first + 3, bare, nl + 6);
	free_secret_str(c->client_nonce);
	free_secret_str(c->client_first_bare);
	c->client_nonce = nonce;
	c->client_first_bare = bare;
	c->state = SCRAM_CLIENT_SENT_FIRST;
	return first;
}

/*
 * Parses server-first-message in buf (cut up in place) and checks its nonce against ours:
 * *nonce points into buf, *salt gets the decoded salt (malloc'd with *salt_cap + 1 bytes, freed
 * by the caller even on error), *salt_len and *iterations their values. Returns NULL, or the error.
 */
static const char *parse_server_first(const ScramClient *c, char *buf, char **nonce, uint8_t **salt,
				      size_t *salt_cap, size_t *salt_len, int *iterations)
{
	char *p = buf;
	if (*p == 'm')
		return "malformed SCRAM message (server requires an unsupported SCRAM extension)";
	*nonce = read_attr(&p, 'r', NULL);
	if (!*nonce)
		return "malformed SCRAM message (expected nonce attribute in server-first-message)";
	size_t cn = strlen(c->client_nonce);
	if (strlen(*nonce) <= cn || memcmp(*nonce, c->client_nonce, cn) != 0)
		return "invalid SCRAM response (nonce mismatch)";
	if (!is_printable_nonce(*nonce))
		return "malformed SCRAM message (invalid characters in SCRAM nonce)";
	char *salt_s = read_attr(&p, 's', NULL);
	if (!salt_s)
		return "malformed SCRAM message (expected salt attribute in server-first-message)";
	*salt_cap = strlen(salt_s) / 4 * 3;
	*salt = malloc(*salt_cap + 1);
	if (!*salt)
		return SERR_OOM;
	if (!b64_decode(salt_s, strlen(salt_s), *salt, *salt_cap, salt_len) || *salt_len == 0)
		return "malformed SCRAM message (invalid salt)";
	char *iter_s = read_attr(&p, 'i', NULL);
	if (!iter_s || !parse_positive_int(iter_s, INT_MAX, iterations))
		return "malformed SCRAM message (invalid iteration count)";
	if (*iterations > SCRAM_CLIENT_MAX_ITERATIONS)
		return "server asks for more SCRAM iterations than pgrelay allows (at most 100000)";
	if (*p)
		return "malformed SCRAM message (garbage at end of server-first-message)";
	return NULL;
}

/*
 * Derives the keys from the password and builds client-final-message (with its proof) for the
 * server's nonce, salt and iteration count; keeps the expected ServerSignature in c. Returns the
 * message, malloc'd, or NULL with *e set.
 */
static char *make_client_final(ScramClient *c, const char *server_first, const char *nonce,
			       const uint8_t *salt, size_t salt_len, int iterations, const char **e)
{
	char *authmsg = NULL, *wo_proof = NULL, *proof_b64 = NULL, *out = NULL;
	uint8_t salted[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN], sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];

	/* client-final-message-without-proof: our gs2 header was "n,," (no channel binding). */
	size_t nl = strlen(nonce);
	wo_proof = malloc(nl + 10);
	if (!wo_proof) {
		*e = SERR_OOM;
		goto done;
	}
	memcpy(wo_proof, "c=biws,r=", 9);
	memcpy(wo_proof + 9, nonce, nl + 1);
	size_t wl = nl + 9;

	authmsg = auth_message(c->client_first_bare, server_first, wo_proof, wl);
	if (!authmsg) {
		*e = SERR_OOM;
		goto done;
	}
	if (!salted_password(c->password, salt, salt_len, iterations, salted) ||
	    !derive_keys(salted, client_key, stored, server_key) ||
	    !hmac_sha256(stored, authmsg, strlen(authmsg), sig) ||
	    !hmac_sha256(server_key, authmsg, strlen(authmsg), c->server_signature)) {
		*e = SERR_CRYPTO;
		goto done;
	}
	for (size_t i = 0; i < SCRAM_KEY_LEN; i++)
		proof[i] = client_key[i] ^ sig[i];
	proof_b64 = b64_encode(proof, SCRAM_KEY_LEN);
	if (!proof_b64) {
		*e = SERR_OOM;
		goto done;
	}
	size_t pl = strlen(proof_b64);
	out = malloc(wl + 3 + pl + 1);
	if (!out) {
		*e = SERR_OOM;
		goto done;
	}
	memcpy(out, wo_proof, wl);
	memcpy(out + wl, ",p=", 3);
	memcpy(out + wl + 3, proof_b64, pl + 1);

done:
	OPENSSL_cleanse(salted, sizeof salted);
	OPENSSL_cleanse(client_key, sizeof client_key);
	OPENSSL_cleanse(stored, sizeof stored);
	OPENSSL_cleanse(server_key, sizeof server_key);
	OPENSSL_cleanse(sig, sizeof sig);
	OPENSSL_cleanse(proof, sizeof proof);
	free_secret_str(proof_b64);
	free_secret_str(wo_proof);
	free_secret_str(authmsg);
	return out;
}

char *scram_client_handle_server_first(ScramClient *c, const char *msg, size_t len, const char **err)
{
	if (!c || c->state != SCRAM_CLIENT_SENT_FIRST || !c->password || !c->client_nonce ||
	    !c->client_first_bare) {
		set_err(err, SERR_STATE);
		return NULL;
	}
	const char *e = NULL;
	char *buf = copy_message(msg, len, &e);
	if (!buf) {
		set_err(err, e);
		return NULL;
	}
	char *server_first = dup_str(buf);
	char *out = NULL, *nonce = NULL;
	uint8_t *salt = NULL;
	size_t salt_cap = 0, salt_len = 0;
	int iterations = 0;
	if (!server_first)
		e = SERR_OOM;
	else
		e = parse_server_first(c, buf, &nonce, &salt, &salt_cap, &salt_len, &iterations);
	if (!e)
		out = make_client_final(c, server_first, nonce, salt, salt_len, iterations, &e);
	if (out)
		c->state = SCRAM_CLIENT_SENT_FINAL;

	if (salt) {
		OPENSSL_cleanse(salt, salt_cap + 1);
		free(salt);
	}
	free_secret_str(server_first);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (!out)
		set_err(err, e ? e : SERR_MALFORMED);
	return out;
}

bool scram_client_done(const ScramClient *c)
{
	return c && c->state == SCRAM_CLIENT_DONE;
}

/* RFC 5802 server-error values, mapped to static messages. */
static const char *server_error_message(const char *value)
{
	static const struct {
		const char *value;
		const char *message;
	} known[] = {
		{"invalid-encoding", "error received from server in SCRAM exchange: invalid-encoding"},
		{"extensions-not-supported",
		 "error received from server in SCRAM exchange: extensions-not-supported"},
		{"invalid-proof", "error received from server in SCRAM exchange: invalid-proof"},
		{"channel-bindings-dont-match",
		 "error received from server in SCRAM exchange: channel-bindings-dont-match"},
		{"server-does-support-channel-binding",
		 "error received from server in SCRAM exchange: server-does-support-channel-binding"},
		{"channel-binding-not-supported",
		 "error received from server in SCRAM exchange: channel-binding-not-supported"},
		{"unsupported-channel-binding-type",
		 "error received from server in SCRAM exchange: unsupported-channel-binding-type"},
		{"unknown-user", "error received from server in SCRAM exchange: unknown-user"},
		{"invalid-username-encoding",
		 "error received from server in SCRAM exchange: invalid-username-encoding"},
		{"no-resources", "error received from server in SCRAM exchange: no-resources"},
		{"other-error", "error received from server in SCRAM exchange: other-error"},
	};
	for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
		if (strcmp(value, known[i].value) == 0)
			return known[i].message;
	return "error received from server in SCRAM exchange";
}

bool scram_client_verify_server_final(ScramClient *c, const char *msg, size_t len, const char **err)
{
	if (!c || c->state != SCRAM_CLIENT_SENT_FINAL) {
		set_err(err, SERR_STATE);
		return false;
	}
	const char *e = NULL;
	char *buf = copy_message(msg, len, &e);
	if (!buf) {
		set_err(err, e);
		return false;
	}
	uint8_t sig[SCRAM_KEY_LEN];
	size_t sig_len = 0;
	char *p = buf;
	if (*p == 'e') {
		char *value = read_attr(&p, 'e', NULL);
		e = value ? server_error_message(value) : "malformed SCRAM message (invalid server error)";
		goto done;
	}
	char *v = read_attr(&p, 'v', NULL);
	if (!v) {
		e = "malformed SCRAM message (expected verifier attribute in server-final-message)";
		goto done;
	}
	if (*p) {
		e = "malformed SCRAM message (garbage at end of server-final-message)";
		goto done;
	}
	if (!b64_decode(v, strlen(v), sig, sizeof sig, &sig_len) || sig_len != SCRAM_KEY_LEN) {
		e = "malformed SCRAM message (invalid server signature)";
		goto done;
	}
	if (CRYPTO_memcmp(sig, c->server_signature, SCRAM_KEY_LEN) != 0) {
		e = "incorrect server signature";
		goto done;
	}
	c->state = SCRAM_CLIENT_DONE;

done:
	OPENSSL_cleanse(sig, sizeof sig);
	OPENSSL_cleanse(buf, len);
	free(buf);
	if (e) {
		set_err(err, e);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------------------------ */
/* md5                                                                                        */
/* ------------------------------------------------------------------------------------------ */

static bool is_lower_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

bool scram_is_md5_hash(const char *text)
{
	if (!text || strncmp(text, "md5", 3) != 0)
		return false;
	for (int i = 0; i < 32; i++)
		if (!is_lower_hex(text[3 + i]))
			return false;
	return text[35] == '\0';
}

/* out = "md5" + hex(md5(a || b)); out[0] = '\0' if the digest is unavailable. */
static void md5_hex2(const void *a, size_t alen, const void *b, size_t blen, char out[36])
{
	static const char hex[] = "0123456789abcdef";
	uint8_t *in = malloc(alen + blen + 1);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	out[0] = '\0';
	if (!in)
		return;
	memcpy(in, a, alen);
	memcpy(in + alen, b, blen);
	if (EVP_Digest(in, alen + blen, md, &mdlen, EVP_md5(), NULL) == 1 && mdlen == 16) {
		memcpy(out, "md5", 3);
		for (int i = 0; i < 16; i++) {
			out[3 + 2 * i] = hex[md[i] >> 4];
			out[4 + 2 * i] = hex[md[i] & 0xF];
		}
		out[35] = '\0';
	}
	OPENSSL_cleanse(in, alen + blen + 1);
	OPENSSL_cleanse(md, sizeof md);
	free(in);
}

void scram_md5_password_hash(const char *user, const char *password, char out[36])
{
	if (!user)
		user = "";
	if (!password)
		password = "";
	md5_hex2(password, strlen(password), user, strlen(user), out);
}

void scram_md5_salted(const char *md5hash, const uint8_t salt[4], char out[36])
{
	out[0] = '\0';
	if (!scram_is_md5_hash(md5hash) || !salt)
		return;
	md5_hex2(md5hash + 3, 32, salt, 4, out);
}

bool scram_md5_check(const char *stored_secret, const char *user, const uint8_t salt[4], const char *response)
{
	if (!stored_secret || !salt || !response)
		return false;
	/* As PostgreSQL: md5 cannot be checked against a SCRAM verifier. */
	ScramVerifier v;
	if (scram_parse_verifier(stored_secret, &v)) {
		OPENSSL_cleanse(&v, sizeof v);
		return false;
	}
	char hash[36], expected[36];
	if (scram_is_md5_hash(stored_secret))
		memcpy(hash, stored_secret, 36);
	else
		scram_md5_password_hash(user, stored_secret, hash);
	scram_md5_salted(hash, salt, expected);
	bool ok = expected[0] != '\0' && strlen(response) == 35 &&
		  CRYPTO_memcmp(expected, response, 35) == 0;
	OPENSSL_cleanse(hash, sizeof hash);
	OPENSSL_cleanse(expected, sizeof expected);
	return ok;
}

/* ---- verifiers derived from plain-text passwords ---- */

struct ScramCacheEntry {
	char *user;
	char *password;
	ScramVerifier *verifier;
};

void scram_cache_clear(ScramCache *sc)
{
	for (size_t i = 0; i < sc->n; i++) {
		struct ScramCacheEntry *e = &sc->entries[i];
		free(e->user);
		memset(e->password, 0, strlen(e->password));
		free(e->password);
		free(e->verifier);
	}
	free(sc->entries);
	sc->entries = NULL;
	sc->n = 0;
}

const ScramVerifier *scram_cache_verifier_for(ScramCache *sc, const char *user, const char *password)
{
	for (size_t i = 0; i < sc->n; i++) {
		struct ScramCacheEntry *e = &sc->entries[i];
		if (strcmp(e->user, user) == 0 && strcmp(e->password, password) == 0)
			return e->verifier;
	}
	ScramVerifier *v = malloc(sizeof(*v));
	uint8_t salt[SCRAM_DERIVED_SALT_LEN];
	if (!v || !scram_user_salt(sc->secret, user, salt) ||
	    !scram_verifier_from_password_salt(password, SCRAM_DEFAULT_ITERATIONS, salt, sizeof salt, v)) {
		free(v);
		return NULL;
	}
	struct ScramCacheEntry *grown = realloc(sc->entries, (sc->n + 1) * sizeof(*grown));
	if (!grown)
		abort();
	sc->entries = grown;
	struct ScramCacheEntry *e = &sc->entries[sc->n++];
	e->user = strdup(user);
	e->password = strdup(password);
	e->verifier = v;
	if (!e->user || !e->password)
		abort();
	return v;
}
