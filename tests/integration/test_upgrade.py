"""Restart / upgrade without refusing clients: a new pgrelay started with the same
configuration takes the listening socket over from the running one (SCM_RIGHTS on
listen.upgrade_socket); the old one stops accepting, lets its clients finish their transactions and
exits. pgbench --connect running through the switch sees zero failed transactions."""
import os
import pwd
import shutil
import stat
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


def test_control_socket_in_a_private_directory_named_by_host_and_port(pgrelay):
    """By default the control socket is /tmp/pgrelay-<uid>/.s.pgrelay.<host>.<port>.upgrade, in a
    directory created 0700 that only pgrelay's user can enter."""
    r = pgrelay()
    d = f"/tmp/pgrelay-{os.getuid()}"
    path = os.path.join(d, f".s.pgrelay.127.0.0.1.{r.port}.upgrade")
    wait_for(lambda: os.path.exists(path), 10, what=path)
    st = os.lstat(d)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)
    assert not os.path.exists(f"/tmp/.s.pgrelay.{r.port}.upgrade")
    assert "no hand-over" not in r.log()


def test_control_socket_directory_others_can_enter_is_refused(pgrelay, workdir):
    """A control socket directory owned by another user, or open to group or others, is refused:
    no hand-over (a process of another user could otherwise take the listening sockets, or hand
    pgrelay sockets of its own); pgrelay starts on its own socket and says why."""
    from conftest import free_port
    pw = pwd.getpwnam("postgres")
    other = tempfile.mkdtemp(prefix="upgrade-other.", dir="/tmp")
    os.chown(other, pw.pw_uid, pw.pw_gid)
    os.chmod(other, 0o700)
    opened = tempfile.mkdtemp(prefix="upgrade-open.", dir="/tmp")
    os.chmod(opened, 0o755)
    try:
        for d, why in ((other, f"owned by uid {pw.pw_uid} with mode 0700"), (opened, "with mode 0755")):
            path = os.path.join(d, "ctl.upgrade")
            if d == other:
                # another user listens there, as if it were an old pgrelay
                server = subprocess.Popen(["runuser", "-u", "postgres", "--", "/usr/bin/python3", "-c",
                                           "import socket, time\n"
                                           f"s = socket.socket(socket.AF_UNIX); s.bind({path!r}); s.listen(1)\n"
                                           "print('ready', flush=True)\n"
                                           "c, _ = s.accept(); c.recv(100); c.sendall(b'FDS 1\\n'); time.sleep(5)\n"],
                                          stdout=subprocess.PIPE, text=True)
                assert server.stdout.readline().strip() == "ready"
            else:
                server = None
            try:
                r = pgrelay(listen={"upgrade_socket": path})
                with r.connect() as c:
                    assert c.execute("SELECT 1").fetchone() == (1,)
                r.wait_log("must be a directory only pgrelay's user can enter")
                assert why in r.log(), r.log_tail()
                assert "took over" not in r.log()
                if d == opened:
                    assert not os.path.exists(path), "pgrelay listened in a directory others can enter"
            finally:
                if server is not None:
                    server.kill()
                    server.wait()
    finally:
        shutil.rmtree(other, ignore_errors=True)
        shutil.rmtree(opened, ignore_errors=True)
