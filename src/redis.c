/*
 * redis — asynchronous Redis client, single node or Redis Cluster (see redis.h for what it owns).
 *
 * Commands. Each command is a Req: its formatted text (kept for resending after a redirect), its
 * slot, its deadline timer and the user's callback. Sending it to a node hands hiredis a Ticket as
 * privdata; hiredis always calls the ticket's callback eventually (with the reply, or with NULL
 * when the connection goes away), but cannot cancel a command, so a Req that finishes first (timeout,
 * shutdown) only clears ticket->req and the late callback frees the ticket and does nothing else.
 * A Req finishes exactly once, in req_finish, which frees it and then calls the user's callback as
 * its very last action. Errors found while something else is running (inside redis_client_command,
 * inside hiredis's teardown of a connection) are not reported there: req_fail_later stores the text
 * and activates the Req's timer event, so the callback runs from the loop.
 *
 * Nodes. States: IDLE (no connection), RESOLVING (evdns), CONNECTING (hiredis connection open,
 * AUTH + PING sent, commands queued behind them), READY (PING answered), WAIT (backoff before the
 * next attempt). One timer per node is the connect timeout (RESOLVING/CONNECTING) or the backoff
 * (WAIT: 100 ms doubling to 5 s). A node is marked down when an attempt fails, its connection breaks,
 * or it stops answering (commands outstanding and no reply for stall_ms); it stays down, and commands
 * for it fail at once, until a later handshake succeeds. "down" and "up again" are logged once per
 * transition. A tick (250 ms) sends PING to nodes idle for a second, so an idle node that stops
 * answering is noticed too.
 *
 * Cluster. The slot map (16384 node pointers) comes from CLUSTER SLOTS sent to a reachable node
 * (configured seeds or known masters, round robin). -MOVED updates one slot at once, resends the
 * command and asks for a full refresh; -ASK sends ASKING and the command to the named node without
 * touching the map; redirects per command are limited. Refreshes are coalesced and at least
 * refresh_gap_ms apart (100 ms, doubling to 5 s while they fail); a node going down, a slot with no
 * node and -CLUSTERDOWN ask for one. Nodes that serve no slot after a refresh (and are not seeds)
 * are closed and no longer reconnected. Before the first map, commands wait (within their deadline).
 *
 * Pub/sub. One more hiredis connection, to one node, SUBSCRIBEs to every channel; it is replaced on
 * another node when it breaks, when its node is marked down, or when the subscription is not
 * confirmed within the connect timeout.
 *
 * Re-entrancy. The user's callbacks (replies, messages, state) run only as the last action of an
 * event callback, so they may issue commands or free the client. Internal code never frees a
 * hiredis context from inside that context's onConnect/onDisconnect callbacks; elsewhere
 * redisAsyncFree is safe (hiredis defers it while inside a reply callback). A context is detached
 * (ac->data = NULL) before it is freed, and every hiredis callback ignores detached contexts.
 */
#include "redis.h"
#include "dns.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "log.h"
#include "loop.h"
#include "xalloc.h"

#define WHO "redis"

#define SLOTS 16384
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define TICK_MS 250
#define IDLE_PING_MS 1000
#define MAX_REDIRECTS 5
#define DEFAULT_PORT 6379

typedef struct Node Node;
typedef struct Req Req;

typedef enum { NODE_IDLE = 0, NODE_RESOLVING, NODE_CONNECTING, NODE_READY, NODE_WAIT } NodeState;
typedef enum { WAIT_NONE = 0, WAIT_MAP, WAIT_NODE } ReqWait;
typedef enum { SUB_IDLE = 0, SUB_CONNECTING, SUB_ACTIVE, SUB_WAIT } SubState;
enum { HS_AUTH = 1, HS_PING = 2 };

/* hiredis privdata of a command: req is NULL once the Req no longer wants the reply. */
typedef struct Ticket {
	Req *req;
} Ticket;

/* evdns callback argument: n is NULL once the node no longer wants the answer. */
typedef struct DnsTicket {
	Node *n;
} DnsTicket;

struct Node {
	RedisClient *r;
	char *host;
	int port;
	char name[300];       /* host:port, for logs and errors */
	char addr[INET6_ADDRSTRLEN]; /* numeric address hiredis connects to ("" until resolved) */
	bool numeric;         /* host is an address: no resolution */
	bool seed;            /* configured (cluster mode) */
	bool in_map;          /* serves slots in the current map (cluster mode) */
	bool down;            /* marked down and logged; cleared by a successful handshake */
	bool ever_ready;
	NodeState state;
	redisAsyncContext *ac;
	DnsTicket *dns;
	LoopTimer timer;   /* connect timeout or backoff */
	int backoff_ms;
	unsigned attempts;    /* failed attempts so far: picks among a host name's addresses */
	int outstanding;      /* commands sent on ac and not answered yet */
	int64_t progress_ms;  /* last reply, or when outstanding last became non-zero */
	char last_error[160];
};

struct Req {
	RedisClient *r;
	Req *prev, *next;     /* r->reqs */
	RedisReplyFn fn;
	void *arg;
	char *cmd;            /* redisFormatCommandArgv; NULL if that failed */
	int cmdlen;
	bool has_slot;
	uint16_t slot;
	bool internal;        /* not counted in the stats */
	bool force;           /* may use a node marked down (slot map refresh) */
	Node *target;         /* fixed node (internal commands) */
	int redirects;
	ReqWait wait;
	Node *wait_node;
	bool wait_asking;
	Ticket *ticket;       /* in flight on node */
	Node *node;
	int timeout_ms;
	LoopTimer timer;   /* deadline; also activated by req_fail_later */
	const char *err;      /* set by req_fail_later */
	char errbuf[512];
};

typedef struct Sub {
	char *channel;
	RedisMessageFn fn;
	void *arg;
} Sub;

struct RedisClient {
	struct event_base *base;
	struct evdns_base *dns;
	bool own_dns;
	bool cluster;
	int timeout_ms, connect_timeout_ms, stall_ms;
	char *username, *password;

	Node **nodes;
	size_t n_nodes, cap_nodes;
	size_t rr;            /* round robin for keyless commands */

