"""Restart / upgrade without refusing clients: a new pgrelay started with the same
configuration takes the listening socket over from the running one (SCM_RIGHTS on
listen.upgrade_socket); the old one stops accepting, lets its clients finish their transactions and
exits. pgbench --connect running through the switch sees zero failed transactions."""
import os
import subprocess
import tempfile
import time

import psycopg

from conftest import APP_PASSWORD, PGBENCH, Relay, wait_for


def test_new_pgrelay_takes_over_without_refusing_a_connection(pgrelay, pg, pgbench_tables, workdir):
    old = pgrelay(pool={"max": 8})
    # a long-lived client of the old one, idle between transactions
    lingering = old.connect()
    assert lingering.execute("SELECT 1").fetchone() == (1,)
    bench = subprocess.Popen([PGBENCH, "-h", "127.0.0.1", "-p", str(old.port), "-U", "app", "-n", "-S", "--connect",
                              "-c", "4", "-j", "2", "-T", "6", "appdb"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=dict(os.environ, PGPASSWORD=APP_PASSWORD))
    new = third = None
    try:
        time.sleep(2)
        folder = tempfile.mkdtemp(prefix="upgrade-new.", dir=workdir)
        new = Relay(pg, folder, dict(old.cfg))
        new.start()
        new.wait_log("took over 1 listening socket(s)")
        old.wait_log("the new pgrelay is accepting")
        # the old one exits once its clients are gone; the idle one is closed at its transaction boundary
        wait_for(lambda: old.proc.poll() is not None, 20, what="the old pgrelay to exit")
        assert old.proc.returncode == 0, old.log_tail()
        out, err = bench.communicate(timeout=60)
    except BaseException:
        for r in (new,):  # not the fixture's: stop it here when the test fails half-way
            if r is not None and r.proc.poll() is None:
                r.proc.kill()
        raise
    finally:
        if bench.poll() is None:
            bench.kill()
    assert bench.returncode == 0, err
    assert "number of failed transactions: 0 " in out, out
    tx = int(out.split("number of transactions actually processed: ")[1].split()[0])
    assert tx > 50, out
    # the long-lived client was closed by the old pgrelay between transactions: it reconnects
    # (to the new one) and goes on
    try:
        lingering.execute("SELECT 1")
        raise AssertionError("the old pgrelay kept an idle client after handing over")
    except psycopg.OperationalError:
        pass
    with new.connect() as c:
        assert c.execute("SELECT 2").fetchone() == (2,)
    # and the new one can hand over again
    folder = tempfile.mkdtemp(prefix="upgrade-third.", dir=workdir)
    third = Relay(pg, folder, dict(new.cfg))
    try:
        third.start()
        third.wait_log("took over 1 listening socket(s)")
        wait_for(lambda: new.proc.poll() is not None, 20, what="the second pgrelay to exit")
        with third.connect() as c:
            assert c.execute("SELECT 3").fetchone() == (3,)
    finally:
        for r in (new, third):
            if r.proc is not None and r.proc.poll() is None:
                r.proc.send_signal(2)
                r.proc.wait(20)


def test_control_socket_of_another_user_is_ignored(pgrelay, pg, workdir):
    """The control socket's path is predictable: a process of another user listening there gets
    no hand-over and hands over nothing; pgrelay opens its own listener."""
    from conftest import free_port
    port = free_port()
    path = f"/tmp/.s.pgrelay.{port}.upgrade"
    server = subprocess.Popen(["runuser", "-u", "postgres", "--", "/usr/bin/python3", "-c",
                               "import socket, sys, time\n"
                               f"s = socket.socket(socket.AF_UNIX); s.bind({path!r}); s.listen(1)\n"
                               "print('ready', flush=True)\n"
                               "c, _ = s.accept(); c.recv(100); c.sendall(b'FDS 1\\n'); time.sleep(5)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        r = pgrelay(listen={"port": port}, start=False)
        r.cfg["listen"]["port"] = port
        r.port = port
        r.start()
        with r.connect() as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        assert "ignoring a process of uid" in r.log()
        assert "took over" not in r.log()
    finally:
        server.kill()
        server.wait()
