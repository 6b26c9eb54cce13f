/*
 * redis_probe — drives src/redis.c on a libevent loop from lines on stdin, for the integration
 * tests (tests/integration/test_redis.py). Not installed.
 *
 *   redis_probe [--cluster] [--timeout-ms N] [--connect-timeout-ms N] [--user U] [--password P]
 *               [--subscribe CHANNEL]... [--debug] NODE...
 *
 * Input lines (arguments split on spaces):
 *   CMD ARG...        send; the key (slot) is the first argument (none for a command alone)
 *   !key KEY CMD...   send with KEY as the key
 *   !nokey CMD...     send without a key (any node)
 *   !wait             hold the next lines until every command sent so far is answered, then "WAITED"
 *   !sleep MS         hold the next lines for MS milliseconds
 *   !stats            "STATS commands=N replies=N errors=N timeouts=N moved=N ask=N reconnects=N
 *                      slot_refreshes=N up=0|1"
 *   !slot KEY         "SLOT KEY N" (redis_key_slot)
 *   !echo TEXT        "ECHO TEXT" (a marker)
 *   !free             redis_client_free now (pending commands get "shutting down"), then "FREED"
 *   !free-in-callback redis_client_free from inside the next command callback, then "FREED"
 * Output lines (stdout, flushed each):
 *   R ID MS REPLY     a reply after MS milliseconds (REPLY: text, :integer, (nil), -error, [a, b])
 *   E ID MS ERROR     an error callback
 *   STATE up|down     redis_client_up changed
 *   M CHANNEL MSG     a pub/sub message
 * At the end of input: waits for every answer, frees the client, prints "BYE" and the stats line,
 * exits 0. A callback run twice, or from inside redis_client_command, aborts the program.
 */
#include <errno.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "redis.h"

typedef struct Probe Probe;

typedef struct Call {
	Probe *p;
	unsigned long id;
	double start;
} Call;