	Node **slots;         /* SLOTS entries (cluster) */
	bool have_map;
	bool refresh_inflight, refresh_again, refresh_failing;
	int refresh_gap_ms;
	int64_t last_refresh_ms;
	size_t refresh_rr;
	Node *refresh_node;
	LoopTimer refresh_ev;

	Req *reqs_head, *reqs_tail;

	struct event tick_ev;

	RedisStateFn on_state;
	void *state_arg;
	bool reported_up;
	LoopTimer state_ev;

	/* hiredis's reply builders with a bound on array sizes (reader_bound) */
	redisReplyObjectFunctions reply_fns;
	const redisReplyObjectFunctions *default_fns;

	Sub **subs;
	size_t n_subs;
	redisAsyncContext *sub_ac;
	Node *sub_node;
	SubState sub_state;
	size_t sub_acks;
	int sub_backoff_ms;
	bool sub_failing;     /* a failure was logged; the next success is logged too */
	size_t sub_rr;
	LoopTimer sub_ev;

	RedisStats stats;
	bool closing;
};

static void node_connect(Node *n);
static void node_fail(Node *n, const char *why, bool free_ac);
static void req_send(Req *q, Node *n, bool asking);
static void req_dispatch(Req *q);
static void refresh_request(RedisClient *r);
static void sub_fail(RedisClient *r, const char *why, bool free_ac);
static void state_changed(RedisClient *r);
static Node *node_add(RedisClient *r, const char *host, int port, bool seed);
static Node *node_find(RedisClient *r, const char *host, int port);

/* ---- small helpers ---- */

static struct timeval ms_tv(int64_t ms)
{
	if (ms < 0)
		ms = 0;
	struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
	return tv;
}

static int next_backoff(int cur)
{
	if (cur < BACKOFF_MIN_MS)
		return BACKOFF_MIN_MS;
	return cur * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : cur * 2;
}

/* hiredis keeps the connection's error text in the context. */
static const char *ac_error(const redisAsyncContext *ac, const char *fallback)
{
	if (ac->errstr && ac->errstr[0])
		return ac->errstr;
	if (ac->c.errstr[0])
		return ac->c.errstr;
	return fallback;
}

/* Detaches ac from whatever owns it (so its remaining callbacks do nothing) and frees it. */
static void ac_close(redisAsyncContext *ac)
{
	ac->data = NULL;
	redisAsyncFree(ac);
}

/* "host:port", "host", "[v6]:port", "v6:port" (last colon, as Redis writes them). */
static bool parse_endpoint(const char *s, char **host, int *port)
{
	const char *h = s, *hend, *p = NULL;
	if (s[0] == '[') {
		h = s + 1;
		hend = strchr(h, ']');
		if (!hend)
			return false;
		if (hend[1] == ':')
			p = hend + 2;
		else if (hend[1] != '\0')
			return false;
	} else {
		const char *colon = strrchr(s, ':');
		hend = colon ? colon : s + strlen(s);
		if (colon)
			p = colon + 1;
	}
	long v = DEFAULT_PORT;
	if (p) {
		char *end;
		v = strtol(p, &end, 10);
		if (!*p || *end || v < 1 || v > 65535)
			return false;
	}
	*host = xalloc_check(strndup(h, (size_t)(hend - h)));
	*port = (int)v;
	return true;
}

/* ---- slots ---- */

uint16_t redis_key_slot(const char *key, size_t len)
{
	/* {tag}: only the part between the first '{' and the first '}' after it, when not empty. */
	const char *open = key ? memchr(key, '{', len) : NULL;
	if (open) {
		size_t start = (size_t)(open - key) + 1;
		const char *close = memchr(key + start, '}', len - start);
		if (close && close > key + start) {
			len = (size_t)(close - (key + start));
			key += start;
		}
	}
	uint16_t crc = 0; /* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0 */
	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)((uint16_t)(unsigned char)key[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
	}
	return crc & (SLOTS - 1);
}

/* ---- state ---- */

static bool node_counts(const RedisClient *r, const Node *n)
{
	return r->cluster ? n->in_map : n == r->nodes[0];
}

static bool compute_up(const RedisClient *r)
{
	if (r->closing)
		return false;
	if (r->cluster) {
		if (!r->have_map)
			return false;
	} else if (!r->nodes[0]->ever_ready) {
		return false;
	}
	for (size_t i = 0; i < r->n_nodes; i++)
		if (node_counts(r, r->nodes[i]) && r->nodes[i]->down)
			return false;
	if (r->n_subs && !(r->sub_state == SUB_ACTIVE && r->sub_acks >= r->n_subs))
		return false;
	return true;
}

static void on_state_event(void *arg)
{
	RedisClient *r = arg;
	bool up = compute_up(r);
	if (up == r->reported_up)
		return;
	r->reported_up = up;
	log_debug(WHO, "client %s", up ? "up" : "down");
	if (r->on_state)
		r->on_state(r->state_arg, up);
}

/* The state may have changed: on_state_event compares and reports, from the loop. */
static void state_changed(RedisClient *r)
{
	if (!r->closing)
		loop_timer_fire_soon(&r->state_ev);
}

/* ---- requests ---- */

static void req_unlink(Req *q)
{
	RedisClient *r = q->r;
	if (q->prev)
		q->prev->next = q->next;
	else
		r->reqs_head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		r->reqs_tail = q->prev;
	q->prev = q->next = NULL;
}

static void req_cancel_ticket(Req *q)
{
	if (q->ticket) {
		q->ticket->req = NULL;
		q->ticket = NULL;
	}
	q->node = NULL;
}

/* Frees q, then calls its callback (last: the callback may do anything). */
static void req_finish(Req *q, redisReply *reply, const char *err, bool timeout)
{
	RedisClient *r = q->r;
	req_unlink(q);
	loop_timer_stop(&q->timer);
	req_cancel_ticket(q);
	if (!q->internal) {
		if (reply)
			r->stats.replies++;
		else if (timeout)
			r->stats.timeouts++;
		else
			r->stats.errors++;
	}
	char msg[sizeof q->errbuf];
	if (err)
		snprintf(msg, sizeof msg, "%s", err);
	RedisReplyFn fn = q->fn;
	void *arg = q->arg;
	if (q->cmd)
		redisFreeCommand(q->cmd);
	free(q);
	fn(arg, reply, err ? msg : NULL);
}

