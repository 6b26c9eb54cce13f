/*
 * jsontree — a strict JSON reader building its tree in one arena (see jsontree.h).
 *
 * One pass, no recursion: an open array or object is a frame on the reader's own stack, and its
 * children collect on a shared pending stack (after its own node); when it closes they are
 * copied, in one block, to the arena. The arena (chunks) and both stacks stay with the JsonTree between parses, so a parse
 * of a text no larger than the previous ones allocates nothing.
 */
#include "jsontree.h"
#include "xalloc.h"

#include <limits.h>
#include <stdalign.h>
#include <stdlib.h>

struct JsonFrame {
	size_t start; /* its first child on the pending stack (its own node is just before) */
	bool object;
};

struct JsonChunk {
	JsonChunk *next;
	size_t used, cap;
	alignas(max_align_t) char data[];
};

#define CHUNK_MIN ((size_t)8 << 10)
/* After a parse that needed more, the next first chunk is as big as it used, up to this. */
#define CHUNK_KEEP ((size_t)1 << 20)
/* A pending stack of more entries is given back by jsontree_clear. */
#define PENDING_KEEP ((size_t)4096)

/* ---- arena ---- */

static void chunks_free(JsonChunk *c)
{
	while (c) {
		JsonChunk *next = c->next;
		free(c);
		c = next;
	}
}

static void *arena_grow(JsonTree *t, size_t n)
{
	size_t cap = t->chunks ? t->chunks->cap * 2 : t->next_chunk;
	if (cap < n)
		cap = n;
	JsonChunk *c = xmalloc(sizeof(*c) + cap);
	c->next = t->chunks;
	c->cap = cap;
	c->used = n;
	t->chunks = c;
	return c->data;
}

/* n bytes aligned for a JsonNode / JsonMember array (align true) or for text. */
static inline void *arena_alloc(JsonTree *t, size_t n, bool align)
{
	JsonChunk *c = t->chunks;
	if (c) {
		size_t at = align ? (c->used + alignof(JsonMember) - 1) & ~(alignof(JsonMember) - 1) : c->used;
		if (at <= c->cap && c->cap - at >= n) {
			c->used = at + n;
			return c->data + at;
		}
	}
	return arena_grow(t, n);
}

/* Gives back the last n bytes of the latest allocation. */
static inline void arena_unalloc(JsonTree *t, size_t n) { t->chunks->used -= n; }

/* One chunk left, sized for what the last parse needed (up to CHUNK_KEEP). */
static void arena_reset(JsonTree *t)
{
	JsonChunk *c = t->chunks;
	if (c && !c->next && c->cap <= CHUNK_KEEP) {
		c->used = 0;
		return;
	}
	size_t total = 0;
	for (JsonChunk *k = c; k; k = k->next)
		total += k->cap;
	chunks_free(c);
	t->chunks = NULL;
	t->next_chunk = total < CHUNK_MIN ? CHUNK_MIN : total > CHUNK_KEEP ? CHUNK_KEEP : total;
}

/* ---- the tree ---- */

void jsontree_init(JsonTree *t, size_t max_depth)
{
	memset(t, 0, sizeof(*t));
	t->max_depth = max_depth;
	t->next_chunk = CHUNK_MIN;
}

void jsontree_clear(JsonTree *t)
{
	arena_reset(t);
	if (t->cap_pending > PENDING_KEEP) {
		free(t->pending);
		t->pending = NULL;
		t->cap_pending = 0;
	}
	t->n_pending = 0;
}

void jsontree_free(JsonTree *t)
{
	chunks_free(t->chunks);
	free(t->pending);
	free(t->frames);
	jsontree_init(t, t->max_depth);
}

/* ---- lexing ---- */

static inline const char *skip_blanks(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r'))
		p++;
	return p;
}

/* Bytes that end the plain run of a string: '"', '\\' and control characters. */
static const uint8_t string_stop[256] = {
	[0x00] = 1, [0x01] = 1, [0x02] = 1, [0x03] = 1, [0x04] = 1, [0x05] = 1, [0x06] = 1, [0x07] = 1,
	[0x08] = 1, [0x09] = 1, [0x0a] = 1, [0x0b] = 1, [0x0c] = 1, [0x0d] = 1, [0x0e] = 1, [0x0f] = 1,
	[0x10] = 1, [0x11] = 1, [0x12] = 1, [0x13] = 1, [0x14] = 1, [0x15] = 1, [0x16] = 1, [0x17] = 1,
	[0x18] = 1, [0x19] = 1, [0x1a] = 1, [0x1b] = 1, [0x1c] = 1, [0x1d] = 1, [0x1e] = 1, [0x1f] = 1,
	['"'] = 1,  ['\\'] = 1,
};

