"""The result cache learns dependencies from each service's catalog (src/catalog.c through
src/catalog_loader.c, used by src/cachepolicy.c): every test here reads a row that today's
name-only dependencies would leave stale after a commit the reader knows of.

Shapes (schema cat, made by the superuser, read and written by app through pgrelay): a view and a
nested view over a table, a partitioned table, foreign keys ON DELETE CASCADE / SET NULL, a
trigger that writes another table, a table with a row security policy reading another table,
views over now() and over a user function. No cache.invalidate anywhere.

How a test knows a read came from the cache: SHOW CACHE's hit count moved (cached()), so the
stale-read checks that follow it are not vacuous. Protocols: simple Query (psycopg's
ClientCursor), the extended protocol's unnamed statement, and named prepared statements
(prepare_threshold=0).
"""
import subprocess
import time

import psycopg
import pytest

from conftest import SANITIZER_PATTERNS, pgrelay_bin, sanitizer_env, wait_for

PROTOCOLS = ["simple", "extended", "named"]

SHAPES = """
DROP SCHEMA IF EXISTS cat CASCADE;
CREATE SCHEMA cat;
CREATE TABLE cat.base (id int PRIMARY KEY, v text);
INSERT INTO cat.base VALUES (1, 'a'), (2, 'b');
CREATE VIEW cat.v_base AS SELECT id, v FROM cat.base;
CREATE VIEW cat.v_nested AS SELECT id, upper(v) AS v FROM cat.v_base WHERE id > 0;
CREATE VIEW cat.v_now AS SELECT id, v, now() AS at FROM cat.base;
CREATE FUNCTION cat.ident(text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT $1';
CREATE VIEW cat.v_fn AS SELECT id, cat.ident(v) AS v FROM cat.base;

CREATE TABLE cat.parts (id int, region text, v text) PARTITION BY LIST (region);
CREATE TABLE cat.parts_eu PARTITION OF cat.parts FOR VALUES IN ('eu');
CREATE TABLE cat.parts_us PARTITION OF cat.parts FOR VALUES IN ('us');
INSERT INTO cat.parts VALUES (1, 'eu', 'e1'), (2, 'us', 'u2');

CREATE TABLE cat.parent (id int PRIMARY KEY);
INSERT INTO cat.parent VALUES (1), (2);
CREATE TABLE cat.child_cascade (id int PRIMARY KEY, parent_id int REFERENCES cat.parent ON DELETE CASCADE);
CREATE TABLE cat.child_null (id int PRIMARY KEY, parent_id int REFERENCES cat.parent ON DELETE SET NULL);
INSERT INTO cat.child_cascade VALUES (1, 1), (2, 2);
INSERT INTO cat.child_null VALUES (1, 1), (2, 2);

CREATE TABLE cat.orders (id int PRIMARY KEY, amount int);
CREATE TABLE cat.order_stats (n int);
INSERT INTO cat.order_stats VALUES (0);
CREATE FUNCTION cat.count_order() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN UPDATE cat.order_stats SET n = n + 1; RETURN NULL; END$$;
CREATE TRIGGER count_order AFTER INSERT ON cat.orders FOR EACH ROW EXECUTE FUNCTION cat.count_order();

CREATE TABLE cat.doc_acl (doc_id int);
CREATE TABLE cat.docs (id int PRIMARY KEY, body text);
INSERT INTO cat.docs VALUES (1, 'one'), (2, 'two'), (3, 'three');
INSERT INTO cat.doc_acl VALUES (1);
ALTER TABLE cat.docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY docs_acl ON cat.docs FOR SELECT USING (EXISTS (SELECT 1 FROM cat.doc_acl a WHERE a.doc_id = docs.id));

GRANT USAGE, CREATE ON SCHEMA cat TO app;
GRANT ALL ON ALL TABLES IN SCHEMA cat TO app;
"""

RULES = [{"schema": "cat", "ttl": "5m"}]


@pytest.fixture
def shapes(pg):
    pg.sql(SHAPES, dbname="appdb")
    yield pg


