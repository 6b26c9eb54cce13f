/*
 * listener — accepting client connections (see listener.h).
 */
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "log.h"
#include "proto.h"

static void format_peer(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		port = ntohs(in->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		port = ntohs(in6->sin6_port);
	}
	snprintf(out, len, "%s:%d", host, port);
}

static void refuse(int fd, const char *sqlstate, const char *message)
{
	Buf b;
	buf_init(&b);
	proto_build_error(&b, "FATAL", sqlstate, message, NULL, NULL);
	ssize_t ignored = send(fd, buf_head(&b), buf_used(&b), MSG_NOSIGNAL | MSG_DONTWAIT);
	(void)ignored;
	buf_free(&b);
	close(fd);
}

static void listener_on_accept(evutil_socket_t lfd, short what, void *arg)
{
	(void)what;
	Runtime *rt = arg;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				log_error(NULL, "accept failed: %s", strerror(errno));
			return;
		}
		char peer[80];
		format_peer(&ss, peer, sizeof(peer));
		if (rt->n_clients >= (size_t)rt->config->listen.max_client_conn) {
			rt->stats.clients_refused++;
			log_warning(NULL, "refusing client %s: max_client_conn (%d) reached", peer,
				    rt->config->listen.max_client_conn);
			refuse(fd, SQLSTATE_TOO_MANY_CONNECTIONS, "sorry, too many clients already (pgrelay max_client_conn)");
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		rt->stats.clients_accepted++;
		client_accept(rt, fd, peer);
	}
}

bool listener_start(Runtime *rt)
{
	const Config *cfg = rt->config;
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	char port[16];
	snprintf(port, sizeof(port), "%d", cfg->listen.port);
	const char *host = strcmp(cfg->listen.host, "*") == 0 ? NULL : cfg->listen.host;
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0) {
		log_error(NULL, "cannot resolve listen.host \"%s\": %s", cfg->listen.host, gai_strerror(gai));
		return false;
	}
	for (struct addrinfo *ai = res; ai && rt->n_listeners < RUNTIME_MAX_LISTENERS; ai = ai->ai_next) {
		int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (ai->ai_family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, cfg->listen.backlog) < 0) {
			log_error(NULL, "cannot listen on %s:%d: %s", cfg->listen.host, cfg->listen.port, strerror(errno));
			close(fd);
			continue;
		}
		rt->listen_fds[rt->n_listeners++] = fd;
	}
	freeaddrinfo(res);
	if (rt->n_listeners == 0) {
		log_error(NULL, "no listening socket could be opened");
		return false;
	}
	listener_watch(rt);
	return true;
}

void listener_watch(Runtime *rt)
{
	for (int i = 0; i < rt->n_listeners; i++) {
		evutil_make_socket_nonblocking(rt->listen_fds[i]);
		rt->ev_accept[i] = event_new(rt->base, rt->listen_fds[i], EV_READ | EV_PERSIST, listener_on_accept, rt);
		event_add(rt->ev_accept[i], NULL);
	}
}

void listener_stop(Runtime *rt)
{
	for (int i = 0; i < rt->n_listeners; i++) {
		event_free(rt->ev_accept[i]);
		close(rt->listen_fds[i]);
	}
	rt->n_listeners = 0;
}
