"""The result cache and transactions as the server runs them: savepoints (RELEASE merges, ROLLBACK
TO drops only what came after the savepoint), errors rolled back to a savepoint, pipelined
autocommit writes each invalidated at its own commit, and a client that leaves right after sending
COMMIT — on the simple, extended and named-prepared protocol paths.

How a test tells a cached result from a fresh one: a row changed directly on PostgreSQL (around
pgrelay, no WAL listener) still shows its old value when the read is served from the cache. So a
read that must be fresh is checked against PostgreSQL, and a read that must still be cached (to
show an invalidation was precise) shows the value from before such a change.
"""
import socket
import struct
import time

import psycopg
import pytest

from conftest import wait_for
from pgwire import RawConn, message

RULES = [{"tables": ["sp_a", "sp_b", "sp_c"], "ttl": "5m"}]


def cache_section():
    return {"l1": {"max_memory": "16MB", "max_result": "1MB"}, "rules": RULES}


@pytest.fixture
def sp_tables(pg):
    pg.sql("""
DROP TABLE IF EXISTS sp_a, sp_b, sp_c;
CREATE TABLE sp_a (id int PRIMARY KEY, v text); INSERT INTO sp_a VALUES (1, 'a0');
CREATE TABLE sp_b (id int PRIMARY KEY, v text); INSERT INTO sp_b VALUES (1, 'b0');
CREATE TABLE sp_c (id int PRIMARY KEY, v text); INSERT INTO sp_c VALUES (1, 'c0');
GRANT ALL ON sp_a, sp_b, sp_c TO app, pwuser;
""", dbname="appdb")
    return pg


@pytest.fixture(params=["simple", "extended", "prepared"])
def proto(request):
    return request.param


def writer(relay, proto):
    if proto == "simple":
        return relay.connect(cursor_factory=psycopg.ClientCursor)
    return relay.connect(prepare_threshold=None)


def run(conn, proto, sql):
    try:
        if proto == "prepared":
            return conn.execute(sql, prepare=True)
        return conn.execute(sql)
    except psycopg.Error:
        raise


def read(conn, table):
    return conn.execute(f"SELECT v FROM {table} WHERE id = 1").fetchone()[0]


def on_pg(pg, table):
    return pg.sql(f"SELECT v FROM {table} WHERE id = 1", dbname="appdb")


def prime(reader, *tables):
    for t in tables:
        read(reader, t)
        read(reader, t)


def test_rollback_to_savepoint_keeps_the_writes_before_it(pgrelay, sp_tables, proto, pg):
    r = pgrelay(cache=cache_section())
    with r.connect(cursor_factory=psycopg.ClientCursor) as reader, writer(r, proto) as w:
        prime(reader, "sp_a", "sp_b")
        for sql in ["BEGIN", "UPDATE sp_a SET v = 'a1' WHERE id = 1", "SAVEPOINT s",
                    "UPDATE sp_b SET v = 'b1' WHERE id = 1", "ROLLBACK TO SAVEPOINT s", "COMMIT"]:
            run(w, proto, sql)
        assert read(reader, "sp_a") == "a1", "the write before the savepoint was forgotten"
        # the rolled-back write invalidated nothing: sp_b's cached result stays (precision)
        pg.sql("UPDATE sp_b SET v = 'b-behind' WHERE id = 1", dbname="appdb")
        assert read(reader, "sp_b") == "b0"


def test_release_merges_into_the_outer_level(pgrelay, sp_tables, proto):
    r = pgrelay(cache=cache_section())
    with r.connect(cursor_factory=psycopg.ClientCursor) as reader, writer(r, proto) as w:
        prime(reader, "sp_a", "sp_b", "sp_c")
        for sql in ["BEGIN", "SAVEPOINT a", "UPDATE sp_a SET v = 'a1' WHERE id = 1", "SAVEPOINT b",
                    "UPDATE sp_b SET v = 'b1' WHERE id = 1", "RELEASE SAVEPOINT b", "SAVEPOINT c",
                    "UPDATE sp_c SET v = 'c1' WHERE id = 1", "ROLLBACK TO c", "RELEASE a", "COMMIT"]:
            run(w, proto, sql)
        assert (read(reader, "sp_a"), read(reader, "sp_b"), read(reader, "sp_c")) == ("a1", "b1", "c0")


def test_rollback_to_an_outer_savepoint(pgrelay, sp_tables, proto, pg):
    r = pgrelay(cache=cache_section())
    with r.connect(cursor_factory=psycopg.ClientCursor) as reader, writer(r, proto) as w:
        prime(reader, "sp_a", "sp_b", "sp_c")
        for sql in ["BEGIN", "UPDATE sp_c SET v = 'c1' WHERE id = 1", "SAVEPOINT a",
                    "UPDATE sp_a SET v = 'a1' WHERE id = 1", "SAVEPOINT b", "UPDATE sp_b SET v = 'b1' WHERE id = 1",
                    "ROLLBACK TO SAVEPOINT a", "COMMIT"]:
            run(w, proto, sql)
        assert read(reader, "sp_c") == "c1"
        pg.sql("UPDATE sp_a SET v = 'a-behind' WHERE id = 1; UPDATE sp_b SET v = 'b-behind' WHERE id = 1",
               dbname="appdb")
        assert (read(reader, "sp_a"), read(reader, "sp_b")) == ("a0", "b0")


