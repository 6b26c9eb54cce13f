"""The WAL listener (src/wal.c) against a real PostgreSQL 15 with wal_level = logical (pg_logical),
through its test driver build/wal_probe (next to PGRELAY_BIN, or WAL_PROBE=path).

Each test uses its own replication slot (dropped at teardown); writes are made as the superuser,
i.e. not through pgrelay, which is exactly what the listener is for.
"""
import os
import queue
import re
import signal
import socket
import statistics
import struct
import subprocess
import threading
import time

import pytest

from conftest import SANITIZER_PATTERNS, pgrelay_bin, sanitizer_env, wait_for
from wal_fixtures import WAL_PASSWORD, WAL_USER

SCHEMA_SQL = r'''
CREATE TABLE t1 (id int PRIMARY KEY, v text);
CREATE SCHEMA s2;
CREATE TABLE s2.t2 (id int PRIMARY KEY, v text);
CREATE TABLE marker (id serial PRIMARY KEY, note text);
CREATE TABLE nokey (v text);
CREATE TABLE src (id int PRIMARY KEY);
CREATE TABLE audit (src_id int, at timestamptz DEFAULT now());
CREATE FUNCTION src_audit() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN INSERT INTO audit (src_id) VALUES (NEW.id); RETURN NEW; END$$;
CREATE TRIGGER src_audit AFTER INSERT ON src FOR EACH ROW EXECUTE FUNCTION src_audit();
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."T" (id int);
CREATE TABLE "My Schema"."we""ird.na, me: INSERT: x" (id int);
CREATE TABLE public."user" (id int);
CREATE SCHEMA "Схема.1";
CREATE TABLE "Схема.1"."Ünï ""q""" (id int);
CREATE TABLE rk (id int PRIMARY KEY, v text);
CREATE TABLE rkf (id uuid PRIMARY KEY, v text);
ALTER TABLE rkf REPLICA IDENTITY FULL;
'''

LINE_NAME = re.compile(r'((?:"(?:[^"]|"")*"|[^ ."]+))\.((?:"(?:[^"]|"")*"|[^ ."]+))')


def unquote(part):
    return part[1:-1].replace('""', '"') if part.startswith('"') else part


def parse_commit(line):
    """'COMMIT 0/1A2B s.t "A B"."C"' -> (lsn int, [(schema, name), ...])."""
    parts = line.split(" ", 2)
    assert parts[0] == "COMMIT", line
    hi, lo = parts[1].split("/")
    rest = parts[2] if len(parts) > 2 else ""
    names = [(unquote(m.group(1)), unquote(m.group(2))) for m in LINE_NAME.finditer(rest)]
    assert " ".join(f"{a}.{b}" for a, b in [(m.group(1), m.group(2)) for m in LINE_NAME.finditer(rest)]) == rest, line
    return (int(hi, 16) << 32) | int(lo, 16), names


def lsn_int(text):
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def probe_bin():
    return os.environ.get("WAL_PROBE") or os.path.join(os.path.dirname(pgrelay_bin()), "wal_probe")


