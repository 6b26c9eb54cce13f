"""Fixtures for the WAL listener's tests (test_wal.py), imported by conftest.py.

pg_logical: a third PostgreSQL 15 of the session (its own data folder under the session's work
folder, its own port), like pg but with wal_level = logical, the same roles and appdb, and a role
walrep (LOGIN REPLICATION, password walpw) that initdb's pg_hba lets in for replication
connections over 127.0.0.1 with SCRAM. Started on first use.
"""
import os
import pwd

import pytest

import conftest as harness  # the module pytest loaded; read at fixture time (no import cycle)

# Logical slots the session's tests may hold at once (each WAL test creates its own, and every
# instance of a configuration with the listener has one): PostgreSQL's default of 10 is too few if
# one teardown is slow.
MAX_SLOTS = 40

WAL_USER = "walrep"
WAL_PASSWORD = "walpw"


@pytest.fixture(scope="session")
def pg_logical(workdir):
    base = os.path.join(workdir, "pg_logical")
    os.mkdir(base)
    pw = pwd.getpwnam("postgres")
    os.chown(base, pw.pw_uid, pw.pw_gid)
    os.chmod(base, 0o755)
    server = harness.PgServer(base)
    server.start()
    try:
        server.sql("ALTER SYSTEM SET wal_level = 'logical'")
        server.sql(f"ALTER SYSTEM SET max_replication_slots = {MAX_SLOTS}")
        server.sql(f"ALTER SYSTEM SET max_wal_senders = {MAX_SLOTS + 10}")
        server.as_postgres(os.path.join(harness.PGBIN, "pg_ctl"), "-D", server.data, "-l", server.log, "-w", "-t",
                           "60", "-m", "fast", "restart")
        assert server.sql("SHOW wal_level") == "logical"
        server.setup()
        server.sql(f"CREATE ROLE {WAL_USER} LOGIN REPLICATION PASSWORD '{WAL_PASSWORD}'")
        yield server
    finally:
        server.stop()


def drop_slots(server, slots, dbname="appdb", timeout=10):
    """Drops the named logical slots of server, each once its walsender has gone (a pgrelay that was
    just stopped may still hold it for a moment: dropping an active slot fails, and a slot left
    behind takes one of the server's max_replication_slots for the rest of the session)."""
    for slot in slots:
        harness.wait_for(lambda: server.sql(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' "
                                            "AND active", dbname=dbname) == "0", timeout, 0.05,
                         what=f"slot {slot} released")
        server.sql(f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}'",
                   dbname=dbname)
