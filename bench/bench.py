#!/usr/bin/python3
"""pgrelay vs pgbouncer vs PostgreSQL itself, measured with pgbench.

Started by bench/run.sh (which checks for root and /usr/bin/python3); see bench/README.md.
Progress goes to stderr, the Markdown report to stdout and to bench/out/latest.md.
"""
import argparse
import glob
import math
import os
import pwd
import re
import shutil
import signal
import socket
import resource
import subprocess
import sys
import tempfile
import time

PGBIN = "/usr/lib/postgresql/15/bin"
PASSWORD = "bench-secret"  # for the role "app": SCRAM between pgbench, the proxies and PostgreSQL
SYSTEMS = ("direct", "pgrelay", "pgbouncer")
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)


class Interrupted(Exception):
    pass


class SetupError(Exception):
    pass


def progress(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Requirements


def check_requirements(args, extra=()):
    """extra: more (path, Debian package) pairs that must be executable."""
    missing = []
    need = [
        (f"{PGBIN}/initdb", "postgresql-15"),
        (f"{PGBIN}/pg_ctl", "postgresql-15"),
        (f"{PGBIN}/postgres", "postgresql-15"),
        (f"{PGBIN}/pgbench", "postgresql-15"),
        (f"{PGBIN}/psql", "postgresql-client-15"),
        (getattr(args, "pgbouncer", "/usr/sbin/pgbouncer"), "pgbouncer"),
        ("/usr/sbin/runuser", "util-linux"),
    ] + list(extra)
    for path, pkg in need:
        if not os.access(path, os.X_OK):
            missing.append(f"{path} not found: install the Debian package {pkg} (apt-get install {pkg})")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        missing.append("no \"postgres\" OS user: install the Debian package postgresql-15")
    baseline = getattr(args, "baseline", None)
    if baseline and not os.access(baseline, os.X_OK):
        missing.append(f"--baseline {baseline} not found or not executable")
    if not os.access(args.pgrelay, os.X_OK):
        missing.append(f"{args.pgrelay} not found or not executable: build it first "
                       f"(cd {REPO_DIR} && meson setup build; ninja -C build) or pass --pgrelay PATH")
    if missing:
        for m in missing:
            print(f"bench: {m}", file=sys.stderr)
        sys.exit(2)


def have_openssl():
    return shutil.which("openssl", path="/usr/bin:/bin") is not None


# ---------------------------------------------------------------------------------------------
# Processes


def free_ports(n):
    """Asks the kernel for n distinct free loopback ports (bind to port 0), then releases them."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def proc_alive(pid):
    """True if pid exists and is not a zombie (PID 1 here reaps orphans only after ~2 s)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def cpu_seconds(pid):
    """utime + stime of pid (all its threads), in seconds, from /proc/PID/stat fields 14 and 15."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()  # fields[0] is field 3 (state)
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = PASSWORD
    env["PGSSLMODE"] = "disable"  # PostgreSQL has ssl=on for the TLS run; everything else is plain
    env["PGCONNECT_TIMEOUT"] = "10"
    env["LC_ALL"] = "C"
    if extra:
        env.update(extra)
    return env


class Bench:
    # Free loopback ports, set as attributes NAME_port by make_base().
    PORT_NAMES = ("pg", "pgrelay", "pgbouncer", "pgrelay_tls", "pgbouncer_tls", "pgrelay_base")
    REPORT_FILE = "latest.md"  # in bench/out/
    LOG_PREFIX = ""            # the proxies' logs are copied to bench/out/LOG_PREFIX + NAME.log

    def __init__(self, args):
        self.args = args
        self.base = None
        self.pg_started = False
        self.proxies = {}      # name -> dict(popen, pid, port, log, kind, cfg)
        self.current = None    # the running pgbench Popen
        self.notes = []
        self.pg_uid = pwd.getpwnam("postgres").pw_uid
        self.pg_gid = pwd.getpwnam("postgres").pw_gid
        self.pgrelay_tls_ok = False
        self.tls_ok = False
        self.started_names = []  # every proxy started, in order (for collect_proxy_logs)

    # -- helpers -------------------------------------------------------------------------------

    def as_pg(self, argv, **kw):
        return ["/usr/sbin/runuser", "-u", "postgres", "--"] + argv

    def run(self, argv, check=True, env=None, timeout=600, as_postgres=False):
        if as_postgres:
            argv = self.as_pg(argv)
        p = subprocess.run(argv, cwd=self.base or "/tmp", env=env or clean_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise SetupError(f"{' '.join(argv)} exited with {p.returncode}:\n{p.stdout}")
        return p

    def write(self, name, text, mode=0o644, owner_pg=True):
        path = os.path.join(self.base, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        if owner_pg:
            os.chown(path, self.pg_uid, self.pg_gid)
        return path

    def psql(self, *sql, files=(), tuples=False):
        """Runs SQL texts (-c), then files (-f), on the database app as postgres. tuples: -At output."""
        argv = [f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.base, "-p", str(self.pg_port),
                "-U", "postgres", "-d", "app"] + (["-At", "-F", " "] if tuples else [])
        for s in sql:
            argv += ["-c", s]
        for f in files:
            argv += ["-f", f]
        return self.run(argv)

    # -- setup ---------------------------------------------------------------------------------

    def setup(self):
        self.make_base()
        self.make_certs()
        self.start_postgres()
        self.init_pgbench()
        self.start_proxy("pgrelay")
        if getattr(self.args, "baseline", None):
            self.start_proxy("pgrelay-base")
        self.start_proxy("pgbouncer")

    def make_base(self):
        """The temporary directory, the ports, the private copy of pgrelay."""
        self.base = tempfile.mkdtemp(prefix="pgrb.", dir="/tmp")  # short: socket path <= 107 bytes
        os.chown(self.base, self.pg_uid, self.pg_gid)
        state = os.environ.get("BENCH_STATE")
        if state:
            with open(state, "w") as f:
                f.write(self.base + "\n")
        os.mkdir(os.path.join(self.base, "logs"), 0o700)  # pgbench (root) writes its --log files here
        for name, port in zip(self.PORT_NAMES, free_ports(len(self.PORT_NAMES))):
            setattr(self, f"{name}_port", port)
        # A private copy: the build directory is shared and may be rebuilt during the run.
        snap = os.path.join(self.base, "pgrelay-bin")
        self.pgrelay_origin = describe_binary(self.args.pgrelay)
        shutil.copy2(self.args.pgrelay, snap)
        self.args.pgrelay = snap
        if getattr(self.args, "baseline", None):
            # --baseline: a second pgrelay (e.g. an older commit's), measured in the same run.
            self.baseline_origin = describe_binary(self.args.baseline, git=False)
            base_snap = os.path.join(self.base, "pgrelay-base-bin")
            shutil.copy2(self.args.baseline, base_snap)
            self.args.baseline = base_snap
        self.pgrelay_server_tls_key = self.pgrelay_accepts(
            "bench.services.tls", self.pgrelay_yaml(self.pgrelay_port, False, server_tls=True))

    def make_certs(self):
        if not have_openssl():
            self.notes.append("TLS run skipped: the openssl command is missing (Debian package openssl).")
            return
        b = self.base
        try:
            self.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                      "-subj", "/CN=pgrelay-bench-CA", "-keyout", f"{b}/ca.key", "-out", f"{b}/ca.crt"])
            self.run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
                      "-keyout", f"{b}/server.key", "-out", f"{b}/server.csr"])
            self.write("ext.cnf", "subjectAltName = IP:127.0.0.1, DNS:localhost\n")
            self.run(["openssl", "x509", "-req", "-in", f"{b}/server.csr", "-CA", f"{b}/ca.crt", "-CAkey",
                      f"{b}/ca.key", "-CAcreateserial", "-days", "2", "-extfile", f"{b}/ext.cnf",
                      "-out", f"{b}/server.crt"])
        except SetupError as e:
            self.notes.append(f"TLS run skipped: generating a certificate failed: {e}")
            return
        for name, mode in (("server.key", 0o600), ("server.crt", 0o644), ("ca.crt", 0o644)):
            os.chmod(f"{b}/{name}", mode)
            os.chown(f"{b}/{name}", self.pg_uid, self.pg_gid)  # PostgreSQL wants its key 0600, its own
        self.tls_ok = True

    def start_postgres(self):
        b = self.base
        progress(f"initdb + start PostgreSQL on port {self.pg_port} in {b}")
        self.run([f"{PGBIN}/initdb", "-D", f"{b}/pg", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N",
                  "--auth-local=trust", "--auth-host=scram-sha-256"], as_postgres=True)
        conf = f"""
listen_addresses = '127.0.0.1'
port = {self.pg_port}
unix_socket_directories = '{b}'
max_connections = 200
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = scram-sha-256
""" + self.extra_pg_conf()
        if self.tls_ok:
            conf += f"ssl = on\nssl_cert_file = '{b}/server.crt'\nssl_key_file = '{b}/server.key'\n"
        with open(f"{b}/pg/postgresql.conf", "a") as f:
            f.write(conf)
        self.pg_started = True
        self.run([f"{PGBIN}/pg_ctl", "-D", f"{b}/pg", "-l", f"{b}/pg.log", "-w", "-t", "60", "start"],
                 as_postgres=True)
        self.pg_pid = int(open(f"{b}/pg/postmaster.pid").readline())
        self.run([f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", b, "-p", str(self.pg_port), "-U",
                  "postgres", "-d", "postgres", "-c", f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'",
                  "-c", "CREATE DATABASE app OWNER app"])

    def extra_pg_conf(self):
        """More postgresql.conf lines (a subclass's)."""
        return ""

    def init_pgbench(self):
        progress("pgbench -i -s 10 (directly against PostgreSQL)")
        t = time.monotonic()
        self.run([f"{PGBIN}/pgbench", "-i", "-s", "10", "-q", "-h", "127.0.0.1", "-p", str(self.pg_port),
                  "-U", "app", "app"])
        self.psql("CHECKPOINT")
        progress(f"pgbench -i took {time.monotonic() - t:.1f} s")

    def pgrelay_accepts(self, name, yaml_text):
        path = self.write(f"{name}.yaml", yaml_text)
        p = subprocess.run([self.args.pgrelay, "--check", "-c", path], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        os.unlink(path)
        return p.returncode == 0, (p.stdout.strip().splitlines() or ["(no output)"])[0]

    def pgrelay_yaml(self, port, tls, server_tls=None):
        if server_tls is None:
            server_tls = getattr(self, "pgrelay_server_tls_key", (False,))[0]
        # pgrelay -> PostgreSQL in plain TCP, like pgbouncer's server_tls_sslmode = disable (pgrelay's
        # services.X.tls defaults to prefer, and PostgreSQL has ssl = on for the TLS run).
        server_tls_line = "    tls: { mode: disable }\n" if server_tls else ""
        tls_block = ""
        if tls:
            tls_block = (f"  tls: {{ mode: require, cert: {self.base}/server.crt, "
                         f"key: {self.base}/server.key }}\n")
        return f"""# written by bench/bench.py
listen:
  host: 127.0.0.1
  port: {port}
{tls_block}log:
  level: info
users:
  - {{ name: app, password: "{PASSWORD}", auth: scram-sha-256 }}
databases:
  app: {{ service: bench, pool_mode: transaction }}
services:
  bench:
    primary: {{ host: 127.0.0.1, port: {self.pg_port}, dbname: app, user: app, password: "{PASSWORD}" }}
    pool: {{ max: {self.args.pool}, min: 0 }}
{server_tls_line}"""

    def pgrelay_extra_yaml(self, name):
        """More top-level YAML for the pgrelay instance called name (a subclass's: e.g. cache:)."""
        return ""

    def pgbouncer_ini(self, name, port, tls):
        b = self.base
        tls_lines = ""
        if tls:
            tls_lines = (f"client_tls_sslmode = require\nclient_tls_key_file = {b}/server.key\n"
                         f"client_tls_cert_file = {b}/server.crt\n")
        return f"""; written by bench/bench.py
[databases]
app = host=127.0.0.1 port={self.pg_port} dbname=app

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
pidfile = {b}/{name}.pid
auth_type = scram-sha-256
auth_file = {b}/userlist.txt
pool_mode = transaction
default_pool_size = {self.args.pool}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 2000
max_db_connections = 0
server_tls_sslmode = disable
{"max_prepared_statements = 200" + chr(10) if pgbouncer_has_prepared(self.args.pgbouncer) else ""}{tls_lines}"""

    def check_pgrelay_tls(self):
        """pgrelay's listen.tls is new: use it only if `pgrelay --check` accepts the key."""
        if not self.tls_ok:
            return False
        ok, first = self.pgrelay_accepts("pgrelay-tls-check", self.pgrelay_yaml(self.pgrelay_tls_port, True))
        if not ok:
            self.notes.append(f"pgrelay TLS cell skipped: `pgrelay --check` rejects `listen.tls`: `{first}`")
            progress("pgrelay does not accept listen.tls yet: its TLS cell is skipped")
            return False
        return True

    def start_proxy(self, name):
        """name: pgrelay, pgbouncer, pgrelay-tls or pgbouncer-tls."""
        kind, tls = name.split("-")[0], name.endswith("-tls")
        port = getattr(self, name.replace("-", "_") + "_port")
        log = os.path.join(self.base, f"{name}.log")
        logf = open(log, "a")
        if kind == "pgrelay":
            cfg = self.write(f"{name}.yaml", self.pgrelay_yaml(port, tls) + self.pgrelay_extra_yaml(name),
                             mode=0o600, owner_pg=False)
            binary = self.args.baseline if name == "pgrelay-base" else self.args.pgrelay
            popen = subprocess.Popen([binary, "-c", cfg], cwd=self.base, stdin=subprocess.DEVNULL,
                                     stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
            pid = popen.pid
            with open(os.path.join(self.base, f"{name}.pid"), "w") as f:
                f.write(f"{pid}\n")  # for run.sh's clean-up of last resort
        else:
            self.write("userlist.txt", f'"app" "{PASSWORD}"\n', mode=0o600)
            cfg = self.write(f"{name}.ini", self.pgbouncer_ini(name, port, tls), mode=0o600)
            pidfile = os.path.join(self.base, f"{name}.pid")
            if os.path.exists(pidfile):
                os.unlink(pidfile)
            popen = subprocess.Popen(self.as_pg([self.args.pgbouncer, cfg]), cwd=self.base,
                                     stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
            pid = None
        logf.close()
        deadline = time.monotonic() + 15
        while True:
            if popen.poll() is not None:
                raise SetupError(f"{name} exited with {popen.returncode} at start-up:\n{tail(log, 20)}")
            if kind == "pgbouncer" and pid is None:
                pid = pgbouncer_pid(popen.pid, os.path.join(self.base, f"{name}.pid"))
            if pid and port_open(port):
                break
            if time.monotonic() > deadline:
                popen.kill()
                raise SetupError(f"{name} did not listen on port {port} within 15 s:\n{tail(log, 20)}")
            time.sleep(0.05)
        self.proxies[name] = dict(popen=popen, pid=pid, port=port, log=log, kind=kind)
        if name not in self.started_names:
            self.started_names.append(name)
        progress(f"{name} started (pid {pid}, port {port})")
        # Fill the pool once, so no measured run pays for opening server connections: pgbench
        # bursts of 2 x pool clients until PostgreSQL shows pool size more connections (pgbouncer
        # opens them one at a time, so a single short burst is not always enough).
        want = self.args.pool * len(self.proxies)
        for attempt in range(8):
            if not self.warm_up(name, port, tls):
                break
            if self.server_conns()[0] >= want:
                break
        have, ssl = self.server_conns()
        if have < want:
            self.notes.append(f"after starting {name}: only {have} of the {want} expected proxy server "
                              f"connections are open on PostgreSQL")
        if ssl:
            self.notes.append(f"after starting {name}: {ssl} proxy server connection(s) use TLS to PostgreSQL")
        progress(f"server connections on PostgreSQL: {have} (want {want}), {ssl} with TLS")

    def server_conns(self):
        """(connections of the role app on PostgreSQL, how many of them use TLS)."""
        q = ("SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a JOIN pg_stat_ssl s "
             "USING (pid) WHERE a.usename = 'app' AND a.backend_type = 'client backend'")
        out = self.psql(q, tuples=True).stdout.split()
        return int(out[0]), int(out[1])

    def stop_proxy(self, name):
        pr = self.proxies.pop(name, None)
        if not pr:
            return
        sig = signal.SIGINT if pr["kind"] == "pgrelay" else signal.SIGTERM  # both: exit at once
        for s, wait in ((sig, 5), (signal.SIGKILL, 5)):
            if pr["pid"] and proc_alive(pr["pid"]):
                try:
                    os.kill(pr["pid"], s)
                except ProcessLookupError:
                    pass
            try:
                pr["popen"].wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if pr["popen"].poll() is None:
            pr["popen"].kill()
            pr["popen"].wait()
        if pr["kind"] == "pgrelay":
            try:
                os.unlink(os.path.join(self.base, f"{name}.pid"))
            except OSError:
                pass

    def ensure_proxy(self, name):
        """Restarts a proxy that died, noting it (with its last log lines) in the report."""
        pr = self.proxies.get(name)
        if pr and proc_alive(pr["pid"]) and pr["popen"].poll() is None:
            return True
        if pr:
            code = pr["popen"].poll()
            self.notes.append(f"{name} was not running before a run (exit status {code}); restarted. "
                              f"Last log lines:\n\n```\n{tail(pr['log'], 15)}\n```")
            progress(f"{name} died (exit {code}); restarting it")
            self.stop_proxy(name)
        try:
            self.start_proxy(name)
            return True
        except SetupError as e:
            self.notes.append(f"{name} could not be restarted: {e}")
            return False

    def warm_up(self, name, port, tls, script="warm-up", seconds=1, clients=None, mode="simple"):
        """An unmeasured pgbench run (default: 1 s of 2 x pool clients, to fill the pool)."""
        env = clean_env({"PGSSLMODE": "require"} if tls else None)
        c = clients or 2 * self.args.pool
        p = subprocess.run([f"{PGBIN}/pgbench", "-n"] + self.script_args(script) +
                           ["-T", str(seconds), "-c", str(c), "-j", str(min(c, 2)), "-M", mode, "-h", "127.0.0.1",
                            "-p", str(port), "-U", "app", "app"], cwd=self.base, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=seconds + 60)
        if p.returncode != 0:
            self.notes.append(f"warm-up of {name} failed (pgbench exit {p.returncode}):\n\n```\n"
                              + "\n".join(p.stdout.strip().splitlines()[-8:]) + "\n```")
            progress(f"warm-up of {name} failed (pgbench exit {p.returncode})")
            return False
        return True

    # -- one measured run ----------------------------------------------------------------------

    def script_args(self, script):
        """pgbench arguments for a script name: select (-S), tpcb (the default) or warm-up."""
        return [] if script == "tpcb" else ["-S"]

    def before_run(self, script):
        """Just before a measured run, outside its timing."""
        if script == "tpcb":
            # What pgbench does itself without -n, but directly on PostgreSQL and outside the timing.
            self.psql("VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history")

    def after_run(self, system, script, res, out):
        """Just after a measured run: a subclass adds its own figures to res (out: pgbench's stdout)."""

    def run_cell(self, label, systems, cell_no, *run_args, **run_kw):
        """One cell: pgbench_run(system, port, *run_args) for every system, back to back, in an order
        rotated by cell_no so that no system always runs first or last; with --rounds 2 the order
        is then run again reversed (A B C C B A), so a drift of the machine's speed during the cell
        weighs on every system alike, and each system's runs are merged. Returns {system: result}."""
        k = cell_no % len(systems)
        order = list(systems[k:]) + list(systems[:k])
        progress(f"cell {label}: {', '.join(order)}")
        return self.run_rounds(order, lambda s: self.pgbench_run(s, self.port_of(s), *run_args, **run_kw))

    def run_rounds(self, order, run):
        """run(system) for the systems in order, then (rounds > 1) in reverse order and so on;
        returns {system: merged result}."""
        runs = {s: [] for s in order}
        for r in range(getattr(self.args, "rounds", 1)):
            for s in (order if r % 2 == 0 else list(reversed(order))):
                runs[s].append(run(s))
        return {s: merge_runs(rs) for s, rs in runs.items()}

    def port_of(self, system):
        return self.pg_port if system == "direct" else getattr(self, system.replace("-", "_") + "_port")

    def pgbench_run(self, system, port, script, mode, clients, connect=False, tls=False):
        """Returns a result dict. system: direct, pgrelay, pgbouncer, pgrelay-tls, pgbouncer-tls."""
        res = dict(tps=None, n=0, failed=None, rc=None, p50=None, p95=None, p99=None, cpu=None, client_cpu=None,
                   err=[])
        proxy = None if system == "direct" else system
        if proxy and not self.ensure_proxy(proxy):
            res["rc"] = "proxy down"
            return res
        self.before_run(script)
        prefix = os.path.join(self.base, "logs", f"{system}")
        for f in glob.glob(prefix + ".*"):
            os.unlink(f)
        argv = [f"{PGBIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", "app",
                "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(self.args.duration), "-M", mode,
                "--log", f"--log-prefix={prefix}"]
        argv += self.script_args(script)
        if connect:
            argv.append("--connect")
        argv.append("app")
        env = clean_env({"PGSSLMODE": "require"} if tls else None)
        pid = self.proxies[proxy]["pid"] if proxy else None
        cpu0 = cpu_seconds(pid) if pid else None
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.current = subprocess.Popen(argv, cwd=self.base, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
        try:
            out, err = self.current.communicate(timeout=self.args.duration + 90)
        except subprocess.TimeoutExpired:
            self.current.kill()
            out, err = self.current.communicate()
            err += "\nbench: pgbench killed after a timeout"
        rc = self.current.returncode
        self.current = None
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # pgbench was reaped: its CPU is in here
        client_cpu = (ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime)
        if pid:
            try:
                cpu1 = cpu_seconds(pid)
            except OSError:
                cpu1 = None
        res["rc"] = rc
        m = re.search(r"^tps = ([0-9.]+)", out, re.M)
        res["tps"] = float(m.group(1)) if m else None
        m = re.search(r"^number of transactions actually processed: (\d+)", out, re.M)
        res["n"] = int(m.group(1)) if m else 0
        m = re.search(r"^number of failed transactions: (\d+)", out, re.M)
        res["failed"] = int(m.group(1)) if m else None
        res["err"] = [l for l in err.splitlines() if l.strip()]
        lat = pgbench_latencies_us(prefix)
        if lat:
            res["p50"], res["p95"], res["p99"] = (percentile(lat, p) / 1000.0 for p in (50, 95, 99))
        res["lat"] = lat
        if pid and cpu1 is not None:
            res["cpu_s"] = cpu1 - cpu0
        res["client_cpu_s"] = client_cpu
        if pid and cpu1 is not None and res["n"] > 0:
            res["cpu"] = (cpu1 - cpu0) / res["n"] * 10000
        if res["n"] > 0:
            res["client_cpu"] = client_cpu / res["n"] * 10000
        self.after_run(system, script, res, out)
        if rc != 0 or res["failed"]:
            errs = "\n".join(res["err"][:6]) or "(nothing on stderr)"
            self.notes.append(f"{system}, {script} -M {mode} -c {clients}{' --connect' if connect else ''}"
                              f"{' (TLS)' if tls else ''}: pgbench exit {rc}, failed transactions "
                              f"{res['failed']}:\n\n```\n{errs}\n```")
        tps = f"{res['tps']:.0f}" if res["tps"] is not None else "-"
        cpu = f"{res['cpu']:.3f}" if res["cpu"] is not None else "-"
        progress(f"  {system:10s} {script:6s} {mode:8s} c={clients:<3d}{' connect' if connect else ''}"
                 f"{' tls' if tls else ''}: tps {tps}, cpu/10k {cpu}, failed {res['failed']}, exit {rc}")
        return res

    # -- the benchmark -------------------------------------------------------------------------

    def main(self):
        args = self.args
        clients_list = [1, 16] if args.quick else [1, 16, 64]
        started, date = self.begin()
        scripts = [(sc, t) for sc, t in (("select", "Select-only (`pgbench -S`)"),
                                         ("tpcb", "TPC-B (`pgbench`'s default script)"))
                   if args.only in (None, sc)]
        per_script = sum(len(self.systems(m)) for m in ("simple", "extended", "prepared")) * len(clients_list)
        n_runs = (len(scripts) * per_script + (0 if args.only else 7)) * args.rounds
        progress(f"{n_runs} pgbench runs of {args.duration} s: about "
                 f"{(n_runs * (args.duration + 0.5) + 30) / 60:.1f} min")
        self.setup()

        sections = []
        cell_no = 0
        for script, title in scripts:
            rows = []
            for mode in ("simple", "extended", "prepared"):
                for clients in clients_list:
                    systems = self.systems(mode)
                    results = self.run_cell(f"{script} -M {mode} -c {clients}", systems, cell_no, script, mode,
                                            clients)
                    cell_no += 1
                    rows.append(((mode, clients), results))
            sections.append((title, rows))
        if args.only:
            self.finish(started, lambda elapsed: self.report(date, sections, elapsed))
            return

        # TLS: client -> proxy (and client -> PostgreSQL) with PGSSLMODE=require.
        tls_rows = []
        if self.tls_ok:
            self.pgrelay_tls_ok = self.check_pgrelay_tls()
            tls_systems = ["direct", "pgbouncer-tls"] + (["pgrelay-tls"] if self.pgrelay_tls_ok else [])
            for s in tls_systems[1:]:
                self.start_proxy(s)
            progress("TLS cell: -S -M extended -c 16, PGSSLMODE=require")
            merged = self.run_rounds(tls_systems, lambda s: self.pgbench_run(s, self.port_of(s), "select",
                                                                             "extended", 16, tls=True))
            results = {s.replace("-tls", ""): r for s, r in merged.items()}
            if not self.pgrelay_tls_ok:
                results["pgrelay"] = "skipped"
            for s in tls_systems[1:]:
                self.stop_proxy(s)
            tls_rows.append((("extended", 16), results))
        sections.append(("TLS (`PGSSLMODE=require`, `-S -M extended -c 16`)", tls_rows))

        # Reconnect: a new connection (TCP + SCRAM) for every transaction.
        progress("reconnect cell: --connect -S -M simple -c 16")
        order = ["pgbouncer", "direct", "pgrelay"] + (["pgrelay-base"] if args.baseline else [])
        results = self.run_rounds(order, lambda s: self.pgbench_run(s, self.port_of(s), "select", "simple", 16,
                                                                    connect=True))
        sections.append(("Reconnect (`pgbench --connect -S -M simple -c 16`)", [(("simple", 16), results)]))

        self.finish(started, lambda elapsed: self.report(date, sections, elapsed))

    def begin(self):
        """The start of main(): (monotonic start time, `date -u`); notes the load average."""
        self.load_before = loadavg()
        return time.monotonic(), subprocess.run(["date", "-u"], stdout=subprocess.PIPE, text=True).stdout.strip()

    def finish(self, started, make_report):
        """The end of main(): logs to bench/out/, the report (make_report(elapsed seconds)) to stdout
        and bench/out/REPORT_FILE."""
        self.collect_proxy_logs()
        elapsed = time.monotonic() - started
        report = make_report(elapsed)
        os.makedirs(os.path.join(BENCH_DIR, "out"), exist_ok=True)
        with open(os.path.join(BENCH_DIR, "out", self.REPORT_FILE), "w") as f:
            f.write(report)
        sys.stdout.write(report)
        sys.stdout.flush()
        progress(f"done in {elapsed:.0f} s; report in bench/out/{self.REPORT_FILE}")

    def collect_proxy_logs(self):
        """Copies the proxies' logs to bench/out/ and notes pgrelay's unusual log lines."""
        outdir = os.path.join(BENCH_DIR, "out")
        os.makedirs(outdir, exist_ok=True)
        for name in self.started_names:
            src = os.path.join(self.base, f"{name}.log")
            if os.path.exists(src):
                shutil.copyfile(src, os.path.join(outdir, f"{self.LOG_PREFIX}{name}.log"))
        for name in self.started_names:
            if not name.startswith("pgrelay"):
                continue
            src = os.path.join(self.base, f"{name}.log")
            if not os.path.exists(src):
                continue
            counts, examples = {}, {}
            with open(src, errors="replace") as f:
                for line in f:
                    line = line.rstrip("\n")
                    m = re.match(r"^\S+ \S+ UTC \[\d+\] (\w+) (.*)$", line)
                    if not m:
                        continue
                    level, msg = m.groups()
                    unusual = level in ("WARNING", "ERROR") or (
                        "closing:" in msg and not msg.endswith("client sent Terminate")) or (
                        "closing server connection" in msg)
                    if not unusual or msg.endswith("pool freed") or msg.endswith("pgrelay exiting"):
                        continue
                    key = re.sub(r"\d+", "N", re.sub(r"^[^:]*: ", "", msg))
                    counts[key] = counts.get(key, 0) + 1
                    examples.setdefault(key, line)
            if counts:
                lines = [f"{n:6d} x  {examples[k]}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1])]
                self.notes.append(f"{name} log: unusual lines (count, first example):\n\n```\n"
                                  + "\n".join(lines[:15]) + "\n```")

    # -- report --------------------------------------------------------------------------------

    def report(self, date, sections, elapsed):
        a = self.args
        out = self.report_head(
            "# pgrelay benchmark: pgrelay vs pgbouncer vs PostgreSQL directly", date, elapsed,
            f"pgbench scale 10 (initialized directly against PostgreSQL); "
            f"{a.duration} s per run, {a.rounds} run(s) per system and cell; `-j` = min(clients, 2); "
            f"pool size {a.pool} on both proxies, "
            f"transaction pooling, SCRAM-SHA-256 from pgbench to the proxy and from the proxy to "
            f"PostgreSQL; PostgreSQL max_connections 200, fsync off, synchronous_commit off, "
            f"shared_buffers 256MB, ssl {'on' if self.tls_ok else 'off'} (used only by the direct TLS run: "
            f"every other run sets PGSSLMODE=disable; proxy-to-PostgreSQL connections are plain TCP"
            f"{' (pgrelay: services.X.tls.mode disable)' if self.pgrelay_server_tls_key[0] else ''}"
            f"). Both proxies log at their default level (connections included). Systems run back "
            f"to back within each cell, in an order rotated from cell to cell"
            f"{' and then reversed (A B C C B A)' if a.rounds == 2 else ''}; each proxy's pool "
            f"is filled before the first run.",
            "TPS as reported by pgbench (without initial connection time, except "
            "for the reconnect run; the mean of a system's runs in the cell); latency percentiles in ms from `pgbench --log`; failed = "
            "pgbench's \"number of failed transactions\" (plus its exit status when non-zero); "
            "CPU = the proxy process's utime+stime (/proc/PID/stat) during the run, in seconds per "
            "10,000 transactions (`-` for direct).")
        for title, rows in sections:
            out.append(f"## {title}")
            out.append("")
            if not rows:
                out.append("(skipped: see notes)")
                out.append("")
                continue
            out += results_table(rows, self.systems(), RESULT_COLUMNS, {"pgrelay-base": "pgrelay (baseline)"})
            for other, title in (("pgbouncer", "pgrelay / pgbouncer:"), ("pgrelay-base", "pgrelay / baseline:")):
                if other == "pgrelay-base" and not getattr(self.args, "baseline", None):
                    continue
                out.append(title)
                out.append("")

                def cells(results, other=other):
                    r, b = results.get("pgrelay"), results.get(other)
                    if not isinstance(r, dict) or not isinstance(b, dict):
                        return None
                    return [ratio(r["tps"], b["tps"]), ratio(r["p99"], b["p99"]), ratio(r["cpu"], b["cpu"])]
                out += ratio_table(rows, ["TPS ratio", "p99 ratio", "CPU ratio"], cells)
        return "\n".join(out + self.notes_lines("No pgbench errors, failed transactions or unusual pgrelay log "
                                                "lines."))

    def report_head(self, title, date, elapsed, setup, columns):
        """The report's title and its list of what was run, where, how; then a blank line."""
        cmd = os.environ.get("BENCH_CMD") or "bench/run.sh " + " ".join(sys.argv[1:])
        return [title, "",
                f"- Command: `{cmd}`",
                f"- Date: {date}",
                f"- Machine: {os.cpu_count()} CPUs ({cpu_model()}), Linux {os.uname().release}",
                f"- Versions: {self.versions()}",
                f"- pgrelay binary: {self.pgrelay_origin}",
            ] + ([f"- baseline pgrelay binary: {self.baseline_origin}"] if getattr(self.args, "baseline", None) else []) + [
                f"- Setup: {setup}",
                f"- Columns: {columns}",
                f"- Total run time: {elapsed:.0f} s; load average (1/5/15 min) at the start: "
                f"{self.load_before}, at the end: {loadavg()}",
                ""]

    def versions(self):
        return versions(self.args.pgrelay, self.args.pgbouncer)

    def systems(self, mode=None):
        """The systems of a cell of the main benchmark (all of them when mode is None): direct, pgrelay,
        the --baseline pgrelay if any, and pgbouncer unless it cannot run -M prepared (before 1.21)."""
        out = ["direct", "pgrelay"] + (["pgrelay-base"] if getattr(self.args, "baseline", None) else []) + ["pgbouncer"]
        if mode == "prepared" and not pgbouncer_has_prepared(self.args.pgbouncer):
            out.remove("pgbouncer")
        return out

    def notes_lines(self, when_none):
        out = ["## Notes", ""]
        for n in self.notes or [when_none]:
            out += [f"- {n}", ""]
        return out

    # -- teardown ------------------------------------------------------------------------------

    def stop_others(self):
        """Stops what a subclass started besides PostgreSQL and the proxies (at clean-up)."""

    def cleanup(self):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_IGN)
        if self.current and self.current.poll() is None:
            self.current.kill()
            self.current.wait()
        for name in list(self.proxies):
            try:
                self.stop_proxy(name)
            except Exception as e:  # keep going: PostgreSQL and the directory still need cleaning
                progress(f"stopping {name}: {e}")
        try:
            self.stop_others()
        except Exception as e:
            progress(f"stopping: {e}")
        if self.base and self.pg_started:
            try:
                self.run([f"{PGBIN}/pg_ctl", "-D", f"{self.base}/pg", "-m", "immediate", "-w", "-t", "30",
                          "stop"], check=False, as_postgres=True, timeout=60)
            except Exception as e:
                progress(f"stopping PostgreSQL: {e}")
        if self.base:
            shutil.rmtree(self.base, ignore_errors=True)
            progress(f"cleaned up {self.base}")


def pgbouncer_pid(runuser_pid, pidfile):
    """runuser forks: pgbouncer is its child. Prefer the pid file, fall back on /proc's children."""
    try:
        pid = int(open(pidfile).read().strip())
        if proc_alive(pid):
            return pid
    except (OSError, ValueError):
        pass
    try:
        kids = open(f"/proc/{runuser_pid}/task/{runuser_pid}/children").read().split()
    except OSError:
        return None
    for k in kids:
        try:
            if os.path.basename(os.readlink(f"/proc/{k}/exe")) == "pgbouncer":
                return int(k)
        except OSError:
            pass
    return None


def merge_runs(runs):
    """One result from a system's runs of a cell: mean TPS, summed transactions and failures,
    percentiles of all latencies together, CPU per 10k transactions over all of them. A single
    run (or a result a subclass extended with its own figures) is returned as it is."""
    if len(runs) == 1:
        return runs[0]
    m = dict(runs[0])
    tps = [r["tps"] for r in runs]
    m["tps"] = sum(tps) / len(tps) if None not in tps else None
    m["n"] = sum(r["n"] for r in runs)
    failed = [r["failed"] for r in runs if r["failed"] is not None]
    m["failed"] = sum(failed) if failed else None
    m["rc"] = next((r["rc"] for r in runs if r["rc"] != 0), 0)
    m["err"] = [e for r in runs for e in r["err"]]
    lat = sorted(v for r in runs for v in r.get("lat", []))
    m["lat"] = lat
    m["p50"] = m["p95"] = m["p99"] = None
    if lat:
        m["p50"], m["p95"], m["p99"] = (percentile(lat, p) / 1000.0 for p in (50, 95, 99))
    for key in ("cpu", "client_cpu"):
        secs = [r.get(key + "_s") for r in runs]
        m[key] = sum(secs) / m["n"] * 10000 if None not in secs and m["n"] > 0 else None
    m["runs"] = len(runs)
    return m


def pgbench_latencies_us(prefix):
    """The per-transaction latencies (microseconds, sorted) of the pgbench --log files PREFIX.*,
    which are removed."""
    lat = []
    for f in glob.glob(prefix + ".*"):
        with open(f) as fh:
            for line in fh:
                parts = line.split(None, 3)
                if len(parts) >= 3 and parts[2].isdigit():
                    lat.append(int(parts[2]))
        os.unlink(f)
    lat.sort()
    return lat


def percentile(sorted_vals, p):
    """Nearest-rank percentile."""
    k = max(0, math.ceil(p / 100.0 * len(sorted_vals)) - 1)
    return sorted_vals[k]


def fmt(v, digits):
    return "-" if v is None else f"{v:.{digits}f}"


def fmt_failed(r):
    s = "?" if r["failed"] is None else str(r["failed"])
    if r["rc"] != 0:
        s += f" (exit {r['rc']})"
    return s


# The result columns of bench/run.sh's tables: (header, cell(result, system)).
RESULT_COLUMNS = [
    ("TPS", lambda r, s: fmt(r["tps"], 0)),
    ("p50 ms", lambda r, s: fmt(r["p50"], 3)),
    ("p95 ms", lambda r, s: fmt(r["p95"], 3)),
    ("p99 ms", lambda r, s: fmt(r["p99"], 3)),
    ("failed", lambda r, s: fmt_failed(r)),
    ("CPU s/10k tx", lambda r, s: fmt(r["cpu"], 3) if s != "direct" else "-"),
]


def results_table(rows, systems, columns, labels=None):
    """Markdown table, one line per (cell, system): rows = [((mode, clients), {system: result})];
    a system without a result dict is shown as n/a (missing) or skipped. Ends with a blank line."""
    labels = labels or {}
    out = ["| mode | clients | system | " + " | ".join(h for h, _ in columns) + " |",
           "|---|---:|---|" + "---:|" * len(columns)]
    for (mode, clients), results in rows:
        for s in systems:
            r = results.get(s)
            head = f"| {mode} | {clients} | {labels.get(s, s)} |"
            if not isinstance(r, dict):
                out.append(f"{head} {'n/a' if r is None else 'skipped'} |" + " |" * (len(columns) - 1))
                continue
            out.append(f"{head} " + " | ".join(cell(r, s) for _, cell in columns) + " |")
    return out + [""]


def ratio_table(rows, headers, cells):
    """Markdown table per (mode, clients): cells(results) gives the strings, or None for n/a."""
    out = ["| mode | clients | " + " | ".join(headers) + " |", "|---|---:|" + "---:|" * len(headers)]
    for (mode, clients), results in rows:
        c = cells(results) or ["n/a"] * len(headers)
        out.append(f"| {mode} | {clients} | " + " | ".join(c) + " |")
    return out + [""]


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}"


def tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-n:])
    except OSError:
        return "(no log)"


def describe_binary(path, git=True):
    """What a binary is: its path, when it was built and (git) the repository's HEAD."""
    mtime = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(os.path.getmtime(path)))
    desc = f"`{path}` (built {mtime}"
    if not git:
        return desc + f"; {first_line([path, '--version'])})"
    try:
        head = subprocess.run(["git", "-C", REPO_DIR, "log", "-1", "--format=%h %s"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", REPO_DIR, "status", "--porcelain", "--", "src", "meson.build"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               timeout=10).stdout.strip()
        if head:
            desc += f"; repository HEAD {head}" + (" with uncommitted changes in src/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return desc + ")"


def loadavg():
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def first_line(argv):
    """The first line a command prints (for --version), or ?."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=10)
        return (p.stdout.strip().splitlines() or ["?"])[0]
    except OSError:
        return "?"


def pgbouncer_has_prepared(path, _known={}):
    """Whether this pgbouncer keeps protocol-level prepared statements in transaction pooling (1.21+)."""
    if path not in _known:
        m = re.search(r"PgBouncer (\d+)\.(\d+)", first_line([path, "--version"]))
        _known[path] = bool(m) and (int(m.group(1)), int(m.group(2))) >= (1, 21)
    return _known[path]


def versions(pgrelay, pgbouncer="/usr/sbin/pgbouncer"):
    return "; ".join([first_line([pgrelay, "--version"]), first_line([pgbouncer, "--version"]),
                      first_line([f"{PGBIN}/postgres", "--version"]),
                      first_line([f"{PGBIN}/pgbench", "--version"])])


def arg_parser(prog, description, default_duration):
    """The options every benchmark has: --pgrelay, --duration, --pool, --quick."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--pgrelay", default=os.path.join(REPO_DIR, "build", "pgrelay"),
                    help="the pgrelay binary (default: build/pgrelay in the repository)")
    ap.add_argument("--duration", type=int, default=None,
                    help=f"seconds per pgbench run (default {default_duration}; 2 with --quick)")
    ap.add_argument("--pool", type=int, default=16, help="server connections per proxy pool (default 16)")
    ap.add_argument("--pgbouncer", default="/usr/sbin/pgbouncer",
                    help="the pgbouncer binary (default: Debian's /usr/sbin/pgbouncer); from 1.21 on it "
                         "also runs the -M prepared cells")
    return ap


def parse_common(ap, default_duration):
    args = ap.parse_args()
    if args.duration is None:
        args.duration = 2 if args.quick else default_duration
    if args.duration < 1 or args.pool < 1 or args.pool > 150:
        ap.error("--duration must be >= 1 and --pool 1..150 (PostgreSQL has max_connections 200)")
    args.pgrelay = os.path.abspath(args.pgrelay)
    args.pgbouncer = os.path.abspath(args.pgbouncer)
    if getattr(args, "baseline", None):
        args.baseline = os.path.abspath(args.baseline)
    return args


def run_bench(bench_class, args, extra_requirements=()):
    """Checks root and the tools, then runs bench_class(args).main() and always cleans up; exits."""
    if os.geteuid() != 0:
        print("bench: must run as root (PostgreSQL and pgbouncer are started as postgres via runuser)",
              file=sys.stderr)
        sys.exit(2)
    check_requirements(args, extra_requirements)

    def on_signal(signum, frame):
        raise Interrupted(signal.Signals(signum).name)

    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)
    bench = bench_class(args)
    status = 0
    try:
        bench.main()
    except Interrupted as e:
        progress(f"interrupted ({e}): cleaning up")
        status = 130
    except SetupError as e:
        progress(f"setup failed: {e}")
        status = 1
    finally:
        bench.cleanup()
    sys.exit(status)


def main():
    ap = arg_parser("bench/run.sh", __doc__.splitlines()[0], 4)
    ap.add_argument("--quick", action="store_true", help="smoke test: 2 s per run, 1 and 16 clients only")
    ap.add_argument("--rounds", type=int, choices=(1, 2), default=2,
                    help="runs per system and cell, the second in reverse order (default 2)")
    ap.add_argument("--baseline", default=None, metavar="PATH",
                    help="a second pgrelay binary (e.g. built from an older commit) measured in the same run; "
                         "the report adds pgrelay / baseline ratios")
    ap.add_argument("--only", default=None, choices=("select", "tpcb"),
                    help="only this pgbench script's cells (no TLS and reconnect cells)")
    run_bench(Bench, parse_common(ap, 4))


if __name__ == "__main__":
    main()
