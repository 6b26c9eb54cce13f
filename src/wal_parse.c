/*
 * wal_parse — the pure half of the WAL listener (see wal.h): what kind of line the test_decoding
 * output plugin sent, the table names of its change lines (unquoted), one column's values in a
 * change line, replication slot names and LSN text.
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
 * Columns after the operation: name[type]:value, value 'quoted' ('' is a quote) for most types,
 * bare for numbers and booleans, null, or unchanged-toast-datum; an UPDATE may print
 * "old-key: <columns> new-tuple: <columns>", a DELETE of a table without identity
 * "(no-tuple-data)".
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

/* One identifier at line[*p]: "quoted" ("" is a quote) or bare (up to . : , [ space or a quote).
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
			if (c == '.' || c == ':' || c == ',' || c == ' ' || c == '"' || c == '[')
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

typedef enum ChangeOp { OP_NONE = -1, OP_INSERT, OP_UPDATE, OP_DELETE, OP_TRUNCATE } ChangeOp;

static const char *const op_texts[] = {": INSERT:", ": UPDATE:", ": DELETE:", ": TRUNCATE:"};

/* The operation at line[p] (the ':' after the last name), or OP_NONE. */
static ChangeOp operation_at(const char *line, size_t len, size_t p)
{
	for (int i = OP_INSERT; p < len && i <= OP_TRUNCATE; i++)
		if (has_prefix(line + p, len - p, op_texts[i]))
			return (ChangeOp)i;
	return OP_NONE;
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
		if (operation_at(line, len, p) == OP_NONE)
			return -1;
	} else if (!(p + 1 < len && line[p] == ',' && line[p + 1] == ' ')) {
		return -1;
	}
	*pos = p;
	return 1;
}

/* ---- column values of a change line ---- */

/* Skips a value at line[*p]: 'quoted' ('' is a quote) or bare up to a space. Sets *start / *n to
 * its text without the quotes (still with '' doubled) and *quoted. False when unterminated. */
static bool skip_value(const char *line, size_t len, size_t *p, size_t *start, size_t *n, bool *quoted)
{
	size_t i = *p;
	*quoted = i < len && line[i] == '\'';
	if (*quoted) {
		*start = ++i;
		for (;;) {
			if (i >= len)
				return false;
			if (line[i] == '\'') {
				if (i + 1 < len && line[i + 1] == '\'') {
					i += 2;
					continue;
				}
				break;
			}
			i++;
		}
		*n = i - *start;
		*p = i + 1;
		return true;
	}
	*start = i;
	while (i < len && line[i] != ' ')
		i++;
	*n = i - *start;
	*p = i;
	return true;
}

/* Skips "[type]" at line[*p]: brackets nest (integer[]), quoted names may hold anything. */
static bool skip_type(const char *line, size_t len, size_t *p)
{
	size_t i = *p;
	if (i >= len || line[i] != '[')
		return false;
	int depth = 0;
	for (; i < len; i++) {
		if (line[i] == '"') {
			for (i++; i < len && !(line[i] == '"' && !(i + 1 < len && line[i + 1] == '"')); i++)
				if (line[i] == '"')
					i++; /* "" inside quotes */
			if (i >= len)
				return false;
		} else if (line[i] == '[') {
			depth++;
		} else if (line[i] == ']' && --depth == 0) {
			*p = i + 1;
			return true;
		}
	}
	return false;
}

enum { SECTION_NEW, SECTION_OLD };

void wal_parse_key_values(const char *line, size_t len, size_t pos, const char *column, WalKeyValues *out)
{
	memset(out, 0, sizeof *out);
	out->unknown = true;
	ChangeOp op = operation_at(line, len, pos);
	if (op == OP_NONE || op == OP_TRUNCATE || !column)
		return; /* TRUNCATE, or not the end of a change line's names */
	size_t p = pos + strlen(op_texts[op]);
	/* val[section]: the column's value in the old / new row, when known[section] */
	bool had_old = false, known[2] = {false, false};
	char val[2][WAL_KEY_MAX];
	int section = op == OP_DELETE ? SECTION_OLD : SECTION_NEW;
	while (p < len) {
		if (line[p] == ' ') {
			p++;
			continue;
		}
		if (has_prefix(line + p, len - p, "old-key:")) {
			section = SECTION_OLD;
			had_old = true;
			p += strlen("old-key:");
			continue;
		}
		if (has_prefix(line + p, len - p, "new-tuple:")) {
			section = SECTION_NEW;
			p += strlen("new-tuple:");
			continue;
		}
		if (has_prefix(line + p, len - p, "(no-tuple-data)"))
			return;
		char name[WAL_KEY_MAX];
		size_t start, n;
		bool quoted;
		if (!read_ident(line, len, &p, name, sizeof name) || !skip_type(line, len, &p) || p >= len ||
		    line[p] != ':')
			return; /* unreadable */
		p++;
		if (!skip_value(line, len, &p, &start, &n, &quoted))
			return;
		if (strcmp(name, column) != 0)
			continue;
		if (!quoted && ((n == 4 && memcmp(line + start, "null", 4) == 0) ||
				(n == 21 && memcmp(line + start, "unchanged-toast-datum", 21) == 0)))
			continue;
		size_t k = 0;
		for (size_t i = 0; i < n; i++) {
			if (k + 1 >= WAL_KEY_MAX)
				return; /* too long to be a key worth keeping */
			val[section][k++] = line[start + i];
			if (quoted && line[start + i] == '\'')
				i++; /* '' is one quote */
		}
		val[section][k] = 0;
		known[section] = true;
	}
	bool need_old = op != OP_INSERT, need_new = op != OP_DELETE;
	if (op == OP_UPDATE && !had_old)
		return; /* the old row is not printed: its value may have been another */
	if ((need_old && !known[SECTION_OLD]) || (need_new && !known[SECTION_NEW]))
		return;
	out->unknown = false;
	if (need_old)
		memcpy(out->values[out->n++], val[SECTION_OLD], WAL_KEY_MAX);
	if (need_new && !(need_old && strcmp(val[SECTION_OLD], val[SECTION_NEW]) == 0))
		memcpy(out->values[out->n++], val[SECTION_NEW], WAL_KEY_MAX);
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
