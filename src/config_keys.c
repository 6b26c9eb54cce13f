/*
 * config_keys — a Config read through the key table: values as text, differences, kept values,
 * paths (see config_keys.h).
 */
#include "config_keys.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc.h"

#define PATH_LEN 256
#define VALUE_LEN 1024

static const void *at(const void *obj, size_t offset)
{
	return (const char *)obj + offset;
}

static void *at_mut(void *obj, size_t offset)
{
	return (char *)obj + offset;
}

static size_t count_of(const void *obj, const ConfigKey *k)
{
	return *(const size_t *)at(obj, k->offset2);
}

static void join(char *buf, size_t len, const char *path, const char *name)
{
	int n = snprintf(buf, len, "%s%s%s", path, path[0] ? "." : "", name);
	if (n < 0 || (size_t)n >= len)
		memcpy(buf + len - 4, "...", 4);
}

/* "full.name", or "full[index]" without a name. */
static void item_path(char *buf, size_t len, const char *full, const char *name, size_t index)
{
	int n = name ? snprintf(buf, len, "%s.%s", full, name) : snprintf(buf, len, "%s[%zu]", full, index);
	if (n < 0 || (size_t)n >= len)
		memcpy(buf + len - 4, "...", 4);
}

const char *config_keys_class(const ConfigKey *key)
{
	return key->flags & CONFIG_KEY_RESTART ? "restart" : "reload";
}

/* key k of obj as text into buf; NULL when unset. */
static const char *format_value(const ConfigKey *k, const void *obj, char *buf, size_t len)
{
	const void *f = at(obj, k->offset);
	buf[0] = 0;
	switch (k->type) {
	case CONFIG_KEY_BOOL:
		return *(const bool *)f ? "true" : "false";
	case CONFIG_KEY_INT:
		snprintf(buf, len, "%d", *(const int *)f);
		break;
	case CONFIG_KEY_SIZE:
		config_format_size(buf, len, *(const size_t *)f);
		break;
	case CONFIG_KEY_DURATION:
		config_format_duration(buf, len, *(const int64_t *)f);
		break;
	case CONFIG_KEY_STRING:
		return *(char *const *)f;
	case CONFIG_KEY_SECRET:
		return *(char *const *)f ? CONFIG_KEYS_MASK : NULL;
	case CONFIG_KEY_ENUM: {
		int i = k->size == sizeof(bool) ? *(const bool *)f : *(const int *)f;
		for (int j = 0; k->names[j]; j++)
			if (j == i)
				return k->names[j];
		return "unknown";
	}
	case CONFIG_KEY_LIST: {
		char *const *list = *(char *const *const *)f;
		size_t used = 0, n = count_of(obj, k);
		for (size_t i = 0; i < n && used < len; i++) {
			int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", list[i]);
			if (w < 0)
				break;
			used += (size_t)w;
		}
		break;
	}
	case CONFIG_KEY_LAG: {
		int64_t bytes = *(const int64_t *)f, ms = *(const int64_t *)at(obj, k->offset2);
		if (bytes || !ms)
			config_format_size(buf, len, (uint64_t)bytes);
		else
			config_format_duration(buf, len, ms);
		break;
	}
	case CONFIG_KEY_CUSTOM:
		k->format(obj, buf, len);
		break;
	default:
		return NULL;
	}
	return buf;
}

/* ---- visit ---- */

typedef void (*VisitFn)(void *arg, const char *path, const ConfigKey *key, const char *value);

