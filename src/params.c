/*
 * params — tracked session parameters (see params.h).
 */
#include "params.h"
#include "xalloc.h"

#include <ctype.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void params_init(ParamList *l)
{
	l->items = NULL;
	l->n = l->cap = 0;
	l->gen = 0;
	l->fp = 0;
	l->fp_gen = (uint32_t)-1;
}

/*
 * Storage: a list's items live in a ParamStore, which also owns their name and value strings.
 * params_copy shares the store (a reference more) instead of copying it; a list changes its store
 * only while it is the sole holder, and makes itself a private copy first otherwise (copy on
 * write). So every holder of a store has the same n. A client's startup_params (a copy of its
 * params at login) and the undo copies of settings.c cost nothing until one side changes.
 */
struct ParamStore {
	size_t refs;
	Param items[];
};

static struct ParamStore *store_of(const ParamList *l)
{
	return l->items ? (struct ParamStore *)((char *)l->items - offsetof(struct ParamStore, items)) : NULL;
}

static Param *store_new(size_t cap)
{
	struct ParamStore *st = xmalloc(sizeof *st + cap * sizeof(Param));
	st->refs = 1;
	return st->items;
}

/* Drops l's reference to its store (freeing it with its strings if it was the last). */
static void params_release(ParamList *l)
{
	struct ParamStore *st = store_of(l);
	if (st && --st->refs == 0) {
		for (size_t i = 0; i < l->n; i++) {
			free(st->items[i].name);
			free(st->items[i].value);
		}
		free(st);
	}
	l->items = NULL;
	l->n = l->cap = 0;
}

/* Before a change: l's store becomes its own (a private copy if it is shared). */
static void params_own(ParamList *l)
{
	struct ParamStore *st = store_of(l);
	if (!st || st->refs == 1)
		return;
	size_t cap = l->cap > l->n ? l->cap : l->n;
	Param *items = store_new(cap ? cap : 1);
	for (size_t i = 0; i < l->n; i++) {
		items[i].name = xstrdup(st->items[i].name);
		items[i].value = xstrdup(st->items[i].value);
	}
	st->refs--;
	l->items = items;
	l->cap = cap ? cap : 1;
}

uint64_t params_fingerprint(ParamList *l)
{
	if (l->fp_gen == l->gen)
		return l->fp;
	uint64_t sum = 0;
	for (size_t i = 0; i < l->n; i++) {
		uint64_t h = 1469598103934665603ull;
		for (const char *c = l->items[i].name; *c; c++)
			h = (h ^ (uint8_t)tolower((unsigned char)*c)) * 1099511628211ull;
		h = (h ^ '=') * 1099511628211ull;
		for (const char *c = l->items[i].value; *c; c++)
			h = (h ^ (uint8_t)*c) * 1099511628211ull;
		sum += h ^ (h >> 31); /* addition: independent of order */
	}
	l->fp = sum ^ l->n;
	l->fp_gen = l->gen;
	return l->fp;
}

void params_clear(ParamList *l)
{
	struct ParamStore *st = store_of(l);
	if (st && st->refs > 1) {
		params_release(l); /* the other holders keep the store */
	} else {
		for (size_t i = 0; i < l->n; i++) {
			free(l->items[i].name);
			free(l->items[i].value);
		}
		l->n = 0;
	}
	l->gen++;
}

void params_free(ParamList *l)
{
	params_release(l);
	params_init(l);
}

static Param *params_find(const ParamList *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->items[i].name, name) == 0)
			return &l->items[i];
	return NULL;
}

bool params_set(ParamList *l, const char *name, const char *value)
{
	Param *p = params_find(l, name);
	if (p) {
		if (strcmp(p->value, value) == 0)
			return false;
		size_t i = (size_t)(p - l->items);
		char *v = xstrdup(value); /* value may be a string of the store given up below */
		params_own(l);
		p = &l->items[i];
		free(p->value);
		p->value = v;
		l->gen++;
		return true;
	}
	params_own(l);
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct ParamStore *st = store_of(l);
		if (!st) {
			l->items = store_new(cap);
		} else {
			st = realloc(st, sizeof *st + cap * sizeof(Param));
			if (!st)
				abort();
			l->items = st->items;
		}
		l->cap = cap;
	}
	l->items[l->n].name = xstrdup(name);
	l->items[l->n].value = xstrdup(value);
	l->n++;
	l->gen++;
	return true;
}

bool params_remove(ParamList *l, const char *name)
{
	Param *p = params_find(l, name);
	if (!p)
		return false;
	size_t i = (size_t)(p - l->items);
	params_own(l);
	p = &l->items[i];
	free(p->name);
	free(p->value);
	*p = l->items[--l->n];
	l->gen++;
	return true;
}

void params_set_raw(ParamList *l, const char *name, const char *sql, size_t len)
{
	char *v = xmalloc(len + 2);
	v[0] = PARAMS_RAW_MARK;
	memcpy(v + 1, sql, len);
	v[len + 1] = 0;
	params_set(l, name, v);
	free(v);
}

const char *params_get(const ParamList *l, const char *name)
{
	const Param *p = params_find(l, name);
	return p ? p->value : NULL;
}

