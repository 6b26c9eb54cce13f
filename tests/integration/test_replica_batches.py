"""Replica routing and the shapes of extended-protocol batches that drivers send.

- Flush-based clients: a client that sends Parse + Describe + Flush (no Sync) and waits for
  ParameterDescription / RowDescription before it sends Bind + Execute + Sync must get them at once,
  also when the read went to a replica (asyncpg's fetchval, postgres.js's unprepared queries).
- A pipelined batch that reads then writes before one Sync (psycopg 3 pipelines, asyncpg
  executemany, JDBC batches) is one implicit transaction: it runs entirely on the primary, on one
  server connection.

Every check proves where a statement ran from the server side (pg_is_in_recovery(),
pg_backend_pid()).
"""
import asyncio
import struct

import asyncpg
import psycopg
import pytest

from conftest import APP_PASSWORD
from pgwire import RawConn, message
from test_routing import (HEALTH_MS, dbs, health, main_at, replica, replica_at, replica_main, routed,  # noqa: F401
                          row, wait_reads_on_replica)

DEADLINE = 10  # seconds any reply may take


def routed_with_replica(pgrelay, pg2, replica):
    return routed(pgrelay, pg2, main=replica_main(replica), health=health())


def raw_login(port):
    conn = RawConn("127.0.0.1", port, timeout=DEADLINE)
    conn.startup("pwuser", "appdb", password="pwpw")
    return conn


def parse(sql, name=""):
    return message("P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))


def bind(portal="", stmt="", params=()):
    body = portal.encode() + b"\0" + stmt.encode() + b"\0" + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!I", len(p)) + p.encode()
    return message("B", body + struct.pack("!H", 0))


def describe(kind, name=""):
    return message("D", kind.encode() + name.encode() + b"\0")


def execute(portal=""):
    return message("E", portal.encode() + b"\0" + struct.pack("!I", 0))


def read_until(conn, last):
    """Messages up to and including one of type last (ErrorResponse fails the test)."""
    out = []
    while True:
        t, payload = conn.read_message()
        out.append((t, payload))
        if t == "E":
            raise AssertionError(f"ErrorResponse: {payload!r}")
        if t == last:
            return out


def data_rows(msgs):
    rows = []
    for t, payload in msgs:
        if t != "D":
            continue
        (n,) = struct.unpack_from("!H", payload)
        at, row_ = 2, []
        for _ in range(n):
            (ln,) = struct.unpack_from("!i", payload, at)
            at += 4
            row_.append(None if ln < 0 else payload[at:at + ln].decode())
            at += max(ln, 0)
        rows.append(tuple(row_))
    return rows


# ----------------------------------------------------------------------------- Flush-based clients


def test_parse_describe_flush_answered_from_a_replica(pgrelay, pg, pg2, dbs, replica):
    r = routed_with_replica(pgrelay, pg2, replica)
    with r.connect() as c:
        wait_reads_on_replica(c, replica)
    conn = raw_login(r.port)
    try:
        conn.send(parse("SELECT $1::int + 1 AS answer, pg_is_in_recovery()") + describe("S") + message("H"))
        got = read_until(conn, "T")  # ParseComplete, ParameterDescription, RowDescription, without a Sync
        assert [t for t, _ in got] == ["1", "t", "T"]
        conn.send(bind(params=["41"]) + execute() + message("S"))
        rows = data_rows(read_until(conn, "Z"))
        assert rows == [("42", "t")], "the read should have run on the replica"
        # and again: the connection goes on normally
        conn.send(parse("SELECT 1") + bind() + execute() + message("S"))
        assert data_rows(read_until(conn, "Z")) == [("1",)]
    finally:
        conn.close()


@pytest.mark.parametrize("statement_cache", [100, 0], ids=["stmt-cache", "no-stmt-cache"])
def test_asyncpg_fetchval_through_replica_routing(pgrelay, pg, pg2, dbs, replica, statement_cache):
    r = routed_with_replica(pgrelay, pg2, replica)
    with r.connect() as c:
        wait_reads_on_replica(c, replica)

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=r.port, user="app", password=APP_PASSWORD,
                                     database="appdb", statement_cache_size=statement_cache, timeout=DEADLINE)
        try:
            got = []
            for _ in range(3):
                got.append(await conn.fetchval("SELECT $1::int + 1", 41, timeout=DEADLINE))
            got.append(await conn.fetchval("SELECT pg_is_in_recovery() FROM rt_users LIMIT $1", 1, timeout=DEADLINE))
            async with conn.transaction():
                await conn.execute("INSERT INTO rt_marks VALUES ($1)", "asyncpg-replica", timeout=DEADLINE)
                got.append(await conn.fetchval("SELECT count(*) FROM rt_marks WHERE tag = $1", "asyncpg-replica",
                                               timeout=DEADLINE))
            return got
        finally:
            await conn.close(timeout=DEADLINE)

    got = asyncio.run(asyncio.wait_for(run(), 4 * DEADLINE))
    assert got[:3] == [42, 42, 42]
    assert got[3] is True, "a plain read should have gone to the replica"
    assert got[4] >= 1
    pg.sql("DELETE FROM rt_marks WHERE tag = 'asyncpg-replica'", dbname="appdb")


