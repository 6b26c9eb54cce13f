"""Statement routing end to end, against real servers: the session PostgreSQL `pg` (service
`main`, database appdb, the default service of the client database appdb), a second independent
PostgreSQL `pg2` (service `orders`, database `orders`, the default service of the client database
ordersdb) and, for the replica tests, the streaming replica of `pg` made with pg_basebackup.

Every check proves from the server side where a statement ran: inet_server_port() and
current_database() (the two services differ in both), pg_is_in_recovery() (replica or primary),
rows or relations that only one server has (a statement sent to the wrong server fails with
"relation does not exist"), pg_backend_pid() for "one backend", pg_stat_activity for "nothing open
on the server", and the servers' own statement logs for "nothing was sent".
"""
import datetime
import os
import re
import signal
import socket
import subprocess
import threading
import time
import uuid

import psycopg
import pytest
from psycopg.pq import TransactionStatus

from conftest import APP_PASSWORD, PGBENCH, deep_merge, pgbench, pgrelay_bin, sanitizer_env, wait_for

ORDERS_DB = "orders"

# What each statement reports about where it ran: (port, database, in recovery).
WHERE = "inet_server_port(), current_database()::text, pg_is_in_recovery()"

ROUTES = [
    {"schema": "billing", "service": "orders"},                                   # routes[0]: schema rule
    {"tables": ["orders", "order_*", "archive.old_*"], "service": "orders"},      # routes[1]: exact, glob, "s.t"
]

# Objects of service main (pg, database appdb; the replica has them too).
MAIN_SQL = """
SET ROLE app;
CREATE TABLE rt_users (id int PRIMARY KEY, name text);
INSERT INTO rt_users VALUES (1, 'ann'), (2, 'bob');
CREATE TABLE invoices (id int, amount int);
INSERT INTO invoices VALUES (1, -1);
CREATE SCHEMA archive;
CREATE TABLE archive.current (id int);
INSERT INTO archive.current VALUES (2024);
CREATE TABLE rt_marks (tag text);
CREATE TABLE rw_items (id serial PRIMARY KEY, v text);
CREATE SEQUENCE rw_seq;
CREATE FUNCTION rw_touch(t text) RETURNS boolean LANGUAGE sql
    AS $$ INSERT INTO rw_items (v) VALUES (t); SELECT pg_is_in_recovery() $$;
CREATE FUNCTION rw_lookup() RETURNS boolean LANGUAGE sql STABLE AS $$ SELECT pg_is_in_recovery() $$;
CREATE TABLE ryw_notes (tag text);
"""

# Objects of service orders (pg2, database orders). billing.invoices and public.invoices (pg) differ
# on purpose: which one a query saw tells which server ran it.
ORDERS_SQL = """
SET ROLE app;
CREATE TABLE orders (id int PRIMARY KEY, note text);
INSERT INTO orders VALUES (1, 'o1'), (2, 'o2'), (3, 'o3');
CREATE TABLE order_items (order_id int, qty int);
INSERT INTO order_items VALUES (1, 1), (1, 2), (2, 5);
CREATE SCHEMA billing;
CREATE TABLE billing.invoices (id int, amount int);
INSERT INTO billing.invoices VALUES (1, 100), (2, 250);
CREATE SCHEMA archive;
CREATE TABLE archive.old_2023 (id int);
INSERT INTO archive.old_2023 VALUES (2023);
CREATE TABLE ledger (id int);
INSERT INTO ledger VALUES (7);
CREATE TABLE order_marks (tag text);
"""

HEALTH_MS = 300


@pytest.fixture(scope="module")
def dbs(pg, pg2):
    # shared with other modules (test_replica_batches imports it): made once per session
    if pg.sql("SELECT to_regclass('public.rt_users') IS NOT NULL", dbname="appdb") == "t":
        return True
    pg.sql(MAIN_SQL, dbname="appdb")
    pg2.sql(f"CREATE DATABASE {ORDERS_DB} OWNER app")
    pg2.sql(ORDERS_SQL, dbname=ORDERS_DB)
    return True


@pytest.fixture
def replica(pg_replica, dbs):
    """The session replica, running, replaying and having this module's tables, before and after."""
    pg_replica.ensure_running()
    wait_for(lambda: pg_replica.sql("SELECT to_regclass('public.ryw_notes') IS NOT NULL", dbname="appdb") == "t",
             20, 0.1, what="the replica to replay this module's tables")
    yield pg_replica
    pg_replica.ensure_running()


def orders_service(pg2, **over):
    svc = {"primary": {"host": "127.0.0.1", "port": pg2.port, "dbname": ORDERS_DB, "user": "app",
                       "password": APP_PASSWORD},
           "pool": {"max": 4, "min": 0, "connect_timeout": "5s", "query_wait_timeout": "20s"}}
    return deep_merge(svc, over)


def replica_main(replica, **over):
    """services.main with the replica, reads to replicas, and declared functions."""
    return deep_merge({"replicas": [replica.backend()], "reads": "replicas",
                       "functions": {"writes": ["rw_touch"], "read_only": ["rw_lookup"]}}, over)


def health(**over):
    return dict({"interval": f"{HEALTH_MS}ms", "timeout": "1s", "fail_after": 3, "recover_after": 2}, **over)


def routed(pgrelay, pg2, *, routes=ROUTES, main=None, orders=None, **sections):
    """A pgrelay with services main (pg) and orders (pg2), the routes, and a client database
    ordersdb whose default service is orders."""
    services = {"orders": orders_service(pg2, **(orders or {}))}
    if main:
        services["main"] = main
    return pgrelay(services=services, routes=routes,
                   databases={"ordersdb": {"service": "orders", "pool_mode": "transaction"}}, **sections)


STATEMENT_DEADLINE = 10  # seconds a statement may take through pgrelay before the test gives up on it


class NoAnswer(AssertionError):
    pass


