"""Connections whose state pgrelay must track exactly: pipelined queries across transaction
boundaries, extended protocol with Flush and no Sync yet, clients that vanish while waiting, in a
transaction or in COPY, server connections killed under pgrelay (also reset in the middle of a
reply message), LISTEN/NOTIFY, large messages from the client, and services reached by Unix socket
or host name."""
import select
import socket
import struct
import threading
import time
import uuid

import psycopg
import pytest

import pgwire
from conftest import PW_PASSWORD, connect, psql, wait_for


def raw(relay, user="pwuser", password=PW_PASSWORD, dbname="appdb", timeout=10):
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=timeout)
    c.startup(user, dbname, password)
    return c


def test_pipelined_simple_queries_across_transactions(pgrelay):
    """Several Query messages in one write, crossing transaction boundaries, while another client
    competes for the only server connection: every reply arrives, in order, to the right client."""
    relay = pgrelay(pool={"max": 1})
    a, b = raw(relay), raw(relay)
    batch_a = ["SELECT 'a1'", "BEGIN", "SELECT 'a2'", "COMMIT", "SELECT 'a3'", "SELECT 'a4'"]
    batch_b = ["SELECT 'b1'", "SELECT 'b2'", "BEGIN", "SELECT 'b3'", "COMMIT"]
    for _ in range(20):
        a.send(b"".join(pgwire.query_message(q) for q in batch_a))
        b.send(b"".join(pgwire.query_message(q) for q in batch_b))
        got_a = [a.read_results() for _ in batch_a]
        got_b = [b.read_results() for _ in batch_b]
        vals_a = [r[0][0][1][0][0] for r in got_a if r[0] and r[0][0][1]]
        vals_b = [r[0][0][1][0][0] for r in got_b if r[0] and r[0][0][1]]
        assert vals_a == ["a1", "a2", "a3", "a4"]
        assert vals_b == ["b1", "b2", "b3"]
        assert [r[2] for r in got_a] == ["I", "T", "T", "I", "I", "I"]
        assert all(not r[1] for r in got_a + got_b)
    a.close()
    b.close()


def test_extended_protocol_flush_without_sync_keeps_server(pgrelay):
    """Parse/Bind/Execute/Flush with no Sync yet: the server connection stays with the client."""
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "10s"})
    c = raw(relay)
    sql = b"SELECT pg_backend_pid()\0"
    c.send(pgwire.message("P", b"\0" + sql + b"\0\0") + pgwire.message("B", b"\0\0" + b"\0\0\0\0\0\0") +
           pgwire.message("E", b"\0\0\0\0\0") + pgwire.message("H"))
    types = []
    while "C" not in types:
        t, payload = c.read_message()
        types.append(t)
        if t == "D":
            pid1 = int(pgwire._parse_datarow(payload)[0])
    assert types == ["1", "2", "D", "C"], types
    # another client must wait: the first one is in the middle of an extended-protocol exchange
    other = raw(relay)
    other.send(pgwire.query_message("SELECT 'other'"))
    other.sock.settimeout(0.7)
    with pytest.raises(socket.timeout):
        other.read_message()
    other.sock.settimeout(10)
    c.send(pgwire.message("B", b"\0\0" + b"\0\0\0\0\0\0") + pgwire.message("E", b"\0\0\0\0\0") + pgwire.message("S"))
    results, errs, tx = c.read_results()
    assert not errs and tx == "I"
    assert int(results[0][1][0][0]) == pid1, "the second Execute ran on another server connection"
    results, errs, _ = other.read_results()
    assert results[0][1] == [["other"]]
    c.close()
    other.close()


def test_waiting_client_that_disconnects_is_skipped(pgrelay):
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "10s"})
    with relay.connect() as holder:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        gone = raw(relay)
        gone.send(pgwire.query_message("SELECT 'never read'"))
        time.sleep(0.3)
        gone.sock.close()  # vanishes while queued
        waiter_result = []
        t = threading.Thread(target=lambda: waiter_result.append(
            psql(relay.port, "SELECT 'served'", check=False)))
        t.start()
        time.sleep(0.5)
        holder.execute("COMMIT")
        t.join(15)
    r = waiter_result[0]
    assert r.returncode == 0 and r.stdout.strip() == "served", r.stderr
    assert psql(relay.port, "SELECT 'again'").stdout.strip() == "again"


