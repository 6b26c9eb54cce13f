"""The admin console: the virtual database "pgrelay" (alias "pgbouncer") with PgBouncer's
commands and columns — compared with Debian's pgbouncer in the same run — and pgrelay's own SHOW
ROUTES / BACKENDS / CACHE / PREPARED; PAUSE/RESUME under pgbench, RELOAD, KILL, DISABLE/ENABLE,
RECONNECT, SET log_level; who may do what."""
import os
import shutil
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

from conftest import APP_PASSWORD, MD5_PASSWORD, PGBENCH, free_port, wait_for

ADMIN = {"users": ["app"], "stats_users": ["md5user"]}

PGBOUNCER_COMMANDS = ["POOLS", "CLIENTS", "SERVERS", "STATS", "STATS_TOTALS", "STATS_AVERAGES", "DATABASES",
                      "USERS", "CONFIG", "LISTS", "MEM", "VERSION"]


def console(relay, user="app", password=APP_PASSWORD, dbname="pgrelay"):
    return psycopg.connect(host="127.0.0.1", port=relay.port, user=user, password=password, dbname=dbname,
                           autocommit=True, cursor_factory=psycopg.ClientCursor)


def show(conn, what):
    cur = conn.execute(f"SHOW {what}")
    return [(d.name, d.type_code) for d in cur.description], cur.fetchall()