def _cut(conn, fired):
    """Shuts the client's socket down so that a statement pgrelay never answers fails instead of
    blocking the test (the per-test timeout would cost minutes)."""
    fired.append(True)
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def ex(conn, sql, proto="simple", deadline=STATEMENT_DEADLINE):
    """Runs sql through the simple protocol (Query), the extended one (unnamed Parse/Bind/Execute;
    binary=True makes psycopg use it without parameters) or a named prepared statement. A statement
    not answered within deadline seconds raises NoAnswer (and leaves the connection broken)."""
    fired = []
    timer = threading.Timer(deadline, _cut, (conn, fired))
    timer.daemon = True
    timer.start()
    try:
        if proto == "simple":
            return conn.execute(sql)
        if proto == "prepared":
            return conn.execute(sql, prepare=True)
        assert proto == "extended"
        return conn.execute(sql, binary=True)
    except psycopg.OperationalError as e:
        if fired:
            raise NoAnswer(f"pgrelay did not answer within {deadline} s ({proto} protocol): {sql}") from e
        raise
    finally:
        timer.cancel()


def row(conn, sql, proto="simple", deadline=STATEMENT_DEADLINE):
    return tuple(ex(conn, sql, proto, deadline).fetchone())


def main_at(pg):
    return (pg.port, "appdb", False)


def orders_at(pg2):
    return (pg2.port, ORDERS_DB, False)


def replica_at(replica):
    return (replica.port, "appdb", True)


def open_xacts(server, db):
    """Backends of db (other than the health checker's) inside a transaction, as (pid, state)."""
    out = server.sql(f"SELECT pid, state FROM pg_stat_activity WHERE datname = '{db}' AND xact_start IS NOT NULL "
                     "AND application_name <> 'pgrelay-health' AND pid <> pg_backend_pid()")
    return [tuple(ln.split("|")) for ln in out.splitlines() if ln]


def wait_reads_on_replica(conn, replica, timeout=15):
    """Polls until a plain read through conn is served by the replica."""
    sql = f"SELECT {WHERE} FROM rt_users LIMIT 1"
    wait_for(lambda: row(conn, sql) == replica_at(replica), timeout, 0.1, what="reads to be served by the replica")


# ----------------------------------------------------------------------------- 1. rules


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_each_rule_kind_routes_to_its_server(pgrelay, pg, pg2, dbs, proto):
    r = routed(pgrelay, pg2)
    MAIN, ORD = main_at(pg), orders_at(pg2)
    cases = [
        # routes[0], schema rule
        (f"SELECT {WHERE}, sum(amount) FROM billing.invoices", ORD, 350),
        # routes[1], exact table name
        (f"SELECT {WHERE}, count(*) FROM orders", ORD, 3),
        # routes[1], glob order_*
        (f"SELECT {WHERE}, sum(qty) FROM order_items", ORD, 8),
        # routes[1], "archive.old_*": schema and name
        (f"SELECT {WHERE}, min(id) FROM archive.old_2023", ORD, 2023),
        # the same schema, a name the pattern does not match: no rule, the database's service
        (f"SELECT {WHERE}, min(id) FROM archive.current", MAIN, 2024),
        # unqualified, default search_path ("$user", public): no rule matches public.invoices
        (f"SELECT {WHERE}, sum(amount) FROM invoices", MAIN, -1),
        # no rule at all
        (f"SELECT {WHERE}, count(*) FROM rt_users", MAIN, 2),
        # a JOIN of one service's tables
        (f"SELECT {WHERE}, count(*) FROM orders o JOIN order_items i ON i.order_id = o.id", ORD, 3),
        # the outer query names nothing, its subqueries do
        (f"SELECT {WHERE}, (SELECT count(*) FROM order_items WHERE order_id IN "
         f"(SELECT id FROM orders WHERE note = 'o1'))", ORD, 2),
        # a CTE (its name is no relation)
        (f"WITH big AS (SELECT * FROM billing.invoices WHERE amount > 150) SELECT {WHERE}, count(*) FROM big",
         ORD, 1),
        # catalogs go along with the service's tables (order_items exists on pg2 only)
        (f"SELECT {WHERE}, count(*) FROM orders WHERE EXISTS "
         f"(SELECT 1 FROM pg_catalog.pg_class WHERE relname = 'order_items')", ORD, 3),
        # nothing named: the database's service
        (f"SELECT {WHERE}, 42", MAIN, 42),
    ]
    with r.connect() as conn:
        for sql, where, value in cases:
            assert row(conn, sql, proto) == (*where, value), sql

        # Writes naming one service's tables: INSERT ... SELECT, UPDATE ... FROM, DELETE ... USING.
        tag = f"t{uuid.uuid4().hex[:10]}"
        got = ex(conn, f"INSERT INTO order_marks (tag) SELECT '{tag}' || note FROM orders WHERE id <= 2 "
                       f"RETURNING {WHERE}", proto).fetchall()
        assert [tuple(x) for x in got] == [ORD, ORD]
        assert pg2.sql(f"SELECT string_agg(tag, ',' ORDER BY tag) FROM order_marks WHERE tag LIKE '{tag}%'",
                       dbname=ORDERS_DB) == f"{tag}o1,{tag}o2"
        got = ex(conn, f"UPDATE order_items i SET qty = i.qty FROM orders o WHERE o.id = i.order_id AND o.note = 'o2' "
                       f"RETURNING {WHERE}, i.qty", proto).fetchall()
        assert [tuple(x) for x in got] == [(*ORD, 5)]
        got = ex(conn, f"DELETE FROM order_marks m USING orders o WHERE m.tag = '{tag}' || o.note "
                       f"RETURNING {WHERE}", proto).fetchall()
        assert len(got) == 2 and all(tuple(x) == ORD for x in got)
        assert pg2.sql(f"SELECT count(*) FROM order_marks WHERE tag LIKE '{tag}%'", dbname=ORDERS_DB) == "0"


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_unqualified_names_follow_the_clients_search_path(pgrelay, pg, pg2, dbs, proto):
    r = routed(pgrelay, pg2)
    MAIN, ORD = main_at(pg), orders_at(pg2)
    with r.connect(options="-c search_path=billing") as conn:
        # routes[0] claims schema billing: unqualified invoices is billing.invoices on pg2, not pg's
        # public.invoices
        assert row(conn, f"SELECT {WHERE}, sum(amount) FROM invoices", proto) == (*ORD, 350)
        # qualified names do not look at the search_path
        assert row(conn, f"SELECT {WHERE}, sum(amount) FROM public.invoices", proto) == (*MAIN, -1)
        assert row(conn, f"SELECT {WHERE}, count(*) FROM public.rt_users", proto) == (*MAIN, 2)
    with r.connect(options="-c search_path=public") as conn:
        assert row(conn, f"SELECT {WHERE}, sum(amount) FROM invoices", proto) == (*MAIN, -1)
        # no rule for public.orders: the tables-only rule then matches the bare name
        assert row(conn, f"SELECT {WHERE}, count(*) FROM orders", proto) == (*ORD, 3)
    with r.connect() as conn:  # no search_path given: "$user", public
        assert row(conn, f"SELECT {WHERE}, sum(amount) FROM invoices", proto) == (*MAIN, -1)


