"""Result cache: what is served from the cache, and the stale-read cases — each test fails
if a client is handed a row that an acknowledged commit has already changed.

How a test knows a result came from the cache: it changes the row directly on PostgreSQL (around
pgrelay, with the WAL listener off), so only a cached result still shows the old value."""
import threading
import time

import psycopg
import pytest

from conftest import APP_PASSWORD, PW_PASSWORD, connect

RULES = [{"tables": ["items", "other", "totals", "ddl_t", "race"], "ttl": "5m"},
         {"schema": "s1", "ttl": "5m"}, {"schema": "s2", "ttl": "5m"}]
# The same tables versioned by row too (cache rule `key`).
KEYED_RULES = [{"tables": ["items", "other", "race", "people", "profiles"], "key": "id", "ttl": "5m"}] + RULES
ROWS = [False]


@pytest.fixture(params=["by-table", "by-row"])
def rows(request):
    """The stale-read cases below run with table versions only and with row keys (`key: id`)."""
    ROWS[0] = request.param == "by-row"
    yield ROWS[0]
    ROWS[0] = False


def cache_section(**over):
    # no cache.invalidate: the catalog tells pgrelay of items' trigger (which updates totals)
    c = {"l1": {"max_memory": "16MB", "max_result": "1MB"}, "rules": KEYED_RULES if ROWS[0] else RULES}
    c.update(over)
    return c


@pytest.fixture
def tables(pg):
    pg.sql("""
DROP SCHEMA IF EXISTS s1 CASCADE; DROP SCHEMA IF EXISTS s2 CASCADE;
DROP TABLE IF EXISTS items, other, totals, ddl_t, race CASCADE;
CREATE TABLE items (id int PRIMARY KEY, val text);
INSERT INTO items VALUES (1, 'a'), (2, 'b');
CREATE TABLE other (id int PRIMARY KEY, val text);
INSERT INTO other VALUES (1, 'x');
CREATE TABLE totals (n int);
INSERT INTO totals VALUES (2);
CREATE OR REPLACE FUNCTION items_count() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN UPDATE totals SET n = (SELECT count(*) FROM items); RETURN NULL; END$$;
CREATE TRIGGER items_count AFTER INSERT OR DELETE ON items FOR EACH STATEMENT EXECUTE FUNCTION items_count();
CREATE TABLE ddl_t (id int);
INSERT INTO ddl_t VALUES (1);
ALTER TABLE ddl_t OWNER TO app;
CREATE TABLE race (id int PRIMARY KEY, n int);
INSERT INTO race VALUES (1, 0);
CREATE SCHEMA s1; CREATE SCHEMA s2;
CREATE TABLE s1.t (v text); INSERT INTO s1.t VALUES ('one');
CREATE TABLE s2.t (v text); INSERT INTO s2.t VALUES ('two');
GRANT ALL ON ALL TABLES IN SCHEMA public, s1, s2 TO app;
GRANT USAGE ON SCHEMA s1, s2 TO app;
""", dbname="appdb")
    yield pg


PROTOCOL = ["simple"]


@pytest.fixture(params=["simple", "extended"], autouse=True)
def protocol(request):
    """Every test runs with plain Query messages (psycopg's ClientCursor) and with the extended
    protocol (Parse/Bind/Describe/Execute/Sync of the unnamed statement; named statements are
    tested on their own below)."""
    PROTOCOL[0] = request.param
    yield request.param


def simple(relay, **kw):
    """A psycopg connection speaking the protocol of the test's parameter."""
    if PROTOCOL[0] == "simple":
        return relay.connect(cursor_factory=psycopg.ClientCursor, **kw)
    return relay.connect(prepare_threshold=None, **kw)


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()


def behind_pgrelay(pg, sql):
    """A write pgrelay does not see."""
    pg.sql(sql, dbname="appdb")