static void visit_section(const ConfigSchema *schema, const void *obj, const char *path, VisitFn fn, void *arg)
{
	char full[PATH_LEN], item[PATH_LEN], value[VALUE_LEN];
	for (size_t i = 0; i < schema->n_keys; i++) {
		const ConfigKey *k = &schema->keys[i];
		join(full, sizeof full, path, k->name);
		if (k->type == CONFIG_KEY_SECTION) {
			visit_section(k->sub, at(obj, k->offset), full, fn, arg);
		} else if (k->type == CONFIG_KEY_ITEMS || k->type == CONFIG_KEY_NAMED) {
			const char *items = *(const char *const *)at(obj, k->offset);
			for (size_t j = 0; j < count_of(obj, k); j++) {
				const void *it = items + j * k->sub->item_size;
				item_path(item, sizeof item, full,
					  k->type == CONFIG_KEY_NAMED ? *(char *const *)at(it, k->sub->name_offset) : NULL, j);
				visit_section(k->sub, it, item, fn, arg);
			}
		} else {
			fn(arg, full, k, format_value(k, obj, value, sizeof value));
		}
	}
}

void config_keys_visit(const Config *cfg, VisitFn fn, void *arg)
{
	visit_section(config_schema(), cfg, "", fn, arg);
}

/* ---- diff ---- */

typedef struct Diff {
	void (*fn)(void *arg, const ConfigChange *change);
	void *arg;
	size_t n;
} Diff;

static bool same_string(const char *a, const char *b)
{
	return a == b || (a && b && !strcmp(a, b));
}

static bool same_value(const ConfigKey *k, const void *a, const void *b)
{
	const void *fa = at(a, k->offset), *fb = at(b, k->offset);
	char ta[VALUE_LEN], tb[VALUE_LEN];
	switch (k->type) {
	case CONFIG_KEY_STRING:
		return same_string(*(char *const *)fa, *(char *const *)fb);
	case CONFIG_KEY_SECRET: {
		const char *sa = *(char *const *)fa, *sb = *(char *const *)fb;
		if (!sa || !sb || !k->offset2)
			return same_string(sa, sb);
		size_t la = count_of(a, k), lb = count_of(b, k);
		return la == lb && !memcmp(sa, sb, la);
	}
	case CONFIG_KEY_LIST: {
		size_t n = count_of(a, k);
		if (n != count_of(b, k))
			return false;
		for (size_t i = 0; i < n; i++)
			if (strcmp((*(char *const *const *)fa)[i], (*(char *const *const *)fb)[i]))
				return false;
		return true;
	}
	case CONFIG_KEY_LAG:
		return !memcmp(fa, fb, k->size) && !memcmp(at(a, k->offset2), at(b, k->offset2), sizeof(int64_t));
	case CONFIG_KEY_CUSTOM:
		k->format(a, ta, sizeof ta);
		k->format(b, tb, sizeof tb);
		return !strcmp(ta, tb);
	default:
		return !memcmp(fa, fb, k->size);
	}
}

static void report(Diff *d, const ConfigKey *k, const char *path, const char *service, const void *old_obj,
		   void *new_obj, const char *old_value, const char *new_value)
{
	ConfigChange ch = {.path = path, .key = k, .old_value = old_value, .new_value = new_value, .service = service,
			   .old_obj = old_obj, .new_obj = new_obj};
	d->n++;
	d->fn(d->arg, &ch);
}

static void diff_section(Diff *d, const ConfigSchema *schema, const void *old, void *cur, const char *path,
			 const char *service);