def test_search_path_list_in_startup_options(pgrelay, pg, pg2, dbs):
    """-c search_path=billing,public: the servers behind pgrelay get the same search_path a direct
    connection gets, on every service, and routing follows it."""
    r = routed(pgrelay, pg2)
    opts = "-c search_path=billing,public"
    with psycopg.connect(host="127.0.0.1", port=pg2.port, user="app", password=APP_PASSWORD, dbname=ORDERS_DB,
                         options=opts, autocommit=True) as direct:
        expected = direct.execute("SELECT current_setting('search_path')").fetchone()[0]
    assert expected == "billing,public"
    with r.connect(options=opts) as conn:
        # routing: billing first, and routes[0] claims it
        got_main = row(conn, "SELECT inet_server_port(), current_setting('search_path') FROM public.rt_users LIMIT 1")
        got_orders = row(conn, "SELECT inet_server_port(), current_setting('search_path') FROM billing.invoices LIMIT 1")
        assert (got_main, got_orders) == ((pg.port, expected), (pg2.port, expected))
        assert row(conn, f"SELECT {WHERE}, sum(amount) FROM invoices") == (*orders_at(pg2), 350)
        # routes[0] claims every unqualified name (pgrelay cannot know which schema has it);
        # PostgreSQL on pg2 then finds public.ledger, which only pg2 has
        assert row(conn, f"SELECT {WHERE}, min(id) FROM ledger") == (*orders_at(pg2), 7)


def test_database_default_service(pgrelay, pg, pg2, dbs):
    r = routed(pgrelay, pg2)
    with r.connect(dbname="ordersdb") as conn:
        # ledger: no rule; ordersdb's service is orders
        assert row(conn, f"SELECT {WHERE}, min(id) FROM ledger") == (*orders_at(pg2), 7)
        assert row(conn, f"SELECT {WHERE}") == orders_at(pg2)
        # rules still apply: archive.current is no rule's, so it stays on orders (where it does not exist)
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM archive.current")
        assert row(conn, f"SELECT {WHERE}, count(*) FROM billing.invoices") == (*orders_at(pg2), 2)
    with r.connect() as conn:
        assert row(conn, f"SELECT {WHERE}") == main_at(pg)
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM ledger")  # appdb -> main (pg), which has no ledger


# ----------------------------------------------------------------------------- 2. cross-service


@pytest.fixture
def statement_log(pg, pg2, dbs):
    """log_statement = all for app's new sessions in both service databases: what reached a server."""
    pg.sql("ALTER ROLE app IN DATABASE appdb SET log_statement = 'all'")
    pg2.sql(f"ALTER ROLE app IN DATABASE {ORDERS_DB} SET log_statement = 'all'")
    yield
    pg.sql("ALTER ROLE app IN DATABASE appdb RESET log_statement")
    pg2.sql(f"ALTER ROLE app IN DATABASE {ORDERS_DB} RESET log_statement")


def read_text(path):
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


@pytest.mark.parametrize("proto", ["simple", "extended", "prepared"])
def test_cross_service_statement_refused_before_any_server(pgrelay, pg, pg2, dbs, statement_log, proto):
    r = routed(pgrelay, pg2)
    bad = f"bad{uuid.uuid4().hex[:12]}"
    good = f"good{uuid.uuid4().hex[:12]}"
    statements = [
        f"SELECT /*{bad}*/ u.name, o.note FROM rt_users u JOIN orders o USING (id)",
        f"WITH a AS (INSERT INTO rt_marks VALUES ('{bad}') RETURNING tag) INSERT INTO order_marks SELECT tag FROM a",
        f"INSERT INTO rt_marks SELECT '{bad}' FROM billing.invoices",
        f"UPDATE order_items SET qty = qty + 1 WHERE order_id IN (SELECT id FROM rt_users) AND '{bad}' <> ''",
    ]
    if proto == "simple":
        # two statements in one Query: the first alone would be fine, the text as a whole is not
        statements.append(f"INSERT INTO rt_marks VALUES ('{bad}'); INSERT INTO order_marks VALUES ('{bad}')")
    logs_at = {pg.log: os.path.getsize(pg.log), pg2.log: os.path.getsize(pg2.log)}
    with r.connect() as conn:
        for sql in statements:
            with pytest.raises(psycopg.Error) as ei:
                ex(conn, sql, proto)
            e = ei.value
            assert e.sqlstate == "0A000", f"{sql}: {e.sqlstate} {e}"
            msg = e.diag.message_primary or ""
            assert 'service "main"' in msg and 'service "orders"' in msg, msg
            assert conn.info.transaction_status == TransactionStatus.IDLE
            # the connection goes on, on either service
            assert row(conn, f"SELECT {WHERE} FROM orders WHERE id = 1", proto) == orders_at(pg2)
            assert row(conn, f"SELECT {WHERE} FROM rt_users WHERE id = 1", proto) == main_at(pg)
        # Controls: statements that did run are in the servers' logs, so the check below can fail.
        ex(conn, f"SELECT /*{good}*/ 1 FROM rt_users LIMIT 1", proto)
        ex(conn, f"SELECT /*{good}*/ 1 FROM orders LIMIT 1", proto)
    for path in logs_at:
        wait_for(lambda: good in read_text(path)[logs_at[path]:], 10, what=f"the control statement in {path}")
        assert bad not in read_text(path)[logs_at[path]:], f"a refused statement reached the server ({path})"
    assert pg.sql(f"SELECT count(*) FROM rt_marks WHERE tag = '{bad}'", dbname="appdb") == "0"
    assert pg2.sql(f"SELECT count(*) FROM order_marks WHERE tag = '{bad}'", dbname=ORDERS_DB) == "0"
    assert pg2.sql("SELECT sum(qty) FROM order_items", dbname=ORDERS_DB) == "8"