# ----------------------------------------------------------------------------- read-then-write batches

BATCH_READ = "SELECT pg_is_in_recovery()::text, pg_backend_pid()::text FROM rt_users WHERE id = 1"
BATCH_WRITE = "INSERT INTO rt_marks VALUES ('batch') RETURNING pg_is_in_recovery()::text, pg_backend_pid()::text"


def test_pipelined_read_then_write_runs_on_the_primary(pgrelay, pg, pg2, dbs, replica):
    r = routed_with_replica(pgrelay, pg2, replica)
    with r.connect() as c:
        wait_reads_on_replica(c, replica)
    conn = raw_login(r.port)
    try:
        for _ in range(3):
            conn.send(parse(BATCH_READ) + bind() + execute() + parse(BATCH_WRITE) + bind() + execute() + message("S"))
            rows = data_rows(read_until(conn, "Z"))
            assert len(rows) == 2, rows
            assert rows[0][0] == "false" and rows[1][0] == "false", f"a part of the batch ran on the replica: {rows}"
            assert rows[0][1] == rows[1][1], f"the batch ran on two server connections: {rows}"
    finally:
        conn.close()
    # a batch that only reads still goes to the replica (a client that did not write: no
    # read-your-writes mark keeping it on the primary)
    conn = raw_login(r.port)
    try:
        conn.send(parse(BATCH_READ) + bind() + execute() + parse("SELECT 1") + bind() + execute() + message("S"))
        rows = data_rows(read_until(conn, "Z"))
        assert rows[0][0] == "true", rows
    finally:
        conn.close()
    assert pg.sql("SELECT count(*) FROM rt_marks WHERE tag = 'batch'", dbname="appdb") == "3"
    pg.sql("DELETE FROM rt_marks WHERE tag = 'batch'", dbname="appdb")


def test_named_statements_read_then_write_in_one_batch(pgrelay, pg, pg2, dbs, replica):
    """The same with named prepared statements (prepared in an earlier batch, as JDBC and asyncpg do)."""
    r = routed_with_replica(pgrelay, pg2, replica)
    with r.connect() as c:
        wait_reads_on_replica(c, replica)
    conn = raw_login(r.port)
    try:
        conn.send(parse(BATCH_READ, "rd") + parse(BATCH_WRITE, "wr") + message("S"))
        read_until(conn, "Z")
        conn.send(bind(stmt="rd") + execute() + bind(stmt="wr") + execute() + message("S"))
        rows = data_rows(read_until(conn, "Z"))
        assert [x[0] for x in rows] == ["false", "false"] and rows[0][1] == rows[1][1], rows
    finally:
        conn.close()
    pg.sql("DELETE FROM rt_marks WHERE tag = 'batch'", dbname="appdb")


def test_psycopg_pipeline_read_then_write(pgrelay, pg, pg2, dbs, replica):
    r = routed_with_replica(pgrelay, pg2, replica)
    with r.connect() as c:
        wait_reads_on_replica(c, replica)
        with c.pipeline():
            cur1 = c.execute(BATCH_READ)
            cur2 = c.execute(BATCH_WRITE)
        first, second = cur1.fetchone(), cur2.fetchone()
        assert first[0] == "false" and second[0] == "false", (first, second)
        assert first[1] == second[1], (first, second)
    pg.sql("DELETE FROM rt_marks WHERE tag = 'batch'", dbname="appdb")


def test_write_then_read_in_one_batch_stays_on_one_connection(pgrelay, pg, pg2, dbs, replica):
    r = routed_with_replica(pgrelay, pg2, replica)
    conn = raw_login(r.port)
    try:
        conn.send(parse(BATCH_WRITE) + bind() + execute() + parse(BATCH_READ) + bind() + execute() + message("S"))
        rows = data_rows(read_until(conn, "Z"))
        assert [x[0] for x in rows] == ["false", "false"] and rows[0][1] == rows[1][1], rows
    finally:
        conn.close()
    pg.sql("DELETE FROM rt_marks WHERE tag = 'batch'", dbname="appdb")


def error_fields(payload):
    return {chr(p[0]): p[1:].decode() for p in payload.split(b"\0") if p}


def read_all_until_z(conn):
    out = []
    while True:
        t, payload = conn.read_message()
        out.append((t, payload))
        if t == "Z":
            return out


