"""`pgrelay migrate`: migrations/<service>/NNNN_name.sql applied to each service's primary, once, in
order, recorded with their SHA-256 in public.pgrelay_migrations; edited files refused; --status.

Each test creates its own scratch databases on the session PostgreSQL and points the services of a
generated config at them.
"""
import hashlib
import os
import subprocess
import uuid

from conftest import APP_PASSWORD, REPO, SANITIZER_PATTERNS, free_port, pgrelay_bin, sanitizer_env, to_yaml


def scratch_db(pg, prefix="mig"):
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    pg.sql(f"CREATE DATABASE {name} OWNER app")
    return name


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_config(pg, path, services):
    """services: {service name: database name or (host, port, database)}, in config order."""
    svcs = {}
    for name, db in services.items():
        host, port = "127.0.0.1", pg.port
        if isinstance(db, tuple):
            host, port, db = db
        svcs[name] = {
            "primary": {"host": host, "port": port, "dbname": db, "user": "app", "password": APP_PASSWORD},
            "tls": {"mode": "disable"},
            "pool": {"connect_timeout": "3s"},
        }
    cfg = {
        "users": [{"name": "app", "password": APP_PASSWORD}],
        "databases": {"app": {"service": next(iter(services))}},
        "services": svcs,
    }
    return write(str(path), to_yaml(cfg) + "\n")


