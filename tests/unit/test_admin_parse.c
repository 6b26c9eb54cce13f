/*
 * test_admin_parse — the admin console's command lexer: separators, case, quotes, the word
 * limit, long words cut, unterminated quotes, and input that is not NUL-terminated.
 */
#include "admin_parse.h"
#include "unit.h"

#define S(lit) lit, sizeof(lit) - 1

TEST(plain_words)
{
	char w[4][ADMIN_WORD_MAX];
	CHECK_INT(admin_split_words(S("SHOW POOLS;"), w, 4), 2);
	CHECK_STR(w[0], "show");
	CHECK_STR(w[1], "pools");
	CHECK_INT(admin_split_words(S("  ;;  "), w, 4), 0);
	CHECK_INT(admin_split_words(S(""), w, 4), 0);
}

TEST(set_and_quotes)
{
	char w[4][ADMIN_WORD_MAX];
	CHECK_INT(admin_split_words(S("SET log_level = 'DeBug';"), w, 4), 3);
	CHECK_STR(w[0], "set");
	CHECK_STR(w[1], "log_level");
	CHECK_STR(w[2], "DeBug");
	CHECK_INT(admin_split_words(S("PAUSE \"My DB\""), w, 4), 2);
	CHECK_STR(w[1], "My DB");
	/* unterminated quote: the rest of the text */
	CHECK_INT(admin_split_words(S("kill 'abc"), w, 4), 2);
	CHECK_STR(w[1], "abc");
	CHECK_INT(admin_split_words(S("'"), w, 4), 1);
	CHECK_STR(w[0], "");
}

TEST(limits)
{
	char w[2][ADMIN_WORD_MAX];
	CHECK_INT(admin_split_words(S("a b c d e"), w, 2), 2);
	CHECK_STR(w[1], "b");
	char long_word[300];
	memset(long_word, 'x', sizeof long_word);
	CHECK_INT(admin_split_words(long_word, sizeof long_word, w, 2), 2); /* cut at 127, then the rest */
	CHECK_INT(strlen(w[0]), ADMIN_WORD_MAX - 1);
	CHECK_INT(strlen(w[1]), ADMIN_WORD_MAX - 1);
	/* the length bounds the read: bytes after it are not looked at */
	CHECK_INT(admin_split_words("show poolsXYZ", 10, w, 2), 2);
	CHECK_STR(w[1], "pools");
}

int main(void)
{
	RUN(plain_words);
	RUN(set_and_quotes);
	RUN(limits);
	return unit_summary();
}