/* Fails q from the loop (its timer event, activated now), never from the current call stack. */
__attribute__((format(printf, 2, 3))) static void req_fail_later(Req *q, const char *fmt, ...)
{
	if (q->err)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(q->errbuf, sizeof q->errbuf, fmt, ap);
	va_end(ap);
	q->err = q->errbuf;
	q->wait = WAIT_NONE;
	req_cancel_ticket(q);
	loop_timer_fire_soon(&q->timer);
}

static void on_req_timer(void *arg)
{
	Req *q = arg;
	RedisClient *r = q->r;
	if (q->err) {
		req_finish(q, NULL, q->err, false);
		return;
	}
	Node *n = q->node;
	char msg[sizeof q->errbuf];
	if (n)
		snprintf(msg, sizeof msg, "timeout after %d ms (%s)", q->timeout_ms, n->name);
	else if (q->wait == WAIT_MAP)
		snprintf(msg, sizeof msg, "timeout after %d ms (no cluster slot map yet)", q->timeout_ms);
	else
		snprintf(msg, sizeof msg, "timeout after %d ms", q->timeout_ms);
	req_cancel_ticket(q);
	q->wait = WAIT_NONE;
	/* A node that has not answered anything for stall_ms while commands wait is stuck (paused,
	 * overloaded, or a half-open connection): drop it so the next commands fail at once. */
	if (n && n->ac && n->outstanding > 0 && loop_now_ms() - n->progress_ms >= r->stall_ms) {
		char why[80];
		snprintf(why, sizeof why, "no reply for %lld ms", (long long)(loop_now_ms() - n->progress_ms));
		node_fail(n, why, true);
	}
	req_finish(q, NULL, msg, true);
}

static Req *req_new(RedisClient *r, RedisReplyFn fn, void *arg, int argc, const char **argv, const size_t *argvlen,
		    int timeout_ms, bool internal)
{
	Req *q = xcalloc(1, sizeof *q);
	q->r = r;
	q->fn = fn;
	q->arg = arg;
	q->internal = internal;
	q->timeout_ms = timeout_ms;
	char *cmd = NULL;
	int len = argc > 0 && argv ? redisFormatCommandArgv(&cmd, argc, argv, argvlen) : -1;
	if (len > 0) {
		q->cmd = cmd;
		q->cmdlen = len;
	}
	loop_timer_init(&q->timer, r->base, on_req_timer, q);
	loop_timer_start(&q->timer, timeout_ms);
	q->prev = r->reqs_tail;
	if (r->reqs_tail)
		r->reqs_tail->next = q;
	else
		r->reqs_head = q;
	r->reqs_tail = q;
	return q;
}

/* A command went out on n->ac: the stall clock starts when n was idle. */
static void node_sent(Node *n)
{
	if (n->outstanding++ == 0)
		n->progress_ms = loop_now_ms();
}

/* The hiredis callback of every command sent with a Ticket (or NULL: fire and forget). */
static void on_reply(redisAsyncContext *ac, void *reply_, void *privdata)
{
	redisReply *reply = reply_;
	Node *n = ac->data;
	Ticket *t = privdata;
	if (n) {
		if (n->outstanding > 0)
			n->outstanding--;
		if (reply)
			n->progress_ms = loop_now_ms();
	}
	if (!t)
		return;
	Req *q = t->req;
	free(t);
	if (!q)
		return; /* finished already (timeout, shutdown): a late reply */
	Node *from = q->node;
	q->ticket = NULL;
	q->node = NULL;
	RedisClient *r = q->r;
	if (!reply) {
		req_fail_later(q, "connection to %s lost%s%s", from ? from->name : "redis", n ? ": " : "",
			       n ? ac_error(ac, "closed") : "");
		return;
	}
	if (r->cluster && !q->target && reply->type == REDIS_REPLY_ERROR && reply->str) {
		bool moved = strncmp(reply->str, "MOVED ", 6) == 0;
		bool ask = strncmp(reply->str, "ASK ", 4) == 0;
		if (moved || ask) {
			const char *p = reply->str + (moved ? 6 : 4);
			char *end;
			unsigned long slot = strtoul(p, &end, 10);
			char *host = NULL;
			int port = 0;
			if (end == p || *end != ' ' || slot >= SLOTS || !parse_endpoint(end + 1, &host, &port)) {
				req_fail_later(q, "cannot parse the redirect \"%s\"", reply->str);
				free(host);
				return;
			}
			if (!host[0] && from) { /* unknown endpoint: the same host as the node asked */
				free(host);
				host = xstrdup(from->host);
			}
			Node *to = node_find(r, host, port);
			if (!to)
				to = node_add(r, host, port, false);
			free(host);
			if (++q->redirects > MAX_REDIRECTS) {
				req_fail_later(q, "too many redirects (last: %s)", reply->str);
				return;
			}
			if (moved) {
				r->stats.moved++;
				r->slots[slot] = to;
				if (!to->in_map) {
					to->in_map = true;
					state_changed(r);
				}
				refresh_request(r);
				req_send(q, to, false);
			} else {
				r->stats.ask++;
				req_send(q, to, true);
			}
			return;
		}
		if (strncmp(reply->str, "CLUSTERDOWN", 11) == 0)
			refresh_request(r);
	}
	req_finish(q, reply, NULL, false);
}

static void req_send(Req *q, Node *n, bool asking)
{
	if (n->down && !q->force) {
		if (n->state == NODE_IDLE) /* not reconnecting (left the map): try again for the next ones */
			node_connect(n);
		req_fail_later(q, "%s is down: %s", n->name, n->last_error);
		return;
	}
	if (!n->ac) {
		if (n->state == NODE_IDLE || n->state == NODE_WAIT)
			node_connect(n);
		if (n->state == NODE_RESOLVING) {
			q->wait = WAIT_NODE;
			q->wait_node = n;
			q->wait_asking = asking;
			return;
		}
		if (!n->ac) {
			req_fail_later(q, "%s is down: %s", n->name, n->last_error);
			return;
		}
	}
	if (asking && redisAsyncCommand(n->ac, on_reply, NULL, "ASKING") == REDIS_OK)
		node_sent(n);
	Ticket *t = xcalloc(1, sizeof *t);
	t->req = q;
	if (redisAsyncFormattedCommand(n->ac, on_reply, t, q->cmd, (size_t)q->cmdlen) != REDIS_OK) {
		free(t);
		req_fail_later(q, "cannot send to %s: connection closing", n->name);
		return;
	}
	node_sent(n);
	q->ticket = t;
	q->node = n;
}

