/*
 * test_redis_slot — redis_key_slot: CRC16 (XMODEM) modulo 16384 as in the Redis Cluster
 * specification, and {hash tag} handling. Expected values are CLUSTER KEYSLOT answers of Redis 7.
 * Also: redis_client_new refuses node addresses it cannot parse, and a client freed while its
 * connection is still being made answers its pending command with "shutting down".
 */
#include "redis.h"
#include "unit.h"

#include <event2/event.h>

static uint16_t slot(const char *key) { return redis_key_slot(key, strlen(key)); }

TEST(known_slots)
{
	CHECK_INT(slot("foo"), 12182);
	CHECK_INT(slot("bar"), 5061);
	CHECK_INT(slot("hello"), 866);
	CHECK_INT(slot("123456789"), 0x31C3 & 16383); /* the CRC16/XMODEM check value 0x31C3 */
	CHECK_INT(slot("user:1000"), 1649);
	CHECK_INT(slot(""), 0);
	CHECK_INT(redis_key_slot(NULL, 0), 0);
}

TEST(hash_tags)
{
	CHECK_INT(slot("{user1000}.following"), slot("{user1000}.followers"));
	CHECK_INT(slot("{user1000}.following"), slot("user1000"));
	CHECK_INT(slot("foo{bar}baz"), slot("bar"));
	CHECK_INT(slot("foo{bar}{zap}"), slot("bar"));     /* the first tag only */
	CHECK_INT(slot("foo{{bar}}zap"), slot("{bar"));    /* from the first '{' to the first '}' */
	CHECK_INT(slot("foo{}{bar}"), 8363);               /* empty first tag: the whole key */
	CHECK(slot("foo{}{bar}") != slot("bar"));
	CHECK_INT(slot("{}"), 15257);
	CHECK_INT(slot("foo{bar"), 15278);                 /* no closing brace: the whole key */
	CHECK_INT(slot("}foo{bar}"), slot("bar"));
}

TEST(binary_keys)
{
	const char k[] = {'a', '\0', 'b'};
	CHECK_INT(redis_key_slot(k, 3), 8383);
	CHECK(redis_key_slot(k, 3) != redis_key_slot(k, 1));
	const char t[] = {'{', '\0', '}', 'x'};
	CHECK_INT(redis_key_slot(t, 4), redis_key_slot(t + 1, 1)); /* the tag is one NUL byte */
	CHECK_INT(redis_key_slot(t, 4), 0);
}

TEST(range)
{
	char key[32];
	for (int i = 0; i < 100000; i++) {
		int n = snprintf(key, sizeof key, "key:%d", i);
		if (redis_key_slot(key, (size_t)n) >= 16384) {
			CHECK(0);
			break;
		}
	}
}

static RedisClient *client(struct event_base *base, const char *node, bool cluster)
{
	const char *nodes[] = {node};
	RedisOptions opt = {.nodes = nodes, .n_nodes = 1, .cluster = cluster, .timeout_ms = 20};
	return redis_client_new(base, &opt, NULL, NULL);
}

static int answers;
static char last_error[128];

static void on_answer(void *arg, struct redisReply *reply, const char *error)
{
	(void)arg;
	answers++;
	snprintf(last_error, sizeof last_error, "%s", reply ? "(reply)" : error);
}

TEST(client_options)
{
	struct event_base *base = event_base_new();
	REQUIRE(base);
	const char *bad[] = {"127.0.0.1:notaport", "127.0.0.1:0", "127.0.0.1:65536", "[::1", "[::1]x", ":6379", ""};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
		CHECK(client(base, bad[i], false) == NULL);
		CHECK(client(base, bad[i], true) == NULL);
	}
	RedisOptions none = {.n_nodes = 0};
	CHECK(redis_client_new(base, &none, NULL, NULL) == NULL);
	/* Port 1 on loopback: nothing listens; freed before the loop ever runs. */
	RedisClient *r = client(base, "127.0.0.1:1", false);
	REQUIRE(r);
	CHECK(!redis_client_up(r));
	const char *argv[] = {"GET", "k"};
	redis_client_command(r, "k", 1, on_answer, NULL, 2, argv, NULL);
	CHECK_INT(answers, 0); /* never from inside the call */
	redis_client_free(r);
	CHECK_INT(answers, 1);
	CHECK_STR(last_error, "shutting down");
	r = client(base, "[::1]:1", true);
	REQUIRE(r);
	redis_client_free(r);
	event_base_free(base);
}

int main(void)
{
	RUN(known_slots);
	RUN(hash_tags);
	RUN(binary_keys);
	RUN(range);
	RUN(client_options);
	return unit_summary();
}
