"""Helpers of the cache's configuration matrix (test_cache_matrix.py): one Deployment per
configuration (L1 / L1 + Redis / L1 + Redis Cluster, WAL listener or not, one or two pgrelay
instances), client connections speaking each protocol, and the expectations a configuration
promises.

A scenario is a plain function scenario(d, proto) registered with @scenario; it gets a Deployment
`d` and a protocol name and uses:

    d.a, d.b            the instances writes and reads go through (d.b is d.a with one instance)
    d.instances         every instance (reads go through all of them)
    d.conn(relay, proto)    a client (.one(sql, params), .execute(sql, params), .close())
    d.table()           a fresh table (id int primary key, v int), rows 1..3 with v = 0, covered by
                        the cache rules, readable and writable by the test roles (made around
                        pgrelay: its reads are cached once each instance's catalog has it, within
                        CATALOG_REFRESH)
    d.view(t)           a view over table t (SELECT id, v), covered and granted the same way
    d.direct(sql)       runs sql directly on PostgreSQL (autocommit, as the superuser): around pgrelay
    d.cached(relay, conn, sql, params)   reads until the read is served from that instance's cache
                        (SHOW CACHE counts a hit), returns the row
    d.expect(relay, conn, sql, params, new, old, seen)   the read after a commit, as the
                        configuration promises: seen = NOW (must show it at once), BOUNDED (within
                        WAL_BOUND seconds, each read before showing either value), NEVER (the
                        configuration cannot see it: the cached old row is what it serves, until
                        its TTL)
    d.after_commit_elsewhere   what an instance sees of a commit made through the other one
    d.after_direct_write       what every instance sees of a write made directly on PostgreSQL
    d.remember(proto, sql, params, value)   what a freshly started instance must read at the end
                        (Redis configurations: test_fresh_instance_reads_no_stale_entry)

Protocols: "simple" (Query messages: psycopg's ClientCursor), "extended" (psycopg,
prepare_threshold=None: unnamed Parse/Bind/Describe/Execute/Sync), "raw" (pgwire.py, as pwuser:
Parse/Bind/Execute/Sync without Describe, so cached replies have no RowDescription).
"""
import itertools
import re
import struct
import tempfile
import time
import uuid

import psycopg

import pgwire
from conftest import APP_PASSWORD, PW_PASSWORD, Relay, base_config, deep_merge, free_port, wait_for
from wal_fixtures import drop_slots

PROTOCOLS = ("simple", "extended", "raw")
NOW, BOUNDED, NEVER = "now", "bounded", "never"
WAL_BOUND = 5.0  # seconds: a write seen in the WAL reaches every instance within this (typically ms)
SIGNING_KEY = "the matrix's L2 signing key, 32 bytes or more"
CATALOG_REFRESH = "500ms"  # each scenario's tables are made around pgrelay: the catalogs learn them this often

SCENARIOS = []
# Table names are never reused in a run: a name whose table was dropped and made again would still be
# in the catalogs an instance loaded before (a reload then changes the catalog, and every key).
TABLE_NUMBERS = itertools.count(1)


def scenario(fn=None, *, protocols=PROTOCOLS):
    """Registers fn(d, proto) to run on every configuration, once per protocol."""
    def register(f):
        for p in protocols:
            SCENARIOS.append((f, p))
        return f
    return register(fn) if fn else register


class Config:
    """One cell of the matrix."""

    def __init__(self, l2, wal, n):
        self.l2, self.wal, self.n = l2, wal, n  # l2: None, "single" or "cluster"

    @property
    def id(self):
        return f"{self.l2 or 'l1'}-{'wal' if self.wal else 'nowal'}-{self.n}x"


CONFIGS = [Config(l2, wal, n) for l2, wal, n in itertools.product((None, "single", "cluster"), (False, True), (1, 2))]


