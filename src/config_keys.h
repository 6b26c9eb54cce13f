/*
 * config_keys — a loaded Config read through the key table (config.h's ConfigSchema): every key
 * with its path ("services.users.pool.max", "users[0].name") and its value as text (secrets
 * masked) for SHOW CONFIG, the keys whose values differ between two Configs (the reload's diff),
 * keeping a running value in a new Config (keys that need a restart), and the key a path names.
 * Knows nothing of the runtime: what a change means is the caller's.
 */
#ifndef PGRELAY_CONFIG_KEYS_H
#define PGRELAY_CONFIG_KEYS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define CONFIG_KEYS_MASK "********" /* a secret's value as shown and logged */

/* Every key of cfg that holds a value (sections, lists of sections and names are walked, not
 * shown), in table order: value is NULL when the key is unset. */
void config_keys_visit(const Config *cfg, void (*fn)(void *arg, const char *path, const ConfigKey *key, const char *value),
		       void *arg);

/* One difference between two Configs. */
typedef struct ConfigChange {
	const char *path;      /* "services.users.pool.max", or "users" when items came or went */
	const ConfigKey *key;  /* a key with a value, or an ITEMS / NAMED key whose items came or went */
	const char *old_value, *new_value; /* as text (secrets masked); NULL: unset, or absent */
	const char *service;   /* the key is under services.NAME: NAME; else NULL */
	const void *old_obj;   /* the structs that hold the key's field */
	void *new_obj;
} ConfigChange;

/* Calls fn for each key whose value differs between old and cur; returns how many. */
size_t config_keys_diff(const Config *old, Config *cur, void (*fn)(void *arg, const ConfigChange *change), void *arg);

/* Puts the old value of change's key back into the new Config cur (a key that needs a restart). */
void config_keys_keep(Config *cur, const ConfigChange *change);

/*
 * The key a path names ("services.users.pool.max", "users[0].name", "users[].name",
 * "cache.redis.password_file"), or NULL. canonical (if not NULL) receives the key's path in the
 * table: "services.*.pool.max", "users[].name", "cache.redis.password".
 */
const ConfigKey *config_keys_find(const char *path, char *canonical, size_t len);

/* Every key of the table, depth first, with its canonical path. */
void config_keys_each(void (*fn)(void *arg, const char *path, const ConfigKey *key), void *arg);

/* "reload" or "restart": how a change of key takes effect. */
const char *config_keys_class(const ConfigKey *key);

#endif