struct Probe {
	struct event_base *base;
	RedisClient *r;
	struct event *stdin_ev, *resume_ev;
	char *buf;
	size_t len, cap;
	bool eof, waiting, sleeping, in_call, free_in_callback;
	unsigned long next_id, outstanding;
	unsigned char *done; /* per id: callbacks seen */
	size_t done_cap;
	LogSettings log;
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_escaped(FILE *f, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '\\')
			fputs("\\\\", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

static void put_reply(FILE *f, const redisReply *x)
{
	switch (x->type) {
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		put_escaped(f, x->str, x->len);
		break;
	case REDIS_REPLY_ERROR:
		fputc('-', f);
		put_escaped(f, x->str, x->len);
		break;
	case REDIS_REPLY_INTEGER:
		fprintf(f, ":%lld", x->integer);
		break;
	case REDIS_REPLY_NIL:
		fputs("(nil)", f);
		break;
	case REDIS_REPLY_ARRAY:
		fputc('[', f);
		for (size_t i = 0; i < x->elements; i++) {
			if (i)
				fputs(", ", f);
			put_reply(f, x->element[i]);
		}
		fputc(']', f);
		break;
	default:
		fprintf(f, "(type %d)", x->type);
	}
}

static void print_stats(Probe *p)
{
	RedisStats s;
	redis_client_stats(p->r, &s);
	printf("STATS commands=%llu replies=%llu errors=%llu timeouts=%llu moved=%llu ask=%llu reconnects=%llu "
	       "slot_refreshes=%llu up=%d\n",
	       (unsigned long long)s.commands, (unsigned long long)s.replies, (unsigned long long)s.errors,
	       (unsigned long long)s.timeouts, (unsigned long long)s.moved, (unsigned long long)s.ask,
	       (unsigned long long)s.reconnects, (unsigned long long)s.slot_refreshes, s.up ? 1 : 0);
	fflush(stdout);
}

static void process_lines(Probe *p);

static void on_reply(void *arg, struct redisReply *reply, const char *error)
{
	Call *c = arg;
	Probe *p = c->p;
	if (p->in_call) {
		fprintf(stderr, "redis_probe: callback of %lu ran inside redis_client_command\n", c->id);
		abort();
	}
	if (p->done[c->id]++) {
		fprintf(stderr, "redis_probe: callback of %lu ran twice\n", c->id);
		abort();
	}
	double ms = (now_s() - c->start) * 1000.0;
	if (reply) {
		printf("R %lu %.1f ", c->id, ms);
		put_reply(stdout, reply);
		putchar('\n');
	} else {
		printf("E %lu %.1f %s\n", c->id, ms, error ? error : "(no error text)");
	}
	fflush(stdout);
	free(c);
	p->outstanding--;
	if (p->free_in_callback && p->r) {
		RedisClient *r = p->r;
		p->free_in_callback = false;
		p->r = NULL;
		redis_client_free(r); /* the other pending callbacks run from here, with "shutting down" */
		puts("FREED");
		fflush(stdout);
	}
	if (p->waiting && p->outstanding == 0) {
		p->waiting = false;
		puts("WAITED");
		fflush(stdout);
		event_active(p->resume_ev, EV_TIMEOUT, 0);
	} else if (p->eof && p->outstanding == 0 && !p->sleeping) {
		event_active(p->resume_ev, EV_TIMEOUT, 0);
	}
}

static void on_state(void *arg, bool up)
{
	(void)arg;
	printf("STATE %s\n", up ? "up" : "down");
	fflush(stdout);
}

static void on_message(void *arg, const char *msg, size_t len)
{
	printf("M %s ", (const char *)arg);
	put_escaped(stdout, msg, len);
	putchar('\n');
	fflush(stdout);
}

static void send_cmd(Probe *p, const char *key, int argc, const char **argv)
{
	if (!p->r) {
		printf("E - 0 client freed\n");
		fflush(stdout);
		return;
	}
	Call *c = calloc(1, sizeof *c);
	c->p = p;
	c->id = ++p->next_id;
	c->start = now_s();
	if (c->id >= p->done_cap) {
		size_t cap = p->done_cap ? p->done_cap * 2 : 1024;
		while (cap <= c->id)
			cap *= 2;
		p->done = realloc(p->done, cap);
		memset(p->done + p->done_cap, 0, cap - p->done_cap);
		p->done_cap = cap;
	}
	p->outstanding++;
	p->in_call = true;
	redis_client_command(p->r, key, key ? strlen(key) : 0, on_reply, c, argc, argv, NULL);
	p->in_call = false;
}

static void finish(Probe *p)
{
	event_del(p->stdin_ev);
	puts("BYE");
	if (p->r) {
		print_stats(p);
		redis_client_free(p->r);
		p->r = NULL;
	}
	fflush(stdout);
	event_base_loopbreak(p->base);
}

/* One input line; false: hold the remaining lines (wait/sleep). */
static bool run_line(Probe *p, char *line)
{
	const char *argv[64];
	int argc = 0;
	for (char *tok = strtok(line, " \t\r"); tok && argc < 64; tok = strtok(NULL, " \t\r"))
		argv[argc++] = tok;
	if (argc == 0)
		return true;
	if (argv[0][0] != '!') {
		send_cmd(p, argc > 1 ? argv[1] : NULL, argc, argv);
		return true;
	}
	const char *d = argv[0] + 1;
	if (strcmp(d, "key") == 0 && argc >= 3) {
		send_cmd(p, argv[1], argc - 2, argv + 2);
	} else if (strcmp(d, "nokey") == 0 && argc >= 2) {
		send_cmd(p, NULL, argc - 1, argv + 1);
	} else if (strcmp(d, "wait") == 0) {
		if (p->outstanding == 0) {
			puts("WAITED");
			fflush(stdout);
			return true;
		}
		p->waiting = true;
		return false;
	} else if (strcmp(d, "sleep") == 0 && argc == 2) {
		struct timeval tv = {atoi(argv[1]) / 1000, (atoi(argv[1]) % 1000) * 1000};
		p->sleeping = true;
		event_add(p->resume_ev, &tv);
		return false;
	} else if (strcmp(d, "stats") == 0) {
		if (p->r)
			print_stats(p);
	} else if (strcmp(d, "slot") == 0 && argc == 2) {
		printf("SLOT %s %u\n", argv[1], (unsigned)redis_key_slot(argv[1], strlen(argv[1])));
		fflush(stdout);
	} else if (strcmp(d, "echo") == 0) {
		printf("ECHO");
		for (int i = 1; i < argc; i++)
			printf(" %s", argv[i]);
		putchar('\n');
		fflush(stdout);
	} else if (strcmp(d, "free-in-callback") == 0) {
		p->free_in_callback = true;
	} else if (strcmp(d, "free") == 0) {
		if (p->r) {
			RedisClient *r = p->r;
			p->r = NULL;
			redis_client_free(r);
		}
		puts("FREED");
		fflush(stdout);
	} else {
		fprintf(stderr, "redis_probe: unknown directive %s\n", argv[0]);
	}
	return true;
}

static void process_lines(Probe *p)
{
	while (!p->waiting && !p->sleeping) {
		char *nl = memchr(p->buf, '\n', p->len);
		if (!nl)
			break;
		*nl = '\0';
		size_t used = (size_t)(nl - p->buf) + 1;
		char *line = strdup(p->buf);
		memmove(p->buf, p->buf + used, p->len - used);
		p->len -= used;
		run_line(p, line);
		free(line);
	}
	if (p->eof && !p->waiting && !p->sleeping && !memchr(p->buf, '\n', p->len) && p->outstanding == 0)
		finish(p);
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	Probe *p = arg;
	p->sleeping = false;
	process_lines(p);
}

static void on_stdin(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	Probe *p = arg;
	if (p->cap - p->len < 4096) {
		p->cap = p->cap * 2 + 4096;
		p->buf = realloc(p->buf, p->cap);
	}
	ssize_t n = read(fd, p->buf + p->len, p->cap - p->len - 1);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		p->eof = true;
		event_del(p->stdin_ev);
		if (p->len && p->buf[p->len - 1] != '\n')
			p->buf[p->len++] = '\n';
	} else {
		p->len += (size_t)n;
	}
	process_lines(p);
}

int main(int argc, char **argv)
{
	Probe p = {0};
	RedisOptions opt = {0};
	const char *nodes[64];
	const char *subs[16];
	size_t n_subs = 0;
	p.log.level = CONFIG_LOG_INFO;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--cluster") == 0)
			opt.cluster = true;
		else if (strcmp(a, "--timeout-ms") == 0 && i + 1 < argc)
			opt.timeout_ms = atoi(argv[++i]);
		else if (strcmp(a, "--connect-timeout-ms") == 0 && i + 1 < argc)
			opt.connect_timeout_ms = atoi(argv[++i]);
		else if (strcmp(a, "--user") == 0 && i + 1 < argc)
			opt.username = argv[++i];
		else if (strcmp(a, "--password") == 0 && i + 1 < argc)
			opt.password = argv[++i];
		else if (strcmp(a, "--subscribe") == 0 && i + 1 < argc && n_subs < 16)
			subs[n_subs++] = argv[++i];
		else if (strcmp(a, "--debug") == 0)
			p.log.level = CONFIG_LOG_DEBUG;
		else if (a[0] == '-') {
			fprintf(stderr, "usage: redis_probe [--cluster] [--timeout-ms N] [--connect-timeout-ms N] "
					"[--user U] [--password P] [--subscribe CHANNEL]... [--debug] NODE...\n");
			return 2;
		} else if (opt.n_nodes < 64)
			nodes[opt.n_nodes++] = a;
	}
	opt.nodes = nodes;
	log_configure(&p.log);
	p.base = event_base_new();
	p.r = redis_client_new(p.base, &opt, on_state, &p);
	if (!p.r)
		return 2;
	for (size_t i = 0; i < n_subs; i++)
		redis_client_subscribe(p.r, subs[i], on_message, (void *)subs[i]);
	p.stdin_ev = event_new(p.base, 0, EV_READ | EV_PERSIST, on_stdin, &p);
	p.resume_ev = evtimer_new(p.base, on_resume, &p);
	event_add(p.stdin_ev, NULL);
	event_base_dispatch(p.base);
	if (p.r) {
		redis_client_free(p.r);
		p.r = NULL;
	}
	event_free(p.stdin_ev);
	event_free(p.resume_ev);
	event_base_free(p.base);
	free(p.buf);
	free(p.done);
	return 0;
}