def test_repeated_select_is_served_from_the_cache(pgrelay, tables):
    r = pgrelay(cache=cache_section())
    with simple(r) as c:
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("a",)
        behind_pgrelay(tables, "UPDATE items SET val = 'behind' WHERE id = 1")
        # the cached result: the proof that the second read did not reach PostgreSQL
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("a",)
        # a statement that is not cacheable always sees the table
        assert one(c, "SELECT val, now() IS NOT NULL FROM items WHERE id = 1")[0] == "behind"
        assert one(c, "SELECT val FROM items WHERE id = 1 /* pgrelay:nocache */") == ("behind",)


def test_update_then_read_in_autocommit(pgrelay, tables, rows):
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as other:
        for i in range(20):
            assert one(other, "SELECT val FROM items WHERE id = 1")[0] is not None
            c.execute("UPDATE items SET val = %s WHERE id = 1", (f"v{i}",))
            assert one(other, "SELECT val FROM items WHERE id = 1") == (f"v{i}",)
            assert one(c, "SELECT val FROM items WHERE id = 1") == (f"v{i}",)


def test_update_in_transaction_then_read_after_commit(pgrelay, tables, rows):
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as other:
        assert one(other, "SELECT val FROM items WHERE id = 2") == ("b",)
        with c.transaction():
            c.execute("UPDATE items SET val = 'in-tx' WHERE id = 2")
            # inside its transaction the writer sees its write (reads there bypass the cache)
            assert one(c, "SELECT val FROM items WHERE id = 2") == ("in-tx",)
            # others still see the committed row, cached or not
            assert one(other, "SELECT val FROM items WHERE id = 2") == ("b",)
        assert one(other, "SELECT val FROM items WHERE id = 2") == ("in-tx",)


def test_rollback_leaves_the_cache_valid(pgrelay, tables, rows):
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as other:
        assert one(other, "SELECT val FROM other WHERE id = 1") == ("x",)
        c.execute("BEGIN")
        c.execute("UPDATE other SET val = 'rolled back' WHERE id = 1")
        c.execute("ROLLBACK")
        behind_pgrelay(tables, "UPDATE other SET val = 'behind' WHERE id = 1")
        # still the cached entry: the rollback invalidated nothing
        assert one(other, "SELECT val FROM other WHERE id = 1") == ("x",)
        # a failed transaction's COMMIT is a rollback too
        c.execute("BEGIN")
        c.execute("UPDATE other SET val = 'failed' WHERE id = 1")
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("SELECT 1/0")
        c.execute("COMMIT")
        assert one(other, "SELECT val FROM other WHERE id = 1") == ("x",)


def test_same_table_name_in_two_schemas_and_search_path(pgrelay, tables):
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as w:
        c.execute("SET search_path = s1")
        assert one(c, "SELECT v FROM t") == ("one",)
        c.execute("SET search_path = s2")
        assert one(c, "SELECT v FROM t") == ("two",), "search_path must be part of the key"
        c.execute("SET search_path = s1")
        assert one(c, "SELECT v FROM t") == ("one",)
        # a write through the other schema's qualified name
        w.execute("UPDATE s1.t SET v = 'one-new'")
        assert one(c, "SELECT v FROM t") == ("one-new",)
        # an unqualified write through a search_path
        w.execute("SET search_path = s2")
        w.execute("UPDATE t SET v = 'two-new'")
        c.execute("SET search_path = s2")
        assert one(c, "SELECT v FROM t") == ("two-new",)
        assert one(c, "SELECT v FROM s2.t") == ("two-new",)


def test_qualified_and_unqualified_names_of_one_table(pgrelay, tables, rows):
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT val FROM public.items WHERE id = 1") == ("a",)
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("a",)
        w.execute("UPDATE items SET val = 'unq' WHERE id = 1")
        assert one(c, "SELECT val FROM public.items WHERE id = 1") == ("unq",)
        w.execute("UPDATE public.items SET val = 'q' WHERE id = 1")
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("q",)


