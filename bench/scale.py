#!/usr/bin/python3
"""pgrelay at scale: 10,000 idle clients (RSS), 10,000 active clients over a pool of 20, and new
connections per second (pgbench --connect) through pgrelay and pgbouncer.

Started by bench/scale.sh (through run.sh, which checks for root and /usr/bin/python3); see
bench/README.md, "The scale benchmark". Reuses bench.py's machinery (PostgreSQL as postgres, the
proxies, pgbench --log percentiles, /proc CPU) and Debian's psycopg 3 for the idle clients.
Progress to stderr, the Markdown report to stdout and bench/out/scale.md.
"""
import concurrent.futures
import glob
import os
import re
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as base  # noqa: E402  (bench/bench.py, next to this file)
from bench import PASSWORD, PGBIN, fmt, progress  # noqa: E402

# Client users of the proxies, one per authentication method. Both proxies log in to PostgreSQL as
# the role app whatever the client's user; each has the plain password in its configuration.
AUTH_USERS = {"scram-sha-256": "app", "md5": "app_md5", "password": "app_pw"}


def raise_nofile(need):
    """Raises this process's descriptor limit (inherited by the proxies and pgbench) to its hard
    limit, or higher where allowed; exits if it stays below need (clients plus a margin)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
    except (ValueError, OSError):  # no CAP_SYS_RESOURCE (a container): up to the hard limit only
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        print(f"bench: the open files limit is {soft}, below the {need} descriptors needed "
              f"(ulimit -Hn; or fewer --clients)", file=sys.stderr)
        sys.exit(2)


def status_kb(pid, key):
    """A kB field of /proc/PID/status (VmRSS, VmHWM, RssAnon, RssFile), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def cpu_split(pid):
    """(utime, stime) of pid in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def tree_cpu(root):
    """utime + stime (s) of root and its children (PostgreSQL's postmaster and backends); children
    that exited meanwhile are not counted (the pool's backends live through a run)."""
    total = 0.0
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(d) == root or int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def machine_busy():
    """(busy, total) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class ScaleBench(base.Bench):
    PORT_NAMES = ("pg", "pgrelay", "pgbouncer")
    REPORT_FILE = "scale.md"
    LOG_PREFIX = "scale-"

    def __init__(self, args):
        super().__init__(args)
        self.pgbenches = []  # every pgbench Popen running (for cleanup)

    # -- setup ---------------------------------------------------------------------------------

    def setup(self):
        self.make_base()
        self.start_postgres()
        self.init_pgbench()
        self.start_proxy("pgrelay")
        self.start_proxy("pgbouncer")

    def extra_pg_conf(self):
        # After bench.py's max_connections = 200: the last setting wins. Room for pgrelay's pool
        # (the pools of app, app_md5 and app_pw: 3 x pool) and pgbouncer's (one per user too).
        return f"max_connections = {6 * self.args.pool + 10}\n"

    def pgrelay_yaml(self, port, tls, server_tls=None):
        a = self.args
        users = "".join(f'  - {{ name: {u}, password: "{PASSWORD}", auth: {m} }}\n' for m, u in AUTH_USERS.items())
        return f"""# written by bench/scale.py
listen: {{ host: 127.0.0.1, port: {port}, max_client_conn: {a.clients + 2000}, backlog: 4096 }}
log: {{ level: info }}
proxy: {{ allow_cleartext_without_tls: true }}
users:
{users}databases:
  app: {{ service: bench, pool_mode: transaction }}
services:
  bench:
    primary: {{ host: 127.0.0.1, port: {self.pg_port}, dbname: app, user: app, password: "{PASSWORD}" }}
    pool: {{ max: {a.pool}, min: 0, query_wait_timeout: 120s }}
    tls: {{ mode: disable }}
"""

    def pgbouncer_ini(self, name, port, tls):
        # bench.py's start_proxy wrote userlist.txt with app only; this (all users) replaces it.
        b = self.base
        self.write("hba.conf", "".join(f"host all {u} 127.0.0.1/32 {m}\n" for m, u in AUTH_USERS.items()),
                   mode=0o600)
        self.write("userlist.txt", "".join(f'"{u}" "{PASSWORD}"\n' for u in AUTH_USERS.values()), mode=0o600)
        return f"""; written by bench/scale.py
[databases]
app = host=127.0.0.1 port={self.pg_port} dbname=app user=app password={PASSWORD}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
listen_backlog = 4096
unix_socket_dir =
pidfile = {b}/{name}.pid
auth_type = hba
auth_hba_file = {b}/hba.conf
auth_file = {b}/userlist.txt
pool_mode = transaction
default_pool_size = {self.args.pool}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {self.args.clients + 2000}
max_db_connections = 0
query_wait_timeout = 120
server_tls_sslmode = disable
"""

    def as_pg(self, argv, **kw):
        # runuser's PAM session sets the soft descriptor limit back to 1024 (the hard limit stays):
        # pgbouncer does not raise it itself, so prlimit does, before it execs the command.
        n = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        return super().as_pg(["/usr/bin/prlimit", f"--nofile={n}:{n}"] + list(argv), **kw)

    # -- pgbench -------------------------------------------------------------------------------

    def pgbench(self, port, args, user="app", timeout=600, log_prefix=None):
        """Runs pgbench -n -h 127.0.0.1 -p port -U user ARGS app; returns a result dict with the
        figures pgbench prints, the percentiles of its --log (when log_prefix), its own CPU."""
        argv = [f"{PGBIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user] + list(args)
        if log_prefix:
            for f in glob.glob(log_prefix + ".*"):
                os.unlink(f)
            argv += ["--log", f"--log-prefix={log_prefix}"]
        argv.append("app")
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.Popen(argv, cwd=self.base, env=base.clean_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        self.pgbenches.append(p)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
            err += "\nbench: pgbench killed after a timeout"
        self.pgbenches.remove(p)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        res = dict(rc=p.returncode, out=out, err=err, argv=argv,
                   client_user=ru1.ru_utime - ru0.ru_utime, client_sys=ru1.ru_stime - ru0.ru_stime)
        for key, pat in (("tps", r"^tps = ([0-9.]+)"), ("n", r"^number of transactions actually processed: (\d+)"),
                         ("failed", r"^number of failed transactions: (\d+)"),
                         ("lat_avg", r"^latency average = ([0-9.]+) ms"),
                         ("conn_init", r"^initial connection time = ([0-9.]+) ms"),
                         ("conn_avg", r"^average connection time = ([0-9.]+) ms")):
            m = re.search(pat, out, re.M)
            res[key] = (float(m.group(1)) if "." in m.group(1) else int(m.group(1))) if m else None
        res["progress"] = [l for l in err.splitlines() if l.startswith("progress:")]
        res["errors"] = [l for l in err.splitlines() if l.strip() and not l.startswith("progress:")]
        res["p50"] = res["p95"] = res["p99"] = res["pmax"] = None
        if log_prefix:
            lat = base.pgbench_latencies_us(log_prefix)
            if lat:
                res["p50"], res["p95"], res["p99"] = (base.percentile(lat, q) / 1000.0 for q in (50, 95, 99))
                res["pmax"] = lat[-1] / 1000.0
        if p.returncode != 0 or res["failed"]:
            self.notes.append(f"`{' '.join(argv[1:])}`: exit {p.returncode}, failed {res['failed']}:\n\n```\n"
                              + ("\n".join(res["errors"][:8]) or "(nothing on stderr)") + "\n```")
        return res

    def pgrelay_server_conns(self):
        """pgrelay's TCP connections to PostgreSQL: its sockets (/proc/PID/fd) whose remote port in
        /proc/net/tcp is PostgreSQL's (application_name cannot tell: pgrelay sets its clients')."""
        pid = self.proxies["pgrelay"]["pid"]
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(link[8:-1])
        n = 0
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if int(parts[2].split(":")[1], 16) == self.pg_port and parts[9] in inodes:
                    n += 1
        return n

    def warm(self, name, user="app"):
        """Fills the pool of user on proxy name: a few seconds of 2 x pool clients."""
        self.pgbench(self.proxies[name]["port"], ["-S", "-T", "2", "-c", str(2 * self.args.pool), "-j", "2"],
                     user=user, timeout=120)

    # -- (a) idle clients ----------------------------------------------------------------------

    def idle(self, name):
        # psycopg's default wait function is select(), which refuses descriptors above 1023
        os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_epoll")
        import psycopg  # Debian's python3-psycopg (psycopg 3)
        pr = self.proxies[name]
        pid, port, n = pr["pid"], pr["port"], self.args.clients
        time.sleep(1)
        row = dict(system=name, start=status_kb(pid, "VmRSS"), start_anon=status_kb(pid, "RssAnon"),
                   fds_start=fd_count(pid))
        user = AUTH_USERS[self.args.idle_auth]
        progress(f"{name}: {n} idle clients ({self.args.idle_auth} logins as {user}, "
                 f"{self.args.login_threads} threads)")
        conns = []

        def one(_):
            return psycopg.connect(host="127.0.0.1", port=port, user=user, password=PASSWORD, dbname="app",
                                   sslmode="disable", autocommit=True, connect_timeout=60)
        t = time.monotonic()
        try:
            with concurrent.futures.ThreadPoolExecutor(self.args.login_threads) as ex:
                conns = list(ex.map(one, range(n)))
            row["login_s"] = time.monotonic() - t
            time.sleep(1)
            row["logged_in"] = status_kb(pid, "VmRSS")
            row["fds_logged_in"] = fd_count(pid)
            progress(f"  {n} logged in in {row['login_s']:.1f} s: RSS {row['logged_in'] / 1024:.1f} MB; "
                     f"one SELECT 1 each")
            t = time.monotonic()
            bad = 0
            for c in conns:
                if c.execute("SELECT 1").fetchone() != (1,):
                    bad += 1
            row["query_s"] = time.monotonic() - t
            row["bad"] = bad
            time.sleep(1)
            row["queried"] = status_kb(pid, "VmRSS")
            row["queried_anon"] = status_kb(pid, "RssAnon")
            row["hwm"] = status_kb(pid, "VmHWM")
            row["fds"] = fd_count(pid)
            row["per_client"] = (row["queried"] - row["start"]) * 1024 / n
            row["per_client_anon"] = (row["queried_anon"] - row["start_anon"]) * 1024 / n
            progress(f"  after one query each: RSS {row['queried'] / 1024:.1f} MB, "
                     f"{row['per_client']:.0f} bytes per client")
        finally:
            for c in conns:
                try:
                    c.close()
                except Exception:
                    pass
        time.sleep(2)
        row["closed"] = status_kb(pid, "VmRSS")
        row["fds_closed"] = fd_count(pid)
        return row

    # -- (b) active clients --------------------------------------------------------------------

    def active(self, name, script):
        a = self.args
        pr = self.proxies[name]
        pid, port = pr["pid"], pr["port"]
        progress(f"{name}: pgbench {script} -c {a.clients} -j {a.jobs} -t {a.transactions} (pool {a.pool})")
        cpu0 = sum(cpu_split(pid))
        args = (["-S"] if script == "select" else []) + [
            "-M", "simple", "-c", str(a.clients), "-j", str(a.jobs), "-t", str(a.transactions), "-P", "10"]
        if script == "tpcb":
            self.psql("VACUUM pgbench_branches", "VACUUM pgbench_tellers", "TRUNCATE pgbench_history")
        user = AUTH_USERS[a.active_auth]
        if user != "app":
            self.warm(name, user)
        res = self.pgbench(port, args, user=user, timeout=3600, log_prefix=os.path.join(self.base, "logs", name))
        res["cpu_s"] = sum(cpu_split(pid)) - cpu0
        res["hwm"] = status_kb(pid, "VmHWM")
        res["rss_after"] = status_kb(pid, "VmRSS")
        res["server_conns"] = self.pgrelay_server_conns() if name == "pgrelay" else None
        progress(f"  tps {fmt(res['tps'], 0)}, failed {res['failed']}, exit {res['rc']}, p99 {fmt(res['p99'], 1)} ms, "
                 f"initial connection {fmt(res['conn_init'], 0)} ms")
        return res

    # -- (c) new connections per second ---------------------------------------------------------

    def connect_rate(self, name, method):
        a = self.args
        pr = self.proxies[name]
        pid, port, user = pr["pid"], pr["port"], AUTH_USERS[method]
        self.warm(name, user)
        u0, s0 = cpu_split(pid)
        pg0 = tree_cpu(self.pg_pid)
        busy0, total0 = machine_busy()
        res = self.pgbench(port, ["-C", "-S", "-M", "simple", "-c", str(a.connect_clients), "-j",
                                  str(a.connect_jobs), "-T", str(a.duration)], user=user,
                           timeout=a.duration + 120)
        u1, s1 = cpu_split(pid)
        pg1 = tree_cpu(self.pg_pid)
        busy1, total1 = machine_busy()
        n = res["n"] or 0
        res["user_ms"] = (u1 - u0) * 1000 / n if n else None
        res["sys_ms"] = (s1 - s0) * 1000 / n if n else None
        res["client_ms"] = (res["client_user"] + res["client_sys"]) * 1000 / n if n else None
        res["busy"] = (busy1 - busy0) / (total1 - total0) if total1 > total0 else None
        res["pg_ms"] = (pg1 - pg0) * 1000 / n if n else None
        # everything else the machine did per connection: the kernel's share not charged to a
        # process (softirq), and whatever else runs on this shared machine
        ncpu = os.cpu_count() or 1
        busy_ms = res["busy"] * ncpu * a.duration * 1000 / n if n and res["busy"] is not None else None
        res["other_ms"] = (busy_ms - (res["user_ms"] + res["sys_ms"] + res["client_ms"] + res["pg_ms"])
                           if busy_ms is not None else None)
        res["busy_ms"] = busy_ms
        res["rate"] = n / a.duration if n else None
        progress(f"  {name:9s} {method:13s}: {fmt(res['tps'], 0)} connections/s, proxy "
                 f"{fmt(res['user_ms'], 3)}+{fmt(res['sys_ms'], 3)} ms, pgbench {fmt(res['client_ms'], 3)} ms "
                 f"per connection, machine {fmt((res['busy'] or 0) * 100, 0)}% busy")
        return res

    # -- the benchmark -------------------------------------------------------------------------

    def main(self):
        a = self.args
        started, date = self.begin()
        self.setup()
        idle_rows, active_rows, connect_rows = [], [], []
        if "idle" in a.parts:
            for name in a.idle_systems:
                if a.idle_auth != "scram-sha-256":
                    self.warm(name, AUTH_USERS[a.idle_auth])
                try:
                    idle_rows.append(self.idle(name))
                except Exception as e:  # noqa: BLE001  (a proxy failing here must not stop the rest)
                    self.notes.append(f"{name}: the idle clients failed: {type(e).__name__}: {e}")
                    progress(f"{name}: the idle clients failed: {e}")
        if "active" in a.parts:
            for script in a.scripts:
                for name in ("pgrelay",) + (("pgbouncer",) if a.active_pgbouncer else ()):
                    active_rows.append((script, name, self.active(name, script)))
        if "connect" in a.parts:
            for method in a.methods:
                progress(f"new connections per second: {method}, pgbench -C -c {a.connect_clients} "
                         f"-j {a.connect_jobs} -T {a.duration}")
                pair = {}
                for name in (("pgrelay", "pgbouncer") if len(connect_rows) % 2 == 0 else ("pgbouncer", "pgrelay")):
                    pair[name] = self.connect_rate(name, method)
                connect_rows.append((method, pair))
        self.finish(started, lambda elapsed: self.report(date, idle_rows, active_rows, connect_rows, elapsed))

    def report(self, date, idle_rows, active_rows, connect_rows, elapsed):
        a = self.args
        out = self.report_head(
            "# pgrelay at scale: 10,000 clients and new connections per second", date, elapsed,
            f"PostgreSQL max_connections {6 * a.pool + 10}, fsync off, pgbench scale 10; both proxies "
            f"in transaction pooling with a pool of {a.pool} server connections per user, "
            f"max_client_conn {a.clients + 2000}, listen backlog 4096, query_wait_timeout 120 s, "
            f"plain TCP everywhere (no TLS), the plain password in each proxy's configuration, "
            f"logging at their default level (every login and close); RLIMIT_NOFILE "
            f"{resource.getrlimit(resource.RLIMIT_NOFILE)[0]}. "
            f"The machine is shared: other engineers' builds and tests run on the same 2 cores.",
            "RSS = VmRSS of the proxy process (/proc/PID/status), whole process (shared libraries "
            "included); anon = RssAnon.")
        if idle_rows:
            out += [f"## {a.clients:,} idle clients", "",
                    f"Python (psycopg 3, {a.login_threads} threads) opens {a.clients:,} connections "
                    f"({a.idle_auth} as {AUTH_USERS[a.idle_auth]}), holds them, then runs `SELECT 1` once on each and holds them "
                    f"again; RSS read 1 s after each step.", "",
                    "| system | RSS at start MB | after logins MB | after one query each MB | per client bytes "
                    "| anon per client bytes | peak (VmHWM) MB | descriptors | logins s | after close MB |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in idle_rows:
                if "queried" not in r:
                    continue
                out.append(f"| {r['system']} | {r['start'] / 1024:.1f} | {r['logged_in'] / 1024:.1f} | "
                           f"{r['queried'] / 1024:.1f} | {r['per_client']:.0f} | {r['per_client_anon']:.0f} | "
                           f"{r['hwm'] / 1024:.1f} | {r['fds']} | {r['login_s']:.1f} | {r['closed'] / 1024:.1f} |")
            out.append("")
            for r in idle_rows:
                if r["system"] == "pgrelay" and "queried" in r:
                    verdict = "met" if r["queried"] <= 50 * 1024 else "NOT met"
                    out += [f"Goal (pgrelay <= 50 MB RSS with {a.clients:,} idle clients): {verdict} "
                            f"({r['queried'] / 1024:.1f} MB).", ""]
        if active_rows:
            out += [f"## {a.clients:,} active clients over a pool of {a.pool}", "",
                    f"`pgbench -M simple -c {a.clients} -j {a.jobs} -t {a.transactions} -P 10 --log` "
                    f"(`-S` for select), {a.active_auth} logins as {AUTH_USERS[a.active_auth]} (pgbench 15 counts its connection phase in `-T`, "
                    f"so a number of transactions per client); TPS without the initial connection time; "
                    f"latency percentiles over every transaction of the `--log` files; server conns = "
                    f"pgrelay's connections to PostgreSQL after the run (its sockets in /proc/net/tcp).", "",
                    "| script | system | TPS | transactions | failed | exit | p50 ms | p95 ms | p99 ms | max ms "
                    "| initial connection ms | proxy CPU s | RSS after MB | peak (VmHWM) MB | server conns |",
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for script, name, r in active_rows:
                out.append(f"| {script} | {name} | {fmt(r['tps'], 0)} | {r['n']} | {r['failed']} | {r['rc']} | "
                           f"{fmt(r['p50'], 1)} | {fmt(r['p95'], 1)} | {fmt(r['p99'], 1)} | {fmt(r['pmax'], 1)} | "
                           f"{fmt(r['conn_init'], 0)} | {fmt(r['cpu_s'], 1)} | "
                           f"{fmt((r['rss_after'] or 0) / 1024, 1)} | {fmt((r['hwm'] or 0) / 1024, 1)} | "
                           f"{base.fmt(r['server_conns'], 0)} |")
            out.append("")
            for script, name, r in active_rows:
                if r["progress"]:
                    out += [f"{script}, {name}, `-P 10`:", "", "```"] + r["progress"] + ["```", ""]
        if connect_rows:
            out += ["## New connections per second (`pgbench --connect`)", "",
                    f"`pgbench -C -S -M simple -c {a.connect_clients} -j {a.connect_jobs} -T {a.duration}` "
                    f"per authentication method, the two proxies back to back (order alternating); one "
                    f"transaction = one new connection (TCP, startup, authentication, `SELECT`, Terminate). "
                    f"Where the time goes, in CPU milliseconds per new connection: the proxy (user, sys), "
                    f"pgbench (its own CPU), PostgreSQL (postmaster and backends: the `SELECT`), other = "
                    f"the machine's busy time (/proc/stat, both cores) not in those (kernel work not "
                    f"charged to them, other people's processes); machine busy = share of both cores "
                    f"busy; avg connection ms = pgbench's average connection time.", "",
                    "| auth | system | connections/s | failed | exit | proxy user ms | proxy sys ms "
                    "| pgbench ms | PostgreSQL ms | other ms | machine busy | avg connection ms |",
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for method, pair in connect_rows:
                for name in ("pgrelay", "pgbouncer"):
                    r = pair[name]
                    out.append(f"| {method} | {name} | {fmt(r['tps'], 0)} | {r['failed']} | {r['rc']} | "
                               f"{fmt(r['user_ms'], 3)} | {fmt(r['sys_ms'], 3)} | {fmt(r['client_ms'], 3)} | "
                               f"{fmt(r['pg_ms'], 3)} | {fmt(r['other_ms'], 3)} | "
                               f"{fmt((r['busy'] or 0) * 100, 0)}% | {fmt(r['conn_avg'], 3)} |")
            out += ["", "| auth | pgrelay / pgbouncer connections/s | goal >= 1,000/s through pgrelay |",
                    "|---|---:|---|"]
            for method, pair in connect_rows:
                r = pair["pgrelay"]
                met = "met" if (r["tps"] or 0) >= 1000 else "not met"
                out.append(f"| {method} | {base.ratio(r['tps'], pair['pgbouncer']['tps'])} | {met} "
                           f"({fmt(r['tps'], 0)}/s) |")
            out.append("")
        return "\n".join(out + self.notes_lines("No pgbench errors, failed transactions or unusual pgrelay log "
                                                "lines."))

    def cleanup(self):
        for p in list(self.pgbenches):
            if p.poll() is None:
                p.kill()
                p.wait()
        super().cleanup()


def csv(text):
    return [x for x in text.split(",") if x]


def main():
    # --duration: seconds per connect run (the active runs are -t, see --transactions)
    ap = base.arg_parser("bench/scale.sh", __doc__.splitlines()[0], 20)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 1,000 clients, 5 s connect runs")
    ap.add_argument("--clients", type=int, default=None, help="idle and active clients (default 10000)")
    ap.add_argument("--transactions", type=int, default=10,
                    help="pgbench -t (transactions per client) of the active runs (default 10)")
    ap.add_argument("--jobs", type=int, default=8, help="pgbench threads for the active run (default 8)")
    ap.add_argument("--login-threads", type=int, default=4, help="threads opening the idle clients (default 4)")
    ap.add_argument("--parts", type=csv, default=["idle", "active", "connect"],
                    help="which parts: idle,active,connect (default all)")
    ap.add_argument("--scripts", type=csv, default=["select", "tpcb"],
                    help="active-run scripts: select (-S), tpcb (default both)")
    ap.add_argument("--idle-auth", default="scram-sha-256", choices=list(AUTH_USERS),
                    help="authentication of the idle clients (default scram-sha-256)")
    ap.add_argument("--idle-systems", type=csv, default=["pgrelay", "pgbouncer"],
                    help="proxies the idle clients go through (default pgrelay,pgbouncer)")
    ap.add_argument("--active-auth", default="scram-sha-256", choices=list(AUTH_USERS),
                    help="authentication of the active clients (default scram-sha-256)")
    ap.add_argument("--active-pgbouncer", action="store_true", help="run the active clients through pgbouncer too")
    ap.add_argument("--methods", type=csv, default=list(AUTH_USERS),
                    help="authentication methods for the connect run (default scram-sha-256,md5,password)")
    ap.add_argument("--connect-clients", type=int, default=32, help="pgbench -c for the connect run (default 32)")
    ap.add_argument("--connect-jobs", type=int, default=8, help="pgbench -j for the connect run (default 8)")
    ap.set_defaults(pool=20)
    args = base.parse_common(ap, 20)
    if args.clients is None:
        args.clients = 1000 if args.quick else 10000
    if args.quick and args.duration == 2:
        args.duration = 5  # seconds per connect run
    bad = [m for m in args.methods if m not in AUTH_USERS]
    if bad or any(p not in ("idle", "active", "connect") for p in args.parts) or \
            any(s not in ("select", "tpcb") for s in args.scripts):
        ap.error("unknown --methods, --parts or --scripts value")
    if args.clients < 1 or args.clients > 25000:
        ap.error("--clients 1..25000 (each side needs a loopback port and a descriptor)")
    raise_nofile(args.clients + 1000)
    base.run_bench(ScaleBench, args)


if __name__ == "__main__":
    main()