static int hex4(const char *p)
{
	int v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

static char *put_utf8(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		*o++ = (char)cp;
	} else if (cp < 0x800) {
		*o++ = (char)(0xc0 | (cp >> 6));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		*o++ = (char)(0xe0 | (cp >> 12));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	} else {
		*o++ = (char)(0xf0 | (cp >> 18));
		*o++ = (char)(0x80 | ((cp >> 12) & 0x3f));
		*o++ = (char)(0x80 | ((cp >> 6) & 0x3f));
		*o++ = (char)(0x80 | (cp & 0x3f));
	}
	return o;
}

/* The string whose opening quote is at *pp: decoded into the arena (*out, *out_len); *pp moves
 * past the closing quote. NULL on success, else why it failed (*pp at the fault). */
static const char *read_string(JsonTree *t, const char **pp, const char *end, const char **out, uint32_t *out_len)
{
	const char *s = *pp + 1, *q = s;
	while (q < end && !string_stop[(uint8_t)*q])
		q++;
	if (q < end && *q == '"') { /* no escapes: one copy */
		size_t n = (size_t)(q - s);
		if (n > UINT32_MAX) {
			*pp = s;
			return "string too long";
		}
		char *o = arena_alloc(t, n + 1, false);
		memcpy(o, s, n);
		o[n] = 0;
		*out = o;
		*out_len = (uint32_t)n;
		*pp = q + 1;
		return NULL;
	}
	/* Escapes: the decoded text is never longer than the raw text before the closing quote. */
	const char *close = q;
	while (close < end && *close != '"') {
		if (*close == '\\' && close + 1 < end)
			close++;
		close++;
	}
	if (close >= end) {
		*pp = end;
		return "unterminated string";
	}
	size_t raw = (size_t)(close - s);
	if (raw > UINT32_MAX) {
		*pp = s;
		return "string too long";
	}
	char *start = arena_alloc(t, raw + 1, false), *o = start;
	memcpy(o, s, (size_t)(q - s));
	o += q - s;
	const char *err = NULL;
	while (q < close) {
		uint8_t c = (uint8_t)*q;
		if (!string_stop[c]) {
			*o++ = (char)c;
			q++;
			continue;
		}
		if (c != '\\') {
			err = "control character in a string";
			break;
		}
		/* q + 1 < close: a backslash just before the closing quote escapes it */
		char e = q[1];
		q += 2;
		switch (e) {
		case '"': *o++ = '"'; continue;
		case '\\': *o++ = '\\'; continue;
		case '/': *o++ = '/'; continue;
		case 'b': *o++ = '\b'; continue;
		case 'f': *o++ = '\f'; continue;
		case 'n': *o++ = '\n'; continue;
		case 'r': *o++ = '\r'; continue;
		case 't': *o++ = '\t'; continue;
		case 'u': break;
		default:
			q -= 2;
			err = "bad escape in a string";
			break;
		}
		if (err)
			break;
		int cp = close - q >= 4 ? hex4(q) : -1;
		if (cp < 0) {
			q -= 2;
			err = "bad \\u escape in a string";
			break;
		}
		q += 4;
		if (cp >= 0xdc00 && cp <= 0xdfff) {
			q -= 6;
			err = "lone low surrogate in a string";
			break;
		}
		if (cp >= 0xd800 && cp <= 0xdbff) {
			int lo = close - q >= 6 && q[0] == '\\' && q[1] == 'u' ? hex4(q + 2) : -1;
			if (lo < 0xdc00 || lo > 0xdfff) {
				q -= 6;
				err = "lone high surrogate in a string";
				break;
			}
			q += 6;
			cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
		}
		o = put_utf8(o, (uint32_t)cp);
	}
	if (err) {
		*pp = q;
		return err;
	}
	*o = 0;
	size_t n = (size_t)(o - start);
	arena_unalloc(t, raw - n);
	*out = start;
	*out_len = (uint32_t)n;
	*pp = close + 1;
	return NULL;
}