def test_client_killed_inside_transaction_releases_locks(pgrelay, pg):
    relay = pgrelay(pool={"max": 2})
    t = f"lock_{uuid.uuid4().hex[:8]}"
    relay.psql(f"CREATE TABLE {t} (x int)")
    c = raw(relay)
    _, errs, tx = c.simple_query(f"BEGIN; LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE")
    assert not errs and tx == "T"
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.sock.close()  # RST, no Terminate: the client is gone with its transaction open
    # the transaction must not stay open on a pooled server connection
    with connect(relay.port) as conn:
        with conn.transaction():
            conn.execute("SET LOCAL lock_timeout = '3s'")
            conn.execute(f"LOCK TABLE {t} IN ACCESS EXCLUSIVE MODE")
    relay.psql(f"DROP TABLE {t}")
    assert pg.sql("SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'") == "0"


def test_client_killed_during_copy_in(pgrelay, pg):
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "10s"})
    t = f"copykill_{uuid.uuid4().hex[:8]}"
    relay.psql(f"CREATE TABLE {t} (x int)")
    c = raw(relay)
    c.send(pgwire.query_message(f"COPY {t} FROM STDIN"))
    tp, _ = c.read_message()
    assert tp == "G"
    c.send(pgwire.message("d", b"".join(b"%d\n" % i for i in range(1000))))
    time.sleep(0.2)
    c.sock.close()  # gone in the middle of COPY FROM STDIN
    t0 = time.monotonic()
    assert psql(relay.port, f"SELECT count(*) FROM {t}").stdout.strip() == "0"
    assert time.monotonic() - t0 < 5
    relay.psql(f"DROP TABLE {t}")


def test_idle_server_connection_killed_is_not_reused(pgrelay, pg):
    relay = pgrelay(pool={"max": 1})
    with relay.connect() as conn:
        pid1 = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        pg.sql(f"SELECT pg_terminate_backend({pid1})")
        wait_for(lambda: pg.sql(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid1}") == "0", 5,
                 what="the backend to exit")
        time.sleep(0.2)
        pid2 = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        assert pid2 != pid1


def test_server_killed_mid_query_reports_error_and_pool_recovers(pgrelay, pg):
    relay = pgrelay(pool={"max": 1})
    conn = relay.connect()
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
    killer = threading.Timer(0.5, lambda: pg.sql(f"SELECT pg_terminate_backend({pid})"))
    killer.start()
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT pg_sleep(10)")
    killer.join()
    conn.close()
    with relay.connect() as c2:
        assert c2.execute("SELECT 'recovered'").fetchone() == ("recovered",)


