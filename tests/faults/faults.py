#!/usr/bin/python3
"""tests/faults/faults.py — owns the fault scenarios: servers, load, fault, checks, figures.

Started by tests/faults/run.sh, which makes the network namespace and the veth pair first and
removes them afterwards (see its header for what is emulated how). This file starts, under one
temporary folder:

  - the primary PostgreSQL 15 *inside* the network namespace (listening on its two veth addresses
    A and B and on the namespace's own loopback), so pgrelay reaches it over a real link where
    nftables can drop or reset packets;
  - a streaming replica of it on the host's loopback (pg_basebackup -R over the Unix socket);
  - a Redis Cluster (3 masters + 3 replicas, cluster-node-timeout 2 s) on the host's loopback;
  - per scenario, one or two pgrelay processes (a private copy of the binary), the load
    (pgbench, one process per client so that a client aborted by an error is restarted 100 ms
    later as an application would reconnect) and checker clients (psycopg 3);

then runs each scenario: load, fault in the middle, load on after the fault ends, then checks.
Everything it starts is stopped at the end (also on Ctrl-C); run.sh kills what is left by PID.

Figures per scenario:
  - TPS before (mean over the seconds before the fault, the first second left out), the lowest
    1-s TPS after the fault started, and the time to recover: from the end of the fault to the
    start of the first 1-s window (stepped by 0.1 s) with at least 50 % of the TPS before;
    also "routed around after": from the start of the fault to the first such window while the
    fault lasts, when there is one; the longest time between two completed transactions after
    the fault started ("longest stall"); and the TPS of every second. Transactions are counted from pgbench's per-transaction log
    (`--log`: completion time in epoch microseconds), so windows are exact.
  - What clients saw: every error of the checker clients (SQLSTATE + message) and every pgbench
    client abort (pgbench prints the message, not the SQLSTATE), counted; checker operations
    that took over 1 s (hung) and the longest.
  - Wrong results (must be 0): an acknowledged write missing on the primary afterwards; a read
    through pgrelay older than a write the same client had acknowledged (read-your-writes, also
    through replicas); a cached read older than a write acknowledged through another pgrelay
    instance before the read started; a large result returned as success with the wrong row
    count or checksum; pgbench's TPC-B balances not adding up (sum of accounts = branches =
    tellers = history) after the run; an error saying a transaction was not committed whose
    write is on the primary.
  - pgrelay still running at the end, and answering (`SELECT 1` through it).
"""
import argparse
import ctypes
import glob
import json
import math
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import psycopg

PGBIN = "/usr/lib/postgresql/15/bin"
LIBPQ = ctypes.CDLL("libpq.so.5")
REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PASSWORD = "fault-secret"
SIGNING_KEY = "fault-scenarios-signing-key-0123456789abcdef"
SCALE = 1            # pgbench -i -s: 1 branch, 100,000 accounts
BIG_ROWS = 20000     # fault_big: ~2.3 MB as a result
RESET_AFTER = 800000  # the reset scenario cuts a server connection after this many reply bytes

HEALTH_DEFAULT = "{ interval: 1s, timeout: 2s, fail_after: 3, recover_after: 2 }"  # pgrelay's defaults
STOP = threading.Event()


class Interrupted(Exception):
    pass


