"""Integration-test harness: one real PostgreSQL 15 for the whole run, and pgrelay processes started
per test from a generated proxy.yaml.

Run with Debian's interpreter (pytest, psycopg and asyncpg come from Debian packages):

    PGRELAY_BIN=build-asan/pgrelay /usr/bin/python3 -m pytest tests/integration -q

Environment:
    PGRELAY_BIN      the pgrelay binary (default: build-asan/pgrelay, else build/pgrelay)
    PGRELAY_IT_KEEP  1 = keep the run's temporary folder (PostgreSQL data, every pgrelay log);
                     it is kept anyway when a test failed
    PGRELAY_IT_TEST_TIMEOUT  seconds one test may take (default 120)
    PGRELAY_IT_SUITE_BUDGET  seconds the whole run may take (default: no limit): once spent, the run
                     stops after the current test with the usual summary (exit status 2)

Fixtures: pg (the session's PostgreSQL), pg2 (a second, independent one, started on first use),
pg_replica (a streaming replica of it made with
pg_basebackup -R on first use: stop/start/pause_replay/resume_replay/ensure_running), pgrelay
(factory: one pgrelay per call, checked at teardown).

PostgreSQL runs as the postgres OS user (it refuses root) from a fresh /tmp/pgrelay-it.XXXXXX folder
chowned to postgres: never inside the repository, which may live under /root (0700).
"""
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg
import pytest
from ports import free_port  # noqa: F401 (tests import it from here)
from redis_fixtures import redis_cluster, redis_single  # noqa: F401 (Redis servers: redis_fixtures.py)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PGBIN = "/usr/lib/postgresql/15/bin"
PSQL = os.path.join(PGBIN, "psql")
PGBENCH = os.path.join(PGBIN, "pgbench")

# Roles created on the test server (see PgServer.setup).
APP_PASSWORD = "secret"
MD5_PASSWORD = "md5pw"
PW_PASSWORD = "pwpw"

SANITIZER_PATTERNS = ("AddressSanitizer", "LeakSanitizer", "runtime error:", "UndefinedBehaviorSanitizer")


def pgrelay_bin():
    b = os.environ.get("PGRELAY_BIN")
    if b:
        return os.path.abspath(b)
    for cand in ("build-asan/pgrelay", "build/pgrelay"):
        p = os.path.join(REPO, cand)
        if os.path.exists(p):
            return p
    raise RuntimeError("no pgrelay binary: build it or set PGRELAY_BIN")


def sanitizer_env():
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env





def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls predicate until it returns a truthy value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        v = predicate()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ---------------------------------------------------------------- YAML


def _yaml_scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)  # config.c rejects quoted numbers
    if v is None:
        return "null"
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj, indent=0):
    pad = " " * indent
    lines = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                lines.append(f"{pad}{k}:")
                lines.append(to_yaml(v, indent + 2))
            elif isinstance(v, dict):
                lines.append(f"{pad}{k}: {{}}")
            elif isinstance(v, list):
                lines.append(f"{pad}{k}: []")
            else:
                lines.append(f"{pad}{k}: {_yaml_scalar(v)}")
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                sub = to_yaml(item, indent + 2).split("\n")
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_yaml_scalar(item)}")
    else:
        lines.append(pad + _yaml_scalar(obj))
    return "\n".join(lines)


def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# ---------------------------------------------------------------- client helpers


def psql(port, sql=None, *, user="app", password=APP_PASSWORD, dbname="appdb", host="127.0.0.1",
         conninfo="", args=(), input=None, timeout=60, check=True, on_error_stop=True):
    """Runs psql -X -A -t; returns the CompletedProcess (text). check=True asserts exit code 0."""
    dsn = f"host={host} port={port} dbname={dbname} user={user} connect_timeout=10 {conninfo}".strip()
    cmd = [PSQL, "-X", "-A", "-t", "-d", dsn]
    if on_error_stop:
        cmd += ["-v", "ON_ERROR_STOP=1"]
    if sql is not None:
        cmd += ["-c", sql]
    cmd += list(args)
    env = dict(os.environ, PGPASSWORD=password)
    for k in ("PGSERVICE", "PGSSLMODE", "PGOPTIONS", "PGAPPNAME"):
        env.pop(k, None)
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    if check:
        assert r.returncode == 0, f"psql failed ({r.returncode}): {r.stderr}"
    return r