/* Round robin over the nodes worth asking: ready ones first, then those not down, then any. */
static Node *pick_node(RedisClient *r, size_t *rr)
{
	if (!r->cluster)
		return r->nodes[0];
	Node *best = NULL;
	int best_rank = 0;
	size_t start = (*rr)++;
	for (size_t k = 0; k < r->n_nodes; k++) {
		Node *n = r->nodes[(start + k) % r->n_nodes];
		if (!n->in_map && !n->seed)
			continue;
		int rank = n->down ? 1 : n->state == NODE_READY ? 3 : 2;
		if (rank > best_rank) {
			best = n;
			best_rank = rank;
		}
	}
	return best;
}

static void req_dispatch(Req *q)
{
	RedisClient *r = q->r;
	Node *n;
	if (!q->cmd) {
		req_fail_later(q, "cannot format the command");
		return;
	}
	if (q->target) {
		n = q->target;
	} else if (!r->cluster) {
		n = r->nodes[0];
	} else if (!r->have_map) {
		q->wait = WAIT_MAP;
		return;
	} else if (!q->has_slot) {
		n = pick_node(r, &r->rr);
	} else {
		n = r->slots[q->slot];
		if (!n) {
			refresh_request(r);
			req_fail_later(q, "no node serves slot %u", (unsigned)q->slot);
			return;
		}
	}
	if (!n) {
		req_fail_later(q, "no node to send to");
		return;
	}
	req_send(q, n, false);
}

/* ---- nodes ---- */

static bool node_wanted(const Node *n)
{
	const RedisClient *r = n->r;
	if (!r->cluster)
		return n == r->nodes[0];
	return n->seed || n->in_map || n == r->sub_node;
}

static void node_ready(Node *n)
{
	RedisClient *r = n->r;
	n->state = NODE_READY;
	loop_timer_stop(&n->timer);
	n->backoff_ms = 0;
	n->progress_ms = loop_now_ms();
	n->last_error[0] = '\0';
	if (n->down) {
		n->down = false;
		r->stats.reconnects++;
		log_info(WHO, "%s is up again", n->name);
	} else if (!n->ever_ready) {
		log_debug(WHO, "connected to %s", n->name);
	}
	n->ever_ready = true;
	state_changed(r);
}

/* Why a handshake failed, in words an operator acts on (never the password). */
static void auth_error(const RedisClient *r, bool auth, const char *err, char *why, size_t cap)
{
	err = err ? err : "error";
	if (auth && r->username)
		snprintf(why, cap, "AUTH as user %s failed: %s", r->username, err);
	else if (auth)
		snprintf(why, cap, "AUTH failed: %s", err);
	else if (strncmp(err, "NOAUTH", 6) == 0)
		snprintf(why, cap, "the node requires AUTH and no password is configured (%s)", err);
	else
		snprintf(why, cap, "PING failed: %s", err);
}

/* AUTH and PING: the node is ready when PING answers. */
static void on_handshake(redisAsyncContext *ac, void *reply_, void *privdata)
{
	redisReply *reply = reply_;
	Node *n = ac->data;
	if (!n || !reply)
		return; /* detached, or the connection is going away (its own callbacks report that) */
	if (reply->type == REDIS_REPLY_ERROR) {
		char why[256];
		auth_error(n->r, (intptr_t)privdata == HS_AUTH, reply->str, why, sizeof why);
		node_fail(n, why, true); /* inside a reply callback: hiredis frees ac when it returns */
		return;
	}
	if ((intptr_t)privdata == HS_PING)
		node_ready(n);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	Node *n = ac->data;
	if (!n || status == REDIS_OK)
		return; /* connected: the handshake decides */
	char why[160];
	snprintf(why, sizeof why, "%s", ac_error(ac, "connect failed"));
	n->ac = NULL;
	ac->data = NULL;
	node_fail(n, why, false); /* hiredis frees ac after this returns */
}

static void on_disconnect(const redisAsyncContext *cac, int status)
{
	(void)status;
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	Node *n = ac->data;
	if (!n)
		return;
	char why[160];
	snprintf(why, sizeof why, "%s", ac_error(ac, "connection closed"));
	n->ac = NULL;
	ac->data = NULL;
	node_fail(n, why, false);
}

static int send_auth(RedisClient *r, redisAsyncContext *ac, redisCallbackFn *fn, void *privdata)
{
	const char *argv[3] = {"AUTH", r->username ? r->username : r->password, r->password};
	return redisAsyncCommandArgv(ac, fn, privdata, r->username ? 3 : 2, argv, NULL);
}

/*
 * hiredis 0.14 allocates an array's slots as soon as it reads the count: "*292191191" from a
 * hostile or broken Redis would make it calloc 2.3 GB. Every reply pgrelay asks for is far
 * smaller (MGET of an entry's versions, CLUSTER SLOTS): a larger count fails the connection
 * ("Out of memory" from the reader) before anything is allocated.
 */
#define REDIS_MAX_ARRAY 1000000

static void *bounded_create_array(const redisReadTask *task, int elements)
{
	const redisReplyObjectFunctions *defaults = task->privdata;
	if (elements < 0 || elements > REDIS_MAX_ARRAY)
		return NULL;
	return defaults->createArray(task, elements);
}

static void reader_bound(RedisClient *r, redisAsyncContext *ac)
{
	ac->c.reader->privdata = (void *)r->default_fns;
	ac->c.reader->fn = &r->reply_fns;
}

