/*
 * settings — a client's session settings in transaction pooling (see settings.h).
 */
#include "settings.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"
#include "config.h"
#include "log.h"
#include "params.h"
#include "pool.h"
#include "router.h"
#include "server.h"
#include "statement_names.h"
#include "xalloc.h"

static bool word_char(char ch)
{
	char low = (char)(ch | 0x20);
	return (low >= 'a' && low <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || (unsigned char)ch >= 0x80;
}

/* Whether t starts with the lowercase ASCII word w of len bytes, in either case (inline: strncasecmp
 * per candidate letter was 1.5 % of pgrelay's CPU under pgbench -S). */
static bool starts_with_word(const char *t, const char *w, size_t len)
{
	for (size_t k = 1; k < len; k++)
		if ((char)(t[k] | 0x20) != w[k])
			return false;
	return true;
}

bool settings_might_change(const char *t, size_t n)
{
	/* "set" anywhere, also inside a longer word (reset, set_config, offset: analyzing too often
	 * costs a cached lookup, missing one costs a wrong session), and the whole words discard, do,
	 * call, and savepoint, rollback, release (savepoints carry settings) */
	static const struct {
		const char *w;
		size_t len;
		bool whole;
	} words[] = {{"set", 3, false},       {"discard", 7, true},  {"do", 2, true},     {"call", 4, true},
		     {"savepoint", 9, true}, {"rollback", 8, true}, {"release", 7, true}};
	for (size_t i = 0; i < n; i++) {
		char low = (char)(t[i] | 0x20);
		if (low != 's' && low != 'd' && low != 'c' && low != 'r')
			continue;
		for (size_t k = 0; k < sizeof words / sizeof words[0]; k++) {
			size_t len = words[k].len;
			if (words[k].w[0] != low || n - i < len || !starts_with_word(t + i, words[k].w, len))
				continue;
			if (!words[k].whole || ((i == 0 || !word_char(t[i - 1])) && (i + len == n || !word_char(t[i + len]))))
				return true;
		}
	}
	return false;
}

bool settings_opacity_matters(const Client *c)
{
	const Config *cfg = c->rt->config;
	if (cfg->cache.enabled)
		return true;
	for (size_t i = 0; i < cfg->n_services; i++)
		if (cfg->services[i].n_replicas > 0)
			return true;
	return false;
}

static void settings_snapshot(Client *c, Server *s)
{
	if (c->undo_active)
		return;
	c->undo_active = true;
	c->undo_failed = false;
	params_copy(&c->undo_params, &c->params);
	params_copy(&c->undo_server_params, &s->params);
	free(c->undo_search_path);
	c->undo_search_path = c->search_path ? xstrdup(c->search_path) : NULL;
}

/* A savepoint of the client's transaction and the settings when it was made (has_state false: made
 * before any SET of the transaction, so they were the transaction's first: the undo snapshot). */
struct SettingsSavepoint {
	char *name;
	bool has_state;
	ParamList params, server_params;
	char *search_path;
};

static void savepoints_pop_to(Client *c, size_t n)
{
	while (c->n_savepoints > n) {
		struct SettingsSavepoint *sp = &c->savepoints[--c->n_savepoints];
		free(sp->name);
		free(sp->search_path);
		params_free(&sp->params);
		params_free(&sp->server_params);
	}
}

void settings_free(Client *c)
{
	savepoints_pop_to(c, 0);
	free(c->savepoints);
	c->savepoints = NULL;
	c->cap_savepoints = 0;
}

/* The innermost savepoint named name, as an index + 1 (0: none). */
static size_t savepoint_find(const Client *c, const char *name)
{
	for (size_t i = c->n_savepoints; name && i-- > 0;)
		if (strcmp(c->savepoints[i].name, name) == 0)
			return i + 1;
	return 0;
}

static void savepoint_make(Client *c, Server *s, const char *name)
{
	if (!name)
		return;
	if (c->n_savepoints == c->cap_savepoints) {
		c->cap_savepoints = c->cap_savepoints ? 2 * c->cap_savepoints : 4;
		c->savepoints = xrealloc(c->savepoints, c->cap_savepoints * sizeof *c->savepoints);
	}
	struct SettingsSavepoint *sp = &c->savepoints[c->n_savepoints++];
	memset(sp, 0, sizeof *sp);
	sp->name = xstrdup(name);
	sp->has_state = c->undo_active;
	params_init(&sp->params);
	params_init(&sp->server_params);
	if (sp->has_state) {
		params_copy(&sp->params, &c->params);
		params_copy(&sp->server_params, &s->params);
		sp->search_path = c->search_path ? xstrdup(c->search_path) : NULL;
	}
}

static void set_search_path(Client *c, const char *value);

/* ROLLBACK TO name: the settings go back to what they were when the savepoint was made. */
static void savepoint_rollback_to(Client *c, Server *s, const char *name)
{
	size_t at = savepoint_find(c, name);
	if (!at)
		return; /* PostgreSQL refuses it */
	savepoints_pop_to(c, at);
	if (!c->undo_active)
		return; /* no SET since the transaction began */
	struct SettingsSavepoint *sp = &c->savepoints[at - 1];
	params_copy(&c->params, sp->has_state ? &sp->params : &c->undo_params);
	params_copy(&s->params, sp->has_state ? &sp->server_params : &c->undo_server_params);
	set_search_path(c, sp->has_state ? sp->search_path : c->undo_search_path);
}

static void set_search_path(Client *c, const char *value)
{
	free(c->search_path);
	c->search_path = value ? xstrdup(value) : NULL;
}

/* The session may hold settings pgrelay does not know: see settings.h. */
static void make_opaque(Client *c, Server *s, const char *why, const char *detail)
{
	s->settings_opaque = true;
	if (c->settings_opaque)
		return;
	c->settings_opaque = why;
	log_info(c->name, "no cached results or replica reads for this client until RESET ALL or DISCARD ALL: %s "
			  "may change settings pgrelay cannot read", detail ? detail : why);
}

void settings_unseen(Client *c, Server *s, const char *why) { make_opaque(c, s, why, NULL); }

/* Back to the session's defaults (RESET ALL, DISCARD ALL): what pgrelay could not see is gone too. */
static void reset_all(Client *c, Server *s)
{
	settings_snapshot(c, s);
	params_copy(&c->params, &c->startup_params);
	params_copy(&s->params, &s->login_params);
	set_search_path(c, NULL);
	if (c->settings_opaque)
		log_info(c->name, "settings reset: cached results and replica reads are on again for this client");
	c->settings_opaque = NULL;
}

static void reset_one(Client *c, Server *s, const char *name)
{
	settings_snapshot(c, s);
	const char *start = params_get(&c->startup_params, name);
	if (start)
		params_set(&c->params, name, start); /* a startup parameter is the session default */
	else
		params_remove(&c->params, name);
	const char *base = params_get(&s->login_params, name);
	if (base)
		params_set(&s->params, name, base);
	else
		params_remove(&s->params, name);
	if (strcmp(name, "search_path") == 0)
		set_search_path(c, NULL);
}

/* set_config(name, value, false) with constant arguments: a SET by another spelling. */
static void note_set_config(Client *c, Server *s, const SqlSetConfig *sc)
{
	if (sc->is_local == 1)
		return; /* this transaction only */
	if (sc->is_local < 0 || !sc->name || !sc->value) {
		make_opaque(c, s, "set_config() with arguments computed at run time", NULL);
		return;
	}
	if (params_is_settable_report(sc->name))
		return; /* reported: comes back as ParameterStatus */
	if (!params_name_valid(sc->name)) {
		make_opaque(c, s, "set_config() of a parameter pgrelay cannot name", NULL);
		return;
	}
	settings_snapshot(c, s);
	params_set(&c->params, sc->name, sc->value);
	params_set(&s->params, sc->name, sc->value);
	if (strcmp(sc->name, "search_path") == 0)
		set_search_path(c, sc->value);
}

void settings_track(Client *c, Server *s, const char *sql, const SqlAnalysis *a)
{
	if (a->parse_error) {
		/* PostgreSQL may accept what libpg_query does not: whatever it sets is unknown */
		if (settings_might_change(sql, strlen(sql)))
			make_opaque(c, s, "a statement pgrelay cannot parse", NULL);
		return;
	}
	const ConfigService *svc = s->pool ? s->pool->service : NULL;
	for (size_t i = 0; i < a->n_statements; i++) {
		const SqlStatement *st = &a->statements[i];
		const char *name = st->set_name;
		switch (st->set) {
		case SQL_SET:
			if (!name || params_is_settable_report(name))
				break; /* reported ones come back as ParameterStatus */
			if (!params_name_valid(name)) {
				if (strcmp(name, "transaction") != 0 && strcmp(name, "session characteristics") != 0)
					make_opaque(c, s, "a SET of a parameter pgrelay cannot name", NULL);
				break;
			}
			settings_snapshot(c, s);
			params_set_raw(&c->params, name, sql + st->start, (size_t)(st->end - st->start));
			params_set_raw(&s->params, name, sql + st->start, (size_t)(st->end - st->start));
			if (strcmp(name, "search_path") == 0 && st->set_value)
				set_search_path(c, st->set_value);
			break;
		case SQL_RESET:
			if (name)
				reset_one(c, s, name);
			break;
		case SQL_RESET_ALL:
		case SQL_DISCARD_ALL:
			reset_all(c, s);
			break;
		default:
			break;
		}
		if (st->kind == SQL_KIND_TX) {
			size_t at;
			switch (st->tx) {
			case SQL_TX_SAVEPOINT:
				savepoint_make(c, s, st->tx_name);
				break;
			case SQL_TX_ROLLBACK_TO:
				savepoint_rollback_to(c, s, st->tx_name);
				break;
			case SQL_TX_RELEASE:
				if ((at = savepoint_find(c, st->tx_name)))
					savepoints_pop_to(c, at - 1);
				break;
			default:
				break;
			}
		}
		for (size_t k = 0; k < st->n_set_configs; k++)
			note_set_config(c, s, &st->set_configs[k]);
		if (st->tag && strcmp(st->tag, "DO") == 0)
			make_opaque(c, s, "a DO block", NULL);
		else if (st->tag && strcmp(st->tag, "CALL") == 0)
			make_opaque(c, s, "a procedure call", NULL);
		for (size_t k = 0; k < st->n_functions && !c->settings_opaque; k++)
			if (!router_function_known(svc, st->functions[k])) {
				char why[160];
				snprintf(why, sizeof why, "function %s (not built-in, not declared under services.%s.functions)",
					 st->functions[k], svc ? svc->name : "?");
				make_opaque(c, s, "a function pgrelay does not know", why);
			}
	}
}

void settings_failed(Client *c)
{
	if (c->undo_active)
		c->undo_failed = true; /* undone at the transaction's end, unless a savepoint saves it */
}

void settings_tx_event(Client *c, TxEvent e)
{
	if (!c->undo_active)
		return;
	switch (e) {
	case TXTRACK_ROLLED_BACK:
		c->undo_failed = true;
		break;
	case TXTRACK_ROLLED_BACK_TO:
		/* the transaction goes on (its settings went back to the savepoint's when the ROLLBACK
		 * TO was sent) */
		c->undo_failed = false;
		break;
	case TXTRACK_COMMITTED:
		c->undo_failed = false;
		break;
	default:
		break;
	}
}

void settings_ready(Client *c, Server *s, char status)
{
	if (status != 'I')
		return; /* the transaction goes on: its SETs are not settled yet */
	savepoints_pop_to(c, 0);
	if (!c->undo_active)
		return;
	if (c->undo_failed) {
		params_copy(&c->params, &c->undo_params);
		if (s)
			params_copy(&s->params, &c->undo_server_params);
		free(c->search_path);
		c->search_path = c->undo_search_path;
		c->undo_search_path = NULL;
	}
	c->undo_active = false;
}

const char *settings_search_path(const Client *c)
{
	if (c->search_path)
		return c->search_path;
	const char *v = params_get(&c->params, "search_path");
	return params_is_raw(v) ? NULL : v;
}

/*
 * What a statement the client sends to s does to its session settings (settings.c), on every path
 * a statement runs by: a Query, the unnamed statement's Parse (its Bind follows), the Bind of a
 * named statement (each execution; its Parse executes nothing).
 */
void settings_track_message(Client *c, Server *s, uint8_t type, const uint8_t *msg, size_t total, size_t avail)
{
	if (type != 'Q' && type != 'P' && type != 'B')
		return;
	if (type == 'P' && avail > PROTO_HEADER_LEN && msg[PROTO_HEADER_LEN] != 0)
		return; /* a named statement: tracked at its Binds */
	if (type != 'B' && avail < total && total > c->rt->config->buffer_size) {
		settings_unseen(c, s, "a statement too large to read");
		return;
	}
	const char *sql;
	size_t len;
	if (statement_names_sql(c, type, msg, total, avail, &sql, &len) != 0 || !sql)
		return; /* the unnamed statement's Bind (tracked at its Parse), or not all here yet */
	if (!settings_might_change(sql, len) && !settings_opacity_matters(c))
		return;
	SqlAnalysis *a = sqlclass_analyze(&c->rt->sql, sql, len);
	settings_track(c, s, sql, a);
	sqlclass_release(a);
	/* The server now has what the client wants (if the statement works). */
	s->synced_fp = params_fingerprint(&c->params);
	s->synced_server_gen = s->params.gen;
}