@pytest.fixture(params=PROTOCOLS)
def proto(request):
    return request.param


def client(relay, proto):
    if proto == "simple":
        return relay.connect(cursor_factory=psycopg.ClientCursor)
    if proto == "extended":
        return relay.connect(prepare_threshold=None)
    return relay.connect(prepare_threshold=0)


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()


class Console:
    """The admin console of a pgrelay (SHOW CACHE / SHOW CATALOG)."""

    def __init__(self, relay):
        self.conn = relay.connect(dbname="pgrelay", cursor_factory=psycopg.ClientCursor)

    def hits(self):
        return next(int(row[3]) for row in self.conn.execute("SHOW CACHE").fetchall() if row[0] == "total")

    def catalog(self, service="main"):
        cur = self.conn.execute("SHOW CATALOG")
        names = [d.name for d in cur.description]
        for row in cur.fetchall():
            if row[0] == service:
                return dict(zip(names, row))
        raise AssertionError(f"SHOW CATALOG has no row for {service}")

    def close(self):
        self.conn.close()


def cached(console, conn, sql, params=None, timeout=8):
    """Reads until the read is served from the cache (a hit counted); returns the row."""
    deadline = time.monotonic() + timeout
    while True:
        before = console.hits()
        row = one(conn, sql, params)
        if console.hits() == before + 1:
            return row
        assert time.monotonic() < deadline, f"{sql} {params} is never served from the cache"
        time.sleep(0.05)


def start(pgrelay, **cache):
    c = {"l1": {"max_memory": "16MB"}, "rules": RULES}
    c.update(cache)
    return pgrelay(cache=c, admin={"users": ["app"]})


# ---------------------------------------------------------------- through pgrelay


def test_view_reads_see_writes_of_their_base_table(pgrelay, shapes, proto):
    r = start(pgrelay)
    adm = Console(r)
    with client(r, proto) as c, client(r, proto) as w:
        assert cached(adm, c, "SELECT v FROM cat.v_base WHERE id = %s", (1,)) == ("a",)
        assert cached(adm, c, "SELECT v FROM cat.v_nested WHERE id = %s", (2,)) == ("B",)
        w.execute("UPDATE cat.base SET v = %s WHERE id = %s", ("a2", 1))
        assert one(c, "SELECT v FROM cat.v_base WHERE id = %s", (1,)) == ("a2",)
        w.execute("UPDATE cat.base SET v = %s WHERE id = %s", ("b2", 2))
        assert one(c, "SELECT v FROM cat.v_nested WHERE id = %s", (2,)) == ("B2",)
        # and the other way: a write through the view invalidates reads of its table
        assert cached(adm, c, "SELECT v FROM cat.base WHERE id = %s", (1,)) == ("a2",)
        w.execute("UPDATE cat.v_base SET v = %s WHERE id = %s", ("a3", 1))
        assert one(c, "SELECT v FROM cat.base WHERE id = %s", (1,)) == ("a3",)
    adm.close()


def test_unqualified_view_through_the_search_path(pgrelay, shapes):
    r = start(pgrelay)
    adm = Console(r)
    with client(r, "extended") as c, client(r, "simple") as w:
        c.execute("SET search_path = cat, public")
        assert cached(adm, c, "SELECT v FROM v_base WHERE id = %s", (2,)) == ("b",)
        w.execute("UPDATE cat.base SET v = 'bb' WHERE id = 2")
        assert one(c, "SELECT v FROM v_base WHERE id = %s", (2,)) == ("bb",)
    adm.close()