# ----------------------------------------------------------------------------- 3. transactions


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_transaction_stays_on_one_backend(pgrelay, pg, pg2, dbs, proto):
    r = routed(pgrelay, pg2)
    ORD = orders_at(pg2)
    tag = f"tx{uuid.uuid4().hex[:10]}"
    with r.connect() as conn:
        ex(conn, "BEGIN", proto)
        assert conn.info.transaction_status == TransactionStatus.INTRANS
        # BEGIN is held by pgrelay until a statement names a service
        assert open_xacts(pg, "appdb") == [] and open_xacts(pg2, ORDERS_DB) == []
        seen = [row(conn, f"SELECT pg_backend_pid(), {WHERE} FROM orders WHERE id = 1", proto)]
        ex(conn, f"INSERT INTO order_marks VALUES ('{tag}')", proto)
        seen.append(row(conn, f"UPDATE order_items SET qty = qty WHERE order_id = 2 RETURNING pg_backend_pid(), {WHERE}",
                        proto))
        seen.append(row(conn, f"SELECT pg_backend_pid(), {WHERE} FROM billing.invoices WHERE id = 1", proto))
        seen.append(row(conn, f"SELECT pg_backend_pid(), {WHERE}, count(*) FROM order_marks WHERE tag = '{tag}'",
                        proto)[:4])
        pid = seen[0][0]
        assert seen == [(pid, *ORD)] * len(seen)
        assert open_xacts(pg2, ORDERS_DB) == [(str(pid), "idle in transaction")]
        assert open_xacts(pg, "appdb") == []
        ex(conn, "COMMIT", proto)
        assert conn.info.transaction_status == TransactionStatus.IDLE
    assert pg2.sql(f"SELECT count(*) FROM order_marks WHERE tag = '{tag}'", dbname=ORDERS_DB) == "1"
    assert open_xacts(pg2, ORDERS_DB) == []


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_statements_naming_no_table_stay_in_the_transaction(pgrelay, pg, pg2, dbs, proto):
    # A transaction on orders (not the database's default service): statements that name no
    # table belong to it (router.h: "the caller's business").
    r = routed(pgrelay, pg2)
    ORD = orders_at(pg2)
    tag = f"nt{uuid.uuid4().hex[:10]}"
    with r.connect() as conn:
        ex(conn, "BEGIN", proto)
        pid = row(conn, f"INSERT INTO order_marks VALUES ('{tag}') RETURNING pg_backend_pid()", proto)[0]
        for sql in (f"SELECT pg_backend_pid(), {WHERE}", "SAVEPOINT s1",
                    "SET LOCAL statement_timeout = '4321ms'",
                    f"SELECT pg_backend_pid(), {WHERE}, current_setting('statement_timeout')",
                    "RELEASE SAVEPOINT s1"):
            try:
                cur = ex(conn, sql, proto)
            except psycopg.Error as e:
                pytest.fail(f"{sql!r} inside a transaction on service orders: {e.sqlstate} {e}")
            if sql.startswith("SELECT"):
                got = tuple(cur.fetchone())
                assert got[:4] == (pid, *ORD), sql
                if "statement_timeout" in sql:
                    assert got[4] == "4321ms"
        ex(conn, "COMMIT", proto)
    assert pg2.sql(f"SELECT count(*) FROM order_marks WHERE tag = '{tag}'", dbname=ORDERS_DB) == "1"


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_consecutive_transactions_each_reach_the_server(pgrelay, pg, pg2, dbs, proto):
    # One client, several transactions in a row on the database's default service: each BEGIN
    # must open a transaction on the server, so ROLLBACK undoes its writes.
    r = routed(pgrelay, pg2)
    tag = f"ct{uuid.uuid4().hex[:10]}"
    ends = ["COMMIT", "ROLLBACK", "COMMIT", "ROLLBACK"]
    with r.connect() as conn:
        for i, end in enumerate(ends):
            ex(conn, "BEGIN", proto)
            pid = row(conn, f"INSERT INTO rt_marks VALUES ('{tag}-{i}') RETURNING pg_backend_pid()", proto)[0]
            assert conn.info.transaction_status == TransactionStatus.INTRANS, \
                f"transaction {i + 1} of the connection: the server's ReadyForQuery after the INSERT says it ran outside a transaction"
            assert open_xacts(pg, "appdb") == [(str(pid), "idle in transaction")], f"transaction {i + 1}"
            ex(conn, end, proto)
            assert conn.info.transaction_status == TransactionStatus.IDLE
    got = pg.sql(f"SELECT string_agg(tag, ',' ORDER BY tag) FROM rt_marks WHERE tag LIKE '{tag}-%'", dbname="appdb")
    assert got == f"{tag}-0,{tag}-2", "ROLLBACK did not undo the write of a later transaction"


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_other_service_inside_a_transaction_fails_it(pgrelay, pg, pg2, dbs, proto):
    r = routed(pgrelay, pg2)
    tag = f"tf{uuid.uuid4().hex[:10]}"
    with r.connect() as conn:
        ex(conn, "BEGIN", proto)
        assert row(conn, f"INSERT INTO order_marks VALUES ('{tag}') RETURNING {WHERE}", proto) == orders_at(pg2)
        with pytest.raises(psycopg.Error) as ei:
            ex(conn, "SELECT * FROM rt_users", proto)
        assert ei.value.sqlstate == "0A000", str(ei.value)
        assert 'service "orders"' in str(ei.value) and 'service "main"' in str(ei.value), str(ei.value)
        assert conn.info.transaction_status == TransactionStatus.INERROR
        with pytest.raises(psycopg.Error) as ei:
            ex(conn, "SELECT 1 FROM orders", proto)
        assert ei.value.sqlstate == "25P02", str(ei.value)
        ex(conn, "ROLLBACK", proto)
        assert conn.info.transaction_status == TransactionStatus.IDLE
        # the transaction's write was rolled back
        assert pg2.sql(f"SELECT count(*) FROM order_marks WHERE tag = '{tag}'", dbname=ORDERS_DB) == "0"
        # the next transaction may use the other service
        ex(conn, "BEGIN", proto)
        assert row(conn, f"SELECT {WHERE}, count(*) FROM rt_users", proto) == (*main_at(pg), 2)
        ex(conn, "COMMIT", proto)
        # a transaction whose first statement is cross-service fails too; ROLLBACK ends it
        ex(conn, "BEGIN", proto)
        with pytest.raises(psycopg.Error) as ei:
            ex(conn, "SELECT 1 FROM rt_users, orders", proto)
        assert ei.value.sqlstate == "0A000"
        assert conn.info.transaction_status == TransactionStatus.INERROR
        ex(conn, "ROLLBACK", proto)
        assert row(conn, f"SELECT {WHERE} FROM orders WHERE id = 3", proto) == orders_at(pg2)
    assert open_xacts(pg2, ORDERS_DB) == [] and open_xacts(pg, "appdb") == []


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_empty_transaction_answered_by_pgrelay(pgrelay, pg, pg2, dbs, proto):
    r = routed(pgrelay, pg2)
    with r.connect() as conn, r.connect(dbname="ordersdb") as conn2:
        for c in (conn, conn2):
            for begin, end in (("BEGIN", "COMMIT"), ("BEGIN", "ROLLBACK"), ("BEGIN READ ONLY", "END"),
                               ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "COMMIT")):
                ex(c, begin, proto)
                assert c.info.transaction_status == TransactionStatus.INTRANS
                assert open_xacts(pg, "appdb") == [] and open_xacts(pg2, ORDERS_DB) == []
                ex(c, end, proto)
                assert c.info.transaction_status == TransactionStatus.IDLE
        # and after them the connections work as usual
        assert row(conn, f"SELECT {WHERE}") == main_at(pg)
        assert row(conn2, f"SELECT {WHERE}") == orders_at(pg2)