void params_copy(ParamList *dst, const ParamList *src)
{
	if (dst == src)
		return;
	struct ParamStore *st = store_of(src);
	if (st)
		st->refs++; /* before the release: dst may hold the same store */
	params_release(dst);
	dst->items = src->items;
	dst->n = src->n;
	dst->cap = src->cap;
	dst->gen++;
	if (src->fp_gen == src->gen) { /* the same contents: the same fingerprint */
		dst->fp = src->fp;
		dst->fp_gen = dst->gen;
	}
}

bool params_is_settable_report(const char *name)
{
	static const char *const settable[] = {
		"client_encoding", "DateStyle", "TimeZone", "IntervalStyle",
		"application_name", "standard_conforming_strings",
	};
	for (size_t i = 0; i < sizeof(settable) / sizeof(settable[0]); i++)
		if (strcasecmp(name, settable[i]) == 0)
			return true;
	return false;
}

bool params_name_valid(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > 63)
		return false;
	if (!isalpha((unsigned char)name[0]) && name[0] != '_')
		return false;
	for (size_t i = 1; i < n; i++) {
		unsigned char ch = (unsigned char)name[i];
		if (!isalnum(ch) && ch != '_' && ch != '.')
			return false;
	}
	return true;
}

/* Reads one space-separated word with backslash escapes into out (NUL-terminated). */
static const char *options_word(const char *p, char *out, size_t cap, size_t *outlen)
{
	size_t n = 0;
	while (*p && !isspace((unsigned char)*p)) {
		if (*p == '\\' && p[1])
			p++;
		if (n + 1 < cap)
			out[n++] = *p;
		p++;
	}
	out[n] = 0;
	*outlen = n;
	return p;
}

static const char *options_assignment(const char *word, ParamList *out)
{
	const char *eq = strchr(word, '=');
	if (!eq || eq == word)
		return "startup option must look like name=value";
	char name[64];
	size_t nlen = (size_t)(eq - word);
	if (nlen >= sizeof(name))
		return "startup option name is too long";
	memcpy(name, word, nlen);
	name[nlen] = 0;
	/* PostgreSQL accepts "-c foo-bar=x" as foo_bar */
	for (char *c = name; *c; c++)
		if (*c == '-')
			*c = '_';
	if (!params_name_valid(name))
		return "startup option has an invalid parameter name";
	params_set(out, name, eq + 1);
	return NULL;
}

const char *params_parse_options(const char *options, ParamList *out)
{
	size_t cap = strlen(options) + 1;
	char *word = malloc(cap);
	if (!word)
		abort();
	const char *err = NULL;
	const char *p = options;
	bool want_value = false;
	while (!err) {
		while (isspace((unsigned char)*p))
			p++;
		if (!*p)
			break;
		size_t wlen;
		p = options_word(p, word, cap, &wlen);
		if (want_value) {
			err = options_assignment(word, out);
			want_value = false;
		} else if (strcmp(word, "-c") == 0) {
			want_value = true;
		} else if (strncmp(word, "-c", 2) == 0) {
			err = options_assignment(word + 2, out);
		} else if (strncmp(word, "--", 2) == 0) {
			err = options_assignment(word + 2, out);
		} else {
			err = "only -c name=value and --name=value are supported in the options startup parameter";
		}
	}
	if (!err && want_value)
		err = "startup option -c is missing its name=value";
	free(word);
	return err;
}

static void append_str(Buf *b, const char *s) { buf_append(b, s, strlen(s)); }

static void append_literal(Buf *sql, const char *value)
{
	append_str(sql, "E'");
	for (const char *c = value; *c; c++) {
		if (*c == '\'' || *c == '\\')
			buf_append(sql, c, 1);
		buf_append(sql, c, 1);
	}
	append_str(sql, "'");
}

/*
 * set_config() rather than SET name TO 'value': it takes the value as text the way a startup
 * option or postgresql.conf does, so list settings such as search_path = 'a,b' keep their
 * elements (SET with a quoted string would make "a,b" one schema name).
 */
static void append_set(Buf *sql, const char *name, const char *value)
{
	append_str(sql, "SELECT pg_catalog.set_config(");
	append_literal(sql, name);
	append_str(sql, ", ");
	append_literal(sql, value);
	append_str(sql, ", false);");
}

size_t params_sync(const ParamList *want, ParamList *have, const ParamList *base, Buf *sql)
{
	size_t count = 0;
	for (size_t i = 0; i < want->n; i++) {
		const Param *w = &want->items[i];
		const char *h = params_get(have, w->name);
		if ((h && strcmp(h, w->value) == 0) || !params_name_valid(w->name))
			continue;
		if (params_is_raw(w->value)) {
			append_str(sql, w->value + 1);
			append_str(sql, ";");
		} else {
			append_set(sql, w->name, w->value);
		}
		params_set(have, w->name, w->value);
		count++;
	}
	for (size_t i = 0; i < have->n;) {
		const Param *h = &have->items[i];
		const char *b = params_get(base, h->name);
		if (params_get(want, h->name) || (b && strcmp(b, h->value) == 0) || !params_name_valid(h->name)) {
			i++;
			continue;
		}
		append_str(sql, "RESET ");
		append_str(sql, h->name);
		append_str(sql, ";");
		count++;
		if (b) {
			params_set(have, h->name, b);
			i++;
		} else {
			params_remove(have, h->name); /* moves the last entry here */
		}
	}
	return count;
}