def test_partitioned_table_and_its_partitions(pgrelay, shapes, proto):
    r = start(pgrelay)
    adm = Console(r)
    with client(r, proto) as c, client(r, proto) as w:
        # a read of the parent, a write to a partition by name
        assert cached(adm, c, "SELECT v FROM cat.parts WHERE id = %s", (1,)) == ("e1",)
        w.execute("UPDATE cat.parts_eu SET v = %s WHERE id = %s", ("e1-new", 1))
        assert one(c, "SELECT v FROM cat.parts WHERE id = %s", (1,)) == ("e1-new",)
        # a read of a partition, a write through the parent
        assert cached(adm, c, "SELECT v FROM cat.parts_us WHERE id = %s", (2,)) == ("u2",)
        w.execute("UPDATE cat.parts SET v = %s WHERE id = %s", ("u2-new", 2))
        assert one(c, "SELECT v FROM cat.parts_us WHERE id = %s", (2,)) == ("u2-new",)
        # an INSERT through the parent lands in a partition
        assert cached(adm, c, "SELECT count(*) FROM cat.parts_eu") == (1,)
        w.execute("INSERT INTO cat.parts VALUES (%s, 'eu', 'e3')", (3,))
        assert one(c, "SELECT count(*) FROM cat.parts_eu") == (2,)
    adm.close()


def test_delete_cascades_and_sets_null(pgrelay, shapes, proto):
    r = start(pgrelay)
    adm = Console(r)
    with client(r, proto) as c, client(r, proto) as w:
        assert cached(adm, c, "SELECT count(*) FROM cat.child_cascade WHERE parent_id = %s", (1,)) == (1,)
        assert cached(adm, c, "SELECT count(*) FROM cat.child_null WHERE parent_id = %s", (1,)) == (1,)
        w.execute("DELETE FROM cat.parent WHERE id = %s", (1,))
        assert one(c, "SELECT count(*) FROM cat.child_cascade WHERE parent_id = %s", (1,)) == (0,)
        assert one(c, "SELECT count(*) FROM cat.child_null WHERE parent_id = %s", (1,)) == (0,)
        # in an explicit transaction too
        assert cached(adm, c, "SELECT count(*) FROM cat.child_cascade WHERE parent_id = %s", (2,)) == (1,)
        with w.transaction():
            w.execute("DELETE FROM cat.parent WHERE id = %s", (2,))
        assert one(c, "SELECT count(*) FROM cat.child_cascade WHERE parent_id = %s", (2,)) == (0,)
    adm.close()


def test_trigger_writing_another_table(pgrelay, shapes, proto):
    r = start(pgrelay)
    adm = Console(r)
    with client(r, proto) as c, client(r, proto) as w:
        assert cached(adm, c, "SELECT n FROM cat.order_stats WHERE n >= %s", (0,)) == (0,)
        w.execute("INSERT INTO cat.orders VALUES (%s, %s)", (1, 10))  # the trigger counts it in order_stats
        assert one(c, "SELECT n FROM cat.order_stats WHERE n >= %s", (0,)) == (1,)
    adm.close()


def test_row_security_policy_reading_another_table(pgrelay, shapes, proto):
    r = start(pgrelay)
    adm = Console(r)
    with client(r, proto) as c, client(r, proto) as w:
        assert cached(adm, c, "SELECT count(*) FROM cat.docs WHERE id > %s", (0,)) == (1,)
        w.execute("INSERT INTO cat.doc_acl VALUES (%s)", (2,))  # app may now see document 2
        assert one(c, "SELECT count(*) FROM cat.docs WHERE id > %s", (0,)) == (2,)
    adm.close()


def test_views_over_the_clock_or_a_user_function_are_never_cached(pgrelay, shapes, proto):
    r = start(pgrelay)
    adm = Console(r)
    with client(r, proto) as c:
        before = adm.hits()
        for i in range(3):
            assert one(c, "SELECT v FROM cat.v_fn WHERE id = %s", (1,)) == (f"a{i}" if i else "a",)
            shapes.sql(f"UPDATE cat.base SET v = 'a{i + 1}' WHERE id = 1", dbname="appdb")  # behind pgrelay
            one(c, "SELECT v, at FROM cat.v_now WHERE id = %s", (1,))
        assert adm.hits() == before, "a view over now() or a user function was served from the cache"
    adm.close()


