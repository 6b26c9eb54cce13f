/*
 * dns — name resolution on the event loop for the connections pgrelay opens to PostgreSQL and
 * Redis: evdns resolvers set up the same way everywhere, the numeric-host test, and the address
 * lists handed to libpq (which must not resolve names itself: it would block the loop).
 */
#ifndef PGRELAY_DNS_H
#define PGRELAY_DNS_H

#include <event2/dns.h>
#include <event2/util.h>
#include <stdbool.h>
#include <stddef.h>

/* A resolver on base reading /etc/resolv.conf (or none: numeric hosts still work) and the hosts
 * file; NULL when even that fails. */
struct evdns_base *dns_base_new(struct event_base *base);

/* True when host is an IPv4 or IPv6 address (no lookup needed). */
bool dns_is_numeric(const char *host);

/*
 * The distinct IPv4 and IPv6 addresses of res, at most max, as libpq's lists: hostaddr "a,b",
 * *hosts the name repeated "name,name" (malloc'd; the name is what TLS checks and messages use;
 * one port applies to every host). Returns how many addresses.
 */
size_t dns_libpq_lists(const struct evutil_addrinfo *res, const char *name, size_t max, char *hostaddr,
		       size_t hostaddr_cap, char **hosts);

#endif
