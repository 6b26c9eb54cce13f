"""Reload (SIGHUP) by the key table: each changed key is applied, or logged as needing a restart
with the running value kept (SHOW CONFIG shows which), a reload-applied key and a restart-only
key (where the section has one) per section; and the result cache keeps what a reload does not
change: a pool size change keeps hits, a cache rule change or a service's routing change drops the
affected entries, the cache turned off (and on again) by a reload."""
import copy

import psycopg
import pytest

from conftest import APP_PASSWORD, connect, wait_for

ADMIN = {"users": ["app"]}


def config_rows(relay):
    with relay.connect(dbname="pgrelay", cursor_factory=psycopg.ClientCursor) as c:
        cur = c.execute("SHOW CONFIG")
        assert [d.name for d in cur.description] == ["key", "value", "default", "changeable", "applies"]
        return {row[0]: row for row in cur.fetchall()}


def set_path(cfg, path, value):
    node = cfg
    keys = path.split(".")
    for k in keys[:-1]:
        node = node.setdefault(k, {})
    node[keys[-1]] = value


# (the key as SHOW CONFIG names it, the YAML path to change, the new value, SHOW CONFIG's value
# after the reload, the key's class). One reload-applied key per section, and the restart-only keys
# where a section has some (listen, cache); a unit test checks every key's class in the table.
CASES = [
    ("listen.max_client_conn", "listen.max_client_conn", 150, "150", "reload"),
    ("listen.backlog", "listen.backlog", 512, "1024", "restart"),
    ("listen.upgrade_socket", "listen.upgrade_socket", "", None, "restart"),
    ("log.slow_query", "log.slow_query", "5s", "5s", "reload"),
    ("proxy.application_name", "proxy.application_name", "relay-reloaded", "relay-reloaded", "reload"),
    ("services.main.pool.max", "services.main.pool.max", 6, "6", "reload"),
    ("services.main.primary.port", None, None, None, "reload"),  # the class only: moving it is tested elsewhere
    ("databases.appdb.pool_mode", "databases.appdb.pool_mode", "session", "session", "reload"),
    ("health.fail_after", "health.fail_after", 5, "5", "reload"),
    ("admin.histograms", "admin.histograms", False, "false", "reload"),
    ("cache.ttl", "cache.ttl", "2m", "120s", "reload"),
    ("cache.l1.max_memory", "cache.l1.max_memory", "8MB", "8MB", "reload"),
    ("cache.l1.max_result", "cache.l1.max_result", "2MB", "1MB", "restart"),
]


@pytest.mark.parametrize("key,path,value,shown,cls", CASES, ids=[c[0] for c in CASES])
def test_a_reload_applies_or_keeps_each_key(pgrelay, key, path, value, shown, cls):
    r = pgrelay(admin=ADMIN, cache={"l1": {"max_memory": "16MB"}, "rules": [{"tables": ["nothing_here"]}]})
    before = config_rows(r)
    assert before[key][4] == cls and before[key][3] == ("no" if cls == "restart" else "yes")
    if path is None:
        return
    old = before[key][1]
    cfg = copy.deepcopy(r.cfg)
    set_path(cfg, path, value)
    r.reload(cfg)
    after = config_rows(r)
    log = r.log()
    if cls == "restart":
        assert f"{key} changed ({old if old is not None else '(none)'} -> " in log, log
        assert "this needs a restart" in log
        assert after[key][1] == old  # the running value is kept
    else:
        assert f"{key}: " in log and "this needs a restart" not in log, log
        assert after[key][1] == shown
    assert r.psql("SELECT 'still serving'").stdout.strip() == "still serving"


def test_reload_applies_users_routes_and_access(pgrelay):
    """Sections that are lists of sections: a user added, a route added, an access rule added."""
    r = pgrelay(admin=ADMIN)
    cfg = copy.deepcopy(r.cfg)
    cfg["users"].append({"name": "late", "password": "late-secret", "auth": "password"})
    cfg["routes"] = [{"tables": ["routed_t"], "service": "main"}]
    cfg["access"] = [{"database": "all", "user": "all", "address": "127.0.0.1", "method": "scram-sha-256"},
                     {"database": "all", "user": "all", "address": "all", "method": "reject"}]
    r.reload(cfg)
    log = r.log()
    assert "users: 3 -> 4" in log and "routes: 0 -> 1" in log and "access: 0 -> 2" in log
    rows = config_rows(r)
    assert rows["users[3].name"][1] == "late"
    assert rows["users[3].password"][1] == "********"  # secrets are masked
    assert rows["routes[0].tables"][1] == "routed_t"
    assert rows["access[0].address"][1] == "127.0.0.1/32"
    with connect(r.port, user="late", password="late-secret") as c:
        assert c.execute("SELECT 1").fetchone() == (1,)
    assert "late-secret" not in log


# ---------------------------------------------------------------- the cache across reloads

RULES = [{"tables": ["reload_items"], "ttl": "5m"}]


@pytest.fixture
def items(pg):
    pg.sql("""
DROP TABLE IF EXISTS reload_items;
CREATE TABLE reload_items (id int PRIMARY KEY, val text);
INSERT INTO reload_items VALUES (1, 'a');
GRANT ALL ON reload_items TO app;
""", dbname="appdb")
    yield pg