def test_write_after_a_replica_prepare_step_fails_the_batch_in_order(pgrelay, pg, pg2, dbs, replica):
    """Parse + Describe + Flush of a read goes to a replica (the client waits for the replies); a
    write that then joins the same batch cannot run there: the batch fails with 0A000 after the
    replies already owed, nothing is written, and the connection goes on."""
    r = routed_with_replica(pgrelay, pg2, replica)
    with r.connect() as c:
        wait_reads_on_replica(c, replica)
    conn = raw_login(r.port)
    try:
        conn.send(parse(BATCH_READ) + describe("S") + message("H"))
        assert [t for t, _ in read_until(conn, "T")] == ["1", "t", "T"]
        conn.send(bind() + execute() + parse(BATCH_WRITE) + bind() + execute() + message("S"))
        got = read_all_until_z(conn)
        types = [t for t, _ in got]
        assert types == ["2", "D", "C", "E", "Z"], types
        assert data_rows(got)[0][0] == "true"
        err = error_fields(got[3][1])
        assert err["C"] == "0A000" and "replica" in err["M"], err
        assert got[4][1] == b"I"
        conn.send(parse("SELECT 41 + 1") + bind() + execute() + message("S"))
        assert data_rows(read_until(conn, "Z")) == [("42",)]
    finally:
        conn.close()
    assert pg.sql("SELECT count(*) FROM rt_marks WHERE tag = 'batch'", dbname="appdb") == "0"


def test_other_service_inside_an_open_batch_fails_it(pgrelay, pg, pg2, dbs):
    r = routed(pgrelay, pg2)
    conn = raw_login(r.port)
    try:
        conn.send(parse("INSERT INTO rt_marks VALUES ('cross') RETURNING tag") + bind() + execute() +
                  parse("SELECT note FROM orders WHERE id = 1") + bind() + execute() + message("S"))
        got = read_all_until_z(conn)
        types = [t for t, _ in got]
        assert types == ["1", "2", "D", "C", "E", "Z"], types
        assert error_fields(got[4][1])["C"] == "0A000"
        conn.send(parse("SELECT 1") + bind() + execute() + message("S"))
        assert data_rows(read_until(conn, "Z")) == [("1",)]
    finally:
        conn.close()
    # the implicit transaction failed: its INSERT was rolled back
    assert pg.sql("SELECT count(*) FROM rt_marks WHERE tag = 'cross'", dbname="appdb") == "0"


def test_pipelined_queries_get_an_error_in_order(pgrelay, pg, pg2, dbs):
    """A Query that pgrelay refuses (two services) while the server still owes an earlier Query's
    replies: the error comes after them, in an explicit transaction it fails the transaction."""
    r = routed(pgrelay, pg2)
    conn = raw_login(r.port)
    try:
        conn.send(message("Q", b"BEGIN\0") + message("Q", b"SELECT pg_sleep(0.2)::text, 'first'\0") +
                  message("Q", b"SELECT * FROM rt_users JOIN orders USING (id)\0") + message("Q", b"SELECT 1\0"))
        got = read_all_until_z(conn)  # BEGIN
        got = read_all_until_z(conn)
        assert data_rows(got) == [("", "first")], got
        got = read_all_until_z(conn)
        assert [t for t, _ in got] == ["E", "Z"], got
        assert error_fields(got[0][1])["C"] == "0A000"
        assert got[1][1] == b"E"
        got = read_all_until_z(conn)
        assert error_fields(got[0][1])["C"] == "25P02", got  # the transaction failed, as in PostgreSQL
        conn.send(message("Q", b"ROLLBACK\0"))
        got = read_all_until_z(conn)
        assert got[-1][1] == b"I"
    finally:
        conn.close()


def test_batch_sent_in_pieces_without_flush_waits_for_its_sync(pgrelay, pg, pg2, dbs, replica):
    """A pipeline written a statement at a time (libpq pipeline mode: no Flush, separate writes)
    is decided once pgrelay has seen it up to its Sync: the read-then-write runs on the primary."""
    import time
    r = routed_with_replica(pgrelay, pg2, replica)
    with r.connect() as c:
        wait_reads_on_replica(c, replica)
    conn = raw_login(r.port)
    try:
        conn.send(parse(BATCH_READ, "pieces_rd"))
        time.sleep(0.2)
        conn.send(bind(stmt="pieces_rd") + execute())
        time.sleep(0.2)
        conn.send(parse(BATCH_WRITE) + bind() + execute())
        time.sleep(0.2)
        conn.send(message("S"))
        got = read_all_until_z(conn)
        rows = data_rows(got)
        assert [t for t, _ in got if t == "E"] == [], got
        assert [x[0] for x in rows] == ["false", "false"] and rows[0][1] == rows[1][1], rows
    finally:
        conn.close()
    pg.sql("DELETE FROM rt_marks WHERE tag = 'batch'", dbname="appdb")
