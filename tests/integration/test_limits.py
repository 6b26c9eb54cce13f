"""Bounded memory for every input: whatever a client sends, pgrelay's memory stays within its
configured buffers. Each test measures pgrelay's resident memory (VmRSS) while the input arrives.

A client that never reads its replies is not read either (as PostgreSQL does): the replies pgrelay
writes itself (cache hits, Sync answered without a server, the admin console) wait in a queue
bounded by proxy.buffer_size plus one reply, so the client's own sends block in its kernel buffers.
"""
import os
import resource
import socket
import struct
import threading
import time

import psycopg
import pytest

import pgwire
from conftest import APP_PASSWORD, PW_PASSWORD

SYNC = pgwire.message("S")
ADMIN = {"users": ["app"]}
# RSS may grow by this much while a client floods pgrelay (ASan's allocator and quarantine
# included); without the limit the floods below take hundreds of MB within seconds.
RSS_GROWTH_KB = 64 * 1024
# What a client can push before it blocks: loopback's kernel buffers (a few MB each way) plus
# pgrelay's read buffer. Without the limit a flood never blocks.
MAX_ACCEPTED = 48 * 1024 * 1024


def flood(sock, payload, relay, seconds=6.0, stall=1.5, cap=400 * 1024 * 1024):
    """Sends payload over and over without reading until the socket stays blocked for `stall` s,
    `seconds` pass or `cap` bytes went out. Returns (bytes sent, peak RSS growth in kB)."""
    chunk = payload * max(1, 65536 // len(payload))
    sock.setblocking(False)
    base = relay.rss_kb()
    peak, sent, pos = 0, 0, 0
    blocked_since = None
    deadline = time.monotonic() + seconds
    last_sample = 0.0
    while time.monotonic() < deadline and sent < cap:
        now = time.monotonic()
        if now - last_sample > 0.05:
            peak = max(peak, relay.rss_kb() - base)
            last_sample = now
        try:
            n = sock.send(chunk[pos:] if pos else chunk)
        except BlockingIOError:
            if blocked_since is None:
                blocked_since = now
            elif now - blocked_since > stall:
                break
            time.sleep(0.01)
            continue
        blocked_since = None
        sent += n
        pos = (pos + n) % len(chunk)
    peak = max(peak, relay.rss_kb() - base)
    sock.setblocking(True)
    return sent, peak


def count_replies(conn, want_type, expected, timeout=120):
    """Reads until `expected` messages of want_type arrived; returns the message types seen."""
    conn.sock.settimeout(timeout)
    seen = {}
    n = 0
    buf = bytearray(conn.buf)
    conn.buf.clear()
    pos = 0
    while n < expected:
        while len(buf) - pos >= 5:
            (ln,) = struct.unpack_from("!I", buf, pos + 1)
            if len(buf) - pos < 1 + ln:
                break
            t = chr(buf[pos])
            if t == "E":
                raise AssertionError(pgwire.parse_fields(bytes(buf[pos + 5:pos + 1 + ln])))
            seen[t] = seen.get(t, 0) + 1
            if t == want_type:
                n += 1
            pos += 1 + ln
        if n >= expected:
            break
        del buf[:pos]
        pos = 0
        data = conn.sock.recv(1 << 20)
        if not data:
            raise AssertionError(f"EOF after {n} of {expected} {want_type!r} messages")
        buf += data
    return seen


def finish_partial(sock, sent, payload):
    """Completes a message the flood cut in the middle (from a thread: the socket stays blocked
    until the replies are read); returns how many whole messages went out."""
    rest = (-sent) % len(payload)
    if rest:
        threading.Thread(target=sock.sendall, args=(payload[len(payload) - rest:],), daemon=True).start()
    return (sent + rest) // len(payload)


def test_sync_flood_from_a_client_that_never_reads(pgrelay):
    """Sync is answered without a server: a client sending Syncs and never reading must be stopped
    by back-pressure, not buffered (hundreds of MB before), and still gets every ReadyForQuery."""
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=30)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    sent, growth = flood(c.sock, SYNC, relay)
    assert sent < MAX_ACCEPTED, f"pgrelay kept reading a client that never reads: {sent} bytes taken"
    assert growth < RSS_GROWTH_KB, f"RSS grew by {growth} kB"
    syncs = finish_partial(c.sock, sent, SYNC)
    seen = count_replies(c, "Z", syncs)
    assert seen == {"Z": syncs}
    results, errors, _ = c.simple_query("SELECT 41 + 1")
    assert not errors and results[0][1] == [["42"]]