def log(msg):
    print(f"[faults {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def norm(msg):
    """One line, numbers replaced, for counting messages of the same kind together."""
    line = " ".join(str(msg).strip().split())
    line = re.sub(r"\b(client|C-|S-)\d+", r"\1N", line)
    line = re.sub(r"\d+(\.\d+)?", "N", line)
    return line[:200]


_given_ports = set()


def free_port():
    """A free port in 20000-32767 (below the ephemeral range, and low enough for Redis's bus)."""
    for _ in range(1000):
        p = random.randrange(20000, 32768)
        if p in _given_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
        _given_ports.add(p)
        return p
    raise RuntimeError("no free port")


def wait_for(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def proc_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return False
    return st[st.rindex(")") + 2] != "Z"


def children_of(pid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(d))
    return out


def env(extra=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    e.update(PGPASSWORD=PASSWORD, PGSSLMODE="disable", PGCONNECT_TIMEOUT="5", LC_ALL="C")
    if extra:
        e.update(extra)
    return e


# ------------------------------------------------------------------------------------------------
# Servers


class World:
    """Everything started for the run, and how to stop it."""

    def __init__(self, args):
        self.args = args
        self.base = args.base
        self.netns = args.netns
        self.addr_a, self.addr_b = args.addr_a, args.addr_b
        pw = pwd.getpwnam("postgres")
        self.pg_uid, self.pg_gid = pw.pw_uid, pw.pw_gid
        self.procs = []  # (name, Popen) of long-running processes, stopped at the end
        self.pg_port = free_port()      # the primary's port (inside the namespace)
        self.replica_port = free_port()
        self.primary = None             # Popen of the primary's postmaster
        self.replica = None
        self.redis = []                 # [(port, bus_port, Popen)]
        self.nft_handles = []
        self.pgrelay_bin = os.path.join(self.base, "pgrelay-bin")
        shutil.copy2(args.pgrelay, self.pgrelay_bin)
        os.makedirs(os.path.join(self.base, "pids"), exist_ok=True)
        os.makedirs(os.path.join(self.base, "logs"), exist_ok=True)

    def remember(self, name, popen):
        self.procs.append((name, popen))
        try:
            with open(f"/proc/{popen.pid}/stat") as f:
                start = f.read().rsplit(")", 1)[1].split()[19]
            with open(os.path.join(self.base, "pids", str(popen.pid)), "w") as f:
                f.write(f"{popen.pid} {start} {name}\n")
        except OSError:
            pass
        return popen

    def forget(self, popen):
        self.procs = [(n, p) for n, p in self.procs if p is not popen]
        try:
            os.unlink(os.path.join(self.base, "pids", str(popen.pid)))
        except OSError:
            pass

    def run(self, argv, check=True, timeout=120, **kw):
        p = subprocess.run(argv, cwd=self.base, env=kw.pop("env", env()), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout,
                           stdin=None if "input" in kw else subprocess.DEVNULL, **kw)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} exited with {p.returncode}:\n{p.stdout}")
        return p

    def as_pg(self, argv, netns=False):
        pre = ["ip", "netns", "exec", self.netns] if netns else []
        return pre + ["setpriv", f"--reuid={self.pg_uid}", f"--regid={self.pg_gid}", "--init-groups", "--"] + argv

    def ns(self, argv):
        return ["ip", "netns", "exec", self.netns] + argv

    # -- PostgreSQL ----------------------------------------------------------------------------

    def psql(self, sql, port=None, dbname="appdb", check=True):
        """SQL as postgres over the Unix socket (reaches the primary in the namespace too)."""
        p = self.run([f"{PGBIN}/psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.base, "-p",
                      str(port or self.pg_port), "-U", "postgres", "-d", dbname, "-f", "-"], check=check, input=sql)
        return p.stdout.strip()

    def primary_conn(self):
        return psycopg.connect(host=self.base, port=self.pg_port, user="postgres", dbname="appdb",
                               autocommit=True, connect_timeout=5)

    def start_postmaster(self, data, logname, netns):
        logf = open(os.path.join(self.base, logname), "ab")
        p = subprocess.Popen(self.as_pg([f"{PGBIN}/postgres", "-D", data], netns=netns), cwd=self.base,
                             stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                             env=env(), start_new_session=True)
        logf.close()
        return self.remember(logname, p)

    def wait_pg(self, port, popen, timeout=60):
        def ready():
            if popen.poll() is not None:
                raise RuntimeError(f"PostgreSQL on port {port} exited with {popen.returncode}")
            r = subprocess.run([f"{PGBIN}/pg_isready", "-q", "-h", self.base, "-p", str(port)], env=env())
            return r.returncode == 0
        wait_for(ready, timeout, f"PostgreSQL on port {port}")

    def setup_postgres(self):
        b = self.base
        data = os.path.join(b, "primary")
        self.run(self.as_pg([f"{PGBIN}/initdb", "-D", data, "-U", "postgres", "-E", "UTF8", "--locale=C", "-N",
                             "--auth-local=trust", "--auth-host=scram-sha-256"]))
        with open(os.path.join(data, "postgresql.conf"), "a") as f:
            f.write(f"""
listen_addresses = '127.0.0.1, {self.addr_a}, {self.addr_b}'
port = {self.pg_port}
unix_socket_directories = '{b}'
max_connections = 200
shared_buffers = 128MB
# fsync off: a SIGKILLed server loses nothing the kernel has (the machine does not crash);
# synchronous_commit ON: an acknowledged commit is in the WAL the kernel has, so the primary-kill
# scenario can demand that no acknowledged write is lost.
fsync = off
synchronous_commit = on
full_page_writes = off
wal_keep_size = '512MB'
log_min_messages = warning
""")
        with open(os.path.join(data, "pg_hba.conf"), "a") as f:
            f.write("host all all 10.213.0.0/16 scram-sha-256\n")  # pgrelay over the veth pair
        t = time.monotonic()
        self.primary = self.start_postmaster(data, "primary.log", netns=True)
        self.wait_pg(self.pg_port, self.primary)
        self.psql(f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'", dbname="postgres")
        self.psql("CREATE DATABASE appdb OWNER app", dbname="postgres")
        log(f"primary up {time.monotonic() - t:.1f} s")
        self.run([f"{PGBIN}/pgbench", "-i", "-q", "-s", str(SCALE), "-h", b, "-p", str(self.pg_port), "-U", "app",
                  "appdb"])
        self.psql(f"""
CREATE TABLE fault_log (writer int, seq bigint, PRIMARY KEY (writer, seq));
CREATE TABLE fault_cache (id int PRIMARY KEY, v bigint NOT NULL);
INSERT INTO fault_cache SELECT g, 0 FROM generate_series(1, 50) g;
CREATE TABLE fault_big (id int PRIMARY KEY, pad text NOT NULL);
INSERT INTO fault_big SELECT g, md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) FROM generate_series(1, {BIG_ROWS}) g;
ALTER TABLE fault_log OWNER TO app; ALTER TABLE fault_cache OWNER TO app; ALTER TABLE fault_big OWNER TO app;
VACUUM ANALYZE;
CHECKPOINT;
""")
        log(f"primary and its tables ready in {time.monotonic() - t:.1f} s")
        self.big_sum = int(self.psql("SELECT sum(length(pad) + id) FROM fault_big"))
        # the replica, on the host's loopback, streaming over the Unix socket
        log(f"tables made {time.monotonic() - t:.1f} s")
        rdata = os.path.join(b, "replica")
        self.run(self.as_pg([f"{PGBIN}/pg_basebackup", "-h", b, "-p", str(self.pg_port), "-U", "postgres", "-D",
                             rdata, "-R", "-X", "stream", "--checkpoint=fast"]))
        with open(os.path.join(rdata, "postgresql.conf"), "a") as f:
            f.write(f"\nlisten_addresses = '127.0.0.1'\nport = {self.replica_port}\nhot_standby = on\n"
                    "cluster_name = 'replica1'\n")
        log(f"base backup made {time.monotonic() - t:.1f} s")
        self.replica = self.start_postmaster(rdata, "replica.log", netns=False)
        self.wait_pg(self.replica_port, self.replica)
        log(f"replica up {time.monotonic() - t:.1f} s")
        wait_for(lambda: self.psql("SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                                   dbname="postgres") == "1", 30, "the replica streaming")
        log(f"replica streaming {time.monotonic() - t:.1f} s after the primary's start")

    def kill_primary(self):
        """SIGKILL to the postmaster and every process of the server at once (as an OOM kill of the
        whole server or a crash of its host would)."""
        pm = self.primary.pid
        victims = [pm] + children_of(pm)
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.primary.wait()
        self.forget(self.primary)
        return len(victims)

    def restart_primary(self):
        data = os.path.join(self.base, "primary")
        # the old backends (orphans now) may be zombies for a while: the new postmaster's start
        # checks the old shared memory, so retry until it starts
        deadline = time.monotonic() + 30
        while True:
            self.primary = self.start_postmaster(data, "primary.log", netns=True)
            try:
                self.wait_pg(self.pg_port, self.primary)
                return
            except RuntimeError:
                self.forget(self.primary)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def replica_pids(self):
        pm = self.replica.pid
        return [pm] + children_of(pm)

    def replica_caught_up(self):
        lsn = self.psql("SELECT pg_current_wal_lsn()", dbname="postgres")
        return self.psql(f"SELECT pg_last_wal_replay_lsn() >= '{lsn}'", port=self.replica_port,
                         dbname="postgres") == "t"

    # -- Redis Cluster -------------------------------------------------------------------------

    def setup_redis(self):
        for i in range(6):
            port, bus = free_port(), free_port()
            d = os.path.join(self.base, f"redis-{i}")
            os.makedirs(d)
            logf = open(os.path.join(d, "redis.log"), "ab")
            p = subprocess.Popen([REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--cluster-enabled", "yes",
                                  "--cluster-port", str(bus), "--cluster-config-file", "nodes.conf",
                                  "--cluster-node-timeout", "2000", "--save", "", "--appendonly", "no",
                                  "--dir", d], cwd=d, stdin=subprocess.DEVNULL, stdout=logf,
                                 stderr=subprocess.STDOUT, start_new_session=True)
            logf.close()
            self.remember(f"redis-{i}", p)
            self.redis.append([port, bus, p])
        for port, _, _ in self.redis:
            wait_for(lambda: self.rcli(port, "PING") == "PONG", 10, f"redis on {port}")
        self.run([REDIS_CLI, "--cluster", "create"] + [f"127.0.0.1:{p}" for p, _, _ in self.redis] +
                 ["--cluster-replicas", "1", "--cluster-yes"])
        wait_for(self.redis_ok, 20, "cluster_state:ok on every node", 0.1)

    def rcli(self, port, *cmd):
        p = subprocess.run([REDIS_CLI, "-p", str(port)] + list(cmd), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=10)
        return p.stdout.strip()

    def live_redis(self):
        return [r for r in self.redis if r[2].poll() is None]

    def redis_ok(self):
        return all("cluster_state:ok" in self.rcli(p, "CLUSTER", "INFO") for p, _, _ in self.live_redis())

    def redis_masters(self):
        """{port: node id} of the masters, from a live node's CLUSTER NODES."""
        out = {}
        for line in self.rcli(self.live_redis()[0][0], "CLUSTER", "NODES").splitlines():
            f = line.split()
            if len(f) > 2 and "master" in f[2] and "fail" not in f[2]:
                out[int(f[1].split("@")[0].rsplit(":", 1)[1])] = f[0]
        return out

    def redis_slot_owner(self, key):
        slot = int(self.rcli(self.redis[0][0], "CLUSTER", "KEYSLOT", key))
        for line in self.rcli(self.live_redis()[0][0], "CLUSTER", "NODES").splitlines():
            f = line.split()
            if len(f) < 9 or "master" not in f[2]:
                continue
            for rng in f[8:]:
                lo, _, hi = rng.partition("-")
                if lo.isdigit() and int(lo) <= slot <= int(hi or lo):
                    return int(f[1].split("@")[0].rsplit(":", 1)[1])
        return None

    # -- nftables (inside the namespace only) --------------------------------------------------

    def nft(self, *rule):
        self.run(self.ns(["nft"] + list(rule)))

    def nft_setup(self):
        self.nft("add", "table", "inet", "faults")
        for hook in ("input", "output"):
            self.nft("add", "chain", "inet", "faults", hook, "{", "type", "filter", "hook", hook, "priority", "0",
                     ";", "policy", "accept", ";", "}")

    def nft_flush(self):
        for hook in ("input", "output"):
            self.run(self.ns(["nft", "flush", "chain", "inet", "faults", hook]), check=False)

    # -- pgrelay -------------------------------------------------------------------------------

    def pgrelay_yaml(self, port, primary=None, replicas=False, cache=False, big=False,
                     health=None):
        health = health or HEALTH_DEFAULT
        host, pport = primary or (self.addr_a, self.pg_port)
        lines = [f"""# written by tests/faults/faults.py
listen: {{ host: 127.0.0.1, port: {port}, max_client_conn: 500 }}
log: {{ level: info }}
proxy: {{ shutdown_timeout: 5s }}
users:
  - {{ name: app, password: "{PASSWORD}", auth: scram-sha-256 }}
admin: {{ users: [app] }}
databases:
  appdb: {{ service: main, pool_mode: transaction }}"""]
        if big:
            lines.append("  bigdb: { service: big, pool_mode: transaction }")
        pool = "pool: { max: 16, min: 0, connect_timeout: 2s, query_wait_timeout: 10s }"
        lines.append("services:")
        lines.append(f"""  main:
    primary: {{ host: {host}, port: {pport}, dbname: appdb, user: app, password: "{PASSWORD}" }}
    {pool}
    tls: {{ mode: disable }}""")
        if replicas:
            lines.append(f"    replicas: [ {{ host: 127.0.0.1, port: {self.replica_port} }} ]")
            lines.append("    reads: replicas")
        if big:
            lines.append(f"""  big:
    primary: {{ host: {self.addr_b}, port: {self.pg_port}, dbname: appdb, user: app, password: "{PASSWORD}" }}
    {pool}
    tls: {{ mode: disable }}""")
        # default: pgrelay's defaults, written out because the figures depend on them
        lines.append(f"health: {health}")
        if cache:
            nodes = ", ".join(f'"127.0.0.1:{p}"' for p, _, _ in self.redis)
            lines.append(f"""cache:
  redis: {{ nodes: [{nodes}], cluster: true, timeout: 20ms, signing_key: "{SIGNING_KEY}" }}
  rules:
    - {{ tables: [pgbench_accounts, fault_cache], ttl: 60s }}""")
        return "\n".join(lines) + "\n"

    def start_pgrelay(self, name, yaml_text):
        port = int(re.search(r"port: (\d+), max_client", yaml_text).group(1))
        cfg = os.path.join(self.base, f"{name}.yaml")
        with open(cfg, "w") as f:
            f.write(yaml_text)
        os.chmod(cfg, 0o600)
        logpath = os.path.join(self.base, f"{name}.log")
        logf = open(logpath, "ab")
        p = subprocess.Popen([self.pgrelay_bin, "-c", cfg], cwd=self.base, stdin=subprocess.DEVNULL, stdout=logf,
                             stderr=subprocess.STDOUT, start_new_session=True)
        logf.close()
        self.remember(name, p)
        relay = dict(name=name, port=port, popen=p, log=logpath)

        def up():
            if p.poll() is not None:
                raise RuntimeError(f"pgrelay {name} exited with {p.returncode} at start:\n{tail(logpath)}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, 15, f"pgrelay {name} on port {port}")
        if "cache:" in yaml_text:
            wait_for(lambda: "catalog loaded" in open(logpath, errors="replace").read(), 15,
                     f"pgrelay {name}'s first catalog load")
        return relay

    def stop_pgrelay(self, relay):
        p = relay["popen"]
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.forget(p)

    # -- the end -------------------------------------------------------------------------------

    def stop_all(self):
        for name, p in reversed(self.procs):
            if p.poll() is not None:
                continue
            try:
                if name in ("primary.log", "replica.log"):
                    p.send_signal(signal.SIGQUIT)  # PostgreSQL: immediate shutdown
                else:
                    p.send_signal(signal.SIGINT if name.startswith("pgrelay") else signal.SIGTERM)
            except ProcessLookupError:
                pass
        for name, p in reversed(self.procs):
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            self.forget(p)


def tail(path, n=20):
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-n:])
    except OSError:
        return "(no log)"


# ------------------------------------------------------------------------------------------------
# Load: pgbench, one process per client


class Load:
    """clients pgbench processes (-c 1 each) against port/dbname, until `until` (monotonic); a
    process that exits early (its client was aborted by an error) is started again 100 ms later."""

    def __init__(self, world, tag, port, dbname, clients, script, until):
        self.world, self.tag, self.port, self.dbname = world, tag, port, dbname
        self.clients, self.script, self.until = clients, script, until
        self.aborts = {}     # normalized message -> count
        self.restarts = 0
        self.threads = []
        self.prefix = os.path.join(world.base, "logs", tag)
        self.current = {}

    def argv(self, seconds, i, k):
        a = [f"{PGBIN}/pgbench", "-n", "-c", "1", "-j", "1", "-T", str(seconds), "-l",
             f"--log-prefix={self.prefix}.{i}.{k}", "-h", "127.0.0.1", "-p", str(self.port), "-U", "app"]
        if self.script == "select":
            a += ["-S"]
        elif self.script != "tpcb":
            a += ["-f", self.script]
        return a + [self.dbname]

    def client(self, i):
        k = 0
        while not STOP.is_set():
            left = self.until - time.monotonic()
            if left < 0.5:
                return
            p = subprocess.Popen(self.argv(math.ceil(left), i, k), cwd=self.world.base, env=env(),
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True)
            self.world.remember(f"pgbench-{self.tag}", p)
            self.current[i] = p
            _, err = p.communicate()
            self.world.forget(p)
            k += 1
            if p.returncode != 0:
                for line in err.splitlines():
                    if "aborted" in line or "connection to server" in line or "FATAL" in line or \
                            ("ERROR" in line and "pgbench: error: Run was aborted" not in line):
                        m = re.sub(r"^.*aborted in command \d+ query \d+: ", "", line)
                        m = norm(m.replace("pgbench: error: ", ""))
                        self.aborts[m] = self.aborts.get(m, 0) + 1
                        break
                else:
                    if err.strip():
                        m = norm(err.strip().splitlines()[0])
                        self.aborts[m] = self.aborts.get(m, 0) + 1
                if time.monotonic() < self.until - 0.5:
                    self.restarts += 1
                time.sleep(0.1)

    def start(self):
        for i in range(self.clients):
            t = threading.Thread(target=self.client, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)

    def join(self):
        for t in self.threads:
            t.join()

    def completions(self):
        """Completion times (epoch seconds) of every transaction pgbench logged."""
        out = []
        for path in glob.glob(self.prefix + ".*"):
            with open(path) as f:
                for line in f:
                    p = line.split()
                    if len(p) >= 6 and p[2].isdigit():
                        out.append(int(p[4]) + int(p[5]) / 1e6)
        out.sort()
        return out


# ------------------------------------------------------------------------------------------------
# Checker clients


class Checker(threading.Thread):
    """Base: a client loop that records errors (SQLSTATE + message), slow operations and wrong
    results, and reconnects when its connection is gone."""

    def __init__(self, name):
        super().__init__(daemon=True)
        self.name_ = name
        self.errors = {}     # (sqlstate, normalized message) -> count
        self.wrong = []      # descriptions
        self.ops = 0
        self.hung = 0        # operations over 1 s
        self.longest = 0.0
        self.stop = threading.Event()

    def error(self, e, what):
        text = str(e).strip()
        m = re.search(r"(?<![\w])((?=[0-9A-Z]*[0-9])[0-9A-Z]{5}): ", text)
        sqlstate = getattr(e, "sqlstate", None) or (m.group(1) if m else "-")
        msg = re.sub(r"(?<![\w])(?=[0-9A-Z]*[0-9])[0-9A-Z]{5}: ", "", text, count=1)
        msg = msg.splitlines()[0] if msg else type(e).__name__
        key = (sqlstate, f"{what}: {norm(msg)}")
        self.errors[key] = self.errors.get(key, 0) + 1
        return sqlstate, msg

    def timed(self, fn):
        t = time.monotonic()
        try:
            return fn()
        finally:
            d = time.monotonic() - t
            self.ops += 1
            self.longest = max(self.longest, d)
            if d > 1.0:
                self.hung += 1

    @staticmethod
    def connect(port, dbname="appdb"):
        conn = psycopg.connect(host="127.0.0.1", port=port, user="app", password=PASSWORD, dbname=dbname,
                               autocommit=True, connect_timeout=5, sslmode="disable", prepare_threshold=None)
        # libpq's verbose messages carry the SQLSTATE ("FATAL:  08006: ..."): psycopg 3.1 has no
        # SQLSTATE for an error that ends the connection ("consuming input failed: ...")
        LIBPQ.PQsetErrorVerbosity(ctypes.c_void_p(conn.pgconn.pgconn_ptr), 2)  # PQERRORS_VERBOSE
        return conn

    def run(self):
        try:
            self.loop()
        except Exception as e:  # a checker bug must show, not pass silently
            self.wrong.append(f"checker {self.name_} crashed: {type(e).__name__}: {e}")

    def alive(self, conn):
        return conn is not None and not conn.closed and not conn.broken


class WriteChecker(Checker):
    """INSERTs (writer, seq) rows with increasing seq through pgrelay; after each acknowledged one
    reads max(seq) back through pgrelay (which may use a replica: read-your-writes must hold). After
    the run: every acknowledged row is on the primary; rows of failed INSERTs are reported."""

    def __init__(self, port, writer):
        super().__init__(f"writer {writer}")
        self.port, self.writer = port, writer
        self.acked = []
        self.in_doubt = {}   # seq -> error message
        self.reads = 0

    def loop(self):
        conn, seq, last = None, 0, 0
        while not self.stop.is_set():
            if not self.alive(conn):
                try:
                    conn = self.timed(lambda: self.connect(self.port))
                except psycopg.Error as e:
                    self.error(e, "connect")
                    time.sleep(0.1)
                    continue
            seq += 1
            try:
                self.timed(lambda: conn.execute("INSERT INTO fault_log (writer, seq) VALUES (%s, %s)",
                                                (self.writer, seq)))
                self.acked.append(seq)
                last = seq
            except psycopg.Error as e:
                _, msg = self.error(e, "INSERT")
                self.in_doubt[seq] = msg
                time.sleep(0.05)
                continue
            try:
                got = self.timed(lambda: conn.execute("SELECT max(seq) FROM fault_log WHERE writer = %s",
                                                      (self.writer,)).fetchone()[0])
                self.reads += 1
                if got is None or got < last:
                    self.wrong.append(f"{self.name_}: read max(seq) = {got} after seq {last} was acknowledged")
            except psycopg.Error as e:
                self.error(e, "SELECT")
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    def verify(self, world):
        with world.primary_conn() as c:
            present = {r[0] for r in c.execute("SELECT seq FROM fault_log WHERE writer = %s", (self.writer,))}
        lost = [s for s in self.acked if s not in present]
        if lost:
            self.wrong.append(f"{self.name_}: {len(lost)} acknowledged INSERTs missing on the primary "
                              f"(first: seq {lost[0]})")
        committed = {s: m for s, m in self.in_doubt.items() if s in present}
        for s, m in committed.items():
            if "not committed" in m:
                self.wrong.append(f"{self.name_}: seq {s} is on the primary, but its error said: {m}")
        return dict(acked=len(self.acked), failed=len(self.in_doubt), failed_committed=len(committed))


class CacheChecker(Checker):
    """One writer through pgrelay A (UPDATE fault_cache SET v = v + 1 ... RETURNING v), reads of the
    cached SELECT through B and A: a read must not return less than what was acknowledged for that
    row before the read started (values only grow)."""

    def __init__(self, port_a, port_b):
        super().__init__("cache")
        self.ports = (port_a, port_b)
        self.acked = {}
        self.reads = 0
        self.stale = 0
        self.stale_times = []

    def loop(self):
        conns = [None, None]
        rnd = random.Random(7)
        while not self.stop.is_set():
            for i in (0, 1):
                if not self.alive(conns[i]):
                    try:
                        conns[i] = self.timed(lambda: self.connect(self.ports[i]))
                    except psycopg.Error as e:
                        self.error(e, "connect")
            if not all(self.alive(c) for c in conns):
                time.sleep(0.1)
                continue
            k = rnd.randrange(1, 51)
            try:
                v = self.timed(lambda: conns[0].execute("UPDATE fault_cache SET v = v + 1 WHERE id = %s RETURNING v",
                                                        (k,)).fetchone()[0])
                self.acked[k] = max(self.acked.get(k, 0), v)
            except psycopg.Error as e:
                self.error(e, "UPDATE")
                time.sleep(0.05)
                continue
            for key in [k] + [rnd.randrange(1, 51) for _ in range(4)]:
                for i in (1, 0):
                    want = self.acked.get(key, 0)
                    try:
                        got = self.timed(lambda: conns[i].execute("SELECT v FROM fault_cache WHERE id = %s",
                                                                  (key,)).fetchone()[0])
                    except psycopg.Error as e:
                        self.error(e, "SELECT")
                        continue
                    self.reads += 1
                    if got < want:
                        self.stale += 1
                        self.stale_times.append((time.time(), "AB"[i]))
                        if len(self.wrong) < 10:
                            self.wrong.append(f"cache: row {key} read {got} through {'AB'[i]} after {want} was "
                                              f"acknowledged")
                        elif len(self.wrong) == 10:
                            self.wrong.append("cache: (more stale reads not listed)")
            time.sleep(0.002)
        for c in conns:
            if c is not None:
                c.close()

    def verify(self, world):
        with world.primary_conn() as c:
            rows = dict(c.execute("SELECT id, v FROM fault_cache").fetchall())
        for k, v in self.acked.items():
            if rows.get(k, 0) < v:
                self.wrong.append(f"cache: row {k} is {rows.get(k)} on the primary, {v} was acknowledged")
        out = dict(reads=self.reads, stale=self.stale, writes=sum(1 for _ in self.acked))
        sc = self.scenario
        if self.stale_times and sc.fault_start:
            rel = [round(t - sc.fault_start, 2) for t, _ in self.stale_times]
            out["stale_s_after_fault_start"] = [min(rel), max(rel)]
            out["stale_through"] = "".join(sorted({x for _, x in self.stale_times}))
            out["stale_after_fault_end"] = sum(1 for t, _ in self.stale_times if t > sc.fault_end)
        return out


class BigChecker(Checker):
    """Reads all of fault_big (~2.3 MB) through pgrelay: each result must be complete (row count and
    checksum) or an error."""

    def __init__(self, port, world):
        super().__init__("big")
        self.port, self.world = port, world
        self.complete = 0

    def loop(self):
        conn = None
        while not self.stop.is_set():
            if not self.alive(conn):
                try:
                    conn = self.timed(lambda: self.connect(self.port, "bigdb"))
                except psycopg.Error as e:
                    self.error(e, "connect")
                    time.sleep(0.1)
                    continue
            try:
                rows = self.timed(lambda: conn.execute("SELECT id, pad FROM fault_big").fetchall())
            except psycopg.Error as e:
                self.error(e, "SELECT (large result)")
                time.sleep(0.05)
                continue
            s = sum(len(p) + i for i, p in rows)
            if len(rows) != BIG_ROWS or s != self.world.big_sum:
                self.wrong.append(f"big: a result of {len(rows)} rows (checksum {s}) was returned as complete")
            else:
                self.complete += 1
        if conn is not None:
            conn.close()

    def verify(self, world):
        return dict(complete=self.complete)


# ------------------------------------------------------------------------------------------------
# Scenarios


class Scenario:
    name = ""
    title = ""
    short = True

    def __init__(self, world, full):
        self.world, self.full = world, full
        self.relays = []
        self.loads = []
        self.checkers = []
        self.notes = []
        self.fault_start = self.fault_end = None  # epoch seconds
        self.wrong = []

    def relay(self, name, **kw):
        port = free_port()
        r = self.world.start_pgrelay(f"pgrelay-{self.name}-{name}", self.world.pgrelay_yaml(port, **kw))
        self.relays.append(r)
        return r

    def load(self, tag, port, dbname, clients, script, until):
        ld = Load(self.world, f"{self.name}-{tag}", port, dbname, clients, script, until)
        self.loads.append(ld)
        return ld

    def start_with_checker(self, script, port, clients, checker, until):
        """pgbench running script (which also tags it) on appdb, and a WriteChecker with id checker
        writing and reading back through port: both started; returns the load."""
        ld = self.load(script, port, "appdb", clients, script, until)
        wc = WriteChecker(port, checker)
        self.checkers.append(wc)
        ld.start()
        wc.start()
        return ld

    def sleep(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if STOP.is_set():
                raise Interrupted()
            time.sleep(min(0.05, end - time.monotonic()) if end > time.monotonic() else 0)

    def run(self):
        self.t0 = time.time()
        self.execute()
        for c in self.checkers:
            c.stop.set()
        for ld in self.loads:
            ld.join()
        for c in self.checkers:
            c.join(60)
            if c.is_alive():
                self.wrong.append(f"checker {c.name_} still blocked 60 s after the end")
        self.t_end = time.time()
        return self.report()

    def measured_load(self):
        return self.loads[0]

    def report(self):
        w = self.world
        res = dict(name=self.name, title=self.title, notes=self.notes)
        # what the checkers found
        verify = {}
        for c in self.checkers:
            try:
                verify[c.name_] = c.verify(w)
            except Exception as e:
                self.wrong.append(f"verifying {c.name_}: {e}")
            self.wrong += c.wrong
        res["verify"] = verify
        if getattr(self, "tpcb", False):
            sums = w.psql("SELECT (SELECT sum(abalance) FROM pgbench_accounts), (SELECT sum(bbalance) FROM "
                          "pgbench_branches), (SELECT sum(tbalance) FROM pgbench_tellers), "
                          "(SELECT coalesce(sum(delta), 0) FROM pgbench_history)").split("|")
            res["tpcb_sums"] = sums
            if len(set(sums)) != 1:
                self.wrong.append(f"TPC-B balances do not add up (accounts, branches, tellers, history): {sums}")
        # the errors clients saw
        errors = {}
        for c in self.checkers:
            for (st, m), n in c.errors.items():
                errors[(st, f"{c.name_}: {m}")] = errors.get((st, f"{c.name_}: {m}"), 0) + n
        for ld in self.loads:
            for m, n in ld.aborts.items():
                errors[("pgbench", f"{ld.tag}: {m}")] = errors.get(("pgbench", f"{ld.tag}: {m}"), 0) + n
        res["errors"] = sorted(([st, m, n] for (st, m), n in errors.items()), key=lambda x: -x[2])
        res["restarts"] = sum(ld.restarts for ld in self.loads)
        res["checker_ops"] = sum(c.ops for c in self.checkers)
        res["hung"] = sum(c.hung for c in self.checkers)
        res["longest"] = max([c.longest for c in self.checkers] or [0])
        # throughput
        ld = self.measured_load()
        times = ld.completions()
        res.update(self.tps_figures(times))
        # pgrelay alive and answering
        alive = []
        for r in self.relays:
            ok = r["popen"].poll() is None
            if ok:
                try:
                    with Checker.connect(r["port"]) as c:
                        c.execute("SELECT 1").fetchone()
                except psycopg.Error as e:
                    ok = False
                    self.notes.append(f"{r['name']} does not answer SELECT 1 after the run: {e}")
            else:
                self.notes.append(f"{r['name']} EXITED with {r['popen'].returncode}:\n{tail(r['log'])}")
            alive.append(ok)
            with open(r["log"], errors="replace") as f:
                text = f.read()
            for pat in ("AddressSanitizer", "runtime error:", "Segmentation", "Assertion"):
                if pat in text:
                    self.notes.append(f"{r['name']} log contains {pat!r}")
                    alive[-1] = False
        res["pgrelay_ok"] = all(alive)
        for r in self.relays:
            w.stop_pgrelay(r)
        res["wrong"] = self.wrong
        res["passed"] = not self.wrong and res["pgrelay_ok"] and res["recovered"]
        return res

    def tps_figures(self, times):
        import bisect

        def count(a, b):
            return bisect.bisect_left(times, b) - bisect.bisect_left(times, a)
        t0, fs, fe = self.t0, self.fault_start, self.fault_end
        before_span = fs - (t0 + 1.0)
        before = count(t0 + 1.0, fs) / before_span if before_span > 0 else 0.0
        bar = 0.5 * before
        end = min(self.t_end, max(times) if times else self.t_end)
        lowest = None
        t = fs
        while t + 1.0 <= end:
            n = count(t, t + 1.0)
            lowest = n if lowest is None else min(lowest, n)
            t += 0.1
        during = count(fs, fe) / (fe - fs) if fe > fs else None
        around = None
        t = fs
        while t + 1.0 <= fe:
            if count(t, t + 1.0) >= bar:
                around = t - fs
                break
            t += 0.1
        recovered = None
        t = fe
        while t + 1.0 <= end:
            if count(t, t + 1.0) >= bar:
                recovered = t - fe
                break
            t += 0.1
        series = [count(t0 + i, t0 + i + 1) for i in range(int(end - t0))]
        gaps = [b - a for a, b in zip(times, times[1:]) if b > fs]
        stall = max(gaps) if gaps else None
        after_span = end - (fe + (recovered or 0) + 1.0)
        after = count(end - after_span, end) / after_span if after_span > 1 else None
        return dict(tps_before=before, tps_during=during, tps_lowest=lowest, tps_after=after,
                    routed_around=around, recovery=recovered, series=series, stall=stall, recovered=recovered is not None and before > 0,
                    fault_len=fe - fs, fault_at=fs - t0, run_len=self.t_end - t0, transactions=len(times))


class PrimaryKill(Scenario):
    name = "primary-kill"
    title = "Primary SIGKILLed (every process of it), restarted"
    tpcb = True

    def execute(self):
        w = self.world
        before, down, after = (10, 5, 15) if self.full else (3, 2, 4)
        r = self.relay("a", replicas=True)
        self.notes.append(f"pgbench TPC-B-like script (writes on the primary), 4 clients; one checker writing "
                          f"and reading back (reads through the replica, read-your-writes); primary down {down} s "
                          f"(SIGKILL to the postmaster and all its processes, then started again: crash recovery)")
        until = time.monotonic() + before + down + after + 3
        ld = self.start_with_checker("tpcb", r["port"], 4, 1, until)
        self.sleep(before)
        self.fault_start = time.time()
        n = w.kill_primary()
        log(f"{self.name}: SIGKILL to {n} processes of the primary")
        self.sleep(down)
        w.restart_primary()
        self.fault_end = time.time()
        log(f"{self.name}: primary accepting again after {self.fault_end - self.fault_start:.1f} s")
        self.sleep(max(0.0, until - time.monotonic() - 3))
        ld.join()


class ReplicaStop(Scenario):
    name = "replica-stop"
    title = "Replica SIGSTOPped (hung, not dead), then SIGCONT"

    def execute(self):
        w = self.world
        before, stop, after = (10, 30, 15) if self.full else (3, 5, 5)
        # --short: faster health checks, so that the replica is found down within the shorter stop
        health = HEALTH_DEFAULT if self.full else "{ interval: 500ms, timeout: 1s, fail_after: 2, recover_after: 2 }"
        r = self.relay("a", replicas=True, health=health)
        self.notes.append(f"health: {health}")
        self.notes.append(f"pgbench -S (reads, routed to the replica), 4 clients; one checker writing on the "
                          f"primary and reading back through pgrelay (read-your-writes); every process of the "
                          f"replica SIGSTOPped for {stop} s")
        until = time.monotonic() + before + stop + after
        ld = self.start_with_checker("select", r["port"], 4, 2, until)
        self.sleep(before)
        pids = w.replica_pids()
        self.fault_start = time.time()
        for p in pids:
            os.kill(p, signal.SIGSTOP)
        log(f"{self.name}: SIGSTOP to {len(pids)} processes of the replica")
        try:
            self.sleep(stop)
        finally:
            for p in pids:
                try:
                    os.kill(p, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        self.fault_end = time.time()
        log(f"{self.name}: SIGCONT")
        ld.join()


class LatencyLoss(Scenario):
    name = "latency-loss"
    short = False
    title = "200 ms round trip + 5 % packet loss between pgrelay and the primary"
    tpcb = True

    def execute(self):
        w = self.world
        before, fault, after = (10, 20, 10) if self.full else (3, 5, 4)
        fport = free_port()
        p = subprocess.Popen(w.ns(["/usr/bin/python3", os.path.join(HERE, "delay_proxy.py"), w.addr_a, str(fport),
                                   "127.0.0.1", str(w.pg_port)]), cwd=w.base, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env({"DELAY_MS": "100"}),
                             start_new_session=True)
        w.remember("delay-proxy", p)
        self.proxy = p
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError("delay_proxy.py did not start")
        r = self.relay("a", primary=(w.addr_a, fport))
        self.notes.append(f"pgbench TPC-B-like script, 8 clients; one checker writing and reading back; pgrelay "
                          f"reaches the primary through the forwarder for the whole run; during {fault} s the "
                          f"forwarder delays every chunk 100 ms each way and nftables drops 5 % of the packets of "
                          f"that link in each direction")
        until = time.monotonic() + before + fault + after
        ld = self.start_with_checker("tpcb", r["port"], 8, 3, until)
        self.sleep(before)
        self.fault_start = time.time()
        for hook, port_match in (("input", "dport"), ("output", "sport")):
            w.nft("add", "rule", "inet", "faults", hook, "ip", "daddr" if hook == "input" else "saddr", w.addr_a,
                  "tcp", port_match, str(fport), "numgen", "random", "mod", "100", "<", "5", "drop")
        p.send_signal(signal.SIGUSR1)
        log(f"{self.name}: +100 ms each way, 5 % loss")
        try:
            self.sleep(fault)
        finally:
            p.send_signal(signal.SIGUSR2)
            w.nft_flush()
        self.fault_end = time.time()
        log(f"{self.name}: link clean again")
        ld.join()

    def report(self):
        try:
            return super().report()
        finally:
            self.proxy.terminate()
            self.proxy.wait(10)
            self.world.forget(self.proxy)


class ResetLarge(Scenario):
    name = "reset-large"
    title = "TCP reset of the server connection in the middle of a large result"
    tpcb = True

    def measured_load(self):
        return self.loads[1]  # the large results

    def execute(self):
        w = self.world
        before, fault, after = (10, 10, 10) if self.full else (3, 3, 3)
        r = self.relay("a", big=True)
        self.notes.append(f"2 pgbench clients reading all of fault_big (~2.3 MB, {BIG_ROWS} rows) through database "
                          f"bigdb (service big: the primary through its second address); 4 pgbench TPC-B clients "
                          f"on appdb (the first address) alongside; one checker reading the large result and "
                          f"checking it; during {fault} s nftables answers with a TCP reset every packet of a "
                          f"connection to the second address past {RESET_AFTER / 1e6:.1f} MB of replies (so every "
                          f"large result is cut about a third of the way through)")
        with open(os.path.join(w.base, "big.sql"), "w") as f:
            f.write("SELECT * FROM fault_big;\n")
        until = time.monotonic() + before + fault + after
        tp = self.load("tpcb", r["port"], "appdb", 4, "tpcb", until)
        big = self.load("big", r["port"], "bigdb", 2, os.path.join(w.base, "big.sql"), until)
        bc = BigChecker(r["port"], w)
        self.checkers.append(bc)
        tp.start()
        big.start()
        bc.start()
        self.sleep(before)
        self.fault_start = time.time()
        w.nft("add", "rule", "inet", "faults", "input", "ip", "daddr", w.addr_b, "tcp", "dport", str(w.pg_port),
              "ct", "reply", "bytes", ">", str(RESET_AFTER), "reject", "with", "tcp", "reset")
        log(f"{self.name}: resetting connections to {w.addr_b} past {RESET_AFTER} bytes")
        try:
            self.sleep(fault)
        finally:
            w.nft_flush()
        self.fault_end = time.time()
        log(f"{self.name}: no more resets")
        tp.join()
        big.join()
        # what the TPC-B clients on the other address saw is reported as errors; their TPS too
        t = tp.completions()
        self.notes.append("TPC-B clients on the first address meanwhile: " + fmt_tps(self.tps_side(t)))

    def tps_side(self, times):
        import bisect
        fs, fe = self.fault_start, self.fault_end

        def rate(a, b):
            return (bisect.bisect_left(times, b) - bisect.bisect_left(times, a)) / (b - a) if b > a else 0
        return rate(self.t0 + 1, fs), rate(fs, fe)


def fmt_tps(pair):
    return f"{pair[0]:.0f} TPS before, {pair[1]:.0f} TPS during the fault"


class RedisFailover(Scenario):
    name = "redis-failover"
    short = False  # shows the documented outage limit (stale reads through the other instance)
    title = "Redis Cluster master SIGKILLed, its replica promoted"

    def execute(self):
        w = self.world
        before, after = (10, 15) if self.full else (3, 5)
        a = self.relay("a", cache=True)
        b = self.relay("b", cache=True)
        with open(os.path.join(w.base, "cached.sql"), "w") as f:
            f.write("\\set aid random(1, 2000)\nSELECT abalance FROM pgbench_accounts WHERE aid = :aid;\n")
        # the master that holds the service's versions ({main} hash tag)
        victim = w.redis_slot_owner("{main}")
        self.notes.append(f"two pgrelay instances (A, B) sharing the Redis Cluster (cache rules on pgbench_accounts "
                          f"and fault_cache, L2 signed); pgbench reading 2,000 cached rows, 3 clients on each "
                          f"instance; one checker updating fault_cache through A and reading it through B and A "
                          f"(no read may be older than an acknowledged write); the master holding the "
                          f"service's versions (hash tag {{main}}, port {victim}) SIGKILLed; fault end = its "
                          f"replica promoted and every live node cluster_state:ok (cluster-node-timeout 2 s)")
        until = time.monotonic() + before + after + 8
        la = self.load("cached-a", a["port"], "appdb", 3, os.path.join(w.base, "cached.sql"), until)
        lb = self.load("cached-b", b["port"], "appdb", 3, os.path.join(w.base, "cached.sql"), until)
        cc = CacheChecker(a["port"], b["port"])
        cc.scenario = self
        self.checkers.append(cc)
        la.start()
        lb.start()
        cc.start()
        self.sleep(before)
        node = next(n for n in w.redis if n[0] == victim)
        self.fault_start = time.time()
        node[2].kill()
        node[2].wait()
        w.forget(node[2])
        log(f"{self.name}: SIGKILL to the Redis master on port {victim}")
        wait_for(lambda: victim not in w.redis_masters() and w.redis_ok() and
                 w.redis_slot_owner("{main}") not in (None, victim), 60, "the replica's promotion", 0.1)
        self.fault_end = time.time()
        log(f"{self.name}: replica promoted after {self.fault_end - self.fault_start:.1f} s")
        self.sleep(max(0.0, until - time.monotonic() - 8))
        la.join()
        lb.join()

    def measured_load(self):
        return Merged(self.loads)  # both instances' loads


class Merged:
    def __init__(self, loads):
        self.loads = loads

    def completions(self):
        return sorted(t for ld in self.loads for t in ld.completions())


SCENARIOS = [PrimaryKill, ReplicaStop, LatencyLoss, ResetLarge, RedisFailover]


# ------------------------------------------------------------------------------------------------
# Output


def fmt(v, spec, none="-"):
    return none if v is None else format(v, spec)


def table(results):
    out = ["| scenario | fault | TPS before | TPS during (lowest 1 s) | routed around after | longest stall | "
           "recovered after fault end | TPS after | errors clients saw | wrong results | pgrelay | result |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|---|"]
    for r in results:
        if "error" in r:
            out.append(f"| {r['name']} | - | - | - | - | - | - | - | {r['error']} | ? | ? | FAILED |")
            continue
        errs = "; ".join(f"{n} x {st} {m}" for st, m, n in r["errors"][:6]) or "none"
        if len(r["errors"]) > 6:
            errs += f"; ({len(r['errors']) - 6} more kinds)"
        out.append(
            f"| {r['name']} | {r['fault_len']:.1f} s | {r['tps_before']:.0f} | "
            f"{fmt(r['tps_during'], '.0f')} ({fmt(r['tps_lowest'], 'd')}) | "
            f"{fmt(r['routed_around'], '.1f')} | {fmt(r['stall'], '.1f')} s | {fmt(r['recovery'], '.1f', 'NOT')} s | {fmt(r['tps_after'], '.0f')} | "
            f"{errs.replace('|', '/')} | {len(r['wrong'])} | {'ok' if r['pgrelay_ok'] else 'CRASHED/NOT ANSWERING'} | "
            f"{'pass' if r['passed'] else 'FAIL'} |")
    return "\n".join(out)


def details(results):
    out = []
    for r in results:
        out.append(f"### {r['name']}: {r.get('title', '')}")
        out.append("")
        if "error" in r:
            out.append(f"- scenario failed to run: {r['error']}")
            out.append("")
            continue
        for n in r["notes"]:
            out.append(f"- {n}")
        out.append(f"- fault at {r['fault_at']:.1f} s into a {r['run_len']:.1f} s run, lasting {r['fault_len']:.1f} s; "
                   f"{r['transactions']} transactions measured; pgbench clients restarted after an abort: "
                   f"{r['restarts']}")
        out.append(f"- longest time without a completed transaction after the fault started: "
                   f"{fmt(r['stall'], '.2f')} s; transactions per second from the start (fault from second "
                   f"{r['fault_at']:.0f} to {r['fault_at'] + r['fault_len']:.0f}): "
                   f"{' '.join(str(x) for x in r['series'])}")
        out.append(f"- checker operations: {r['checker_ops']}, over 1 s: {r['hung']}, longest {r['longest']:.2f} s; "
                   f"checks: {json.dumps(r['verify'])}")
        if r.get("tpcb_sums"):
            out.append(f"- TPC-B sums (accounts, branches, tellers, history) on the primary afterwards: "
                       f"{', '.join(r['tpcb_sums'])}")
        if r["errors"]:
            out.append("- errors clients saw (count, SQLSTATE or `pgbench` for a pgbench client abort, message):")
            for st, m, n in r["errors"]:
                out.append(f"  - {n} x `{st}` {m}")
        else:
            out.append("- errors clients saw: none")
        if r["wrong"]:
            out.append("- WRONG RESULTS:")
            for m in r["wrong"]:
                out.append(f"  - {m}")
        else:
            out.append("- wrong results: none")
        out.append("")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--addr-a", required=True)
    ap.add_argument("--addr-b", required=True)
    ap.add_argument("--pgrelay", required=True)
    ap.add_argument("--short", action="store_true")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--testlog")
    ap.add_argument("--report")
    args = ap.parse_args()

    def on_signal(signum, frame):
        STOP.set()
        raise Interrupted(signal.Signals(signum).name)
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    unknown = set(args.only) - {s.name for s in SCENARIOS}
    if unknown:
        ap.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in SCENARIOS)}")
    # --only picks scenarios by name (with --short: their short durations); else --short runs the short ones
    chosen = [s for s in SCENARIOS if s.name in args.only] if args.only else \
        [s for s in SCENARIOS if s.short or not args.short]
    t_start = time.monotonic()
    world = World(args)
    results = []
    status = 0
    try:
        log(f"setting up in {args.base} (primary in network namespace {args.netns} at {args.addr_a} and "
            f"{args.addr_b})")
        world.setup_postgres()
        world.nft_setup()
        if any(s is RedisFailover for s in chosen):
            world.setup_redis()
        log(f"set up in {time.monotonic() - t_start:.1f} s")
        for cls in chosen:
            sc = cls(world, full=not args.short)
            log(f"scenario {sc.name}: {sc.title}")
            t = time.monotonic()
            try:
                res = sc.run()
            except Interrupted:
                raise
            except Exception as e:
                res = dict(name=sc.name, title=sc.title, error=f"{type(e).__name__}: {e}", passed=False)
                for r in sc.relays:
                    world.stop_pgrelay(r)
            res["seconds"] = time.monotonic() - t
            results.append(res)
            log(f"scenario {sc.name}: {'pass' if res['passed'] else 'FAIL'} ({res['seconds']:.1f} s)")
            # the next scenario starts from a clean state
            if world.primary.poll() is not None:
                world.restart_primary()
            wait_for(world.replica_caught_up, 60, "the replica to catch up", 0.2)
    except Interrupted as e:
        log(f"interrupted ({e}): cleaning up")
        status = 130
    except Exception as e:
        log(f"setup failed: {type(e).__name__}: {e}")
        status = 1
    finally:
        STOP.set()
        world.stop_all()
    total = time.monotonic() - t_start
    text = (f"{table(results)}\n\n{details(results)}\n" if results else "")
    print(text)
    print(f"total {total:.0f} s", file=sys.stderr)
    if args.report:
        with open(args.report, "w") as f:
            f.write(text)
    if args.testlog:
        with open(args.testlog, "w") as f:
            for cls in chosen:
                r = next((x for x in results if x["name"] == cls.name), None)
                f.write(json.dumps({"name": f"faults/{cls.name}",
                                    "result": "OK" if r and r["passed"] else "FAIL"}) + "\n")
    if status == 0 and (len(results) != len(chosen) or not all(r["passed"] for r in results)):
        status = 1
    sys.exit(status)


if __name__ == "__main__":
    main()
