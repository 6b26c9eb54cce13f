"""The result cache and the client's session: a cached result is only ever served to a session that
would read the same rows — same role (row-level security, GRANTs), same search_path, same
settings — on every protocol path (simple Query, extended with the unnamed statement, named
prepared statements prepared before the session changed); session changes pgrelay cannot see turn
the cache off for that client; comment hints count only in comments.

How a test knows what the client was served: the rows differ per role / schema, and a write made
directly on PostgreSQL (around pgrelay, no WAL listener) shows whether a read came from the cache.
"""
import psycopg
import pytest

from conftest import connect, wait_for

RULES = [{"tables": ["docs", "plain", "uncovered_never"], "ttl": "5m"}, {"schema": "cs1", "ttl": "5m"},
         {"schema": "cs2", "ttl": "5m"}]


def cache_section(**over):
    c = {"l1": {"max_memory": "16MB", "max_result": "1MB"}, "rules": RULES}
    c.update(over)
    return c


@pytest.fixture
def session_tables(pg):
    pg.sql("""
DROP SCHEMA IF EXISTS cs1 CASCADE; DROP SCHEMA IF EXISTS cs2 CASCADE;
DROP TABLE IF EXISTS docs, plain, uncovered CASCADE;
DO $$BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'cs_other') THEN
  CREATE ROLE cs_other NOLOGIN; END IF; END$$;
GRANT cs_other TO app;
CREATE TABLE docs (id int, owner text, body text);
INSERT INTO docs VALUES (1, 'app', 'for app'), (2, 'cs_other', 'for other');
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY docs_owner ON docs USING (owner = current_user);
GRANT SELECT ON docs TO app, cs_other;
CREATE TABLE plain (id int, v text);
INSERT INTO plain VALUES (1, 'plain');
GRANT SELECT ON plain TO app;
CREATE TABLE uncovered (id int, v text);
INSERT INTO uncovered VALUES (1, 'u');
GRANT SELECT ON uncovered TO app;
DROP TABLE IF EXISTS tenant_docs;
CREATE TABLE tenant_docs (tenant text, body text);
INSERT INTO tenant_docs VALUES ('a', 'tenant a'), ('b', 'tenant b');
ALTER TABLE tenant_docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_docs_tenant ON tenant_docs USING (tenant = current_setting('app.p69', true));
GRANT SELECT ON tenant_docs TO app;
CREATE SCHEMA cs1; CREATE SCHEMA cs2;
CREATE TABLE cs1.t (v text); INSERT INTO cs1.t VALUES ('one');
CREATE TABLE cs2.t (v text); INSERT INTO cs2.t VALUES ('two');
GRANT USAGE ON SCHEMA cs1, cs2 TO app, cs_other;
GRANT SELECT ON ALL TABLES IN SCHEMA cs1, cs2 TO app, cs_other;
""", dbname="appdb")
    yield pg


@pytest.fixture(params=["simple", "extended", "prepared"])
def proto(request):
    return request.param


def client(relay, proto):
    if proto == "simple":
        return relay.connect(cursor_factory=psycopg.ClientCursor)
    return relay.connect(prepare_threshold=None)


def read(conn, proto, sql, params=None):
    if proto == "prepared":
        return conn.execute(sql, params, prepare=True).fetchall()
    return conn.execute(sql, params).fetchall()


def cache_stats(relay):
    with connect(relay.port, dbname="pgrelay") as admin:
        cur = admin.execute("SHOW CACHE")
        cols = [d.name for d in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall()]
    return {r["tier"]: r for r in rows} if rows and "tier" in rows[0] else rows


def test_set_role_changes_what_a_cached_read_returns(pgrelay, session_tables, proto):
    r = pgrelay(cache=cache_section())
    with client(r, proto) as c:
        q = "SELECT body FROM docs ORDER BY id"
        assert read(c, proto, q) == [("for app",)]
        assert read(c, proto, q) == [("for app",)]  # cached for app
        c.execute("SET ROLE cs_other")
        assert read(c, proto, q) == [("for other",)], "a row of the previous role crossed the RLS boundary"
        assert read(c, proto, q) == [("for other",)]
        c.execute("RESET ROLE")
        assert read(c, proto, q) == [("for app",)]


def test_search_path_changes_what_a_cached_read_returns(pgrelay, session_tables, proto):
    r = pgrelay(cache=cache_section())
    with client(r, proto) as c:
        c.execute("SET search_path = cs1")
        assert read(c, proto, "SELECT v FROM t") == [("one",)]
        assert read(c, proto, "SELECT v FROM t") == [("one",)]
        c.execute("SET search_path = cs2")
        assert read(c, proto, "SELECT v FROM t") == [("two",)], "rows of the same-named table in the old schema"


