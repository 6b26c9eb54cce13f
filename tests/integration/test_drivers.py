"""Real drivers through pgrelay, differential against PostgreSQL: every driver runs one small workload
(tests/drivers/README.md) directly against PostgreSQL and through pgrelay, from the same data, and
what it prints must be the same. Each (driver, path) runs through three pgrelay configurations,
each started once for this module:

  pool      plain transaction pooling
  replicas  service main with the streaming replica (pg_replica) and `reads: replicas`; the test
            also checks that the replica served reads of the run (SHOW BACKENDS reads_served)
  cache     the L1 result cache with rules covering the workload's tables (no read may be stale);
            the test also checks that the run was served from the cache at least once (SHOW CACHE
            hits), except for the paths in NOT_LOOKED_UP

Drivers and paths: psql (simple protocol), pgbench (-M simple|extended|prepared), psycopg 3
(ClientCursor, unnamed statements, prepare_threshold=0; pipeline mode), asyncpg (with and without its
statement cache), node-postgres (Debian's node-pg: unnamed and named statements), postgres.js (npm
`postgres`, installed with npm ci from tests/drivers/node/package-lock.json into a folder beside the
pgrelay binary: prepare false and true) and JDBC (Debian's libpostgresql-jdbc-java, compiled with
javac into a temporary folder: prepareThreshold default and 1). A driver that is not installed fails
its tests (scripts/deps.sh installs them all).

Every driver call has a time limit inside the driver program (3 s) and every program one as a
process: a hang fails the test with the step it hung in."""
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import psycopg
import pytest

from conftest import (APP_PASSWORD, PGBENCH, PSQL, REPO, Relay, base_config, connect, deep_merge, free_port,
                      pgrelay_bin, wait_for)

DRIVERS_DIR = os.path.join(REPO, "tests", "drivers")
PYTHON = "/usr/bin/python3"  # Debian's: psycopg and asyncpg are Debian packages
JDBC_JAR = "/usr/share/java/postgresql.jar"
# node-pg: Debian's installs it under /usr/share/nodejs; where the machine's nodejs is not Debian's,
# scripts/deps.sh unpacks the same .deb into NODE_PG_DIR.
NODE_PG_PATHS = ["/usr/share/nodejs", "/usr/local/lib/pgrelay/node-pg"]
# Seconds a driver program may take: the whole workload normally takes well under a second (plus a
# JVM's start). The programs limit each driver call to 3 s themselves; psql and pgbench have no such
# limit, so theirs is the process's.
PROCESS_TIMEOUT = {"psql": 6, "pgbench": 6, "jdbc": 30}
PROCESS_TIMEOUT_DEFAULT = 20
RESET_TIMEOUT = 10
PGBENCH_XACTS = 10  # transactions of the pgbench workload, one client

CONFIGS = ("pool", "replicas", "cache")

# (driver, path): the paths each driver has (see the programs in tests/drivers/).
DRIVER_PATHS = [
    ("psql", "simple"),
    ("pgbench", "simple"), ("pgbench", "extended"), ("pgbench", "prepared"),
    ("psycopg", "simple"), ("psycopg", "extended"), ("psycopg", "prepared"),
    ("asyncpg", "stmt-cache"), ("asyncpg", "no-stmt-cache"),
    ("node-pg", "unnamed"), ("node-pg", "named"),
    ("postgres.js", "unprepared"), ("postgres.js", "prepared"),
    ("jdbc", "default"), ("jdbc", "threshold1"),
]

TABLES_SQL = """
SET ROLE app;
DROP TABLE IF EXISTS drv_items, drv_log, drv_ref;
CREATE TABLE drv_items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL);
CREATE TABLE drv_log (id int PRIMARY KEY, note text NOT NULL);
CREATE TABLE drv_ref (code int PRIMARY KEY, label text NOT NULL);
INSERT INTO drv_ref VALUES (1, 'one'), (2, 'two'), (3, 'three');
"""

# The data every run starts from (one transaction: through pgrelay it invalidates the cached reads).
RESET_SQL = ("BEGIN; DELETE FROM drv_items; DELETE FROM drv_log; "
             "INSERT INTO drv_items VALUES (1, 'apple', 10), (2, 'banana', 20), (3, 'cherry', 30), "
             "(4, 'date', 40), (5, 'elder', 50); COMMIT")

STATE_SQL = ("SELECT 'items', id, name, qty FROM drv_items UNION ALL "
             "SELECT 'log', id, note, NULL FROM drv_log ORDER BY 1, 2")

