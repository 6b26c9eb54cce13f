"""Authentication on both sides of pgrelay.

Client side (pgrelay checks the client against `users`): SCRAM-SHA-256 (default), md5, cleartext;
wrong password -> 28P01, unknown user -> 28000, unknown database -> 3D000.
Server side (pgrelay logs in to PostgreSQL): SCRAM (role app), md5 (role md5user, pg_hba md5),
cleartext (role pwuser, pg_hba password), and pass-through of the client's own credentials.
"""
import time

import psycopg
import pytest

import pgwire
from conftest import APP_PASSWORD, MD5_PASSWORD, PW_PASSWORD, psql

CLIENT_METHODS = [
    ("app", APP_PASSWORD, "scram-sha-256"),
    ("md5user", MD5_PASSWORD, "md5"),
    ("pwuser", PW_PASSWORD, "password"),
]


def raw_login(port, user, password, database="appdb"):
    c = pgwire.RawConn("127.0.0.1", port)
    try:
        c.startup(user, database, password)
        results, errs, _ = c.simple_query("SELECT current_user")
        assert not errs, errs
        return results[0][1][0][0]
    finally:
        c.close()


def raw_login_error(port, user, password, database="appdb"):
    c = pgwire.RawConn("127.0.0.1", port)
    try:
        with pytest.raises(pgwire.PgError) as ei:
            c.startup(user, database, password)
        # after the ErrorResponse, pgrelay closes the connection
        assert pgwire.wait_closed(c.sock, 5), "pgrelay did not close the connection after the login error"
        return ei.value
    finally:
        c.sock.close()


@pytest.mark.parametrize("user,password,method", CLIENT_METHODS, ids=[m for _, _, m in CLIENT_METHODS])
def test_client_auth_ok(pgrelay, user, password, method):
    relay = pgrelay()
    # psql negotiates whatever pgrelay asks for
    r = psql(relay.port, "SELECT current_user, 1", user=user, password=password)
    assert r.stdout.strip() == "app|1"  # service main logs in to the server as app
    assert raw_login(relay.port, user, password) == "app"
    assert f"login: {user}@appdb" in relay.log()


@pytest.mark.parametrize("user,password,method", CLIENT_METHODS, ids=[m for _, _, m in CLIENT_METHODS])
def test_client_auth_wrong_password_28P01(pgrelay, user, password, method):
    relay = pgrelay()
    err = raw_login_error(relay.port, user, password + "-wrong")
    assert err.sqlstate == "28P01", err.fields
    assert err.severity == "FATAL"
    assert f'password authentication failed for user "{user}"' in err.message
    # psycopg (libpq) shows the message too
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=relay.port, user=user, password="nope", dbname="appdb",
                        sslmode="disable", connect_timeout=10)
    # the failure is logged with its reason
    relay.wait_log("password authentication failed")


def test_client_auth_unknown_user_28000(pgrelay):
    relay = pgrelay()
    err = raw_login_error(relay.port, "nosuchuser", "whatever")
    assert err.sqlstate == "28000", err.fields
    r = psql(relay.port, "SELECT 1", user="nosuchuser", password="x", check=False)
    assert r.returncode != 0 and "nosuchuser" in r.stderr


def test_client_auth_unknown_database_3D000(pgrelay):
    relay = pgrelay()
    err = raw_login_error(relay.port, "app", APP_PASSWORD, database="nosuchdb")
    assert err.sqlstate == "3D000", err.fields
    assert 'database "nosuchdb" does not exist' in err.message
    r = psql(relay.port, "SELECT 1", dbname="nosuchdb", check=False)
    assert r.returncode != 0 and 'database "nosuchdb" does not exist' in r.stderr


def test_client_auth_with_stored_verifier_and_md5_hash(pgrelay, pg):
    """users[].password may be what pg_authid stores: a SCRAM verifier or an md5 hash."""
    scram = pg.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'app'")
    md5 = pg.sql("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5user'")
    assert scram.startswith("SCRAM-SHA-256$") and md5.startswith("md5")
    relay = pgrelay(users=[
        {"name": "app", "password": scram, "auth": "scram-sha-256"},
        {"name": "md5user", "password": md5, "auth": "md5"},
        {"name": "gen", "password": pgwire.scram_verifier("gen-pw")},
    ])
    assert raw_login(relay.port, "app", APP_PASSWORD) == "app"
    assert raw_login(relay.port, "md5user", MD5_PASSWORD) == "app"
    assert raw_login(relay.port, "gen", "gen-pw") == "app"
    assert psql(relay.port, "SELECT 7", user="gen", password="gen-pw").stdout.strip() == "7"
    assert raw_login_error(relay.port, "app", "bad").sqlstate == "28P01"
    assert raw_login_error(relay.port, "md5user", "bad").sqlstate == "28P01"