static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? at *pp, kept as written. */
static const char *read_number(JsonTree *t, const char **pp, const char *end, JsonNode *v)
{
	const char *s = *pp, *q = s;
	bool integer = true;
	if (q < end && *q == '-')
		q++;
	if (q < end && *q == '0') {
		q++;
	} else if (q < end && is_digit(*q)) {
		while (q < end && is_digit(*q))
			q++;
	} else {
		*pp = q;
		return "bad number";
	}
	if (q < end && *q == '.') {
		q++;
		integer = false;
		if (q >= end || !is_digit(*q)) {
			*pp = q;
			return "bad number";
		}
		while (q < end && is_digit(*q))
			q++;
	}
	if (q < end && (*q == 'e' || *q == 'E')) {
		q++;
		integer = false;
		if (q < end && (*q == '+' || *q == '-'))
			q++;
		if (q >= end || !is_digit(*q)) {
			*pp = q;
			return "bad number";
		}
		while (q < end && is_digit(*q))
			q++;
	}
	size_t n = (size_t)(q - s);
	if (n > UINT32_MAX) {
		*pp = s;
		return "number too long";
	}
	char *o = arena_alloc(t, n + 1, false);
	memcpy(o, s, n);
	o[n] = 0;
	*v = (JsonNode){.type = JSONTREE_NUMBER, .integer = integer, .len = (uint32_t)n, .str = o};
	*pp = q;
	return NULL;
}

static bool read_word(const char **pp, const char *end, const char *word, size_t n)
{
	if ((size_t)(end - *pp) < n || memcmp(*pp, word, n) != 0)
		return false;
	*pp += n;
	return true;
}

/* An object's key and its ':' at *pp (after blanks). */
static const char *read_key(JsonTree *t, const char **pp, const char *end, const char **key)
{
	const char *p = skip_blanks(*pp, end);
	uint32_t n;
	if (p >= end) {
		*pp = p;
		return "unexpected end of the text";
	}
	if (*p != '"') {
		*pp = p;
		return "expected a key";
	}
	const char *err = read_string(t, &p, end, key, &n);
	if (err) {
		*pp = p;
		return err;
	}
	p = skip_blanks(p, end);
	if (p >= end || *p != ':') {
		*pp = p;
		return p >= end ? "unexpected end of the text" : "expected ':'";
	}
	*pp = p + 1;
	return NULL;
}

/* ---- the reader ---- */

/* The node of a value about to be read: the root, or a new child of the innermost container
 * (valid until the next child is added). Values are written in place: a node built elsewhere
 * and copied as a whole would be read back, just after its fields were stored one by one. */
static inline JsonNode *new_slot(JsonTree *t, size_t depth, const char *key)
{
	if (depth == 0)
		return &t->root;
	if (t->n_pending == t->cap_pending) {
		t->cap_pending = t->cap_pending ? t->cap_pending * 2 : 64;
		t->pending = xrealloc(t->pending, t->cap_pending * sizeof(*t->pending));
	}
	JsonMember *m = &t->pending[t->n_pending++];
	m->key = key;
	return &m->value;
}

/* Moves the children of the container of frame f to the arena and completes its node. */
static void close_frame(JsonTree *t, const JsonFrame *f)
{
	size_t n = t->n_pending - f->start;
	const JsonMember *src = n ? t->pending + f->start : NULL; /* pending may be NULL then */
	JsonNode *node = f->start == 0 ? &t->root : &t->pending[f->start - 1].value;
	node->type = f->object ? JSONTREE_OBJECT : JSONTREE_ARRAY;
	node->integer = false;
	node->len = (uint32_t)n;
	if (f->object) {
		JsonMember *m = n ? arena_alloc(t, n * sizeof(*m), true) : NULL;
		if (n)
			memcpy(m, src, n * sizeof(*m));
		node->members = m;
	} else {
		JsonNode *items = n ? arena_alloc(t, n * sizeof(*items), true) : NULL;
		for (size_t i = 0; i < n; i++)
			items[i] = src[i].value;
		node->items = items;
	}
	t->n_pending = f->start;
}