ROWS = [[1, "apple", 10], [2, "banana", 20], [3, "cherry", 30], [4, "date", 40], [5, "elder", 50]]
# What each step of the workload prints, from the data above (a guard on the programs themselves:
# the direct run must print exactly this).
EXPECTED = {
    "plain": ROWS, "plain_again": ROWS,
    "ref": [[2, "two"]], "ref_2": [[2, "two"]], "ref_3": [[2, "two"]],
    "param": [["cherry", 30]], "range": [[3], [4], [5]], "fetchval": [[42]],
    "ryw": [["new", 7]],
    "stale_before": [[20]], "stale_before_2": [[20]], "stale_after": [[21]],
    "tx_inside": [[15]], "tx_after": [[15]],
    "batch_after": [[1, "a"], [2, "b"], [3, "c"]],
    "pipe_read": [[40]], "pipe_write": [[140]], "pipe_after": [[140]],
}
PIPE_STEPS = ("pipe_read", "pipe_write", "pipe_after")
HAS_PIPE = {"psql", "psycopg", "postgres.js", "jdbc"}  # asyncpg and node-pg have no read+write batch API

# Paths whose statements pgrelay does not look up in the cache, by its documented rules (an
# extended-protocol batch is looked up when it is `[Parse ""] Bind [Describe P] Execute Sync`, fully
# buffered: docs/architecture.md, the result cache): their cache runs check results only, not that
# something was answered from the cache.
NOT_LOOKED_UP = {
    ("asyncpg", "no-stmt-cache"): "Parse/Describe S/Flush, then Bind/Execute/Sync, for every call",
    ("postgres.js", "unprepared"): "Parse/Describe S/Bind/Execute/Sync (the statement is described)",
    ("node-pg", "named"): "every message in a write() of its own: the batch is never fully buffered",
}


def expected_steps(driver):
    exp = {k: v for k, v in EXPECTED.items() if driver in HAS_PIPE or k not in PIPE_STEPS}
    final = [list(r) for r in ROWS]
    final[0][2], final[1][2] = 15, 21
    if driver in HAS_PIPE:
        final[3][2] = 140
    exp["final"] = final + [[101, "new", 7]]
    return exp


# ----------------------------------------------------------------------------- drivers


class DriverMissing(Exception):
    pass


_tool_cache = {}


def once(key, make):
    """make() once per run; a DriverMissing is remembered too (every test of that driver fails)."""
    if key not in _tool_cache:
        try:
            _tool_cache[key] = ("ok", make())
        except DriverMissing as e:
            _tool_cache[key] = ("missing", str(e))
    state, value = _tool_cache[key]
    if state == "missing":
        pytest.fail(f"{key} is not usable here: {value}. scripts/deps.sh installs every driver.", pytrace=False)
    return value


def need_exe(name):
    path = shutil.which(name)
    if not path:
        raise DriverMissing(f"no {name} on PATH")
    return path


def node_env(node_path):
    env = dict(os.environ, NODE_PATH=":".join(node_path))
    env.pop("NODE_OPTIONS", None)
    return env


def node_pg():
    node = need_exe("node")
    env = node_env(NODE_PG_PATHS)
    r = subprocess.run([node, "-e", "process.stdout.write(require('pg/package.json').version)"],
                       capture_output=True, text=True, timeout=30, env=env)
    if r.returncode != 0:
        raise DriverMissing(f"node cannot load node-pg (Debian package node-pg; looked in {NODE_PG_PATHS}): "
                            f"{r.stderr.strip()[-300:]}")
    return node, env


