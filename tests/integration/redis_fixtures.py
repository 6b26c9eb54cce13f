"""Redis fixtures for the integration tests: real redis-server processes (Debian's Redis 7) on free
loopback ports, in folders under the session's work folder, stopped at the end of the session.

    redis_single   one server (DEBUG enabled for local connections)
    redis_cluster  a Redis Cluster of 6 nodes: 3 masters + 3 replicas (redis-cli --cluster create)

Both are session-scoped; tests that stop, pause or kill a node must leave it running again
(RedisServer.ensure_running, RedisCluster.wait_ok). Servers run in the foreground as children of
pytest (no --daemonize), so a test can SIGSTOP/SIGKILL them through their Popen.

Notes (see also ../shared/design/postgres-redis-in-tests.md): the cluster bus port is set with
--cluster-port (the default port+10000 fails above 55535); --cluster-yes makes the create step
unattended; a cluster needs 1-2 s after create (and after a node restarts from nodes.conf) before
every node says cluster_state:ok.
"""
import os
import signal
import subprocess
import time

import pytest
from ports import free_port as _free_port

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"



def _wait(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """One redis-server. cluster=True: cluster-enabled, with its own bus port and nodes.conf."""

    def __init__(self, base, name, cluster=False, node_timeout_ms=2000, extra=(), user=None, password=None):
        """extra: more redis-server arguments (e.g. --requirepass, --user ...); user/password: what
        cli() authenticates with by default."""
        self.dir = os.path.join(base, name)
        self.user = user
        self.password = password
        os.makedirs(self.dir, exist_ok=True)
        self.name = name
        self.host = "127.0.0.1"
        self.port = _free_port()
        self.cluster = cluster
        self.bus_port = _free_port() if cluster else None
        self.node_timeout_ms = node_timeout_ms
        self.extra = list(extra)
        self.log = os.path.join(self.dir, "redis.log")
        self.proc = None
        self.paused = False

    @property
    def addr(self):
        return f"{self.host}:{self.port}"

    def args(self):
        a = [REDIS_SERVER, "--bind", self.host, "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--logfile", self.log, "--enable-debug-command", "local", "--daemonize", "no"]
        if self.cluster:
            a += ["--cluster-enabled", "yes", "--cluster-port", str(self.bus_port), "--cluster-config-file",
                  "nodes.conf", "--cluster-node-timeout", str(self.node_timeout_ms),
                  # a replica restarted a moment ago may still take over (tests kill masters in turn)
                  "--cluster-replica-validity-factor", "0"]
        return a + self.extra

    def start(self, timeout=10):
        self.proc = subprocess.Popen(self.args(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.paused = False

        def answers():
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server {self.addr} exited with {self.proc.returncode}:\n"
                                     + self.log_tail())
            return self.cli("PING", check=False, timeout=2).strip() in ("PONG", "NOAUTH Authentication required.")

        _wait(answers, timeout, f"redis-server {self.addr} to answer PING")
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def auth_args(self, user=None, password=None):
        user, password = user or self.user, password or self.password
        return (["--no-auth-warning", "-a", password] if password else []) + (["--user", user] if user else [])

    def cli(self, *args, check=True, timeout=10, password=None, user=None):
        """redis-cli against this server; returns stdout (text). check: fail on a non-zero exit."""
        cmd = [REDIS_CLI, "-h", self.host, "-p", str(self.port)] + self.auth_args(user, password)
        r = subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"redis-cli {' '.join(map(str, args))} on {self.addr} failed: {r.stderr}")
        return r.stdout

    def pause(self):
        self.proc.send_signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)
        self.paused = False

    def kill(self):
        if self.running():
            if self.paused:
                self.resume()
            self.proc.kill()
            self.proc.wait(10)

    def stop(self):
        if self.running():
            if self.paused:
                self.resume()
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def ensure_running(self):
        if not self.running():
            self.start()
        elif self.paused:
            self.resume()

    def log_tail(self, n=20):
        try:
            with open(self.log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return "(no log)"


class RedisCluster:
    """6 cluster-enabled servers joined by redis-cli --cluster create (3 masters, 1 replica each);
    or size/replicas as given (e.g. 3 masters, no replica), each node started with extra arguments
    and cli() authenticating as user/password."""

    def __init__(self, base, size=6, node_timeout_ms=2000, replicas=1, name="cluster", extra=(), user=None,
                 password=None):
        self.replicas = replicas
        self.nodes = [RedisServer(base, f"{name}-{i}", cluster=True, node_timeout_ms=node_timeout_ms, extra=extra,
                                  user=user, password=password)
                      for i in range(size)]

    @property
    def addrs(self):
        return [n.addr for n in self.nodes]

    def start(self):
        for n in self.nodes:
            n.start()
        r = subprocess.run([REDIS_CLI, "--cluster", "create", *self.addrs, "--cluster-replicas", str(self.replicas),
                            "--cluster-yes", *self.nodes[0].auth_args()], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, f"redis-cli --cluster create failed:\n{r.stdout}\n{r.stderr}"
        self.wait_ok()
        return self

    def stop(self):
        for n in self.nodes:
            n.kill()

    def node(self, addr_or_port):
        for n in self.nodes:
            if n.addr == addr_or_port or n.port == addr_or_port:
                return n
        raise KeyError(addr_or_port)

    def any_running(self):
        return next(n for n in self.nodes if n.running() and not n.paused)

    def cluster_nodes(self, via=None):
        """CLUSTER NODES as dicts: id, addr (ip:port), flags (set), master (id or None), slots
        [(lo, hi)], migrating/importing markers are ignored."""
        text = (via or self.any_running()).cli("CLUSTER", "NODES")
        out = []
        for line in text.splitlines():
            f = line.split()
            if len(f) < 8:
                continue
            slots = []
            for s in f[8:]:
                if s.startswith("["):
                    continue
                lo, _, hi = s.partition("-")
                slots.append((int(lo), int(hi or lo)))
            out.append({"id": f[0], "addr": f[1].split("@")[0], "flags": set(f[2].split(",")),
                        "master": None if f[3] == "-" else f[3], "slots": slots})
        return out

    def masters(self, via=None):
        return [e for e in self.cluster_nodes(via) if "master" in e["flags"] and "fail" not in e["flags"]
                and e["slots"]]

    def node_id(self, node):
        return node.cli("CLUSTER", "MYID").strip()

    def owner(self, slot, via=None):
        """The server whose master entry holds slot."""
        for e in self.masters(via):
            if any(lo <= slot <= hi for lo, hi in e["slots"]):
                return self.node(e["addr"])
        raise AssertionError(f"no master holds slot {slot}")

    def keyslot(self, key):
        return int(self.any_running().cli("CLUSTER", "KEYSLOT", key).strip())

    def wait_ok(self, timeout=30):
        """Every running node says cluster_state:ok and sees all 16384 slots on 3 masters that are
        not failing, all nodes agreeing on who masters what; with every node running, each master
        also has its replica online (so that a failover can happen)."""
        def replicas_online():
            if not self.replicas or not all(n.running() and not n.paused for n in self.nodes):
                return True
            for e in self.masters():
                info = self.node(e["addr"]).cli("INFO", "replication", check=False, timeout=5)
                if "state=online" not in info:
                    return False
            return True

        def ok():
            if not replicas_online():
                return False
            views = set()
            for n in self.nodes:
                if not n.running() or n.paused:
                    continue
                info = n.cli("CLUSTER", "INFO", check=False, timeout=5)
                if "cluster_state:ok" not in info:
                    return False
                ms = self.masters(n)
                if sum(hi - lo + 1 for e in ms for lo, hi in e["slots"]) != 16384:
                    return False
                views.add(tuple(sorted((e["addr"], tuple(e["slots"])) for e in ms)))
            return len(views) == 1
        _wait(ok, timeout, "the Redis Cluster to be ok and agreed", interval=0.1)

    def ensure_running(self):
        restarted = False
        for n in self.nodes:
            if not n.running():
                n.start()
                restarted = True
            elif n.paused:
                n.resume()
        if restarted:
            self.wait_ok()


def _base(workdir, name):
    path = os.path.join(workdir, name)
    os.makedirs(path, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def redis_single(workdir):
    """One redis-server (DEBUG SLEEP allowed from loopback)."""
    server = RedisServer(_base(workdir, "redis"), "single")
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def redis_cluster(workdir):
    """A 6-node Redis Cluster (3 masters + 3 replicas, cluster-node-timeout 2 s)."""
    cluster = RedisCluster(_base(workdir, "redis"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