const JsonNode *jsontree_parse(JsonTree *t, const char *text, size_t len)
{
	const char *p = text, *end = text + len, *err = NULL;
	size_t depth = 0;       /* open containers */
	const char *key = NULL; /* the key of the value being read, inside an object */

	jsontree_clear(t);
	t->error = NULL;
	t->error_offset = 0;
	for (;;) {
		/* A value at depth `depth`. */
		p = skip_blanks(p, end);
		if (p >= end) {
			err = "unexpected end of the text";
			goto fail;
		}
		if (depth >= t->max_depth) {
			err = "nested too deeply";
			goto fail;
		}
		JsonNode *v;
		switch (*p) {
		case '{':
		case '[': {
			/* its node is the pending entry just before its children (the root: none) */
			bool object = *p == '{';
			(void)new_slot(t, depth, key);
			if (depth == t->cap_frames) {
				t->cap_frames = t->cap_frames ? t->cap_frames * 2 : 32;
				t->frames = xrealloc(t->frames, t->cap_frames * sizeof(*t->frames));
			}
			t->frames[depth++] = (JsonFrame){t->n_pending, object};
			p = skip_blanks(p + 1, end);
			if (p < end && *p == (object ? '}' : ']')) {
				p++;
				goto close;
			}
			key = NULL;
			if (object && (err = read_key(t, &p, end, &key)))
				goto fail;
			continue; /* its first value */
		}
		case '"':
			v = new_slot(t, depth, key);
			v->type = JSONTREE_STRING;
			v->integer = false;
			if ((err = read_string(t, &p, end, &v->str, &v->len)))
				goto fail;
			break;
		case 't':
			if (!read_word(&p, end, "true", 4))
				goto bad_value;
			v = new_slot(t, depth, key);
			*v = (JsonNode){.type = JSONTREE_TRUE};
			break;
		case 'f':
			if (!read_word(&p, end, "false", 5))
				goto bad_value;
			v = new_slot(t, depth, key);
			*v = (JsonNode){.type = JSONTREE_FALSE};
			break;
		case 'n':
			if (!read_word(&p, end, "null", 4))
				goto bad_value;
			v = new_slot(t, depth, key);
			*v = (JsonNode){.type = JSONTREE_NULL};
			break;
		default:
			if (*p != '-' && !is_digit(*p))
				goto bad_value;
			v = new_slot(t, depth, key);
			if ((err = read_number(t, &p, end, v)))
				goto fail;
			break;
		}
		/* A value is complete: what follows it, closing every container it completes. */
		for (;;) {
			p = skip_blanks(p, end);
			if (depth == 0) {
				if (p < end) {
					err = "text after the value";
					goto fail;
				}
				return &t->root;
			}
			if (p >= end) {
				err = "unexpected end of the text";
				goto fail;
			}
			const JsonFrame *f = &t->frames[depth - 1];
			if (*p == ',') {
				p++;
				key = NULL;
				if (f->object && (err = read_key(t, &p, end, &key)))
					goto fail;
				break; /* the next value */
			}
			if (*p != (f->object ? '}' : ']')) {
				err = f->object ? "expected ',' or '}'" : "expected ',' or ']'";
				goto fail;
			}
			p++;
		close:
			f = &t->frames[--depth];
			if (t->n_pending - f->start > UINT32_MAX) {
				err = "too many members";
				goto fail;
			}
			close_frame(t, f);
		}
	}
bad_value:
	err = "expected a value";
fail:
	t->error = err;
	t->error_offset = (size_t)(p - text);
	jsontree_clear(t);
	return NULL;
}

/* ---- numbers ---- */

int64_t jsontree_int64(const JsonNode *n)
{
	if (!n || n->type != JSONTREE_NUMBER)
		return 0;
	if (!n->integer) {
		double d = strtod(n->str, NULL);
		if (d >= (double)INT64_MAX)
			return INT64_MAX;
		if (d <= (double)INT64_MIN)
			return INT64_MIN;
		return (int64_t)d;
	}
	const char *s = n->str;
	bool neg = *s == '-';
	s += neg;
	uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	for (; *s; s++) {
		uint64_t d = (uint64_t)(*s - '0');
		if (v > (limit - d) / 10)
			return neg ? INT64_MIN : INT64_MAX;
		v = v * 10 + d;
	}
	if (!neg)
		return (int64_t)v;
	return v > (uint64_t)INT64_MAX ? INT64_MIN : -(int64_t)v;
}

int jsontree_int(const JsonNode *n)
{
	int64_t v = jsontree_int64(n);
	return v <= INT_MIN ? INT_MIN : v >= INT_MAX ? INT_MAX : (int)v;
}