@pytest.mark.parametrize("comment", ["/* app=web,route=/x */ ", "-- app=web\n", "/* a */ /* b */\n"])
def test_set_search_path_after_a_leading_comment(pgrelay, session_tables, proto, comment):
    r = pgrelay(cache=cache_section())
    with client(r, proto) as c:
        c.execute(comment + "SET search_path = cs1, public")
        assert read(c, proto, "SELECT v FROM t") == [("one",)]
        c.execute(comment + "SET search_path = cs2, public")
        assert read(c, proto, "SELECT v FROM t") == [("two",)]
        # and on another server connection of the pool (pgrelay re-applies tracked settings)
        with client(r, proto) as hog:
            hog.execute("BEGIN")
            hog.execute("SELECT 1")
            assert read(c, proto, "SELECT v FROM t /* other conn */") == [("two",)]
            hog.execute("ROLLBACK")


def test_set_config_is_tracked_like_set(pgrelay, session_tables, proto):
    r = pgrelay(cache=cache_section())
    with client(r, proto) as c:
        c.execute("SELECT set_config('search_path', 'cs1', false)")
        assert read(c, proto, "SELECT v FROM t") == [("one",)]
        c.execute("SELECT pg_catalog.set_config('search_path', 'cs2', false)")
        assert read(c, proto, "SELECT v FROM t") == [("two",)]
        assert read(c, proto, "SELECT current_setting('search_path')") == [("cs2",)]


def test_settings_pgrelay_cannot_see_turn_the_cache_off(pgrelay, session_tables, proto, pg):
    r = pgrelay(cache=cache_section(), admin={"users": ["app"]})
    with client(r, proto) as c:
        assert read(c, proto, "SELECT v FROM plain") == [("plain",)]
        # a setting made where pgrelay cannot read it: the value comes from a table
        c.execute("SELECT set_config('search_path', (SELECT 'cs2'), false)")
        pg.sql("UPDATE plain SET v = 'changed'", dbname="appdb")
        # the cache is off for this client: the read reaches PostgreSQL
        assert read(c, proto, "SELECT v FROM plain") == [("changed",)]
        c.execute("DO $$BEGIN PERFORM set_config('search_path', 'cs1', false); END$$")
        pg.sql("UPDATE plain SET v = 'again'", dbname="appdb")
        assert read(c, proto, "SELECT v FROM plain") == [("again",)]
        c.execute("RESET ALL")
        # a DO block may run DDL: the service's catalog is read again before the cache uses it
        with r.connect(dbname="pgrelay", cursor_factory=psycopg.ClientCursor) as adm:
            wait_for(lambda: adm.execute("SHOW CATALOG").fetchone()[1] == "loaded", 10, what="the catalog reloaded")
        assert read(c, proto, "SELECT v FROM plain") == [("again",)]
        pg.sql("UPDATE plain SET v = 'after reset'", dbname="appdb")
        assert read(c, proto, "SELECT v FROM plain") == [("again",)], "after RESET ALL the cache is on again"
    # another client on the same pool is not hit by the setting pgrelay could not see
    with client(r, proto) as d:
        for _ in range(4):
            assert read(d, proto, "SELECT current_setting('search_path')") == [('"$user", public',)]


def test_many_tracked_settings_all_in_the_key(pgrelay, session_tables, proto):
    """A row-level security policy reads a custom setting: two clients that differ only in the 70th
    setting they made must not share a cached result."""
    r = pgrelay(cache=cache_section(rules=RULES + [{"tables": ["tenant_docs"], "ttl": "5m"}]))
    with client(r, proto) as a, client(r, proto) as b:
        for i in range(70):
            a.execute(f"SET app.p{i:02d} = 'same'")
            b.execute(f"SET app.p{i:02d} = 'same'")
        a.execute("SET app.p69 = 'a'")
        b.execute("SET app.p69 = 'b'")
        q = "SELECT body FROM tenant_docs ORDER BY body"
        assert read(a, proto, q) == [("tenant a",)]
        assert read(a, proto, q) == [("tenant a",)]
        assert read(b, proto, q) == [("tenant b",)], "a result cached for other settings was served"