def test_error_rolled_back_to_a_savepoint_then_commit(pgrelay, sp_tables, proto):
    r = pgrelay(cache=cache_section())
    with r.connect(cursor_factory=psycopg.ClientCursor) as reader, writer(r, proto) as w:
        prime(reader, "sp_a")
        run(w, proto, "BEGIN")
        run(w, proto, "UPDATE sp_a SET v = 'a1' WHERE id = 1")
        run(w, proto, "SAVEPOINT s")
        with pytest.raises(psycopg.errors.DivisionByZero):
            run(w, proto, "SELECT 1/0")
        run(w, proto, "ROLLBACK TO SAVEPOINT s")
        run(w, proto, "COMMIT")
        assert read(reader, "sp_a") == "a1"


def test_savepoints_in_one_query_string(pgrelay, sp_tables, pg):
    r = pgrelay(cache=cache_section())
    with r.connect(cursor_factory=psycopg.ClientCursor) as reader, r.connect(cursor_factory=psycopg.ClientCursor) as w:
        prime(reader, "sp_a", "sp_b")
        w.execute("BEGIN; UPDATE sp_a SET v = 'a1' WHERE id = 1; SAVEPOINT s; UPDATE sp_b SET v = 'b1' WHERE id = 1; "
                  "ROLLBACK TO SAVEPOINT s; COMMIT")
        assert read(reader, "sp_a") == "a1"
        assert on_pg(pg, "sp_b") == "b0"
        # a COMMIT inside the string, then a transaction left open
        prime(reader, "sp_c")
        w.execute("UPDATE sp_c SET v = 'c1' WHERE id = 1; COMMIT; BEGIN; UPDATE sp_b SET v = 'b2' WHERE id = 1")
        assert read(reader, "sp_c") == "c1"
        w.execute("COMMIT")
        assert read(reader, "sp_b") == "b2"


def raw(port):
    c = RawConn("127.0.0.1", port, timeout=10)
    c.startup("pwuser", "appdb", password="pwpw")
    return c


def until_z(c):
    out = []
    while True:
        t, p = c.read_message()
        out.append((t, p))
        if t == "Z":
            return out


def test_pipelined_autocommit_writes_each_invalidated_at_its_commit(pgrelay, sp_tables, pg):
    """Query 1 writes, Query 2 waits, Query 3 writes again, sent at once: a reader that caches the
    row between the two commits must not keep that result after the second one."""
    r = pgrelay(cache=cache_section())
    with r.connect(cursor_factory=psycopg.ClientCursor) as reader:
        prime(reader, "sp_a")
        w = raw(r.port)
        try:
            w.send(message("Q", b"UPDATE sp_a SET v = 'p1' WHERE id = 1\0") +
                   message("Q", b"SELECT pg_sleep(0.5)\0") +
                   message("Q", b"UPDATE sp_a SET v = 'p2' WHERE id = 1\0"))
            until_z(w)  # the first write is committed
            assert read(reader, "sp_a") == "p1"
            assert read(reader, "sp_a") == "p1"  # cached now, with the versions after the first bump
            until_z(w)
            until_z(w)  # the second write is committed
            assert read(reader, "sp_a") == "p2", "the second pipelined write was never invalidated"
        finally:
            w.close()


def test_client_gone_right_after_sending_commit(pgrelay, sp_tables, pg):
    """A client that sends COMMIT and leaves without reading the reply: the commit may have happened,
    so what the transaction wrote is invalidated anyway."""
    r = pgrelay(cache=cache_section())
    with r.connect(cursor_factory=psycopg.ClientCursor) as reader:
        for i in range(5):
            prime(reader, "sp_a")
            w = raw(r.port)
            w.send(message("Q", b"BEGIN\0"))
            until_z(w)
            w.send(message("Q", f"UPDATE sp_a SET v = 'gone{i}' WHERE id = 1\0".encode()))
            until_z(w)
            w.send(message("Q", b"SELECT pg_sleep(0.05)\0") + message("Q", b"COMMIT\0"))
            w.sock.close()  # gone, nothing read
            # the server finishes the commit (or pgrelay cancels it): wait until PostgreSQL has decided
            wait_for(lambda: pg.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'appdb' "
                                    "AND state <> 'idle' AND backend_type = 'client backend' "
                                    "AND pid <> pg_backend_pid()") == "0", 10, what="the writer's session to end")
            assert read(reader, "sp_a") == on_pg(pg, "sp_a")