class Client:
    """A connection through pgrelay speaking one protocol; params are %s placeholders."""

    def __init__(self, relay, proto):
        self.proto = proto
        if proto == "raw":
            self.raw = pgwire.RawConn("127.0.0.1", relay.port)
            self.raw.startup("pwuser", "appdb", PW_PASSWORD)
        else:
            kw = {"cursor_factory": psycopg.ClientCursor} if proto == "simple" else {}
            self.pg = psycopg.connect(host="127.0.0.1", port=relay.port, user="app", password=APP_PASSWORD,
                                      dbname="appdb", autocommit=True, prepare_threshold=None, sslmode="disable",
                                      connect_timeout=10, **kw)

    def _raw(self, sql, params):
        n = itertools.count(1)
        text = re.sub(r"%s", lambda m: f"${next(n)}", sql).encode() + b"\0"
        values = b"".join(struct.pack("!i", len(str(v).encode())) + str(v).encode() for v in params)
        self.raw.send(pgwire.message("P", b"\0" + text + struct.pack("!H", 0)) +
                      pgwire.message("B", b"\0\0" + struct.pack("!HH", 0, len(params)) + values + struct.pack("!H", 0)) +
                      pgwire.message("E", b"\0" + struct.pack("!I", 0)) + pgwire.message("S"))
        results, errors, _ = self.raw.read_results()
        if errors:
            raise errors[0]
        rows = results[0][1] if results else []
        return [tuple(int(c) if c is not None and c.lstrip("-").isdigit() else c for c in r) for r in rows]

    def rows(self, sql, params=()):
        if self.proto == "raw":
            return self._raw(sql, params)
        cur = self.pg.execute(sql, params or None)
        return cur.fetchall() if cur.description else []

    def one(self, sql, params=()):
        rows = self.rows(sql, params)
        return rows[0] if rows else None

    def execute(self, sql, params=()):
        self.rows(sql, params)

    def close(self):
        if self.proto == "raw":
            self.raw.close()
        else:
            self.pg.close()


