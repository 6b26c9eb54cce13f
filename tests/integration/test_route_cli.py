"""`pgrelay route`: where a statement would go and why, without a server (exit 0 / 1 / 2)."""
import os
import subprocess

from conftest import SANITIZER_PATTERNS, pgrelay_bin, sanitizer_env

CONFIG = """\
databases:
  app: { service: users }
  shop: { service: orders }
services:
  users:
    primary: { host: 10.0.0.1, dbname: users }
    replicas: [ { host: 10.0.0.2 }, { host: 10.0.0.3, port: 5433 } ]
    reads: replicas
    functions: { read_only: [my_lookup] }
  orders:
    primary: { host: 10.0.1.1, dbname: orders }
routes:
  - { schema: billing, service: orders, reads: primary }
  - { tables: [orders, "order_*"], service: orders }
  - { tables: ["user*"], service: users, reads: replicas }
"""


def route(tmp_path, *args, config=CONFIG):
    path = os.path.join(tmp_path, "proxy.yaml")
    with open(path, "w") as f:
        f.write(config)
    r = subprocess.run([pgrelay_bin(), "route", "-c", path, *args], capture_output=True, text=True, timeout=30,
                       env=sanitizer_env())
    out = r.stdout + r.stderr
    bad = [ln for ln in out.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
    assert not bad, "sanitizer report:\n" + out
    return r


def field(out, name):
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name}: line in\n{out}")


def test_table_rule_primary_for_writes(tmp_path):
    r = route(tmp_path, "INSERT INTO order_items SELECT * FROM orders WHERE id = nextval('s')")
    assert r.returncode == 0, r.stderr
    assert field(r.stdout, "service") == "orders"
    assert field(r.stdout, "target").startswith("primary 10.0.1.1:5432 dbname orders")
    assert field(r.stdout, "rule").startswith("routes[1] at line 14: { tables: [orders, order_*], service: orders")
    assert "order_items" in r.stdout and "INSERT: write" in r.stdout
    assert "nextval()                    writes: built-in with effects beyond the statement" in r.stdout


def test_read_goes_to_replica_and_search_path_is_explained(tmp_path):
    r = route(tmp_path, "--search-path", "billing, public", "SELECT u.*, now() FROM users u")
    assert r.returncode == 0, r.stderr
    # billing comes first in the path and rule 0 claims every name in it
    assert field(r.stdout, "service") == "orders"
    assert "search_path billing, public -> schema billing -> service orders" in r.stdout
    r = route(tmp_path, "SELECT u.*, now(), my_lookup(id) FROM users u")
    assert field(r.stdout, "service") == "users"
    assert field(r.stdout, "target").startswith("replica (2 configured: 10.0.0.2:5432 10.0.0.3:5433")
    assert field(r.stdout, "read-only") == "yes"
    assert "my_lookup()                  read-safe: declared in functions.read_only" in r.stdout


def test_no_rule_is_database_default(tmp_path):
    r = route(tmp_path, "--database", "shop", "SELECT * FROM somewhere JOIN pg_class ON true")
    assert r.returncode == 0, r.stderr
    assert field(r.stdout, "rule") == "no rule: database default (shop -> service orders)"
    assert "system catalog" in r.stdout
    r = route(tmp_path, "SELECT 1")  # the first database: app -> users
    assert field(r.stdout, "service") == "users"


def test_cross_service_is_refused(tmp_path):
    r = route(tmp_path, "SELECT * FROM orders JOIN users USING (id)")
    assert r.returncode == 1
    assert ('ERROR:  pgrelay cannot run one query on two services: relation "orders" belongs to service '
            '"orders", relation "users" to service "users"') in r.stdout
    assert "0A000" in r.stdout


def test_parse_error_goes_to_default_primary(tmp_path):
    r = route(tmp_path, "SELEC 1")
    assert r.returncode == 0
    assert "parse error: syntax error" in r.stdout
    assert field(r.stdout, "target").startswith("primary 10.0.0.1")


