/*
 * fuzz_startup — feeds: the bytes a client sends before login, as a stream of startup-family
 * packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), framed as the client's
 * startup reader frames them (length word, 8 .. PROTO_STARTUP_MAX_LEN). Each packet goes through
 * proto_parse_startup; a StartupMessage's parameters through what the client does with them:
 * params_parse_options for "options", params_name_valid, params_set.
 * Checks: no memory error, leak or undefined behaviour (ASan/UBSan); every parameter name and
 * value the parser returns lies inside the packet and is NUL-terminated there; a CancelRequest
 * is exactly 16 bytes and an SSLRequest 8.
 */
#include "fuzz.h"
#include "params.h"
#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t pos = 0;
	while (size - pos >= 4) {
		uint32_t len = proto_get_u32(data + pos);
		if (len < 8 || len > PROTO_STARTUP_MAX_LEN || len > size - pos)
			break;
		uint8_t *packet = fuzz_memdup(data + pos, len);
		pos += len;
		ProtoStartup st;
		const char *err = proto_parse_startup(packet, len, &st);
		if (!err) {
			if (st.code == PROTO_CODE_CANCEL)
				FUZZ_ASSERT(len == 16);
			if (st.code == PROTO_CODE_SSL || st.code == PROTO_CODE_GSSENC)
				FUZZ_ASSERT(len == 8);
			FUZZ_ASSERT(st.n_params <= PROTO_STARTUP_MAX_PARAMS);
			ParamList params;
			params_init(&params);
			for (size_t i = 0; i < st.n_params; i++) {
				const uint8_t *n = (const uint8_t *)st.names[i], *v = (const uint8_t *)st.values[i];
				FUZZ_ASSERT(n >= packet + 8 && n < packet + len);
				FUZZ_ASSERT(v >= packet + 8 && v < packet + len);
				FUZZ_ASSERT(memchr(n, 0, (size_t)(packet + len - n)) != NULL);
				FUZZ_ASSERT(memchr(v, 0, (size_t)(packet + len - v)) != NULL);
				if (strcmp(st.names[i], "options") == 0)
					(void)params_parse_options(st.values[i], &params);
				else if (params_name_valid(st.names[i]))
					params_set(&params, st.names[i], st.values[i]);
			}
			(void)params_fingerprint(&params);
			params_free(&params);
		}
		free(packet);
	}
	return 0;
}
