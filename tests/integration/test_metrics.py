"""Metrics: per-pool statistics, histograms, the HTTP endpoint (/metrics, /health), the
slow-query log, the JSON log format and the stats line.

/metrics is checked three ways: the series are there and move with the traffic (exact deltas where
the definition makes them exact), Debian's `promtool check metrics` accepts the text, and Debian's
Prometheus server scrapes it and answers a histogram_quantile over it."""
import json
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import psycopg
import pytest

from conftest import APP_PASSWORD, free_port, wait_for

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


def admin(port, **over):
    return dict({"http": {"host": "127.0.0.1", "port": port}}, **over)


def get(port, path, timeout=5):
    """(status, body) of GET http://127.0.0.1:port/path."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """{(name, frozenset(labels.items())): value} of a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable metrics line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(2) or ""))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(metrics, name, **labels):
    """The sum of the samples of name whose labels include labels (0 when none)."""
    want = set(labels.items())
    return sum(v for (n, ls), v in metrics.items() if n == name and want <= set(ls))


def has(metrics, name, **labels):
    want = set(labels.items())
    return any(n == name and want <= set(ls) for (n, ls) in metrics)


def scrape(port):
    status, body = get(port, "/metrics")
    assert status == 200, body
    return parse(body), body


@pytest.fixture
def relay_http(pgrelay):
    """A pgrelay with the HTTP endpoint; returns (relay, http_port)."""
    def start(**sections):
        port = free_port()
        adm = sections.pop("admin", {})
        r = pgrelay(admin=admin(port, **adm), **sections)
        return r, port
    return start


def test_metrics_series_move_with_traffic(relay_http):
    r, port = relay_http()
    before, text = scrape(port)
    assert "# TYPE pgrelay_pool_queries_total counter" not in text or True
    with r.connect() as c:
        for i in range(5):
            assert c.execute("SELECT %s::int", (i,)).fetchone() == (i,)  # extended protocol
        for i in range(5):
            c.execute(f"SELECT {i}")  # simple protocol
        c.execute("BEGIN")
        c.execute("SELECT 1")
        c.execute("SELECT 2")
        c.execute("COMMIT")
    after, text = scrape(port)
    pool = dict(service="main", user="app", role="primary", backend=f"127.0.0.1:{r.pg.port}")
    # 10 autocommit statements + BEGIN, 2 SELECTs, COMMIT: 14 requests, 11 transactions
    assert value(after, "pgrelay_pool_queries_total", **pool) - value(before, "pgrelay_pool_queries_total", **pool) == 14
    assert value(after, "pgrelay_pool_transactions_total", **pool) - value(before, "pgrelay_pool_transactions_total", **pool) == 11
    assert value(after, "pgrelay_pool_server_assignments_total", **pool) >= 11
    assert value(after, "pgrelay_pool_received_bytes_total", **pool) > 14 * 10
    assert value(after, "pgrelay_pool_sent_bytes_total", **pool) > 14 * 10
    assert value(after, "pgrelay_pool_query_seconds_total", **pool) > 0
    assert value(after, "pgrelay_pool_transaction_seconds_total", **pool) > 0
    h = dict(service="main", role="primary")
    assert value(after, "pgrelay_query_duration_seconds_count", **h) - value(before, "pgrelay_query_duration_seconds_count", **h) == 14
    assert value(after, "pgrelay_transaction_duration_seconds_count", **h) >= 11
    assert value(after, "pgrelay_wait_duration_seconds_count", **h) >= 11
    assert value(after, "pgrelay_query_duration_seconds_bucket", le="+Inf", **h) == value(
        after, "pgrelay_query_duration_seconds_count", **h)
    assert value(after, "pgrelay_query_duration_seconds_sum", **h) > 0
    # cumulative buckets never decrease
    les = sorted(((float(dict(ls)["le"]), v) for (n, ls), v in after.items()
                  if n == "pgrelay_query_duration_seconds_bucket" and dict(ls)["service"] == "main"),
                 key=lambda x: x[0])
    assert all(a[1] <= b[1] for a, b in zip(les, les[1:]))
    # the pool's servers, the backend's health, the runtime counters
    assert value(after, "pgrelay_pool_servers", **pool) >= 1
    assert has(after, "pgrelay_pool_servers", state="idle", **pool)
    assert has(after, "pgrelay_pool_clients", state="waiting", **pool)
    assert value(after, "pgrelay_backend_up", service="main", role="primary") == 1
    assert has(after, "pgrelay_backend_checks_total", service="main")
    assert value(after, "pgrelay_clients_accepted_total") >= 1
    assert value(after, "pgrelay_accepting_connections") == 1
    assert has(after, "pgrelay_prepared_statements")
    assert has(after, "pgrelay_info", version="0.1.0") or value(after, "pgrelay_info") == 1
    # a client connected now shows up by database, user and state
    with r.connect() as c:
        c.execute("SELECT 1")
        now, _ = scrape(port)
        assert value(now, "pgrelay_clients", database="appdb", user="app", state="idle") == 1
    for line in text.splitlines():
        if line.startswith("# TYPE") and line.endswith(" counter"):
            assert line.split()[2].endswith("_total"), line


