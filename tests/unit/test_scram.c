/*
 * Unit tests for src/scram.c: RFC 7677 vectors, verifiers produced by PostgreSQL 15 and by an
 * independent Python derivation, full client/server exchanges, md5, and malformed input.
 *
 * Every message handed to scram.c is first copied into an exact-size heap buffer (no NUL
 * terminator), so ASan flags any read past `len`.
 */
#include "scram.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

/* ---- helpers ------------------------------------------------------------------------------ */

static char *xstrdup(const char *s)
{
	size_t n = strlen(s);
	char *p = malloc(n + 1);
	if (!p)
		abort();
	memcpy(p, s, n + 1);
	return p;
}

/* An exact-size, non-NUL-terminated copy of bytes[0..len). */
static char *exact(const char *bytes, size_t len)
{
	char *p = malloc(len ? len : 1);
	if (!p)
		abort();
	if (len)
		memcpy(p, bytes, len);
	return p;
}

static bool server_first(ScramServer *s, const char *msg, size_t len, char **reply, const char **err)
{
	char *b = exact(msg, len);
	bool ok = scram_server_handle_first(s, b, len, reply, err);
	free(b);
	return ok;
}

static bool server_final(ScramServer *s, const char *msg, size_t len, char **reply, const char **err)
{
	char *b = exact(msg, len);
	bool ok = scram_server_handle_final(s, b, len, reply, err);
	free(b);
	return ok;
}

static char *client_server_first(ScramClient *c, const char *msg, size_t len, const char **err)
{
	char *b = exact(msg, len);
	char *out = scram_client_handle_server_first(c, b, len, err);
	free(b);
	return out;
}

static bool client_server_final(ScramClient *c, const char *msg, size_t len, const char **err)
{
	char *b = exact(msg, len);
	bool ok = scram_client_verify_server_final(c, b, len, err);
	free(b);
	return ok;
}

static bool starts_with(const char *s, const char *prefix)
{
	return s && strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < len; i++)
		if (b[i])
			return false;
	return true;
}

/*
 * Runs a complete exchange: scram_client_* (with `password`) against scram_server_* (with `v`).
 * Returns true only if the server accepted the proof and the client accepted the server's
 * signature.
 */
static bool exchange(const ScramVerifier *v, const char *password, const char **server_err,
		     const char **client_err)
{
	ScramServer s;
	ScramClient c;
	char *cfirst = NULL, *sfirst = NULL, *cfinal = NULL, *sfinal = NULL;
	bool ok = false;
	*server_err = NULL;
	*client_err = NULL;
	scram_server_init(&s, v);
	scram_client_init(&c, password);

	cfirst = scram_client_first(&c);
	if (!cfirst)
		goto out;
	if (!server_first(&s, cfirst, strlen(cfirst), &sfirst, server_err))
		goto out;
	cfinal = client_server_first(&c, sfirst, strlen(sfirst), client_err);
	if (!cfinal)
		goto out;
	if (!server_final(&s, cfinal, strlen(cfinal), &sfinal, server_err))
		goto out;
	if (!client_server_final(&c, sfinal, strlen(sfinal), client_err))
		goto out;
	ok = s.state == SCRAM_SERVER_DONE && c.state == SCRAM_CLIENT_DONE;
out:
	free(cfirst);
	free(sfirst);
	free(cfinal);
	free(sfinal);
	scram_server_free(&s);
	scram_client_free(&c);
	return ok;
}

/*
 * Independent (test-side) proof computation straight from RFC 5802, used to build client-final
 * messages by hand (cbind flag 'y', extensions). Writes base64(ClientProof) into out[45].
 */
static void make_proof(const char *password, const uint8_t *salt, size_t salt_len, int iter,
		       const char *auth_message, char out[45])
{
	uint8_t sp[32], ck[32], sk[32], sig[32], proof[32];
	unsigned int l = 0;
	PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, iter, EVP_sha256(), 32, sp);
	HMAC(EVP_sha256(), sp, 32, (const unsigned char *)"Client Key", 10, ck, &l);
	EVP_Digest(ck, 32, sk, &l, EVP_sha256(), NULL);
	HMAC(EVP_sha256(), sk, 32, (const unsigned char *)auth_message, strlen(auth_message), sig, &l);
	for (int i = 0; i < 32; i++)
		proof[i] = ck[i] ^ sig[i];
	EVP_EncodeBlock((unsigned char *)out, proof, 32);
}

/* ---- RFC 7677 ----------------------------------------------------------------------------- */

#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_NONCE RFC_CLIENT_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_SALT "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT ",i=4096"
#define RFC_CLIENT_FINAL_WO_PROOF "c=biws,r=" RFC_NONCE
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_CLIENT_FINAL RFC_CLIENT_FINAL_WO_PROOF ",p=" RFC_PROOF
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/*
 * The RFC's password "pencil" with its salt and 4096 iterations, as a PostgreSQL verifier.
 * Independently derived with Python:
 *   sp = hashlib.pbkdf2_hmac('sha256', b'pencil', b64decode('W22ZaJ0SNY7soEsUEjb6gQ=='), 4096)
 *   StoredKey = sha256(hmac(sp, b'Client Key')), ServerKey = hmac(sp, b'Server Key')
 * (that same Python reproduces the RFC's proof and server signature).
 */
#define RFC_VERIFIER                                                                       \
	"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:" \
	"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

TEST(rfc7677_verifier_parses_and_formats)
{
	ScramVerifier v;
	REQUIRE(scram_is_verifier(RFC_VERIFIER));
	REQUIRE(scram_parse_verifier(RFC_VERIFIER, &v));
	CHECK_INT(v.iterations, 4096);
	CHECK_INT(v.salt_len, 16);
	CHECK_INT(v.salt[0], 0x5b); /* 'W22Z' -> 5b 6d 99 */
	CHECK_INT(v.salt[1], 0x6d);
	CHECK_INT(v.salt[15], 0x81); /* '6gQ==' -> ... 81 */
	char *text = scram_verifier_format(&v);
	CHECK_STR(text, RFC_VERIFIER);
	free(text);
}

