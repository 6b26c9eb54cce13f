#!/usr/bin/python3
"""A long mixed soak through pgrelay: is its memory and descriptor count flat?

Started by bench/soak.sh (through run.sh, which checks for root and /usr/bin/python3); see
bench/README.md, "The soak". Reuses bench.py's machinery (PostgreSQL as postgres, pgrelay, pool
warm-up). Several pgbench processes run at once for the whole duration through one pgrelay in
transaction pooling: a select/update mix, connection churn (a new connection per transaction, SCRAM
and md5), named prepared statements (-M prepared, with and without churn), optionally through the
result cache. pgrelay's RSS and open descriptors are sampled every --interval seconds; the report
ends with a verdict judged by the rule stated in it. Progress to stderr, the Markdown report to
stdout and bench/out/soak.md.
"""
import os
import re
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as base  # noqa: E402  (bench/bench.py, next to this file)
from bench import PASSWORD, PGBIN, progress  # noqa: E402
from scale import cpu_split, fd_count, status_kb  # noqa: E402

# The rule for "flat", applied to the samples after the warm-up: the first and the last third of
# them are compared. The warm-up lasts WARMUP_SHARE of the run (at least WARMUP_MIN_S) and, if
# later, until pgrelay's bounded caches are full (CACHE_FULL of their budgets): the statement
# analysis cache (64 MB, SQL_CACHE_MAX_BYTES) and, with --cache, L1 (L1_BYTES).
WARMUP_SHARE, WARMUP_MIN_S = 0.10, 60
ANALYSIS_BYTES, L1_BYTES, CACHE_FULL = 64 << 20, 32 << 20, 0.90
RSS_TOLERANCE = 0.05  # mean RSS of the last third at most 5% above the first third's ...
RSS_SLACK_KB = 1024   # ... or 1 MB, whichever is larger
# pgrelay's gauges sampled from GET /metrics with each sample: its bounded caches explain its RSS.
METRICS = {"pgrelay_clients": "clients", "pgrelay_statement_analysis_cache_bytes": "analysis",
           "pgrelay_cache_bytes": "l1", "pgrelay_prepared_statements": "stmts"}


def read_metrics(port):
    """{short name: value} of METRICS from pgrelay's /metrics (summed over labels), {} on failure."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return {}
    got = {}
    for line in text.splitlines():
        m = re.match(r"^([a-z_0-9]+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m and m.group(1) in METRICS:
            key = METRICS[m.group(1)]
            got[key] = got.get(key, 0) + float(m.group(3))
    return got


def mb(v):
    return "-" if v is None else f"{v / 1048576:.1f}"


def workloads(a):
    """(name, user, pgbench arguments) of the pgbench processes that run for the whole soak."""
    c = a.clients
    return [
        ("mix", "app", ["-M", "simple", "-c", str(c), "-j", "2", "-R", str(a.mix_rate),
                        "-b", "select-only@8", "-b", "simple-update@1", "-b", "tpcb-like@1"]),
        ("prepared", "app", ["-M", "prepared", "-c", str(max(1, c // 2)), "-j", "1", "-R", str(a.mix_rate // 2),
                             "-b", "select-only@9", "-b", "simple-update@1"]),
        ("churn-scram", "app", ["-C", "-M", "simple", "-S", "-c", "2", "-j", "1", "-R", str(a.churn_rate)]),
        ("churn-md5", "app_md5", ["-C", "-M", "extended", "-S", "-c", "2", "-j", "1", "-R", str(a.churn_rate)]),
        ("churn-prepared", "app_md5", ["-C", "-M", "prepared", "-b", "select-only@9", "-b", "simple-update@1",
                                       "-c", "2", "-j", "1", "-R", str(a.churn_rate)]),
    ]


class SoakBench(base.Bench):
    PORT_NAMES = ("pg", "pgrelay", "pgbouncer", "metrics")
    REPORT_FILE = "soak.md"
    LOG_PREFIX = "soak-"

    def __init__(self, args):
        super().__init__(args)
        self.pgbenches = {}  # name -> Popen

    def setup(self):
        self.make_base()
        self.start_postgres()
        self.init_pgbench()
        self.start_proxy("pgrelay")

    def pgrelay_yaml(self, port, tls, server_tls=None):
        a = self.args
        cache = ""
        if a.cache:
            cache = (f"cache:\n  l1: {{ max_memory: {L1_BYTES >> 20}MB }}\n  ttl: 30s\n"
                     "  rules:\n    - { tables: [pgbench_accounts, pgbench_branches, pgbench_tellers] }\n")
        return f"""# written by bench/soak.py