class Deployment:
    def __init__(self, cfg, pg, workdir, redis_single=None, redis_cluster=None):
        self.cfg = cfg
        self.pg = pg
        self.workdir = workdir
        self.redis = redis_single if cfg.l2 == "single" else redis_cluster if cfg.l2 == "cluster" else None
        self.prefix = f"mx{uuid.uuid4().hex[:8]}"
        self.instances = []
        self.started = []  # every pgrelay started (fresh ones too), for the logs and the final check
        self.slots = []
        self.memory = []
        self._clients = []
        self._admin = {}
        self.db = pg.connect()  # superuser, autocommit, over the Unix socket
        # the test server runs with synchronous_commit off, whose commits reach the WAL (and the
        # listeners) only at the WAL writer's next round (up to 200 ms)
        self.db.execute("SET synchronous_commit = on")

    # -- what this configuration promises --
    @property
    def after_commit_elsewhere(self):
        """A commit through one instance, read through the other one."""
        return NOW if self.cfg.l2 else BOUNDED if self.cfg.wal else NEVER

    @property
    def after_direct_write(self):
        return BOUNDED if self.cfg.wal else NEVER

    @property
    def a(self):
        return self.instances[0]

    @property
    def b(self):
        return self.instances[-1]

    # -- instances --
    def cache_section(self, slot):
        c = {"l1": {"max_memory": "16MB"}, "rules": [{"tables": ["mx_*"], "ttl": "5m"}],
             "catalog_refresh": CATALOG_REFRESH}
        if self.redis:
            nodes = self.redis.addrs if self.cfg.l2 == "cluster" else [self.redis.addr]
            c["redis"] = {"nodes": nodes, "cluster": self.cfg.l2 == "cluster", "timeout": "500ms",
                          "prefix": self.prefix, "signing_key": SIGNING_KEY}
        if slot:
            from wal_fixtures import WAL_PASSWORD, WAL_USER
            c["wal_listener"] = {"service": "main", "slot": slot, "user": WAL_USER, "password": WAL_PASSWORD}
        return c

    def start_instance(self, wal=True):
        """One more pgrelay of this configuration (its own WAL slot; wal=False: no listener);
        returns once it can serve from the cache (the WAL listener streams)."""
        slot = None
        if self.cfg.wal and wal:
            slot = f"mx_{uuid.uuid4().hex[:12]}"
            self.slots.append(slot)
        port = free_port()
        c = deep_merge(base_config(self.pg, port), {
            "services": {"main": {"primary": {"port": self.pg.port}, "pool": {"max": 6}}},
            "admin": {"users": ["app"]}, "cache": self.cache_section(slot)})
        c["listen"]["port"] = port
        folder = tempfile.mkdtemp(prefix=f"matrix-{self.cfg.id}.", dir=self.workdir)
        r = Relay(self.pg, folder, c)
        self.started.append(r)
        r.start()
        if slot:
            wait_for(lambda: self.sql_value(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' "
                                            "AND active") == 1, 15, 0.05, what=f"the WAL listener of {r.port}")
        return r

    def start(self):
        if self.cfg.l2 == "single":
            self.redis.cli("FLUSHALL")
        elif self.cfg.l2 == "cluster":
            for m in self.redis.masters():
                self.redis.node(m["addr"]).cli("FLUSHALL")
        for _ in range(self.cfg.n):
            self.instances.append(self.start_instance())
        return self

    def stop(self):
        """Stops every instance; returns the problems (exit status, sanitizer reports)."""
        for c in self._clients:
            try:
                c.close()
            except Exception:  # noqa: BLE001 - a broken client does not matter any more
                pass
        problems = []
        for r in self.started:
            problems += r.finish()
        try:
            drop_slots(self.pg, self.slots)
        except AssertionError as e:
            problems.append(str(e))
        self.db.close()
        return problems

    # -- clients and data --
    def conn(self, relay, proto):
        c = Client(relay, proto)
        self._clients.append(c)
        return c

    def sql_value(self, sql, params=None):
        return self.db.execute(sql, params).fetchone()[0]

    def direct(self, sql, params=None):
        self.db.execute(sql, params)

    def table(self):
        name = f"mx_{next(TABLE_NUMBERS)}"
        self.db.execute(f"DROP TABLE IF EXISTS {name}")
        self.db.execute(f"CREATE TABLE {name} (id int PRIMARY KEY, v int)")
        self.db.execute(f"GRANT ALL ON {name} TO app, pwuser")
        self.catalogs_settled()
        with self.db.transaction():
            self.db.execute(f"INSERT INTO {name} VALUES (1, 0), (2, 0), (3, 0)")
            lsn = self.sql_value("SELECT pg_current_wal_insert_lsn()")
        self.wal_settled(lsn)
        return name

    def view(self, table):
        name = f"{table}_v"
        self.db.execute(f"CREATE VIEW {name} AS SELECT id, v FROM {table}")
        self.db.execute(f"GRANT ALL ON {name} TO app, pwuser")
        self.catalogs_settled()
        return name

    def catalogs_settled(self):
        """Until every running instance's catalog holds every relation there is (tables are only ever
        added here): DDL made around pgrelay is learned at the next periodic load, and until then a
        WAL listener's instance invalidates everything for each change of a relation it does not
        know, which would hide what a scenario checks."""
        want = self.sql_value("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN "
                              "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_t%'")
        for r in self.instances:
            self.hits(r)  # opens the console connection
            wait_for(lambda: int(self._admin[r].execute("SHOW CATALOG").fetchone()[2] or 0) == want, 10, 0.05,
                     what=f"the catalog of {r.port} with {want} relations")

    def wal_settled(self, lsn):
        """With WAL listeners: until every instance's slot is confirmed past lsn (a position inside a
        transaction), i.e. its listener has handled that commit (with Redis: Redis has the bump), so
        that the bump does not land after a scenario's first reads."""
        active = [s for s in self.slots if self.sql_value(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND active", (s,))]
        for slot in active:
            wait_for(lambda: self.sql_value("SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                                            "WHERE slot_name = %s", (lsn, slot)), 10, 0.02,
                     what=f"slot {slot} past the table's rows")

    def hits(self, relay):
        """Cache hits of relay so far (SHOW CACHE on a console connection kept per instance)."""
        a = self._admin.get(relay)
        if a is None:
            a = self._admin[relay] = psycopg.connect(host="127.0.0.1", port=relay.port, user="app",
                                                     password=APP_PASSWORD, dbname="pgrelay", autocommit=True,
                                                     cursor_factory=psycopg.ClientCursor, sslmode="disable")
            self._clients.append(a)
        return next(int(row[3]) for row in a.execute("SHOW CACHE").fetchall() if row[0] == "total")

    def cached(self, relay, conn, sql, params=(), timeout=5):
        """Reads until the read is a hit of relay's cache; returns the row."""
        deadline = time.monotonic() + timeout
        while True:
            before = self.hits(relay)
            row = conn.one(sql, params)
            if self.hits(relay) == before + 1:
                return row
            assert time.monotonic() < deadline, f"{sql} {params} is never served from the cache of {relay.port}"
            time.sleep(0.02)

    def expect(self, relay, conn, sql, params, new, old, seen):
        """The read through relay after a commit that changed old into new, as `seen` promises."""
        if seen == NOW:
            got = conn.one(sql, params)
            assert got == new, f"{self.cfg.id}: read {got} through {relay.port} after the commit of {new}"
        elif seen == BOUNDED:
            t0 = time.monotonic()
            while True:
                got = conn.one(sql, params)
                if got == new:
                    return time.monotonic() - t0
                assert got == old, f"{self.cfg.id}: read {got}, neither {old} nor {new}"
                assert time.monotonic() - t0 < WAL_BOUND, \
                    f"{self.cfg.id}: {relay.port} still served {old} {WAL_BOUND} s after the commit of {new}"
                time.sleep(0.01)
        else:
            got = conn.one(sql, params)
            assert got == old, f"{self.cfg.id}: expected the cached {old} (nothing tells this instance), got {got}"
        return 0.0

    def remember(self, proto, sql, params, value):
        self.memory.append((proto, sql, tuple(params), value))


def redis_keys(d, pattern):
    """Keys of the deployment's Redis (every master of a cluster) matching pattern."""
    nodes = [d.redis] if d.cfg.l2 == "single" else [d.redis.node(m["addr"]) for m in d.redis.masters()]
    return [k for n in nodes for k in n.cli("--scan", "--pattern", pattern).split() if k]