@pytest.fixture(scope="module")
def pg2_pgbench(pg2, dbs):
    r = pgbench(pg2.port, "-i", "-s", "1", "-q", dbname=ORDERS_DB)
    assert r.returncode == 0, r.stderr
    return True


def pg_history_count(server, db):
    if server.sql("SELECT to_regclass('public.pgbench_history') IS NULL", dbname=db) == "t":
        return -1
    return int(server.sql("SELECT count(*) FROM pgbench_history", dbname=db))


def pgbench_ok(r, expect_tx=None):
    out = r.stdout + r.stderr
    assert r.returncode == 0, f"pgbench exit {r.returncode}:\n{out}"
    assert "number of failed transactions: 0 (0.000%)" in out, out
    m = re.search(r"number of transactions actually processed: (\d+)", out)
    assert m, out
    n = int(m.group(1))
    if expect_tx is not None:
        assert n == expect_tx, out
    assert n > 0
    return n


@pytest.mark.parametrize("mode", ["simple", "extended", "prepared"])
def test_pgbench_tpcb_routed_to_the_other_server(pgrelay, pg, pg2, dbs, pgbench_tables, pg2_pgbench, mode):
    # Both servers have pgbench's tables: pgbench's start-up check of pg_catalog names no table of
    # any rule and goes to appdb's default service (main, pg); the TPC-B statements name
    # pgbench_* and go to orders (pg2). Only pg2's pgbench_history may grow.
    routes = ROUTES + [{"tables": ["pgbench_*"], "service": "orders"}]
    r = routed(pgrelay, pg2, routes=routes)
    before2, before1 = pg_history_count(pg2, ORDERS_DB), pg_history_count(pg, "appdb")
    clients, per_client = 8, 50
    res = pgbench(r.port, "-n", "-M", mode, "-c", clients, "-j", 2, "-t", per_client)
    pgbench_ok(res, clients * per_client)
    assert pg_history_count(pg2, ORDERS_DB) - before2 == clients * per_client
    assert pg_history_count(pg, "appdb") == before1