def pgbench(port, *args, user="app", password=APP_PASSWORD, dbname="appdb", timeout=180):
    cmd = [PGBENCH, "-h", "127.0.0.1", "-p", str(port), "-U", user, *map(str, args), dbname]
    env = dict(os.environ, PGPASSWORD=password)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def connect(port, *, user="app", password=APP_PASSWORD, dbname="appdb", autocommit=True, **kw):
    kw.setdefault("connect_timeout", 10)
    kw.setdefault("sslmode", "disable")
    # psycopg prepares a query by name after 5 runs; named prepared statements do not survive
    # transaction pooling (each transaction may get another server connection).
    kw.setdefault("prepare_threshold", None)
    conn = psycopg.connect(host="127.0.0.1", port=port, user=user, password=password, dbname=dbname,
                           autocommit=autocommit, **kw)
    return conn


# ---------------------------------------------------------------- PostgreSQL


class PgServer:
    def __init__(self, base):
        self.base = base
        self.data = os.path.join(base, "pgdata")
        self.port = free_port()
        self.host = "127.0.0.1"
        self.log = os.path.join(base, "postgresql.log")

    def as_postgres(self, *cmd, check=True):
        r = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], cwd=self.base, capture_output=True,
                           text=True, timeout=120)
        if check and r.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        return r

    def start(self):
        self.as_postgres(os.path.join(PGBIN, "initdb"), "-D", self.data, "-U", "postgres", "-E", "UTF8",
                         "--locale=C", "-N", "--auth-local=trust", "--auth-host=scram-sha-256")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.base}'
max_connections = 300
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
# for the streaming replica (pg_replica): wal_level replica and max_wal_senders 10 are PG15's
# defaults; keep some WAL so a replica stopped by a test catches up without a slot
wal_keep_size = '256MB'
""")
        hba = os.path.join(self.data, "pg_hba.conf")
        with open(hba) as f:
            rest = f.read()
        with open(hba, "w") as f:
            # First match wins: these users get md5 / cleartext instead of the SCRAM default.
            f.write("host all md5user 127.0.0.1/32 md5\n"
                    "host all pwuser 127.0.0.1/32 password\n" + rest)
        self.as_postgres(os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-l", self.log, "-w", "-t", "60",
                         "start")

    def stop(self):
        self.as_postgres(os.path.join(PGBIN, "pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop",
                         check=False)

    def setup(self):
        self.sql("""