class CuttingForwarder:
    """A TCP forwarder between pgrelay and PostgreSQL. On a connection whose client sent a text
    containing MARKER, it forwards half of the next DataRow the server sends, then resets the
    connection towards pgrelay (RST), as a network fault in the middle of a large result would."""

    MARKER = b"cut_here_marker"

    def __init__(self, target_port):
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.cuts = 0
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                down, _ = self.listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()

    def _pump(self, down, up):
        """One thread per connection (a socket closed while another thread reads it sends no RST)."""
        armed = False
        pending = b""  # server bytes held while armed, forwarded up to message boundaries
        try:
            while True:
                readable, _, _ = select.select([down, up], [], [], 30)
                if not readable:
                    break
                if down in readable:
                    data = down.recv(65536)
                    if not data:
                        break
                    armed = armed or self.MARKER in data
                    up.sendall(data)
                if up in readable:
                    data = up.recv(65536)
                    if not data:
                        break
                    if not armed:
                        down.sendall(data)
                        continue
                    pending += data
                    pos = 0
                    while len(pending) - pos >= 5:
                        kind, length = pending[pos:pos + 1], struct.unpack("!I", pending[pos + 1:pos + 5])[0]
                        if len(pending) - pos < 1 + length:
                            break
                        if kind == b"D":  # half of it, then a reset
                            down.sendall(pending[:pos + 1 + length // 2])
                            self.cuts += 1
                            down.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                            return
                        pos += 1 + length
                    down.sendall(pending[:pos])
                    pending = pending[pos:]
        except OSError:
            pass
        finally:
            down.close()
            up.close()

    def close(self):
        self.stopping = True
        self.listener.close()


def test_server_reset_in_the_middle_of_a_reply_message_closes_the_client_cleanly(pgrelay, pg):
    """Half of a DataRow has reached the client when the server connection is reset: pgrelay must
    not send an ErrorResponse then (the client would read its bytes as the rest of the row: "lost
    synchronization with server", or a wrong row), but close the client's connection."""
    fwd = CuttingForwarder(pg.port)
    try:
        relay = pgrelay(services={"main": {"primary": {"port": fwd.port}}}, pool={"max": 2})
        sql = "SELECT g, repeat('x', 3000) AS cut_here_marker FROM generate_series(1, 40) g"
        # psycopg: the error is the connection's end, not a protocol desynchronization
        conn = relay.connect()
        with pytest.raises(psycopg.OperationalError) as err:
            conn.execute(sql).fetchall()
        assert "lost synchronization" not in str(err.value), str(err.value)
        assert "got message type" not in str(err.value), str(err.value)
        conn.close()
        # the raw stream: whole messages, then half a DataRow, then the end (no ErrorResponse bytes
        # after the half row)
        c = raw(relay)
        c.sock.sendall(pgwire.query_message(sql))
        data = b""
        c.sock.settimeout(10)
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                break
            data += chunk
        pos, last = 0, None
        while len(data) - pos >= 5:
            length = struct.unpack("!I", data[pos + 1:pos + 5])[0]
            last = (data[pos:pos + 1], length, len(data) - pos - 1)
            pos += 1 + length
        assert last is not None and last[0] == b"D", last
        assert last[2] < last[1], "the last DataRow should be cut short, with nothing after it"
        assert b"server connection lost" not in data
        assert fwd.cuts == 2
        # pgrelay goes on
        with relay.connect() as c2:
            assert c2.execute("SELECT 'still here'").fetchone() == ("still here",)
        relay.wait_log("in the middle of a message to the client")
    finally:
        fwd.close()


def test_listen_notify_in_session_pooling(pgrelay):
    relay = pgrelay(pool={"max": 2})
    listener = raw(relay, dbname="sessdb")
    _, errs, _ = listener.simple_query("LISTEN it_channel")
    assert not errs
    with relay.connect() as n:
        n.execute("NOTIFY it_channel, 'hello'")
    listener.sock.settimeout(5)
    t, payload = listener.read_message()
    assert t == "A", (t, payload)
    assert b"it_channel\0hello\0" in payload
    listener.close()


def test_large_query_message_from_client(pgrelay):
    relay = pgrelay(pool={"max": 1})
    big = "y" * (24 * 1024 * 1024)
    with relay.connect() as conn:
        assert conn.execute("SELECT length(%s::text)", (big,)).fetchone() == (len(big),)
        t = f"big_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {t} (v text)")
        conn.execute(f"INSERT INTO {t} VALUES ('{big}')")  # simple protocol, 24 MB Query
        assert conn.execute(f"SELECT length(v) FROM {t}").fetchone() == (len(big),)
        conn.execute(f"DROP TABLE {t}")


def test_service_over_unix_socket(pgrelay, pg):
    relay = pgrelay(services={"main": {"primary": {"host": pg.base}}})
    assert relay.psql("SELECT current_user, inet_server_addr() IS NULL").stdout.strip() == "app|t"


def test_service_by_host_name_localhost(pgrelay, pg):
    """PostgreSQL listens on 127.0.0.1 only; "localhost" may also resolve to ::1 first."""
    relay = pgrelay(services={"main": {"primary": {"host": "localhost"}}})
    r = relay.psql("SELECT 'via localhost'", check=False)
    assert r.returncode == 0, r.stderr + "\n" + relay.log_tail(10)
    assert r.stdout.strip() == "via localhost"


def test_many_concurrent_clients_small_pool(pgrelay):
    relay = pgrelay(pool={"max": 3, "query_wait_timeout": "30s"})
    errors_seen, done = [], []

    def worker(i):
        try:
            with relay.connect(application_name=f"w{i}") as c:
                for j in range(20):
                    with c.transaction():
                        v = c.execute("SELECT %s::int * 2, current_setting('application_name')", (j,)).fetchone()
                    assert v == (j * 2, f"w{i}"), v
            done.append(i)
        except Exception as e:  # noqa: BLE001
            errors_seen.append(repr(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors_seen, errors_seen[:3]
    assert len(done) == 40


# ------------------------------------------------------------------ COPY and empty queries in the extended protocol


def _ext(sql):
    """Parse/Bind/Describe/Execute/Sync of sql (unnamed statement and portal, no parameters), as
    libpq's PQexecParams sends it."""
    return (pgwire.message("P", b"\0" + sql.encode() + b"\0\0\0") + pgwire.message("B", b"\0\0\0\0\0\0\0\0") +
            pgwire.message("D", b"P\0") + pgwire.message("E", b"\0\0\0\0\0") + pgwire.message("S"))


def test_copy_in_through_extended_protocol(pgrelay, pg):
    """COPY FROM STDIN started by Parse/Bind/Execute/Sync: the server ignores that Sync during the
    copy; after CopyDone the client sends another Sync (libpq does). Exactly one ReadyForQuery."""
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "10s"})
    t = f"extcopy_{uuid.uuid4().hex[:8]}"
    relay.psql(f"CREATE TABLE {t} (x int)")
    c = raw(relay)
    c.send(_ext(f"COPY {t} FROM STDIN"))
    seen = []
    while True:
        tp, _ = c.read_message()
        seen.append(tp)
        if tp == "G":
            break
        assert tp in ("1", "2", "n"), seen
    c.send(pgwire.message("d", b"".join(b"%d\n" % i for i in range(1, 1001))) + pgwire.message("c") +
           pgwire.message("S"))
    results, errs, tx = c.read_results()
    assert not errs, errs[0].fields
    assert results == [("COPY 1000", [])] and tx == "I"
    # the connection and the pool go on: another client gets the only server connection
    assert psql(relay.port, f"SELECT sum(x) FROM {t}").stdout.strip() == str(sum(range(1, 1001)))
    results, errs, tx = c.simple_query("SELECT 'after extended copy'")
    assert not errs and results[0][1] == [["after extended copy"]]
    c.close()
    relay.psql(f"DROP TABLE {t}")


def test_copy_out_through_extended_protocol(pgrelay):
    relay = pgrelay(pool={"max": 1, "query_wait_timeout": "10s"})
    c = raw(relay)
    c.send(_ext("COPY (SELECT i FROM generate_series(1, 5000) i) TO STDOUT"))
    data, types = b"", []
    while True:
        tp, payload = c.read_message()
        types.append(tp)
        if tp == "d":
            data += payload
        elif tp == "E":
            raise AssertionError(pgwire.parse_fields(payload))
        elif tp == "Z":
            break
    assert data == b"".join(b"%d\n" % i for i in range(1, 5001))
    assert types[-3:] == ["c", "C", "Z"], types[-5:]
    assert psql(relay.port, "SELECT 'pool free'").stdout.strip() == "pool free"
    c.close()


def test_empty_query_string(pgrelay):
    relay = pgrelay(pool={"max": 1})
    c = raw(relay)
    results, errs, tx = c.simple_query("")
    assert results == [("", [])] and not errs and tx == "I"  # EmptyQueryResponse
    results, errs, tx = c.simple_query(";;")
    assert not errs and tx == "I"
    c.send(_ext(""))
    results, errs, tx = c.read_results()
    assert not errs and tx == "I"
    assert psql(relay.port, "SELECT 'pool free'").stdout.strip() == "pool free"
    c.close()


def test_transaction_pooling_options_do_not_leak_to_next_client(pgrelay, pg):
    """Startup options that PostgreSQL does not report back (work_mem, search_path) are per client
    too: a client that did not ask for them gets the server's defaults, not the previous client's."""
    default_wm = pg.sql("SHOW work_mem", dbname="appdb")
    default_sp = pg.sql("SHOW search_path", dbname="appdb")
    relay = pgrelay(pool={"max": 1})
    with relay.connect(options="-c work_mem=7777kB -c search_path=pg_catalog") as a:
        assert a.execute("SHOW work_mem").fetchone() == ("7777kB",)
        with relay.connect() as plain:
            row = plain.execute("SELECT current_setting('work_mem'), current_setting('search_path')").fetchone()
        assert a.execute("SHOW work_mem").fetchone() == ("7777kB",)
    assert row == (default_wm, default_sp), (
        f"a client without startup options sees {row} after another client's options on the same server connection")


# ------------------------------------------------------------------ unreachable servers


def test_server_refusing_connections_gives_clear_error(pgrelay):
    from conftest import free_port
    dead = free_port()  # nothing listens there
    relay = pgrelay(services={"main": {"primary": {"port": dead}, "pool": {"connect_timeout": "2s"}}})
    t0 = time.monotonic()
    r = relay.psql("SELECT 1", check=False)
    elapsed = time.monotonic() - t0
    assert r.returncode != 0
    assert "could not connect" in r.stderr, r.stderr
    assert elapsed < 5, f"the client waited {elapsed:.1f}s for a server that refuses connections"
    # raw client: a FATAL error with an SQLSTATE of class 08 (connection exception)
    c = pgwire.RawConn("127.0.0.1", relay.port)
    with pytest.raises(pgwire.PgError) as ei:
        c.startup("pwuser", "appdb", PW_PASSWORD)
    assert ei.value.sqlstate.startswith("08"), ei.value.fields
    c.sock.close()


def test_server_not_answering_times_out_after_connect_timeout(pgrelay):
    """A server that accepts TCP but never answers the startup packet: connect_timeout applies, and a
    client that gives up while waiting for its login does not upset pgrelay."""
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)  # never accept()ed: the kernel completes handshakes, nobody answers
    try:
        relay = pgrelay(services={"main": {"primary": {"port": hole.getsockname()[1]},
                                           "pool": {"connect_timeout": "1500ms"}}})
        quitter = pgwire.RawConn("127.0.0.1", relay.port)
        quitter.send(pgwire.startup_packet({"user": "pwuser", "database": "appdb"}))
        t, _ = quitter.read_message()  # AuthenticationCleartextPassword
        quitter.send(pgwire.message("p", PW_PASSWORD.encode() + b"\0"))
        time.sleep(0.3)
        quitter.sock.close()  # gives up while pgrelay waits for the server
        t0 = time.monotonic()
        c = pgwire.RawConn("127.0.0.1", relay.port)
        with pytest.raises(pgwire.PgError) as ei:
            c.startup("pwuser", "appdb", PW_PASSWORD)
        elapsed = time.monotonic() - t0
        c.sock.close()
        assert ei.value.sqlstate.startswith("08"), ei.value.fields
        assert "connect_timeout" in ei.value.message or "could not connect" in ei.value.message, ei.value.fields
        assert elapsed < 5, f"error after {elapsed:.1f}s with connect_timeout 1.5s"
    finally:
        hole.close()