/* Opens the hiredis connection to n->addr (numeric: no blocking resolution in hiredis). */
static void node_open(Node *n)
{
	RedisClient *r = n->r;
	redisAsyncContext *ac = redisAsyncConnect(n->addr, n->port);
	if (!ac)
		xalloc_check(NULL);
	if (ac->err) {
		char why[160];
		snprintf(why, sizeof why, "%s", ac_error(ac, "connect failed"));
		redisAsyncFree(ac);
		node_fail(n, why, false);
		return;
	}
	ac->data = n;
	n->ac = ac;
	reader_bound(r, ac);
	n->state = NODE_CONNECTING;
	n->outstanding = 0;
	n->progress_ms = loop_now_ms();
	redisLibeventAttach(ac, r->base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	redisEnableKeepAlive(&ac->c);
	if (r->password)
		send_auth(r, ac, on_handshake, (void *)(intptr_t)HS_AUTH);
	redisAsyncCommand(ac, on_handshake, (void *)(intptr_t)HS_PING, "PING");
	/* Commands that waited for the address go behind the handshake. */
	for (Req *q = r->reqs_head; q; q = q->next) {
		if (q->wait == WAIT_NODE && q->wait_node == n) {
			q->wait = WAIT_NONE;
			req_send(q, n, q->wait_asking);
		}
	}
}

static void on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
	DnsTicket *t = arg;
	Node *n = t->n;
	free(t);
	if (!n) {
		if (res)
			evutil_freeaddrinfo(res);
		return;
	}
	n->dns = NULL;
	n->addr[0] = '\0';
	/* IPv4 addresses first; successive attempts go round the list (failures advance n->attempts). */
	char addrs[8][INET6_ADDRSTRLEN];
	size_t count = 0;
	for (int family = 0; family < 2; family++) {
		for (struct evutil_addrinfo *ai = res; ai && count < 8; ai = ai->ai_next) {
			const void *a = NULL;
			if (family == 0 && ai->ai_family == AF_INET)
				a = &((struct sockaddr_in *)ai->ai_addr)->sin_addr;
			else if (family == 1 && ai->ai_family == AF_INET6)
				a = &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
			if (!a || !evutil_inet_ntop(ai->ai_family, a, addrs[count], sizeof addrs[count]))
				continue;
			bool dup = false;
			for (size_t i = 0; i < count; i++)
				dup = dup || strcmp(addrs[i], addrs[count]) == 0;
			if (!dup)
				count++;
		}
	}
	if (count)
		memcpy(n->addr, addrs[n->attempts % count], sizeof n->addr);
	if (res)
		evutil_freeaddrinfo(res);
	if (!n->addr[0]) {
		char why[200];
		snprintf(why, sizeof why, "cannot resolve %s: %s", n->host,
			 result ? evutil_gai_strerror(result) : "no address");
		node_fail(n, why, false);
		return;
	}
	node_open(n);
}

static void node_connect(Node *n)
{
	RedisClient *r = n->r;
	if (r->closing || n->ac || n->state == NODE_RESOLVING)
		return;
	n->state = NODE_RESOLVING;
	loop_timer_start(&n->timer, r->connect_timeout_ms);
	if (n->numeric) {
		node_open(n);
		return;
	}
	if (!r->dns) {
		if (!(r->dns = dns_base_new(r->base))) {
			node_fail(n, "cannot create a DNS resolver", false);
			return;
		}
		r->own_dns = true;
	}
	struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
					.ai_flags = EVUTIL_AI_ADDRCONFIG};
	DnsTicket *t = xcalloc(1, sizeof *t);
	t->n = n;
	n->dns = t;
	/* The callback may run before this returns (hosts file, cached answer). */
	evdns_getaddrinfo(r->dns, n->host, NULL, &hints, on_resolved, t);
}

/* Drops n's connection (free_ac: also free it; false inside its connect/disconnect callbacks, where
 * hiredis frees it), marks it down (logged once), fails what waits for it and schedules the next
 * attempt. */
static void node_fail(Node *n, const char *why, bool free_ac)
{
	RedisClient *r = n->r;
	if (n->ac) {
		redisAsyncContext *ac = n->ac;
		n->ac = NULL;
		if (free_ac)
			ac_close(ac);
		else
			ac->data = NULL;
	}
	if (n->dns) {
		n->dns->n = NULL;
		n->dns = NULL;
	}
	loop_timer_stop(&n->timer);
	n->outstanding = 0;
	n->attempts++;
	snprintf(n->last_error, sizeof n->last_error, "%s", why);
	if (!n->down) {
		n->down = true;
		log_warning(WHO, "%s is down: %s", n->name, why);
		state_changed(r);
		if (r->cluster)
			refresh_request(r);
	} else {
		log_debug(WHO, "%s: attempt failed: %s", n->name, why);
	}
	for (Req *q = r->reqs_head; q; q = q->next)
		if (q->wait == WAIT_NODE && q->wait_node == n)
			req_fail_later(q, "%s is down: %s", n->name, why);
	if (r->sub_node == n && r->sub_ac)
		sub_fail(r, "its node is down", true);
	if (r->closing)
		return;
	n->backoff_ms = next_backoff(n->backoff_ms);
	n->state = NODE_WAIT;
	loop_timer_start(&n->timer, n->backoff_ms);
}

static void on_node_timer(void *arg)
{
	Node *n = arg;
	if (n->state == NODE_RESOLVING || n->state == NODE_CONNECTING) {
		char why[80];
		snprintf(why, sizeof why, "no answer within the connect timeout (%d ms)", n->r->connect_timeout_ms);
		node_fail(n, why, true);
	} else if (n->state == NODE_WAIT) {
		if (node_wanted(n))
			node_connect(n);
		else
			n->state = NODE_IDLE;
	}
}

/* Closes n and stops reconnecting it (it left the slot map); its down flag stays. */
static void node_retire(Node *n)
{
	if (n->ac) {
		redisAsyncContext *ac = n->ac;
		n->ac = NULL;
		ac_close(ac);
	}
	if (n->dns) {
		n->dns->n = NULL;
		n->dns = NULL;
	}
	loop_timer_stop(&n->timer);
	n->outstanding = 0;
	n->state = NODE_IDLE;
	log_info(WHO, "%s serves no slot any more: connection closed", n->name);
}

