#!/usr/bin/python3
"""The hot-path cost of the latency histograms: admin.histograms on vs off, same run.

    sudo /usr/bin/python3 bench/histograms.py [--pgrelay build/pgrelay] [--rounds 3] [--duration 10]

Starts its own PostgreSQL 15 under /tmp (as the postgres OS user; like bench/run.sh it must run as
root), `pgbench -i -s 5`, and one pgrelay (transaction pooling, pool 16). Each round runs
`pgbench -S -M simple -c 16 -j 2 -T duration` once with `admin.histograms: true` and once with
false (the file is rewritten and reloaded with SIGHUP in between: the same process, pool and
server connections; the order alternates between rounds), and reads TPS and the pgrelay process's
CPU (utime + stime, /proc/PID/stat) per 10,000 transactions. Also runs build/histogram_bench (ns
per histogram_record) when it exists. Prints a Markdown section for bench/RESULTS.md. About 30 s
of setup + rounds x 2 x duration (~1.5 minutes with the defaults). Stops everything it started and
removes its folder, also on failure.
"""
import argparse
import os
import pwd
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(BENCH_DIR)
sys.path.insert(0, BENCH_DIR)
from bench import PASSWORD, PGBIN, clean_env, cpu_seconds, free_ports, port_open  # noqa: E402


