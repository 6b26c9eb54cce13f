/*
 * upgrade — hand-over of the listening sockets between an old and a new pgrelay, and systemd
 * notifications (see upgrade.h).
 */
#include "upgrade.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <event2/event.h>

#include "listener.h"
#include "log.h"

#define HANDOVER_TIMEOUT_MS 10000

typedef struct UpgradeState {
	char path[108];
	int listen_fd;            /* our control socket */
	struct event *ev_listen;
	int peer_fd;              /* a new pgrelay taking over (old side), or the old one (new side) */
	struct event *ev_peer;
	char in[128];
	size_t in_len;
	bool sent_fds;
	bool took_over;           /* new side: the sockets came from an old pgrelay */
	bool dir_refused;         /* the control socket's directory failed control_dir_ok (logged once) */
} UpgradeState;

/*
 * The control socket: listen.upgrade_socket, or /tmp/pgrelay-<uid>/.s.pgrelay.<host>.<port>.upgrade
 * (two pgrelays on the same port but different addresses do not meet). The host keeps letters,
 * digits and . : - _ (others become _); a host too long for a socket path is replaced by a hash.
 */
static void control_path(const Runtime *rt, char *buf, size_t len)
{
	const char *p = rt->config->listen.upgrade_socket;
	if (p) {
		snprintf(buf, len, "%s", p);
		return;
	}
	const char *host = rt->config->listen.host;
	char safe[64];
	size_t n = strlen(host);
	if (n <= 48) { /* the whole path stays below 108 bytes */
		for (size_t i = 0; i <= n; i++) {
			char c = host[i];
			bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
				  c == ':' || c == '-' || c == '_' || c == 0;
			safe[i] = ok ? c : '_';
		}
	} else {
		uint64_t h = 1469598103934665603ULL; /* FNV-1a */
		for (size_t i = 0; i < n; i++)
			h = (h ^ (unsigned char)host[i]) * 1099511628211ULL;
		snprintf(safe, sizeof safe, "h%016llx", (unsigned long long)h);
	}
	snprintf(buf, len, "/tmp/pgrelay-%u/.s.pgrelay.%s.%d.upgrade", (unsigned)getuid(), safe, rt->config->listen.port);
}

/*
 * The control socket's directory must be one only pgrelay's user can enter: created 0700 if
 * missing (the last component only), else a real directory (not a symbolic link) owned by our
 * uid with no permission for group or others. Anything else: no hand-over (logged).
 */
static bool control_dir_ok(const char *path)
{
	char dir[108];
	snprintf(dir, sizeof dir, "%s", path);
	char *slash = strrchr(dir, '/');
	if (!slash) {
		snprintf(dir, sizeof dir, ".");
	} else if (slash == dir) {
		dir[1] = 0;
	} else {
		*slash = 0;
	}
	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		log_warning(NULL, "upgrade: cannot create %s (%s): no hand-over of the listening sockets", dir, strerror(errno));
		return false;
	}
	struct stat st;
	if (lstat(dir, &st) < 0) {
		log_warning(NULL, "upgrade: cannot inspect %s (%s): no hand-over of the listening sockets", dir, strerror(errno));
		return false;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != getuid() || (st.st_mode & 077) != 0) {
		log_warning(NULL,
			    "upgrade: %s must be a directory only pgrelay's user can enter (owner uid %u, mode 0700), but "
			    "it is %s owned by uid %u with mode %04o: no hand-over of the listening sockets",
			    dir, (unsigned)getuid(), S_ISDIR(st.st_mode) ? "a directory" : S_ISLNK(st.st_mode) ? "a symbolic link" : "not a directory",
			    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777));
		return false;
	}
	return true;
}

static UpgradeState *upgrade_state(Runtime *rt)
{
	if (!rt->upgrade) {
		UpgradeState *u = calloc(1, sizeof *u);
		if (!u)
			return NULL;
		u->listen_fd = u->peer_fd = -1;
		control_path(rt, u->path, sizeof u->path);
		rt->upgrade = u;
	}
	return rt->upgrade;
}

/* Only a process of our own user (or root) may take the sockets, or hand us sockets: the control
 * socket's path is predictable, so its owner is checked, not assumed. */