static Node *node_add(RedisClient *r, const char *host, int port, bool seed)
{
	Node *n = xcalloc(1, sizeof *n);
	n->r = r;
	n->host = xstrdup(host);
	n->port = port;
	n->seed = seed;
	snprintf(n->name, sizeof n->name, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	n->numeric = dns_is_numeric(host);
	if (n->numeric)
		snprintf(n->addr, sizeof n->addr, "%s", host);
	loop_timer_init(&n->timer, r->base, on_node_timer, n);
	if (r->n_nodes == r->cap_nodes) {
		r->cap_nodes = r->cap_nodes ? 2 * r->cap_nodes : 8;
		r->nodes = xalloc_check(realloc(r->nodes, r->cap_nodes * sizeof *r->nodes));
	}
	r->nodes[r->n_nodes++] = n;
	return n;
}

static Node *node_find(RedisClient *r, const char *host, int port)
{
	for (size_t i = 0; i < r->n_nodes; i++)
		if (r->nodes[i]->port == port && strcmp(r->nodes[i]->host, host) == 0)
			return r->nodes[i];
	return NULL;
}

/* ---- cluster slot map ---- */

/* Parses CLUSTER SLOTS into map; false (with why) if it is not usable. */
static bool parse_slots(RedisClient *r, const redisReply *reply, Node *from, Node **map, char *why, size_t whysz)
{
	if (reply->type == REDIS_REPLY_ERROR) {
		snprintf(why, whysz, "%s", reply->str ? reply->str : "error");
		return false;
	}
	if (reply->type != REDIS_REPLY_ARRAY) {
		snprintf(why, whysz, "unexpected reply type %d", reply->type);
		return false;
	}
	size_t covered = 0;
	for (size_t i = 0; i < reply->elements; i++) {
		const redisReply *e = reply->element[i];
		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 || e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER || e->element[2]->type != REDIS_REPLY_ARRAY ||
		    e->element[2]->elements < 2 || e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
		    e->element[2]->element[1]->type != REDIS_REPLY_INTEGER) {
			snprintf(why, whysz, "malformed CLUSTER SLOTS entry %zu", i);
			return false;
		}
		long long lo = e->element[0]->integer, hi = e->element[1]->integer;
		long long port = e->element[2]->element[1]->integer;
		const char *host = e->element[2]->element[0]->str;
		if (lo < 0 || hi >= SLOTS || lo > hi || port < 1 || port > 65535) {
			snprintf(why, whysz, "bad CLUSTER SLOTS range %lld-%lld port %lld", lo, hi, port);
			return false;
		}
		if (!host[0] || strcmp(host, "?") == 0) /* unknown endpoint: the node that answered */
			host = from->host;
		Node *n = node_find(r, host, (int)port);
		if (!n)
			n = node_add(r, host, (int)port, false);
		for (long long s = lo; s <= hi; s++) {
			if (!map[s])
				covered++;
			map[s] = n;
		}
	}
	if (covered == 0) {
		snprintf(why, whysz, "no slot is assigned");
		return false;
	}
	return true;
}

static void on_slots(void *arg, redisReply *reply, const char *error)
{
	RedisClient *r = arg;
	if (r->closing)
		return;
	r->refresh_inflight = false;
	Node *from = r->refresh_node;
	r->refresh_node = NULL;
	Node **map = xcalloc(SLOTS, sizeof *map);
	char why[200];
	bool ok = false;
	if (!reply)
		snprintf(why, sizeof why, "%s", error);
	else if (from)
		ok = parse_slots(r, reply, from, map, why, sizeof why);
	else
		snprintf(why, sizeof why, "no node");
	if (!ok) {
		free(map);
		if (!r->refresh_failing)
			log_warning(WHO, "cannot load the cluster slot map from %s: %s; retrying", from ? from->name : "any node",
				    why);
		else
			log_debug(WHO, "cannot load the cluster slot map from %s: %s", from ? from->name : "any node", why);
		r->refresh_failing = true;
		r->refresh_gap_ms = next_backoff(r->refresh_gap_ms);
		refresh_request(r);
		return;
	}
	size_t changed = 0, masters = 0;
	for (size_t s = 0; s < SLOTS; s++)
		changed += map[s] != r->slots[s];
	for (size_t i = 0; i < r->n_nodes; i++)
		r->nodes[i]->in_map = false;
	for (size_t s = 0; s < SLOTS; s++) {
		if (map[s] && !map[s]->in_map) {
			map[s]->in_map = true;
			masters++;
		}
	}
	memcpy(r->slots, map, SLOTS * sizeof *map);
	free(map);
	if (!r->have_map || r->refresh_failing)
		log_info(WHO, "cluster slot map loaded from %s: %zu masters", from->name, masters);
	else if (changed)
		log_info(WHO, "cluster slot map from %s: %zu slots changed owner (%zu masters)", from->name, changed, masters);
	r->have_map = true;
	r->refresh_failing = false;
	r->refresh_gap_ms = BACKOFF_MIN_MS;
	for (size_t i = 0; i < r->n_nodes; i++) {
		Node *n = r->nodes[i];
		if (!node_wanted(n) && (n->ac || n->dns || n->state == NODE_WAIT))
			node_retire(n);
	}
	for (Req *q = r->reqs_head; q; q = q->next) {
		if (q->wait == WAIT_MAP) {
			q->wait = WAIT_NONE;
			req_dispatch(q);
		}
	}
	state_changed(r);
	if (r->refresh_again) {
		r->refresh_again = false;
		refresh_request(r);
	}
}

static void refresh_start(RedisClient *r)
{
	static const char *const argv[] = {"CLUSTER", "SLOTS"};
	Node *n = pick_node(r, &r->refresh_rr);
	Req *q = req_new(r, on_slots, r, 2, (const char **)argv, NULL, r->connect_timeout_ms, true);
	q->target = n;
	q->force = true;
	r->refresh_node = n;
	r->refresh_inflight = true;
	r->last_refresh_ms = loop_now_ms();
	r->stats.slot_refreshes++;
	if (!n) {
		req_fail_later(q, "no node to ask");
		return;
	}
	req_dispatch(q);
}

static void on_refresh_timer(void *arg)
{
	RedisClient *r = arg;
	if (!r->refresh_inflight)
		refresh_start(r);
}