# ----------------------------------------------------------------------------- 4. writes and replicas


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_writes_never_reach_a_replica(pgrelay, pg, pg2, dbs, replica, proto):
    r = routed(pgrelay, pg2, main=replica_main(replica), health=health())
    PRIMARY, REPLICA = main_at(pg), replica_at(replica)
    tag = f"w{uuid.uuid4().hex[:10]}"
    with r.connect() as reader, r.connect() as writer:
        wait_reads_on_replica(reader, replica)
        wait_reads_on_replica(writer, replica)
        writes = [
            (f"INSERT INTO rw_items (v) VALUES ('{tag}-i') RETURNING {WHERE}", ()),
            (f"UPDATE rw_items SET v = v WHERE v = '{tag}-i' RETURNING {WHERE}", ()),
            (f"SELECT {WHERE} FROM rt_users WHERE id = 1 FOR UPDATE", ()),
            (f"SELECT {WHERE} FROM rt_users WHERE id = 2 FOR SHARE", ()),
            (f"SELECT {WHERE}, nextval('rw_seq') > 0", (True,)),
            (f"WITH w AS (INSERT INTO rw_items (v) VALUES ('{tag}-cte') RETURNING id) SELECT {WHERE}, count(*) FROM w",
             (1,)),
            (f"SELECT {WHERE}, rw_touch('{tag}-fn')", (False,)),          # declared in functions.writes
            (f"SELECT {WHERE}, pg_try_advisory_xact_lock(4711)", (True,)),
            (f"DELETE FROM rw_items WHERE v = '{tag}-i' RETURNING {WHERE}", ()),
        ]
        for sql, extra in writes:
            assert row(writer, sql, proto) == (*PRIMARY, *extra), sql
        # by effect, on the primary
        assert pg.sql(f"SELECT string_agg(v, ',' ORDER BY v) FROM rw_items WHERE v LIKE '{tag}%'",
                      dbname="appdb") == f"{tag}-cte,{tag}-fn"

        # A client that never wrote reads from the replica ...
        assert row(reader, f"SELECT {WHERE}, count(*) FROM rt_users", proto) == (*REPLICA, 2)
        assert row(reader, f"SELECT {WHERE}, rw_lookup()", proto) == (*REPLICA, True)  # functions.read_only
        assert row(reader, f"SELECT {WHERE}, now() IS NOT NULL, random() < 2", proto) == (*REPLICA, True, True)
        assert row(reader, f"SELECT {WHERE}, count(*) FROM rt_users", proto) == (*REPLICA, 2)
    # ... also inside BEGIN READ ONLY, but not inside a plain BEGIN (each on a new client, whose
    # first transaction it is)
    for begin, where in (("BEGIN READ ONLY", REPLICA), ("BEGIN", PRIMARY), ("START TRANSACTION READ ONLY", REPLICA),
                         ("BEGIN ISOLATION LEVEL REPEATABLE READ", PRIMARY)):
        with r.connect() as conn:
            ex(conn, begin, proto)
            assert row(conn, f"SELECT {WHERE} FROM rt_users WHERE id = 1", proto) == where, begin
            assert row(conn, f"SELECT {WHERE}, count(*) FROM rt_users", proto) == (*where, 2), begin
            ex(conn, "COMMIT", proto)


# ----------------------------------------------------------------------------- 5. replica stopped under load