listen: {{ host: 127.0.0.1, port: {port} }}
log: {{ level: info }}
admin: {{ http: {{ host: 127.0.0.1, port: {self.metrics_port} }} }}
users:
  - {{ name: app, password: "{PASSWORD}", auth: scram-sha-256 }}
  - {{ name: app_md5, password: "{PASSWORD}", auth: md5 }}
databases:
  app: {{ service: bench, pool_mode: transaction }}
services:
  bench:
    primary: {{ host: 127.0.0.1, port: {self.pg_port}, dbname: app, user: app, password: "{PASSWORD}" }}
    pool: {{ max: {a.pool}, min: {a.pool} }}
    tls: {{ mode: disable }}
{cache}"""

    def sample(self, pid, t0, cpu0):
        u, s = cpu_split(pid)
        d = dict(t=time.monotonic() - t0, rss=status_kb(pid, "VmRSS"), anon=status_kb(pid, "RssAnon"),
                 fds=fd_count(pid), cpu=u + s - cpu0)
        d.update(read_metrics(self.metrics_port))  # after the descriptors: its connection is not counted
        return d

    def main(self):
        a = self.args
        started, date = self.begin()
        self.setup()
        pr = self.proxies["pgrelay"]
        pid, port = pr["pid"], pr["port"]
        self.warm_up_user(port, "app_md5")  # start_proxy filled app's pool; now app_md5's
        time.sleep(1)
        before = dict(rss=status_kb(pid, "VmRSS"), fds=fd_count(pid))
        progress(f"pgrelay pid {pid}: RSS {before['rss'] / 1024:.1f} MB, {before['fds']} descriptors; "
                 f"soak of {a.duration} s, a sample every {a.interval} s")
        env = base.clean_env()
        for name, user, args in workloads(a):
            argv = [f"{PGBIN}/pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user,
                    "-T", str(a.duration)] + args + ["app"]
            out = open(os.path.join(self.base, f"pgbench-{name}.out"), "w")
            self.pgbenches[name] = subprocess.Popen(argv, cwd=self.base, env=env, stdout=out,
                                                    stderr=subprocess.STDOUT)
            out.close()
        t0 = time.monotonic()
        cpu0 = sum(cpu_split(pid))
        samples = []
        next_t = 0
        while any(p.poll() is None for p in self.pgbenches.values()):
            now = time.monotonic() - t0
            if now >= next_t:
                s = self.sample(pid, t0, cpu0)
                samples.append(s)
                progress(f"  t={s['t']:6.0f} s  RSS {s['rss'] / 1024:6.1f} MB  anon {s['anon'] / 1024:6.1f} MB  "
                         f"fds {s['fds']:4d}  cpu {s['cpu']:7.1f} s  analysis {mb(s.get('analysis'))} MB  "
                         f"L1 {mb(s.get('l1'))} MB")
                next_t += a.interval
            if now > a.duration + 300:
                self.notes.append("pgbench still running 300 s after the soak's end: killed")
                break
            time.sleep(0.5)
        for p in self.pgbenches.values():
            if p.poll() is None:
                p.kill()
            p.wait()
        time.sleep(2)
        after = dict(rss=status_kb(pid, "VmRSS"), fds=fd_count(pid), hwm=status_kb(pid, "VmHWM"),
                     alive=base.proc_alive(pid))
        results = {name: self.pgbench_result(name, p.returncode) for name, p in self.pgbenches.items()}
        self.finish(started, lambda elapsed: self.report(date, before, after, samples, results, elapsed))

    def warm_up_user(self, port, user):
        subprocess.run([f"{PGBIN}/pgbench", "-n", "-S", "-T", "2", "-c", str(2 * self.args.pool), "-j", "2",
                        "-h", "127.0.0.1", "-p", str(port), "-U", user, "app"], cwd=self.base,
                       env=base.clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def pgbench_result(self, name, rc):
        with open(os.path.join(self.base, f"pgbench-{name}.out"), errors="replace") as f:
            out = f.read()
        r = dict(rc=rc, n=None, failed=None, tps=None)
        for key, pat in (("n", r"^number of transactions actually processed: (\d+)"),
                         ("failed", r"^number of failed transactions: (\d+)"), ("tps", r"^tps = ([0-9.]+)")):
            m = re.search(pat, out, re.M)
            r[key] = float(m.group(1)) if m else None
        errs = [l for l in out.splitlines() if "error" in l.lower() or "abort" in l.lower() or "fatal" in l.lower()]
        if rc != 0 or r["failed"] or errs:
            self.notes.append(f"pgbench {name}: exit {rc}, failed {r['failed']}:\n\n```\n" +
                              ("\n".join(errs[:8]) or "(no error lines)") + "\n```")
        return r

    @staticmethod
    def verdict(samples, duration, before, after, cache):
        """(flat?, explanation lines) by the stated rule."""
        warm = max(WARMUP_MIN_S, WARMUP_SHARE * duration)
        full = next((s["t"] for s in samples if s.get("analysis", 0) >= CACHE_FULL * ANALYSIS_BYTES and
                     (not cache or s.get("l1", 0) >= CACHE_FULL * L1_BYTES)), None)
        note = (f"bounded caches full at t = {full:.0f} s" if full is not None else
                "the bounded caches never filled (judged after the fixed warm-up)")
        warm = max(warm, full or 0)
        kept = [s for s in samples if s["t"] >= warm]
        if len(kept) < 6:
            return False, [f"too few samples after the {warm:.0f} s warm-up ({len(kept)}): no verdict"]
        third = len(kept) // 3
        first, last = kept[:third], kept[-third:]
        rss_first = statistics.mean(s["rss"] for s in first)
        rss_last = statistics.mean(s["rss"] for s in last)
        limit = rss_first + max(RSS_TOLERANCE * rss_first, RSS_SLACK_KB)
        fd_first = statistics.median(s["fds"] for s in first)
        fd_last = statistics.median(s["fds"] for s in last)
        rss_ok = rss_last <= limit
        fd_ok = fd_last <= fd_first and after["fds"] == before["fds"]
        lines = [
            f"Samples after the warm-up ({warm:.0f} s; {note}): {len(kept)}; first third t = {first[0]['t']:.0f}–"
            f"{first[-1]['t']:.0f} s, last third t = {last[0]['t']:.0f}–{last[-1]['t']:.0f} s.",
            f"RSS: mean of the first third {rss_first / 1024:.2f} MB, of the last third {rss_last / 1024:.2f} MB "
            f"({(rss_last - rss_first) / rss_first * 100:+.2f}%; limit {limit / 1024:.2f} MB): "
            f"{'ok' if rss_ok else 'GROWS'}.",
            f"Descriptors: median of the first third {fd_first:.0f}, of the last third {fd_last:.0f}; "
            f"{before['fds']} before the workload started, {after['fds']} after it stopped: "
            f"{'ok' if fd_ok else 'GROWS'}.",
        ]
        return rss_ok and fd_ok, lines

    def report(self, date, before, after, samples, results, elapsed):
        a = self.args
        flat, why = self.verdict(samples, a.duration, before, after, a.cache)
        out = self.report_head(
            "# pgrelay soak: RSS and descriptors under a mixed load", date, elapsed,
            f"pgbench scale 10; pgrelay in transaction pooling, pool of {a.pool} per user (min = max: a "
            f"fixed number of server connections), SCRAM (user app) and "
            f"md5 (user app_md5) logins, plain TCP, logging at info (every login and close)"
            f"{f', result cache L1 ({L1_BYTES >> 20} MB, ttl 30 s) on the pgbench tables' if a.cache else ', no result cache'}; "
            f"every pgbench runs `-T {a.duration}` at once. The machine is shared with other engineers' work.",
            f"RSS = VmRSS (anon = RssAnon) of pgrelay from /proc/PID/status, descriptors = entries of "
            f"/proc/PID/fd, CPU = pgrelay's utime+stime since the start; a sample every {a.interval} s.")
        out += ["## Workload", "", "| pgbench | user | arguments | transactions | TPS | failed | exit |",
                "|---|---|---|---:|---:|---:|---:|"]
        for name, user, args in workloads(a):
            r = results.get(name, {})
            out.append(f"| {name} | {user} | `{' '.join(args)}` | {base.fmt(r.get('n'), 0)} | "
                       f"{base.fmt(r.get('tps'), 0)} | {base.fmt(r.get('failed'), 0)} | {r.get('rc')} |")
        out += ["", "`-C` = a new connection (TCP, login, Terminate) for every transaction; `-R` = transactions "
                "per second per pgbench process; `-M prepared` = named prepared statements, which pgrelay "
                "keeps working in transaction pooling.", ""]
        out += ["## Verdict", "", f"**{'flat' if flat else 'NOT flat'}**", "",
                f"Rule: after a warm-up of {WARMUP_SHARE:.0%} of the run (at least {WARMUP_MIN_S} s), or longer until "
                f"pgrelay's bounded caches are {CACHE_FULL:.0%} full (statement analysis cache: 64 MB"
                f"{f'; L1: {L1_BYTES >> 20} MB' if a.cache else ''}), the mean RSS "
                f"of the last third of the samples is at most {RSS_TOLERANCE:.0%} (or {RSS_SLACK_KB // 1024} MB, "
                f"whichever is larger) above the mean of the first third; the median descriptor count of the "
                f"last third is not above the first third's (churning clients come and go between samples); "
                f"and once the workload stopped pgrelay holds exactly as many descriptors as before it started.",
                ""] + [f"- {line}" for line in why] + [
                f"- RSS before the workload {before['rss'] / 1024:.1f} MB, after it {after['rss'] / 1024:.1f} MB, "
                f"peak (VmHWM) {after['hwm'] / 1024:.1f} MB; pgrelay {'still running' if after['alive'] else 'DIED'}.",
                ""]
        out += ["## Samples", "",
                "clients = pgrelay_clients, analysis = pgrelay_statement_analysis_cache_bytes (the statement "
                "analysis cache, at most 64 MB: `-M simple` sends every literal as a new text), L1 = "
                "pgrelay_cache_bytes, statements = pgrelay_prepared_statements (from GET /metrics).", "",
                "| t s | RSS MB | anon MB | descriptors | pgrelay CPU s | clients | analysis MB | L1 MB | statements |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in samples:
            out.append(f"| {s['t']:.0f} | {s['rss'] / 1024:.2f} | {s['anon'] / 1024:.2f} | {s['fds']} | "
                       f"{s['cpu']:.1f} | {base.fmt(s.get('clients'), 0)} | {mb(s.get('analysis'))} | "
                       f"{mb(s.get('l1'))} | {base.fmt(s.get('stmts'), 0)} |")
        out.append("")
        return "\n".join(out + self.notes_lines("No pgbench errors, failed transactions or unusual pgrelay log "
                                                "lines."))

    def cleanup(self):
        for p in self.pgbenches.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        super().cleanup()


def main():
    ap = base.arg_parser("bench/soak.sh", __doc__.splitlines()[0], 1800)
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 minutes")
    ap.add_argument("--interval", type=int, default=10, help="seconds between samples (default 10)")
    ap.add_argument("--clients", type=int, default=16, help="clients of the select/update mix (default 16; "
                    "the prepared workload has half as many)")
    ap.add_argument("--mix-rate", type=int, default=800,
                    help="transactions per second of the mix (default 800; the prepared workload half as many)")
    ap.add_argument("--churn-rate", type=int, default=20,
                    help="new connections per second of each churn pgbench (default 20; three of them)")
    ap.add_argument("--cache", action="store_true", help="pgrelay's result cache (L1) on the pgbench tables")
    ap.set_defaults(pool=20)
    args = base.parse_common(ap, 1800)
    if args.quick and args.duration == 2:
        args.duration = 180
    if args.duration < 60 or args.interval < 1:
        ap.error("--duration must be >= 60 and --interval >= 1")
    base.run_bench(SoakBench, args)


if __name__ == "__main__":
    main()