def test_ddl_invalidates(pgrelay, tables):
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT * FROM ddl_t") == (1,)
        w.execute("ALTER TABLE ddl_t ADD COLUMN extra text DEFAULT 'new column'")
        assert one(c, "SELECT * FROM ddl_t") == (1, "new column")
        w.execute("DROP TABLE ddl_t")
        with pytest.raises(psycopg.errors.UndefinedTable):
            c.execute("SELECT * FROM ddl_t")
        w.execute("CREATE TABLE ddl_t (id int, other int)")
        w.execute("INSERT INTO ddl_t VALUES (7, 8)")
        assert one(c, "SELECT * FROM ddl_t") == (7, 8)


def test_trigger_writing_another_table(pgrelay, tables, rows):
    """items has a trigger (it updates totals): the catalog says so, and a commit writing items
    invalidates everything of the service, with no cache.invalidate line."""
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT n FROM totals") == (2,)
        w.execute("INSERT INTO items VALUES (3, 'c')")  # the trigger updates totals
        assert one(c, "SELECT n FROM totals") == (3,)


def test_cache_invalidate_still_adds_what_it_names(pgrelay, tables, rows):
    """cache.invalidate stays an override for what the catalog cannot see (here: totals changed by
    something outside the database, whenever other is written): a write to other invalidates the
    cached totals."""
    r = pgrelay(cache=cache_section(invalidate=[{"table": "other", "also": ["totals"]}]))
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT n FROM totals") == (2,)
        behind_pgrelay(tables, "UPDATE totals SET n = 42")
        assert one(c, "SELECT n FROM totals") == (2,)  # cached
        w.execute("UPDATE other SET val = 'y' WHERE id = 1")  # no trigger, no key: other alone, and the override
        assert one(c, "SELECT n FROM totals") == (42,)


def test_writable_cte(pgrelay, tables, rows):
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT val FROM other WHERE id = 1") == ("x",)
        w.execute("WITH u AS (UPDATE other SET val = 'cte' WHERE id = 1 RETURNING id) SELECT count(*) FROM u")
        assert one(c, "SELECT val FROM other WHERE id = 1") == ("cte",)


def test_roles_and_settings_never_share_an_entry(pgrelay, tables):
    # each client logs in to PostgreSQL as itself (no services.main.primary.user)
    r = pgrelay(cache=cache_section(), services={"main": {"primary": {"user": None, "password": None}}})
    with simple(r) as c:
        assert one(c, "SELECT val FROM items WHERE id = 2") == ("b",)
    # pwuser may not read items: it must get PostgreSQL's error, not app's cached rows
    with simple(r, user="pwuser", password=PW_PASSWORD) as p:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            p.execute("SELECT val FROM items WHERE id = 2")
    tables.sql("CREATE TABLE IF NOT EXISTS tz (t timestamptz); TRUNCATE tz; "
               "INSERT INTO tz VALUES ('2024-01-01 12:00:00+00'); GRANT ALL ON tz TO app", dbname="appdb")
    r2 = pgrelay(cache=cache_section(rules=RULES + [{"tables": ["tz"]}]))
    with simple(r2) as c:
        c.execute("SET TimeZone = 'UTC'")
        a = one(c, "SELECT t::text FROM tz")[0]
        c.execute("SET TimeZone = 'Asia/Dhaka'")
        b = one(c, "SELECT t::text FROM tz")[0]
        assert a == "2024-01-01 12:00:00+00" and b == "2024-01-01 18:00:00+06", (a, b)


def test_read_racing_concurrent_commits_is_never_stale(pgrelay, tables, rows):
    """Writers increment a counter through pgrelay; readers check that every read returns at least
    the value whose commit was acknowledged before the read started."""
    r = pgrelay(cache=cache_section(), pool={"max": 8})
    acked = [0]
    stop = threading.Event()
    errors = []

    def writer():
        with simple(r) as w:
            while not stop.is_set():
                n = one(w, "UPDATE race SET n = n + 1 WHERE id = 1 RETURNING n")[0]
                acked[0] = max(acked[0], n)

    def reader():
        with simple(r) as c:
            while not stop.is_set():
                floor = acked[0]
                got = one(c, "SELECT n FROM race WHERE id = 1")[0]
                if got < floor:
                    errors.append(f"read {got} after commit {floor} was acknowledged")

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(20)
    assert acked[0] > 50, "the writer made too little progress to mean anything"
    assert not errors, errors[:5]


