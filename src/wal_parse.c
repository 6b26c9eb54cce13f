/*
 * wal_parse — the pure half of the WAL listener (see wal.h): what kind of line the test_decoding
 * output plugin sent, the table names of its change lines (unquoted), replication slot names and
 * LSN text.
 *
 * Owns: the knowledge of test_decoding's text format (PostgreSQL 15, include-xids off):
 *   BEGIN
 *   table public.t: INSERT: id[integer]:1 ...
 *   table "My Schema"."T": UPDATE: ...          (quote_identifier: "" inside quotes is one ")
 *   table s.t: DELETE: ...
 *   table public.a, public.b: TRUNCATE: (no-flags)   (one line for every table of a TRUNCATE)
 *   COMMIT
 * plus lines this module calls "other" (logical messages: "message: transactional: ..."). Names
 * are read from the start of the line with an identifier lexer, so column values after the
 * operation (which may contain anything, "table x.y: INSERT:" included) never confuse it.
 * No sockets, no libevent: linked into the core library and unit-tested on its own.
 */
#include <stdio.h>
#include <string.h>

#include "wal.h"

static bool has_prefix(const char *line, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);
	return len >= n && memcmp(line, prefix, n) == 0;
}

/* "WORD" alone or followed by a space ("BEGIN 1234", "COMMIT 1234 (at ...)" with other options). */
static bool is_word(const char *line, size_t len, const char *word)
{
	size_t n = strlen(word);
	return has_prefix(line, len, word) && (len == n || line[n] == ' ');
}

WalLineKind wal_line_kind(const char *line, size_t len)
{
	if (!line)
		return WAL_LINE_OTHER;
	if (is_word(line, len, "BEGIN"))
		return WAL_LINE_BEGIN;
	if (is_word(line, len, "COMMIT"))
		return WAL_LINE_COMMIT;
	if (has_prefix(line, len, "table "))
		return WAL_LINE_TABLE;
	return WAL_LINE_OTHER;
}

/* One identifier at line[*p]: "quoted" ("" is a quote) or bare (up to . : , space or a quote).
 * Writes it NUL-terminated to out; false when malformed, empty or too long for out. */
static bool read_ident(const char *line, size_t len, size_t *p, char *out, size_t out_size)
{
	size_t i = *p, n = 0;
	if (i >= len || out_size == 0)
		return false;
	if (line[i] == '"') {
		i++;
		for (;;) {
			if (i >= len)
				return false; /* unterminated */
			char c = line[i];
			if (c == '"') {
				if (i + 1 < len && line[i + 1] == '"') {
					i += 2;
				} else {
					i++;
					break;
				}
			} else {
				i++;
			}
			if (c == '\0' || n + 1 >= out_size)
				return false;
			out[n++] = c;
		}
	} else {
		while (i < len) {
			char c = line[i];
			if (c == '.' || c == ':' || c == ',' || c == ' ' || c == '"')
				break;
			if (c == '\0' || n + 1 >= out_size)
				return false;
			out[n++] = c;
			i++;
		}
	}
	if (n == 0)
		return false;
	out[n] = '\0';
	*p = i;
	return true;
}

/* line[p] is the ':' after the last name: one of the four operations must follow. */
static bool known_operation(const char *line, size_t len, size_t p)
{
	static const char *const ops[] = {": INSERT:", ": UPDATE:", ": DELETE:", ": TRUNCATE:"};
	for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
		if (has_prefix(line + p, len - p, ops[i]))
			return true;
	return false;
}

int wal_parse_table_line(const char *line, size_t len, size_t *pos, char *schema, size_t schema_size, char *name,
			 size_t name_size)
{
	if (!line || !pos)
		return -1;
	size_t p = *pos;
	if (p == 0) {
		if (!has_prefix(line, len, "table "))
			return -1;
		p = strlen("table ");
	} else {
		if (p >= len)
			return -1;
		if (line[p] == ':')
			return 0; /* after the last name */
		if (line[p] != ',' || p + 1 >= len || line[p + 1] != ' ')
			return -1;
		p += 2;
	}
	if (!read_ident(line, len, &p, schema, schema_size))
		return -1;
	if (p >= len || line[p] != '.')
		return -1; /* test_decoding always qualifies the name */
	p++;
	if (!read_ident(line, len, &p, name, name_size))
		return -1;
	if (p < len && line[p] == ':') {
		if (!known_operation(line, len, p))
			return -1;
	} else if (!(p + 1 < len && line[p] == ',' && line[p + 1] == ' ')) {
		return -1;
	}
	*pos = p;
	return 1;
}

bool wal_slot_name_valid(const char *slot)
{
	if (!slot || !*slot)
		return false;
	size_t n = 0;
	for (const char *s = slot; *s; s++, n++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
			return false;
	}
	return n <= 63; /* NAMEDATALEN - 1 */
}

void wal_format_lsn(char *buf, size_t len, uint64_t lsn)
{
	snprintf(buf, len, "%X/%X", (unsigned)(lsn >> 32), (unsigned)(lsn & 0xffffffffu));
}
