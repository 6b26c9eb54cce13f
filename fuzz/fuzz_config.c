/*
 * fuzz_config — feeds: a proxy.yaml text to config_load_string (libyaml, then pgrelay's schema:
 * listen, services with primaries and replicas, databases, users and their secrets, routing
 * rules, pool, cache, admin, log, ...). Texts naming a file to read (a "_file" key, such as
 * cache.redis.signing_key_file) are skipped: the fuzzer must not read the machine's files.
 * Checks: no memory error, leak or undefined behaviour; an error message exactly when loading
 * fails; every user and database of a loaded configuration can be found by name.
 */
#include "config.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size > 64 * 1024 || memmem(data, size, "_file", 5))
		return 0;
	char *yaml = fuzz_strndup(data, size);
	char err[512];
	err[0] = 0;
	Config *cfg = config_load_string("fuzz.yaml", yaml, err, sizeof err);
	if (cfg) {
		for (size_t i = 0; i < cfg->n_users; i++)
			FUZZ_ASSERT(config_find_user(cfg, cfg->users[i].name) != NULL);
		for (size_t i = 0; i < cfg->n_databases; i++)
			FUZZ_ASSERT(config_find_database(cfg, cfg->databases[i].name) != NULL);
		Config *ref = config_ref(cfg);
		config_unref(ref);
		config_unref(cfg);
	} else {
		FUZZ_ASSERT(err[0] != 0);
	}
	free(yaml);
	return 0;
}