@pytest.fixture
def big_row(pg):
    pg.sql("""DROP TABLE IF EXISTS flood_big;
CREATE TABLE flood_big (id int PRIMARY KEY, v text);
INSERT INTO flood_big VALUES (1, repeat('x', 50000));
GRANT SELECT ON flood_big TO app;""", dbname="appdb")
    yield


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_cached_results_to_a_client_that_never_reads(pgrelay, big_row, proto):
    """A 50 kB cached result asked for again and again by a client that never reads: each hit is
    written by pgrelay itself, without a server whose back-pressure would stop it."""
    relay = pgrelay(users=[{"name": "app", "password": APP_PASSWORD, "auth": "password"}], admin=ADMIN,
                    cache={"l1": {"max_memory": "16MB", "max_result": "1MB"},
                           "rules": [{"tables": ["flood_big"], "ttl": "5m"}]})
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=30)
    c.startup("app", "appdb", APP_PASSWORD)
    sql = "SELECT v FROM flood_big WHERE id = 1"
    results, errors, _ = c.simple_query(sql)
    assert not errors and len(results[0][1][0][0]) == 50000  # stored
    if proto == "simple":
        payload = pgwire.query_message(sql)
    else:
        payload = (pgwire.message("P", b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0)) +
                   pgwire.message("B", b"\0\0" + struct.pack("!HHH", 0, 0, 0)) +
                   pgwire.message("D", b"P\0") +
                   pgwire.message("E", b"\0" + struct.pack("!I", 0)) + SYNC)
        c.send(payload)  # stored for this protocol too
        count_replies(c, "Z", 1)
    sent, growth = flood(c.sock, payload, relay, cap=512 * 1024)
    assert growth < RSS_GROWTH_KB, f"RSS grew by {growth} kB after {sent} bytes of requests"
    batches = finish_partial(c.sock, sent, payload)
    seen = count_replies(c, "Z", batches, timeout=300)
    assert seen["D"] == batches and seen["Z"] == batches
    with relay.connect(dbname="pgrelay", cursor_factory=psycopg.ClientCursor) as a:
        hits = next(int(row[3]) for row in a.execute("SHOW CACHE").fetchall() if row[0] == "total")
    # Simple queries are all hits; an extended batch that the pause splits is sent to a server.
    assert hits >= (batches if proto == "simple" else 1000), f"only {hits} of {batches} answered by the cache"


def test_admin_console_output_to_a_client_that_never_reads(pgrelay):
    """SHOW output of the admin console is written by pgrelay itself too."""
    relay = pgrelay(users=[{"name": "app", "password": APP_PASSWORD, "auth": "password"}], admin=ADMIN)
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=30)
    c.startup("app", "pgrelay", APP_PASSWORD)
    payload = pgwire.query_message("SHOW CONFIG")
    sent, growth = flood(c.sock, payload, relay, cap=8 * 1024 * 1024)
    assert sent < MAX_ACCEPTED
    assert growth < RSS_GROWTH_KB, f"RSS grew by {growth} kB after {sent} bytes of requests"
    shows = finish_partial(c.sock, sent, payload)
    seen = count_replies(c, "Z", shows, timeout=300)
    assert seen["Z"] == shows and seen["C"] == shows


def test_pgrelay_still_serves_others_while_one_client_does_not_read(pgrelay):
    """Back-pressure on one client stops only that client."""
    relay = pgrelay()
    stuck = pgwire.RawConn("127.0.0.1", relay.port, timeout=30)
    stuck.startup("pwuser", "appdb", PW_PASSWORD)
    flood(stuck.sock, SYNC, relay, seconds=3)
    other = pgwire.RawConn("127.0.0.1", relay.port, timeout=10)
    other.startup("pwuser", "appdb", PW_PASSWORD)
    results, errors, _ = other.simple_query("SELECT 7")
    assert not errors and results[0][1] == [["7"]]
    other.close()
    stuck.sock.close()
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5):
        pass