/* Server role: the RFC's client messages, with the server's random nonce replaced by the RFC's. */
TEST(rfc7677_server_role)
{
	ScramVerifier v;
	REQUIRE(scram_parse_verifier(RFC_VERIFIER, &v));
	ScramServer s;
	scram_server_init(&s, &v);
	char *reply = NULL;
	const char *err = NULL;
	REQUIRE(server_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &reply, &err));
	CHECK(err == NULL);
	CHECK_INT(s.state, SCRAM_SERVER_SENT_FIRST);
	CHECK(s.cbind_flag == 'n');
	CHECK_STR(s.client_first_bare, "n=user,r=" RFC_CLIENT_NONCE);
	/* r=<client nonce><24 base64 chars>,s=<salt>,i=4096 */
	CHECK(starts_with(reply, "r=" RFC_CLIENT_NONCE));
	CHECK_CONTAINS(reply, ",s=" RFC_SALT ",i=4096");
	CHECK_INT(strlen(reply), strlen("r=" RFC_CLIENT_NONCE ",s=" RFC_SALT ",i=4096") + 24);
	CHECK_INT(strlen(s.nonce), strlen(RFC_CLIENT_NONCE) + 24);
	free(reply);

	/* A second client-first-message is a protocol violation that ends the exchange. */
	ScramServer twice;
	scram_server_init(&twice, &v);
	reply = NULL;
	REQUIRE(server_first(&twice, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &reply, &err));
	free(reply);
	reply = NULL;
	err = NULL;
	CHECK(!server_first(&twice, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &reply, &err));
	CHECK(err != NULL && reply == NULL);
	CHECK_INT(twice.state, SCRAM_SERVER_FAILED);
	scram_server_free(&twice);

	/* Swap in the RFC's server nonce (the struct is public; the server uses these fields). */
	free(s.nonce);
	s.nonce = xstrdup(RFC_NONCE);
	free(s.server_first);
	s.server_first = xstrdup(RFC_SERVER_FIRST);

	reply = NULL;
	REQUIRE(server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &reply, &err));
	CHECK_STR(reply, RFC_SERVER_FINAL);
	CHECK_INT(s.state, SCRAM_SERVER_DONE);
	free(reply);

	/* A second final message is a protocol violation. */
	reply = NULL;
	err = NULL;
	CHECK(!server_final(&s, RFC_CLIENT_FINAL, strlen(RFC_CLIENT_FINAL), &reply, &err));
	CHECK(err != NULL);
	CHECK(reply == NULL);
	scram_server_free(&s);
	CHECK(s.nonce == NULL && s.server_first == NULL && s.client_first_bare == NULL);
	CHECK(all_zero(&s.verifier, sizeof s.verifier));
}

/* One flipped bit in the RFC proof is a wrong password, reported by pointer. */
TEST(rfc7677_server_role_wrong_proof)
{
	ScramVerifier v;
	REQUIRE(scram_parse_verifier(RFC_VERIFIER, &v));
	ScramServer s;
	scram_server_init(&s, &v);
	char *reply = NULL;
	const char *err = NULL;
	REQUIRE(server_first(&s, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST), &reply, &err));
	free(reply);
	free(s.nonce);
	s.nonce = xstrdup(RFC_NONCE);
	free(s.server_first);
	s.server_first = xstrdup(RFC_SERVER_FIRST);
	/* 'd' -> 'e' changes the first proof byte. */
	const char *bad = RFC_CLIENT_FINAL_WO_PROOF ",p=eHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
	reply = NULL;
	CHECK(!server_final(&s, bad, strlen(bad), &reply, &err));
	CHECK(err == SCRAM_ERR_WRONG_PASSWORD);
	CHECK_STR(err, "password authentication failed");
	CHECK(reply == NULL);
	CHECK_INT(s.state, SCRAM_SERVER_FAILED);
	scram_server_free(&s);
}

/* Client role: the RFC's nonce swapped in, the client must produce exactly the RFC's proof. */
TEST(rfc7677_client_role)
{
	ScramClient c;
	scram_client_init(&c, "pencil");
	char *first = scram_client_first(&c);
	REQUIRE(first != NULL);
	CHECK(starts_with(first, "n,,n=,r="));
	CHECK_INT(strlen(first), strlen("n,,n=,r=") + 24);
	CHECK_INT(c.state, SCRAM_CLIENT_SENT_FIRST);
	CHECK_STR(c.client_first_bare, first + 3);
	CHECK(c.client_nonce && strcmp(c.client_nonce, first + 8) == 0);
	free(first);

	free(c.client_nonce);
	c.client_nonce = xstrdup(RFC_CLIENT_NONCE);
	free(c.client_first_bare);
	c.client_first_bare = xstrdup("n=user,r=" RFC_CLIENT_NONCE);

	const char *err = NULL;
	char *final = client_server_first(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &err);
	CHECK_STR(final, RFC_CLIENT_FINAL);
	CHECK_INT(c.state, SCRAM_CLIENT_SENT_FINAL);
	free(final);

	/* A forged signature is refused, the real one accepted. */
	const char *forged = "v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
	err = NULL;
	CHECK(!client_server_final(&c, forged, strlen(forged), &err));
	CHECK(err != NULL);
	/* Non-canonical base64 of the right signature ('4' -> '5' only sets unused bits). */
	const char *noncanon = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G5=";
	err = NULL;
	CHECK(!client_server_final(&c, noncanon, strlen(noncanon), &err));
	CHECK(err != NULL);
	err = NULL;
	CHECK(client_server_final(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err));
	CHECK_INT(c.state, SCRAM_CLIENT_DONE);
	scram_client_free(&c);
	CHECK(c.password == NULL && c.client_nonce == NULL && c.client_first_bare == NULL);
	CHECK(all_zero(c.server_signature, sizeof c.server_signature));
}

/* ---- verifiers ---------------------------------------------------------------------------- */

/* Produced by PostgreSQL 15 itself: CREATE ROLE s1 PASSWORD 'secret'; SELECT rolpassword ... */
#define PG15_VERIFIER_SECRET                                                               \
	"SCRAM-SHA-256$4096:mR4Kxnnsti5PVjyZ2waSRw==$DsO0auGWS2DM5Q2IPqvpF1geQEGZphM3sjELNeirxXc=:" \
	"2XGKrkCI6pmY8NzYv+Qo2Wf0IMajniiJmKX5NJzYOhU="
/*
 * Password "secret", salt b"pgrelay-test-slt", 4096 iterations, derived independently with:
 *   import hashlib, hmac, base64
 *   sp = hashlib.pbkdf2_hmac('sha256', b'secret', b'pgrelay-test-slt', 4096)
 *   ck = hmac.new(sp, b'Client Key', 'sha256').digest()
 *   stored = hashlib.sha256(ck).digest(); server = hmac.new(sp, b'Server Key', 'sha256').digest()
 *   'SCRAM-SHA-256$4096:%s$%s:%s' % (b64(salt), b64(stored), b64(server))
 */
#define PY_VERIFIER_SECRET                                                                 \
	"SCRAM-SHA-256$4096:cGdyZWxheS10ZXN0LXNsdA==$IKagTVbe/ps3G8RZ3mdQSiHElTYU/jt1jKKu9dJ+Dlo=:" \
	"UPY7z3XGDiqxCg2eKv87kWHTygWI2N+TUNOJS0RL/IY="

TEST(known_verifiers_for_secret)
{
	const char *texts[] = {PG15_VERIFIER_SECRET, PY_VERIFIER_SECRET};
	for (size_t i = 0; i < 2; i++) {
		ScramVerifier v;
		REQUIRE(scram_parse_verifier(texts[i], &v));
		CHECK_INT(v.iterations, 4096);
		CHECK_INT(v.salt_len, 16);
		char *text = scram_verifier_format(&v);
		CHECK_STR(text, texts[i]);
		free(text);

		/* Our client derives the same keys from "secret": the proof and signature check. */
		const char *serr, *cerr;
		CHECK(exchange(&v, "secret", &serr, &cerr));
		CHECK(serr == NULL && cerr == NULL);
		CHECK(!exchange(&v, "Secret", &serr, &cerr));
		CHECK(serr == SCRAM_ERR_WRONG_PASSWORD);
		CHECK(!exchange(&v, "", &serr, &cerr));
		CHECK(serr == SCRAM_ERR_WRONG_PASSWORD);
	}
	/* The Python salt decodes to the bytes it was made from. */
	ScramVerifier v;
	REQUIRE(scram_parse_verifier(PY_VERIFIER_SECRET, &v));
	CHECK(memcmp(v.salt, "pgrelay-test-slt", 16) == 0);
}