def test_ddl_through_pgrelay_relearns_the_catalog(pgrelay, shapes, proto):
    """A view created through pgrelay: the catalog is loaded again once the DDL commits, and the
    new view is then cached with its base table as a dependency."""
    r = start(pgrelay)
    adm = Console(r)
    loads = adm.catalog()["loads"]
    with client(r, proto) as c, client(r, "simple") as w:
        w.execute("CREATE VIEW cat.v_new AS SELECT id, v FROM cat.base")
        wait_for(lambda: adm.catalog()["state"] == "loaded" and adm.catalog()["loads"] > loads, 10,
                 what="the catalog loaded again after the DDL")
        assert cached(adm, c, "SELECT v FROM cat.v_new WHERE id = %s", (2,)) == ("b",)
        w.execute("UPDATE cat.base SET v = 'b-new' WHERE id = 2")
        assert one(c, "SELECT v FROM cat.v_new WHERE id = %s", (2,)) == ("b-new",)
        # a view redefined to read another table: the old dependency no longer counts
        assert cached(adm, c, "SELECT count(*) FROM cat.v_new WHERE id = %s", (2,)) == (1,)
        w.execute("CREATE OR REPLACE VIEW cat.v_new AS SELECT id, body AS v FROM cat.docs")
        assert one(c, "SELECT count(*) FROM cat.v_new WHERE id = %s", (2,)) == (0,)  # docs: only 1 is visible
        assert cached(adm, c, "SELECT count(*) FROM cat.v_new WHERE id = %s", (1,)) == (1,)
        w.execute("DELETE FROM cat.doc_acl")
        assert one(c, "SELECT count(*) FROM cat.v_new WHERE id = %s", (1,)) == (0,)
    adm.close()


def test_ddl_around_pgrelay_waits_for_the_periodic_refresh(pgrelay, shapes):
    """A view created directly on PostgreSQL is not in the catalog: its reads are not cached until
    the next periodic load (cache.catalog_refresh), then they are, with the right dependencies."""
    r = start(pgrelay, catalog_refresh="1s")
    adm = Console(r)
    with client(r, "extended") as c, client(r, "simple") as w:
        shapes.sql("CREATE VIEW cat.v_around AS SELECT id, v FROM cat.base; GRANT ALL ON cat.v_around TO app",
                   dbname="appdb")
        assert one(c, "SELECT v FROM cat.v_around WHERE id = %s", (1,)) == ("a",)
        assert cached(adm, c, "SELECT v FROM cat.v_around WHERE id = %s", (1,)) == ("a",)
        w.execute("UPDATE cat.base SET v = 'a-new' WHERE id = 1")
        assert one(c, "SELECT v FROM cat.v_around WHERE id = %s", (1,)) == ("a-new",)
    adm.close()


def test_relation_missing_from_the_catalog_is_not_cached(pgrelay, shapes):
    """A table created around pgrelay after the catalog was loaded (no periodic refresh): reading it
    never uses the cache; SHOW CATALOG says what the cache has."""
    r = start(pgrelay, catalog_refresh=0)
    adm = Console(r)
    row = adm.catalog()
    assert row["state"] == "loaded" and int(row["relations"]) >= 15 and row["loads"] == 1, row
    assert row["last_error"] is None and row["fingerprint"]
    shapes.sql("CREATE TABLE cat.later (id int); INSERT INTO cat.later VALUES (1); GRANT ALL ON cat.later TO app",
               dbname="appdb")
    with client(r, "extended") as c:
        before = adm.hits()
        for i in range(3):
            assert one(c, "SELECT count(*) FROM cat.later") == (1 + i,)
            shapes.sql("INSERT INTO cat.later VALUES (2)", dbname="appdb")
        assert adm.hits() == before
    adm.close()


