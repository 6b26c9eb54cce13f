"""Pooling: pgbench in transaction pooling, cancel, a client killed mid-query, pool exhaustion
(queue, then 53300), session reset, per-client startup parameters, min / idle_timeout /
server_lifetime."""
import re
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from psycopg import errors

import pgwire
from conftest import APP_PASSWORD, PSQL, connect, pgbench, wait_for


def backends(pg, marker):
    """PIDs of server backends running a query that contains marker (checked on PostgreSQL itself)."""
    out = pg.sql("SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND state = 'active' AND query LIKE "
                 f"'%{marker}%' AND query NOT LIKE '%pg_stat_activity%'")
    return [int(x) for x in out.split()]


def server_conns(pg, appname):
    return int(pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{appname}'"))


# ------------------------------------------------------------------ pgbench


@pytest.mark.parametrize("mode", ["simple", "extended"])
def test_pgbench_transaction_pooling_no_failures(pgrelay, pgbench_tables, mode):
    relay = pgrelay(pool={"max": 4})
    r = pgbench(relay.port, "-n", "-M", mode, "-c", 16, "-j", 2, "-t", 200)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    assert m and int(m.group(1)) == 16 * 200, out
    m = re.search(r"number of failed transactions: (\d+)", out)
    assert m, out
    assert int(m.group(1)) == 0, out
    # never more than max server connections
    opened = relay.log().count("new server connection")
    assert 1 <= opened <= 4, f"{opened} server connections opened for pool max 4"


# ------------------------------------------------------------------ cancel


def test_cancel_pg_sleep_with_psycopg(pgrelay):
    relay = pgrelay(pool={"max": 2})
    with relay.connect() as conn:
        t = threading.Timer(0.5, conn.cancel)
        t.start()
        t0 = time.monotonic()
        with pytest.raises(errors.QueryCanceled) as ei:
            conn.execute("SELECT pg_sleep(30)")
        elapsed = time.monotonic() - t0
        t.join()
        assert ei.value.sqlstate == "57014"
        assert elapsed < 5, f"cancel took {elapsed:.1f}s"
        assert conn.execute("SELECT 'after cancel'").fetchone() == ("after cancel",)


def test_cancel_pg_sleep_with_psql_sigint(pgrelay, pg):
    relay = pgrelay(pool={"max": 2})
    marker = f"cancel_{uuid.uuid4().hex[:8]}"
    env = {"PGPASSWORD": APP_PASSWORD, "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen([PSQL, "-X", "-A", "-t", "-h", "127.0.0.1", "-p", str(relay.port), "-U", "app", "-d", "appdb",
                          "-c", f"SELECT pg_sleep(30) /* {marker} */"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for(lambda: backends(pg, marker), 10, what="pg_sleep to run on the server")
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)  # psql sends a CancelRequest
        _, err = p.communicate(timeout=10)
        elapsed = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
    assert "canceling statement due to user request" in err, err
    assert elapsed < 5
    assert not backends(pg, marker)


def test_cancel_with_wrong_key_is_ignored(pgrelay):
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port)
    c.startup("pwuser", "appdb", "pwpw")
    pid, key = c.backend_key
    c.send(pgwire.query_message("SELECT pg_sleep(1.5), 'finished'"))
    time.sleep(0.3)
    s = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    s.sendall(struct.pack("!IIII", 16, pgwire.CANCEL_REQUEST_CODE, pid, (key + 1) & 0xffffffff))
    assert pgwire.wait_closed(s, 5)
    s.close()
    results, errs, _ = c.read_results()
    assert not errs, errs[0].fields
    assert results[0][1] == [["", "finished"]]
    c.close()


# ------------------------------------------------------------------ client killed mid-query


