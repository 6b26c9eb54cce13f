"""The driver workload through psycopg 3 (tests/drivers/README.md).

--path simple    ClientCursor: parameters bound by psycopg, every statement a Query message
--path extended  prepare_threshold=None: unnamed Parse/Bind/Describe/Execute/Sync
--path prepared  prepare_threshold=0: named prepared statements from the first execution

The batched read-then-write: pipeline mode (one Sync for both) on the extended paths; one Query
holding both statements on the simple path. executemany is psycopg's pipelined batch."""
import os
import socket
import sys
import threading
from contextlib import contextmanager

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (BUMP, BUMP_RETURNING, FETCHVAL, INSERT, LOG_INSERT, LOG_READ, LOG_ROWS, PARAM,  # noqa: E402
                    PLAIN, QTY, RANGE, REF, STEP_TIMEOUT, args, emit, fail, pg_format)


def cut(conn, fired):
    """A call that does not return within STEP_TIMEOUT: shut the socket down, so psycopg raises."""
    fired.append(True)
    try:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as s:
            s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def main():
    a = args(["simple", "extended", "prepared"])
    label = "connect"
    try:
        conn = psycopg.connect(host=a.host, port=a.port, user=a.user, password=a.password, dbname=a.dbname,
                               sslmode="disable", connect_timeout=int(STEP_TIMEOUT), autocommit=True,
                               prepare_threshold=0 if a.path == "prepared" else None,
                               cursor_factory=psycopg.ClientCursor if a.path == "simple" else psycopg.Cursor)
    except Exception as e:
        fail(label, e)

    @contextmanager
    def step(name):
        nonlocal label
        label = name
        fired = []
        timer = threading.Timer(STEP_TIMEOUT, cut, (conn, fired))
        timer.daemon = True
        timer.start()
        try:
            yield
        except Exception as e:
            if fired:
                fail(name, TimeoutError(f"no answer within {STEP_TIMEOUT} s ({type(e).__name__}: {e})"))
            fail(name, e)
        finally:
            timer.cancel()

    def q(sql, params=None):
        return conn.execute(pg_format(sql), params).fetchall()

    def x(sql, params=None):
        conn.execute(pg_format(sql), params)

    with step("plain"):
        emit("plain", q(PLAIN))
    with step("plain_again"):
        emit("plain_again", q(PLAIN))
    for name in ("ref", "ref_2", "ref_3"):
        with step(name):
            emit(name, q(REF, (2,)))
    with step("param"):
        emit("param", q(PARAM, (3,)))
    with step("range"):
        emit("range", q(RANGE, (25,)))
    with step("fetchval"):
        emit("fetchval", q(FETCHVAL, (41,)))
    with step("pipe"):
        if a.path == "simple":
            cur = conn.execute(pg_format(QTY) + "; " + pg_format(BUMP_RETURNING), (4, 100, 4))
            read = cur.fetchall()
            assert cur.nextset()
            write = cur.fetchall()
        else:
            with conn.pipeline():
                c1 = conn.execute(pg_format(QTY), (4,))
                c2 = conn.execute(pg_format(BUMP_RETURNING), (100, 4))
            read, write = c1.fetchall(), c2.fetchall()
        emit("pipe_read", read)
        emit("pipe_write", write)
        emit("pipe_after", q(QTY, (4,)))
    with step("ryw"):
        x(INSERT, (101, "new", 7))
        emit("ryw", q(PARAM, (101,)))
    with step("stale"):
        emit("stale_before", q(QTY, (2,)))
        emit("stale_before_2", q(QTY, (2,)))
        x(BUMP, (1, 2))
        emit("stale_after", q(QTY, (2,)))
    with step("tx"):
        with conn.transaction():
            x(BUMP, (5, 1))
            emit("tx_inside", q(QTY, (1,)))
        emit("tx_after", q(QTY, (1,)))
    with step("batch"):
        conn.cursor().executemany(pg_format(LOG_INSERT), LOG_ROWS)
        emit("batch_after", q(LOG_READ))
    with step("final"):
        emit("final", q(PLAIN))
    with step("close"):
        conn.close()


if __name__ == "__main__":
    main()