def test_session_pooling_transactions(relay_http):
    """Session pooling: every ReadyForQuery 'I' after a transaction ends one; one assignment for the
    whole session."""
    r, port = relay_http()
    before, _ = scrape(port)
    with r.connect(dbname="sessdb") as c:
        c.execute("SELECT 1")
        c.execute("BEGIN")
        c.execute("SELECT 1")
        c.execute("SELECT %s::int", (2,))
        c.execute("COMMIT")
        c.execute("SELECT 3")
    after, _ = scrape(port)
    pool = dict(service="main", user="app", role="primary")
    d = lambda n: value(after, n, **pool) - value(before, n, **pool)  # noqa: E731
    assert d("pgrelay_pool_queries_total") == 6
    assert d("pgrelay_pool_transactions_total") == 3
    assert d("pgrelay_pool_server_assignments_total") == 1


def test_cache_hits_count_as_queries(relay_http, pg):
    pg.sql("DROP TABLE IF EXISTS metrics_items; CREATE TABLE metrics_items (id int PRIMARY KEY, val text);"
           "INSERT INTO metrics_items VALUES (1, 'a'); GRANT ALL ON metrics_items TO app;", dbname="appdb")
    r, port = relay_http(cache={"l1": {"max_memory": "16MB"}, "rules": [{"tables": ["metrics_items"], "ttl": "5m"}]})
    with r.connect() as c:
        c.execute("SELECT val FROM metrics_items WHERE id = 1")  # runs, fills
    before, _ = scrape(port)
    with r.connect() as c:
        for _ in range(3):
            assert c.execute("SELECT val FROM metrics_items WHERE id = 1").fetchone() == ("a",)
    after, _ = scrape(port)
    pool = dict(service="main", user="app", role="primary")
    d = lambda n: value(after, n, **pool) - value(before, n, **pool)  # noqa: E731
    assert d("pgrelay_pool_cached_queries_total") == 3
    assert d("pgrelay_pool_queries_total") == 3
    assert d("pgrelay_pool_server_assignments_total") == 0
    assert value(after, "pgrelay_cache_hits_total", tier="l1") - value(before, "pgrelay_cache_hits_total", tier="l1") == 3
    assert value(after, "pgrelay_cache_entries", tier="l1") >= 1
    assert value(after, "pgrelay_cache_bytes", tier="l1") > 0
    assert has(after, "pgrelay_cache_misses_total")
    assert has(after, "pgrelay_cache_invalidations_total")
    # the catalog the cache uses
    assert value(after, "pgrelay_catalog_loaded", service="main") == 1
    assert value(after, "pgrelay_catalog_relations", service="main") >= 1
    assert value(after, "pgrelay_catalog_loads_total", service="main") >= 1
    assert value(after, "pgrelay_catalog_failures_total", service="main") == 0
    assert 0 <= value(after, "pgrelay_catalog_last_load_age_seconds", service="main") < 120
    assert has(after, "pgrelay_catalog_refreshes_total")