def test_client_killed_mid_query_leaves_pool_healthy(pgrelay, pg):
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "10s"})
    marker = f"killed_{uuid.uuid4().hex[:8]}"
    env = {"PGPASSWORD": APP_PASSWORD, "PATH": "/usr/bin:/bin"}
    p = subprocess.Popen([PSQL, "-X", "-h", "127.0.0.1", "-p", str(relay.port), "-U", "app", "-d", "appdb",
                          "-c", f"SELECT pg_sleep(30) /* {marker} */"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    victim = wait_for(lambda: backends(pg, marker), 10, what="pg_sleep to run on the server")[0]
    p.kill()
    p.wait()
    t0 = time.monotonic()
    with connect(relay.port) as conn:
        pid, one = conn.execute("SELECT pg_backend_pid(), 1").fetchone()
    elapsed = time.monotonic() - t0
    assert one == 1
    assert elapsed < 5, f"the next client waited {elapsed:.1f}s for the only server connection"
    assert pid != victim, "the server connection of the killed client was reused"
    wait_for(lambda: not backends(pg, marker), 5, what="the pg_sleep backend to go away on the server")
    wait_for(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {victim}") == "0", 5,
             what="the killed client's backend to exit")


# ------------------------------------------------------------------ exhaustion


def test_pool_exhaustion_times_out_with_53300(pgrelay):
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "2s"})
    with relay.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")  # holds the only server connection
        # The waiter speaks the protocol itself to see the exact SQLSTATE: libpq turns a FATAL
        # error that arrives during a query into "server closed the connection" without one.
        waiter = pgwire.RawConn("127.0.0.1", relay.port)
        waiter.startup("app", "appdb", APP_PASSWORD)  # login needs no server connection
        t0 = time.monotonic()
        waiter.send(pgwire.query_message("SELECT 2"))
        t, payload = waiter.read_message()
        elapsed = time.monotonic() - t0
        assert t == "E", (t, payload)
        fields = pgwire.parse_fields(payload)
        assert fields["C"] == "53300", fields
        assert 1.5 <= elapsed <= 5, f"failed after {elapsed:.2f}s, query_wait_timeout is 2s"
        assert "query_wait_timeout" in fields["M"]
        assert pgwire.wait_closed(waiter.sock, 5)
        waiter.sock.close()
        # psycopg shows the message
        with relay.connect() as w2:
            with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
                w2.execute("SELECT 2")
        holder.execute("COMMIT")
        assert holder.execute("SELECT 3").fetchone() == (3,)


def test_pool_exhaustion_waiters_are_served_in_order(pgrelay):
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "10s"}, log={"level": "debug"})
    seq = f"fifo_{uuid.uuid4().hex[:8]}"
    relay.psql(f"CREATE SEQUENCE {seq}")
    served, failures = {}, []
    with relay.connect() as holder:
        holder.execute("BEGIN")
        holder_pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]

        def waiter(i):
            try:
                with relay.connect() as c:
                    # nextval() tells the order in which the server ran the waiters' queries
                    served[i] = c.execute(f"SELECT nextval('{seq}'), pg_backend_pid()").fetchone()
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

        threads = []
        for i in range(3):
            t = threading.Thread(target=waiter, args=(i,))
            t.start()
            threads.append(t)
            # waiter i is queued before waiter i+1 starts
            relay.wait_log("waiting for a server of pool", count=i + 1)
        time.sleep(0.3)
        assert not served, "a waiter got a server connection while the only one was in a transaction"
        holder.execute("COMMIT")
        for t in threads:
            t.join(15)
    assert not failures, failures
    order = sorted(served, key=lambda i: served[i][0])
    assert order == [0, 1, 2], f"waiters served in order {order}, expected FIFO"
    assert all(pid == holder_pid for _, pid in served.values()), "pool max 1 must reuse the one server connection"
    relay.psql(f"DROP SEQUENCE {seq}")


# ------------------------------------------------------------------ session pooling


def test_session_pooling_keeps_settings_then_discard_all(pgrelay):
    relay = pgrelay(pool={"max": 1})
    with relay.connect(dbname="sessdb") as a:
        pid_a = a.execute("SELECT pg_backend_pid()").fetchone()[0]
        a.execute("SET myapp.x = '1'")
        a.execute("PREPARE p1 AS SELECT 1")
        for _ in range(3):  # separate transactions, same session
            assert a.execute("SELECT current_setting('myapp.x', true)").fetchone() == ("1",)
            assert a.execute("SELECT pg_backend_pid()").fetchone()[0] == pid_a
    with relay.connect(dbname="sessdb") as b:
        pid_b, value = b.execute("SELECT pg_backend_pid(), current_setting('myapp.x', true)").fetchone()
        assert pid_b == pid_a, "pool max 1: the same server connection must be reused"
        assert value in (None, ""), f"the next client sees the old session's setting myapp.x={value!r}"
        assert b.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


# ------------------------------------------------------------------ transaction pooling isolation


