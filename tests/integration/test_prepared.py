"""Named prepared statements in transaction pooling: protocol-level (Parse/Bind/Describe/Close) from
real drivers and pgbench, SQL-level PREPARE/EXECUTE/DEALLOCATE, the per-connection LRU, DISCARD ALL /
DEALLOCATE ALL, and the statements that pin a client to its server connection."""
import asyncio
import re
import threading

import asyncpg
import psycopg
import pytest

from conftest import APP_PASSWORD, connect, pgbench


def test_pgbench_prepared_32_clients_over_4_connections(pgrelay, pgbench_tables):
    relay = pgrelay(pool={"max": 4})
    r = pgbench(relay.port, "-M", "prepared", "-c", "32", "-j", "2", "-T", "5", "-n")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "number of failed transactions: 0 " in r.stdout, r.stdout
    processed = int(re.search(r"number of transactions actually processed: (\d+)", r.stdout).group(1))
    assert processed > 100
    # The server connections really held pgrelay-wide statements (not the clients' names).
    with relay.connect() as c:
        names = [row[0] for row in c.execute("SELECT name FROM pg_prepared_statements").fetchall()]
    assert names and all(n.startswith("pgrelay_") for n in names), names


def test_pgbench_prepared_select_only(pgrelay, pgbench_tables):
    relay = pgrelay(pool={"max": 2})
    r = pgbench(relay.port, "-M", "prepared", "-S", "-c", "8", "-j", "2", "-t", "300", "-n")
    assert r.returncode == 0, r.stderr + r.stdout
    assert "number of failed transactions: 0 " in r.stdout


def test_psycopg_prepare_threshold_zero_across_handoffs(pgrelay):
    relay = pgrelay(pool={"max": 2})
    conns = [connect(relay.port, prepare_threshold=0) for _ in range(6)]
    try:
        for rnd in range(4):
            for i, c in enumerate(conns):
                assert c.execute("SELECT %s::int * 3", (i,)).fetchone()[0] == i * 3
                assert c.execute("SELECT %s::text || '-' || %s::text", (str(rnd), str(i))).fetchone()[0] == f"{rnd}-{i}"
                with c.transaction():
                    assert c.execute("SELECT %s::int + 1", (i,)).fetchone()[0] == i + 1
    finally:
        for c in conns:
            c.close()
    assert "re-preparing a statement failed" not in relay.log()


def test_asyncpg_prepared_across_handoffs(pgrelay):
    relay = pgrelay(pool={"max": 3})

    async def worker(i):
        c = await asyncpg.connect(host="127.0.0.1", port=relay.port, user="app", password=APP_PASSWORD,
                                  database="appdb")
        try:
            for r in range(15):
                assert await c.fetchval("SELECT $1::int + $2::int", i, r) == i + r
                rows = await c.fetch("SELECT generate_series(1, $1::int) AS g", 3)
                assert [x["g"] for x in rows] == [1, 2, 3]
                async with c.transaction():
                    stmt = await c.prepare("SELECT $1::text || 'y'")
                    assert await stmt.fetchval(str(i)) == f"{i}y"
        finally:
            await c.close()

    async def main():
        await asyncio.gather(*[worker(i) for i in range(10)])

    asyncio.run(main())


def test_sql_prepare_execute_deallocate_same_names_two_clients(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect() as a, relay.connect() as b:
        a.execute("PREPARE foo(int) AS SELECT $1 + 100")
        b.execute("PREPARE foo(int) AS SELECT $1 + 200")
        for i in range(3):
            assert a.execute(f"EXECUTE foo({i})").fetchone()[0] == 100 + i
            assert b.execute(f"EXECUTE foo({i})").fetchone()[0] == 200 + i
        assert a.execute("EXPLAIN EXECUTE foo(1)").fetchone()[0].startswith("Result")
        a.execute("DEALLOCATE foo")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName) as e:
            a.execute("EXECUTE foo(1)")
        assert 'prepared statement "foo" does not exist' in str(e.value)
        assert b.execute("EXECUTE foo(1)").fetchone()[0] == 201
        # multi-statement string
        a.execute("PREPARE bar AS SELECT 7; PREPARE baz AS SELECT 8")
        assert a.execute("EXECUTE bar").fetchone()[0] == 7
        assert a.execute("EXECUTE baz").fetchone()[0] == 8


def test_sql_prepare_recreated_on_another_server_connection(pgrelay):
    relay = pgrelay(pool={"max": 2})
    with relay.connect() as a, relay.connect() as b:
        a.execute("PREPARE q(int) AS SELECT $1 * 2")
        # Hold the connection a used inside b's transaction so a lands on the other one.
        with b.transaction():
            b.execute("SELECT 1")
            assert a.execute("EXECUTE q(21)").fetchone()[0] == 42
        assert a.execute("EXECUTE q(5)").fetchone()[0] == 10