class Probe:
    """One wal_probe process: stdout lines are collected with their arrival time by a thread."""

    def __init__(self, folder, conninfo, slot, env=None):
        self.slot = slot
        self.err_path = os.path.join(folder, f"wal_probe.{slot}.{time.monotonic_ns()}.stderr")
        self.errf = open(self.err_path, "wb")
        e = sanitizer_env()
        e.update(env or {})
        self.proc = subprocess.Popen([probe_bin(), conninfo, slot, "main"], stdout=subprocess.PIPE,
                                     stderr=self.errf, stdin=subprocess.DEVNULL, env=e)
        self.lines = queue.Queue()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        self.returncode = None

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put((time.monotonic(), raw.decode("utf-8").rstrip("\n")))
        self.lines.put((time.monotonic(), None))

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def next(self, timeout=10, prefix=None):
        """(arrival time, line) of the next line (starting with prefix, others skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line from wal_probe within {timeout}s; stderr:\n{self.stderr()[-3000:]}")
            try:
                t, line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"wal_probe exited ({self.proc.wait()}); stderr:\n{self.stderr()[-3000:]}")
            if prefix is None or line.startswith(prefix):
                return t, line

    def next_commit(self, timeout=10):
        t, line = self.next(timeout, "COMMIT ")
        lsn, names = parse_commit(line)
        return t, lsn, names

    def no_line(self, wait=0.5):
        try:
            t, line = self.lines.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected line from wal_probe: {line!r}")

    def stats(self):
        self.proc.send_signal(signal.SIGUSR1)
        _, line = self.next(5, "STATS ")
        return {k: v for k, v in (kv.split("=") for kv in line.split()[1:])}

    def wait_streaming(self, count=1, timeout=20):
        wait_for(lambda: len(re.findall(r"streaming (changes|again) from slot", self.stderr())) >= count, timeout,
                 what=f"wal_probe streaming ({self.slot})")

    def stop(self, sig=signal.SIGTERM, timeout=15):
        """Stops the probe; returns a list of problems (empty: exit 0, no sanitizer report)."""
        problems = []
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"wal_probe ({self.slot}) did not exit within {timeout}s")
        self.returncode = self.proc.returncode
        self.thread.join(5)
        self.errf.close()
        if self.returncode != 0:
            problems.append(f"wal_probe ({self.slot}) exited with {self.returncode}")
        err = self.stderr()
        bad = [ln for ln in err.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
        if bad:
            problems.append("sanitizer report from wal_probe:\n" + "\n".join(bad[:20]))
        if problems:
            problems.append(f"--- {self.err_path} ---\n{err[-4000:]}")
        return problems


@pytest.fixture(scope="module")
def walpg(pg_logical):
    pg_logical.sql(SCHEMA_SQL, dbname="appdb")
    return pg_logical


def conninfo(pg, host="127.0.0.1", extra=""):
    return f"host={host} port={pg.port} dbname=appdb user={WAL_USER} password={WAL_PASSWORD} {extra}".strip()


@pytest.fixture
def probes(walpg, workdir, request):
    """Factory: probes(slot=None, host=..., env=..., wait=True) starts a wal_probe on a slot (default:
    one named after the test) and waits until it streams. Teardown: every probe must exit 0 without
    sanitizer reports; the test's slots are dropped."""
    started, slots = [], set()

    def start(slot=None, *, host="127.0.0.1", extra="", env=None, wait=True, info=None):
        slot = slot or re.sub(r"[^a-z0-9_]", "_", ("w_" + request.node.name).lower())[:60]
        slots.add(slot)
        p = Probe(workdir, info or conninfo(walpg, host, extra), slot, env)
        started.append(p)
        if wait:
            p.wait_streaming()
        return p

    yield start
    problems = []
    for p in started:
        problems += p.stop()
    for slot in slots:
        def inactive():
            return walpg.sql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active") == "0"
        wait_for(inactive, 10, what=f"slot {slot} inactive")
        walpg.sql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'")
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture
def db(walpg):
    conn = walpg.connect("appdb")
    yield conn
    conn.close()


def current_lsn(db):
    return lsn_int(db.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()[0])


def commit_marker(db, note):
    db.execute("INSERT INTO marker (note) VALUES (%s)", (note,))


def tables(names):
    return sorted(names)


# ---------------------------------------------------------------- what is reported


def test_two_tables_all_operations(probes, db):
    p = probes(host="localhost")  # a host name: resolved with evdns (/etc/hosts)
    assert p.next(5)[1].startswith("RESET "), "a newly created slot is announced as 'invalidate everything'"
    db.execute("TRUNCATE t1, s2.t2")  # before this test's data; reported too (both tables, one statement)
    assert tables(p.next_commit()[2]) == [("public", "t1"), ("s2", "t2")]

    before = current_lsn(db)
    with db.transaction():
        db.execute("INSERT INTO t1 VALUES (1, 'a'), (2, 'b')")
        db.execute("INSERT INTO s2.t2 VALUES (1, 'a')")
        db.execute("UPDATE t1 SET v = 'c' WHERE id = 1")
        db.execute("UPDATE s2.t2 SET v = 'c'")
        db.execute("DELETE FROM t1 WHERE id = 2")
        db.execute("TRUNCATE s2.t2")
    after = current_lsn(db)
    _, lsn, names = p.next_commit()
    assert names == [("public", "t1"), ("s2", "t2")], "distinct tables, in first-seen order"
    assert before < lsn <= after, "the commit's end LSN"

    # each operation alone, on one table
    db.execute("INSERT INTO s2.t2 VALUES (5, 'x')")
    db.execute("UPDATE s2.t2 SET v = 'y' WHERE id = 5")
    db.execute("DELETE FROM s2.t2 WHERE id = 5")
    db.execute("TRUNCATE t1")
    db.execute("INSERT INTO nokey VALUES ('no primary key')")
    db.execute("UPDATE nokey SET v = 'still none'")
    db.execute("DELETE FROM nokey")
    expected = [[("s2", "t2")]] * 3 + [[("public", "t1")]] + [[("public", "nokey")]] * 3
    seen = [p.next_commit()[2] for _ in expected]
    assert seen == expected
    # empty transactions and DDL-only ones are skipped (skip-empty-xacts)
    db.execute("UPDATE t1 SET v = 'none' WHERE id = -1")
    db.execute("CREATE TABLE ddl_only (id int); DROP TABLE ddl_only")
    commit_marker(db, "end")
    assert p.next_commit()[2] == [("public", "marker")]
    st = p.stats()
    assert st["connected"] == "1" and st["reconnects"] == "0" and st["resets"] == "1"
    assert int(st["transactions"]) == 10 and int(st["tables"]) == 12