def test_hints_count_only_in_comments(pgrelay, session_tables, pg, proto):
    r = pgrelay(cache=cache_section())
    with client(r, proto) as c:
        # a string literal that looks like a hint is data, not a hint
        q = "SELECT v, 'pgrelay:nocache' FROM plain"
        assert read(c, proto, q)[0][0] == "plain"
        pg.sql("UPDATE plain SET v = 'behind'", dbname="appdb")
        assert read(c, proto, q)[0][0] == "plain", "the literal turned the cache off"
        q2 = "SELECT v, '/* pgrelay:cache ttl=30s */' FROM uncovered"
        assert read(c, proto, q2)[0][0] == "u"
        pg.sql("UPDATE uncovered SET v = 'u2'", dbname="appdb")
        assert read(c, proto, q2)[0][0] == "u2", "a literal made an uncovered table cacheable"
        # real comment hints still work
        q3 = "SELECT v FROM uncovered /* pgrelay:cache ttl=30s */"
        assert read(c, proto, q3)[0][0] == "u2"
        pg.sql("UPDATE uncovered SET v = 'u3'", dbname="appdb")
        assert read(c, proto, q3)[0][0] == "u2"
        q4 = "SELECT v -- pgrelay:nocache\n FROM plain"
        assert read(c, proto, q4)[0][0] == "behind"
        pg.sql("UPDATE plain SET v = 'behind2'", dbname="appdb")
        assert read(c, proto, q4)[0][0] == "behind2"


def test_set_run_as_a_named_prepared_statement(pgrelay, session_tables):
    """A SET prepared once and executed (Bind/Execute) several times counts at each execution, not
    at its Parse (which executes nothing)."""
    from pgwire import RawConn, message
    from test_replica_batches import bind, data_rows, execute, parse, read_until

    r = pgrelay(cache=cache_section())
    conn = RawConn("127.0.0.1", r.port, timeout=10)
    conn.startup("pwuser", "appdb", password="pwpw")

    def body():
        conn.send(message("Q", b"SELECT body FROM docs ORDER BY id\0"))
        return [x[0] for x in data_rows(read_until(conn, "Z"))]

    def run(stmt):
        conn.send(bind(stmt=stmt) + execute() + message("S"))
        read_until(conn, "Z")

    try:
        assert body() == ["for app"]
        conn.send(parse("SET ROLE cs_other", "setrole") + parse("RESET ROLE", "unsetrole") + message("S"))
        read_until(conn, "Z")
        assert body() == ["for app"], "a Parse executes nothing"
        for _ in range(3):
            run("setrole")
            assert body() == ["for other"]
            run("unsetrole")
            assert body() == ["for app"]
    finally:
        conn.close()


def current_search_path(relay, conn, proto):
    """The client's search_path as a server connection other than its last one sees it (another
    client holds that one in a transaction): what pgrelay re-applies, not what one server kept."""
    with client(relay, proto) as hog:
        hog.execute("BEGIN")
        hog.execute("SELECT 1")
        got = read(conn, proto, "SELECT current_setting('search_path')")[0][0]
        hog.execute("ROLLBACK")
    return got


@pytest.mark.parametrize("case", ["rollback-to-after-set", "rollback-to-before-set", "release", "error-rollback",
                                  "error-rollback-to"])
def test_settings_follow_savepoints(pgrelay, session_tables, proto, case):
    r = pgrelay(cache=cache_section())
    steps, expect = {
        "rollback-to-after-set": (["BEGIN", "SET search_path = cs1", "SAVEPOINT s", "SET search_path = cs2",
                                   "ROLLBACK TO SAVEPOINT s", "COMMIT"], "cs1"),
        "rollback-to-before-set": (["BEGIN", "SAVEPOINT s", "SET search_path = cs2", "ROLLBACK TO s", "COMMIT"],
                                   '"$user", public'),
        "release": (["BEGIN", "SAVEPOINT s", "SET search_path = cs2", "RELEASE s", "COMMIT"], "cs2"),
        "error-rollback": (["BEGIN", "SET search_path = cs2", "SELECT 1/0", "ROLLBACK"], '"$user", public'),
        "error-rollback-to": (["BEGIN", "SET search_path = cs1", "SAVEPOINT s", "SET search_path = cs2",
                               "SELECT 1/0", "ROLLBACK TO s", "COMMIT"], "cs1"),
    }[case]
    with client(r, proto) as c:
        for sql in steps:
            try:
                c.execute(sql, prepare=True) if proto == "prepared" else c.execute(sql)
            except psycopg.errors.DivisionByZero:
                pass
        assert current_search_path(r, c, proto) == expect
        if expect.startswith("cs"):
            assert read(c, proto, "SELECT v FROM t") == [({"cs1": "one", "cs2": "two"}[expect],)]