def migrate(cfg, *args, cwd=None, timeout=60):
    r = subprocess.run([pgrelay_bin(), "migrate", "-c", str(cfg), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=sanitizer_env(), cwd=cwd)
    out = r.stdout + r.stderr
    bad = [ln for ln in out.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
    assert not bad, "sanitizer report:\n" + out
    return r


def recorded(pg, db, service=None):
    """[(service, version, name, checksum, applied_at)] from public.pgrelay_migrations, or None if
    the table does not exist."""
    if pg.sql("SELECT to_regclass('public.pgrelay_migrations') IS NOT NULL", dbname=db) != "t":
        return None
    where = f"WHERE service = '{service}'" if service else ""
    out = pg.sql("SELECT service, version, name, checksum, applied_at FROM public.pgrelay_migrations "
                 f"{where} ORDER BY version::bigint", dbname=db)
    return [tuple(line.split("|")) for line in out.splitlines() if line]


def exists(pg, db, relation):
    return pg.sql(f"SELECT to_regclass('{relation}') IS NOT NULL", dbname=db) == "t"


def test_applies_in_order_once_and_records_checksums(pg, tmp_path):
    db = scratch_db(pg)
    mig = tmp_path / "migrations"
    # 9 before 10: the order is numeric, not by name (10_... depends on 9_...).
    # 9_create.sql's SET does not leak into 10_rows.sql (users.t there is schema-qualified; an
    # unqualified "t" would not be found with the default search_path).
    f9 = write(f"{mig}/users/9_create.sql",
               "CREATE SCHEMA users;\nSET search_path = nowhere;\nCREATE TABLE users.t (id int PRIMARY KEY);\n")
    f10 = write(f"{mig}/users/10_rows.sql",
                "INSERT INTO users.t VALUES (1), (2);\n"
                "DO $$ BEGIN ASSERT current_setting('search_path') <> 'nowhere', 'SET leaked'; END $$;\n")
    write(f"{mig}/users/README.md", "not a migration\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": db})

    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.index("applied 9_create.sql") < r.stdout.index("applied 10_rows.sql"), r.stdout
    rows = recorded(pg, db)
    assert [(s, v, n, c) for s, v, n, c, _ in rows] == [
        ("users", "9", "9_create.sql", sha256(f9)),
        ("users", "10", "10_rows.sql", sha256(f10)),
    ]
    assert all(at for *_, at in rows)
    assert pg.sql("SELECT count(*) FROM users.t", dbname=db) == "2"

    # A second run applies nothing (10_rows.sql again would fail on the primary key).
    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "users: applied" not in r.stdout, r.stdout
    assert "users: up to date" in r.stdout
    assert recorded(pg, db) == rows
    assert pg.sql("SELECT count(*) FROM users.t", dbname=db) == "2"


def test_status_lists_applied_and_pending_and_applies_nothing(pg, tmp_path):
    db = scratch_db(pg)
    mig = tmp_path / "migrations"
    write(f"{mig}/users/0001_a.sql", "CREATE TABLE public.a (id int);\n")
    write(f"{mig}/users/0002_b.sql", "CREATE TABLE public.b (id int);\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": db})

    # Before anything: all pending, and --status creates nothing.
    r = migrate(cfg, "--status", "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "users: 0 applied, 2 pending" in r.stdout
    assert "pending  0001_a.sql" in r.stdout and "pending  0002_b.sql" in r.stdout
    assert recorded(pg, db) is None
    assert not exists(pg, db, "public.a")

    assert migrate(cfg, "--dir", mig).returncode == 0
    f3 = write(f"{mig}/users/0003_c.sql", "CREATE TABLE public.c (id int);\n")
    r = migrate(cfg, "--status", "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "users: 2 applied, 1 pending" in lines[0]
    assert any(ln.split()[:2] == ["applied", "0001_a.sql"] for ln in lines), r.stdout
    assert any(ln.split()[:2] == ["applied", "0002_b.sql"] for ln in lines), r.stdout
    assert any(ln.split()[:2] == ["pending", "0003_c.sql"] for ln in lines), r.stdout
    assert not exists(pg, db, "public.c")
    assert len(recorded(pg, db)) == 2

    # The new file is applied by the next run.
    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "applied 0003_c.sql" in r.stdout and "0001_a.sql" not in r.stdout
    assert exists(pg, db, "public.c")
    assert recorded(pg, db)[-1][1:4] == ("0003", "0003_c.sql", sha256(f3))


def test_edited_applied_file_is_refused_and_nothing_further_applied(pg, tmp_path):
    db1, db2 = scratch_db(pg), scratch_db(pg)
    mig = tmp_path / "migrations"
    f1 = write(f"{mig}/users/0001_a.sql", "CREATE TABLE public.a (id int);\n")
    write(f"{mig}/users/0002_b.sql", "CREATE TABLE public.b (id int);\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": db1, "orders": db2})
    assert migrate(cfg, "--dir", mig).returncode == 0
    original = sha256(f1)

    with open(f1, "a") as f:
        f.write("-- an innocent-looking comment\n")
    edited = sha256(f1)
    write(f"{mig}/users/0003_c.sql", "CREATE TABLE public.c (id int);\n")
    write(f"{mig}/orders/0001_o.sql", "CREATE TABLE public.o (id int);\n")  # a later service

    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f1 in r.stderr, r.stderr
    assert original in r.stderr and edited in r.stderr, r.stderr
    assert "refusing" in r.stderr
    assert not exists(pg, db1, "public.c")
    assert [row[1] for row in recorded(pg, db1)] == ["0001", "0002"]
    assert recorded(pg, db1)[0][3] == original
    assert not exists(pg, db2, "public.o"), "a later service was migrated after the refusal"

    r = migrate(cfg, "--status", "--dir", mig)
    assert r.returncode == 1, r.stdout + r.stderr
    changed = [ln for ln in r.stdout.splitlines() if ln.split()[:2] == ["CHANGED", "0001_a.sql"]]
    assert changed and original in changed[0] and edited in changed[0], r.stdout
    assert "pending  0003_c.sql" in r.stdout

    # Restored, the run goes on.
    with open(f1, "w") as f:
        f.write("CREATE TABLE public.a (id int);\n")
    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    assert exists(pg, db1, "public.c") and exists(pg, db2, "public.o")


def test_failing_migration_rolls_back_and_stops(pg, tmp_path):
    db = scratch_db(pg)
    mig = tmp_path / "migrations"
    write(f"{mig}/users/0001_ok.sql", "CREATE TABLE public.ok (id int);\n")
    bad = write(f"{mig}/users/0002_bad.sql",
                "-- বাংলা: multi-byte characters before the error\n"
                "CREATE TABLE public.half (id int);\n"
                "INSERT INTO public.nosuch VALUES (1);\n")
    write(f"{mig}/users/0003_after.sql", "CREATE TABLE public.after (id int);\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": db})

    r = migrate(cfg, "--dir", mig)
    assert r.returncode != 0, r.stdout + r.stderr
    assert "applied 0001_ok.sql" in r.stdout
    # file:line:column of the error, then the server's message and SQLSTATE.
    assert f"{bad}:3:13: ERROR" in r.stderr, r.stderr
    assert 'relation "public.nosuch" does not exist' in r.stderr and "42P01" in r.stderr
    assert "rolled back" in r.stderr
    assert exists(pg, db, "public.ok")
    assert not exists(pg, db, "public.half"), "the failed file was not rolled back"
    assert not exists(pg, db, "public.after"), "a file after the failed one was applied"
    assert [row[1] for row in recorded(pg, db)] == ["0001"]

    # Not recorded, so it may be fixed; the next run applies it and what follows.
    write(bad, "CREATE TABLE public.half (id int);\n")
    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    assert exists(pg, db, "public.half") and exists(pg, db, "public.after")
    assert [row[1] for row in recorded(pg, db)] == ["0001", "0002", "0003"]