def test_row_keys_from_real_changes(probes, db):
    """The key column's values, read from PostgreSQL's own test_decoding lines: INSERT's new row,
    DELETE's identity, an UPDATE's old and new row when the old row is printed (REPLICA IDENTITY
    FULL, or a changed primary key), and "not known" for everything else."""
    p = probes(env={"WAL_PROBE_KEY": "id"})

    def keys():
        out = {}
        while True:
            _, line = p.next(10)
            if line.startswith("COMMIT "):
                return out
            if line.startswith("KEYS "):
                name, values = line[5:].rsplit(" ", 1)
                out[name] = values

    assert p.next(5)[1].startswith("RESET ")
    db.execute("INSERT INTO rk VALUES (1, 'a'), (2, 'it''s')")
    assert keys() == {"public.rk": "1|2"}
    db.execute("UPDATE rk SET v = 'c' WHERE id = 1")
    assert keys() == {"public.rk": "?"}, "default identity: the old row is not printed"
    db.execute("UPDATE rk SET id = 3 WHERE id = 2")
    assert keys() == {"public.rk": "2|3"}, "a changed primary key prints the old one"
    db.execute("DELETE FROM rk WHERE id = 3")
    assert keys() == {"public.rk": "3"}
    u1, u2 = "0f0e0d0c-0b0a-4908-8706-050403020100", "1f0e0d0c-0b0a-4908-8706-050403020100"
    db.execute(f"INSERT INTO rkf VALUES ('{u1}', 'a')")
    assert keys() == {"public.rkf": u1}
    db.execute(f"UPDATE rkf SET v = 'z' WHERE id = '{u1}'")
    assert keys() == {"public.rkf": u1}, "REPLICA IDENTITY FULL prints the old row at every UPDATE"
    with db.transaction():
        db.execute(f"UPDATE rkf SET id = '{u2}' WHERE id = '{u1}'")
        db.execute("INSERT INTO rk VALUES (7, 'x')")
    assert keys() == {"public.rkf": f"{u1}|{u2}", "public.rk": "7"}
    db.execute("INSERT INTO rk SELECT g, 'many' FROM generate_series(100, 120) g")
    assert keys() == {"public.rk": "?"}, "more rows than are kept"
    db.execute("INSERT INTO nokey VALUES ('no id column')")
    assert keys() == {"public.nokey": "?"}
    db.execute("TRUNCATE rk, rkf")
    assert keys() == {"public.rk": "?", "public.rkf": "?"}


def test_trigger_writes_are_reported(probes, db):
    p = probes()
    db.execute("INSERT INTO src VALUES (1)")
    assert tables(p.next_commit()[2]) == [("public", "audit"), ("public", "src")]


def test_rolled_back_writes_report_nothing(probes, db):
    p = probes()
    with db.transaction(force_rollback=True):
        db.execute("INSERT INTO t1 VALUES (100, 'rolled back')")
        db.execute("INSERT INTO s2.t2 VALUES (100, 'rolled back')")
    # a rolled-back subtransaction inside a committed one: only the rest is reported
    with db.transaction():
        commit_marker(db, "kept")
        db.execute("SAVEPOINT a")
        db.execute("INSERT INTO s2.t2 VALUES (101, 'rolled back')")
        db.execute("ROLLBACK TO SAVEPOINT a")
    assert p.next_commit()[2] == [("public", "marker")]
    p.no_line(1.0)
    assert db.execute("SELECT count(*) FROM t1 WHERE id = 100").fetchone()[0] == 0


