"""Signals: SIGHUP reload (pool size, users, invalid file), SIGTERM graceful shutdown, SIGINT."""
import signal
import socket
import time
import uuid

import psycopg
import pytest

import pgwire
from conftest import APP_PASSWORD, psql, wait_for


def test_sighup_raises_pool_size(pgrelay):
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "1s"})
    with relay.connect() as holder:
        holder.execute("BEGIN")
        holder_pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
        # control: with max 1 a second client cannot get a server
        with relay.connect() as c:
            with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
                c.execute("SELECT 1")
        cfg = relay.cfg
        cfg["services"]["main"]["pool"]["max"] = 2
        cfg["services"]["main"]["pool"]["query_wait_timeout"] = "5s"
        relay.reload(cfg)
        assert "pool size now max 2" in relay.log()
        with relay.connect() as c:
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid != holder_pid
        # the first client's transaction went on undisturbed
        assert holder.execute("SELECT pg_backend_pid()").fetchone()[0] == holder_pid
        holder.execute("COMMIT")


def test_sighup_lowers_pool_size_without_dropping_connections(pgrelay):
    relay = pgrelay(pool={"max": 3})
    conns = [relay.connect() for _ in range(3)]
    try:
        for c in conns:
            c.execute("BEGIN")
            c.execute("SELECT 1")
        cfg = relay.cfg
        cfg["services"]["main"]["pool"]["max"] = 1
        relay.reload(cfg)
        for c in conns:  # nobody was dropped
            assert c.execute("SELECT 2").fetchone() == (2,)
            c.execute("COMMIT")
    finally:
        for c in conns:
            c.close()


def test_sighup_adds_user_and_keeps_sessions(pgrelay):
    relay = pgrelay()
    with relay.connect() as kept:
        kept.execute("BEGIN")
        kept.execute("SELECT 1")
        r = psql(relay.port, "SELECT 1", user="newbie", password="newpw", check=False)
        assert r.returncode != 0
        cfg = relay.cfg
        cfg["users"] = cfg["users"] + [{"name": "newbie", "password": "newpw"}]
        relay.reload(cfg)
        assert psql(relay.port, "SELECT current_user", user="newbie", password="newpw").stdout.strip() == "app"
        assert kept.execute("SELECT 'kept'").fetchone() == ("kept",)
        kept.execute("COMMIT")


def test_sighup_with_invalid_file_keeps_running_config(pgrelay):
    relay = pgrelay(pool={"max": 2})
    with relay.connect() as kept:
        relay.reload(text="services: [ this is not: valid\n", expect="reload failed, keeping the running configuration")
        assert kept.execute("SELECT 'still here'").fetchone() == ("still here",)
        assert psql(relay.port, "SELECT 'new client'").stdout.strip() == "new client"
        # a schema error (not a syntax error) is refused the same way
        relay.reload(text="listen: { port: 6432, nonsense: 1 }\n", expect="reload failed, keeping the running configuration")
        assert psql(relay.port, "SELECT 'still serving'").stdout.strip() == "still serving"
    assert relay.proc.poll() is None


def test_sigterm_waits_for_open_transaction(pgrelay, pg):
    relay = pgrelay(pool={"max": 2}, proxy={"shutdown_timeout": "20s"})
    t = f"sigterm_{uuid.uuid4().hex[:8]}"
    relay.psql(f"CREATE TABLE {t} (x int)")
    a = relay.connect()
    idle = relay.connect()
    idle.execute("SELECT 1")
    a.execute("BEGIN")
    a.execute(f"INSERT INTO {t} VALUES (1)")
    relay.proc.send_signal(signal.SIGTERM)
    relay.wait_log("no longer accepting connections")

    def refused():
        try:
            socket.create_connection(("127.0.0.1", relay.port), timeout=2).close()
            return False
        except OSError:
            return True

    # new connections are refused (the log line comes just before the listener closes)
    wait_for(refused, 2, what="the listening socket to close")
    with pytest.raises(psycopg.OperationalError):
        relay.connect()
    # an idle client is closed
    with pytest.raises(psycopg.OperationalError):
        idle.execute("SELECT 1")
    idle.close()
    # the open transaction finishes
    assert relay.proc.poll() is None, "pgrelay exited with a transaction still open"
    a.execute(f"INSERT INTO {t} VALUES (2)")
    a.execute("COMMIT")
    rc = relay.wait_exit(10)
    assert rc == 0, f"pgrelay did not exit 0 by itself after the last transaction (rc={rc})"
    a.close()
    assert pg.sql(f"SELECT sum(x) FROM {t}", dbname="appdb") == "3"
    pg.sql(f"DROP TABLE {t}", dbname="appdb")
    assert "all clients gone: exiting" in relay.log()


def test_sigterm_shutdown_timeout(pgrelay):
    relay = pgrelay(proxy={"shutdown_timeout": "1s"})
    a = relay.connect()
    a.execute("BEGIN")
    a.execute("SELECT 1")
    t0 = time.monotonic()
    relay.proc.send_signal(signal.SIGTERM)
    rc = relay.wait_exit(10)
    elapsed = time.monotonic() - t0
    a.close()
    assert rc == 0
    assert elapsed < 5, f"shutdown_timeout 1s, but pgrelay took {elapsed:.1f}s"
    assert "shutdown_timeout reached" in relay.log()


def test_sigint_exits_at_once(pgrelay):
    relay = pgrelay()
    a = relay.connect()
    a.execute("BEGIN")
    a.execute("SELECT 1")
    b = pgwire.RawConn("127.0.0.1", relay.port)
    b.startup("app", "appdb", APP_PASSWORD)
    half = socket.create_connection(("127.0.0.1", relay.port))  # mid-login
    t0 = time.monotonic()
    relay.proc.send_signal(signal.SIGINT)
    rc = relay.wait_exit(10)
    elapsed = time.monotonic() - t0
    assert rc == 0
    assert elapsed < 3, f"SIGINT took {elapsed:.1f}s"
    a.close()
    b.sock.close()
    half.close()
    # (the fixture checks the sanitizer output: SIGINT frees everything)


def test_sigterm_serves_queued_client_before_exit(pgrelay):
    """A client queued for the only server connection when SIGTERM arrives still gets its answer."""
    import threading

    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "15s"}, log={"level": "debug"},
                    proxy={"shutdown_timeout": "15s"})
    holder = relay.connect()
    holder.execute("BEGIN")
    holder.execute("SELECT 1")
    waiter = pgwire.RawConn("127.0.0.1", relay.port)
    waiter.startup("app", "appdb", APP_PASSWORD)
    waiter.send(pgwire.query_message("SELECT 'queued answer'"))
    relay.wait_log("waiting for a server of pool")
    relay.proc.send_signal(signal.SIGTERM)
    relay.wait_log("no longer accepting connections")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    results, errs, _ = waiter.read_results()
    assert not errs, errs[0].fields
    assert results[0][1] == [["queued answer"]]
    assert relay.wait_exit(10) == 0
    holder.close()
    waiter.sock.close()


def test_sighup_listen_change_needs_restart(pgrelay):
    from conftest import free_port

    relay = pgrelay()
    cfg = relay.cfg
    old_port = cfg["listen"]["port"]
    cfg["listen"]["port"] = free_port()
    relay.reload(cfg)
    assert "needs a restart" in relay.log()
    # still serving on the old port
    assert psql(old_port, "SELECT 'old port'").stdout.strip() == "old port"
    relay.cfg["listen"]["port"] = old_port