SET password_encryption = 'scram-sha-256';
CREATE ROLE app LOGIN PASSWORD 'secret';
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pw';
SET password_encryption = 'scram-sha-256';
CREATE ROLE pwuser LOGIN PASSWORD 'pwpw';
CREATE DATABASE appdb OWNER app;
GRANT CONNECT ON DATABASE appdb TO md5user, pwuser;
""")
        self.sql("GRANT ALL ON SCHEMA public TO md5user, pwuser", dbname="appdb")

    def sql(self, sql, dbname="postgres"):
        """Runs sql (one statement at a time) as the superuser over the Unix socket; returns psql's -A -t
        output."""
        r = subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.base, "-p",
                            str(self.port), "-U", "postgres", "-d", dbname, "-f", "-"],
                           input=sql, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"superuser SQL failed: {r.stderr}"
        return r.stdout.strip()

    def connect(self, dbname="appdb"):
        return psycopg.connect(host=self.base, port=self.port, user="postgres", dbname=dbname, autocommit=True)


@pytest.fixture(scope="session")
def workdir(request):
    base = tempfile.mkdtemp(prefix="pgrelay-it.", dir="/tmp")
    pw = pwd.getpwnam("postgres")
    os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o755)
    yield base
    keep = os.environ.get("PGRELAY_IT_KEEP") == "1" or request.session.testsfailed
    if keep:
        print(f"\nintegration work folder kept: {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg(workdir):
    server = PgServer(workdir)
    server.start()
    try:
        server.setup()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pg2(workdir):
    """A second, independent PostgreSQL 15 (its own data folder, port and socket folder under the
    session's work folder; the same roles and appdb as pg), so that two services really live on two
    servers."""
    base = os.path.join(workdir, "pg2")
    os.mkdir(base)
    pw = pwd.getpwnam("postgres")
    os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o755)
    server = PgServer(base)
    server.start()
    try:
        server.setup()
        yield server
    finally:
        server.stop()


class PgReplica:
    """A streaming replica of the session PostgreSQL, made with pg_basebackup -R (as the postgres OS
    user, data under the session's work folder, its own port, hot_standby = on). pg_hba.conf from
    initdb already has `local replication all trust`, so the base backup and the walreceiver connect
    over the primary's Unix socket as postgres without a password. Roles and databases (app/appdb)
    are the primary's."""

    def __init__(self, primary, base, name="replica1"):
        self.primary = primary
        self.base = base
        self.name = name
        self.data = os.path.join(base, name)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.log = os.path.join(base, f"{name}.log")
        self.running = False
        self.paused = False

    def pg_ctl(self, *args, check=True):
        return self.primary.as_postgres(os.path.join(PGBIN, "pg_ctl"), "-D", self.data, *args, check=check)

    def create(self):
        self.primary.as_postgres(os.path.join(PGBIN, "pg_basebackup"), "-h", self.primary.base, "-p",
                                 str(self.primary.port), "-U", "postgres", "-D", self.data, "-R", "-X", "stream",
                                 "--checkpoint=fast")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            # pg_basebackup copied the primary's settings: the last occurrence wins
            f.write(f"\nport = {self.port}\nhot_standby = on\ncluster_name = '{self.name}'\n")
        self.start()

    def start(self):
        self.pg_ctl("-l", self.log, "-w", "-t", "60", "start")
        self.started_at = time.time()  # accepting connections from here on
        self.running = True
        self.paused = False  # a restarted standby replays again
        self.wait_streaming()

    def stop(self, mode="immediate"):
        self.pg_ctl("-m", mode, "-w", "stop", check=False)
        self.stopped_at = time.time()  # gone from here on
        self.running = False

    def streaming(self):
        return self.primary.sql("SELECT count(*) FROM pg_stat_replication "
                                f"WHERE application_name = '{self.name}' AND state = 'streaming'") == "1"

    def wait_streaming(self, timeout=30):
        wait_for(self.streaming, timeout, 0.1, what=f"{self.name} streaming from the primary")

    def sql(self, sql, dbname="postgres"):
        """Runs sql as the superuser over the replica's Unix socket (the primary's socket folder)."""
        r = subprocess.run([PSQL, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.base, "-p",
                            str(self.port), "-U", "postgres", "-d", dbname, "-f", "-"],
                           input=sql, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"superuser SQL on {self.name} failed: {r.stderr}"
        return r.stdout.strip()

    def pause_replay(self):
        self.sql("SELECT pg_wal_replay_pause()")
        self.paused = True

    def resume_replay(self):
        self.sql("SELECT pg_wal_replay_resume()")
        self.paused = False

    def replay_lsn(self):
        return self.sql("SELECT pg_last_wal_replay_lsn()")

    def ensure_running(self):
        """Back to the state tests expect: running, streaming, replaying."""
        if not self.running:
            self.start()
        if self.paused:
            self.resume_replay()
        self.wait_streaming()

    def backend(self, **over):
        """The replica as an entry of services.X.replicas (dbname and credentials from the primary)."""
        return dict({"host": self.host, "port": self.port}, **over)


@pytest.fixture(scope="session")
def pg_replica(pg, workdir):
    replica = PgReplica(pg, workdir)
    replica.create()
    try:
        yield replica
    finally:
        replica.stop()


@pytest.fixture(scope="session")
def pgbench_tables(pg):
    """pgbench -i -s 1 in appdb, run directly against PostgreSQL (as app)."""
    r = pgbench(pg.port, "-i", "-s", "1", "-q")
    assert r.returncode == 0, r.stderr
    return True


# ---------------------------------------------------------------- pgrelay


class Relay:
    """One pgrelay process."""

    def __init__(self, pg, folder, cfg):
        self.pg = pg
        self.folder = folder
        self.cfg = cfg
        self.port = cfg["listen"]["port"]
        self.cfg_path = os.path.join(folder, "proxy.yaml")
        self.log_path = os.path.join(folder, "pgrelay.log")
        self.proc = None
        self.returncode = None
        self.nofile = None  # (soft, hard) RLIMIT_NOFILE to start with; None: inherited
        self.config_mode = 0o600  # proxy.yaml holds passwords: pgrelay warns when others may read it

    def write_config(self, cfg=None, text=None):
        if cfg is not None:
            self.cfg = cfg
        with open(self.cfg_path + ".tmp", "w") as f:
            f.write(text if text is not None else to_yaml(self.cfg) + "\n")
        os.chmod(self.cfg_path + ".tmp", self.config_mode)
        os.replace(self.cfg_path + ".tmp", self.cfg_path)

    def start(self, timeout=20):
        self.write_config()
        self.logf = open(self.log_path, "ab")
        nofile = self.nofile
        self.proc = subprocess.Popen([pgrelay_bin(), "-c", self.cfg_path], stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, env=sanitizer_env(),
                                     preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, nofile))
                                     if nofile else None)

        def accepting():
            if self.proc.poll() is not None:
                raise AssertionError(f"pgrelay exited with {self.proc.returncode} at start:\n{self.log_tail()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(accepting, timeout, what=f"pgrelay to accept on port {self.port}")
        if self.cfg.get("cache"):
            self.wait_catalogs()
        return self

    def wait_catalogs(self, timeout=15):
        """With a cache: until each service with a primary user has its first catalog load behind it
        (loaded, or failed once). Until then pgrelay caches nothing of the service."""
        services = [name for name, svc in (self.cfg.get("services") or {}).items()
                    if (svc.get("primary") or {}).get("user")]

        level = (self.cfg.get("log") or {}).get("level", "info")
        admins = (self.cfg.get("admin") or {}).get("users") or []

        def done():
            if level in ("info", "debug"):
                lines = self.log().splitlines()
                return all(any(f"catalog {name}" in ln and ("catalog loaded" in ln or "cannot load the catalog" in ln)
                               for ln in lines) for name in services)
            # quieter logs: the admin console says it (loaded, or failed once)
            with self.connect(dbname="pgrelay", user=admins[0], cursor_factory=psycopg.ClientCursor) as conn:
                rows = {r[0]: r for r in conn.execute("SHOW CATALOG").fetchall()}
            return all(name in rows and (rows[name][1] == "loaded" or int(rows[name][6]) > 0) for name in services)
        wait_for(done, timeout, what=f"the first catalog loads of {services} (pgrelay on port {self.port})")

    @property
    def pid(self):
        return self.proc.pid

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n=60):
        try:
            return "\n".join(self.log().splitlines()[-n:])
        except OSError:
            return "(no log)"

    def wait_log(self, needle, timeout=10, count=1):
        """Waits until needle (str or compiled regex) occurs at least count times in the log."""
        def found():
            text = self.log()
            n = len(needle.findall(text)) if isinstance(needle, re.Pattern) else text.count(needle)
            return n >= count
        wait_for(found, timeout, what=f"{needle!r} in the pgrelay log")

    def reload(self, cfg=None, text=None, expect="configuration reloaded", timeout=10):
        """Rewrites the config, sends SIGHUP and waits for the log line expect."""
        before = self.log().count(expect)
        self.write_config(cfg, text)
        self.proc.send_signal(signal.SIGHUP)
        self.wait_log(expect, timeout, count=before + 1)

    def rss_kb(self):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def wait_exit(self, timeout):
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def finish(self, timeout=20):
        """Stops pgrelay with SIGINT if still running; returns a list of problems (empty = clean)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            if self.wait_exit(timeout) is None:
                self.proc.kill()
                self.proc.wait()
                problems.append(f"pgrelay (port {self.port}) did not exit within {timeout}s of SIGINT")
        rc = self.proc.returncode
        self.logf.close()
        if rc != 0 and not problems:
            problems.append(f"pgrelay (port {self.port}) exited with status {rc}")
        bad = [ln for ln in self.log().splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
        if bad:
            problems.append(f"sanitizer report in pgrelay's output (port {self.port}):\n" + "\n".join(bad[:20]))
        if problems:
            problems.append(f"--- tail of {self.log_path} ---\n{self.log_tail(80)}")
        return problems

    # conveniences
    def psql(self, sql=None, **kw):
        return psql(self.port, sql, **kw)

    def connect(self, **kw):
        return connect(self.port, **kw)


def base_config(pg, port):
    return {
        "listen": {"host": "127.0.0.1", "port": port, "max_client_conn": 200},
        "log": {"level": "info"},
        # The raw-protocol client (pgwire.py) logs in as pwuser with a cleartext password and speaks
        # no TLS; test_tls.py checks the refusal with this turned off.
        "proxy": {"shutdown_timeout": "15s", "allow_cleartext_without_tls": True},
        "users": [
            {"name": "app", "password": APP_PASSWORD},  # auth defaults to scram-sha-256
            {"name": "md5user", "password": MD5_PASSWORD, "auth": "md5"},
            {"name": "pwuser", "password": PW_PASSWORD, "auth": "password"},
        ],
        "databases": {
            "appdb": {"service": "main", "pool_mode": "transaction"},
            "sessdb": {"service": "main", "pool_mode": "session"},
        },
        "services": {
            "main": {
                "primary": {"host": "127.0.0.1", "port": pg.port, "dbname": "appdb", "user": "app",
                            "password": APP_PASSWORD},
                "pool": {"max": 4, "min": 0, "connect_timeout": "5s", "query_wait_timeout": "20s"},
            },
        },
    }


@pytest.fixture
def pgrelay(pg, workdir, request):
    """Factory: pgrelay(pool={...}, users=[...], listen={...}, ...) starts a pgrelay whose config is
    base_config() with each keyword deep-merged in (pool= goes to services.main.pool; a top-level
    key given as a list replaces it). At teardown each pgrelay gets SIGINT and must exit 0 with no
    sanitizer report."""
    relays = []
    request.node._pgrelays = relays

    def start(cfg=None, *, pool=None, start=True, **sections):
        port = free_port()
        c = cfg if cfg is not None else base_config(pg, port)
        if pool:
            sections = deep_merge(sections, {"services": {"main": {"pool": pool}}})
        c = deep_merge(c, sections)
        c["listen"]["port"] = port
        folder = tempfile.mkdtemp(prefix=f"{request.node.name[:40]}.", dir=workdir)
        r = Relay(pg, folder, c)
        relays.append(r)
        return r.start() if start else r

    yield start
    problems = []
    for r in relays:
        problems += r.finish()
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for r in getattr(item, "_pgrelays", []):
            rep.sections.append((f"pgrelay log (port {r.port}, {r.log_path})", r.log_tail(60)))


# ---------------------------------------------------------------- per-test time limit
# A pgrelay bug that makes a client wait forever must fail its test, not hang the run.
TEST_TIMEOUT = int(os.environ.get("PGRELAY_IT_TEST_TIMEOUT", "120"))


class PerTestTimeout(Exception):
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    def on_alarm(signum, frame):
        raise PerTestTimeout(f"{item.name} took more than {TEST_TIMEOUT} s (PGRELAY_IT_TEST_TIMEOUT)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- the whole run's time budget
# Stopping between tests (rather than being killed from outside) keeps the summary, the failures'
# reports and the JUnit file.
SUITE_BUDGET = float(os.environ.get("PGRELAY_IT_SUITE_BUDGET", "0"))
SUITE_T0 = time.monotonic()


def _budget_spent(nodeid):
    if SUITE_BUDGET and time.monotonic() - SUITE_T0 > SUITE_BUDGET:
        return f"the run's time budget ({SUITE_BUDGET:.0f} s, PGRELAY_IT_SUITE_BUDGET) was spent after {nodeid}"
    return None


def pytest_runtest_logreport(report):
    # Runs in the process that reports: pytest itself, or xdist's controller (whose scheduler is
    # the "dsession" plugin and stops handing out tests once its shouldstop is set).
    if report.when != "teardown" or not _SESSION:
        return
    why = _budget_spent(report.nodeid)
    if why:
        dsession = _SESSION[0].config.pluginmanager.getplugin("dsession")
        if dsession is not None:
            dsession.shouldstop = why
        elif not hasattr(_SESSION[0].config, "workerinput"):
            _SESSION[0].shouldstop = why


_SESSION = []


def pytest_sessionstart(session):
    _SESSION.append(session)


from wal_fixtures import pg_logical  # noqa: E402,F401  (WAL listener tests: wal_level = logical)