static bool peer_trusted(int fd, const char *path)
{
	struct ucred cred;
	socklen_t len = sizeof cred;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	if (cred.uid == getuid() || cred.uid == 0)
		return true;
	log_warning(NULL, "upgrade: ignoring a process of uid %u on %s (pgrelay runs as uid %u)", (unsigned)cred.uid, path,
		    (unsigned)getuid());
	return false;
}

/* Reads one line with a deadline (new side, before the loop runs). */
static bool read_line(int fd, char *buf, size_t len, int timeout_ms)
{
	size_t n = 0;
	while (n + 1 < len) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, timeout_ms) <= 0)
			return false;
		ssize_t r = recv(fd, buf + n, 1, 0);
		if (r <= 0)
			return false;
		if (buf[n] == '\n') {
			buf[n] = 0;
			return true;
		}
		n++;
	}
	return false;
}

static bool send_all(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len) {
		ssize_t w = send(fd, s, len, MSG_NOSIGNAL);
		if (w <= 0)
			return false;
		s += w;
		len -= (size_t)w;
	}
	return true;
}

bool upgrade_take_over(Runtime *rt)
{
	if (rt->config->listen.upgrade_socket && !rt->config->listen.upgrade_socket[0])
		return false; /* upgrade_socket: "" turns hand-over off */
	UpgradeState *u = upgrade_state(rt);
	if (!u)
		return false;
	if (!control_dir_ok(u->path)) {
		u->dir_refused = true;
		return false;
	}
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", u->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
		close(fd);
		if (errno == ECONNREFUSED)
			unlink(u->path); /* left by a pgrelay that is gone */
		return false;
	}
	if (!peer_trusted(fd, u->path)) {
		close(fd);
		return false;
	}
	char line[64];
	snprintf(line, sizeof line, "TAKEOVER %d\n", (int)getpid());
	if (!send_all(fd, line)) {
		close(fd);
		return false;
	}
	/* "FDS n\n" with the descriptors */
	char data[32];
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * RUNTIME_MAX_LISTENERS)];
	} ctl;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof data - 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof ctl.buf};
	struct pollfd p = {.fd = fd, .events = POLLIN};
	ssize_t r = poll(&p, 1, HANDOVER_TIMEOUT_MS) > 0 ? recvmsg(fd, &msg, MSG_CMSG_CLOEXEC) : -1;
	int n_fds = 0;
	if (r > 0) {
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
				n_fds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
				if (n_fds > RUNTIME_MAX_LISTENERS)
					n_fds = RUNTIME_MAX_LISTENERS;
				memcpy(rt->listen_fds, CMSG_DATA(c), sizeof(int) * (size_t)n_fds);
			}
	}
	if (n_fds == 0) {
		log_warning(NULL, "a pgrelay answers on %s but handed over no listening socket: starting on our own", u->path);
		close(fd);
		return false;
	}
	rt->n_listeners = n_fds;
	u->peer_fd = fd;
	u->took_over = true;
	log_info(NULL, "took over %d listening socket(s) from the running pgrelay through %s", n_fds, u->path);
	return true;
}

/* ---- old side: a new pgrelay asks for the sockets ---- */

static void peer_close(UpgradeState *u)
{
	if (u->ev_peer) {
		event_free(u->ev_peer);
		u->ev_peer = NULL;
	}
	if (u->peer_fd >= 0)
		close(u->peer_fd);
	u->peer_fd = -1;
	u->in_len = 0;
	u->sent_fds = false;
}

static void control_close(UpgradeState *u)
{
	if (u->ev_listen) {
		event_free(u->ev_listen);
		u->ev_listen = NULL;
	}
	if (u->listen_fd >= 0) {
		close(u->listen_fd);
		unlink(u->path);
	}
	u->listen_fd = -1;
}

static bool send_fds(Runtime *rt, int fd)
{
	char head[32];
	int n = snprintf(head, sizeof head, "FDS %d\n", rt->n_listeners);
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int) * RUNTIME_MAX_LISTENERS)];
	} ctl;
	memset(&ctl, 0, sizeof ctl);
	struct iovec iov = {.iov_base = head, .iov_len = (size_t)n};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
			     .msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)rt->n_listeners)};
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)rt->n_listeners);
	memcpy(CMSG_DATA(c), rt->listen_fds, sizeof(int) * (size_t)rt->n_listeners);
	return sendmsg(fd, &msg, MSG_NOSIGNAL) == n;
}