def test_concurrent_identical_misses_send_one_query(pgrelay, tables):
    """Six clients send the same slow, cacheable SELECT at once: one runs it, the others wait for
    its result (or find it stored). SHOW CACHE counts a hit for each of the five."""
    tables.sql("""
DROP TABLE IF EXISTS slow_rows;
CREATE TABLE slow_rows (v int);
INSERT INTO slow_rows SELECT g FROM generate_series(1, 2500) g;
GRANT ALL ON slow_rows TO app;
""", dbname="appdb")
    r = pgrelay(cache=cache_section(rules=RULES + [{"tables": ["slow_rows"]}]), pool={"max": 8},
                admin={"users": ["app"]})
    slow = "SELECT count(*) FROM slow_rows a JOIN slow_rows b ON a.v + b.v < 0"  # a nested loop: ~6M pairs
    results = []

    def hits():
        with r.connect(dbname="pgrelay", cursor_factory=psycopg.ClientCursor) as a:
            return next(int(row[3]) for row in a.execute("SHOW CACHE").fetchall() if row[0] == "total")

    before = hits()

    def read():
        with simple(r) as c:
            results.append(one(c, slow)[0])

    threads = [threading.Thread(target=read) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [0] * 6
    assert hits() - before == 5, "more than one of the identical reads reached PostgreSQL"


def test_named_prepared_statements_are_cached(pgrelay, tables, protocol):
    if protocol == "simple":
        pytest.skip("named statements are the extended protocol")
    r = pgrelay(cache=cache_section())
    with r.connect(prepare_threshold=0) as c, r.connect(prepare_threshold=0) as w:
        q = "SELECT val FROM items WHERE id = %s"
        assert one(c, q, (1,)) == ("a",)  # Parse (named), Bind, Describe, Execute, Sync: not looked up
        assert one(c, q, (1,)) == ("a",)  # Bind of the named statement: filled
        assert one(c, q, (2,)) == ("b",)  # other parameter: filled
        behind_pgrelay(tables, "UPDATE items SET val = 'behind'")
        assert one(c, q, (1,)) == ("a",)  # served: Bind/Describe/Execute/Sync of the named statement
        assert one(c, q, (2,)) == ("b",)
        w.execute("UPDATE items SET val = 'through' WHERE id = 2")
        assert one(c, q, (2,)) == ("through",)
        assert one(c, q, (1,)) == ("behind",)  # same table: the version moved for every entry
    # binary results are a different entry from text ones
    with r.connect(prepare_threshold=0) as c:
        cur = c.cursor(binary=True)
        cur.execute("SELECT id FROM items WHERE id = %s", (1,))
        assert cur.fetchone() == (1,)
        cur.execute("SELECT id FROM items WHERE id = %s", (1,))
        assert cur.fetchone() == (1,)
        assert one(c, "SELECT id FROM items WHERE id = %s", (1,)) == (1,)


def wait_wal_streaming(relay, pg_logical, slot):
    """Until pgrelay's WAL listener streams from its slot (before that, nothing is served from the cache)."""
    deadline = time.time() + 15
    while pg_logical.sql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active",
                         dbname="appdb") != "1":
        assert time.time() < deadline, "the WAL listener did not start streaming:\n" + relay.log_tail()
        time.sleep(0.1)


def wal_cache(pg_logical, slot, rules):
    from wal_fixtures import WAL_PASSWORD, WAL_USER, drop_slots
    drop_slots(pg_logical, [slot])
    return cache_section(rules=rules, invalidate=[], wal_listener={"service": "main", "slot": slot, "user": WAL_USER,
                                                                  "password": WAL_PASSWORD})