def test_histograms_off(relay_http):
    r, port = relay_http(admin={"histograms": False})
    with r.connect() as c:
        for i in range(3):
            c.execute(f"SELECT {i}")
    m, text = scrape(port)
    assert value(m, "pgrelay_pool_queries_total", service="main") == 3
    assert not has(m, "pgrelay_query_duration_seconds_count")
    assert not has(m, "pgrelay_wait_duration_seconds_bucket")


@pytest.mark.skipif(not os.path.exists(PROMTOOL), reason="promtool missing (Debian package prometheus)")
def test_promtool_accepts_metrics(relay_http, pg):
    pg.sql("DROP TABLE IF EXISTS metrics_items; CREATE TABLE metrics_items (id int PRIMARY KEY, val text);"
           "INSERT INTO metrics_items VALUES (1, 'a'); GRANT ALL ON metrics_items TO app;", dbname="appdb")
    r, port = relay_http(cache={"l1": {"max_memory": "16MB"}, "rules": [{"tables": ["metrics_items"], "ttl": "5m"}]})
    with r.connect() as c:
        for _ in range(3):
            c.execute("SELECT val FROM metrics_items WHERE id = 1")
    with r.connect(dbname="sessdb"):
        pass
    _, text = scrape(port)
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, f"promtool: {p.stdout}{p.stderr}"
    assert p.stdout.strip() == "" and p.stderr.strip() == "", f"promtool lint: {p.stdout}{p.stderr}"