/* The items of NAMED key k: those of cur matched by name with old's, those that came and went. */
static void diff_named(Diff *d, const ConfigKey *k, const void *old, void *cur, const char *full, const char *service)
{
	const ConfigSchema *sub = k->sub;
	const char *olds = *(const char *const *)at(old, k->offset);
	char *curs = *(char **)at_mut(cur, k->offset);
	size_t n_old = count_of(old, k), n_cur = count_of(cur, k);
	char item[PATH_LEN];
	for (size_t j = 0; j < n_cur; j++) {
		void *it = curs + j * sub->item_size;
		const char *name = *(char *const *)at(it, sub->name_offset);
		const void *was = NULL;
		for (size_t i = 0; i < n_old && !was; i++)
			if (!strcmp(*(char *const *)at(olds + i * sub->item_size, sub->name_offset), name))
				was = olds + i * sub->item_size;
		item_path(item, sizeof item, full, name, 0);
		if (!was)
			report(d, k, item, service, NULL, it, NULL, "added");
		else
			diff_section(d, sub, was, it, item, !strcmp(k->name, "services") ? name : service);
	}
	for (size_t i = 0; i < n_old; i++) {
		const void *was = olds + i * sub->item_size;
		const char *name = *(char *const *)at(was, sub->name_offset);
		bool kept = false;
		for (size_t j = 0; j < n_cur && !kept; j++)
			kept = !strcmp(*(char *const *)at(curs + j * sub->item_size, sub->name_offset), name);
		item_path(item, sizeof item, full, name, 0);
		if (!kept)
			report(d, k, item, service, was, NULL, "removed", NULL);
	}
}

static void diff_section(Diff *d, const ConfigSchema *schema, const void *old, void *cur, const char *path,
			 const char *service)
{
	char full[PATH_LEN], item[PATH_LEN], ov[VALUE_LEN], nv[VALUE_LEN];
	for (size_t i = 0; i < schema->n_keys; i++) {
		const ConfigKey *k = &schema->keys[i];
		join(full, sizeof full, path, k->name);
		if (k->type == CONFIG_KEY_SECTION) {
			diff_section(d, k->sub, at(old, k->offset), at_mut(cur, k->offset), full, service);
		} else if (k->type == CONFIG_KEY_NAMED) {
			diff_named(d, k, old, cur, full, service);
		} else if (k->type == CONFIG_KEY_ITEMS) {
			size_t n = count_of(old, k);
			if (n != count_of(cur, k)) {
				snprintf(ov, sizeof ov, "%zu", n);
				snprintf(nv, sizeof nv, "%zu", count_of(cur, k));
				report(d, k, full, service, old, cur, ov, nv);
				continue;
			}
			const char *olds = *(const char *const *)at(old, k->offset);
			char *curs = *(char **)at_mut(cur, k->offset);
			for (size_t j = 0; j < n; j++) {
				item_path(item, sizeof item, full, NULL, j);
				diff_section(d, k->sub, olds + j * k->sub->item_size, curs + j * k->sub->item_size, item,
					     service);
			}
		} else if (!same_value(k, old, cur)) {
			report(d, k, full, service, old, cur, format_value(k, old, ov, sizeof ov),
			       format_value(k, cur, nv, sizeof nv));
		}
	}
}

size_t config_keys_diff(const Config *old, Config *cur, void (*fn)(void *arg, const ConfigChange *change), void *arg)
{
	Diff d = {fn, arg, 0};
	diff_section(&d, config_schema(), old, cur, "", NULL);
	return d.n;
}

/* ---- keeping the running value ---- */

