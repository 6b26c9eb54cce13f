"""Relaying queries: simple and multi-statement, extended protocol, pipelining, COPY both ways,
FunctionCall, notices, ParameterStatus, and a large result read slowly with bounded memory."""
import hashlib
import struct
import time
import uuid
from decimal import Decimal

import psycopg
import pytest
from psycopg import errors

import pgwire
from conftest import APP_PASSWORD, PW_PASSWORD


# ------------------------------------------------------------------ simple protocol


def test_psql_simple_query(pgrelay):
    relay = pgrelay()
    r = relay.psql("SELECT 40 + 2")
    assert r.stdout.strip() == "42"


def test_psql_multi_statement_gives_every_result(pgrelay):
    relay = pgrelay()
    r = relay.psql("SELECT 1; SELECT 2; SELECT 'three'")
    assert r.stdout.split() == ["1", "2", "three"]


def test_multi_statement_error_in_the_middle_then_connection_usable(pgrelay):
    relay = pgrelay()
    # Two -c on one psql connection: the first string fails in its middle statement.
    r = relay.psql("SELECT 1; SELECT 1/0; SELECT 3", args=["-c", "SELECT 'still usable'"], check=False,
                   on_error_stop=False)
    assert "division by zero" in r.stderr
    out = r.stdout.split()
    assert "3" not in out, "statements after the error in the same string must not run"
    assert out[-1] == "usable" and "still" in out, r.stdout
    # The same through the raw protocol: exact messages, and ReadyForQuery 'I' after the error.
    c = pgwire.RawConn("127.0.0.1", relay.port)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    results, errs, tx = c.simple_query("SELECT 1; SELECT 1/0; SELECT 3")
    assert [rows for _, rows in results] == [[["1"]]]
    assert len(errs) == 1 and errs[0].sqlstate == "22012"
    assert tx == "I"
    results, errs, tx = c.simple_query("SELECT 4")
    assert not errs and results == [("SELECT 1", [["4"]])] and tx == "I"
    c.close()


def test_multi_statement_transaction_in_one_string(pgrelay, pg):
    relay = pgrelay(pool={"max": 1})
    t = f"t_{uuid.uuid4().hex[:8]}"
    relay.psql(f"CREATE TABLE {t} (x int); BEGIN; INSERT INTO {t} VALUES (1); INSERT INTO {t} VALUES (2); COMMIT")
    assert pg.sql(f"SELECT sum(x) FROM {t}", dbname="appdb") == "3"
    relay.psql(f"DROP TABLE {t}")


def test_psycopg_simple_protocol_multiple_results(pgrelay):
    relay = pgrelay()
    with relay.connect() as conn:
        cur = conn.execute("SELECT 1; SELECT 2, 3")  # no parameters: psycopg uses the simple protocol
        assert cur.fetchall() == [(1,)]
        assert cur.nextset()
        assert cur.fetchall() == [(2, 3)]
        with pytest.raises(errors.DivisionByZero):
            conn.execute("SELECT 1; SELECT 1/0; SELECT 3")
        assert conn.execute("SELECT 'ok'").fetchone() == ("ok",)


# ------------------------------------------------------------------ extended protocol


def test_extended_protocol_parameters_and_types(pgrelay):
    relay = pgrelay()
    with relay.connect() as conn:
        row = conn.execute("SELECT %s::int + %s::int, %s::text, %s::numeric, %s::bytea",
                           (20, 22, "héllo", "1.5", b"\x00\xff")).fetchone()
        assert row == (42, "héllo", Decimal("1.5"), b"\x00\xff")
        # binary results
        cur = conn.cursor(binary=True)
        assert cur.execute("SELECT %s::int8", (2 ** 40,)).fetchone() == (2 ** 40,)


def test_extended_protocol_many_rows(pgrelay):
    relay = pgrelay()
    with relay.connect() as conn:
        rows = conn.execute("SELECT i, md5(i::text) FROM generate_series(1, %s) i", (20000,)).fetchall()
        assert len(rows) == 20000
        assert rows[0][0] == 1 and rows[-1][0] == 20000
        assert rows[-1][1] == hashlib.md5(b"20000").hexdigest()