def read(c):
    return c.execute("SELECT val FROM reload_items WHERE id = 1").fetchone()[0]


def behind(pg, val):
    """A write pgrelay does not see: only a cached result still shows the old value."""
    pg.sql(f"UPDATE reload_items SET val = '{val}' WHERE id = 1", dbname="appdb")


def hits(relay):
    with relay.connect(dbname="pgrelay", cursor_factory=psycopg.ClientCursor) as a:
        return next(int(row[3]) for row in a.execute("SHOW CACHE").fetchall() if row[0] == "total")


def cached_relay(pgrelay, **over):
    cache = {"l1": {"max_memory": "16MB"}, "rules": RULES}
    cache.update(over)
    return pgrelay(admin=ADMIN, cache=cache)


def test_pool_size_reload_keeps_cached_results(pgrelay, items):
    r = cached_relay(pgrelay)
    with r.connect(cursor_factory=psycopg.ClientCursor) as c:
        assert read(c) == "a"
        behind(items, "behind")
        assert read(c) == "a"
        for n in (5, 6, 7, 8):  # a pool size change, again and again, under a cached read
            cfg = copy.deepcopy(r.cfg)
            cfg["services"]["main"]["pool"]["max"] = n
            r.reload(cfg)
            h = hits(r)
            assert read(c) == "a", "a pool size change dropped a cached result"
            assert hits(r) == h + 1


@pytest.mark.parametrize("change", ["ttl", "not cached", "key"])
def test_cache_rule_reload_drops_what_it_changes(pgrelay, items, change):
    r = cached_relay(pgrelay)
    with r.connect(cursor_factory=psycopg.ClientCursor) as c:
        assert read(c) == "a"
        behind(items, "b")
        assert read(c) == "a"
        cfg = copy.deepcopy(r.cfg)
        rule = cfg["cache"]["rules"][0]
        if change == "ttl":
            rule["ttl"] = "1m"
        elif change == "not cached":
            rule["ttl"] = 0
        else:
            rule["key"] = "id"
        r.reload(cfg)
        assert read(c) == "b", "an entry made under the old rule was served"
        behind(items, "c")
        assert read(c) == ("c" if change == "not cached" else "b")


def test_service_change_drops_its_cached_results(pgrelay, items):
    """A change to what a service's results depend on (its functions, here) drops its entries."""
    r = cached_relay(pgrelay)
    with r.connect(cursor_factory=psycopg.ClientCursor) as c:
        assert read(c) == "a"
        behind(items, "b")
        assert read(c) == "a"
        cfg = copy.deepcopy(r.cfg)
        cfg["services"]["main"]["functions"] = {"read_only": ["my_lookup"]}
        r.reload(cfg)
        assert read(c) == "b"


def test_cache_turned_off_and_on_by_reload(pgrelay, items):
    r = cached_relay(pgrelay)
    with r.connect(cursor_factory=psycopg.ClientCursor) as c:
        assert read(c) == "a"
        behind(items, "b")
        assert read(c) == "a"
        cfg = copy.deepcopy(r.cfg)
        del cfg["cache"]
        r.reload(cfg)
        assert "cache: off" in r.log()
        assert read(c) == "b"
        behind(items, "c")
        assert read(c) == "c", "a result was served from the cache after it was turned off"
        loads = r.log().count("catalog loaded")
        r.reload(copy.deepcopy(cfg) | {"cache": {"l1": {"max_memory": "16MB"}, "rules": RULES}})
        assert "cache: on" in r.log()
        r.wait_log("catalog loaded", count=loads + 1)
        assert read(c) == "c"  # nothing kept from before: filled again
        behind(items, "d")
        assert read(c) == "c", "the cache turned on again serves nothing"


@pytest.mark.parametrize("protocol", ["simple", "extended"])
def test_transaction_open_when_the_cache_is_turned_on_invalidates_at_commit(pgrelay, items, protocol):
    """A transaction that wrote while the cache was off (nothing noted what it wrote) and commits
    after a reload turned the cache on: a result cached in between, from before its commit, must
    not be served after it."""
    r = pgrelay(admin=ADMIN)  # the cache off
    cfg = copy.deepcopy(r.cfg)
    with r.connect(cursor_factory=psycopg.ClientCursor if protocol == "simple" else psycopg.Cursor) as w:
        w.execute("BEGIN")
        w.execute("UPDATE reload_items SET val = 'committed later' WHERE id = 1")
        loads = r.log().count("catalog loaded")
        r.reload(cfg | {"cache": {"l1": {"max_memory": "16MB"}, "rules": RULES}})
        assert "cache: on" in r.log()
        r.wait_log("catalog loaded", count=loads + 1)
        with r.connect(cursor_factory=psycopg.ClientCursor) as c:
            assert read(c) == "a"
            assert read(c) == "a"  # a hit, filled before the commit
            h = hits(r)
            w.execute("COMMIT")
            assert read(c) == "committed later", "a result from before the commit was served after it"
            assert read(c) == "committed later"
            assert hits(r) == h + 1  # the cache works again afterwards