def test_transaction_pooling_startup_parameters_per_client(pgrelay):
    relay = pgrelay(pool={"max": 1})
    a = relay.connect(application_name="client_a", options="-c TimeZone=UTC")
    b = relay.connect(application_name="client_b", options="-c TimeZone=Asia/Dhaka")
    try:
        pids = set()
        for _ in range(3):
            for conn, name, tz in ((a, "client_a", "UTC"), (b, "client_b", "Asia/Dhaka")):
                row = conn.execute("SELECT current_setting('application_name'), current_setting('TimeZone'), "
                                   "pg_backend_pid()").fetchone()
                assert row[:2] == (name, tz), f"{name} sees {row[:2]}"
                pids.add(row[2])
        assert len(pids) == 1, "pool max 1: both clients must share one server connection"
    finally:
        a.close()
        b.close()


def test_transaction_pooling_client_without_parameters_sees_defaults(pgrelay, pg):
    """A client that asked for nothing must not inherit the previous client's startup parameters."""
    default_tz = pg.sql("SHOW TimeZone", dbname="appdb")
    relay = pgrelay(pool={"max": 1}, proxy={"application_name": "pgrelay_it"})
    with relay.connect(application_name="client_a", options="-c TimeZone=Pacific/Auckland") as a:
        assert a.execute("SHOW TimeZone").fetchone() == ("Pacific/Auckland",)
        with relay.connect() as plain:
            reported = plain.info.parameter_status("TimeZone")
            row = plain.execute("SELECT current_setting('application_name'), current_setting('TimeZone')").fetchone()
    assert reported == default_tz
    assert row == ("pgrelay_it", default_tz), (
        f"a client without startup parameters sees {row} after client_a used the same server connection")


def test_set_in_transaction_pooling_is_session_state_of_the_client(pgrelay):
    """SET of a reported parameter (application_name) follows the client to other server connections."""
    relay = pgrelay(pool={"max": 2})
    with relay.connect() as a:
        a.execute("SET application_name = 'renamed'")
        with relay.connect() as b:
            b.execute("BEGIN")
            b_pid = b.execute("SELECT pg_backend_pid()").fetchone()[0]  # takes the idle server
            # a's next transaction lands on the other server connection: its name follows it
            row = a.execute("SELECT current_setting('application_name'), pg_backend_pid()").fetchone()
            assert row[1] != b_pid
            assert row[0] == "renamed", f"after SET, the client's next transaction on another server sees {row[0]!r}"
            b.execute("COMMIT")
        for _ in range(3):
            assert a.execute("SHOW application_name").fetchone() == ("renamed",)


# ------------------------------------------------------------------ min / idle_timeout / server_lifetime


def test_pool_min_opens_connections_ahead(pgrelay, pg):
    appname = f"it_min_{uuid.uuid4().hex[:6]}"
    relay = pgrelay(pool={"max": 5, "min": 3}, proxy={"application_name": appname})
    with relay.connect() as conn:  # the pool (service, user) is created at the first login
        conn.execute("SELECT 1")
        wait_for(lambda: server_conns(pg, appname) >= 3, 5, what="3 server connections (pool min)")
    time.sleep(1.5)
    assert server_conns(pg, appname) == 3


def test_idle_timeout_closes_idle_server_connections(pgrelay, pg):
    appname = f"it_idle_{uuid.uuid4().hex[:6]}"
    relay = pgrelay(pool={"max": 3, "min": 0, "idle_timeout": "1s"}, proxy={"application_name": appname})
    with relay.connect() as conn:
        conn.execute("SELECT 1")
        assert server_conns(pg, appname) == 1
        wait_for(lambda: server_conns(pg, appname) == 0, 6, what="the idle server connection to close")
        assert conn.execute("SELECT 2").fetchone() == (2,)  # a new one is opened on demand
    relay.wait_log("idle_timeout reached")


def test_server_lifetime_recycles_connections(pgrelay):
    relay = pgrelay(pool={"max": 1, "server_lifetime": "1s"})
    with relay.connect() as conn:
        pid1 = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        time.sleep(2.2)
        pid2 = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    assert pid1 != pid2, "server connection older than server_lifetime was reused"


def test_statement_timeout_sent_to_server(pgrelay):
    relay = pgrelay(pool={"statement_timeout": "500ms"})
    with relay.connect() as conn:
        assert conn.execute("SHOW statement_timeout").fetchone() == ("500ms",)
        with pytest.raises(errors.QueryCanceled):
            conn.execute("SELECT pg_sleep(3)")
        assert conn.execute("SELECT 1").fetchone() == (1,)