def test_write_around_pgrelay_is_seen_through_the_wal_listener(pgrelay, pg_logical, protocol):
    """With cache.wal_listener, a write made directly on PostgreSQL (and a trigger's write to
    another table) invalidates what pgrelay cached; while the listener is not streaming, nothing
    is served from the cache."""
    from wal_fixtures import WAL_USER
    pg_logical.sql("""
DROP TABLE IF EXISTS wl, wl_log;
CREATE TABLE wl (id int PRIMARY KEY, v text); INSERT INTO wl VALUES (1, 'a');
CREATE TABLE wl_log (n int); INSERT INTO wl_log VALUES (0);
CREATE OR REPLACE FUNCTION wl_touch() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN UPDATE wl_log SET n = n + 1; RETURN NULL; END$$;
DROP TRIGGER IF EXISTS wl_touch ON wl;
CREATE TRIGGER wl_touch AFTER UPDATE ON wl FOR EACH STATEMENT EXECUTE FUNCTION wl_touch();
GRANT ALL ON wl, wl_log TO app;
""", dbname="appdb")
    slot = f"pgrelay_cache_{protocol}"
    r = pgrelay(services={"main": {"primary": {"port": pg_logical.port}}},
                cache=wal_cache(pg_logical, slot, [{"tables": ["wl", "wl_log"]}]))
    with simple(r) as c:
        assert one(c, "SELECT v FROM wl WHERE id = 1") == ("a",)
        wait_wal_streaming(r, pg_logical, slot)
        assert one(c, "SELECT n FROM wl_log") == (0,)
        pg_logical.sql("UPDATE wl SET v = 'around' WHERE id = 1", dbname="appdb")
        deadline = time.time() + 5
        while one(c, "SELECT v FROM wl WHERE id = 1") != ("around",):
            assert time.time() < deadline, "a write around pgrelay was never seen"
            time.sleep(0.05)
        # the trigger's write to wl_log came through the WAL as well
        deadline = time.time() + 5
        while one(c, "SELECT n FROM wl_log") != (1,):
            assert time.time() < deadline, "a trigger's write was never seen"
            time.sleep(0.05)
        # the listener goes down: nothing may be served from the cache until it streams again
        pg_logical.sql(f"ALTER ROLE {WAL_USER} NOLOGIN", dbname="appdb")
        try:
            pg_logical.sql(f"SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}'",
                           dbname="appdb")
            deadline = time.time() + 10
            while pg_logical.sql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active",
                                 dbname="appdb") != "0":
                assert time.time() < deadline
                time.sleep(0.05)
            time.sleep(0.3)
            for i in range(5):
                assert one(c, "SELECT v FROM wl WHERE id = 1")[0] is not None
                pg_logical.sql(f"ALTER TABLE wl DISABLE TRIGGER wl_touch; UPDATE wl SET v = 'down{i}' WHERE id = 1",
                               dbname="appdb")
                assert one(c, "SELECT v FROM wl WHERE id = 1") == (f"down{i}",)
        finally:
            pg_logical.sql(f"ALTER ROLE {WAL_USER} LOGIN; ALTER TABLE wl ENABLE TRIGGER wl_touch", dbname="appdb")


