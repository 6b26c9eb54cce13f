/*
 * admin_parse — the pure half of the admin console (see admin.h): splitting a console command
 * ("SHOW POOLS;", "SET log_level = 'debug'", "PAUSE \"My DB\"") into words.
 *
 * Owns: the command lexer only. No sockets, no runtime: linked into the core library, unit-tested
 * and fuzzed on its own. What the words mean stays in admin.c.
 */
#ifndef PGRELAY_ADMIN_PARSE_H
#define PGRELAY_ADMIN_PARSE_H

#include <stddef.h>

#define ADMIN_WORD_MAX 128 /* bytes of a word, its NUL included; longer words are cut */

/*
 * Splits sql (len bytes, no NUL needed) into at most max words written to out: blanks, ';' and
 * '=' separate words; a word in '...' or "..." keeps its case and blanks (the quotes are removed),
 * other words are lower-cased. Returns the number of words.
 */
size_t admin_split_words(const char *sql, size_t len, char out[][ADMIN_WORD_MAX], size_t max);

#endif
