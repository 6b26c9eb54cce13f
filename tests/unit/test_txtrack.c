/*
 * test_txtrack — the client's transaction as the server runs it: writes counted in reply order,
 * savepoint levels (RELEASE merges, ROLLBACK TO drops what came after), COMMIT inside a string,
 * pipelined requests, errors that skip the rest of a request, sticky writes, abandoned clients.
 */
#include "txtrack.h"
#include "unit.h"

static CacheWrites w_of(const char *a, const char *b)
{
	CacheWrites w;
	memset(&w, 0, sizeof w);
	const char *names[] = {a, b};
	for (size_t i = 0; i < 2; i++)
		if (names[i]) {
			snprintf(w.tables[w.n].schema, sizeof w.tables[0].schema, "public");
			snprintf(w.tables[w.n].name, sizeof w.tables[0].name, "%s", names[i]);
			w.n++;
		}
	return w;
}

static bool has(const CacheWrites *w, const char *name)
{
	for (size_t i = 0; i < w->n; i++)
		if (strcmp(w->tables[i].name, name) == 0)
			return true;
	return false;
}

/* ReadyForQuery with status: the bump, as a string "t1,t2" in order (or "" / "all"). */
static const char *ready(TxTrack *t, char status)
{
	static char out[256];
	CacheWrites b;
	memset(&b, 0, sizeof b);
	bool any = txtrack_ready(t, status, &b);
	out[0] = 0;
	if (b.all)
		strcat(out, "all");
	for (size_t i = 0; i < b.n; i++) {
		if (out[0])
			strcat(out, ",");
		strcat(out, b.tables[i].name);
	}
	if (any != (out[0] != 0))
		return "(inconsistent)";
	return out;
}

static void stmt(TxTrack *t, SqlTxKind tx, const char *name, const char *table)
{
	CacheWrites w = w_of(table, NULL);
	txtrack_statement(t, tx, name, table ? &w : NULL);
}

TEST(autocommit_write_bumped_at_its_ready)
{
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_NONE, NULL, "t");
	txtrack_end(&t);
	CHECK_INT(txtrack_complete(&t, false), TXTRACK_NONE);
	CHECK_STR(ready(&t, 'I'), "t");
	CHECK_STR(ready(&t, 'I'), ""); /* nothing left */
	txtrack_free(&t);
}

TEST(rollback_to_savepoint_keeps_earlier_writes)
{
	/* BEGIN; UPDATE t; SAVEPOINT s; UPDATE t2; ROLLBACK TO SAVEPOINT s; COMMIT; as one request each */
	TxTrack t;
	txtrack_init(&t);
	const struct {
		SqlTxKind tx;
		const char *name, *table;
	} steps[] = {{SQL_TX_BEGIN, NULL, NULL},    {SQL_TX_NONE, NULL, "t"},        {SQL_TX_SAVEPOINT, "s", NULL},
		     {SQL_TX_NONE, NULL, "t2"},     {SQL_TX_ROLLBACK_TO, "s", NULL}, {SQL_TX_COMMIT, NULL, NULL}};
	for (size_t i = 0; i < 6; i++) {
		stmt(&t, steps[i].tx, steps[i].name, steps[i].table);
		txtrack_end(&t);
		TxEvent e = txtrack_complete(&t, steps[i].tx == SQL_TX_ROLLBACK_TO);
		if (steps[i].tx == SQL_TX_ROLLBACK_TO)
			CHECK_INT(e, TXTRACK_ROLLED_BACK_TO);
		CHECK_STR(ready(&t, i < 5 ? 'T' : 'I'), i < 5 ? "" : "t");
	}
	txtrack_free(&t);
}