def test_transaction_control_inside_a_file_is_an_error(pg, tmp_path):
    db = scratch_db(pg)
    mig = tmp_path / "migrations"
    write(f"{mig}/users/0001_commits.sql", "CREATE TABLE public.x (id int);\nCOMMIT;\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": db})
    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "0001_commits.sql ended the transaction" in r.stderr, r.stderr
    assert recorded(pg, db) == []


def test_unknown_service_directory_ignored_and_service_without_directory_skipped(pg, tmp_path):
    db1, db2 = scratch_db(pg), scratch_db(pg)
    mig = tmp_path / "migrations"
    write(f"{mig}/users/0001_a.sql", "CREATE TABLE public.a (id int);\n")
    write(f"{mig}/nosuch/0001_boom.sql", "SELECT 1/0;\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": db1, "other": db2})
    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nosuch" in r.stdout and "ignored" in r.stdout, r.stdout
    assert "other: no migrations directory" in r.stdout and "skipped" in r.stdout, r.stdout
    assert exists(pg, db1, "public.a")
    assert recorded(pg, db2) is None


def test_default_directory_is_next_to_the_config_file(pg, tmp_path):
    db = scratch_db(pg)
    conf = tmp_path / "conf"
    write(f"{conf}/migrations/users/0001_a.sql", "CREATE TABLE public.a (id int);\n")
    cfg = write_config(pg, conf / "proxy.yaml", {"users": db})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = migrate(cfg, cwd=elsewhere)
    assert r.returncode == 0, r.stdout + r.stderr
    assert exists(pg, db, "public.a")

    lone = write_config(pg, elsewhere / "lone.yaml", {"users": db})
    r = migrate(lone, cwd=elsewhere)
    assert r.returncode == 1
    assert "no migrations directory" in r.stderr, r.stderr


def test_unreachable_primary_fails_clearly(pg, tmp_path):
    mig = tmp_path / "migrations"
    write(f"{mig}/users/0001_a.sql", "SELECT 1;\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": ("127.0.0.1", free_port(), "nodb")})
    r = migrate(cfg, "--dir", mig)
    assert r.returncode == 1
    assert "users: cannot connect to the primary 127.0.0.1:" in r.stderr, r.stderr