/* Asks for a full CLUSTER SLOTS refresh, soon: coalesced, at least refresh_gap_ms apart. */
static void refresh_request(RedisClient *r)
{
	if (!r->cluster || r->closing)
		return;
	if (r->refresh_inflight) {
		r->refresh_again = true;
		return;
	}
	if (loop_timer_pending(&r->refresh_ev))
		return;
	loop_timer_start(&r->refresh_ev, r->last_refresh_ms + r->refresh_gap_ms - loop_now_ms());
}

/* ---- pub/sub ---- */

static void sub_wait(RedisClient *r)
{
	r->sub_state = SUB_WAIT;
	r->sub_backoff_ms = next_backoff(r->sub_backoff_ms);
	loop_timer_start(&r->sub_ev, r->sub_backoff_ms);
}

static void sub_fail(RedisClient *r, const char *why, bool free_ac)
{
	if (r->sub_ac) {
		redisAsyncContext *ac = r->sub_ac;
		r->sub_ac = NULL;
		if (free_ac)
			ac_close(ac);
		else
			ac->data = NULL;
	}
	const char *where = r->sub_node ? r->sub_node->name : "redis";
	if (!r->sub_failing) {
		log_warning(WHO, "pub/sub connection to %s failed: %s; subscribing again (messages may have been missed)",
			    where, why);
		r->sub_failing = true;
	} else {
		log_debug(WHO, "pub/sub connection to %s failed: %s", where, why);
	}
	r->sub_node = NULL;
	r->sub_acks = 0;
	loop_timer_stop(&r->sub_ev);
	state_changed(r);
	if (!r->closing)
		sub_wait(r);
}

static void on_sub_message(redisAsyncContext *ac, void *reply_, void *privdata)
{
	redisReply *reply = reply_;
	RedisClient *r = ac->data;
	Sub *s = privdata;
	if (!r || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	const char *kind = reply->element[0]->str;
	if (strcasecmp(kind, "subscribe") == 0) {
		r->sub_acks++;
		if (r->sub_state == SUB_CONNECTING && r->sub_acks >= r->n_subs) {
			r->sub_state = SUB_ACTIVE;
			loop_timer_stop(&r->sub_ev);
			r->sub_backoff_ms = 0;
			if (r->sub_failing)
				log_info(WHO, "pub/sub subscribed again on %s", r->sub_node->name);
			else
				log_debug(WHO, "pub/sub subscribed on %s", r->sub_node->name);
			r->sub_failing = false;
		}
		state_changed(r);
		return;
	}
	if (strcasecmp(kind, "message") == 0 && reply->element[2]->type == REDIS_REPLY_STRING && s)
		s->fn(s->arg, reply->element[2]->str, reply->element[2]->len);
}

static void on_sub_auth(redisAsyncContext *ac, void *reply_, void *privdata)
{
	(void)privdata;
	redisReply *reply = reply_;
	RedisClient *r = ac->data;
	if (!r || !reply || reply->type != REDIS_REPLY_ERROR)
		return;
	char why[256];
	auth_error(r, true, reply->str, why, sizeof why);
	sub_fail(r, why, true);
}

static void on_sub_connect(const redisAsyncContext *cac, int status)
{
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	RedisClient *r = ac->data;
	if (!r || status == REDIS_OK)
		return;
	r->sub_ac = NULL;
	ac->data = NULL;
	sub_fail(r, ac_error(ac, "connect failed"), false);
}

static void on_sub_disconnect(const redisAsyncContext *cac, int status)
{
	(void)status;
	redisAsyncContext *ac = (redisAsyncContext *)cac;
	RedisClient *r = ac->data;
	if (!r)
		return;
	r->sub_ac = NULL;
	ac->data = NULL;
	sub_fail(r, ac_error(ac, "connection closed"), false);
}

static void sub_send(RedisClient *r, Sub *s)
{
	const char *argv[2] = {"SUBSCRIBE", s->channel};
	redisAsyncCommandArgv(r->sub_ac, on_sub_message, s, 2, argv, NULL);
}

static void sub_start(RedisClient *r)
{
	if (r->closing || !r->n_subs || r->sub_ac)
		return;
	Node *n = pick_node(r, &r->sub_rr);
	if (!n) {
		sub_wait(r);
		return;
	}
	if (n->state == NODE_IDLE)
		node_connect(n); /* its command connection's PINGs watch the node for this one too */
	if (!n->addr[0]) { /* host name not resolved yet */
		sub_wait(r);
		return;
	}
	redisAsyncContext *ac = redisAsyncConnect(n->addr, n->port);
	if (!ac)
		xalloc_check(NULL);
	r->sub_node = n;
	if (ac->err) {
		char why[160];
		snprintf(why, sizeof why, "%s", ac_error(ac, "connect failed"));
		redisAsyncFree(ac);
		sub_fail(r, why, false);
		return;
	}
	ac->data = r;
	r->sub_ac = ac;
	reader_bound(r, ac);
	r->sub_state = SUB_CONNECTING;
	r->sub_acks = 0;
	redisLibeventAttach(ac, r->base);
	redisAsyncSetConnectCallback(ac, on_sub_connect);
	redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
	redisEnableKeepAlive(&ac->c);
	if (r->password)
		send_auth(r, ac, on_sub_auth, NULL);
	for (size_t i = 0; i < r->n_subs; i++)
		sub_send(r, r->subs[i]);
	loop_timer_start(&r->sub_ev, r->connect_timeout_ms);
}

static void on_sub_timer(void *arg)
{
	RedisClient *r = arg;
	if (r->sub_state == SUB_CONNECTING) {
		char why[80];
		snprintf(why, sizeof why, "not subscribed within the connect timeout (%d ms)", r->connect_timeout_ms);
		sub_fail(r, why, true);
	} else if (r->sub_state == SUB_WAIT || r->sub_state == SUB_IDLE) {
		sub_start(r);
	}
}

/* ---- tick ---- */

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	RedisClient *r = arg;
	int64_t now = loop_now_ms();
	bool map_node_down = false;
	for (size_t i = 0; i < r->n_nodes; i++) {
		Node *n = r->nodes[i];
		if (node_counts(r, n) && n->down)
			map_node_down = true;
		if (n->state != NODE_READY || !n->ac)
			continue;
		if (n->outstanding > 0 && now - n->progress_ms >= r->stall_ms) {
			char why[80];
			snprintf(why, sizeof why, "no reply for %lld ms", (long long)(now - n->progress_ms));
			node_fail(n, why, true);
		} else if (n->outstanding == 0 && now - n->progress_ms >= IDLE_PING_MS) {
			if (redisAsyncCommand(n->ac, on_reply, NULL, "PING") == REDIS_OK)
				node_sent(n);
		}
	}
	/* A master down may be failed over: look again now and then. */
	if (r->cluster && (!r->have_map || (map_node_down && now - r->last_refresh_ms >= 1000)))
		refresh_request(r);
}