def test_reload_changes_the_refresh_interval(pgrelay, shapes):
    """cache.catalog_refresh is reconfigured on reload (SIGHUP): from 0 (no periodic load) to 300ms,
    after which a table created around pgrelay is learned and cached."""
    r = start(pgrelay, catalog_refresh=0)
    adm = Console(r)
    shapes.sql("CREATE TABLE cat.reloaded (id int); INSERT INTO cat.reloaded VALUES (1); "
               "GRANT ALL ON cat.reloaded TO app", dbname="appdb")
    time.sleep(0.5)
    assert adm.catalog()["loads"] == 1
    cfg = dict(r.cfg)
    cfg["cache"] = dict(cfg["cache"], catalog_refresh="300ms")
    r.reload(cfg)
    wait_for(lambda: adm.catalog()["loads"] >= 2, 10, what="a periodic load after the reload")
    with client(r, "simple") as c:
        assert cached(adm, c, "SELECT count(*) FROM cat.reloaded") == (1,)
        c.execute("INSERT INTO cat.reloaded VALUES (2)")
        assert one(c, "SELECT count(*) FROM cat.reloaded") == (2,)
    adm.close()


def test_service_without_a_primary_user_caches_nothing(pgrelay, shapes):
    r = pgrelay(cache={"rules": RULES}, admin={"users": ["app"]},
                services={"main": {"primary": {"user": None, "password": None}}})
    r.wait_log("service main has no primary user: pgrelay cannot read its catalog, so none of its reads is cached")
    adm = Console(r)
    assert adm.catalog()["state"] == "no primary user"
    with client(r, "simple") as c:
        before = adm.hits()
        for _ in range(3):
            assert one(c, "SELECT v FROM cat.base WHERE id = 1") == ("a",)
        assert adm.hits() == before
    adm.close()


def test_ddl_through_another_instance_sharing_redis(pgrelay, shapes, redis_single):
    """Two instances sharing Redis, no periodic catalog loads: a view redefined through A makes B
    read its catalog again too (the invalidation message says so), so B's next entries depend on
    the view's new base table."""
    prefix = f"cc{time.monotonic_ns() % 10**8}"
    cache = {"l1": {"max_memory": "16MB"}, "rules": RULES, "catalog_refresh": 0,
             "redis": {"nodes": [redis_single.addr], "timeout": "500ms", "prefix": prefix,
                       "signing_key": "the catalog tests' L2 signing key, 32+ bytes"}}
    a = pgrelay(cache=cache, admin={"users": ["app"]})
    b = pgrelay(cache=cache, admin={"users": ["app"]})
    adm_b = Console(b)
    q = "SELECT count(*) FROM cat.v_two WHERE id = %s"

    def b_reloaded(loads):
        wait_for(lambda: adm_b.catalog()["loads"] >= loads and adm_b.catalog()["state"] == "loaded", 10,
                 what=f"B's catalog read again after A's DDL ({loads} loads)")

    with client(a, "simple") as ca, client(b, "extended") as cb:
        ca.execute("CREATE VIEW cat.v_two AS SELECT id, v FROM cat.base")
        b_reloaded(2)
        assert cached(adm_b, cb, q, (3,)) == (0,)
        ca.execute("CREATE OR REPLACE VIEW cat.v_two AS SELECT id, body AS v FROM cat.docs")
        b_reloaded(3)
        assert one(cb, q, (3,)) == (0,)  # document 3: not visible to app
        assert cached(adm_b, cb, q, (3,)) == (0,)
        ca.execute("INSERT INTO cat.doc_acl VALUES (3)")  # through A: B's entry depends on doc_acl now
        assert one(cb, q, (3,)) == (1,)
    adm_b.close()


# ---------------------------------------------------------------- around pgrelay (WAL listener)


@pytest.fixture
def wal_shapes(pg_logical):
    pg_logical.sql(SHAPES, dbname="appdb")
    yield pg_logical