# ---------------------------------------------------------------- before login

SSL_REQUEST = struct.pack("!II", 8, 80877103)
GSSENC_REQUEST = struct.pack("!II", 8, 80877104)


def error_then_eof(conn, timeout=5):
    """The ErrorResponse pgrelay sends before closing, then EOF (within timeout)."""
    conn.sock.settimeout(timeout)
    t, payload = conn.read_message()
    assert t == "E", f"expected an ErrorResponse, got {t!r}"
    fields = pgwire.parse_fields(payload)
    assert conn.read_until_eof(timeout) == b""
    return fields


@pytest.mark.parametrize("first,second,what", [
    (SSL_REQUEST, SSL_REQUEST, "SSLRequest"),
    (GSSENC_REQUEST, GSSENC_REQUEST, "GSSENCRequest"),
    (SSL_REQUEST + GSSENC_REQUEST, SSL_REQUEST, "SSLRequest"),
], ids=["ssl-twice", "gssenc-twice", "ssl-gssenc-ssl"])
def test_encryption_requests_are_answered_once_each(pgrelay, first, second, what):
    """As PostgreSQL: one SSLRequest and one GSSENCRequest per connection, then the startup
    packet; a client repeating them (forever, to hold a connection open for free) is closed."""
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
    c.send(first)
    answers = len(first) // 8
    for _ in range(answers):
        assert c.read_byte() == b"N"
    c.send(second)
    fields = error_then_eof(c)
    assert fields["C"] == "08P01" and what in fields["M"], fields
    # each once (declined) and then a login works
    ok = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
    ok.send(SSL_REQUEST)
    assert ok.read_byte() == b"N"
    ok.send(GSSENC_REQUEST)
    assert ok.read_byte() == b"N"
    ok.startup("pwuser", "appdb", PW_PASSWORD)
    results, errors, _ = ok.simple_query("SELECT 1")
    assert not errors and results[0][1] == [["1"]]


def test_password_message_above_64kB_is_refused_before_buffering(pgrelay):
    """An unauthenticated client announcing a 60 MB password message is closed at once (the limit
    is PostgreSQL's 65535 bytes), not given a 60 MB buffer to fill slowly."""
    relay = pgrelay()
    base = relay.rss_kb()
    clients = []
    for _ in range(20):
        c = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
        c.send(pgwire.startup_packet({"user": "pwuser", "database": "appdb"}))
        t, _ = c.read_message()
        assert t == "R"
        c.send(b"p" + struct.pack("!I", 60 * 1024 * 1024))
        clients.append(c)
    for c in clients:
        fields = error_then_eof(c)
        assert fields["C"] == "08P01" and "password message" in fields["M"], fields
    # with the body on its way: closed at once too (the unread bytes make it a reset)
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
    c.send(pgwire.startup_packet({"user": "pwuser", "database": "appdb"}))
    c.read_message()
    c.send(b"p" + struct.pack("!I", 60 * 1024 * 1024) + b"x" * 200000)
    try:
        error_then_eof(c)
    except ConnectionResetError:
        pass
    assert relay.rss_kb() - base < 32 * 1024
    # a password message of the largest accepted size is read and judged on its content
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=10)
    c.send(pgwire.startup_packet({"user": "pwuser", "database": "appdb"}))
    c.read_message()
    c.send(pgwire.message("p", b"y" * 65534 + b"\0"))
    fields = error_then_eof(c)
    assert fields["C"] == "28P01", fields


# ---------------------------------------------------------------- length words

@pytest.mark.parametrize("length", [0x80000000, 0xFFFFFFFF, 0x40000000], ids=hex)
def test_length_word_of_a_gigabyte_or_more_closes_at_once(pgrelay, length):
    """A Sync whose length word reads as negative (or 1 GB and up) is a protocol violation: 08P01
    and the connection closed at once, instead of waiting for 2 GB that never come."""
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    c.send(b"S" + struct.pack("!I", length))
    fields = error_then_eof(c)
    assert fields["C"] == "08P01", fields


