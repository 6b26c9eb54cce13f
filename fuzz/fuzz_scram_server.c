/*
 * fuzz_scram_server — feeds: the SCRAM-SHA-256 messages a client sends when pgrelay checks its
 * password (the server role): the client-first-message (SASLInitialResponse data), then the
 * client-final-message (SASLResponse), as parts separated by "\n----\n". In the final message
 * the token "@N@" is replaced by the nonce the server chose (random per run), so the fuzzer gets
 * past the nonce check to the proof. A third part, when present, is a verifier text as in
 * proxy.yaml ("SCRAM-SHA-256$<iterations>:<salt>$<stored>:<server>"), parsed with
 * scram_parse_verifier and formatted back; the exchange uses it when it parses, else a fixed
 * verifier (for the password "pencil"); a fourth part runs the mock exchange of an unknown user.
 * Also scram_md5_check of the first part against a fixed md5 secret.
 * Checks: no memory error, leak or undefined behaviour; a reply exactly when the call succeeds;
 * a verifier that parses formats to a text that parses to the same verifier.
 */
#include "fuzz.h"
#include "scram.h"

static ScramVerifier fixed;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (!scram_verifier_from_password("pencil", 1, &fixed))
		abort();
	return 0;
}

/* msg with every "@N@" replaced by nonce, NUL-terminated (the length excludes it). */
static char *with_nonce(const uint8_t *msg, size_t len, const char *nonce, size_t *out_len)
{
	size_t nl = nonce ? strlen(nonce) : 0;
	char *out = malloc(len * (nl > 3 ? nl : 3) / 3 + 4);
	if (!out)
		abort();
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (nonce && i + 3 <= len && memcmp(msg + i, "@N@", 3) == 0) {
			memcpy(out + o, nonce, nl);
			o += nl;
			i += 2;
		} else {
			out[o++] = (char)msg[i];
		}
	}
	out[o] = 0;
	*out_len = o;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t first_len, final_len, ver_len, mock_len;
	const uint8_t *first = fuzz_next_part(&data, &size, &first_len);
	const uint8_t *final = fuzz_next_part(&data, &size, &final_len);
	const uint8_t *ver = size ? fuzz_next_part(&data, &size, &ver_len) : NULL;
	bool mock = size && fuzz_next_part(&data, &size, &mock_len) != NULL;

	ScramVerifier parsed, *v = &fixed;
	if (ver) {
		char *text = fuzz_strndup(ver, ver_len);
		if (scram_is_verifier(text) && scram_parse_verifier(text, &parsed)) {
			char *again = scram_verifier_format(&parsed);
			FUZZ_ASSERT(again != NULL);
			ScramVerifier back;
			FUZZ_ASSERT(scram_parse_verifier(again, &back));
			FUZZ_ASSERT(back.iterations == parsed.iterations && back.salt_len == parsed.salt_len &&
				    memcmp(back.salt, parsed.salt, parsed.salt_len) == 0 &&
				    memcmp(back.stored_key, parsed.stored_key, SCRAM_KEY_LEN) == 0 &&
				    memcmp(back.server_key, parsed.server_key, SCRAM_KEY_LEN) == 0);
			free(again);
			v = &parsed;
		}
		free(text);
	}

	ScramServer s;
	scram_server_init(&s, mock ? NULL : v);
	char *reply = NULL;
	const char *err = NULL;
	char *msg = (char *)fuzz_memdup(first, first_len);
	bool ok = scram_server_handle_first(&s, msg, first_len, &reply, &err);
	free(msg);
	FUZZ_ASSERT(ok == (reply != NULL));
	FUZZ_ASSERT(ok || err != NULL);
	if (ok) {
		free(reply);
		reply = NULL;
		size_t fl;
		char *fm = with_nonce(final, final_len, s.nonce, &fl);
		ok = scram_server_handle_final(&s, fm, fl, &reply, &err);
		FUZZ_ASSERT(ok == (reply != NULL));
		FUZZ_ASSERT(!ok || !mock);
		free(reply);
		free(fm);
	}
	scram_server_free(&s);

	/* md5: the PasswordMessage text against a fixed secret */
	char *resp = fuzz_strndup(first, first_len);
	static const uint8_t salt[4] = {1, 2, 3, 4};
	(void)scram_md5_check("md5a3556571e93b0d20722ba62be61e8c2d", "alice", salt, resp);
	(void)scram_md5_check("pencil", "alice", salt, resp);
	free(resp);
	return 0;
}