@pytest.fixture(scope="module")
def pgbouncer(pg, workdir):
    """Debian's pgbouncer in front of the same PostgreSQL, admin user "admin" (trust)."""
    base = tempfile.mkdtemp(prefix="pgbouncer.", dir=workdir)
    port = free_port()
    with open(os.path.join(base, "users.txt"), "w") as f:
        f.write('"admin" "x"\n"app" "secret"\n')
    with open(os.path.join(base, "pgbouncer.ini"), "w") as f:
        f.write(f"""[databases]
appdb = host=127.0.0.1 port={pg.port} dbname=appdb
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
auth_type = trust
auth_file = {base}/users.txt
admin_users = admin
pool_mode = transaction
unix_socket_dir =
logfile = {base}/pgbouncer.log
pidfile = {base}/pgbouncer.pid
""")
    shutil.chown(base, "postgres")
    for name in os.listdir(base):
        shutil.chown(os.path.join(base, name), "postgres")
    proc = subprocess.Popen(["runuser", "-u", "postgres", "--", "/usr/sbin/pgbouncer", os.path.join(base, "pgbouncer.ini")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def up():
        try:
            psycopg.connect(host="127.0.0.1", port=port, user="admin", dbname="pgbouncer", autocommit=True).close()
            return True
        except psycopg.OperationalError:
            return False
    wait_for(up, 15, what="pgbouncer to accept")
    yield port
    proc.terminate()
    proc.wait(10)


def test_every_console_command_and_pgbouncer_columns(pgrelay, pgbouncer):
    r = pgrelay(admin=ADMIN)
    with r.connect() as app:  # a client, so that pools, clients and servers have rows
        app.execute("SELECT 1")
        bouncer = psycopg.connect(host="127.0.0.1", port=pgbouncer, user="admin", dbname="pgbouncer",
                                  autocommit=True, cursor_factory=psycopg.ClientCursor)
        with console(r) as c, bouncer:
            for cmd in PGBOUNCER_COMMANDS:
                ours, rows = show(c, cmd)
                theirs, _ = show(bouncer, cmd)
                assert ours[:len(theirs)] == theirs, f"SHOW {cmd}: pgrelay {ours} vs pgbouncer {theirs}"
                if cmd in ("POOLS", "CLIENTS", "SERVERS", "DATABASES", "USERS", "CONFIG", "LISTS", "VERSION"):
                    assert rows, f"SHOW {cmd} returned no rows"
            # the same through the "pgbouncer" alias
            with console(r, dbname="pgbouncer") as alias:
                assert show(alias, "VERSION")[1][0][0].startswith("pgrelay ")
            clients = show(c, "CLIENTS")[1]
            assert any(row[2] == "appdb" for row in clients), clients
            pools = {row[0]: row for row in show(c, "POOLS")[1]}
            assert "main" in pools and pools["main"][1] == "app"
            servers = show(c, "SERVERS")[1]
            assert servers and servers[0][0] == "S" and servers[0][15] > 0  # remote_pid
            stats = {row[0]: row for row in show(c, "STATS")[1]}
            assert int(stats["appdb"][1]) >= 1, stats  # total_xact_count
            # pgrelay's own
            cols, rows = show(c, "BACKENDS")
            assert [n for n, _ in cols][:6] == ["service", "role", "replica", "host", "port", "state"]
            assert rows[0][0] == "main" and rows[0][1] == "primary"
            assert [n for n, _ in show(c, "ROUTES")[0]] == ["rule", "line", "schema", "tables", "service", "reads",
                                                           "matches"]
            assert [n for n, _ in show(c, "CACHE")[0]][:6] == ["tier", "entries", "bytes", "hits", "misses",
                                                              "hit_rate"]
            assert [n for n, _ in show(c, "PREPARED")[0]][:2] == ["statements", "server_copies"]
            cols, rows = show(c, "CATALOG")  # the cache is off here: no rows
            assert [n for n, _ in cols][:3] == ["service", "state", "relations"] and rows == []
            # HELP answers with notices
            notices = []
            c.add_notice_handler(lambda d: notices.append(d.message_primary))
            c.execute("SHOW HELP")
            assert any("SHOW HELP" in n for n in notices) and any("PAUSE" in n for n in notices), notices


def test_who_may_use_the_console(pgrelay):
    r = pgrelay(admin=ADMIN)
    # a user in neither list
    with pytest.raises(psycopg.OperationalError) as e:
        console(r, user="pwuser", password="pwpw")
    assert "may not use pgrelay's admin console" in str(e.value)
    # a stats user: SHOW only
    with console(r, user="md5user", password=MD5_PASSWORD) as c:
        assert show(c, "POOLS")[0][0] == ("database", 25)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("PAUSE")
    with console(r) as c:
        with pytest.raises(psycopg.errors.SyntaxError) as e:
            c.execute("SHOW NOTHING")
        assert "unknown SHOW command" in str(e.value)
        with pytest.raises(psycopg.errors.SyntaxError):
            c.execute("FROBNICATE")
        with pytest.raises(psycopg.errors.InvalidCatalogName):
            c.execute("PAUSE nosuchdb")
        assert show(c, "VERSION")[1]  # the console goes on after errors
    # the extended protocol is refused with a clear error, and the connection goes on
    with psycopg.connect(host="127.0.0.1", port=r.port, user="app", password=APP_PASSWORD, dbname="pgrelay",
                         autocommit=True) as ext:
        with pytest.raises(psycopg.errors.FeatureNotSupported) as e:
            ext.execute("SELECT %s", (1,))  # with a parameter: Parse/Bind/Execute
        assert "simple query protocol" in str(e.value)


def test_pause_and_resume_under_pgbench(pgrelay, pgbench_tables):
    r = pgrelay(admin=ADMIN, pool={"max": 4})
    bench = subprocess.Popen([PGBENCH, "-h", "127.0.0.1", "-p", str(r.port), "-U", "app", "-n", "-c", "8", "-j", "2",
                              "-T", "6", "appdb"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PGPASSWORD=APP_PASSWORD))
    try:
        time.sleep(1.5)
        with console(r) as c:
            t0 = time.time()
            c.execute("PAUSE")  # returns once no server is in use
            paused_in = time.time() - t0
            pools = show(c, "POOLS")[1]
            assert all(row[6] == 0 for row in pools), pools  # sv_active
            time.sleep(1.5)
            waiting = sum(row[3] for row in show(c, "POOLS")[1])  # cl_waiting
            assert waiting > 0, "clients should wait while paused"
            assert show(c, "DATABASES")[1][0][11] == 1  # paused
            c.execute("RESUME")
        out, err = bench.communicate(timeout=60)
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 0, err
    assert "number of failed transactions: 0 " in out, out
    print(f"\nPAUSE took {paused_in:.3f} s with 8 pgbench clients")


def test_reload_changes_a_route_and_show_routes_counts(pgrelay, pg):
    pg.sql("CREATE SCHEMA IF NOT EXISTS adm; CREATE TABLE IF NOT EXISTS adm.t (v int); GRANT ALL ON SCHEMA adm TO app; "
           "GRANT ALL ON adm.t TO app", dbname="appdb")
    second = {"primary": {"host": "127.0.0.1", "port": pg.port, "dbname": "appdb", "user": "app",
                          "password": APP_PASSWORD}}
    r = pgrelay(admin=ADMIN, services={"other": second}, routes=[{"schema": "adm", "service": "main"}])
    with r.connect() as app, console(r) as c:
        for _ in range(3):
            app.execute("SELECT * FROM adm.t")
        rows = show(c, "ROUTES")[1]
        assert rows[0][4] == "main" and rows[0][6] == 3, rows
        cfg = dict(r.cfg)
        cfg["routes"] = [{"schema": "adm", "service": "other"}]
        r.write_config(cfg)
        c.execute("RELOAD")
        rows = show(c, "ROUTES")[1]
        assert rows[0][4] == "other" and rows[0][6] == 0, rows
        app.execute("SELECT * FROM adm.t")
        assert show(c, "ROUTES")[1][0][6] == 1
        assert any(p[0] == "other" for p in show(c, "POOLS")[1]), "the statement did not go to service other"


def test_kill_disable_enable_reconnect_and_set(pgrelay):
    r = pgrelay(admin=ADMIN)
    with console(r) as c:
        app = r.connect()
        app.execute("SELECT 1")
        pid_before = app.execute("SELECT pg_backend_pid()").fetchone()[0]
        c.execute("RECONNECT appdb")
        assert app.execute("SELECT pg_backend_pid()").fetchone()[0] != pid_before, "RECONNECT kept the old server"
        c.execute("KILL appdb")
        with pytest.raises(psycopg.OperationalError):
            app.execute("SELECT 1")
        c.execute("DISABLE appdb")
        assert show(c, "DATABASES")[1][0][12] == 1
        with pytest.raises(psycopg.OperationalError) as e:
            r.connect()
        assert "disabled" in str(e.value)
        c.execute("ENABLE appdb")
        with r.connect() as again:
            assert again.execute("SELECT 2").fetchone() == (2,)
        c.execute("SET log_level = debug")
        assert ("log.level", "debug") in [(k, v) for k, v, _, _, _ in show(c, "CONFIG")[1]]
        c.execute("SET log_level = 'info'")
        with pytest.raises(psycopg.errors.CantChangeRuntimeParam):
            c.execute("SET max_client_conn = 5")
    assert "log_level set to debug" in r.log()


def test_psql_runs_every_console_command(pgrelay):
    """The way a DBA uses it: psql, one command per -c, each must succeed."""
    from conftest import psql
    r = pgrelay(admin=ADMIN, routes=[{"schema": "x", "service": "main"}])
    with r.connect() as app:
        app.execute("SELECT 1")
    shows = PGBOUNCER_COMMANDS + ["HELP", "ROUTES", "BACKENDS", "CACHE", "CATALOG", "PREPARED"]
    args = []
    for cmd in shows:
        args += ["-c", f"SHOW {cmd};"]
    args += ["-c", "PAUSE appdb", "-c", "RESUME appdb", "-c", "RECONNECT", "-c", "DISABLE appdb",
             "-c", "ENABLE appdb", "-c", "SET log_level = info", "-c", "RELOAD"]
    out = psql(r.port, None, dbname="pgrelay", args=args)
    assert "pgrelay " in out.stdout  # SHOW VERSION
    assert "main|app|" in out.stdout  # a SHOW POOLS row
    out = psql(r.port, "SHOW FOO", dbname="pgbouncer", check=False)
    assert out.returncode != 0 and 'unknown SHOW command "foo"' in out.stderr
