/*
 * main — the command line: parse options, load proxy.yaml, then run the event loop in the
 * foreground (logging to stderr) or, with --check, only validate the file.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "config.h"
#include "log.h"
#include "runtime.h"

static void usage(FILE *out)
{
	fprintf(out,
		"pgrelay %s: a pooling, routing and caching PostgreSQL proxy\n"
		"\n"
		"Usage:\n"
		"  pgrelay -c FILE            run in the foreground with FILE (proxy.yaml), logging to stderr\n"
		"  pgrelay --check -c FILE    validate FILE and exit 0 (valid) or 1 (errors on stderr)\n"
		"  pgrelay route -c FILE [--database DB] [--user U] [--search-path P] 'SQL'\n"
		"                             print where a statement would go and why, without running it\n"
		"  pgrelay migrate -c FILE [--status] [--dir DIR]\n"
		"                             apply pending migrations/<service>/NNNN_*.sql to each primary\n"
		"                             (--status: list applied/pending/changed files, apply nothing)\n"
		"  pgrelay --version          print the version\n"
		"  pgrelay --help             print this help\n"
		"\n"
		"Signals: SIGHUP reloads FILE; SIGTERM stops accepting and exits once open transactions\n"
		"finish (or after proxy.shutdown_timeout); SIGINT exits at once.\n",
		PGRELAY_VERSION);
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "route") == 0)
		return route_command(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "migrate") == 0)
		return migrate_command(argc - 1, argv + 1);
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"check", no_argument, NULL, 'C'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	bool check = false;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:Vh", options, NULL)) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'C': check = true; break;
		case 'V': printf("pgrelay %s\n", PGRELAY_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pgrelay: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	if (!path) {
		fprintf(stderr, "pgrelay: no configuration file given (use -c FILE)\n");
		usage(stderr);
		return 2;
	}
	char err[8192];
	Config *cfg = config_load(path, err, sizeof(err));
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		if (!check)
			fprintf(stderr, "pgrelay: not started: %s is invalid\n", path);
		return 1;
	}
	if (check) {
		for (size_t i = 0; i < cfg->n_warnings; i++)
			fprintf(stderr, "warning: %s\n", cfg->warnings[i]);
		printf("%s: configuration is valid (%zu users, %zu databases, %zu services)\n", path, cfg->n_users,
		       cfg->n_databases, cfg->n_services);
		config_unref(cfg);
		return 0;
	}
	Runtime rt;
	if (!runtime_init(&rt, cfg, path)) {
		runtime_free(&rt);
		return 1;
	}
	int status = runtime_run(&rt);
	runtime_free(&rt);
	return status;
}