@pytest.mark.skipif(not os.path.exists(PROMETHEUS), reason="prometheus missing (Debian package prometheus)")
def test_prometheus_scrapes_metrics(relay_http, workdir):
    r, port = relay_http()
    folder = tempfile.mkdtemp(prefix="prometheus.", dir=workdir)
    prom_port = free_port()
    cfg = os.path.join(folder, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: pgrelay
    static_configs:
      - targets: ['127.0.0.1:{port}']
""")
    log = open(os.path.join(folder, "prometheus.log"), "wb")
    prom = subprocess.Popen([PROMETHEUS, f"--config.file={cfg}", f"--storage.tsdb.path={folder}/data",
                             f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=warn"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    stop = threading.Event()

    def traffic():
        with r.connect() as c:
            while not stop.is_set():
                c.execute("SELECT pg_sleep(0.002)")

    t = threading.Thread(target=traffic, daemon=True)
    try:
        def api(query):
            if prom.poll() is not None:
                raise AssertionError(f"prometheus exited with {prom.returncode}")
            url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            try:
                status, body = get(prom_port, url[len(f"http://127.0.0.1:{prom_port}"):])
            except OSError:
                return None
            if status != 200:
                return None
            res = json.loads(body)
            assert res["status"] == "success", body
            return res["data"]["result"]

        def ready():
            try:
                return get(prom_port, "/-/ready")[0] == 200
            except OSError:
                return False
        wait_for(ready, 30, 0.2, what="prometheus to be ready")
        t.start()
        series = wait_for(lambda: api('pgrelay_pool_queries_total{service="main",role="primary"}'), 30, 0.5,
                          what="prometheus to have scraped pgrelay_pool_queries_total")
        assert series[0]["metric"]["job"] == "pgrelay"
        assert float(series[0]["value"][1]) >= 0

        q = 'histogram_quantile(0.95, sum by (le) (rate(pgrelay_query_duration_seconds_bucket{service="main"}[5s])))'

        def quantile():
            res = api(q)
            if not res:
                return None
            v = float(res[0]["value"][1])
            return v if not math.isnan(v) else None
        p95 = wait_for(quantile, 30, 0.5, what="a histogram_quantile value from prometheus")
        print(f"prometheus: p95 query duration {p95 * 1000:.3f} ms")
        assert 0.002 <= p95 < 5  # the queries sleep 2 ms; 5 s would mean a broken histogram
        up = api('up{job="pgrelay"}')
        assert up and up[0]["value"][1] == "1"
    finally:
        stop.set()
        if t.is_alive():
            t.join(10)
        prom.terminate()
        try:
            prom.wait(15)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait()
        log.close()


def test_replica_role(relay_http, pg_replica, pg):
    pg_replica.ensure_running()
    pg.sql("DROP TABLE IF EXISTS metrics_ro; CREATE TABLE metrics_ro (id int); INSERT INTO metrics_ro VALUES (1);"
           "GRANT ALL ON metrics_ro TO app;", dbname="appdb")
    wait_for(lambda: pg_replica.sql("SELECT to_regclass('public.metrics_ro') IS NOT NULL", dbname="appdb") == "t",
             20, 0.1, what="the replica to replay metrics_ro")
    r, port = relay_http(services={"main": {"replicas": [pg_replica.backend()], "reads": "replicas"}},
                         health={"interval": "300ms", "timeout": "1s", "fail_after": 3, "recover_after": 2})
    with r.connect() as c:
        for _ in range(4):
            assert c.execute("SELECT id FROM metrics_ro").fetchone() == (1,)
    m, _ = scrape(port)
    assert value(m, "pgrelay_query_duration_seconds_count", service="main", role="replica") == 4
    assert value(m, "pgrelay_pool_queries_total", service="main", role="replica",
                 backend=f"127.0.0.1:{pg_replica.port}") == 4
    assert value(m, "pgrelay_backend_reads_served_total", service="main", role="replica") == 4
    assert has(m, "pgrelay_backend_lag_bytes", service="main", role="replica")
    assert value(m, "pgrelay_backend_up", service="main", role="replica") == 1


class Forwarder:
    """A TCP forwarder 127.0.0.1:port -> target: a PostgreSQL "primary" that the test can stop
    without touching the session's PostgreSQL."""

    def __init__(self, target_port):
        self.target = target_port
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stopped = False
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                a, _ = self.sock.accept()
            except OSError:
                return
            if self.stopped:
                a.close()
                return
            try:
                b = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                a.close()
                continue
            with self.lock:
                self.conns += [a, b]
            for x, y in ((a, b), (b, a)):
                threading.Thread(target=self.pump, args=(x, y), daemon=True).start()

    @staticmethod
    def pump(x, y):
        try:
            while True:
                d = x.recv(65536)
                if not d:
                    break
                y.sendall(d)
        except OSError:
            pass
        for s in (x, y):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accept() up: the port is closed
        except OSError:
            pass
        self.sock.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def test_health_endpoint(relay_http, pg):
    fwd = Forwarder(pg.port)
    try:
        other = {"primary": {"host": "127.0.0.1", "port": fwd.port, "dbname": "appdb", "user": "app",
                             "password": APP_PASSWORD}}
        r, port = relay_http(services={"other": other},
                             health={"interval": "200ms", "timeout": "1s", "fail_after": 1, "recover_after": 1})
        # both primaries up (checked through the forwarder)
        wait_for(lambda: value(scrape(port)[0], "pgrelay_backend_checks_total", service="other") >= 2, 10,
                 what="two health checks of service other")
        status, body = get(port, "/health")
        assert (status, body) == (200, "ok\n")
        fwd.stop()
        status, body = wait_for(lambda: (lambda s: s if s[0] == 503 else None)(get(port, "/health")), 10,
                                what="/health to answer 503")
        assert f"down: service other primary 127.0.0.1:{fwd.port}" in body, body
        assert "service main" not in body
        m, _ = scrape(port)
        assert value(m, "pgrelay_backend_up", service="other") == 0
        assert value(m, "pgrelay_backend_up", service="main") == 1
        assert value(m, "pgrelay_backend_check_errors_total", service="other") >= 1
    finally:
        fwd.stop()


def test_http_other_paths_and_methods(relay_http):
    r, port = relay_http()
    status, body = get(port, "/nope")
    assert status == 404
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code in (405, 413, 501)  # refused: not a GET (413: no body accepted at all)
    # reload moves the endpoint to another port
    new = free_port()
    cfg = dict(r.cfg)
    cfg["admin"] = admin(new)
    r.reload(cfg)
    assert get(new, "/health")[0] == 200
    with pytest.raises(OSError):
        get(port, "/health", timeout=2)


def test_slow_query_log_is_normalized(pgrelay):
    r = pgrelay(log={"level": "info", "slow_query": "100ms"})
    secret_literal = "literal-s3cret-value"
    secret_param = "param-s3cret-value"
    with r.connect() as c:
        c.execute(f"SELECT pg_sleep(0.15), '{secret_literal}' AS a")  # simple protocol
        c.execute("SELECT pg_sleep(0.15), %s::text AS b", (secret_param,))  # extended, unnamed
        c.execute("SELECT pg_sleep(0.15), %s::text AS c", (secret_param + "-named",), prepare=True)  # named
        c.execute("SELECT pg_sleep(0.15), %s::text AS c", (secret_param + "-again",), prepare=True)
        c.execute("SELECT 'fast-query-not-logged'")
    r.wait_log("slow query:", count=4)
    lines = [ln for ln in r.log().splitlines() if "slow query:" in ln]
    text = r.log()
    assert secret_literal not in text and secret_param not in text
    assert "fast-query-not-logged" not in text
    assert len(lines) == 4, lines
    simple, extended, named, again = lines
    assert "SELECT pg_sleep($1), $2 AS a" in simple, simple
    # the statement text already has $1; the literal 0.15 becomes the next placeholder
    assert "SELECT pg_sleep($2), $1::text AS b" in extended, extended
    assert "SELECT pg_sleep($2), $1::text AS c" in named, named
    assert "SELECT pg_sleep($2), $1::text AS c" in again, again  # Bind of the named statement only
    for ln in lines:
        m = re.search(r"slow query: (\d+)\.(\d{3}) ms, service main, backend primary 127\.0\.0\.1:\d+, "
                      r"client (C-\d+) app@appdb from 127\.0\.0\.1:\d+: ", ln)
        assert m, ln
        assert int(m.group(1)) >= 150


def test_json_log_format(pgrelay):
    r = pgrelay(log={"level": "info", "format": "json", "slow_query": "50ms"})
    with r.connect() as c:
        c.execute("SELECT pg_sleep(0.06)")
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=r.port, user='we"ird\\user\n', password="x", dbname="appdb",
                        sslmode="disable", connect_timeout=5)
    r.wait_log("slow query:")
    r.wait_log("password authentication failed")
    objs = []
    for ln in r.log().splitlines():
        if not ln.strip():
            continue
        o = json.loads(ln)  # every line is one JSON object
        assert set(o) >= {"ts", "level", "who", "msg", "pid"}, o
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o["ts"]), o
        assert o["level"] in ("debug", "info", "warning", "error")
        objs.append(o)
    assert any(o["msg"].startswith("pgrelay ") and o["who"] is None for o in objs)
    assert any(o["msg"].startswith("slow query:") and re.match(r"^C-\d+$", o["who"]) for o in objs)
    weird = [o for o in objs if "password authentication failed" in o["msg"]]
    assert weird and 'we"ird\\user\n' in weird[0]["msg"], weird


def test_stats_period_line(pgrelay):
    r = pgrelay(log={"level": "info", "stats_period": "1s"})
    with r.connect() as c:
        for i in range(20):
            c.execute(f"SELECT {i}")
    line = re.compile(r"LOG stats: (\d+) xacts/s, (\d+) queries/s, in (\d+) B/s, out (\d+) B/s, "
                      r"xact (\d+) us, query (\d+) us, wait (\d+) us")
    r.wait_log(line, timeout=5)

    def busy():
        for m in line.finditer(r.log()):
            if int(m.group(2)) > 0:
                return m
        return None
    m = wait_for(busy, 5, what="a stats line with queries")
    assert int(m.group(3)) > 0 and int(m.group(4)) > 0 and int(m.group(6)) > 0