def test_wal_listener_invalidates_by_row(pgrelay, pg_logical):
    """With a key rule, a write the WAL listener sees invalidates only the rows it names: INSERT's
    and DELETE's keys, and an UPDATE's old and new key where PostgreSQL prints the old row
    (REPLICA IDENTITY FULL). Under the default identity an UPDATE does not print the old row, so it
    invalidates every row of its table (never one stale). The proof of a kept entry: SHOW CACHE
    counts a hit."""
    pg_logical.sql("""
DROP TABLE IF EXISTS wk, wkd;
CREATE TABLE wk (id int PRIMARY KEY, v text);
ALTER TABLE wk REPLICA IDENTITY FULL;
CREATE TABLE wkd (id int PRIMARY KEY, v text);
INSERT INTO wk VALUES (1, 'a'), (2, 'b');
INSERT INTO wkd VALUES (1, 'a'), (2, 'b');
GRANT ALL ON wk, wkd TO app;
""", dbname="appdb")
    slot = "pgrelay_cache_rows"
    r = pgrelay(services={"main": {"primary": {"port": pg_logical.port}}}, admin={"users": ["app"]},
                cache=wal_cache(pg_logical, slot, [{"tables": ["wk", "wkd"], "key": "id"}]))

    def hits():
        with psycopg.connect(host="127.0.0.1", port=r.port, user="app", password=APP_PASSWORD, dbname="pgrelay",
                             autocommit=True, cursor_factory=psycopg.ClientCursor) as a:
            return next(int(row[3]) for row in a.execute("SHOW CACHE").fetchall() if row[0] == "total")

    def read(c, table, key):
        return one(c, f"SELECT v FROM {table} WHERE id = {key}")

    def until(c, table, key, want):
        deadline = time.time() + 5
        while read(c, table, key) != want:
            assert time.time() < deadline, f"{table} row {key} never showed {want}:\n" + r.log_tail()
            time.sleep(0.05)

    def is_hit(c, table, key, want):
        before = hits()
        assert read(c, table, key) == want
        return hits() == before + 1

    def around(sql):
        pg_logical.sql(sql, dbname="appdb")

    with simple(r) as c:
        wait_wal_streaming(r, pg_logical, slot)
        deadline = time.time() + 5
        for table in ("wk", "wkd"):
            assert read(c, table, 1) == ("a",)
            while not is_hit(c, table, 2, ("b",)):  # the new slot's "invalidate everything" may come late
                assert time.time() < deadline, "a second read is never a hit"
                time.sleep(0.05)
        around("UPDATE wk SET v = 'x' WHERE id = 1")
        until(c, "wk", 1, ("x",))
        assert is_hit(c, "wk", 2, ("b",)), "an UPDATE of row 1 seen in the WAL invalidated row 2"
        around("UPDATE wk SET id = 3 WHERE id = 2")  # the old key and the new one
        until(c, "wk", 2, None)
        assert read(c, "wk", 3) == ("b",)
        assert is_hit(c, "wk", 1, ("x",))
        around("INSERT INTO wk VALUES (4, 'd')")
        until(c, "wk", 4, ("d",))
        around("DELETE FROM wk WHERE id = 4")
        until(c, "wk", 4, None)
        assert is_hit(c, "wk", 1, ("x",)), "an INSERT and a DELETE of row 4 invalidated row 1"
        # default identity: the UPDATE's old key is not in the WAL, so every row goes
        around("UPDATE wkd SET v = 'x' WHERE id = 1")
        until(c, "wkd", 1, ("x",))
        assert not is_hit(c, "wkd", 2, ("b",)), "an UPDATE whose old row is not known kept another row"


def test_results_from_a_replica_are_stored_only_once_it_replayed_the_invalidation(pgrelay, tables, pg_replica,
                                                                                  protocol):
    """Reads go to a streaming replica. While its replay is paused behind a commit, what it returns
    is passed through but never stored: once it replays, the next read is the committed row."""
    if protocol == "extended":
        pytest.skip("the replica path does not depend on the protocol")
    pg_replica.ensure_running()
    wait = time.time() + 20
    want = tables.sql("SELECT val FROM other WHERE id = 1", dbname="appdb")

    def replica_val():
        try:
            return pg_replica.sql("SELECT val FROM other WHERE id = 1", dbname="appdb")
        except AssertionError:
            return None  # the table is not replayed yet
    while replica_val() != want:
        assert time.time() < wait, "the replica did not catch up"
        time.sleep(0.1)
    r = pgrelay(cache=cache_section(),
                services={"main": {"replicas": [pg_replica.backend()], "reads": "replicas"}},
                health={"interval": "200ms", "timeout": "1s", "fail_after": 3, "recover_after": 1,
                        "max_lag": "1GB"})
    q = "SELECT val FROM other WHERE id = 1"
    with simple(r) as reader, simple(r) as writer:
        reader.execute("SET application_name = 'cache-reader'")
        # a result from a caught-up replica is stored (the write around pgrelay does not show)
        deadline = time.time() + 15
        while True:
            one(reader, q)
            time.sleep(0.3)  # a health check after the last invalidation
            one(reader, q)
            before = one(reader, q)[0]
            behind_pgrelay(tables, f"UPDATE other SET val = 'probe-{time.time()}' WHERE id = 1")
            time.sleep(0.2)
            if one(reader, q) == (before,):
                break  # served from the cache
            assert time.time() < deadline, "results read from a caught-up replica were never stored"
        pg_replica.pause_replay()
        try:
            writer.execute("UPDATE other SET val = 'committed' WHERE id = 1")
            stale = 0
            for _ in range(10):
                stale += one(reader, q)[0] != "committed"  # the paused replica answers the old row...
                time.sleep(0.1)
            assert stale, "the reads did not go to the paused replica: the test proves nothing"
            # ...but it was not stored: once the replica replays, the committed row is read
        finally:
            pg_replica.resume_replay()
        deadline = time.time() + 10
        while one(reader, q) != ("committed",):
            assert time.time() < deadline, "a stale result from the lagging replica was cached"
            time.sleep(0.1)
        # and it stays so (the stale reads were never stored under the current versions)
        for _ in range(5):
            assert one(reader, q) == ("committed",)


