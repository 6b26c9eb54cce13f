/* Unit tests for the request/reply pipeline and the prepared-statement maps. */
#include "pipeline.h"
#include "prepared.h"
#include "unit.h"

static int ended[3];
static uint32_t last_failed_tag;

static void on_end(void *ctx, const PipeEntry *e, PipeEnd how)
{
	(void)ctx;
	ended[how]++;
	if (how != PIPE_END_DONE)
		last_failed_tag = e->tag;
}

static void reset_counts(void) { memset(ended, 0, sizeof(ended)); last_failed_tag = 0; }

TEST(extended_batch)
{
	Pipeline p;
	pipeline_init(&p);
	reset_counts();
	CHECK(pipeline_push(&p, PIPE_PARSE, 0, 7));
	CHECK(pipeline_push(&p, PIPE_BIND, 0, 0));
	CHECK(pipeline_push(&p, PIPE_DESCRIBE_PORTAL, 0, 0));
	CHECK(pipeline_push(&p, PIPE_EXECUTE, 0, 0));
	CHECK(!pipeline_idle(&p));
	CHECK(pipeline_push(&p, PIPE_SYNC, 0, 0));
	const char *replies = "12TDDCZ";
	for (const char *r = replies; *r; r++)
		pipeline_reply(&p, (uint8_t)*r, on_end, NULL);
	CHECK_INT(ended[PIPE_END_DONE], 5);
	CHECK(pipeline_idle(&p));
	pipeline_free(&p);
}

TEST(error_skips_to_sync)
{
	Pipeline p;
	pipeline_init(&p);
	reset_counts();
	pipeline_push(&p, PIPE_PARSE, 0, 1);
	pipeline_push(&p, PIPE_BIND, 0, 0);
	pipeline_push(&p, PIPE_EXECUTE, 0, 0);
	pipeline_push(&p, PIPE_SYNC, 0, 0);
	pipeline_push(&p, PIPE_PARSE, PIPE_SYNTHETIC, 2);
	pipeline_reply(&p, '1', on_end, NULL);
	pipeline_reply(&p, 'E', on_end, NULL); /* Bind failed */
	CHECK_INT(ended[PIPE_END_FAILED], 1);
	CHECK_INT(ended[PIPE_END_SKIPPED], 1); /* Execute */
	CHECK_INT(pipeline_head(&p)->kind, PIPE_SYNC);
	pipeline_reply(&p, 'Z', on_end, NULL);
	PipeEntry e;
	CHECK(pipeline_pop_synthetic(&p, &e));
	CHECK_INT(e.tag, 2);
	CHECK(pipeline_idle(&p)); /* a synthetic Parse never reached the server */
	pipeline_free(&p);
}

TEST(error_before_sync_sent)
{
	Pipeline p;
	pipeline_init(&p);
	reset_counts();
	pipeline_push(&p, PIPE_BIND, 0, 0);
	pipeline_reply(&p, 'E', on_end, NULL);
	CHECK(p.skipping);
	CHECK(!pipeline_push(&p, PIPE_EXECUTE, 0, 0)); /* ignored by the server */
	CHECK(!pipeline_push(&p, PIPE_QUERY, 0, 0));
	CHECK(pipeline_push(&p, PIPE_SYNC, 0, 0));
	CHECK(!p.skipping);
	pipeline_reply(&p, 'Z', on_end, NULL);
	CHECK(pipeline_idle(&p));
	pipeline_free(&p);
}

TEST(internal_replies_flagged)
{
	Pipeline p;
	pipeline_init(&p);
	pipeline_push(&p, PIPE_QUERY, PIPE_INTERNAL, 0);
	pipeline_push(&p, PIPE_QUERY, 0, 0);
	CHECK_INT(pipeline_reply(&p, 'C', NULL, NULL), PIPE_INTERNAL);
	CHECK_INT(pipeline_reply(&p, 'Z', NULL, NULL), PIPE_INTERNAL);
	CHECK_INT(pipeline_reply(&p, 'T', NULL, NULL), 0);
	CHECK_INT(pipeline_reply(&p, 'S', NULL, NULL), 0); /* ParameterStatus is asynchronous */
	CHECK_INT(pipeline_reply(&p, 'Z', NULL, NULL), 0);
	CHECK(pipeline_idle(&p));
	pipeline_free(&p);
}

