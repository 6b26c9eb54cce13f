"""Free TCP ports on 127.0.0.1 for the servers a test starts (PostgreSQL, Redis, pgrelay, fakes).

Ports are drawn at random from 10000-32767, below Linux's ephemeral range (so no outgoing
connection can hold one), and checked by binding. One process-wide set remembers every port handed
out, so one run never gives the same port twice. Under pytest-xdist (scripts/test.sh runs the suite
on one worker per core), worker i of n only takes ports p with p % n == i, so two workers never hand
out the same port either. (Linux's own bind(0) prefers even ports, so it cannot be split this way.)
"""
import os
import random
import socket

_WORKER_COUNT = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
_WORKER_INDEX = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0")[2:] or 0)
_given = set()
_random = random.Random()  # its own generator: tests may seed the global one


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on now (and that this run has not handed out)."""
    for _ in range(1000):
        port = _random.randrange(10000, 32768)
        port -= (port - _WORKER_INDEX) % _WORKER_COUNT
        if port < 10000 or port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _given.add(port)
        return port
    raise RuntimeError("no free port")
