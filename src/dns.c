/*
 * dns — evdns resolvers, numeric hosts and libpq address lists (see dns.h).
 */
#include "dns.h"
#include "xalloc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct evdns_base *dns_base_new(struct event_base *base)
{
	struct evdns_base *dns =
		evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
	if (!dns)
		dns = evdns_base_new(base, 0); /* no resolv.conf: numeric hosts and the hosts file still work */
	if (dns)
		evdns_base_load_hosts(dns, NULL);
	return dns;
}

bool dns_is_numeric(const char *host)
{
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_NUMERICHOST | EVUTIL_AI_NUMERICSERV};
	struct evutil_addrinfo *res = NULL;
	bool numeric = evutil_getaddrinfo(host, NULL, &hints, &res) == 0 && res;
	if (res)
		evutil_freeaddrinfo(res);
	return numeric;
}

size_t dns_libpq_lists(const struct evutil_addrinfo *res, const char *name, size_t max, char *hostaddr,
		       size_t hostaddr_cap, char **hosts)
{
	size_t n = 0, len = 0, hl = 0, nlen = strlen(name);
	char(*seen)[INET6_ADDRSTRLEN] = xcalloc(max ? max : 1, INET6_ADDRSTRLEN);
	free(*hosts);
	*hosts = xmalloc(max * (nlen + 1) + 1);
	(*hosts)[0] = '\0';
	hostaddr[0] = '\0';
	for (const struct evutil_addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
		const void *addr;
		if (ai->ai_family == AF_INET6)
			addr = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
		else if (ai->ai_family == AF_INET)
			addr = &((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
		else
			continue;
		if (!evutil_inet_ntop(ai->ai_family, addr, seen[n], INET6_ADDRSTRLEN))
			continue;
		bool dup = false;
		for (size_t i = 0; i < n; i++)
			dup = dup || strcmp(seen[i], seen[n]) == 0;
		if (dup)
			continue; /* one entry per socket type/protocol otherwise */
		len += (size_t)snprintf(hostaddr + len, len < hostaddr_cap ? hostaddr_cap - len : 0, "%s%s", n ? "," : "",
					seen[n]);
		hl += (size_t)sprintf(*hosts + hl, "%s%s", n ? "," : "", name);
		n++;
	}
	free(seen);
	return n;
}
