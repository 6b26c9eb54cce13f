/*
 * settings — a client's session settings in transaction pooling, as the parser sees its statements
 * (comments anywhere, any protocol path).
 *
 * Owns: recording SET / RESET / RESET ALL / DISCARD ALL and set_config(name, value, false) with
 * constant arguments in the client's wanted parameters (so every server connection that serves the
 * client later gets them), undoing them when the statement or its transaction fails, the client's
 * search_path for routing and the result cache, and the settings pgrelay cannot see: set_config
 * with computed arguments, DO blocks, procedure calls, functions not known to leave settings alone
 * (neither built-in nor declared under services.X.functions), and statements too large to read.
 * Those make the client's session *opaque*: no cached results and no replica reads for it until
 * RESET ALL or DISCARD ALL (the settings it made may change what a read returns), and the server
 * connection they ran on is reset (DISCARD ALL) before it serves anyone else.
 *
 * Fields of Client it owns: params (with ParameterStatus from server.c), search_path, undo_*,
 * settings_opaque; of Server: settings_opaque.
 */
#ifndef PGRELAY_SETTINGS_H
#define PGRELAY_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sqlclass.h"
#include "txtrack.h"

typedef struct Client Client;
typedef struct Server Server;

/* Cheap look at raw text: false when it cannot set, reset or discard anything by name (no word
 * "set" in any form, "discard", "do", "call", "savepoint", "rollback", "release"), so a caller that only tracks settings need not
 * analyze it. Comments do not hide anything from it. */
bool settings_might_change(const char *text, size_t len);

/* Whether opaque sessions must be looked for in every statement (the cache or replica reads may
 * serve the client): then every statement's functions are checked. */
bool settings_opacity_matters(const Client *c);

/*
 * A statement text the client sends to s (a Query, the unnamed statement's Parse, the Bind of a
 * named one), analyzed: records what it sets and marks the session opaque when it may change
 * settings pgrelay cannot read.
 */
void settings_track(Client *c, Server *s, const char *sql, const SqlAnalysis *a);

/* The client sent s a statement pgrelay could not read (too large): what it sets is unknown. */
void settings_unseen(Client *c, Server *s, const char *why);
/*
 * What a message the client sends to s does to its session settings, on every path a statement
 * runs by: a Query, the unnamed statement's Parse (its Bind follows), the Bind of a named statement
 * (each execution; its Parse executes nothing). Other messages are ignored.
 */
void settings_track_message(Client *c, Server *s, uint8_t type, const uint8_t *msg, size_t total, size_t avail);

/* Replies to the client's own requests while its transaction's SETs are pending (c->undo_active):
 * an error fails them (undone when the transaction ends, unless ROLLBACK TO saves it), a ROLLBACK
 * undoes them, COMMIT keeps them; ReadyForQuery 'I' settles them. SAVEPOINT / ROLLBACK TO / RELEASE
 * are followed as they are sent (settings_track): ROLLBACK TO puts back the settings the savepoint
 * was made with. */
void settings_failed(Client *c);
void settings_tx_event(Client *c, TxEvent e);
void settings_ready(Client *c, Server *s, char status);

/* Frees what the client's settings hold beyond its parameter lists (the client goes away). */
void settings_free(Client *c);

/* The search_path the router and the cache resolve unqualified names with (NULL: PostgreSQL's
 * default). */
const char *settings_search_path(const Client *c);

#endif