TEST(verifier_from_password_round_trip)
{
	ScramVerifier v, parsed, other;
	REQUIRE(scram_verifier_from_password("correct horse", 4096, &v));
	CHECK_INT(v.iterations, 4096);
	CHECK_INT(v.salt_len, 16);
	char *text = scram_verifier_format(&v);
	REQUIRE(text != NULL);
	CHECK(starts_with(text, "SCRAM-SHA-256$4096:"));
	CHECK(scram_is_verifier(text));
	REQUIRE(scram_parse_verifier(text, &parsed));
	CHECK_INT(parsed.iterations, v.iterations);
	CHECK_INT(parsed.salt_len, v.salt_len);
	CHECK(memcmp(parsed.salt, v.salt, v.salt_len) == 0);
	CHECK(memcmp(parsed.stored_key, v.stored_key, SCRAM_KEY_LEN) == 0);
	CHECK(memcmp(parsed.server_key, v.server_key, SCRAM_KEY_LEN) == 0);
	free(text);

	/* Fresh salt every time. */
	REQUIRE(scram_verifier_from_password("correct horse", 4096, &other));
	CHECK(memcmp(other.salt, v.salt, v.salt_len) != 0);
	CHECK(memcmp(other.stored_key, v.stored_key, SCRAM_KEY_LEN) != 0);

	const char *serr, *cerr;
	CHECK(exchange(&parsed, "correct horse", &serr, &cerr));
	CHECK(!exchange(&parsed, "correct horse ", &serr, &cerr));
	CHECK(serr == SCRAM_ERR_WRONG_PASSWORD);

	/* Non-default iteration count, UTF-8 password used as raw bytes. */
	REQUIRE(scram_verifier_from_password("p\xc3\xa4ssw\xc3\xb6rd", 17, &v));
	CHECK_INT(v.iterations, 17);
	CHECK(exchange(&v, "p\xc3\xa4ssw\xc3\xb6rd", &serr, &cerr));

	CHECK(!scram_verifier_from_password("x", 0, &v));
	CHECK(!scram_verifier_from_password("x", -5, &v));
	CHECK(!scram_verifier_from_password(NULL, 4096, &v));
}

