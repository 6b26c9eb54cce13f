/*
 * admin_parse — the admin console's command lexer (see admin_parse.h).
 */
#include "admin_parse.h"

#include <ctype.h>

size_t admin_split_words(const char *sql, size_t len, char out[][ADMIN_WORD_MAX], size_t max)
{
	size_t n = 0, i = 0;
	while (i < len && n < max) {
		while (i < len && (isspace((unsigned char)sql[i]) || sql[i] == ';' || sql[i] == '='))
			i++;
		if (i >= len)
			break;
		size_t k = 0;
		if (sql[i] == '\'' || sql[i] == '"') {
			char q = sql[i++];
			while (i < len && sql[i] != q && k + 1 < ADMIN_WORD_MAX)
				out[n][k++] = sql[i++];
			i++;
		} else {
			while (i < len && !isspace((unsigned char)sql[i]) && sql[i] != ';' && sql[i] != '=' &&
			       k + 1 < ADMIN_WORD_MAX)
				out[n][k++] = (char)tolower((unsigned char)sql[i++]);
		}
		out[n][k] = 0;
		n++;
	}
	return n;
}
