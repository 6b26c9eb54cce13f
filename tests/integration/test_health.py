"""Health checks of primaries and replicas (src/health.c) against a real streaming replica.

Timing bounds come from the configuration: a backend that stops answering is down after fail_after
failed probes, one per interval, so the down line must appear within (fail_after + 2) intervals of
the replica stopping (two intervals of slack for the phase of the timer and scheduling); up again
after recover_after successes, within (recover_after + 2) intervals of the replica accepting
connections. Each figure is printed (pytest -s shows them).
"""
import datetime
import re
import signal
import socket
import time

import pytest

from conftest import APP_PASSWORD, wait_for

INTERVAL_MS = 300
FAIL_AFTER = 3
RECOVER_AFTER = 2


def health(**over):
    h = {"interval": f"{INTERVAL_MS}ms", "timeout": "1s", "fail_after": FAIL_AFTER,
         "recover_after": RECOVER_AFTER}
    h.update(over)
    return h


def with_replicas(*replicas):
    return {"main": {"replicas": list(replicas)}}


@pytest.fixture
def replica(pg_replica):
    """The session replica, running and replaying before and after each test."""
    pg_replica.ensure_running()
    yield pg_replica
    pg_replica.ensure_running()


def label(pg_or_replica, role):
    return f"main {role} 127.0.0.1:{pg_or_replica.port}"


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) UTC")


def line_time(line):
    m = LOG_TIME.match(line)
    assert m, line
    dt = datetime.datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def wait_line(relay, needle, timeout, start=0):
    """The first log line after character offset start that contains needle (a str)."""
    def found():
        text = relay.log()[start:]
        for ln in text.splitlines():
            if needle in ln:
                return ln
        return None
    return wait_for(found, timeout, what=f"{needle!r} in the pgrelay log")


def health_conns(server):
    """pgrelay-health connections to server (PgServer or PgReplica): list of (pid, backend_start)."""
    out = server.sql("SELECT pid, backend_start FROM pg_stat_activity WHERE application_name = 'pgrelay-health'")
    return [tuple(ln.split("|")) for ln in out.splitlines() if ln]


def test_replica_checked_and_up_on_one_kept_connection(pgrelay, pg, replica):
    r = pgrelay(services=with_replicas(replica.backend()), health=health())
    line = wait_line(r, f"{label(replica, 'replica 1')} is up (first check: in recovery, replay LSN ", 10)
    assert "LOG health:" in line
    line = wait_line(r, f"{label(pg, 'primary')} is up (first check: primary, WAL LSN ", 10)
    # One connection per backend, kept open across probes.
    first = wait_for(lambda: health_conns(replica), 5, what="the health connection on the replica")
    assert len(first) == 1
    time.sleep(4 * INTERVAL_MS / 1000)
    assert health_conns(replica) == first
    assert len(health_conns(pg)) == 1
    # A kept-open connection that breaks (here: terminated on the server) is replaced at the next
    # probe without counting as a failed check.
    replica.sql(f"SELECT pg_terminate_backend({first[0][0]})")
    wait_for(lambda: len(health_conns(replica)) == 1 and health_conns(replica) != first, 5,
             what="a new health connection on the replica")
    time.sleep(2 * INTERVAL_MS / 1000)
    assert "check failed" not in r.log()
    # Reads through pgrelay still work (the checker does not get in the way).
    assert r.psql("SELECT 1").stdout.strip() == "1"


def test_stopped_replica_goes_down_then_up_again(pgrelay, replica):
    r = pgrelay(services=with_replicas(replica.backend()), health=health())
    who = label(replica, "replica 1")
    wait_line(r, f"{who} is up (first check", 10)

    mark = len(r.log())
    replica.stop()
    bound = (FAIL_AFTER + 2) * INTERVAL_MS / 1000
    down = wait_line(r, f"{who} is down after {FAIL_AFTER} failed checks: ", bound + 5, mark)
    took = line_time(down) - replica.stopped_at
    print(f"\nreplica stopped -> marked down in {took:.3f} s (bound {bound:.3f} s)")
    assert "WARNING health:" in down
    assert took <= bound, f"down after {took:.3f} s, more than {FAIL_AFTER}+2 intervals ({bound} s): {down}"
    # Once down, further failures are not logged again at info level.
    time.sleep(3 * INTERVAL_MS / 1000)
    assert r.log()[mark:].count(f"{who} is down") == 1

    mark = len(r.log())
    replica.start()
    bound = (RECOVER_AFTER + 2) * INTERVAL_MS / 1000
    up = wait_line(r, f"{who} is up again after {RECOVER_AFTER} successful checks (in recovery", bound + 5, mark)
    took = line_time(up) - replica.started_at
    print(f"replica started -> marked up in {took:.3f} s (bound {bound:.3f} s)")
    assert took <= bound, f"up after {took:.3f} s, more than {RECOVER_AFTER}+2 intervals ({bound} s): {up}"
    # Server notices (the replica's "terminating connection due to immediate shutdown") went through
    # the log, not straight to stderr from libpq.
    stray = [ln for ln in r.log().splitlines() if not LOG_TIME.match(ln)]
    assert stray == []