def postgresjs(workdir):
    """npm ci of tests/drivers/node/package-lock.json into a folder beside the pgrelay binary (kept
    between runs while the lock file is the same)."""
    node, npm = need_exe("node"), need_exe("npm")
    src = os.path.join(DRIVERS_DIR, "node")
    with open(os.path.join(src, "package-lock.json"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    dest = os.path.join(os.path.dirname(pgrelay_bin()), "test-drivers", f"node-{digest}")
    if not os.path.exists(os.path.join(dest, "node_modules", "postgres", "package.json")):
        tmp = dest + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(src, name), tmp)
        try:
            r = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=tmp,
                               capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise DriverMissing("npm ci (postgres.js) took more than 300 s")
        if r.returncode != 0:
            raise DriverMissing(f"npm ci (postgres.js) failed: {(r.stderr or r.stdout).strip()[-600:]}")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
    return node, node_env([os.path.join(dest, "node_modules")])


def jdbc_classes(workdir):
    """JdbcWorkload.java compiled with javac into a temporary folder."""
    javac, java = need_exe("javac"), need_exe("java")
    if not os.path.exists(JDBC_JAR):
        raise DriverMissing(f"no {JDBC_JAR} (Debian package libpostgresql-jdbc-java)")
    out = os.path.join(workdir, "jdbc-classes")
    os.makedirs(out, exist_ok=True)
    r = subprocess.run([javac, "-d", out, "-cp", JDBC_JAR, os.path.join(DRIVERS_DIR, "java", "JdbcWorkload.java")],
                       capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise DriverMissing(f"javac failed: {r.stderr.strip()[-600:]}")
    return java, f"{out}:{JDBC_JAR}"


def command(driver, path, port, workdir):
    """(argv, env) of the driver program for one run against port."""
    conn_args = ["--port", str(port), "--password", APP_PASSWORD, "--path", path]
    env = dict(os.environ)
    if driver == "psql":
        dsn = f"host=127.0.0.1 port={port} dbname=appdb user=app connect_timeout=5 sslmode=disable"
        env["PGPASSWORD"] = APP_PASSWORD
        return [PSQL, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn,
                "-f", os.path.join(DRIVERS_DIR, "psql", "workload.sql")], env
    if driver == "pgbench":
        script = os.path.join(DRIVERS_DIR, "pgbench", "workload.sql")
        scripts = ["-f", script]
        if path != "simple":
            # one script: pipeline.sql then workload.sql (the first pipeline comes before any write)
            joined = os.path.join(workdir, "pgbench-workload-pipeline.sql")
            with open(joined, "w") as out:
                for name in ("pipeline.sql", "workload.sql"):
                    with open(os.path.join(DRIVERS_DIR, "pgbench", name)) as f:
                        out.write(f.read() + "\n")
            scripts = ["-f", joined]
        env["PGPASSWORD"] = APP_PASSWORD
        env["PGCONNECT_TIMEOUT"] = "5"
        return [PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", "app", "-n", "-c", "1", "-t", str(PGBENCH_XACTS),
                "-M", path, *scripts, "appdb"], env
    if driver == "psycopg":
        return [PYTHON, os.path.join(DRIVERS_DIR, "python", "psycopg_workload.py"), *conn_args], env
    if driver == "asyncpg":
        return [PYTHON, os.path.join(DRIVERS_DIR, "python", "asyncpg_workload.py"), *conn_args], env
    if driver == "node-pg":
        node, env = once("node-pg", node_pg)
        return [node, os.path.join(DRIVERS_DIR, "node", "node_pg_workload.js"), *conn_args], env
    if driver == "postgres.js":
        node, env = once("postgres.js", lambda: postgresjs(workdir))
        return [node, os.path.join(DRIVERS_DIR, "node", "postgresjs_workload.js"), *conn_args], env
    if driver == "jdbc":
        java, cp = once("jdbc", lambda: jdbc_classes(workdir))
        return [java, "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", cp, "JdbcWorkload", *conn_args], env
    raise AssertionError(driver)



class Run:
    def __init__(self, argv, timeout, proc=None, timed_out=False, stdout="", stderr=""):
        self.argv = argv
        self.timeout = timeout
        self.rc = None if timed_out else proc.returncode
        self.timed_out = timed_out
        self.stdout = stdout
        self.stderr = stderr
        self.state = None  # pgbench: the tables afterwards

    @property
    def ok(self):
        return not self.timed_out and self.rc == 0

    def symptom(self):
        last = [ln.split("\t")[0] for ln in self.stdout.splitlines() if ln.strip()]
        where = f"last line printed: {last[-1]!r}" if last else "nothing printed"
        if self.timed_out:
            head = f"the driver process did not finish within {self.timeout} s ({where})"
        else:
            head = f"exit status {self.rc} ({where})"
        err = self.stderr.strip()
        return f"{head}\n--- stderr ---\n{err[-2500:]}\n--- stdout ---\n{self.stdout[-1500:]}"


def run_driver(driver, path, port, workdir):
    argv, env = command(driver, path, port, workdir)
    timeout = PROCESS_TIMEOUT.get(driver, PROCESS_TIMEOUT_DEFAULT)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
        return Run(argv, timeout, p, stdout=p.stdout, stderr=p.stderr)
    except subprocess.TimeoutExpired as e:
        def text(b):
            return b.decode("utf-8", "replace") if isinstance(b, bytes) else (b or "")
        return Run(argv, timeout, timed_out=True, stdout=text(e.stdout), stderr=text(e.stderr))


def parse_steps(driver, stdout):
    """label -> rows. psql prints `@label` lines and `a|b` rows; the others `label<TAB>JSON`."""
    steps = {}
    if driver == "psql":
        label = None
        for ln in stdout.splitlines():
            if ln.startswith("@"):
                label = ln[1:]
                steps[label] = []
            elif ln and label:
                steps[label].append([int(v) if re.fullmatch(r"-?\d+", v) else v for v in ln.split("|")])
        pipe = steps.pop("pipe", [])
        steps["pipe_read"], steps["pipe_write"] = pipe[:1], pipe[1:]
        return steps
    for ln in stdout.splitlines():
        label, _, rows = ln.partition("\t")
        steps[label] = json.loads(rows)
    return steps


# ----------------------------------------------------------------------------- servers


@pytest.fixture(scope="module")
def drv_tables(pg):
    pg.sql(TABLES_SQL, dbname="appdb")
    pg.sql(RESET_SQL, dbname="appdb")
    return pg


class Setup:
    def __init__(self, kind, relay, replica):
        self.kind = kind
        self.relay = relay
        self.replica = replica


def admin(relay, what):
    with psycopg.connect(host="127.0.0.1", port=relay.port, user="app", password=APP_PASSWORD, dbname="pgrelay",
                         autocommit=True, cursor_factory=psycopg.ClientCursor, connect_timeout=5) as c:
        cur = c.execute(f"SHOW {what}")
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]


def replica_reads(setup):
    return sum(int(r["reads_served"] or 0) for r in admin(setup.relay, "BACKENDS") if r["role"] == "replica")


def cache_hits(setup):
    return next(int(r["hits"]) for r in admin(setup.relay, "CACHE") if r["tier"] == "total")


def relay_config(kind, pg, port, replica):
    over = {"admin": {"users": ["app"]},
            "services": {"main": {"pool": {"max": 8, "query_wait_timeout": "10s"}}}}
    if kind == "replicas":
        over = deep_merge(over, {"services": {"main": {"replicas": [replica.backend()], "reads": "replicas"}},
                                 "health": {"interval": "200ms", "timeout": "1s", "fail_after": 3,
                                            "recover_after": 1}})
    if kind == "cache":
        over["cache"] = {"l1": {"max_memory": "16MB", "max_result": "1MB"},
                         "rules": [{"tables": ["drv_items", "drv_log", "drv_ref"], "ttl": "5m"}]}
    return deep_merge(base_config(pg, port), over)


def execute_with_deadline(conn, sql, deadline):
    """conn.execute(sql), or an AssertionError if pgrelay does not answer within deadline seconds."""
    fired = []

    def cut():
        fired.append(True)
        try:
            with socket.socket(fileno=os.dup(conn.fileno())) as s:
                s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    timer = threading.Timer(deadline, cut)
    timer.daemon = True
    timer.start()
    try:
        return conn.execute(sql)
    except psycopg.OperationalError as e:
        if fired:
            raise AssertionError(f"pgrelay did not answer within {deadline} s: {sql}") from e
        raise
    finally:
        timer.cancel()


@pytest.fixture(scope="module", params=CONFIGS)
def setup(request, pg, workdir, drv_tables):
    """One pgrelay per configuration for the whole module; at teardown it must exit 0 with no
    sanitizer report (as the pgrelay fixture checks)."""
    kind = request.param
    replica = None
    if kind == "replicas":
        replica = request.getfixturevalue("pg_replica")
        replica.ensure_running()
        wait_for(lambda: replica.sql("SELECT to_regclass('public.drv_ref') IS NOT NULL", dbname="appdb") == "t",
                 20, 0.1, what="the replica to replay the driver tables")
    port = free_port()
    folder = tempfile.mkdtemp(prefix=f"drivers-{kind}.", dir=workdir)
    relay = Relay(pg, folder, relay_config(kind, pg, port, replica))
    relay.start()
    try:
        if kind == "replicas":
            def on_replica():
                with connect(relay.port, cursor_factory=psycopg.ClientCursor) as c:
                    return execute_with_deadline(c, "SELECT pg_is_in_recovery() FROM drv_ref LIMIT 1",
                                                 RESET_TIMEOUT).fetchone()[0]
            wait_for(on_replica, 20, 0.2, what="reads through pgrelay to be served by the replica")
        yield Setup(kind, relay, replica)
    finally:
        problems = relay.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _relay_logs(request, setup):
    """A failed test's report ends with the tail of this configuration's pgrelay log (conftest.py)."""
    request.node._pgrelays = [setup.relay]


def wait_replica_replayed(pg, replica, timeout=15):
    # the insert position: with synchronous_commit = off (conftest.py) the commit record of the reset
    # may not be written yet, and pg_current_wal_lsn() (the write position) may lie before it
    lsn = pg.sql("SELECT pg_current_wal_insert_lsn()")
    wait_for(lambda: replica.sql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn") == "t", timeout, 0.05,
             what=f"the replica to replay {lsn}")


def reset_through(setup):
    with connect(setup.relay.port, cursor_factory=psycopg.ClientCursor) as c:
        execute_with_deadline(c, RESET_SQL, RESET_TIMEOUT)
    if setup.replica is not None:
        wait_replica_replayed(setup.relay.pg, setup.replica)


# ----------------------------------------------------------------------------- the test

_direct = {}


def run_direct(driver, path, pg, workdir):
    """The same program directly against PostgreSQL, from the same data (once per driver and path)."""
    key = (driver, path)
    if key not in _direct:
        pg.sql(RESET_SQL, dbname="appdb")
        r = run_driver(driver, path, pg.port, workdir)
        assert r.ok, f"{driver} ({path}) failed directly against PostgreSQL: {r.symptom()}"
        if driver == "pgbench":
            r.state = pg.sql(STATE_SQL, dbname="appdb")
        else:
            got = parse_steps(driver, r.stdout)
            assert got == expected_steps(driver), (
                f"{driver} ({path}) directly against PostgreSQL printed other results than the workload's "
                f"(a bug in tests/drivers/):\n{r.stdout}")
        _direct[key] = r
    return _direct[key]


def pgbench_summary(out):
    def grab(pattern):
        m = re.search(pattern, out)
        return m.group(1) if m else None
    return {"processed": grab(r"number of transactions actually processed: (\S+)"),
            "failed": grab(r"number of failed transactions: (\d+)")}


@pytest.mark.parametrize("driver,path", DRIVER_PATHS, ids=[f"{d}-{p}" for d, p in DRIVER_PATHS])
def test_driver(setup, driver, path, pg, workdir):
    direct = run_direct(driver, path, pg, workdir)
    reset_through(setup)
    reads0 = replica_reads(setup) if setup.kind == "replicas" else None
    hits0 = cache_hits(setup) if setup.kind == "cache" else None
    t0 = time.monotonic()
    got = run_driver(driver, path, setup.relay.port, workdir)
    took = time.monotonic() - t0
    assert got.ok, f"{driver} ({path}) through pgrelay ({setup.kind}) failed after {took:.1f} s: {got.symptom()}"

    if driver == "pgbench":
        want = {"processed": f"{PGBENCH_XACTS}/{PGBENCH_XACTS}", "failed": "0"}
        assert pgbench_summary(got.stdout) == want, got.stdout
        state = pg.sql(STATE_SQL, dbname="appdb")
        assert state == direct.state, (f"pgbench ({path}) through pgrelay ({setup.kind}) left other rows than "
                                       f"directly:\n--- direct ---\n{direct.state}\n--- through pgrelay ---\n{state}")
    else:
        if got.stdout != direct.stdout:
            want, have = parse_steps(driver, direct.stdout), parse_steps(driver, got.stdout)
            diff = [f"  {k}: direct {want.get(k)!r}, through pgrelay {have.get(k)!r}"
                    for k in list(want) + [k for k in have if k not in want] if want.get(k) != have.get(k)]
            pytest.fail(f"{driver} ({path}) through pgrelay ({setup.kind}) printed other results than directly:\n"
                        + "\n".join(diff), pytrace=False)

    if setup.kind == "replicas":
        served = replica_reads(setup) - reads0
        assert served > 0, f"no read of the {driver} ({path}) run was served by the replica: the test proves nothing"
    if setup.kind == "cache" and (driver, path) not in NOT_LOOKED_UP:
        hits = cache_hits(setup) - hits0
        assert hits > 0, f"no statement of the {driver} ({path}) run was answered from the cache"