def test_wal_listener_invalidates_views_and_parents(pgrelay, wal_shapes, proto):
    """Writes made directly on PostgreSQL: the WAL names the base table (not the view) and the
    partition (not its parent); reads of the view and of the parent stop being served within the
    listener's delay. A trigger's write comes through the WAL as a change of its own."""
    from wal_fixtures import WAL_PASSWORD, WAL_USER, drop_slots
    slot = f"pgrelay_catalog_{proto}"
    drop_slots(wal_shapes, [slot])
    r = pgrelay(services={"main": {"primary": {"port": wal_shapes.port}}}, admin={"users": ["app"]},
                cache={"l1": {"max_memory": "16MB"}, "rules": RULES,
                       "wal_listener": {"service": "main", "slot": slot, "user": WAL_USER, "password": WAL_PASSWORD}})
    wait_for(lambda: wal_shapes.sql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active",
                                    dbname="appdb") == "1", 15, what="the WAL listener streaming")
    adm = Console(r)

    def eventually(c, sql, params, want):
        deadline = time.monotonic() + 5
        while one(c, sql, params) != want:
            assert time.monotonic() < deadline, f"{sql} {params} never showed {want}"
            time.sleep(0.05)

    try:
        with client(r, proto) as c:
            assert cached(adm, c, "SELECT v FROM cat.v_base WHERE id = %s", (1,)) == ("a",)
            wal_shapes.sql("UPDATE cat.base SET v = 'around' WHERE id = 1", dbname="appdb")
            eventually(c, "SELECT v FROM cat.v_base WHERE id = %s", (1,), ("around",))
            assert cached(adm, c, "SELECT v FROM cat.parts WHERE id = %s", (2,)) == ("u2",)
            wal_shapes.sql("UPDATE cat.parts_us SET v = 'u2-around' WHERE id = 2", dbname="appdb")
            eventually(c, "SELECT v FROM cat.parts WHERE id = %s", (2,), ("u2-around",))
            assert cached(adm, c, "SELECT n FROM cat.order_stats WHERE n >= %s", (0,)) == (0,)
            wal_shapes.sql("INSERT INTO cat.orders VALUES (7, 70)", dbname="appdb")
            eventually(c, "SELECT n FROM cat.order_stats WHERE n >= %s", (0,), (1,))
    finally:
        adm.close()


# ---------------------------------------------------------------- pgrelay route --catalog


def test_route_reads_the_catalog_when_asked(pgrelay, shapes, tmp_path):
    r = pgrelay(cache={"rules": RULES}, start=False)
    r.write_config()

    def route(*args):
        p = subprocess.run([pgrelay_bin(), "route", "-c", r.cfg_path, *args], capture_output=True, text=True,
                           timeout=60, env=sanitizer_env())
        out = p.stdout + p.stderr
        assert not [ln for ln in out.splitlines() if any(s in ln for s in SANITIZER_PATTERNS)], out
        assert p.returncode == 0, out
        return {ln.split(":", 1)[0]: ln.split(":", 1)[1].strip() for ln in p.stdout.splitlines() if ":" in ln}

    offline = route("SELECT v FROM cat.v_nested WHERE id = 1")
    assert offline["catalog"].startswith("not read (offline)"), offline
    assert offline["depends on"] == "cat.v_nested (and the service's DDL epoch)", offline
    online = route("--catalog", "SELECT v FROM cat.v_nested WHERE id = 1")
    assert online["catalog"].startswith("read from service main's primary ("), online
    assert online["depends on"] == "cat.v_nested, cat.v_base, cat.base (and the service's DDL epoch)", online
    assert route("--catalog", "SELECT * FROM cat.v_now")["cacheable"] == (
        "no: reading cat.v_now is not cacheable: the view of cat.v_now calls pg_catalog.now (stable)")
    assert route("--catalog", "SELECT * FROM cat.nope")["cacheable"] == (
        "no: pgrelay cannot resolve relation cat.nope in service main's catalog")
    inv = route("--catalog", "DELETE FROM cat.parent WHERE id = 1")["invalidates"]
    assert inv.startswith("cat.parent, ") and inv.endswith(" at commit"), inv
    assert sorted(inv[:-len(" at commit")].split(", ")) == ["cat.child_cascade", "cat.child_null", "cat.parent"], inv
    assert route("--catalog", "INSERT INTO cat.orders VALUES (1, 1)")["invalidates"].startswith(
        "everything cached for the service at commit (a write whose effects pgrelay cannot know (trigger, rule): "
        "INSERT of cat.orders: trigger count_order on cat.orders (AFTER ROW) fires on INSERT)")
    ddl = route("CREATE VIEW cat.x AS SELECT 1")
    assert ddl["relearns"] == "the service's catalog, once this commits (DDL)", ddl
