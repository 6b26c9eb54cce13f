/*
 * params — session parameters a client expects its server connection to have (like PgBouncer's
 * varcache).
 *
 * Owns: name/value lists (case-insensitive names), which parameters are tracked, parsing the
 * startup "options" string, and the SET statement that makes a server match a client. Pure.
 */
#ifndef PGRELAY_PARAMS_H
#define PGRELAY_PARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

typedef struct Param {
	char *name;
	char *value;
} Param;

typedef struct ParamList {
	Param *items;
	size_t n, cap;
	uint32_t gen; /* changes whenever the list does */
	uint64_t fp;  /* content fingerprint, valid when fp_gen == gen */
	uint32_t fp_gen;
} ParamList;

void params_init(ParamList *l);
void params_free(ParamList *l);
void params_clear(ParamList *l);
/* Sets name to value (case-insensitive match). Returns true if the list changed. */
bool params_set(ParamList *l, const char *name, const char *value);
const char *params_get(const ParamList *l, const char *name);
bool params_remove(ParamList *l, const char *name);

/*
 * A value that is SQL to replay rather than a literal: the client's own "SET name ..." statement
 * (kept as written, so list values such as search_path keep their meaning). Stored with a
 * leading PARAMS_RAW_MARK.
 */
#define PARAMS_RAW_MARK '\x01'
void params_set_raw(ParamList *l, const char *name, const char *sql, size_t len);
static inline bool params_is_raw(const char *value) { return value && value[0] == PARAMS_RAW_MARK; }
/* A fingerprint of the list's contents (order and name case do not matter); cached. */
uint64_t params_fingerprint(ParamList *l);
void params_copy(ParamList *dst, const ParamList *src);

/*
 * Whether a ParameterStatus for name, seen while a client is linked, is a setting the client made
 * and can be re-applied with SET on another server connection (client_encoding, DateStyle,
 * TimeZone, IntervalStyle, application_name, standard_conforming_strings). Read-only reports such
 * as server_version are not.
 */
bool params_is_settable_report(const char *name);

/* A GUC name pgrelay will put into a SET statement: [A-Za-z_][A-Za-z0-9_.]* (at most 63 chars). */
bool params_name_valid(const char *name);

/*
 * Parses a startup "options" value ("-c name=value", "--name=value", separated by spaces, with
 * backslash escapes as libpq writes them) into out. Returns NULL or a static error message.
 */
const char *params_parse_options(const char *options, ParamList *out);

/*
 * Makes a server's settings (have) match what a client wants: appends "SELECT set_config('name', E'value', false);" (or
 * the raw statement) to sql for every parameter of want whose value differs from have's, and
 * "RESET name;" for every
 * parameter have holds that want does not and whose value is not the server's own default (base,
 * its values at login). Updates have accordingly. Returns how many statements were appended.
 */
size_t params_sync(const ParamList *want, ParamList *have, const ParamList *base, Buf *sql);

#endif