def test_quoted_names(probes, db):
    p = probes()
    with db.transaction():
        db.execute('INSERT INTO "My Schema"."T" VALUES (1)')
        db.execute('INSERT INTO "My Schema"."we""ird.na, me: INSERT: x" VALUES (1)')
        db.execute('INSERT INTO public."user" VALUES (1)')
        db.execute('INSERT INTO "Схема.1"."Ünï ""q""" VALUES (1)')
    assert tables(p.next_commit()[2]) == tables([("My Schema", "T"), ("My Schema", 'we"ird.na, me: INSERT: x'),
                                                 ("public", "user"), ("Схема.1", 'Ünï "q"')])
    db.execute('TRUNCATE "My Schema"."T", "Схема.1"."Ünï ""q""", "My Schema"."we""ird.na, me: INSERT: x"')
    assert tables(p.next_commit()[2]) == tables([("My Schema", "T"), ("Схема.1", 'Ünï "q"'),
                                                 ("My Schema", 'we"ird.na, me: INSERT: x')])
    # a value that looks like a change line changes nothing
    db.execute("""INSERT INTO t1 VALUES (7, 'x'': INSERT:, table evil.t: DELETE: "a".b')""")
    assert p.next_commit()[2] == [("public", "t1")]


# ---------------------------------------------------------------- position, reconnects, shutdown


def slot_row(walpg, slot):
    r = walpg.sql(f"SELECT active, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'")
    active, lsn = r.split("|")
    return active == "t", lsn_int(lsn)


def test_confirmed_flush_lsn_advances(probes, db, walpg):
    p = probes()
    _, start = slot_row(walpg, p.slot)
    db.execute("INSERT INTO t1 VALUES (200, 'x') ON CONFLICT (id) DO UPDATE SET v = 'x'")
    _, lsn, _ = p.next_commit()
    assert lsn > start
    wait_for(lambda: slot_row(walpg, p.slot)[1] >= lsn, 5, what="confirmed_flush_lsn to reach the commit")
    # WAL that decodes to nothing for this slot (another database) moves it too, through keepalives
    walpg.sql("CREATE TABLE IF NOT EXISTS other_db_table (id int); INSERT INTO other_db_table VALUES (1)",
              dbname="postgres")
    target = lsn_int(walpg.sql("SELECT pg_current_wal_insert_lsn()", dbname="postgres"))
    wait_for(lambda: slot_row(walpg, p.slot)[1] >= target, 15, what="confirmed_flush_lsn past other WAL")
    p.no_line(0.3)
    assert lsn_int(p.stats()["last_lsn"]) >= target


def test_terminated_walsender_reconnects_and_loses_nothing(probes, db, walpg):
    p = probes(host="localhost")
    db.execute("INSERT INTO t1 VALUES (300, 'before') ON CONFLICT (id) DO UPDATE SET v = 'before'")
    p.next_commit()
    walpg.sql(f"ALTER ROLE {WAL_USER} NOLOGIN")  # keeps it out while we write
    try:
        pid = walpg.sql(f"SELECT active_pid FROM pg_replication_slots WHERE slot_name = '{p.slot}'")
        assert walpg.sql(f"SELECT pg_terminate_backend({pid})") == "t"
        db.execute("INSERT INTO s2.t2 VALUES (300, 'while down') ON CONFLICT (id) DO UPDATE SET v = 'down'")
        with db.transaction():
            db.execute("UPDATE t1 SET v = 'while down' WHERE id = 300")
            db.execute('INSERT INTO "My Schema"."T" VALUES (300)')
        wait_for(lambda: int(p.stats()["failures"]) >= 3, 10, 0.2, what="several failed reconnection attempts")
        assert p.stats()["connected"] == "0"
    finally:
        walpg.sql(f"ALTER ROLE {WAL_USER} LOGIN")
    commit_marker(db, "after")
    # at least once: each transaction arrives (re-sent ones may come first)
    want = [[("s2", "t2")], [("public", "t1"), ("My Schema", "T")], [("public", "marker")]]
    got = []
    while not got or got[-1] != [("public", "marker")]:
        got.append(p.next_commit(15)[2])
    assert [g for g in got if g in want] == want, got
    p.wait_streaming(2)
    st = p.stats()
    assert st["connected"] == "1" and st["reconnects"] == "1"
    err = p.stderr()
    assert len(re.findall(r"WARNING wal main: ", err)) == 1, "the outage is logged once:\n" + err
    assert "streaming again from slot" in err