@pytest.mark.parametrize("mode", ["simple", "extended"])
def test_stopped_replica_reads_move_without_failures(pgrelay, pg, pg2, dbs, pgbench_tables, replica, mode):
    interval_ms = 400
    r = routed(pgrelay, pg2, main=replica_main(replica),
               health=health(interval=f"{interval_ms}ms", fail_after=1, recover_after=2))
    who = f"main replica 1 127.0.0.1:{replica.port}"
    problems = []
    with r.connect() as reader:
        wait_reads_on_replica(reader, replica)
        bench = subprocess.Popen([PGBENCH, "-h", "127.0.0.1", "-p", str(r.port), "-U", "app", "-n", "-S", "-M", mode,
                                  "-c", "8", "-j", "2", "-T", "5", "appdb"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 env=dict(os.environ, PGPASSWORD=APP_PASSWORD))
        try:
            time.sleep(1.5)
            # the load is on the replica
            on_replica = int(replica.sql("SELECT count(*) FROM pg_stat_activity WHERE datname = 'appdb' "
                                         "AND backend_type = 'client backend' AND application_name <> 'pgrelay-health'"))
            assert on_replica > 0, "pgbench -S reads did not reach the replica"
            mark = len(r.log())
            replica.stop()
            bound = 2 * interval_ms / 1000

            def down_line():
                return next((ln for ln in r.log()[mark:].splitlines() if f"{who} is down" in ln), None)
            try:
                down = wait_for(down_line, bound + 10, what="the replica marked down")
                took = line_time(down) - replica.stopped_at
                print(f"\n[{mode}] replica stopped -> marked down in {took:.3f} s (bound {bound:.3f} s)")
                if took > bound:
                    problems.append(f"marked down {took:.3f} s after the stop, more than two intervals "
                                    f"({bound} s): {down}")
            except AssertionError as e:
                problems.append(str(e))
            out, err = bench.communicate(timeout=60)
        finally:
            if bench.poll() is None:
                bench.kill()
                bench.wait()
        try:
            pgbench_ok(subprocess.CompletedProcess(bench.args, bench.returncode, out, err))
        except AssertionError as e:
            lines = [ln for ln in r.log()[mark:].splitlines() if "health:" not in ln]
            problems.append(f"{e}\n--- pgrelay log from the stop on (health lines left out) ---\n" + "\n".join(lines[:40]))
        # reads now come from the primary
        for _ in range(5):
            assert row(reader, f"SELECT {WHERE}, count(*) FROM rt_users") == (*main_at(pg), 2)
        replica.start()
        wait_reads_on_replica(reader, replica, timeout=20)
    assert not problems, "\n".join(problems)


def server_pids(data_dir):
    """The postmaster of a data folder and its children (every process of that server)."""
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        pm = int(f.readline())
    pids = [pm]
    for d in os.listdir("/proc"):
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except (OSError, ValueError):
            continue
        if d.isdigit() and int(st[st.rindex(")") + 2:].split()[1]) == pm:
            pids.append(int(d))
    return pids


def test_hung_replica_reads_waiting_on_it_move_once_it_is_down(pgrelay, pg, pg2, dbs, replica):
    """A replica that hangs (every process SIGSTOPped: its kernel still takes the bytes, nothing
    answers) is marked down by its health checks; a read already waiting on it then goes to the
    primary, instead of waiting as long as the replica hangs."""
    r = routed(pgrelay, pg2, main=replica_main(replica),
               health=health(interval="300ms", timeout="1s", fail_after=2))
    with r.connect() as reader:
        wait_reads_on_replica(reader, replica)
        pids = server_pids(replica.data)
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        t0 = time.monotonic()
        try:
            got = row(reader, f"SELECT {WHERE} FROM rt_users LIMIT 1", deadline=15)
            took = time.monotonic() - t0
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        print(f"\nread waiting on the hung replica answered by the primary after {took:.2f} s")
        assert got == main_at(pg)
        # down after 2 failed probes (each at most 300 ms + 1 s), then at most 1 s for the pool's
        # janitor; before the stop the read went to the replica (wait_reads_on_replica)
        assert 1 < took < 6, f"the read waited {took:.2f} s"
        r.wait_log("the read waiting on it goes elsewhere")
        wait_reads_on_replica(reader, replica, timeout=20)


def line_time(line):
    m = re.match(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC", line)
    assert m, line
    dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


# ----------------------------------------------------------------------------- 6. lagging replica


def test_lagging_replica_gets_no_reads(pgrelay, pg, pg2, dbs, replica):
    r = routed(pgrelay, pg2, main=replica_main(replica), health=health(max_lag="64kB"))
    sql = f"SELECT {WHERE} FROM rt_users LIMIT 1"
    with r.connect() as reader:
        wait_reads_on_replica(reader, replica)
        replica.pause_replay()
        try:
            pg.sql("CREATE TABLE rt_lag_scratch (i int, pad text);"
                   "INSERT INTO rt_lag_scratch SELECT i, repeat('x', 100) FROM generate_series(1, 30000) i",
                   dbname="appdb")
            wait_for(lambda: row(reader, sql) == main_at(pg), 10, 0.1, what="reads to leave the lagging replica")
            assert f"main replica 1 127.0.0.1:{replica.port} is lagging" in r.log()
            for _ in range(10):
                assert row(reader, sql) == main_at(pg)
        finally:
            replica.resume_replay()
        wait_reads_on_replica(reader, replica)
        pg.sql("DROP TABLE rt_lag_scratch", dbname="appdb")


# ----------------------------------------------------------------------------- 7. read-your-writes


@pytest.mark.parametrize("sync", ["on", "off"])
def test_read_your_writes_on_a_paused_replica(pgrelay, pg, pg2, dbs, replica, sync):
    """The writer commits with synchronous_commit on (startup option) or off (the test servers'
    setting, as many production ones: the commit returns before its WAL is flushed)."""
    r = routed(pgrelay, pg2, main=replica_main(replica), health=health())
    with r.connect(options=f"-c synchronous_commit={sync}") as writer, r.connect() as other:
        assert row(writer, "SHOW synchronous_commit") == (sync,)
        wait_reads_on_replica(writer, replica)
        wait_reads_on_replica(other, replica)
        replica.pause_replay()
        tags = []
        try:
            # eight rounds: with synchronous_commit off, whether the commit's WAL is flushed before
            # pgrelay asks where the WAL is depends on the WAL writer's timing
            for proto in ("simple", "extended") * 4:
                tag = f"ryw{uuid.uuid4().hex[:10]}"
                tags.append(tag)
                assert row(writer, f"INSERT INTO ryw_notes VALUES ('{tag}') RETURNING {WHERE}", proto) == main_at(pg)
                # at once: the writer sees its row, from the primary
                sql = f"SELECT {WHERE}, count(*) FROM ryw_notes WHERE tag = '{tag}'"
                assert row(writer, sql, proto) == (*main_at(pg), 1), f"the writer's read right after its INSERT ({proto})"
                # a client that did not write reads from the replica, which has not replayed it
                assert row(other, sql, proto) == (*replica_at(replica), 0)
                assert row(writer, sql, proto) == (*main_at(pg), 1), f"the writer's second read ({proto})"
        finally:
            replica.resume_replay()
        listed = ", ".join(f"'{t}'" for t in tags)
        sql = f"SELECT {WHERE}, count(*) FROM ryw_notes WHERE tag IN ({listed})"
        # replayed: both read from the replica again, and see the rows there
        wait_for(lambda: row(other, sql) == (*replica_at(replica), len(tags)), 10, 0.1, what="the replica to replay")
        wait_for(lambda: row(writer, sql) == (*replica_at(replica), len(tags)), 10, 0.1,
                 what="the writer's reads back on the replica")


@pytest.mark.parametrize("proto", ["simple", "extended"])
def test_read_right_after_each_write(pgrelay, pg, pg2, dbs, replica, proto):
    """Write, then read at once, many times: each read is sent while pgrelay is still learning the
    commit's WAL position (its own query on the primary), and must see the row; pgrelay must go on
    answering (a statement not answered within the deadline fails the test)."""
    r = routed(pgrelay, pg2, main=replica_main(replica), health=health())
    tag = f"rr{uuid.uuid4().hex[:10]}"
    with r.connect() as probe:
        wait_reads_on_replica(probe, replica)
    for i in range(20):
        # a new client each time: a read on the replica, then its first write, then a read at once
        with r.connect(options="-c synchronous_commit=on") as writer:
            assert row(writer, f"SELECT {WHERE} FROM rt_users LIMIT 1", proto) == replica_at(replica), \
                f"client {i + 1}: its first read"
            ex(writer, f"INSERT INTO ryw_notes VALUES ('{tag}-{i}')", proto)
            got = row(writer, f"SELECT count(*) FROM ryw_notes WHERE tag = '{tag}-{i}'", proto)
            assert got == (1,), f"client {i + 1}: its read right after its write"


# ----------------------------------------------------------------------------- 8. SET and transaction pooling


def set_relay(pgrelay, pg2):
    """Pool max 1 on each service: every client shares the one server connection of each."""
    return routed(pgrelay, pg2, pool={"max": 1}, orders={"pool": {"max": 1}})


def settings(conn, name):
    """(main backend pid, orders backend pid, value on main, value on orders)"""
    a = row(conn, f"SELECT pg_backend_pid(), inet_server_port(), current_setting('{name}') FROM public.rt_users LIMIT 1")
    b = row(conn, f"SELECT pg_backend_pid(), inet_server_port(), current_setting('{name}') FROM orders LIMIT 1")
    return a, b


def test_set_survives_transaction_pooling_across_services(pgrelay, pg, pg2, dbs):
    r = set_relay(pgrelay, pg2)
    with r.connect() as a, r.connect() as b:
        (pa, porta, _), (pb, portb, _) = settings(b, "statement_timeout")
        assert (porta, portb) == (pg.port, pg2.port)
        ex(a, "SET statement_timeout = '1234ms'")
        for _ in range(2):
            am, ao = settings(a, "statement_timeout")
            assert am == (pa, pg.port, "1234ms") and ao == (pb, pg2.port, "1234ms"), (am, ao)
            assert row(a, "SHOW statement_timeout") == ("1234ms",)
            # another client on the same two server connections does not see it
            bm, bo = settings(b, "statement_timeout")
            assert bm == (pa, pg.port, "0") and bo == (pb, pg2.port, "0"), (bm, bo)
            assert row(b, "SHOW statement_timeout") == ("0",)
        ex(a, "RESET statement_timeout")
        assert [x[2] for x in settings(a, "statement_timeout")] == ["0", "0"]
        assert row(a, "SHOW statement_timeout") == ("0",)


def test_set_local_stays_in_its_transaction(pgrelay, pg, pg2, dbs):
    r = set_relay(pgrelay, pg2)
    for svc_sql, port in (("public.rt_users", pg.port), ("orders", pg2.port)):
        with r.connect() as a, r.connect() as b:  # a new client: this is its first transaction
            ex(a, "BEGIN")
            assert row(a, f"SELECT inet_server_port() FROM {svc_sql} LIMIT 1") == (port,)
            ex(a, "SET LOCAL statement_timeout = '4321ms'")
            assert row(a, f"SELECT current_setting('statement_timeout') FROM {svc_sql} LIMIT 1") == ("4321ms",), svc_sql
            ex(a, "COMMIT")
            assert [x[2] for x in settings(a, "statement_timeout")] == ["0", "0"]
            assert [x[2] for x in settings(b, "statement_timeout")] == ["0", "0"]


def test_set_search_path_routes_and_follows_the_client(pgrelay, pg, pg2, dbs):
    r = set_relay(pgrelay, pg2)
    with r.connect() as a, r.connect() as b:
        assert row(a, f"SELECT {WHERE}, sum(amount) FROM invoices") == (*main_at(pg), -1)
        ex(a, "SET search_path = billing, public")
        # pgrelay routes unqualified names along the new path: billing.invoices, on pg2
        assert row(a, f"SELECT {WHERE}, sum(amount) FROM invoices") == (*orders_at(pg2), 350)
        assert [x[2] for x in settings(a, "search_path")] == ["billing, public", "billing, public"]
        assert [x[2] for x in settings(b, "search_path")] == ['"$user", public', '"$user", public']
        assert row(b, f"SELECT {WHERE}, sum(amount) FROM invoices") == (*main_at(pg), -1)
        ex(a, "RESET search_path")
        assert row(a, f"SELECT {WHERE}, sum(amount) FROM invoices") == (*main_at(pg), -1)
        assert [x[2] for x in settings(a, "search_path")] == ['"$user", public', '"$user", public']


# ----------------------------------------------------------------------------- 9. pgrelay route agrees


def route_cli(relay, sql, *args):
    r = subprocess.run([pgrelay_bin(), "route", "-c", relay.cfg_path, *args, sql], capture_output=True, text=True,
                       timeout=30, env=sanitizer_env())
    return r


def route_field(out, name):
    for line in out.splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name}: line in\n{out}")


def test_route_cli_agrees_with_where_statements_ran(pgrelay, pg, pg2, dbs, replica):
    r = routed(pgrelay, pg2, main=replica_main(replica), health=health())
    ports = {"main": pg.port, "orders": pg2.port}
    cases = [
        (f"SELECT {WHERE} FROM orders o JOIN order_items i ON i.order_id = o.id LIMIT 1", None),
        (f"SELECT {WHERE} FROM rt_users LIMIT 1", None),
        (f"SELECT {WHERE} FROM rt_users WHERE id = 1 FOR UPDATE", None),
        (f"SELECT {WHERE} FROM archive.current", None),
        (f"SELECT {WHERE}, nextval('rw_seq') > 0", None),
        (f"SELECT {WHERE} FROM invoices LIMIT 1", "billing"),
        (f"SELECT {WHERE} FROM invoices LIMIT 1", None),
        (f"SELECT {WHERE} FROM orders LIMIT 1", "public"),
    ]
    with r.connect() as probe:
        wait_reads_on_replica(probe, replica)
    targets = set()
    for sql, path in cases:
        args = ["--database", "appdb", "--user", "app"] + (["--search-path", path] if path else [])
        cli = route_cli(r, sql, *args)
        assert cli.returncode == 0, cli.stdout + cli.stderr
        service, target = route_field(cli.stdout, "service"), route_field(cli.stdout, "target")
        kw = {"options": f"-c search_path={path}"} if path else {}
        with r.connect(**kw) as conn:  # a fresh client: no read-your-writes history
            got = row(conn, sql)
        if target.startswith("replica"):
            assert f"127.0.0.1:{replica.port}" in target, target
            expect = replica_at(replica)
        else:
            assert target.startswith(f"primary 127.0.0.1:{ports[service]} "), target
            expect = (ports[service], "appdb" if service == "main" else ORDERS_DB, False)
        assert got[:3] == expect, f"{sql} (search_path {path}): pgrelay route says {service} {target}, ran on {got}"
        targets.add(f"{service} {target.split()[0]}")
    assert targets == {"main replica", "main primary", "orders primary"}
    # a cross-service statement: both refuse it with the same message
    sql = "SELECT 1 FROM rt_users JOIN billing.invoices USING (id)"
    cli = route_cli(r, sql, "--database", "appdb")
    assert cli.returncode == 1, cli.stdout + cli.stderr
    m = re.search(r"^ERROR:  (.*)$", cli.stdout, re.M)
    assert m, cli.stdout
    with r.connect() as conn:
        with pytest.raises(psycopg.Error) as ei:
            conn.execute(sql)
    assert ei.value.sqlstate == "0A000"
    assert ei.value.diag.message_primary == m.group(1)