def test_paused_replay_marks_lagging_then_caught_up(pgrelay, pg, replica):
    r = pgrelay(services=with_replicas(replica.backend()), health=health(max_lag="64kB"))
    who = label(replica, "replica 1")
    wait_line(r, f"{who} is up (first check", 10)
    mark = len(r.log())
    replica.pause_replay()
    try:
        pg.sql("CREATE TABLE health_scratch (i int, pad text)", dbname="appdb")
        pg.sql("INSERT INTO health_scratch SELECT i, repeat('x', 100) FROM generate_series(1, 30000) i",
               dbname="appdb")
        lag = wait_line(r, f"{who} is lagging: ", 10, mark)
        assert "WARNING health:" in lag
        m = re.search(r"lagging: (\d+) bytes of WAL behind its primary \(max_lag 65536 bytes\)", lag)
        assert m and int(m.group(1)) > 65536, lag
    finally:
        replica.resume_replay()
    caught = wait_line(r, f"{who} has caught up", 10, mark)
    assert "LOG health:" in caught
    pg.sql("DROP TABLE health_scratch", dbname="appdb")
    # Lagging is not down: no down line for it.
    assert f"{who} is down" not in r.log()


def test_wrong_password_on_replica(pgrelay, pg, replica):
    bad = "not-the-secret-4711"
    r = pgrelay(services=with_replicas(replica.backend(password=bad)), health=health(fail_after=2))
    who = label(replica, "replica 1")
    down = wait_line(r, f"{who} is down after 2 failed checks: ", 10)
    assert 'password authentication failed for user "app"' in down
    wait_line(r, f"{label(pg, 'primary')} is up (first check", 10)
    time.sleep(2 * INTERVAL_MS / 1000)
    log = r.log()
    assert bad not in log
    assert APP_PASSWORD not in log
    assert f"{who} is up" not in log

    # Fixing the password on reload keeps the backend's state and reconnects with the new one.
    mark = len(log)
    cfg = dict(r.cfg)
    cfg["services"] = {}
    cfg["services"]["main"] = dict(r.cfg["services"]["main"], replicas=[replica.backend()])
    r.reload(cfg)
    wait_line(r, f"{who}: credentials or TLS settings changed: reconnecting", 5, mark)
    wait_line(r, f"{who} is up again after {RECOVER_AFTER} successful checks", 5, mark)
    assert bad not in r.log()


def test_reload_adds_and_removes_a_replica(pgrelay, pg, replica):
    r = pgrelay(health=health())
    wait_line(r, f"{label(pg, 'primary')} is up (first check", 10)
    assert health_conns(replica) == []

    mark = len(r.log())
    cfg = dict(r.cfg)
    cfg["services"] = {"main": dict(r.cfg["services"]["main"], replicas=[replica.backend()])}
    r.reload(cfg)
    who = label(replica, "replica 1")
    wait_line(r, f"checking {who} every {INTERVAL_MS} ms", 5, mark)
    wait_line(r, f"{who} is up (first check", 5, mark)
    wait_for(lambda: len(health_conns(replica)) == 1, 5, what="one health connection on the replica")
    # The primary kept its state: no second first check.
    assert r.log()[mark:].count(f"{label(pg, 'primary')} is up") == 0

    mark = len(r.log())
    cfg = dict(cfg)
    cfg["services"] = {"main": {k: v for k, v in cfg["services"]["main"].items() if k != "replicas"}}
    r.reload(cfg)
    wait_line(r, f"{who} is no longer in the configuration: checks stopped", 5, mark)
    wait_for(lambda: health_conns(replica) == [], 5, what="the replica's health connection to close")
    time.sleep(3 * INTERVAL_MS / 1000)
    assert health_conns(replica) == []


def test_sigint_exits_cleanly_with_probes_in_flight(pgrelay, replica):
    # A socket that accepts connections and never answers: a probe is always half-way through
    # connecting when SIGINT arrives.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    closed_port = closed.getsockname()[1]
    closed.close()
    try:
        port = silent.getsockname()[1]
        # Replica 4 by host name: resolved with evdns (/etc/hosts), then handed to libpq as hostaddr;
        # replica 5 through the Unix socket directory.
        r = pgrelay(services=with_replicas(replica.backend(), {"host": "127.0.0.1", "port": port},
                                           {"host": "127.0.0.1", "port": closed_port},
                                           {"host": "localhost", "port": replica.port},
                                           {"host": replica.base, "port": replica.port}),
                    health=health(timeout="5s"))
        wait_line(r, f"{label(replica, 'replica 1')} is up (first check", 10)
        wait_line(r, f"main replica 4 localhost:{replica.port} is up (first check", 10)
        wait_line(r, f"main replica 5 {replica.base}:{replica.port} is up (first check", 10)
        wait_line(r, f"main replica 3 127.0.0.1:{closed_port} check failed", 10)
        r.proc.send_signal(signal.SIGINT)
        assert r.wait_exit(20) == 0
        assert "SIGINT: exiting now" in r.log()
    finally:
        silent.close()


def test_role_mismatch_is_logged_loudly(pgrelay, pg, replica):
    # The session primary listed as a replica (not in recovery: "promoted"), and the replica as the
    # primary of another service (in recovery). Both are logged as warnings once; the configured
    # role stays, in_recovery tells the truth.
    r = pgrelay(services={"main": {"replicas": [{"host": "127.0.0.1", "port": pg.port}]},
                          "standby": {"primary": {"host": "127.0.0.1", "port": replica.port, "dbname": "appdb",
                                                  "user": "app", "password": APP_PASSWORD}}},
                health=health())
    promoted = wait_line(r, f"main replica 1 127.0.0.1:{pg.port} is NOT in recovery (promoted?)", 10)
    assert "WARNING health:" in promoted
    standby = wait_line(r, f"standby primary 127.0.0.1:{replica.port} IS IN RECOVERY", 10)
    assert "WARNING health:" in standby
    time.sleep(3 * INTERVAL_MS / 1000)
    log = r.log()
    assert log.count("is NOT in recovery") == 1 and log.count("IS IN RECOVERY") == 1
    # Still up: the role mismatch is not a failure (the router skips a replica not in recovery).
    assert "is down" not in log
