/*
 * txtrack — a client's transaction as its server executes it (see txtrack.h).
 */
#include "txtrack.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

enum {
	ITEM_STATEMENT = 1, /* completed by one CommandComplete / EmptyQuery / PortalSuspended */
	ITEM_UNCOUNTED,     /* takes every completion up to the next end */
	ITEM_NOTE,          /* takes no reply */
	ITEM_END,           /* ReadyForQuery */
};

struct TxItem {
	uint8_t kind;
	uint8_t tx;        /* SqlTxKind */
	bool sticky;       /* writes invalidated at the next ReadyForQuery and never dropped */
	char *savepoint;   /* owned */
	CacheWrites *writes; /* owned; NULL: none */
};

struct TxLevel {
	char *name;          /* the savepoint (NULL for the transaction itself) */
	CacheWrites *writes; /* NULL: none yet */
};

void txtrack_init(TxTrack *t)
{
	memset(t, 0, sizeof *t);
}

static void item_free(TxItem *it)
{
	free(it->savepoint);
	free(it->writes);
	it->savepoint = NULL;
	it->writes = NULL;
}

static void level_free(TxLevel *l)
{
	free(l->name);
	free(l->writes);
	l->name = NULL;
	l->writes = NULL;
}

void txtrack_free(TxTrack *t)
{
	for (size_t i = 0; i < t->count; i++)
		item_free(&t->items[(t->head + i) % t->cap]);
	for (size_t i = 0; i < t->n_levels; i++)
		level_free(&t->levels[i]);
	free(t->items);
	free(t->levels);
	free(t->committed);
	memset(t, 0, sizeof *t);
}

/* ---- writes ---- */

static void add_writes(CacheWrites **dst, const CacheWrites *src)
{
	if (!src || (!src->all && !src->n))
		return;
	if (!*dst)
		*dst = xcalloc(1, sizeof **dst);
	cachepolicy_writes_merge(*dst, src);
}

static CacheWrites *copy_writes(const CacheWrites *w)
{
	if (!w || (!w->all && !w->n))
		return NULL;
	CacheWrites *c = xmalloc(sizeof *c);
	*c = *w;
	return c;
}

/* ---- levels ---- */

static TxLevel *top(TxTrack *t)
{
	if (!t->n_levels) {
		if (!t->cap_levels) {
			t->cap_levels = 4;
			t->levels = xcalloc(t->cap_levels, sizeof *t->levels);
		}
		t->n_levels = 1;
	}
	return &t->levels[t->n_levels - 1];
}

static void push_level(TxTrack *t, const char *name)
{
	top(t);
	if (t->n_levels == t->cap_levels) {
		t->cap_levels *= 2;
		t->levels = xrealloc(t->levels, t->cap_levels * sizeof *t->levels);
	}
	TxLevel *l = &t->levels[t->n_levels++];
	l->name = xstrdup(name ? name : "");
	l->writes = NULL;
}

/* The innermost level of savepoint name (>= 1), or 0 when there is none. */
static size_t find_level(const TxTrack *t, const char *name)
{
	if (!name)
		return 0;
	for (size_t i = t->n_levels; i-- > 1;)
		if (strcmp(t->levels[i].name, name) == 0)
			return i;
	return 0;
}

/* Levels above keep..., merged into keep (keep stays). */
static void merge_down_to(TxTrack *t, size_t keep)
{
	while (t->n_levels > keep + 1) {
		TxLevel *l = &t->levels[t->n_levels - 1];
		add_writes(&t->levels[keep].writes, l->writes);
		level_free(l);
		t->n_levels--;
	}
}

static void drop_down_to(TxTrack *t, size_t keep)
{
	while (t->n_levels > keep + 1)
		level_free(&t->levels[--t->n_levels]);
}

/* ---- items ---- */

static TxItem *push_item(TxTrack *t, uint8_t kind)
{
	if (t->count == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 8;
		TxItem *n = xcalloc(cap, sizeof *n);
		for (size_t i = 0; i < t->count; i++)
			n[i] = t->items[(t->head + i) % t->cap];
		free(t->items);
		t->items = n;
		t->cap = cap;
		t->head = 0;
	}
	TxItem *it = &t->items[(t->head + t->count++) % t->cap];
	memset(it, 0, sizeof *it);
	it->kind = kind;
	return it;
}

static TxItem *head_item(TxTrack *t) { return t->count ? &t->items[t->head] : NULL; }

static void pop_item(TxTrack *t)
{
	item_free(&t->items[t->head]);
	t->head = (t->head + 1) % t->cap;
	t->count--;
}

void txtrack_statement(TxTrack *t, SqlTxKind tx, const char *savepoint, const CacheWrites *writes)
{
	TxItem *it = push_item(t, ITEM_STATEMENT);
	it->tx = (uint8_t)tx;
	it->savepoint = savepoint ? xstrdup(savepoint) : NULL;
	it->writes = copy_writes(writes);
}

void txtrack_uncounted(TxTrack *t, const CacheWrites *writes)
{
	TxItem *it = push_item(t, ITEM_UNCOUNTED);
	it->writes = copy_writes(writes);
	it->sticky = it->writes != NULL;
}