TEST(verifier_parse_rejects_malformed)
{
	static const char *const bad[] = {
		"",
		"md56a422f785c9e20873908ce25d1736ae2",
		"secret",
		"SCRAM-SHA-256$",
		"SCRAM-SHA-256$4096",
		"SCRAM-SHA-256$4096:",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:",
		/* stored key one byte short / long */
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4g==:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qYA:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		/* bad base64 */
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6g!==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7s=EsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU= ",
		/* iterations */
		"SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$-1:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$abc:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$99999999999999999999:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$ 4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		/* empty salt, and a salt over SCRAM_MAX_SALT_LEN (66 bytes) */
		"SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:"
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		/* wrong scheme */
		"SCRAM-SHA-1$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
		"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		ScramVerifier v;
		memset(&v, 0xAB, sizeof v);
		if (scram_parse_verifier(bad[i], &v))
			UNIT_FAIL("accepted malformed verifier #%zu \"%s\"", i, bad[i]);
	}
	CHECK(!scram_parse_verifier(NULL, NULL));
	CHECK(!scram_is_verifier(NULL));
	CHECK(!scram_is_verifier("md56a422f785c9e20873908ce25d1736ae2"));
	CHECK(!scram_is_verifier("scram-sha-256$4096:"));

	/* 64 bytes of salt (the maximum) is fine. */
	ScramVerifier v;
	CHECK(scram_parse_verifier(
		"SCRAM-SHA-256$1:"
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
		"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		&v));
	CHECK_INT(v.salt_len, 64);
	CHECK(scram_verifier_format(&(ScramVerifier){.iterations = 0, .salt_len = 4}) == NULL);
	CHECK(scram_verifier_format(&(ScramVerifier){.iterations = 1, .salt_len = 0}) == NULL);
}

/* ---- hand-built exchanges: cbind flag 'y', extensions ------------------------------------ */

/*
 * Runs first message `cfirst` through a server holding a verifier for "pw" (salt known to
 * the test), then builds a client-final "<cbind>,r=<nonce><ext>" with a proof computed by
 * make_proof, and returns the server's verdict.
 */
static bool hand_exchange(const char *cfirst, const char *cbind, const char *ext, const char *password,
			  const char **err)
{
	static const char verifier_text[] = PY_VERIFIER_SECRET; /* password "secret" */
	ScramVerifier v;
	if (!scram_parse_verifier(verifier_text, &v))
		return false;
	ScramServer s;
	scram_server_init(&s, &v);
	char *sfirst = NULL, *sfinal = NULL;
	bool ok = false;
	*err = NULL;
	if (!server_first(&s, cfirst, strlen(cfirst), &sfirst, err))
		goto out;
	/* nonce = text between "r=" and the first ',' of the server-first-message */
	const char *nonce = sfirst + 2;
	size_t nlen = strcspn(nonce, ",");
	char wo_proof[512], auth[1024], final[600], proof[45];
	snprintf(wo_proof, sizeof wo_proof, "%s,r=%.*s%s", cbind, (int)nlen, nonce, ext);
	snprintf(auth, sizeof auth, "%s,%s,%s", strchr(strchr(cfirst, ',') + 1, ',') + 1, sfirst, wo_proof);
	make_proof(password, v.salt, v.salt_len, v.iterations, auth, proof);
	snprintf(final, sizeof final, "%s,p=%s", wo_proof, proof);
	ok = server_final(&s, final, strlen(final), &sfinal, err);
	if (ok && !starts_with(sfinal, "v="))
		ok = false;
out:
	free(sfirst);
	free(sfinal);
	scram_server_free(&s);
	return ok;
}

TEST(server_cbind_flags_and_extensions)
{
	const char *err;
	/* Baseline: a hand-built exchange with flag 'n' works, and the test helper is sound. */
	CHECK(hand_exchange("n,,n=,r=abcdef", "c=biws", "", "secret", &err));
	CHECK(err == NULL);
	CHECK(!hand_exchange("n,,n=,r=abcdef", "c=biws", "", "secreT", &err));
	CHECK(err == SCRAM_ERR_WRONG_PASSWORD);
	/* Flag 'y' (client supports binding, thinks we don't): accepted with c=base64("y,,"). */
	CHECK(hand_exchange("y,,n=,r=abcdef", "c=eSws", "", "secret", &err));
	CHECK(err == NULL);
	/* The c= attribute must repeat the gs2 header the client actually sent. */
	CHECK(!hand_exchange("y,,n=,r=abcdef", "c=biws", "", "secret", &err));
	CHECK(err != NULL && err != SCRAM_ERR_WRONG_PASSWORD);
	CHECK(!hand_exchange("n,,n=,r=abcdef", "c=eSws", "", "secret", &err));
	CHECK(err != NULL && err != SCRAM_ERR_WRONG_PASSWORD);
	CHECK(!hand_exchange("n,,n=,r=abcdef", "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws", "", "secret", &err));
	CHECK(err != NULL);
	/* A user name (ignored, as PostgreSQL does) and extensions in both messages. */
	CHECK(hand_exchange("n,,n=someone,r=abc,x=ext", "c=biws", ",x=foo,y=bar", "secret", &err));
	CHECK(err == NULL);
}

/* ---- full exchanges ------------------------------------------------------------------------ */

TEST(exchange_right_and_wrong_password)
{
	ScramVerifier v;
	REQUIRE(scram_verifier_from_password("s3cr3t!", SCRAM_DEFAULT_ITERATIONS, &v));
	const char *serr, *cerr;
	CHECK(exchange(&v, "s3cr3t!", &serr, &cerr));
	CHECK(serr == NULL);
	CHECK(cerr == NULL);
	CHECK(!exchange(&v, "s3cr3t", &serr, &cerr));
	CHECK(serr == SCRAM_ERR_WRONG_PASSWORD);
	CHECK(!exchange(&v, "wrong", &serr, &cerr));
	CHECK(serr == SCRAM_ERR_WRONG_PASSWORD);

	/* Unknown user (NULL verifier): the exchange runs and fails only at the proof. */
	CHECK(!exchange(NULL, "s3cr3t!", &serr, &cerr));
	CHECK(serr == SCRAM_ERR_WRONG_PASSWORD);

	/* Client nonces differ between exchanges. */
	ScramClient a, b;
	scram_client_init(&a, "x");
	scram_client_init(&b, "x");
	char *fa = scram_client_first(&a), *fb = scram_client_first(&b);
	REQUIRE(fa && fb);
	CHECK(strcmp(fa, fb) != 0);
	/* A second client-first is a state error. */
	CHECK(scram_client_first(&a) == NULL);
	free(fa);
	free(fb);
	scram_client_free(&a);
	scram_client_free(&b);
}


/* ---- unknown users: a mock exchange that looks like a real one ---------------------------- */

/* The salt and iteration count a server-first-message carries, base64 salt copied to salt_out. */
static bool salt_of(ScramServer *s, const char *client_first, char *salt_out, size_t cap, int *iter)
{
	char *reply = NULL;
	const char *err = NULL;
	if (!server_first(s, client_first, strlen(client_first), &reply, &err))
		return false;
	const char *sp = strstr(reply, ",s="), *ip = strstr(reply, ",i=");
	bool ok = sp && ip && ip > sp && (size_t)(ip - sp - 3) < cap;
	if (ok) {
		memcpy(salt_out, sp + 3, (size_t)(ip - sp - 3));
		salt_out[ip - sp - 3] = 0;
		*iter = atoi(ip + 3);
	}
	free(reply);
	return ok;
}

TEST(mock_exchange_for_unknown_users)
{
	uint8_t secret[SCRAM_SALT_SECRET_LEN], other[SCRAM_SALT_SECRET_LEN];
	memset(secret, 0x5a, sizeof secret);
	memset(other, 0x5b, sizeof other);
	uint8_t a[SCRAM_DERIVED_SALT_LEN], b[SCRAM_DERIVED_SALT_LEN], c[SCRAM_DERIVED_SALT_LEN];
	REQUIRE(scram_user_salt(secret, "alice", a));
	REQUIRE(scram_user_salt(secret, "alice", b));
	CHECK(memcmp(a, b, sizeof a) == 0); /* deterministic: every attempt sees the same salt */
	REQUIRE(scram_user_salt(secret, "alicf", c));
	CHECK(memcmp(a, c, sizeof a) != 0); /* per user */
	REQUIRE(scram_user_salt(other, "alice", c));
	CHECK(memcmp(a, c, sizeof a) != 0); /* per secret */

	/* An unknown user's server-first-message carries the same salt on every attempt and the
	 * iteration count of a real user, like a known user whose password is plain text. */
	ScramVerifier mock1, mock2, real;
	REQUIRE(scram_mock_verifier(secret, "ghost", &mock1));
	REQUIRE(scram_mock_verifier(secret, "ghost", &mock2));
	REQUIRE(scram_user_salt(secret, "alice", a));
	REQUIRE(scram_verifier_from_password_salt("pw", SCRAM_DEFAULT_ITERATIONS, a, sizeof a, &real));
	CHECK_INT(mock1.salt_len, real.salt_len);
	CHECK_INT(mock1.iterations, real.iterations);
	CHECK(memcmp(mock1.salt, mock2.salt, mock1.salt_len) == 0);
	CHECK(memcmp(mock1.stored_key, mock2.stored_key, SCRAM_KEY_LEN) != 0); /* random keys */

	char s1[64], s2[64], s3[64];
	int i1 = 0, i2 = 0, i3 = 0;
	ScramServer x, y, z;
	scram_server_init_mock(&x, &mock1);
	scram_server_init_mock(&y, &mock2);
	scram_server_init(&z, &real);
	CHECK(salt_of(&x, "n,,n=,r=abcdefgh", s1, sizeof s1, &i1));
	CHECK(salt_of(&y, "n,,n=,r=ijklmnop", s2, sizeof s2, &i2));
	CHECK(salt_of(&z, "n,,n=,r=qrstuvwx", s3, sizeof s3, &i3));
	CHECK_STR(s1, s2);
	CHECK_INT(strlen(s1), strlen(s3));
	CHECK_INT(i1, i3);
	scram_server_free(&x);
	scram_server_free(&y);
	scram_server_free(&z);

	/* The exchange runs to the end and fails like a wrong password, whatever the proof: even a
	 * proof computed for the mock verifier's own keys is refused. */
	const char *serr, *cerr;
	CHECK(!exchange(&real, "wrong", &serr, &cerr));
	CHECK(serr == SCRAM_ERR_WRONG_PASSWORD);
	CHECK(exchange(&real, "pw", &serr, &cerr));
	ScramServer m;
	scram_server_init_mock(&m, &real);
	ScramClient cl;
	scram_client_init(&cl, "pw");
	char *cf = scram_client_first(&cl), *sf = NULL, *cfin = NULL, *sfin = NULL;
	const char *err = NULL;
	REQUIRE(cf);
	CHECK(server_first(&m, cf, strlen(cf), &sf, &err));
	REQUIRE(sf);
	cfin = client_server_first(&cl, sf, strlen(sf), &err);
	REQUIRE(cfin);
	CHECK(!server_final(&m, cfin, strlen(cfin), &sfin, &err));
	CHECK(err == SCRAM_ERR_WRONG_PASSWORD);
	CHECK(sfin == NULL);
	free(cf);
	free(sf);
	free(cfin);
	scram_server_free(&m);
	scram_client_free(&cl);
}

/* The client role reports a verified server signature only after the server-final-message. */
TEST(client_done_only_after_server_signature)
{
	ScramVerifier v;
	REQUIRE(scram_verifier_from_password("pw", 4096, &v));
	ScramServer s;
	ScramClient c;
	scram_server_init(&s, &v);
	scram_client_init(&c, "pw");
	CHECK(!scram_client_done(&c));
	char *cf = scram_client_first(&c), *sf = NULL, *cfin = NULL, *sfin = NULL;
	const char *err = NULL;
	REQUIRE(cf);
	CHECK(server_first(&s, cf, strlen(cf), &sf, &err));
	REQUIRE(sf);
	cfin = client_server_first(&c, sf, strlen(sf), &err);
	REQUIRE(cfin);
	CHECK(!scram_client_done(&c)); /* a server's AuthenticationOk here must be refused */
	CHECK(server_final(&s, cfin, strlen(cfin), &sfin, &err));
	REQUIRE(sfin);
	CHECK(client_server_final(&c, sfin, strlen(sfin), &err));
	CHECK(scram_client_done(&c));
	CHECK(!scram_client_done(NULL));
	free(cf);
	free(sf);
	free(cfin);
	free(sfin);
	scram_server_free(&s);
	scram_client_free(&c);
}

/* ---- malformed input, server role ---------------------------------------------------------- */

static void expect_first_rejected(const char *msg, size_t len, const char *want_in_err, int line)
{
	ScramVerifier v;
	if (!scram_parse_verifier(RFC_VERIFIER, &v)) {
		UNIT_FAIL("line %d: verifier", line);
		return;
	}
	ScramServer s;
	scram_server_init(&s, &v);
	char *reply = (char *)"untouched";
	const char *err = NULL;
	bool ok = server_first(&s, msg, len, &reply, &err);
	if (ok) {
		UNIT_FAIL("line %d: accepted malformed client-first \"%.*s\"", line, (int)len, msg);
		free(reply);
	} else {
		if (!err)
			UNIT_FAIL("line %d: no error message", line);
		else if (want_in_err && !strstr(err, want_in_err))
			UNIT_FAIL("line %d: error \"%s\" lacks \"%s\"", line, err, want_in_err);
		if (reply != NULL)
			UNIT_FAIL("line %d: reply not NULL on failure", line);
		if (s.state != SCRAM_SERVER_FAILED)
			UNIT_FAIL("line %d: state %d, expected FAILED", line, (int)s.state);
	}
	scram_server_free(&s);
}

#define FIRST_REJECTED(lit, want) expect_first_rejected(lit, sizeof(lit) - 1, want, __LINE__)

TEST(server_first_malformed)
{
	FIRST_REJECTED("", NULL);
	FIRST_REJECTED("n", NULL);
	FIRST_REJECTED("n,", NULL);
	FIRST_REJECTED("n,,", NULL);
	FIRST_REJECTED("y", NULL);
	FIRST_REJECTED("nn,,n=,r=abc", NULL);
	FIRST_REJECTED("x,,n=,r=abc", NULL);
	FIRST_REJECTED(",,n=,r=abc", NULL);
	FIRST_REJECTED("p=tls-server-end-point,,n=,r=abc", "channel binding is not supported by pgrelay");
	FIRST_REJECTED("p=tls-unique,,n=,r=abc", "channel binding is not supported by pgrelay");
	FIRST_REJECTED("n,a=bob,n=,r=abc", "authorization identity");
	FIRST_REJECTED("n,x,n=,r=abc", NULL);
	FIRST_REJECTED("n,,r=abc", NULL);
	FIRST_REJECTED("n,,n=", NULL);
	FIRST_REJECTED("n,,n=,", NULL);
	FIRST_REJECTED("n,,n=,r", NULL);
	FIRST_REJECTED("n,,n=,r=", NULL);
	FIRST_REJECTED("n,,n=,r=,x=1", NULL);
	FIRST_REJECTED("n,,n,r=abc", NULL);
	FIRST_REJECTED("n,,n=,s=abc", NULL);
	FIRST_REJECTED("n,,m=ext,n=,r=abc", "extension");
	FIRST_REJECTED("n,,n=,r=ab\x01" "c", NULL);
	FIRST_REJECTED("n,,n=,r=ab c", NULL);
	FIRST_REJECTED("n,,n=,r=ab\x80", NULL);
	FIRST_REJECTED("n,,n=,r=abc,", NULL); /* empty extension */
	FIRST_REJECTED("n,,n=,r=abc,1=x", NULL);
	FIRST_REJECTED("n,,n=,r=abc,xy", NULL);
	FIRST_REJECTED("n,,n=,r=a\0bc", NULL); /* embedded NUL */
	FIRST_REJECTED("\0n,,n=,r=abc", NULL);

	/* Every proper prefix of a valid message is rejected. */
	const char *valid = "n,,n=,r=rOprNGfwEbeRWgbNEkqO";
	for (size_t n = 0; n < strlen("n,,n=,r="); n++)
		expect_first_rejected(valid, n, NULL, __LINE__);

	/* NULL message with a length, and a huge length, fail cleanly. */
	ScramServer s;
	scram_server_init(&s, NULL);
	char *reply = NULL;
	const char *err = NULL;
	CHECK(!scram_server_handle_first(&s, NULL, 10, &reply, &err));
	CHECK(err != NULL);
	scram_server_free(&s);

	/* Final before first is a state error. */
	scram_server_init(&s, NULL);
	err = NULL;
	CHECK(!scram_server_handle_final(&s, "c=biws", 6, &reply, &err));
	CHECK(err != NULL);
	CHECK_INT(s.state, SCRAM_SERVER_FAILED);
	scram_server_free(&s);
}

/*
 * A server that has received a valid first message (password "pw", 2 iterations to keep the
 * many runs cheap), plus the honest client-final it expects.
 */
typedef struct {
	ScramServer s;
	char *nonce;        /* combined nonce, malloc'd */
	char *good_final;   /* malloc'd */
} FinalFixture;

static bool fixture_init(FinalFixture *f)
{
	ScramVerifier v;
	ScramClient c;
	char *cfirst, *sfirst = NULL;
	const char *err = NULL;
	memset(f, 0, sizeof *f);
	if (!scram_verifier_from_password("pw", 2, &v))
		return false;
	scram_server_init(&f->s, &v);
	scram_client_init(&c, "pw");
	cfirst = scram_client_first(&c);
	if (cfirst && server_first(&f->s, cfirst, strlen(cfirst), &sfirst, &err))
		f->good_final = client_server_first(&c, sfirst, strlen(sfirst), &err);
	if (f->good_final)
		f->nonce = xstrdup(f->s.nonce);
	free(cfirst);
	free(sfirst);
	scram_client_free(&c);
	return f->good_final != NULL;
}

static void fixture_free(FinalFixture *f)
{
	scram_server_free(&f->s);
	free(f->nonce);
	free(f->good_final);
}

static void expect_final_rejected(const char *msg, size_t len, int line)
{
	FinalFixture f;
	if (!fixture_init(&f)) {
		UNIT_FAIL("line %d: fixture", line);
		fixture_free(&f);
		return;
	}
	char *reply = (char *)"untouched";
	const char *err = NULL;
	if (server_final(&f.s, msg, len, &reply, &err)) {
		UNIT_FAIL("line %d: accepted malformed client-final \"%.*s\"", line, (int)len, msg);
		free(reply);
	} else {
		if (!err)
			UNIT_FAIL("line %d: no error message", line);
		if (reply != NULL)
			UNIT_FAIL("line %d: reply not NULL on failure", line);
		if (f.s.state != SCRAM_SERVER_FAILED)
			UNIT_FAIL("line %d: state %d, expected FAILED", line, (int)f.s.state);
	}
	fixture_free(&f);
}

#define FINAL_REJECTED(lit) expect_final_rejected(lit, sizeof(lit) - 1, __LINE__)

TEST(server_final_malformed)
{
	FinalFixture f;
	REQUIRE(fixture_init(&f));
	/* Sanity: the fixture's honest final message is accepted. */
	char *reply = NULL;
	const char *err = NULL;
	CHECK(server_final(&f.s, f.good_final, strlen(f.good_final), &reply, &err));
	CHECK(starts_with(reply, "v="));
	free(reply);
	fixture_free(&f);

	FINAL_REJECTED("");
	FINAL_REJECTED("c");
	FINAL_REJECTED("c=");
	FINAL_REJECTED("c=biws");
	FINAL_REJECTED("c=biws,");
	FINAL_REJECTED("c=biws,r=");
	FINAL_REJECTED("r=abc,c=biws,p=AAAA");
	FINAL_REJECTED("c=biws,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
	FINAL_REJECTED("c=,r=abc,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=");
	FINAL_REJECTED("c=biws\0,r=abc");

	/* Variants of the honest message built around the real nonce. */
	const size_t n_variants = 12;
	for (size_t i = 0; i < n_variants; i++) {
		if (!fixture_init(&f)) {
			UNIT_FAIL("variant %zu: fixture", i);
			fixture_free(&f);
			continue;
		}
		const char *proof = strstr(f.good_final, ",p=") + 3;
		char m[512];
		switch (i) {
		case 0: /* missing proof */
			snprintf(m, sizeof m, "c=biws,r=%s", f.nonce);
			break;
		case 1: /* empty proof */
			snprintf(m, sizeof m, "c=biws,r=%s,p=", f.nonce);
			break;
		case 2: /* invalid base64 in proof */
			snprintf(m, sizeof m, "c=biws,r=%s,p=%.43s!", f.nonce, proof);
			break;
		case 3: /* proof that decodes to 31 bytes */
			snprintf(m, sizeof m, "c=biws,r=%s,p=%.40sAA==", f.nonce, proof);
			break;
		case 4: /* proof that decodes to 33 bytes */
			snprintf(m, sizeof m, "c=biws,r=%s,p=%.40sAAAA", f.nonce, proof);
			break;
		case 5: /* nonce with its last character dropped */
			snprintf(m, sizeof m, "c=biws,r=%.*s,p=%s", (int)strlen(f.nonce) - 1, f.nonce, proof);
			break;
		case 6: /* nonce with an extra character */
			snprintf(m, sizeof m, "c=biws,r=%sX,p=%s", f.nonce, proof);
			break;
		case 7: /* garbage after the proof */
			snprintf(m, sizeof m, "%s,x=1", f.good_final);
			break;
		case 8: /* channel binding data for 'y' although the client sent 'n' */
			snprintf(m, sizeof m, "c=eSws,r=%s,p=%s", f.nonce, proof);
			break;
		case 9: /* attributes out of order */
			snprintf(m, sizeof m, "r=%s,c=biws,p=%s", f.nonce, proof);
			break;
		case 10: /* base64 whitespace */
			snprintf(m, sizeof m, "c=biws,r=%s,p= %s", f.nonce, proof);
			break;
		default: /* invalid extension name before the proof */
			snprintf(m, sizeof m, "c=biws,r=%s,1=x,p=%s", f.nonce, proof);
			break;
		}
		reply = (char *)"untouched";
		err = NULL;
		if (server_final(&f.s, m, strlen(m), &reply, &err)) {
			UNIT_FAIL("variant %zu accepted: %s", i, m);
			free(reply);
		} else {
			if (!err)
				UNIT_FAIL("variant %zu: no error", i);
			if (err == SCRAM_ERR_WRONG_PASSWORD)
				UNIT_FAIL("variant %zu: malformed reported as wrong password", i);
			if (reply)
				UNIT_FAIL("variant %zu: reply set", i);
		}
		fixture_free(&f);
	}

	/* Every proper prefix of an honest final message is rejected. */
	REQUIRE(fixture_init(&f));
	char *good = xstrdup(f.good_final);
	fixture_free(&f);
	for (size_t n = 0; n < strlen(good); n++) {
		if (!fixture_init(&f)) {
			UNIT_FAIL("prefix %zu: fixture", n);
			fixture_free(&f);
			continue;
		}
		/* Same shape, this fixture's own nonce and proof, cut at n. */
		reply = NULL;
		err = NULL;
		if (server_final(&f.s, f.good_final, n, &reply, &err)) {
			UNIT_FAIL("prefix of length %zu accepted", n);
			free(reply);
		} else if (!err) {
			UNIT_FAIL("prefix %zu: no error", n);
		}
		fixture_free(&f);
	}
	free(good);
}

/* ---- malformed input, client role ---------------------------------------------------------- */

static void expect_client_first_rejected(const char *tmpl, const char *want_in_err, int line)
{
	ScramClient c;
	scram_client_init(&c, "pw");
	char *first = scram_client_first(&c);
	if (!first) {
		UNIT_FAIL("line %d: client first", line);
		scram_client_free(&c);
		return;
	}
	/* "%s" in tmpl is replaced by our client nonce. */
	char m[512];
	const char *hole = strstr(tmpl, "%s");
	if (hole)
		snprintf(m, sizeof m, "%.*s%s%s", (int)(hole - tmpl), tmpl, c.client_nonce, hole + 2);
	else
		snprintf(m, sizeof m, "%s", tmpl);
	const char *err = NULL;
	char *final = client_server_first(&c, m, strlen(m), &err);
	if (final) {
		UNIT_FAIL("line %d: client accepted \"%s\"", line, m);
		free(final);
	} else if (!err) {
		UNIT_FAIL("line %d: no error", line);
	} else if (want_in_err && !strstr(err, want_in_err)) {
		UNIT_FAIL("line %d: error \"%s\" lacks \"%s\"", line, err, want_in_err);
	}
	free(first);
	scram_client_free(&c);
}

TEST(client_server_first_malformed)
{
	expect_client_first_rejected("", NULL, __LINE__);
	expect_client_first_rejected("r=%s", NULL, __LINE__);
	expect_client_first_rejected("r=%sXYZ", NULL, __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==", NULL, __LINE__);
	expect_client_first_rejected("r=%s,s=c2FsdA==,i=4096", "nonce", __LINE__); /* no server part */
	expect_client_first_rejected("r=other%s,s=c2FsdA==,i=4096", "nonce", __LINE__);
	expect_client_first_rejected("r=X,s=c2FsdA==,i=4096%s", "nonce", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA=,i=4096", "salt", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2Fs!A==,i=4096", "salt", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=,i=4096", "salt", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=0", "iteration", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=-1", "iteration", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=10000001", "iteration", __LINE__);
	/* Above the bound: refused before any hashing (one login must not block the loop). */
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=100001", "iterations", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=2147483647", "iterations", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=99999999999999999999", "iteration", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=4096x", "iteration", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=", "iteration", __LINE__);
	expect_client_first_rejected("r=%sXYZ,s=c2FsdA==,i=4096,x=1", "garbage", __LINE__);
	expect_client_first_rejected("s=c2FsdA==,r=%sXYZ,i=4096", NULL, __LINE__);
	expect_client_first_rejected("m=x,r=%sXYZ,s=c2FsdA==,i=4096", NULL, __LINE__);

	/* Embedded NUL, and a message before scram_client_first. */
	ScramClient c;
	scram_client_init(&c, "pw");
	const char *err = NULL;
	CHECK(scram_client_handle_server_first(&c, "r=a,s=c2FsdA==,i=1", 18, &err) == NULL);
	CHECK(err != NULL);
	char *first = scram_client_first(&c);
	REQUIRE(first);
	char m[128];
	int n = snprintf(m, sizeof m, "r=%sXYZ,s=c2FsdA==,i=1", c.client_nonce);
	m[4] = '\0';
	err = NULL;
	CHECK(client_server_first(&c, m, (size_t)n, &err) == NULL);
	CHECK(err != NULL);
	free(first);
	scram_client_free(&c);
}

TEST(client_server_final_malformed)
{
	static const struct {
		const char *msg;
		const char *want;
	} cases[] = {
		{"e=invalid-proof", "invalid-proof"},
		{"e=unknown-user", "unknown-user"},
		{"e=something-else", "error received from server"},
		{"e", NULL},
		{"", NULL},
		{"v", NULL},
		{"v=", NULL},
		{"v=AAAA", NULL},
		{"v=!!!!", NULL},
		{"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", NULL},
		{"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=,x=1", NULL},
		{"x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", NULL},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		ScramClient c;
		scram_client_init(&c, "pencil");
		char *first = scram_client_first(&c);
		REQUIRE(first);
		free(first);
		free(c.client_nonce);
		c.client_nonce = xstrdup(RFC_CLIENT_NONCE);
		free(c.client_first_bare);
		c.client_first_bare = xstrdup("n=user,r=" RFC_CLIENT_NONCE);
		const char *err = NULL;
		char *final = client_server_first(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &err);
		REQUIRE(final);
		free(final);
		err = NULL;
		if (client_server_final(&c, cases[i].msg, strlen(cases[i].msg), &err))
			UNIT_FAIL("client accepted server-final \"%s\"", cases[i].msg);
		else if (!err)
			UNIT_FAIL("no error for \"%s\"", cases[i].msg);
		else if (cases[i].want && !strstr(err, cases[i].want))
			UNIT_FAIL("error \"%s\" for \"%s\" lacks \"%s\"", err, cases[i].msg, cases[i].want);
		CHECK(c.state != SCRAM_CLIENT_DONE);
		/* Every proper prefix of the real answer is refused too. */
		for (size_t n = 0; n < strlen(RFC_SERVER_FINAL); n++) {
			err = NULL;
			if (client_server_final(&c, RFC_SERVER_FINAL, n, &err))
				UNIT_FAIL("prefix %zu of server-final accepted", n);
			else if (!err)
				UNIT_FAIL("prefix %zu: no error", n);
		}
		scram_client_free(&c);
	}
	/* Verification before the exchange got there is a state error. */
	ScramClient c;
	scram_client_init(&c, "pencil");
	const char *err = NULL;
	CHECK(!client_server_final(&c, RFC_SERVER_FINAL, strlen(RFC_SERVER_FINAL), &err));
	CHECK(err != NULL);
	scram_client_free(&c);
}

/* ---- deterministic mutation fuzzing (meaningful under ASan/UBSan) ------------------------- */

static uint32_t fuzz_state = 0x12345678u;

static uint32_t fuzz_next(void)
{
	/* xorshift32 */
	fuzz_state ^= fuzz_state << 13;
	fuzz_state ^= fuzz_state >> 17;
	fuzz_state ^= fuzz_state << 5;
	return fuzz_state;
}

/* Copies src into dst (capacity cap) with 1-4 random edits; returns the new length. */
static size_t fuzz_mutate(const char *src, char *dst, size_t cap)
{
	static const char interesting[] = ",=nypcrsiva\0\x01\xff+/AZ";
	size_t len = strlen(src);
	memcpy(dst, src, len);
	int edits = 1 + (int)(fuzz_next() % 4);
	for (int e = 0; e < edits; e++) {
		uint32_t r = fuzz_next();
		size_t pos = len ? fuzz_next() % len : 0;
		char ch = (r & 8) ? interesting[fuzz_next() % (sizeof interesting - 1)] : (char)fuzz_next();
		switch (r % 4) {
		case 0: /* overwrite */
			if (len)
				dst[pos] = ch;
			break;
		case 1: /* insert */
			if (len + 1 < cap) {
				memmove(dst + pos + 1, dst + pos, len - pos);
				dst[pos] = ch;
				len++;
			}
			break;
		case 2: /* delete */
			if (len) {
				memmove(dst + pos, dst + pos + 1, len - pos - 1);
				len--;
			}
			break;
		default: /* truncate */
			len = pos;
			break;
		}
	}
	return len;
}

TEST(fuzz_mutated_messages)
{
	char buf[600];
	int accepted = 0;
	for (int i = 0; i < 3000; i++) {
		/* server role, client-first */
		ScramServer s;
		scram_server_init(&s, NULL);
		size_t n = fuzz_mutate("n,,n=,r=rOprNGfwEbeRWgbNEkqO", buf, sizeof buf);
		char *reply = NULL;
		const char *err = NULL;
		if (server_first(&s, buf, n, &reply, &err)) {
			CHECK(reply != NULL && starts_with(reply, "r="));
			accepted++;
		} else {
			CHECK(err != NULL && reply == NULL);
		}
		free(reply);
		scram_server_free(&s);
	}
	CHECK(accepted > 0); /* some mutations (e.g. in the nonce) are still valid */
	for (int i = 0; i < 300; i++) {
		/* server role, client-final */
		FinalFixture f;
		REQUIRE(fixture_init(&f));
		size_t n = fuzz_mutate(f.good_final, buf, sizeof buf);
		char *reply = NULL;
		const char *err = NULL;
		bool ok = server_final(&f.s, buf, n, &reply, &err);
		/* Only the untouched message may pass. */
		if (ok && !(n == strlen(f.good_final) && memcmp(buf, f.good_final, n) == 0))
			UNIT_FAIL("mutated client-final accepted: %.*s", (int)n, buf);
		if (!ok)
			CHECK(err != NULL && reply == NULL);
		free(reply);
		fixture_free(&f);

		/* client role, server-first and server-final */
		ScramClient c;
		scram_client_init(&c, "pencil");
		char *first = scram_client_first(&c);
		REQUIRE(first);
		free(first);
		free(c.client_nonce);
		c.client_nonce = xstrdup(RFC_CLIENT_NONCE);
		free(c.client_first_bare);
		c.client_first_bare = xstrdup("n=user,r=" RFC_CLIENT_NONCE);
		/* Keep PBKDF2 cheap: lower the iteration count in the template. */
		n = fuzz_mutate("r=" RFC_NONCE ",s=" RFC_SALT ",i=3", buf, sizeof buf);
		err = NULL;
		char *final = client_server_first(&c, buf, n, &err);
		if (!final)
			CHECK(err != NULL);
		free(final);
		scram_client_free(&c);

		scram_client_init(&c, "pencil");
		first = scram_client_first(&c);
		REQUIRE(first);
		free(first);
		free(c.client_nonce);
		c.client_nonce = xstrdup(RFC_CLIENT_NONCE);
		free(c.client_first_bare);
		c.client_first_bare = xstrdup("n=user,r=" RFC_CLIENT_NONCE);
		final = client_server_first(&c, RFC_SERVER_FIRST, strlen(RFC_SERVER_FIRST), &err);
		REQUIRE(final);
		free(final);
		n = fuzz_mutate(RFC_SERVER_FINAL, buf, sizeof buf);
		err = NULL;
		ok = client_server_final(&c, buf, n, &err);
		if (ok && !(n == strlen(RFC_SERVER_FINAL) && memcmp(buf, RFC_SERVER_FINAL, n) == 0))
			UNIT_FAIL("mutated server-final accepted: %.*s", (int)n, buf);
		if (!ok)
			CHECK(err != NULL);
		scram_client_free(&c);
	}
}

/* ---- md5 ---------------------------------------------------------------------------------- */

/*
 * python3 -c "import hashlib;print('md5'+hashlib.md5(b'secretapp').hexdigest())" — also what
 * PostgreSQL 15 stored for CREATE ROLE app PASSWORD 'secret' with password_encryption = md5.
 */
#define MD5_APP_SECRET "md56a422f785c9e20873908ce25d1736ae2"
/* 'md5' + hashlib.md5(b'6a422f785c9e20873908ce25d1736ae2' + bytes([1,2,3,4])).hexdigest() */
#define MD5_APP_SECRET_SALT_01020304 "md5911f527656472583a006e7727877b33e"
/* same with salt de ad be ef */
#define MD5_APP_SECRET_SALT_DEADBEEF "md5293b6595e2bc31835e11a0b106258764"

TEST(md5_hashes)
{
	char out[36];
	memset(out, 'X', sizeof out);
	scram_md5_password_hash("app", "secret", out);
	CHECK_STR(out, MD5_APP_SECRET);
	CHECK(scram_is_md5_hash(out));
	scram_md5_password_hash("app", "Secret", out);
	CHECK(strcmp(out, MD5_APP_SECRET) != 0);
	scram_md5_password_hash("ap", "psecret", out); /* same concatenation order test */
	CHECK(strcmp(out, MD5_APP_SECRET) != 0);
	scram_md5_password_hash("secret", "app", out); /* password || user, not user || password */
	CHECK(strcmp(out, MD5_APP_SECRET) != 0);

	static const uint8_t salt1[4] = {0x01, 0x02, 0x03, 0x04};
	static const uint8_t salt2[4] = {0xde, 0xad, 0xbe, 0xef};
	scram_md5_salted(MD5_APP_SECRET, salt1, out);
	CHECK_STR(out, MD5_APP_SECRET_SALT_01020304);
	scram_md5_salted(MD5_APP_SECRET, salt2, out);
	CHECK_STR(out, MD5_APP_SECRET_SALT_DEADBEEF);

	CHECK(!scram_is_md5_hash(NULL));
	CHECK(!scram_is_md5_hash(""));
	CHECK(!scram_is_md5_hash("md5"));
	CHECK(!scram_is_md5_hash("md56a422f785c9e20873908ce25d1736ae"));
	CHECK(!scram_is_md5_hash("md56a422f785c9e20873908ce25d1736ae22"));
	CHECK(!scram_is_md5_hash("md56A422F785C9E20873908CE25D1736AE2"));
	CHECK(!scram_is_md5_hash("md56a422f785c9e20873908ce25d1736aeg"));
	CHECK(!scram_is_md5_hash("MD56a422f785c9e20873908ce25d1736ae2"));
}

TEST(md5_check)
{
	static const uint8_t salt1[4] = {0x01, 0x02, 0x03, 0x04};
	static const uint8_t salt2[4] = {0xde, 0xad, 0xbe, 0xef};
	const char *resp = MD5_APP_SECRET_SALT_01020304;
	/* Right password, stored plain or as md5 hash. */
	CHECK(scram_md5_check("secret", "app", salt1, resp));
	CHECK(scram_md5_check(MD5_APP_SECRET, "app", salt1, resp));
	CHECK(scram_md5_check(MD5_APP_SECRET, "app", salt2, MD5_APP_SECRET_SALT_DEADBEEF));
	/* Wrong password / user / salt. */
	CHECK(!scram_md5_check("Secret", "app", salt1, resp));
	CHECK(!scram_md5_check("secret", "bob", salt1, resp));
	CHECK(!scram_md5_check("secret", "app", salt2, resp));
	CHECK(!scram_md5_check(MD5_APP_SECRET, "app", salt2, resp));
	/* Responses of the wrong length or case. */
	CHECK(!scram_md5_check("secret", "app", salt1, ""));
	CHECK(!scram_md5_check("secret", "app", salt1, "md5911f527656472583a006e7727877b33"));
	CHECK(!scram_md5_check("secret", "app", salt1, "md5911f527656472583a006e7727877b33e0"));
	CHECK(!scram_md5_check("secret", "app", salt1, "MD5911F527656472583A006E7727877B33E"));
	CHECK(!scram_md5_check("secret", "app", salt1, NULL));
	/* A client replaying the unsalted hash does not pass. */
	CHECK(!scram_md5_check("secret", "app", salt1, MD5_APP_SECRET));
	/* md5 cannot be checked against a SCRAM verifier (as PostgreSQL), not even by a client
	 * that knows the verifier text and treats it as a plain password. */
	CHECK(!scram_md5_check(PY_VERIFIER_SECRET, "app", salt1, resp));
	char vh[36], vr[36];
	scram_md5_password_hash("app", PY_VERIFIER_SECRET, vh);
	scram_md5_salted(vh, salt1, vr);
	CHECK(!scram_md5_check(PY_VERIFIER_SECRET, "app", salt1, vr));
	/* ...whereas an unparsable "SCRAM-SHA-256$..." string is just a plain password. */
	scram_md5_password_hash("app", "SCRAM-SHA-256$junk", vh);
	scram_md5_salted(vh, salt1, vr);
	CHECK(scram_md5_check("SCRAM-SHA-256$junk", "app", salt1, vr));

	/* Round trip through the public helpers for another user. */
	char h[36], r[36];
	scram_md5_password_hash("alice", "pa55", h);
	scram_md5_salted(h, salt2, r);
	CHECK(scram_md5_check("pa55", "alice", salt2, r));
	CHECK(scram_md5_check(h, "alice", salt2, r));
	CHECK(!scram_md5_check("pa56", "alice", salt2, r));
}

TEST(secure_equal)
{
	CHECK(scram_secure_equal("abc", "abc", 3));
	CHECK(!scram_secure_equal("abc", "abd", 3));
	CHECK(!scram_secure_equal("\x00\x01", "\x01\x01", 2));
	CHECK(scram_secure_equal("abc", "abd", 2));
	CHECK(scram_secure_equal("x", "y", 0));
}

int main(void)
{
	RUN(rfc7677_verifier_parses_and_formats);
	RUN(rfc7677_server_role);
	RUN(rfc7677_server_role_wrong_proof);
	RUN(rfc7677_client_role);
	RUN(known_verifiers_for_secret);
	RUN(verifier_from_password_round_trip);
	RUN(verifier_parse_rejects_malformed);
	RUN(server_cbind_flags_and_extensions);
	RUN(exchange_right_and_wrong_password);
	RUN(mock_exchange_for_unknown_users);
	RUN(client_done_only_after_server_signature);
	RUN(server_first_malformed);
	RUN(server_final_malformed);
	RUN(client_server_first_malformed);
	RUN(client_server_final_malformed);
	RUN(fuzz_mutated_messages);
	RUN(md5_hashes);
	RUN(md5_check);
	RUN(secure_equal);
	return unit_summary();
}