def progress(msg):
    print(f"[histograms {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(argv, as_postgres=False, cwd="/tmp", check=True):
    if as_postgres:
        argv = ["/usr/sbin/runuser", "-u", "postgres", "--"] + argv
    p = subprocess.run(argv, cwd=cwd, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=600)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited with {p.returncode}:\n{p.stdout}")
    return p


def pgrelay_yaml(port, pg_port, histograms):
    return f"""listen: {{ host: 127.0.0.1, port: {port} }}
log: {{ level: info }}
admin: {{ histograms: {'true' if histograms else 'false'} }}
users:
  - {{ name: app, password: "{PASSWORD}" }}
databases:
  app: {{ service: bench, pool_mode: transaction }}
services:
  bench:
    primary: {{ host: 127.0.0.1, port: {pg_port}, dbname: app, user: app, password: "{PASSWORD}" }}
    pool: {{ max: 16, min: 0 }}
    tls: {{ mode: disable }}
"""


def pgbench(port, duration, clients=16):
    p = run([f"{PGBIN}/pgbench", "-n", "-S", "-M", "simple", "-c", str(clients), "-j", "2", "-T", str(duration),
             "-h", "127.0.0.1", "-p", str(port), "-U", "app", "app"], check=False)
    m = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", p.stdout)
    n = re.search(r"number of transactions actually processed: (\d+)", p.stdout)
    if p.returncode != 0 or not m or not n:
        raise RuntimeError(f"pgbench failed ({p.returncode}):\n{p.stdout}")
    return float(m.group(1)), int(n.group(1))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pgrelay", default=os.path.join(REPO_DIR, "build", "pgrelay"))
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--duration", type=int, default=8, help="seconds per pgbench run")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("histograms.py: must run as root (PostgreSQL is started as postgres with runuser)")
    pw = pwd.getpwnam("postgres")
    base = tempfile.mkdtemp(prefix="pgrh.", dir="/tmp")
    os.chown(base, pw.pw_uid, pw.pw_gid)
    pg_port, port = free_ports(2)
    procs = {}
    pg_started = False
    try:
        binary = os.path.join(base, "pgrelay-bin")
        shutil.copy2(args.pgrelay, binary)
        progress(f"initdb + PostgreSQL on port {pg_port}")
        run([f"{PGBIN}/initdb", "-D", f"{base}/pg", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N",
             "--auth-local=trust", "--auth-host=scram-sha-256"], as_postgres=True, cwd=base)
        with open(f"{base}/pg/postgresql.conf", "a") as f:
            f.write(f"listen_addresses = '127.0.0.1'\nport = {pg_port}\nunix_socket_directories = '{base}'\n"
                    "max_connections = 100\nshared_buffers = 128MB\nfsync = off\nsynchronous_commit = off\n"
                    "full_page_writes = off\n")
        pg_started = True
        run([f"{PGBIN}/pg_ctl", "-D", f"{base}/pg", "-l", f"{base}/pg.log", "-w", "-t", "60", "start"],
            as_postgres=True, cwd=base)
        run([f"{PGBIN}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", base, "-p", str(pg_port), "-U", "postgres",
             "-d", "postgres", "-c", f"CREATE ROLE app LOGIN PASSWORD '{PASSWORD}'", "-c",
             "CREATE DATABASE app OWNER app"])
        progress("pgbench -i -s 5")
        run([f"{PGBIN}/pgbench", "-i", "-s", "5", "-q", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "app", "app"])
        cfg = os.path.join(base, "pgrelay.yaml")
        log_path = os.path.join(base, "pgrelay.log")

        def configure(hist, popen=None):
            with open(cfg + ".tmp", "w") as f:
                f.write(pgrelay_yaml(port, pg_port, hist))
            os.replace(cfg + ".tmp", cfg)
            if popen is None:
                return
            before = open(log_path).read().count("configuration reloaded")
            popen.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 10
            while open(log_path).read().count("configuration reloaded") <= before:
                if time.monotonic() > deadline:
                    raise RuntimeError("pgrelay did not reload")
                time.sleep(0.05)

        configure(True)
        log = open(log_path, "w")
        popen = subprocess.Popen([binary, "-c", cfg], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        procs["pgrelay"] = (popen, port)
        log.close()
        deadline = time.monotonic() + 15
        while not port_open(port):
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("pgrelay did not start")
            time.sleep(0.05)
        pgbench(port, 3)  # warm-up: fills the pool
        results = {"on": [], "off": []}
        for r in range(args.rounds):
            order = ("on", "off") if r % 2 == 0 else ("off", "on")
            for name in order:
                configure(name == "on", popen)
                c0 = cpu_seconds(popen.pid)
                tps, n = pgbench(port, args.duration)
                cpu = cpu_seconds(popen.pid) - c0
                results[name].append((tps, cpu / n * 10000))
                progress(f"round {r + 1} histograms {name}: {tps:.0f} tps, {cpu / n * 1e6:.1f} us CPU per tx")
        micro = ""
        hb = os.path.join(os.path.dirname(os.path.abspath(args.pgrelay)), "histogram_bench")
        if os.access(hb, os.X_OK):
            micro = subprocess.run([hb], capture_output=True, text=True, timeout=120).stdout.strip()
        print("## Histograms on the hot path (`bench/histograms.py`)\n")
        print(f"`sudo /usr/bin/python3 bench/histograms.py --rounds {args.rounds} --duration {args.duration}`, "
              f"{time.strftime('%Y-%m-%d', time.gmtime())}, {os.cpu_count()} cores, load "
              f"{open('/proc/loadavg').read().split()[0]} at the end. `pgbench -S -M simple -c 16 -j 2`, "
              "transaction pooling, pool 16, one pgrelay reloaded between runs with `admin.histograms` "
              "true / false, the order alternating.\n")
        print("| round | TPS on | TPS off | CPU s/10k tx on | CPU s/10k tx off |")
        print("|---:|---:|---:|---:|---:|")
        for i, (a, b) in enumerate(zip(results["on"], results["off"])):
            print(f"| {i + 1} | {a[0]:.0f} | {b[0]:.0f} | {a[1]:.3f} | {b[1]:.3f} |")
        med = {k: (statistics.median(t for t, _ in v), statistics.median(c for _, c in v)) for k, v in results.items()}
        print(f"| median | {med['on'][0]:.0f} | {med['off'][0]:.0f} | {med['on'][1]:.3f} | {med['off'][1]:.3f} |")
        print(f"\nTPS on/off {med['on'][0] / med['off'][0]:.3f}, CPU per transaction on/off "
              f"{med['on'][1] / med['off'][1]:.3f}.")
        if micro:
            print(f"\n`build/histogram_bench`:\n\n```\n{micro}\n```")
    finally:
        for popen, _ in procs.values():
            if popen.poll() is None:
                popen.terminate()
                try:
                    popen.wait(10)
                except subprocess.TimeoutExpired:
                    popen.kill()
        if pg_started:
            run([f"{PGBIN}/pg_ctl", "-D", f"{base}/pg", "-m", "immediate", "-w", "stop"], as_postgres=True, cwd=base,
                check=False)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
