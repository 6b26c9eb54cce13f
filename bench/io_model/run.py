#!/usr/bin/python3
"""bench/io_model/run.py — epoll vs io_uring relay CPU per round trip (see relay_io.c).

Usage: bench/io_model/run.py [--modes epoll,uring,uring-coop,uring-plain] [--clients 16,64]
                             [--reps 6] [--seconds 5] [--pin RELAYCPU:OTHERCPUS]

Builds relay_io (needs gcc and Debian's liburing-dev) into a temporary directory, then for each
repetition, client count and mode (interleaved, so drift hits every mode alike) starts the server
stand-in, the relay and the client stand-in on loopback, waits 1 s, and samples over --seconds:
round trips, the relay's CPU from /proc/PID/task/*/schedstat (ns) and /proc/PID/stat (user/sys
ticks), its own syscall counters, and the client's and servers' CPU. Prints one line per trial and
then the medians per mode and client count and each mode's relay CPU per round trip over epoll's.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TCK = os.sysconf("SC_CLK_TCK")
KEYS = ["rts", "relay_user_us", "relay_sys_us", "relay_total_us", "sc_per_rt", "ev_per_loop", "client_us",
        "server_us"]


def proc_cpu(pid):
    """(utime s, stime s, run time ns) summed over the threads of pid."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    ns = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                ns += int(f.read().split()[0])
        except FileNotFoundError:
            pass
    return int(fields[11]) / TCK, int(fields[12]) / TCK, ns


def children(pid):
    out = []
    for t in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{t}/children") as f:
            out += [int(x) for x in f.read().split()]
    return out


def read_stats(path):
    with open(path, "rb") as f:
        return struct.unpack("8Q", f.read(64))


def free_port_pair():
    import socket
    socks = [socket.socket() for _ in range(2)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def trial(exe, tmp, pin, mode, clients, seconds, pool=16, spin_us=5):
    sport, rport = free_port_pair()
    statf = os.path.join(tmp, f"stats.{mode}.{clients}")
    pin_r = ["taskset", "-c", pin[0]] if pin else []
    pin_o = ["taskset", "-c", pin[1]] if pin else []
    procs = []
    err = open(os.path.join(tmp, "stderr.log"), "a")
    try:
        srv = subprocess.Popen(pin_o + [exe, "server", str(sport), str(spin_us)], start_new_session=True, stderr=err)
        procs.append(srv)
        time.sleep(0.2)
        rel = subprocess.Popen(pin_r + [exe, "relay", str(rport), str(sport), str(pool), mode, statf],
                               start_new_session=True, stderr=err)
        procs.append(rel)
        for _ in range(250):
            if os.path.exists(statf) and os.path.getsize(statf) >= 64 and read_stats(statf)[6] == 1:
                break
            time.sleep(0.02)
        else:
            raise RuntimeError("the relay did not get ready")
        cli = subprocess.Popen(pin_o + [exe, "client", str(rport), str(clients), "2", statf],
                               start_new_session=True, stderr=err)
        procs.append(cli)
        time.sleep(1.0)
        spids = [srv.pid] + children(srv.pid)
        t0, s0 = time.monotonic(), read_stats(statf)
        r0, c0 = proc_cpu(rel.pid), proc_cpu(cli.pid)
        v0 = sum(proc_cpu(p)[2] for p in spids)
        time.sleep(seconds)
        t1, s1 = time.monotonic(), read_stats(statf)
        r1, c1 = proc_cpu(rel.pid), proc_cpu(cli.pid)
        v1 = sum(proc_cpu(p)[2] for p in spids)
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{p.args[len(pin_o):][:2]} exited with {p.returncode}")
        d = [b - a for a, b in zip(s0, s1)]
        rt = d[0]
        if rt == 0:
            raise RuntimeError("no round trips")
        return dict(mode=mode, clients=clients, rts=rt / (t1 - t0),
                    relay_user_us=(r1[0] - r0[0]) * 1e6 / rt, relay_sys_us=(r1[1] - r0[1]) * 1e6 / rt,
                    relay_total_us=(r1[2] - r0[2]) / 1e3 / rt, sc_per_rt=(d[2] + d[3] + d[4]) / rt,
                    ev_per_loop=d[5] / max(d[1], 1), client_us=(c1[2] - c0[2]) / 1e3 / rt,
                    server_us=(v1 - v0) / 1e3 / rt)
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGKILL)  # the server's children are in its process group
            except ProcessLookupError:
                pass
            p.wait()
        err.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="epoll,uring,uring-coop,uring-plain")
    ap.add_argument("--clients", default="16,64")
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--pin", help="RELAYCPU:OTHERCPUS, e.g. 0:1 (the relay on a CPU of its own)")
    args = ap.parse_args()
    modes = args.modes.split(",")
    counts = [int(x) for x in args.clients.split(",")]
    pin = args.pin.split(":") if args.pin else None
    if not os.path.exists("/usr/include/liburing.h"):
        sys.exit("io_model: liburing.h is missing: apt-get install liburing-dev")
    tmp = tempfile.mkdtemp(prefix="relay_io.")
    try:
        exe = os.path.join(tmp, "relay_io")
        subprocess.run(["gcc", "-std=gnu17", "-O2", "-Wall", "-Wextra", "-Werror", "-o", exe,
                        os.path.join(HERE, "relay_io.c"), "-luring", "-lpthread"], check=True)
        rows = []
        for rep in range(args.reps):
            for n in counts:
                for m in modes:
                    try:
                        r = trial(exe, tmp, pin, m, n, args.seconds)
                    except RuntimeError as e:
                        print(json.dumps(dict(mode=m, clients=n, rep=rep, error=str(e))), flush=True)
                        continue
                    r["rep"] = rep
                    rows.append(r)
                    print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in r.items()}),
                          flush=True)
        summarize(rows, modes, counts)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def summarize(rows, modes, counts):
    print()
    print("| mode | clients | round trips/s | relay user µs/rt | relay sys µs/rt | relay CPU µs/rt (schedstat) "
          "| relay syscalls/rt | events per loop | client µs/rt | servers µs/rt | trials |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    med = {}
    for n in counts:
        for m in modes:
            rs = [r for r in rows if r["mode"] == m and r["clients"] == n]
            if not rs:
                continue
            med[(m, n)] = {k: statistics.median(r[k] for r in rs) for k in KEYS}
            v = med[(m, n)]
            print(f"| {m} | {n} | {v['rts']:.0f} | {v['relay_user_us']:.1f} | {v['relay_sys_us']:.1f} | "
                  f"{v['relay_total_us']:.1f} | {v['sc_per_rt']:.2f} | {v['ev_per_loop']:.1f} | "
                  f"{v['client_us']:.1f} | {v['server_us']:.1f} | {len(rs)} |")
    print()
    for n in counts:
        base = med.get(("epoll", n))
        if not base:
            continue
        for m in modes:
            if m != "epoll" and (m, n) in med:
                print(f"clients {n}: {m} / epoll relay CPU per round trip = "
                      f"{med[(m, n)]['relay_total_us'] / base['relay_total_us']:.2f}")


if __name__ == "__main__":
    main()