def test_discard_all_and_deallocate_all_clear_only_that_client(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect() as a, relay.connect(prepare_threshold=0) as b:
        a.execute("PREPARE s1 AS SELECT 'a'")
        b.execute("PREPARE s1 AS SELECT 'b'")
        assert b.execute("SELECT %s::int", (5,)).fetchone()[0] == 5  # a protocol-level statement of b
        a.execute("DEALLOCATE ALL")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            a.execute("EXECUTE s1")
        assert b.execute("EXECUTE s1").fetchone()[0] == "b"
        assert b.execute("SELECT %s::int", (6,)).fetchone()[0] == 6
        b.execute("DISCARD ALL")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            b.execute("EXECUTE s1")
        a.execute("PREPARE s1 AS SELECT 'a2'")
        assert a.execute("EXECUTE s1").fetchone()[0] == "a2"


def test_lru_limit_per_server_connection(pgrelay):
    relay = pgrelay(pool={"max": 1}, proxy={"max_prepared_statements": 2})
    with relay.connect(prepare_threshold=0) as c:
        for rnd in range(3):
            for k in range(5):
                q = f"SELECT %s::int + {k}"
                assert c.execute(q, (rnd,)).fetchone()[0] == rnd + k
        n = c.execute("SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'pgrelay_%'").fetchone()[0]
    assert 1 <= n <= 2, n


def test_parse_error_then_unknown_statement(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect() as c:
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("PREPARE broken AS SELEC 1")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            c.execute("EXECUTE broken")
        assert c.execute("SELECT 1").fetchone()[0] == 1


def test_unnamed_statements_still_work(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect() as a, relay.connect() as b:
        for i in range(5):
            assert a.execute("SELECT %s::int", (i,)).fetchone()[0] == i
            assert b.execute("SELECT %s::text", (str(i),)).fetchone()[0] == str(i)


def test_listen_pins_the_server_connection(pgrelay):
    relay = pgrelay(pool={"max": 2})
    got = []
    with relay.connect() as listener, relay.connect() as notifier:
        listener.add_notify_handler(lambda n: got.append(n.payload))
        listener.execute("LISTEN chan")
        notifier.execute("NOTIFY chan, 'hello'")
        for _ in range(20):
            listener.execute("SELECT 1")
            if got:
                break
        assert got == ["hello"]
    relay.wait_log("LISTEN needs a session")


def test_temp_table_pin_and_reset_after_disconnect(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect() as c:
        c.execute("CREATE TEMP TABLE tt(a int)")
        c.execute("INSERT INTO tt VALUES (1)")
        assert c.execute("SELECT count(*) FROM tt").fetchone()[0] == 1
    relay.wait_log("a temporary table needs a session")
    # The pinned connection went back to the pool through DISCARD ALL: no temp table left.
    with relay.connect() as d:
        assert d.execute("SELECT count(*) FROM pg_class WHERE relname = 'tt' AND relpersistence = 't'").fetchone()[0] == 0


def test_session_advisory_lock_pins(pgrelay):
    relay = pgrelay(pool={"max": 2})
    with relay.connect() as a:
        a.execute("SELECT pg_advisory_lock(4242)")
        for _ in range(3):
            a.execute("SELECT 1")
        assert a.execute("SELECT pg_advisory_unlock(4242)").fetchone()[0] is True
    relay.wait_log("a session advisory lock needs a session")


def test_prepared_while_pool_is_busy_no_deadlock(pgrelay, pgbench_tables):
    """A client that prepares synchronously (PQprepare) while every server connection is held by
    other clients of the same thread must not wait for a server: pgrelay answers the Parse."""
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "5s"})
    sql = b"SELECT abalance FROM pgbench_accounts WHERE aid = $1"
    with relay.connect() as warm:
        warm.pgconn.prepare(b"warm", sql)  # a server accepts it once
    holder = relay.connect(autocommit=False)
    holder.execute("SELECT 1")  # holds the only server connection in a transaction
    done = threading.Event()
    try:
        with relay.connect(prepare_threshold=0) as c:
            # psycopg prepares with Parse+Sync first: answered without a server.
            res = c.pgconn.prepare(b"stmt1", sql)
            assert res.status == psycopg.pq.ExecStatus.COMMAND_OK, res.error_message
            done.set()
    finally:
        holder.rollback()
        holder.close()
    assert done.is_set()