void config_keys_keep(Config *cur, const ConfigChange *ch)
{
	const ConfigKey *k = ch->key;
	const void *from = at(ch->old_obj, k->offset);
	void *to = at_mut(ch->new_obj, k->offset);
	switch (k->type) {
	case CONFIG_KEY_SECRET:
	case CONFIG_KEY_STRING: {
		char **s = to;
		size_t n = k->offset2 ? count_of(ch->old_obj, k) : 0;
		if (*s)
			explicit_bzero(*s, k->offset2 ? count_of(ch->new_obj, k) : strlen(*s));
		free(*s);
		*s = NULL;
		if (*(char *const *)from) {
			if (k->offset2) { /* a secret with a length: it may hold any byte */
				*s = xmalloc(n + 1);
				memcpy(*s, *(char *const *)from, n + 1);
			} else {
				*s = xstrdup(*(char *const *)from);
			}
		}
		if (k->offset2)
			*(size_t *)at_mut(ch->new_obj, k->offset2) = n;
		break;
	}
	case CONFIG_KEY_LIST: {
		char ***list = to;
		size_t *count = at_mut(ch->new_obj, k->offset2);
		for (size_t i = 0; i < *count; i++)
			free((*list)[i]);
		free(*list);
		*count = count_of(ch->old_obj, k);
		*list = xcalloc(*count, sizeof **list);
		for (size_t i = 0; i < *count; i++)
			(*list)[i] = xstrdup((*(char **const *)from)[i]);
		break;
	}
	case CONFIG_KEY_LAG:
		memcpy(at_mut(ch->new_obj, k->offset2), at(ch->old_obj, k->offset2), sizeof(int64_t));
		/* fall through */
	case CONFIG_KEY_BOOL:
	case CONFIG_KEY_INT:
	case CONFIG_KEY_SIZE:
	case CONFIG_KEY_DURATION:
	case CONFIG_KEY_ENUM:
		memcpy(to, from, k->size);
		break;
	default:
		return; /* sections and custom keys are applied, never kept */
	}
	/* a kept service name must point into cur */
	cur->cache.wal_service = config_find_service(cur, cur->cache.wal_service_name);
}

/* ---- paths ---- */

const ConfigKey *config_keys_find(const char *path, char *canonical, size_t len)
{
	const ConfigSchema *schema = config_schema();
	const ConfigKey *found = NULL;
	char canon[PATH_LEN] = "", part[128];
	const char *p = path;
	while (*p) {
		size_t n = strcspn(p, ".[");
		if (!schema || n == 0 || n >= sizeof part)
			return NULL;
		memcpy(part, p, n);
		part[n] = 0;
		p += n;
		found = NULL;
		for (size_t i = 0; i < schema->n_keys && !found; i++) {
			const ConfigKey *k = &schema->keys[i];
			size_t kn = strlen(k->name);
			if (!strcmp(part, k->name) ||
			    (k->type == CONFIG_KEY_SECRET && !strncmp(part, k->name, kn) &&
			     (!strcmp(part + kn, "_file") || (!strcmp(part + kn, "_env") && !(k->flags & CONFIG_KEY_NO_ENV)))))
				found = k;
		}
		if (!found)
			return NULL;
		size_t used = strlen(canon);
		snprintf(canon + used, sizeof canon - used, "%s%s", used ? "." : "", found->name);
		schema = found->sub;
		if (found->type == CONFIG_KEY_ITEMS && *p == '[') { /* [N] or [] */
			p += 1 + strspn(p + 1, "0123456789");
			if (*p++ != ']')
				return NULL;
			strncat(canon, "[]", sizeof canon - strlen(canon) - 1);
		} else if (found->type == CONFIG_KEY_NAMED && *p == '.') { /* a name */
			p += 1 + strcspn(p + 1, ".");
			strncat(canon, ".*", sizeof canon - strlen(canon) - 1);
		} else if (*p == '[') {
			return NULL;
		}
		if (*p == '.')
			p++;
	}
	if (canonical && len)
		snprintf(canonical, len, "%s", canon);
	return found;
}

static void each_section(const ConfigSchema *schema, const char *path,
			 void (*fn)(void *arg, const char *path, const ConfigKey *key), void *arg)
{
	char full[PATH_LEN];
	for (size_t i = 0; i < schema->n_keys; i++) {
		const ConfigKey *k = &schema->keys[i];
		join(full, sizeof full, path, k->name);
		fn(arg, full, k);
		if (k->type == CONFIG_KEY_ITEMS)
			strncat(full, "[]", sizeof full - strlen(full) - 1);
		else if (k->type == CONFIG_KEY_NAMED)
			strncat(full, ".*", sizeof full - strlen(full) - 1);
		if (k->sub)
			each_section(k->sub, full, fn, arg);
	}
}

void config_keys_each(void (*fn)(void *arg, const char *path, const ConfigKey *key), void *arg)
{
	each_section(config_schema(), "", fn, arg);
}