def test_existing_slot_resumes_where_it_stopped(probes, db, walpg):
    p = probes()
    assert p.next(5)[1].startswith("RESET ")
    db.execute("INSERT INTO t1 VALUES (400, 'a') ON CONFLICT (id) DO UPDATE SET v = 'a'")
    p.next_commit()
    assert p.stop() == []
    wait_for(lambda: not slot_row(walpg, p.slot)[0], 10, what="slot inactive")
    db.execute("INSERT INTO s2.t2 VALUES (400, 'no listener') ON CONFLICT (id) DO UPDATE SET v = 'nl'")
    commit_marker(db, "no listener")
    q = probes(p.slot)
    assert q.next_commit()[2] == [("s2", "t2")], "the slot existed (no RESET) and kept the position"
    assert q.next_commit()[2] == [("public", "marker")]
    assert q.stats()["resets"] == "0"


def test_free_inside_callback(probes, db):
    p = probes(env={"WAL_PROBE_FREE_AFTER": "1"})
    commit_marker(db, "free")
    p.next_commit()
    assert p.next(5)[1] == "FREED"
    assert p.proc.wait(10) == 0


def test_unresponsive_server_never_blocks_the_loop(probes):
    """A server that accepts TCP and never answers: the connect timeout fails the attempt, the loop
    keeps answering (SIGUSR1 -> STATS at once), and the outage is logged once."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1]
    try:
        p = probes("w_silent", info=f"host=127.0.0.1 port={port} dbname=appdb user=x password=y connect_timeout=1",
                   wait=False)
        wait_for(lambda: "WARNING" in p.stderr(), 5, what="the first attempt to time out")  # the loop runs
        worst = 0.0
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            st = p.stats()
            worst = max(worst, time.monotonic() - t0)
            time.sleep(0.1)
        assert worst < 0.5, f"STATS took {worst:.3f}s: the loop was blocked"
        assert st["connected"] == "0" and int(st["failures"]) >= 2
        err = p.stderr()
        assert len(re.findall(r"WARNING wal main: cannot connect .*no answer within 1000 ms", err)) == 1, err
    finally:
        silent.close()


class FakeWalSender:
    """A replication server that speaks just enough of the protocol (trust login, the slot exists,
    START_REPLICATION -> COPY BOTH) and then sends what a test queues; kill() drops the connection
    without a word, as a server that was killed. Records every standby status update's flush LSN."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []          # accepted sockets, in order
        self.streaming = []      # one Event per accepted connection: COPY BOTH started
        self.flushed = []        # flush LSNs of the status updates received
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            ev = threading.Event()
            self.streaming.append(ev)
            threading.Thread(target=self._serve, args=(c, ev), daemon=True).start()

    @staticmethod
    def _recv(c, n):
        data = b""
        while len(data) < n:
            part = c.recv(n - len(data))
            if not part:
                raise ConnectionError("closed")
            data += part
        return data

    @staticmethod
    def _msg(kind, body=b""):
        return kind + struct.pack("!I", len(body) + 4) + body

    def _serve(self, c, streaming):
        try:
            while True:  # SSLRequest / GSSENCRequest: no; then the startup packet
                n = struct.unpack("!I", self._recv(c, 4))[0]
                code = struct.unpack("!I", self._recv(c, n - 4)[:4])[0]
                if code in (80877103, 80877104):
                    c.sendall(b"N")
                    continue
                break
            c.sendall(self._msg(b"R", struct.pack("!I", 0)) + self._msg(b"Z", b"I"))
            while True:
                kind = self._recv(c, 1)
                body = self._recv(c, struct.unpack("!I", self._recv(c, 4))[0] - 4)
                if kind == b"Q" and body.startswith(b"CREATE_REPLICATION_SLOT"):
                    err = b"SERROR\0C42710\0Mreplication slot already exists\0\0"
                    c.sendall(self._msg(b"E", err) + self._msg(b"Z", b"I"))
                elif kind == b"Q" and body.startswith(b"START_REPLICATION"):
                    c.sendall(self._msg(b"W", b"\0\0\0"))
                    streaming.set()
                elif kind == b"d" and body[:1] == b"r":
                    self.flushed.append(struct.unpack("!Q", body[9:17])[0])
                elif kind == b"X":
                    return
        except (OSError, ConnectionError, struct.error):
            return
        finally:
            c.close()

    def send_commit(self, lsn, table):
        """BEGIN, one INSERT of table, COMMIT at lsn, on the latest connection."""
        c = self.conns[-1]
        for line in ("BEGIN", f"table {table}: INSERT: id[integer]:1", "COMMIT"):
            xlog = b"w" + struct.pack("!QQQ", lsn, lsn, 0) + line.encode()
            c.sendall(self._msg(b"d", xlog))

    def kill(self):
        """Drops the latest connection with a reset (nothing said), as a server killed."""
        c = self.conns[-1]
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.shutdown(socket.SHUT_RD)  # wakes the serving thread, whose close() then resets

    def close(self):
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def test_killed_server_reconnects(probes):
    """The replication connection's server dies without a word (connection reset) while streaming:
    the stream is lost once, at once, the listener connects again with the same parameters and
    streams on; each commit is confirmed by a status update over COPY BOTH."""
    fake = FakeWalSender()
    try:
        p = probes("w_killed", info=f"host=127.0.0.1 port={fake.port} dbname=appdb user=x password=y sslmode=disable",
                   wait=False)
        p.wait_streaming()
        assert fake.streaming[0].wait(5)
        fake.send_commit(0x1000, "public.t1")
        assert p.next_commit()[1:] == (0x1000, [("public", "t1")])
        wait_for(lambda: 0x1000 in fake.flushed, 5, what="a status update confirming the commit")
        t0 = time.monotonic()
        fake.kill()
        wait_for(lambda: len(fake.streaming) >= 2 and fake.streaming[1].is_set(), 10, what="a new connection streaming")
        p.wait_streaming(2)
        took = time.monotonic() - t0
        print(f"\nWAL listener: server killed -> streaming again in {took:.3f} s")
        assert took < 5, "the loss is seen when the socket reads, not at the 10 s status update"
        fake.send_commit(0x2000, "s2.t2")
        assert p.next_commit()[1:] == (0x2000, [("s2", "t2")])
        wait_for(lambda: 0x2000 in fake.flushed, 5, what="a status update on the new connection")
        st = p.stats()
        assert st["connected"] == "1" and st["reconnects"] == "1" and st["failures"] == "1", st
        err = p.stderr()
        assert len(re.findall(r"WARNING wal main: replication stream lost \(slot w_killed\): ", err)) == 1, err
        assert "streaming again from slot w_killed" in err
    finally:
        fake.close()