def test_reset_all_keeps_startup_options_like_postgresql(pgrelay, pg):
    """On PostgreSQL itself, RESET ALL / DISCARD ALL return to the values of the startup packet
    (they are the session defaults). Through pgrelay a client must see the same."""
    opts = "-c work_mem=7777kB"
    with psycopg.connect(host=pg.base, port=pg.port, user="postgres", dbname="appdb", autocommit=True,
                         options=opts, application_name="direct_a") as direct:
        direct.execute("RESET ALL")
        expected = direct.execute("SELECT current_setting('work_mem'), current_setting('application_name')").fetchone()
    assert expected == ("7777kB", "direct_a")
    relay = pgrelay(pool={"max": 1})
    with relay.connect(options=opts, application_name="direct_a") as a:
        a.execute("RESET ALL")
        got = a.execute("SELECT current_setting('work_mem'), current_setting('application_name')").fetchone()
        assert got == expected, f"after RESET ALL through pgrelay: {got}; on PostgreSQL: {expected}"
        a.execute("DISCARD ALL")
        got = a.execute("SELECT current_setting('work_mem'), current_setting('application_name')").fetchone()
        assert got == expected, f"after DISCARD ALL through pgrelay: {got}; on PostgreSQL: {expected}"


def test_named_statement_parse_describe_close_in_session_pooling(pgrelay):
    relay = pgrelay(pool={"max": 1})
    c = raw(relay, dbname="sessdb")
    # Parse a named statement with one int4 parameter, Describe it, Sync
    c.send(pgwire.message("P", b"s1\0SELECT $1::int4 + 1\0" + struct.pack("!HI", 1, 23)) +
           pgwire.message("D", b"Ss1\0") + pgwire.message("S"))
    types = []
    while True:
        t, _ = c.read_message()
        types.append(t)
        if t == "Z":
            break
    assert types == ["1", "t", "T", "Z"], types
    for v in (1, 41):
        c.send(pgwire.message("B", b"\0s1\0" + struct.pack("!HH", 0, 1) + struct.pack("!I", len(str(v))) +
                              str(v).encode() + struct.pack("!H", 0)) +
               pgwire.message("E", b"\0\0\0\0\0") + pgwire.message("S"))
        results, errs, _ = c.read_results()
        assert not errs and results[0][1] == [[str(v + 1)]]
    c.send(pgwire.message("C", b"Ss1\0") + pgwire.message("S"))
    t, _ = c.read_message()
    assert t == "3"  # CloseComplete
    assert c.read_message()[0] == "Z"
    c.send(pgwire.message("B", b"\0s1\0\0\0\0\0\0\0") + pgwire.message("E", b"\0\0\0\0\0") + pgwire.message("S"))
    _, errs, tx = c.read_results()
    assert errs and errs[0].sqlstate == "26000" and tx == "I"
    c.close()