def test_streamed_message_above_max_message_size_closes(pgrelay, pg):
    """CopyData streams through pgrelay without being held whole; proxy.max_message_size bounds
    it all the same."""
    pg.sql("DROP TABLE IF EXISTS copy_limit; CREATE TABLE copy_limit (v text); GRANT ALL ON copy_limit TO app;",
           dbname="appdb")
    relay = pgrelay(proxy={"buffer_size": "64kB", "max_message_size": "1MB"})
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=10)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    c.send(pgwire.query_message("COPY copy_limit FROM STDIN"))
    t, _ = c.read_message()
    assert t == "G"
    c.send(pgwire.message("d", b"a\n" * 1000))  # small ones pass
    c.send(b"d" + struct.pack("!I", 2 * 1024 * 1024 + 4))
    fields = error_then_eof(c)
    assert fields["C"] == "08P01" and "max_message_size" in fields["M"], fields
    assert pg.sql("SELECT count(*) FROM copy_limit", dbname="appdb").strip() == "0"


def fake_server(handler):
    """A TCP server on a free port whose one connection at a time is handed to handler(sock)."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)

    def loop():
        while True:
            try:
                s, _ = srv.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(s,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return srv


def test_server_ready_for_query_without_status_is_a_protocol_error(pgrelay):
    """A (hostile or broken) server whose ReadyForQuery has no body: pgrelay must not read the
    status byte past the message; the login fails with a connection error."""
    def handler(s):
        try:
            s.recv(65536)  # startup packet
            s.sendall(pgwire.message("R", struct.pack("!I", 0)) +
                      pgwire.message("K", struct.pack("!II", 1234, 5678)) +
                      b"Z" + struct.pack("!I", 4))
            time.sleep(5)
        finally:
            s.close()
    srv = fake_server(handler)
    try:
        relay = pgrelay(services={"main": {"primary": {"port": srv.getsockname()[1]},
                                           "pool": {"connect_timeout": "2s"}}})
        c = pgwire.RawConn("127.0.0.1", relay.port)
        with pytest.raises(pgwire.PgError) as ei:
            c.startup("pwuser", "appdb", PW_PASSWORD)
        assert ei.value.sqlstate.startswith("08"), ei.value.fields
        c.sock.close()
    finally:
        srv.close()


# ---------------------------------------------------------------- descriptors

def log_text(relay):
    with open(relay.log_path, errors="replace") as f:
        return f.read()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_out_of_descriptors_pauses_accepting(pgrelay):
    """With every descriptor in use, accept() fails while the listening socket stays readable:
    pgrelay pauses accepting for a moment (one log line per pause) instead of spinning, and
    accepts again once descriptors are free."""
    relay = pgrelay(start=False)
    relay.nofile = (64, 64)
    relay.start()
    assert "open files limit 64 is below" in log_text(relay)
    socks = []
    try:
        for _ in range(120):
            socks.append(socket.create_connection(("127.0.0.1", relay.port), timeout=5))
        cpu0 = cpu_seconds(relay.pid)
        time.sleep(3)
        spent = cpu_seconds(relay.pid) - cpu0
        pauses = log_text(relay).count("cannot accept clients")
        assert 1 <= pauses <= 60, f"{pauses} log lines in 3 s"
        assert spent < 1.0, f"pgrelay used {spent:.2f} s of CPU in 3 s while out of descriptors"
    finally:
        for s in socks:
            s.close()
    # descriptors free again: a login works
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=15)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    results, errors, _ = c.simple_query("SELECT 1")
    assert not errors and results[0][1] == [["1"]]


def test_open_files_soft_limit_raised_to_the_hard_limit(pgrelay):
    relay = pgrelay(start=False)
    relay.nofile = (256, 4096)
    relay.start()
    with open(f"/proc/{relay.pid}/limits") as f:
        line = next(x for x in f if x.startswith("Max open files"))
    assert line.split()[3:5] == ["4096", "4096"], line
    assert "open files limit raised from 256 to 4096" in log_text(relay)
    assert "is below" not in log_text(relay)


# ---------------------------------------------------------------- byte budgets

def parse_named(name, sql):
    return pgwire.message("P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))


def show_prepared(relay):
    with relay.connect(dbname="pgrelay", cursor_factory=psycopg.ClientCursor) as a:
        cur = a.execute("SHOW PREPARED")
        names = [d.name for d in cur.description]
        return dict(zip(names, cur.fetchone()))


@pytest.mark.parametrize("proto", ["parse", "prepare"])
def test_prepared_statements_of_one_client_are_bounded_in_bytes(pgrelay, proto):
    """proxy.max_client_prepared_memory: the named statements one client holds (Parse or SQL
    PREPARE) are bounded; beyond, 54000 with a message naming the setting, and the connection
    goes on (DEALLOCATE frees room)."""
    relay = pgrelay(proxy={"max_client_prepared_memory": "256kB"})
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=10)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    pad = "x" * 30000
    refused = None
    for i in range(20):
        sql = f"SELECT '{pad}' AS v, {i} AS i"
        if proto == "parse":
            c.send(parse_named(f"s{i}", sql) + SYNC)
            results, errors, _ = c.read_results()
        else:
            results, errors, _ = c.simple_query(f"PREPARE s{i} AS {sql}")
        if errors:
            refused = (i, errors[0])
            break
    assert refused, "20 statements of 30 kB each were all kept with a 256 kB limit"
    i, err = refused
    assert 3 <= i <= 9, i  # a Parse holds its text twice (the key and the renamed Parse)
    assert err.sqlstate == "54000" and "max_client_prepared_memory" in err.message, err.fields
    # the ones kept still work, and DEALLOCATE makes room again
    results, errors, _ = c.simple_query("EXECUTE s0")
    assert not errors and results[0][1][0][1] == "0"
    results, errors, _ = c.simple_query("DEALLOCATE s1")
    assert not errors
    results, errors, _ = c.simple_query(f"PREPARE again AS SELECT '{pad}' AS v, 99 AS i")
    assert not errors, errors
    results, errors, _ = c.simple_query("EXECUTE again")
    assert not errors and results[0][1][0][1] == "99"


def test_large_statements_do_not_stay_in_process_wide_caches(pgrelay):
    """Ten 4 MB named statements from a client that then leaves: the registry keeps at most
    16 MB of statements nobody names, and the statement-analysis cache keeps no text above
    256 kB (before, 259 MB stayed resident after ten 8 MB Parse messages)."""
    relay = pgrelay(admin=ADMIN, users=[{"name": "app", "password": APP_PASSWORD},
                                        {"name": "pwuser", "password": PW_PASSWORD, "auth": "password"}],
                    proxy={"max_message_size": "16MB", "max_client_prepared_memory": "128MB"})
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=60)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    pad = "y" * (4 * 1024 * 1024)
    for i in range(10):
        c.send(parse_named(f"big{i}", f"SELECT length('{pad}') + {i}") + SYNC)
        results, errors, _ = c.read_results()
        assert not errors, errors
    c.send(pgwire.message("B", b"\0big3\0" + struct.pack("!HHH", 0, 0, 0)) + pgwire.message("E", b"\0\0\0\0\0") + SYNC)
    results, errors, _ = c.read_results()
    assert not errors and results[0][1] == [[str(4 * 1024 * 1024 + 3)]]
    held = show_prepared(relay)
    assert held["analysis_cache_bytes"] < 64 * 1024 * 1024
    c.close()
    time.sleep(0.5)
    after = show_prepared(relay)
    assert after["unused_bytes"] <= 16 * 1024 * 1024, after
    assert after["analysis_cache_bytes"] < 1024 * 1024, after


# ---------------------------------------------------------------- idle clients

def test_idle_clients_hold_no_read_buffer(pgrelay, monkeypatch):
    """An idle client holds no read buffer (allocated when bytes arrive, freed once processed), no
    SCRAM state, failure reason or cache state (allocated only while in use), and its session
    defaults (startup_params) share its parameters' storage until one of them changes: 2,000
    logged-in idle clients cost about 2.7 kB each in the release build (3.9 kB with ASan), 4.3 kB
    (5.5 kB) before those were allocated lazily, 8 kB (10+ kB) with a read buffer each.
    ASan's quarantine would keep every freed buffer resident: it is turned off for this pgrelay."""
    monkeypatch.setenv("ASAN_OPTIONS", os.environ.get("ASAN_OPTIONS", "detect_leaks=1") +
                       ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 8192 and (hard == resource.RLIM_INFINITY or hard >= 8192):
        resource.setrlimit(resource.RLIMIT_NOFILE, (8192, hard))  # this process holds the 2,000 sockets
    relay = pgrelay(listen={"max_client_conn": 5000})
    n = 2000
    conns = []
    time.sleep(0.3)
    base = relay.rss_kb()
    try:
        for i in range(n):
            c = pgwire.RawConn("127.0.0.1", relay.port, timeout=10)
            c.startup("pwuser", "appdb", PW_PASSWORD)
            conns.append(c)
        for c in conns:
            results, errors, _ = c.simple_query("SELECT 1")
            assert not errors
        time.sleep(0.5)
        per_client = (relay.rss_kb() - base) * 1024 / n
        assert per_client < 5000, f"{per_client:.0f} bytes of RSS per idle client"
    finally:
        for c in conns:
            c.sock.close()


# ---------------------------------------------------------------- a hostile Redis

def test_redis_reply_with_a_huge_array_count_is_refused(pgrelay):
    """A Redis (hostile, or not Redis at all) answering "*292191191": hiredis would allocate the
    2.3 GB of slots at once; pgrelay refuses the reply (the connection fails, Redis counts as
    down) and keeps answering through PostgreSQL."""
    got = []

    def handler(s):
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    return
                got.append(data)
                s.sendall(b"*292191191\r\n")
        except OSError:
            return
        finally:
            s.close()
    srv = fake_server(handler)
    try:
        port = srv.getsockname()[1]
        relay = pgrelay(cache={"redis": {"nodes": [f"127.0.0.1:{port}"], "timeout": "500ms"},
                               "rules": [{"tables": ["flood_big"], "ttl": "5m"}]})
        relay.wait_log("Out of memory", timeout=10)
        assert got, "pgrelay never talked to the fake Redis"
        assert relay.rss_kb() < 512 * 1024
        c = pgwire.RawConn("127.0.0.1", relay.port, timeout=10)
        c.startup("pwuser", "appdb", PW_PASSWORD)
        results, errors, _ = c.simple_query("SELECT 6 * 7")
        assert not errors and results[0][1] == [["42"]]
    finally:
        srv.close()


def test_bind_longer_than_a_gigabyte_once_renamed_is_refused(pgrelay):
    """A named statement's Bind is rewritten with the server's name for the statement
    (pgrelay_<n>, longer than the client's "s"): a Bind just under PostgreSQL's 1 GB limit would
    pass it once rewritten. pgrelay refuses it with 54000 while it streams by (nothing is held
    whole: RSS stays flat), and the connection goes on."""
    relay = pgrelay(proxy={"max_message_size": "1GB"})
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=60)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    c.send(parse_named("s", "SELECT length($1::text)") + SYNC)
    results, errors, _ = c.read_results()
    assert not errors, errors
    length_word = 0x3FFFFFFF - 4
    value_len = length_word - 17  # 4 (length) + "\0" + "s\0" + 2 + 2 + 4 + value + 2
    head = b"B" + struct.pack("!I", length_word) + b"\0s\0" + struct.pack("!hhi", 0, 1, value_len)
    base = relay.rss_kb()
    c.send(head)
    chunk = b"x" * (16 * 1024 * 1024)
    left = value_len
    while left:
        n = min(left, len(chunk))
        c.send(chunk[:n])
        left -= n
    c.send(struct.pack("!h", 0) + pgwire.message("E", b"\0" + struct.pack("!i", 0)) + SYNC)
    grown = relay.rss_kb() - base
    results, errors, _ = c.read_results()
    assert errors and errors[0].sqlstate == "54000", errors
    assert "Bind message too long" in errors[0].message, errors[0].fields
    assert grown < RSS_GROWTH_KB, f"RSS grew by {grown} kB while a 1 GB Bind streamed by"
    c.send(pgwire.message("B", b"\0s\0" + struct.pack("!hhi", 0, 1, 3) + b"abc" + struct.pack("!h", 0))
           + pgwire.message("E", b"\0" + struct.pack("!i", 0)) + SYNC)
    results, errors, _ = c.read_results()
    assert not errors and results and results[0][1][0][0] == "3", (results, errors)