def test_write_too_large_to_analyze_invalidates(pgrelay, tables, protocol):
    """A statement larger than proxy.buffer_size streams to the server without being parsed: its
    commit invalidates everything of the service."""
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("a",)
        padding = "/* " + "x" * 100_000 + " */"
        w.execute(f"UPDATE items SET val = 'huge' WHERE id = 1 {padding}")
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("huge",)


def test_commit_inside_a_multi_statement_string(pgrelay, tables, protocol, rows):
    """'UPDATE ...; COMMIT; BEGIN' commits the update and leaves a transaction open: the update is
    invalidated at once; 'UPDATE ...; COMMIT; UPDATE ...; ROLLBACK' keeps the first update's
    invalidation."""
    if protocol == "extended":
        pytest.skip("multi-statement strings are the simple protocol")
    r = pgrelay(cache=cache_section())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT val FROM other WHERE id = 1") == ("x",)
        w.execute("UPDATE other SET val = 'm1' WHERE id = 1; COMMIT; BEGIN")
        assert one(c, "SELECT val FROM other WHERE id = 1") == ("m1",)
        w.execute("UPDATE other SET val = 'm2' WHERE id = 1")  # inside the open transaction
        assert one(c, "SELECT val FROM other WHERE id = 1") == ("m1",)
        w.execute("COMMIT")
        assert one(c, "SELECT val FROM other WHERE id = 1") == ("m2",)
        w.execute("UPDATE other SET val = 'm3' WHERE id = 1; COMMIT; UPDATE other SET val = 'no' WHERE id = 1; "
                  "ROLLBACK")
        assert one(c, "SELECT val FROM other WHERE id = 1") == ("m3",)


@pytest.fixture
def keyed_tables(tables):
    tables.sql("""
DROP TABLE IF EXISTS people, profiles, serials CASCADE;
CREATE TABLE people (id uuid PRIMARY KEY, name text);
CREATE TABLE profiles (id uuid PRIMARY KEY REFERENCES people (id), lang text);
INSERT INTO people VALUES ('00000000-0000-4000-8000-000000000001', 'ann'), ('00000000-0000-4000-8000-000000000002', 'bob');
INSERT INTO profiles VALUES ('00000000-0000-4000-8000-000000000001', 'en'), ('00000000-0000-4000-8000-000000000002', 'bn');
CREATE TABLE serials (id serial PRIMARY KEY, val text);
INSERT INTO serials (val) VALUES ('s1');
GRANT ALL ON people, profiles, serials, serials_id_seq TO app;
""", dbname="appdb")
    yield tables


def keyed(**over):
    return cache_section(rules=[{"tables": ["items", "other", "people", "profiles", "serials"], "key": "id",
                                 "ttl": "5m"}] + RULES, **over)