@pytest.mark.parametrize("level", ["info", "debug"])
def test_no_secret_in_log(pgrelay, pg, level):
    client_pw, wrong_pw, server_pw = "Zq9-client-pw-4417", "Wx7-wrong-pw-9981", "Srv-pw-55123"
    pg.sql("DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'secretive') THEN "
           "CREATE ROLE secretive LOGIN PASSWORD 'Srv-pw-55123'; END IF; END $$")
    pg.sql("GRANT CONNECT ON DATABASE appdb TO secretive")
    relay = pgrelay(log={"level": level},
                    users=[{"name": "app", "password": client_pw},
                           {"name": "u2", "password": client_pw, "auth": "password"},
                           {"name": "u3", "password": client_pw, "auth": "md5"}],
                    services={"main": {"primary": {"user": "secretive", "password": server_pw}}})
    assert raw_login(relay.port, "app", client_pw) == "secretive"
    assert raw_login(relay.port, "u2", client_pw) == "secretive"
    assert raw_login(relay.port, "u3", client_pw) == "secretive"
    for user in ("app", "u2", "u3"):
        assert raw_login_error(relay.port, user, wrong_pw).sqlstate == "28P01"
    relay.wait_log("password authentication failed", count=3)
    log = relay.log()
    for secret in (client_pw, wrong_pw, server_pw):
        assert secret not in log, f"{secret!r} appears in the log"


# ------------------------------------------------------------------ server side


def test_server_auth_scram(pgrelay, pg):
    assert pg.sql("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'app'") == "SCRAM-SHA-256$"
    relay = pgrelay()
    assert relay.psql("SELECT current_user").stdout.strip() == "app"


@pytest.mark.parametrize("stored", ["plain", "md5-hash"])
def test_server_auth_md5(pgrelay, pg, stored):
    assert pg.sql("SELECT left(rolpassword, 3) FROM pg_authid WHERE rolname = 'md5user'") == "md5"
    password = MD5_PASSWORD if stored == "plain" else pgwire.md5_hash(MD5_PASSWORD, "md5user")
    relay = pgrelay(services={"main": {"primary": {"user": "md5user", "password": password}}})
    assert relay.psql("SELECT current_user").stdout.strip() == "md5user"
    with relay.connect() as conn:
        assert conn.execute("SELECT current_user, %s::int", (5,)).fetchone() == ("md5user", 5)


def test_server_auth_cleartext(pgrelay):
    relay = pgrelay(services={"main": {"primary": {"user": "pwuser", "password": PW_PASSWORD}}})
    assert relay.psql("SELECT current_user").stdout.strip() == "pwuser"


def test_server_auth_passthrough_client_credentials(pgrelay, pg):
    """A service without primary.user logs in as the client, with the client's (plain) password."""
    relay = pgrelay(
        databases={"ptdb": {"service": "pt", "pool_mode": "transaction"}},
        services={"pt": {"primary": {"host": "127.0.0.1", "port": pg.port, "dbname": "appdb"}}},
    )
    for user, password in (("md5user", MD5_PASSWORD), ("pwuser", PW_PASSWORD), ("app", APP_PASSWORD)):
        r = psql(relay.port, "SELECT current_user", user=user, password=password, dbname="ptdb")
        assert r.stdout.strip() == user


def test_server_auth_failure_reported_to_client(pgrelay):
    relay = pgrelay(services={"main": {"primary": {"password": "not-the-password"}}})
    t0 = time.monotonic()
    with pytest.raises(psycopg.Error) as ei:
        with relay.connect() as conn:
            conn.execute("SELECT 1")
    assert time.monotonic() - t0 < 10
    assert "could not connect" in str(ei.value) or "password authentication failed" in str(ei.value), ei.value
    relay.wait_log("login to 127.0.0.1")
    # fixing the password with a reload makes the pool usable
    cfg = relay.cfg
    cfg["services"]["main"]["primary"]["password"] = APP_PASSWORD
    relay.reload(cfg)
    assert relay.psql("SELECT 'fixed'").stdout.strip() == "fixed"