def test_concurrent_runs_apply_each_file_once(pg, tmp_path):
    db = scratch_db(pg)
    mig = tmp_path / "migrations"
    write(f"{mig}/users/0001_slow.sql", "CREATE TABLE public.slow (id int);\nSELECT pg_sleep(1.5);\n")
    write(f"{mig}/users/0002_rows.sql", "INSERT INTO public.slow VALUES (1);\n")
    cfg = write_config(pg, tmp_path / "proxy.yaml", {"users": db})
    cmd = [pgrelay_bin(), "migrate", "-c", str(cfg), "--dir", str(mig)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=sanitizer_env())
             for _ in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    combined = "".join(o + e for o, e in outs)
    assert combined.count("applied 0001_slow.sql") == 1, combined
    assert combined.count("applied 0002_rows.sql") == 1, combined
    assert "waiting for it to finish" in combined, combined
    assert pg.sql("SELECT count(*) FROM public.slow", dbname=db) == "1"
    assert [row[1] for row in recorded(pg, db)] == ["0001", "0002"]


def test_repository_migrations_apply_on_postgresql_15(pg, tmp_path):
    """The project's own migrations/: valid PostgreSQL 15, partitioned orders and analytics,
    covering indexes, the materialized view, Bengali sample data."""
    services = ["users", "products", "orders", "analytics", "notifications"]
    dbs = {s: scratch_db(pg, "repo_" + s[:5]) for s in services}
    cfg = write_config(pg, tmp_path / "proxy.yaml", dbs)
    r = migrate(cfg, "--dir", os.path.join(REPO, "migrations"))
    assert r.returncode == 0, r.stdout + r.stderr
    for s in services:
        assert f"{s}: applied 0001_schema.sql" in r.stdout
        assert f"{s}: applied 0002_sample_data.sql" in r.stdout

    q = pg.sql
    assert q("SELECT relkind FROM pg_class WHERE oid = 'orders.orders'::regclass", dbname=dbs["orders"]) == "p"
    assert q("SELECT count(*) FROM pg_inherits WHERE inhparent = 'orders.orders'::regclass",
             dbname=dbs["orders"]) == "25"  # 24 months + default
    assert exists(pg, dbs["orders"], "orders.orders_default")
    assert q("SELECT count(*) FROM orders.orders_2025_07", dbname=dbs["orders"]) == "2"
    assert q("SELECT count(*) FROM orders.daily_order_summary", dbname=dbs["orders"]) == "3"
    for db, index in ((dbs["orders"], "orders.idx_orders_user"), (dbs["products"], "products.idx_products_search")):
        # INCLUDE columns: fewer key attributes than attributes.
        assert q(f"SELECT indnkeyatts < indnatts FROM pg_index WHERE indexrelid = '{index}'::regclass", dbname=db) == "t"
    assert q("SELECT name->>'bn' FROM products.products WHERE name->>'en' = 'Rice'", dbname=dbs["products"]) == "চাল"
    assert q("SELECT relkind FROM pg_class WHERE oid = 'analytics.events'::regclass", dbname=dbs["analytics"]) == "p"
    assert q("SELECT count(*) FROM analytics.events", dbname=dbs["analytics"]) == "3"
    assert q("SELECT count(*) FROM notifications.notification_queue", dbname=dbs["notifications"]) == "3"
    assert q("SELECT count(*) FROM users.users", dbname=dbs["users"]) == "3"

    # analytics tables are append-only.
    up = subprocess.run(["/usr/lib/postgresql/15/bin/psql", "-X", "-h", pg.base, "-p", str(pg.port), "-U", "app",
                         "-d", dbs["analytics"], "-c", "UPDATE analytics.events SET city = 'x'"],
                        capture_output=True, text=True, timeout=30)
    assert up.returncode != 0 and "append-only" in up.stderr, up.stderr

    r = migrate(cfg, "--dir", os.path.join(REPO, "migrations"))
    assert r.returncode == 0 and r.stdout.count(": up to date") == 5, r.stdout + r.stderr