TEST(copy_in_ignores_sync)
{
	/* libpq: Parse/Bind/Execute/Sync, then CopyData, CopyDone, Sync. The first Sync arrives while
	 * the server is in COPY FROM STDIN and gets no ReadyForQuery. */
	Pipeline p;
	pipeline_init(&p);
	pipeline_push(&p, PIPE_PARSE, 0, 0);
	pipeline_push(&p, PIPE_BIND, 0, 0);
	pipeline_push(&p, PIPE_EXECUTE, 0, 0);
	pipeline_push(&p, PIPE_SYNC, 0, 0);
	pipeline_reply(&p, '1', NULL, NULL);
	pipeline_reply(&p, '2', NULL, NULL);
	pipeline_reply(&p, 'G', NULL, NULL);
	CHECK(p.copy_in);
	CHECK(!pipeline_push(&p, PIPE_COPY_END, 0, 0));
	CHECK(pipeline_push(&p, PIPE_SYNC, 0, 0));
	pipeline_reply(&p, 'C', NULL, NULL);
	pipeline_reply(&p, 'Z', NULL, NULL);
	CHECK(pipeline_idle(&p));
	/* simple-query COPY with the client's CopyDone already queued before CopyInResponse */
	pipeline_push(&p, PIPE_QUERY, 0, 0);
	pipeline_push(&p, PIPE_COPY_END, 0, 0);
	pipeline_reply(&p, 'G', NULL, NULL);
	CHECK(!p.copy_in);
	pipeline_reply(&p, 'C', NULL, NULL);
	pipeline_reply(&p, 'Z', NULL, NULL);
	CHECK(pipeline_idle(&p));
	pipeline_free(&p);
}

TEST(registry_and_maps)
{
	StmtRegistry r;
	prepared_registry_init(&r);
	const uint8_t key[] = "SELECT $1\0\0\0";
	PreparedStmt *a = prepared_intern(&r, key, sizeof(key) - 1);
	PreparedStmt *b = prepared_intern(&r, key, sizeof(key) - 1);
	CHECK(a == b);
	CHECK_INT(a->refcount, 2);
	CHECK_STR(a->server_name, "pgrelay_1");
	CHECK(a->create_msg[0] == 'P');
	ClientStmts m;
	prepared_client_init(&m);
	prepared_client_set(&m, &r, "s1", a);
	prepared_client_set(&m, &r, "s2", b);
	CHECK(prepared_client_get(&m, "s1") == a);
	CHECK(prepared_client_remove(&m, &r, "s1"));
	CHECK(!prepared_client_remove(&m, &r, "s1"));
	CHECK_INT(a->refcount, 1);
	prepared_client_forget_id(&m, &r, a->id);
	/* Unused statements stay registered with their id (servers may still have them). */
	CHECK_INT(prepared_registry_count(&r), 1);
	PreparedStmt *again = prepared_intern(&r, key, sizeof(key) - 1);
	CHECK(again == a);
	CHECK_INT(again->refcount, 1);
	prepared_release(&r, again);
	PreparedStmt *q = prepared_new_sql(&r, " AS SELECT 1", 12);
	CHECK(q->sql_level);
	CHECK(memcmp(q->create_msg + 5, "PREPARE pgrelay_2 AS SELECT 1", 30) == 0);
	prepared_client_set(&m, &r, "x", q);
	prepared_client_free(&m, &r);
	prepared_registry_free(&r);
}

TEST(server_lru)
{
	ServerStmts s;
	prepared_server_init(&s);
	uint32_t ev = 0;
	CHECK(!prepared_server_add(&s, 1, 2, &ev));
	CHECK(!prepared_server_add(&s, 2, 2, &ev));
	CHECK(prepared_server_has(&s, 1)); /* 1 is now most recent */
	CHECK(prepared_server_add(&s, 3, 2, &ev));
	CHECK_INT(ev, 2);
	CHECK(!prepared_server_has(&s, 2));
	CHECK(prepared_server_has(&s, 3));
	CHECK_INT(prepared_server_count(&s), 2);
	prepared_server_free(&s);
}

int main(void)
{
	RUN(extended_batch);
	RUN(error_skips_to_sync);
	RUN(error_before_sync_sent);
	RUN(internal_replies_flagged);
	RUN(copy_in_ignores_sync);
	RUN(registry_and_maps);
	RUN(server_lru);
	return unit_summary();
}