def test_invalid_arguments():
    for args in (["host=127.0.0.1", "Bad-Slot"], ["host=127.0.0.1 nosuchkeyword=1", "ok_slot"]):
        r = subprocess.run([probe_bin(), *args], capture_output=True, text=True, timeout=10, env=sanitizer_env())
        assert r.returncode == 1, r
        assert "ERROR wal probe:" in r.stderr
        assert not any(x in r.stderr for x in SANITIZER_PATTERNS), r.stderr


# ---------------------------------------------------------------- delay


@pytest.mark.parametrize("sync", ["on", "off"])
def test_commit_to_callback_delay(probes, db, capsys, sync):
    """Prints the delay from a commit (returned to the client) to the probe's line. With
    synchronous_commit = off the WAL writer flushes within wal_writer_delay (200 ms) and only
    flushed WAL is decoded."""
    p = probes()
    db.execute(f"SET synchronous_commit = {sync}")
    delays, from_sent = [], []
    for i in range(20):
        t_sent = time.monotonic()
        db.execute("INSERT INTO marker (note) VALUES ('delay')")  # autocommit: statement + commit
        t_commit = time.monotonic()
        t_line, _, names = p.next_commit()
        assert names == [("public", "marker")]
        delays.append((t_line - t_commit) * 1000)
        from_sent.append((t_line - t_sent) * 1000)
        time.sleep(0.02)

    def summary(xs):
        xs = sorted(xs)
        return f"min {xs[0]:.1f}, median {statistics.median(xs):.1f}, p90 {xs[17]:.1f}, max {xs[-1]:.1f} ms"

    with capsys.disabled():
        # negative: the walsender is woken by the WAL flush, before the client has its answer
        print(f"\nWAL listener delay, synchronous_commit={sync}, 20 commits: from the commit's return: "
              f"{summary(delays)}; from sending the statement: {summary(from_sent)}")
    assert statistics.median(delays) < (100 if sync == "on" else 1000)