static void on_peer(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Runtime *rt = arg;
	UpgradeState *u = rt->upgrade;
	ssize_t r = recv(fd, u->in + u->in_len, sizeof u->in - 1 - u->in_len, MSG_DONTWAIT);
	if (r <= 0) {
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		log_warning(NULL, "upgrade: the new pgrelay went away before taking over; still serving");
		peer_close(u);
		return;
	}
	u->in_len += (size_t)r;
	u->in[u->in_len] = 0;
	char *nl;
	while ((nl = strchr(u->in, '\n'))) {
		*nl = 0;
		if (!u->sent_fds && strncmp(u->in, "TAKEOVER ", 9) == 0) {
			if (rt->shutting_down || rt->n_listeners == 0 || !send_fds(rt, u->peer_fd)) {
				peer_close(u);
				return;
			}
			u->sent_fds = true;
			log_info(NULL, "upgrade: handed the listening socket(s) to pgrelay pid %s", u->in + 9);
		} else if (u->sent_fds && strcmp(u->in, "READY") == 0) {
			/* The new one accepts: stop accepting here, make room for its control socket. */
			log_info(NULL, "upgrade: the new pgrelay is accepting; finishing our clients' transactions, then exiting");
			listener_stop(rt);
			control_close(u);
			send_all(u->peer_fd, "BYE\n");
			peer_close(u);
			rt->begin_shutdown(rt);
			return;
		} else {
			peer_close(u);
			return;
		}
		size_t rest = u->in_len - (size_t)(nl + 1 - u->in);
		memmove(u->in, nl + 1, rest);
		u->in_len = rest;
		u->in[u->in_len] = 0;
	}
}

static void on_control(evutil_socket_t lfd, short what, void *arg)
{
	(void)what;
	Runtime *rt = arg;
	UpgradeState *u = rt->upgrade;
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd < 0)
		return;
	if (u->peer_fd >= 0 || !peer_trusted(fd, u->path)) {
		close(fd); /* one hand-over at a time, and only to our own user */
		return;
	}
	u->peer_fd = fd;
	u->ev_peer = event_new(rt->base, fd, EV_READ | EV_PERSIST, on_peer, rt);
	struct timeval tv = {HANDOVER_TIMEOUT_MS / 1000, 0};
	event_add(u->ev_peer, &tv);
}

void upgrade_start(Runtime *rt)
{
	UpgradeState *u = rt->upgrade;
	if (!u)
		return;
	if (u->took_over) {
		/* new side: let the old one go, wait until it removed its control socket */
		char line[32];
		if (!send_all(u->peer_fd, "READY\n") || !read_line(u->peer_fd, line, sizeof line, HANDOVER_TIMEOUT_MS) ||
		    strcmp(line, "BYE") != 0)
			log_warning(NULL, "upgrade: the old pgrelay did not confirm the hand-over; it may still accept");
		close(u->peer_fd);
		u->peer_fd = -1;
		u->took_over = false;
	}
	if (u->dir_refused || !control_dir_ok(u->path))
		return; /* logged */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof sa.sun_path, "%s", u->path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	unlink(u->path); /* a stale one (a live pgrelay answered upgrade_take_over already) */
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4) < 0) {
		log_warning(NULL, "upgrade: cannot listen on %s (%s): restarts will not hand over sockets", u->path,
			    strerror(errno));
		close(fd);
		return;
	}
	u->listen_fd = fd;
	u->ev_listen = event_new(rt->base, fd, EV_READ | EV_PERSIST, on_control, rt);
	event_add(u->ev_listen, NULL);
}

void upgrade_stop(Runtime *rt)
{
	UpgradeState *u = rt->upgrade;
	if (!u)
		return;
	peer_close(u);
	control_close(u);
	free(u);
	rt->upgrade = NULL;
}

void upgrade_notify_ready(Runtime *rt)
{
	sd_notifyf(0, "READY=1\nMAINPID=%d\nSTATUS=accepting on %s:%d", (int)getpid(), rt->config->listen.host,
		   rt->config->listen.port);
}

void upgrade_notify_stopping(void) { sd_notify(0, "STOPPING=1"); }