/* ---- API ---- */

RedisClient *redis_client_new(struct event_base *base, const RedisOptions *opt, RedisStateFn on_state, void *state_arg)
{
	if (!opt->n_nodes || !opt->nodes) {
		log_error(WHO, "no Redis node configured");
		return NULL;
	}
	RedisClient *r = xcalloc(1, sizeof *r);
	r->base = base;
	r->cluster = opt->cluster;
	redisReader *probe = redisReaderCreate(); /* the only way to reach hiredis's default builders */
	if (!probe)
		xalloc_check(NULL);
	r->default_fns = probe->fn;
	redisReaderFree(probe);
	r->reply_fns = *r->default_fns;
	r->reply_fns.createArray = bounded_create_array;
	r->timeout_ms = opt->timeout_ms > 0 ? opt->timeout_ms : 20;
	if (opt->connect_timeout_ms > 0) {
		r->connect_timeout_ms = opt->connect_timeout_ms;
	} else {
		int64_t c = 10 * (int64_t)r->timeout_ms;
		r->connect_timeout_ms = (int)(c < 200 ? 200 : c > 2000 ? 2000 : c);
	}
	r->stall_ms = 2 * r->connect_timeout_ms < 1000 ? 1000 : 2 * r->connect_timeout_ms;
	r->username = xstrdup(opt->username);
	r->password = xstrdup(opt->password);
	r->dns = opt->dns;
	r->on_state = on_state;
	r->state_arg = state_arg;
	r->refresh_gap_ms = BACKOFF_MIN_MS;
	loop_timer_init(&r->refresh_ev, base, on_refresh_timer, r);
	event_assign(&r->tick_ev, base, -1, EV_PERSIST, on_tick, r);
	loop_timer_init(&r->state_ev, base, on_state_event, r);
	loop_timer_init(&r->sub_ev, base, on_sub_timer, r);
	for (size_t i = 0; i < (r->cluster ? opt->n_nodes : 1); i++) {
		char *host = NULL;
		int port;
		if (!opt->nodes[i] || !parse_endpoint(opt->nodes[i], &host, &port) || !host[0]) {
			log_error(WHO, "invalid Redis node \"%s\" (expected host:port)", opt->nodes[i] ? opt->nodes[i] : "");
			free(host);
			r->closing = true;
			redis_client_free(r);
			return NULL;
		}
		if (!node_find(r, host, port))
			node_add(r, host, port, r->cluster);
		free(host);
	}
	struct timeval tick = ms_tv(TICK_MS);
	event_add(&r->tick_ev, &tick);
	if (r->cluster) {
		r->slots = xcalloc(SLOTS, sizeof *r->slots);
		refresh_request(r);
	} else {
		node_connect(r->nodes[0]);
	}
	return r;
}

void redis_client_command(RedisClient *r, const char *key, size_t keylen, RedisReplyFn fn, void *arg, int argc,
			  const char **argv, const size_t *argvlen)
{
	Req *q = req_new(r, fn, arg, argc, argv, argvlen, r->timeout_ms, false);
	r->stats.commands++;
	if (key) {
		q->has_slot = true;
		q->slot = redis_key_slot(key, keylen);
	}
	if (r->closing)
		return; /* redis_client_free is draining the list: it answers this one too */
	req_dispatch(q);
}

void redis_client_subscribe(RedisClient *r, const char *channel, RedisMessageFn fn, void *arg)
{
	if (r->closing)
		return;
	Sub *s = xcalloc(1, sizeof *s);
	s->channel = xstrdup(channel);
	s->fn = fn;
	s->arg = arg;
	r->subs = xalloc_check(realloc(r->subs, (r->n_subs + 1) * sizeof *r->subs));
	r->subs[r->n_subs++] = s;
	if (r->sub_ac)
		sub_send(r, s); /* counted when confirmed, like the others */
	else if (r->sub_state == SUB_IDLE)
		loop_timer_start(&r->sub_ev, 0);
	state_changed(r);
}

bool redis_client_up(const RedisClient *r) { return compute_up(r); }

void redis_client_stats(const RedisClient *r, RedisStats *out)
{
	*out = r->stats;
	out->up = compute_up(r);
}

void redis_client_free(RedisClient *r)
{
	if (!r)
		return;
	if (!r->closing) {
		r->closing = true;
		/* A callback may issue another command: it is appended and answered by this loop too. */
		while (r->reqs_head)
			req_finish(r->reqs_head, NULL, "shutting down", false);
	}
	loop_timer_stop(&r->refresh_ev);
	event_del(&r->tick_ev);
	loop_timer_stop(&r->state_ev);
	loop_timer_stop(&r->sub_ev);
	if (r->sub_ac) {
		redisAsyncContext *ac = r->sub_ac;
		r->sub_ac = NULL;
		ac_close(ac);
	}
	for (size_t i = 0; i < r->n_subs; i++) {
		free(r->subs[i]->channel);
		free(r->subs[i]);
	}
	free(r->subs);
	for (size_t i = 0; i < r->n_nodes; i++) {
		Node *n = r->nodes[i];
		if (n->ac) {
			redisAsyncContext *ac = n->ac;
			n->ac = NULL;
			ac_close(ac);
		}
		if (n->dns)
			n->dns->n = NULL; /* freed when evdns answers (or fails it below) */
		loop_timer_stop(&n->timer);
		free(n->host);
		free(n);
	}
	free(r->nodes);
	free(r->slots);
	if (r->own_dns)
		evdns_base_free(r->dns, 1);
	if (r->password)
		explicit_bzero(r->password, strlen(r->password));
	free(r->password);
	free(r->username);
	free(r);
}