def test_extended_protocol_error_then_recovery(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect() as conn:
        with pytest.raises(errors.DivisionByZero):
            conn.execute("SELECT 1 / %s", (0,))
        assert conn.execute("SELECT %s::int * 2", (21,)).fetchone() == (42,)
        with pytest.raises(errors.UndefinedTable):
            conn.execute("SELECT * FROM no_such_table WHERE x = %s", (1,))
        assert conn.execute("SELECT %s::text", ("after",)).fetchone() == ("after",)
    # In a transaction: the error aborts it, ROLLBACK recovers it.
    with relay.connect(autocommit=False) as conn:
        with pytest.raises(errors.DivisionByZero):
            conn.execute("SELECT 1 / %s", (0,))
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT %s::int", (1,))
        conn.rollback()
        assert conn.execute("SELECT %s::int", (7,)).fetchone() == (7,)
        conn.commit()


def test_extended_protocol_prepared_in_session_pooling(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect(dbname="sessdb", prepare_threshold=0) as conn:  # named prepared statements
        for i in range(5):
            assert conn.execute("SELECT %s::int + 1", (i,)).fetchone() == (i + 1,)


def test_psycopg_pipeline(pgrelay):
    relay = pgrelay()
    with relay.connect() as conn:
        assert psycopg.Pipeline.is_supported()
        with conn.pipeline():
            c1 = conn.execute("SELECT %s::int", (1,))
            c2 = conn.execute("SELECT %s::text || 'b'", ("a",))
            c3 = conn.execute("SELECT count(*) FROM generate_series(1, %s)", (1000,))
        assert c1.fetchone() == (1,) and c2.fetchone() == ("ab",) and c3.fetchone() == (1000,)
        # an error inside a pipeline, then the connection goes on
        with pytest.raises(errors.DivisionByZero):
            with conn.pipeline():
                conn.execute("SELECT %s::int", (1,))
                conn.execute("SELECT 1 / %s", (0,))
                conn.execute("SELECT %s::int", (3,))
        assert conn.execute("SELECT %s::int", (4,)).fetchone() == (4,)


def test_asyncpg_driver(pgrelay):
    asyncpg = pytest.importorskip("asyncpg")
    import asyncio

    relay = pgrelay(pool={"max": 2})

    async def main():
        conn = await asyncpg.connect(host="127.0.0.1", port=relay.port, user="app", password=APP_PASSWORD,
                                     database="sessdb", ssl=False, timeout=10)
        try:
            v = await conn.fetchval("SELECT $1::int + $2::int", 40, 2)
            rows = await conn.fetch("SELECT i FROM generate_series(1, $1) i", 1000)
            with pytest.raises(asyncpg.exceptions.DivisionByZeroError):
                await conn.fetchval("SELECT 1 / $1::int", 0)
            after = await conn.fetchval("SELECT 'ok'")
        finally:
            await conn.close()
        return v, len(rows), after

    assert asyncio.run(main()) == (42, 1000, "ok")


# ------------------------------------------------------------------ COPY


N_COPY = 50000


def copy_data():
    # tabs and backslashes escaped as COPY text format wants; a NULL; non-ASCII
    lines = []
    for i in range(1, N_COPY + 1):
        name = f"name-{i}\\tcol\\\\x" if i % 1000 == 0 else f"näme {i}"
        val = "\\N" if i % 777 == 0 else f"{i * 1.5}"
        lines.append(f"{i}\t{name}\t{val}\n")
    return "".join(lines)


def test_copy_through_psql_round_trip(pgrelay, pg):
    relay = pgrelay(pool={"max": 2})
    t = f"copy_{uuid.uuid4().hex[:8]}"
    relay.psql(f"CREATE TABLE {t} (id int, name text, val numeric)")
    data = copy_data()
    r = relay.psql(f"COPY {t} FROM STDIN", input=data)
    assert "COPY 50000" in r.stdout, r.stdout + r.stderr
    assert pg.sql(f"SELECT count(*) FROM {t}", dbname="appdb") == str(N_COPY)
    r = relay.psql(f"COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT")
    assert r.stdout == data
    relay.psql(f"DROP TABLE {t}")


def test_copy_through_psycopg_round_trip(pgrelay):
    relay = pgrelay(pool={"max": 1})
    t = f"copy_{uuid.uuid4().hex[:8]}"
    data = copy_data().encode()
    with relay.connect() as conn:
        conn.execute(f"CREATE TABLE {t} (id int, name text, val numeric)")
        cur = conn.cursor()
        with cur.copy(f"COPY {t} FROM STDIN") as cp:
            for off in range(0, len(data), 8192):
                cp.write(data[off:off + 8192])
        assert cur.rowcount == N_COPY
        out = bytearray()
        with cur.copy(f"COPY (SELECT * FROM {t} ORDER BY id) TO STDOUT") as cp:
            for block in cp:
                out += block
        assert bytes(out) == data
        # row-wise API inside a transaction
        with conn.transaction():
            with cur.copy(f"COPY {t} (id, name) FROM STDIN") as cp:
                for i in range(1000):
                    cp.write_row((N_COPY + 1 + i, f"row {i}"))
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (N_COPY + 1000,)
        conn.execute(f"DROP TABLE {t}")


def test_copy_from_stdin_error_then_connection_usable(pgrelay):
    relay = pgrelay(pool={"max": 1})
    t = f"copy_{uuid.uuid4().hex[:8]}"
    with relay.connect() as conn:
        conn.execute(f"CREATE TABLE {t} (id int)")
        cur = conn.cursor()
        with pytest.raises(errors.InvalidTextRepresentation):
            with cur.copy(f"COPY {t} FROM STDIN") as cp:
                cp.write(b"1\n2\nnot-a-number\n4\n")
        assert conn.execute(f"SELECT count(*) FROM {t}").fetchone() == (0,)
        # the client aborts a COPY itself (CopyFail)
        with pytest.raises(errors.QueryCanceled):
            with cur.copy(f"COPY {t} FROM STDIN") as cp:
                cp.write(b"1\n")
                raise errors.QueryCanceled("client gave up")  # psycopg sends CopyFail
        assert conn.execute("SELECT %s::int", (5,)).fetchone() == (5,)
        conn.execute(f"DROP TABLE {t}")


# ------------------------------------------------------------------ other messages


def test_function_call_notice_and_parameter_status(pgrelay):
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    assert c.params.get("server_version", "").startswith("15"), c.params
    assert "client_encoding" in c.params and c.backend_key is not None
    # FunctionCall: int4pl (oid 177) with two binary int4 arguments, binary result
    body = struct.pack("!IHHH", 177, 1, 1, 2) + struct.pack("!Ii", 4, 40) + struct.pack("!Ii", 4, 2) + \
        struct.pack("!H", 1)
    c.send(pgwire.message("F", body))
    results, errs, tx = c.read_results()
    assert not errs and tx == "I"
    assert results == [("FunctionCall", [[struct.pack("!i", 42)]])]
    # NoticeResponse
    _, errs, _ = c.simple_query("DO $$ BEGIN RAISE NOTICE 'hello from plpgsql'; END $$")
    assert not errs
    assert any(n.get("M") == "hello from plpgsql" for n in c.notices)
    # ParameterStatus on SET of a reported parameter
    _, errs, _ = c.simple_query("SET application_name = 'changed_by_set'")
    assert not errs
    assert ("application_name", "changed_by_set") in c.parameter_changes
    c.close()


# ------------------------------------------------------------------ large result, slow reader


def test_large_result_read_slowly_keeps_memory_bounded(pgrelay):
    """~31 MB of rows through a client that stalls, then reads in small chunks: pgrelay must stop
    reading from the server instead of buffering the result."""
    relay = pgrelay(users=[{"name": "app", "password": APP_PASSWORD, "auth": "password"}], pool={"max": 1})
    rows, width = 100000, 300
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=60)
    c.startup("app", "appdb", APP_PASSWORD)
    c.simple_query("SELECT 1")  # the server connection exists, pools are warm
    time.sleep(0.3)
    baseline = relay.rss_kb()
    peak = baseline
    c.send(pgwire.query_message(f"SELECT repeat('x', {width}) FROM generate_series(1, {rows})"))

    # 1. Stall: read nothing for 2 s while the server could produce the whole result.
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        peak = max(peak, relay.rss_kb())
        time.sleep(0.05)

    # 2. Read slowly: 8 kB at a time with pauses, sampling RSS; then faster.
    count, total, done, last_sample = 0, 0, False, 0.0
    parse = bytearray()
    slow_until = 4 * 1024 * 1024
    while not done:
        chunk = c.sock.recv(8192 if total < slow_until else 262144)
        if not chunk:
            raise AssertionError(f"EOF after {count} rows")
        total += len(chunk)
        parse += chunk
        pos = 0
        while len(parse) - pos >= 5:
            (ln,) = struct.unpack_from("!I", parse, pos + 1)
            if len(parse) - pos < 1 + ln:
                break
            t = parse[pos]
            if t == ord("D"):
                count += 1
            elif t == ord("E"):
                raise AssertionError(pgwire.parse_fields(bytes(parse[pos + 5:pos + 1 + ln])))
            elif t == ord("Z"):
                done = True
            pos += 1 + ln
        del parse[:pos]
        now = time.monotonic()
        if now - last_sample > 0.02:
            peak = max(peak, relay.rss_kb())
            last_sample = now
        if total < slow_until:
            time.sleep(0.002)
    c.close()
    growth_mb = (peak - baseline) / 1024
    result_mb = rows * (width + 11) / 1024 / 1024
    print(f"baseline {baseline} kB, peak {peak} kB, growth {growth_mb:.1f} MB, result {result_mb:.1f} MB")
    assert count == rows
    assert growth_mb < 10, f"pgrelay RSS grew by {growth_mb:.1f} MB while relaying a {result_mb:.0f} MB result"