TEST(release_merges_and_nested_savepoints)
{
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_SAVEPOINT, "a", NULL);
	stmt(&t, SQL_TX_NONE, NULL, "ta");
	stmt(&t, SQL_TX_SAVEPOINT, "b", NULL);
	stmt(&t, SQL_TX_NONE, NULL, "tb");
	stmt(&t, SQL_TX_RELEASE, "b", NULL);   /* tb joins a's level */
	stmt(&t, SQL_TX_SAVEPOINT, "c", NULL);
	stmt(&t, SQL_TX_NONE, NULL, "tc");
	stmt(&t, SQL_TX_ROLLBACK_TO, "c", NULL); /* tc gone */
	stmt(&t, SQL_TX_ROLLBACK_TO, "zz", NULL); /* no such savepoint: nothing */
	stmt(&t, SQL_TX_NONE, NULL, "td");
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	txtrack_end(&t);
	for (int i = 0; i < 12; i++)
		txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "td,ta,tb"); /* order: merged from the top down */
	txtrack_free(&t);
}

TEST(rollback_to_an_outer_savepoint_drops_inner_levels)
{
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_NONE, NULL, "t0");
	stmt(&t, SQL_TX_SAVEPOINT, "a", NULL);
	stmt(&t, SQL_TX_NONE, NULL, "ta");
	stmt(&t, SQL_TX_SAVEPOINT, "b", NULL);
	stmt(&t, SQL_TX_NONE, NULL, "tb");
	stmt(&t, SQL_TX_ROLLBACK_TO, "a", NULL);
	stmt(&t, SQL_TX_NONE, NULL, "ta2");
	stmt(&t, SQL_TX_RELEASE, "a", NULL);
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	txtrack_end(&t);
	for (int i = 0; i < 10; i++)
		txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "t0,ta2");
	txtrack_free(&t);
}

TEST(full_rollback_and_failed_commit_drop_everything)
{
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_NONE, NULL, "t");
	stmt(&t, SQL_TX_ROLLBACK, NULL, NULL);
	txtrack_end(&t);
	txtrack_complete(&t, false);
	txtrack_complete(&t, false);
	CHECK_INT(txtrack_complete(&t, true), TXTRACK_ROLLED_BACK);
	CHECK_STR(ready(&t, 'I'), "");
	/* COMMIT of a failed transaction: tag ROLLBACK */
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_NONE, NULL, "t");
	txtrack_end(&t);
	txtrack_complete(&t, false);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'T'), "");
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	txtrack_end(&t);
	CHECK_INT(txtrack_complete(&t, true), TXTRACK_ROLLED_BACK);
	CHECK_STR(ready(&t, 'I'), "");
	txtrack_free(&t);
}

TEST(commit_inside_a_string_that_leaves_a_transaction_open)
{
	/* "UPDATE a; COMMIT; BEGIN; UPDATE b; ROLLBACK TO nothing" as one Query ... status T */
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_NONE, NULL, "a");
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_NONE, NULL, "b");
	txtrack_end(&t);
	for (int i = 0; i < 5; i++)
		txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'T'), "a"); /* a committed: bumped now, b waits */
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	txtrack_end(&t);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "b");
	txtrack_free(&t);
}

TEST(pipelined_requests_each_bumped_at_their_own_ready)
{
	/* two autocommit writes pipelined: the first ReadyForQuery must not take the second's writes */
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_NONE, NULL, "first");
	txtrack_end(&t);
	stmt(&t, SQL_TX_NONE, NULL, "second");
	txtrack_end(&t);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "first");
	CHECK(txtrack_has_writes(&t));
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "second");
	CHECK(!txtrack_has_writes(&t));
	txtrack_free(&t);
}

TEST(error_skips_the_rest_of_the_request)
{
	/* BEGIN; SAVEPOINT p; UPDATE t;   then "SELECT 1/0; ROLLBACK TO p" (skipped), then ROLLBACK TO p
	 * can still name p... here: the skipped ROLLBACK TO must not drop t */
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_SAVEPOINT, "s", NULL);
	stmt(&t, SQL_TX_NONE, NULL, "t");
	stmt(&t, SQL_TX_SAVEPOINT, "p", NULL);
	txtrack_end(&t);
	for (int i = 0; i < 4; i++)
		txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'T'), "");
	stmt(&t, SQL_TX_NONE, NULL, NULL);
	stmt(&t, SQL_TX_ROLLBACK_TO, "s", NULL);
	txtrack_end(&t);
	txtrack_error(&t);
	CHECK_STR(ready(&t, 'E'), "");
	stmt(&t, SQL_TX_ROLLBACK_TO, "p", NULL); /* back to p: t (before p) survives */
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	txtrack_end(&t);
	CHECK_INT(txtrack_complete(&t, true), TXTRACK_ROLLED_BACK_TO);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "t");
	txtrack_free(&t);
}

