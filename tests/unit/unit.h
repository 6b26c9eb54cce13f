/*
 * unit.h — the smallest useful C test framework for pgrelay's unit tests.
 *
 * A test file defines functions with TEST(name) { ... }, lists them in main with RUN(name), and
 * returns unit_summary(). CHECK* macros record a failure and go on; REQUIRE* stop the test.
 */
#ifndef PGRELAY_UNIT_H
#define PGRELAY_UNIT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int unit_failed_checks;
static int unit_tests_run, unit_tests_failed;
static int unit_current_failed;

#define TEST(name) static void name(void)

#define UNIT_FAIL(fmt, ...)                                                                    \
	do {                                                                                   \
		fprintf(stderr, "  %s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__);          \
		unit_failed_checks++;                                                          \
		unit_current_failed = 1;                                                       \
	} while (0)

#define CHECK(cond)                                                                            \
	do {                                                                                   \
		if (!(cond))                                                                   \
			UNIT_FAIL("CHECK(%s) failed", #cond);                                  \
	} while (0)

#define REQUIRE(cond)                                                                          \
	do {                                                                                   \
		if (!(cond)) {                                                                 \
			UNIT_FAIL("REQUIRE(%s) failed", #cond);                                \
			return;                                                                \
		}                                                                              \
	} while (0)

#define CHECK_INT(a, b)                                                                        \
	do {                                                                                   \
		long long unit_a_ = (long long)(a), unit_b_ = (long long)(b);                  \
		if (unit_a_ != unit_b_)                                                        \
			UNIT_FAIL("%s == %lld, expected %s == %lld", #a, unit_a_, #b, unit_b_);  \
	} while (0)

#define CHECK_STR(a, b)                                                                        \
	do {                                                                                   \
		const char *unit_a_ = (a), *unit_b_ = (b);                                     \
		if (!unit_a_ || !unit_b_ || strcmp(unit_a_, unit_b_) != 0)                     \
			UNIT_FAIL("%s == \"%s\", expected \"%s\"", #a, unit_a_ ? unit_a_ : "(null)", \
				  unit_b_ ? unit_b_ : "(null)");                               \
	} while (0)

#define CHECK_CONTAINS(haystack, needle)                                                       \
	do {                                                                                   \
		const char *unit_h_ = (haystack), *unit_n_ = (needle);                         \
		if (!unit_h_ || !strstr(unit_h_, unit_n_))                                     \
			UNIT_FAIL("%s == \"%s\" does not contain \"%s\"", #haystack,           \
				  unit_h_ ? unit_h_ : "(null)", unit_n_);                      \
	} while (0)

#define RUN(name)                                                                              \
	do {                                                                                   \
		unit_current_failed = 0;                                                       \
		unit_tests_run++;                                                              \
		name();                                                                        \
		if (unit_current_failed)                                                       \
			unit_tests_failed++;                                                   \
		printf("%s %s\n", unit_current_failed ? "FAIL" : "ok  ", #name);              \
	} while (0)

static inline int unit_summary(void)
{
	printf("%d tests, %d failed (%d failed checks)\n", unit_tests_run, unit_tests_failed,
	       unit_failed_checks);
	return unit_tests_failed ? 1 : 0;
}

#ifdef PGRELAY_CONFIG_H
/* The test program's configuration from YAML text (include config.h first); exits with the loader's
 * message when the text does not load, since no test of the program can run without it. */
static inline Config *unit_config(const char *yaml)
{
	char err[4096];
	Config *cfg = config_load_string("t.yaml", yaml, err, sizeof err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	return cfg;
}
#endif

#endif