def test_row_keys_a_write_invalidates_only_its_rows(pgrelay, keyed_tables):
    """With `key: id`, a write that names its row by key leaves the other rows' entries alone (the
    proof: they still show a value changed behind pgrelay), and always reaches its own."""
    r = pgrelay(cache=keyed())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("a",)
        assert one(c, "SELECT val FROM items WHERE id = 2") == ("b",)
        behind_pgrelay(keyed_tables, "UPDATE items SET val = 'behind'")
        w.execute("UPDATE items SET val = 'w2' WHERE id = %s", (2,))
        assert one(c, "SELECT val FROM items WHERE id = 2") == ("w2",)
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("a",), "a write of row 2 invalidated row 1"
        # another spelling of the same key is the same row
        w.execute("UPDATE items SET val = 'w1' WHERE id = '01'")
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("w1",)
        # a write that does not name its rows by key invalidates every row
        assert one(c, "SELECT val FROM items WHERE id = 2") == ("w2",)
        w.execute("UPDATE items SET val = 'all' WHERE val = 'w2'")
        assert one(c, "SELECT val FROM items WHERE id = 2") == ("all",)
        # a read that does not say its key depends on the whole table
        assert one(c, "SELECT count(*) FROM items WHERE val = 'all'") == (1,)
        w.execute("UPDATE items SET val = 'all' WHERE id = 1")
        assert one(c, "SELECT count(*) FROM items WHERE val = 'all'") == (2,)


def test_row_keys_insert_delete_and_key_changes(pgrelay, keyed_tables):
    r = pgrelay(cache=keyed())
    with simple(r) as c, simple(r) as w:
        assert one(c, "SELECT val FROM items WHERE id = 5") is None  # an empty result is cached too
        w.execute("INSERT INTO items (id, val) VALUES (5, 'new'), (6, 'six')")
        assert one(c, "SELECT val FROM items WHERE id = 5") == ("new",)
        w.execute("DELETE FROM items WHERE id = 5")
        assert one(c, "SELECT val FROM items WHERE id = 5") is None
        # an UPDATE that moves a row to another key
        assert one(c, "SELECT val FROM items WHERE id = 9") is None
        w.execute("UPDATE items SET id = 9 WHERE id = 6")
        assert one(c, "SELECT val FROM items WHERE id = 9") == ("six",)
        # an INSERT whose key comes from a default (a sequence): any row may be new
        assert one(c, "SELECT val FROM serials WHERE id = 2") is None
        w.execute("INSERT INTO serials (val) VALUES ('s2')")
        assert one(c, "SELECT val FROM serials WHERE id = 2") == ("s2",)
        # ON CONFLICT DO UPDATE changes a row found by the conflict
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("a",)
        w.execute("INSERT INTO items (id, val) VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET val = 'upsert'")
        assert one(c, "SELECT val FROM items WHERE id = 1") == ("upsert",)


def test_row_keys_joins_uuids_and_prepared_writes(pgrelay, keyed_tables, protocol):
    """A join says the key of each table through its ON clause; uuid keys in any spelling; writes
    by named prepared statements are noted with each Bind's values."""
    r = pgrelay(cache=keyed())
    join = ("SELECT p.name, f.lang FROM people p JOIN profiles f ON f.id = p.id "
            "WHERE p.id = '00000000-0000-4000-8000-00000000000%s'")
    with simple(r) as c, r.connect(prepare_threshold=0) as w:
        assert one(c, join % 1) == ("ann", "en")
        assert one(c, join % 2) == ("bob", "bn")
        behind_pgrelay(keyed_tables, "UPDATE profiles SET lang = 'behind'")
        for i, lang in enumerate(["fr", "de", "es"]):
            w.execute("UPDATE profiles SET lang = %s WHERE id = %s",
                      (lang, "00000000-0000-4000-8000-000000000001"))
            assert one(c, join % 1) == ("ann", lang)
        assert one(c, join % 2) == ("bob", "bn"), "a write of one profile invalidated another"
        w.execute("UPDATE people SET name = 'BOB' WHERE id = '{00000000000040008000000000000002}'")
        assert one(c, join % 2) == ("BOB", "behind")
        # a uuid parameter in binary
        w.cursor(binary=True).execute("UPDATE profiles SET lang = %b WHERE id = %b",
                                      ("pt", __import__("uuid").UUID("00000000-0000-4000-8000-000000000001")))
        assert one(c, join % 1) == ("ann", "pt")
