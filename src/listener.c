/*
 * listener — accepting client connections (see listener.h).
 */
/* How long accepting pauses when accept() finds no descriptor or memory (the socket stays
 * readable: without a pause the loop would spin on it). */
#define ACCEPT_PAUSE_MS 100
#include "listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
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

static void listener_on_resume(void *arg)
{
	Runtime *rt = arg;
	for (int i = 0; i < rt->n_listeners; i++)
		event_add(rt->ev_accept[i], NULL);
}

/* Out of descriptors or memory: stop watching the listening sockets for a moment. The pending
 * connections wait in the kernel's backlog; one line is logged per pause. */
static void pause_accepting(Runtime *rt, int err)
{
	if (!rt->accept_resume.ready)
		loop_timer_init(&rt->accept_resume, rt->base, listener_on_resume, rt);
	for (int i = 0; i < rt->n_listeners; i++)
		event_del(rt->ev_accept[i]);
	rt->stats.accept_pauses++;
	log_warning(NULL, "cannot accept clients: %s; pausing for %d ms (%d clients connected; pause %llu)",
		    strerror(err), ACCEPT_PAUSE_MS, (int)rt->n_clients, (unsigned long long)rt->stats.accept_pauses);
	loop_timer_start(&rt->accept_resume, ACCEPT_PAUSE_MS);
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
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				pause_accepting(rt, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK)
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

/* Descriptors pgrelay may need at once: every client, every server connection its pools may
 * open (per service and server: pool.max, per user when the service logs in as the client's
 * user), and a margin for listeners, Redis, health checks, the WAL listener and logs. */
static uint64_t descriptors_needed(const Config *cfg)
{
	uint64_t n = (uint64_t)cfg->listen.max_client_conn + 64;
	for (size_t i = 0; i < cfg->n_services; i++) {
		const ConfigService *svc = &cfg->services[i];
		uint64_t per_server = (uint64_t)svc->pool.max * (svc->primary.user ? 1 : (cfg->n_users ? cfg->n_users : 1));
		n += per_server * (1 + svc->n_replicas);
	}
	return n;
}

void listener_raise_fd_limit(const Config *cfg)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t before = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			log_info(NULL, "open files limit raised from %llu to %llu (the hard limit)",
				 (unsigned long long)before, (unsigned long long)rl.rlim_cur);
		else
			rl.rlim_cur = before;
	}
	uint64_t need = descriptors_needed(cfg);
	if (rl.rlim_cur != RLIM_INFINITY && (uint64_t)rl.rlim_cur < need)
		log_warning(NULL,
			    "open files limit %llu is below the %llu descriptors that listen.max_client_conn (%d) "
			    "and the pools may need: raise it (ulimit -n, or LimitNOFILE= in the systemd unit)",
			    (unsigned long long)rl.rlim_cur, (unsigned long long)need, cfg->listen.max_client_conn);
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
	loop_timer_release(&rt->accept_resume);
}