TEST(failed_statement_writes_count)
{
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_NONE, NULL, "t");
	stmt(&t, SQL_TX_NONE, NULL, "u");
	txtrack_end(&t);
	txtrack_error(&t);
	CHECK_STR(ready(&t, 'I'), "t,u");
	txtrack_free(&t);
}

TEST(uncounted_and_sticky_writes)
{
	TxTrack t;
	txtrack_init(&t);
	CacheWrites all;
	memset(&all, 0, sizeof all);
	all.all = true;
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	txtrack_end(&t);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'T'), "");
	txtrack_uncounted(&t, &all); /* a text pgrelay cannot read, inside the transaction */
	txtrack_end(&t);
	txtrack_complete(&t, false);
	txtrack_complete(&t, false);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'T'), "all"); /* it may have committed: now */
	stmt(&t, SQL_TX_ROLLBACK, NULL, NULL);
	txtrack_end(&t);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "");
	/* a FunctionCall: a note, then its end */
	txtrack_note(&t, &all);
	txtrack_end(&t);
	CHECK_STR(ready(&t, 'I'), "all");
	/* an empty Query's EmptyQueryResponse completes nothing */
	txtrack_end(&t);
	CHECK_INT(txtrack_complete(&t, false), TXTRACK_NONE);
	CHECK_STR(ready(&t, 'I'), "");
	txtrack_free(&t);
}

TEST(abandon_returns_everything_in_flight)
{
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	stmt(&t, SQL_TX_NONE, NULL, "t");
	txtrack_end(&t);
	txtrack_complete(&t, false);
	txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'T'), "");
	stmt(&t, SQL_TX_NONE, NULL, "u");
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	txtrack_end(&t);
	CacheWrites b;
	memset(&b, 0, sizeof b);
	CHECK(txtrack_abandon(&t, &b));
	CHECK(has(&b, "t") && has(&b, "u"));
	CHECK(!txtrack_has_writes(&t));
	txtrack_free(&t);
}

TEST(many_levels_and_items_grow)
{
	TxTrack t;
	txtrack_init(&t);
	stmt(&t, SQL_TX_BEGIN, NULL, NULL);
	char name[16];
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof name, "s%d", i);
		stmt(&t, SQL_TX_SAVEPOINT, name, NULL);
	}
	stmt(&t, SQL_TX_NONE, NULL, "deep");
	stmt(&t, SQL_TX_RELEASE, "s0", NULL);
	stmt(&t, SQL_TX_COMMIT, NULL, NULL);
	txtrack_end(&t);
	for (int i = 0; i < 104; i++)
		txtrack_complete(&t, false);
	CHECK_STR(ready(&t, 'I'), "deep");
	txtrack_free(&t);
}

int main(void)
{
	RUN(autocommit_write_bumped_at_its_ready);
	RUN(rollback_to_savepoint_keeps_earlier_writes);
	RUN(release_merges_and_nested_savepoints);
	RUN(rollback_to_an_outer_savepoint_drops_inner_levels);
	RUN(full_rollback_and_failed_commit_drop_everything);
	RUN(commit_inside_a_string_that_leaves_a_transaction_open);
	RUN(pipelined_requests_each_bumped_at_their_own_ready);
	RUN(error_skips_the_rest_of_the_request);
	RUN(failed_statement_writes_count);
	RUN(uncounted_and_sticky_writes);
	RUN(abandon_returns_everything_in_flight);
	RUN(many_levels_and_items_grow);
	return unit_summary();
}