void txtrack_note(TxTrack *t, const CacheWrites *writes)
{
	if (!writes || (!writes->all && !writes->n))
		return;
	TxItem *it = push_item(t, ITEM_NOTE);
	it->writes = copy_writes(writes);
	it->sticky = true;
}

void txtrack_end(TxTrack *t) { push_item(t, ITEM_END); }

/* An item's writes, without its transaction effect. */
static void apply_writes(TxTrack *t, const TxItem *it)
{
	if (!it->writes)
		return;
	add_writes(&top(t)->writes, it->writes);
	if (it->sticky)
		add_writes(&t->committed, it->writes);
}

static TxEvent apply(TxTrack *t, const TxItem *it, bool rollback_tag)
{
	apply_writes(t, it);
	size_t i;
	switch (it->tx) {
	case SQL_TX_SAVEPOINT:
		push_level(t, it->savepoint);
		return TXTRACK_NONE;
	case SQL_TX_RELEASE:
		if ((i = find_level(t, it->savepoint)))
			merge_down_to(t, i - 1);
		return TXTRACK_NONE;
	case SQL_TX_ROLLBACK_TO:
		if (!(i = find_level(t, it->savepoint)))
			return TXTRACK_NONE;
		drop_down_to(t, i);
		free(t->levels[i].writes);
		t->levels[i].writes = NULL;
		return TXTRACK_ROLLED_BACK_TO;
	case SQL_TX_COMMIT:
	case SQL_TX_PREPARE:
		if (!rollback_tag) {
			merge_down_to(t, 0);
			add_writes(&t->committed, top(t)->writes);
			free(top(t)->writes);
			top(t)->writes = NULL;
			return TXTRACK_COMMITTED;
		}
		/* COMMIT of a failed transaction rolls it back */
		__attribute__((fallthrough));
	case SQL_TX_ROLLBACK:
		drop_down_to(t, 0);
		free(top(t)->writes);
		top(t)->writes = NULL;
		return TXTRACK_ROLLED_BACK;
	default:
		return TXTRACK_NONE;
	}
}

/* Notes at the head take no reply: they count as they are reached. */
static void apply_notes(TxTrack *t)
{
	TxItem *it;
	while ((it = head_item(t)) && it->kind == ITEM_NOTE) {
		apply_writes(t, it);
		pop_item(t);
	}
}

TxEvent txtrack_complete(TxTrack *t, bool rollback_tag)
{
	apply_notes(t);
	TxItem *it = head_item(t);
	if (!it || it->kind == ITEM_END)
		return TXTRACK_NONE; /* a completion nobody counted (an empty Query's EmptyQueryResponse) */
	if (it->kind == ITEM_UNCOUNTED) {
		apply_writes(t, it);
		return TXTRACK_NONE;
	}
	TxItem copy = *it;
	TxEvent e = apply(t, &copy, rollback_tag);
	pop_item(t);
	return e;
}

void txtrack_error(TxTrack *t)
{
	/* the failed statement and what was skipped after it count as written, never as done */
	TxItem *it;
	while ((it = head_item(t)) && it->kind != ITEM_END) {
		apply_writes(t, it);
		pop_item(t);
	}
}

bool txtrack_ready(TxTrack *t, char status, CacheWrites *bump)
{
	TxItem *it;
	while ((it = head_item(t))) {
		bool end = it->kind == ITEM_END;
		apply_writes(t, it); /* statements left over (none when the counts agree) */
		pop_item(t);
		if (end)
			break;
	}
	bool any = false;
	if (t->committed) {
		cachepolicy_writes_merge(bump, t->committed);
		free(t->committed);
		t->committed = NULL;
		any = true;
	}
	if (status == 'I' && t->n_levels) {
		merge_down_to(t, 0);
		if (t->levels[0].writes) {
			cachepolicy_writes_merge(bump, t->levels[0].writes);
			any = true;
		}
		level_free(&t->levels[0]);
		t->n_levels = 0;
	}
	return any;
}

void txtrack_forget_requests(TxTrack *t)
{
	while (t->count)
		pop_item(t);
}

bool txtrack_abandon(TxTrack *t, CacheWrites *bump)
{
	bool any = false;
	for (size_t i = 0; i < t->count; i++) {
		const TxItem *it = &t->items[(t->head + i) % t->cap];
		if (it->writes) {
			cachepolicy_writes_merge(bump, it->writes);
			any = true;
		}
	}
	for (size_t i = 0; i < t->n_levels; i++)
		if (t->levels[i].writes) {
			cachepolicy_writes_merge(bump, t->levels[i].writes);
			any = true;
		}
	if (t->committed) {
		cachepolicy_writes_merge(bump, t->committed);
		any = true;
	}
	txtrack_free(t);
	return any;
}

bool txtrack_has_writes(const TxTrack *t)
{
	if (t->committed)
		return true;
	for (size_t i = 0; i < t->n_levels; i++)
		if (t->levels[i].writes)
			return true;
	for (size_t i = 0; i < t->count; i++)
		if (t->items[(t->head + i) % t->cap].writes)
			return true;
	return false;
}
