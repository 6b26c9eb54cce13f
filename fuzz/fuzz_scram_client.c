/*
 * fuzz_scram_client — feeds: the SCRAM-SHA-256 messages a PostgreSQL server sends when pgrelay
 * logs in to it (the client role): the server-first-message (AuthenticationSASLContinue data),
 * then the server-final-message (AuthenticationSASLFinal data), as parts separated by
 * "\n----\n". In the first, the token "@N@" is replaced by pgrelay's client nonce (random per
 * run), so the fuzzer gets past the nonce check. Inputs asking for more than 64 PBKDF2
 * iterations ("i=" followed by a larger number) are skipped: a legitimate cost (bounded by the
 * parser), not a finding, and it would slow the fuzzer a thousandfold.
 * Checks: no memory error, leak or undefined behaviour; a client-final-message exactly when the
 * call succeeds, starting "c=biws,r=" and carrying the server's nonce.
 */
#include "fuzz.h"
#include "scram.h"

#include <stdbool.h>

static bool too_many_iterations(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i + 2 <= n; i++) {
		if (p[i] != 'i' || p[i + 1] != '=')
			continue;
		long v = 0;
		for (size_t k = i + 2; k < n && p[k] >= '0' && p[k] <= '9'; k++) {
			v = v * 10 + (p[k] - '0');
			if (v > 64)
				return true;
		}
	}
	return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t first_len, final_len;
	const uint8_t *first = fuzz_next_part(&data, &size, &first_len);
	const uint8_t *final = fuzz_next_part(&data, &size, &final_len);
	if (too_many_iterations(first, first_len))
		return 0;

	ScramClient c;
	scram_client_init(&c, "pencil");
	char *cf = scram_client_first(&c);
	FUZZ_ASSERT(cf != NULL && strncmp(cf, "n,,n=,r=", 8) == 0);
	free(cf);

	/* replace @N@ by the client nonce */
	size_t nl = strlen(c.client_nonce);
	char *msg = malloc(first_len * (nl > 3 ? nl : 3) / 3 + 1);
	if (!msg)
		abort();
	size_t o = 0;
	for (size_t i = 0; i < first_len; i++) {
		if (i + 3 <= first_len && memcmp(first + i, "@N@", 3) == 0) {
			memcpy(msg + o, c.client_nonce, nl);
			o += nl;
			i += 2;
		} else {
			msg[o++] = (char)first[i];
		}
	}
	char *exact = (char *)fuzz_memdup((const uint8_t *)msg, o);
	free(msg);

	const char *err = NULL;
	char *client_final = scram_client_handle_server_first(&c, exact, o, &err);
	FUZZ_ASSERT(client_final || err);
	if (client_final) {
		FUZZ_ASSERT(strncmp(client_final, "c=biws,r=", 9) == 0);
		FUZZ_ASSERT(strncmp(client_final + 9, c.client_nonce, nl) == 0);
		free(client_final);
		char *fm = (char *)fuzz_memdup(final, final_len);
		(void)scram_client_verify_server_final(&c, fm, final_len, &err);
		free(fm);
	}
	free(exact);
	scram_client_free(&c);
	return 0;
}
