/*
 * access.c — client access rules: address parsing and first-match-wins matching (see access.h).
 */
#include "access.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static const char *const type_names[] = {"host", "hostssl", "hostnossl"};
static const char *const method_names[] = {"scram-sha-256", "md5", "password", "reject"};

const char *access_type_name(AccessType type)
{
	return (unsigned)type < sizeof type_names / sizeof type_names[0] ? type_names[type] : "?";
}

const char *access_method_name(AccessMethod method)
{
	return (unsigned)method < sizeof method_names / sizeof method_names[0] ? method_names[method] : "?";
}

void access_rule_free(AccessRule *rule)
{
	for (size_t i = 0; i < rule->n_databases; i++)
		free(rule->databases[i]);
	free(rule->databases);
	for (size_t i = 0; i < rule->n_users; i++)
		free(rule->users[i]);
	free(rule->users);
	rule->databases = rule->users = NULL;
	rule->n_databases = rule->n_users = 0;
}

/* ---- addresses ---- */

/* True when the bits of addr past prefix (of nbytes bytes) are all zero. */
static bool host_bits_clear(const uint8_t *addr, int nbytes, int prefix)
{
	for (int i = 0; i < nbytes; i++) {
		int keep = prefix - i * 8; /* bits of this byte inside the prefix */
		uint8_t mask = keep >= 8 ? 0xff : keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
		if (addr[i] & (uint8_t)~mask)
			return false;
	}
	return true;
}

const char *access_parse_address(const char *text, AccessAddress *out)
{
	char host[64];
	memset(out, 0, sizeof *out);
	if (strcmp(text, "all") == 0)
		return NULL;
	const char *slash = strchr(text, '/');
	size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
	if (hlen == 0 || hlen >= sizeof host)
		return "not an IPv4 or IPv6 address";
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	int nbytes;
	if (inet_pton(AF_INET, host, out->addr) == 1) {
		out->family = 4;
		nbytes = 4;
	} else if (inet_pton(AF_INET6, host, out->addr) == 1) {
		out->family = 6;
		nbytes = 16;
	} else {
		return host[strspn(host, "0123456789abcdefABCDEF:.")] ? "not an IPv4 or IPv6 address (host names are not supported)"
								      : "not an IPv4 or IPv6 address";
	}
	int max = nbytes * 8;
	out->prefix = max;
	if (slash) {
		const char *p = slash + 1;
		int v = 0;
		if (!*p || (p[0] == '0' && p[1]))
			return "the prefix length after / must be a decimal number";
		for (; *p; p++) {
			if (*p < '0' || *p > '9' || v > 1000)
				return "the prefix length after / must be a decimal number";
			v = v * 10 + (*p - '0');
		}
		if (v > max)
			return out->family == 4 ? "an IPv4 prefix length is at most 32" : "an IPv6 prefix length is at most 128";
		out->prefix = v;
	}
	if (!host_bits_clear(out->addr, nbytes, out->prefix)) {
		out->family = 0;
		return "the address has bits set past its prefix length (write the network address, e.g. 10.0.0.0/8)";
	}
	return NULL;
}

void access_format_address(const AccessAddress *a, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN];
	if (a->family == 0) {
		snprintf(buf, len, "all");
		return;
	}
	inet_ntop(a->family == 4 ? AF_INET : AF_INET6, a->addr, host, sizeof host);
	snprintf(buf, len, "%s/%d", host, a->prefix);
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, int prefix)
{
	int whole = prefix / 8, rest = prefix % 8;
	if (memcmp(a, b, (size_t)whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* The peer as (family 4 or 6, bytes); IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4. False for
 * other families. */
static bool peer_bytes(const struct sockaddr *sa, int *family, uint8_t out[16])
{
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		memcpy(out, &in->sin_addr, 4);
		*family = 4;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			memcpy(out, in6->sin6_addr.s6_addr + 12, 4);
			*family = 4;
		} else {
			memcpy(out, in6->sin6_addr.s6_addr, 16);
			*family = 6;
		}
		return true;
	}
	return false;
}

/* ---- matching ---- */

static bool in_names(char *const *names, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			return true;
	return false;
}

static bool database_matches(const AccessRule *r, const AccessRequest *req)
{
	if (r->all_databases)
		return true;
	if (r->same_user && strcmp(req->database, req->user) == 0)
		return true;
	if (r->console && req->console)
		return true;
	return in_names(r->databases, r->n_databases, req->database);
}

int access_match(const AccessRule *rules, size_t n_rules, const AccessRequest *req)
{
	int family = 0;
	uint8_t peer[16] = {0};
	bool have_peer = peer_bytes(req->peer, &family, peer);

	for (size_t i = 0; i < n_rules; i++) {
		const AccessRule *r = &rules[i];
		if ((r->type == ACCESS_HOSTSSL && !req->tls) || (r->type == ACCESS_HOSTNOSSL && req->tls))
			continue;
		if (!database_matches(r, req))
			continue;
		if (!r->all_users && !in_names(r->users, r->n_users, req->user))
			continue;
		if (r->address.family != 0 &&
		    (!have_peer || family != r->address.family || !prefix_equal(peer, r->address.addr, r->address.prefix)))
			continue;
		return (int)i;
	}
	return -1;
}