def test_config_and_usage_errors(tmp_path):
    r = route(tmp_path, "SELECT 1", config=CONFIG + "  - { tables: [x], service: nope }\n")
    assert r.returncode == 1
    assert "proxy.yaml:16:29: routes[3].service names an unknown service" in r.stderr and "unknown service" in r.stderr
    assert route(tmp_path).returncode == 2                                   # no SQL
    assert route(tmp_path, "SELECT 1", "SELECT 2").returncode == 2           # two
    r = route(tmp_path, "--database", "nope", "SELECT 1")
    assert r.returncode == 2 and 'no database "nope"' in r.stderr
    r = subprocess.run([pgrelay_bin(), "route", "SELECT 1"], capture_output=True, text=True, env=sanitizer_env())
    assert r.returncode == 2


CACHE_CONFIG = CONFIG + """\
cache:
  rules:
    - { tables: [products, "user*"], ttl: 5m }
    - { schema: billing, ttl: 0 }
  invalidate:
    - { table: orders, also: [order_totals] }
"""


def test_route_says_whether_a_statement_is_cacheable(tmp_path):
    r = route(tmp_path, "SELECT * FROM users WHERE id = 1", config=CACHE_CONFIG)
    assert r.returncode == 0, r.stderr
    assert field(r.stdout, "cacheable").startswith("yes, ttl 300.000s (cache.rules[0] at line"), r.stdout
    assert "public.users" in field(r.stdout, "depends on")
    r = route(tmp_path, "SELECT now(), * FROM users", config=CACHE_CONFIG)
    assert field(r.stdout, "cacheable") == "no: it calls now(), which gives a different answer without any table changing"
    r = route(tmp_path, "SELECT * FROM billing.invoices", config=CACHE_CONFIG)
    assert "ttl 0" in field(r.stdout, "cacheable")
    r = route(tmp_path, "SELECT * FROM orders", config=CACHE_CONFIG)
    assert field(r.stdout, "cacheable") == "no: no cache rule covers orders"
    r = route(tmp_path, "/* pgrelay:cache ttl=9s */ SELECT * FROM orders", config=CACHE_CONFIG)
    assert field(r.stdout, "cacheable").startswith("yes, ttl 9.000s from the statement's pgrelay:cache hint")
    r = route(tmp_path, "DELETE FROM orders WHERE id = 1", config=CACHE_CONFIG)
    assert field(r.stdout, "cacheable") == "no: it is not a SELECT (DELETE)"
    assert field(r.stdout, "invalidates") == "public.orders, public.order_totals at commit"
    r = route(tmp_path, "ALTER TABLE users ADD COLUMN x int", config=CACHE_CONFIG)
    assert field(r.stdout, "invalidates").startswith("everything cached for the service at commit (DDL)")
    # without a cache section
    r = route(tmp_path, "SELECT * FROM users")
    assert field(r.stdout, "cacheable").startswith("no: the cache is off")


def test_route_shows_row_keys(tmp_path):
    config = CONFIG + """\
cache:
  rules:
    - { schema: shop, key: id, ttl: 5m }
"""
    r = route(tmp_path, "SELECT * FROM shop.carts WHERE id = 5", config=config)
    assert r.returncode == 0, r.stderr
    assert field(r.stdout, "row keys") == "cache.rules[0] says rows are identified by column id", r.stdout
    deps = field(r.stdout, "depends on")
    assert "shop.carts (rows whose key is in bucket " in deps and "shop.carts (writes of rows not known)" in deps
    r = route(tmp_path, "SELECT * FROM shop.carts WHERE id = $1", config=config)
    assert "its value is a parameter" in r.stdout
    r = route(tmp_path, "UPDATE shop.carts SET total = 1 WHERE id = '5'", config=config)
    assert field(r.stdout, "invalidates").startswith("shop.carts, shop.carts (rows whose key is in bucket "), r.stdout
    r = route(tmp_path, "UPDATE shop.carts SET total = 1 WHERE id = $1", config=config)
    assert field(r.stdout, "row keys").startswith("the written rows' key is a parameter"), r.stdout
    r = route(tmp_path, "UPDATE shop.carts SET total = 1", config=config)
    assert field(r.stdout, "invalidates") == "shop.carts, shop.carts (writes of rows not known) at commit"
