"""Authentication on both sides of pgrelay.

Client side (pgrelay checks the client against `users`): SCRAM-SHA-256 (default), md5, cleartext;
wrong password -> 28P01, unknown user -> the same SCRAM exchange (a mock one) and the same 28P01,
unknown database -> 3D000. Client-chosen names are escaped in the text log.
Server side (pgrelay logs in to PostgreSQL): SCRAM (role app), md5 (role md5user, pg_hba md5),
cleartext (role pwuser, pg_hba password), and pass-through of the client's own credentials.
"""
import base64
import os
import re
import signal
import struct
import subprocess
import time

import psycopg
import pytest

import pgwire
from conftest import APP_PASSWORD, MD5_PASSWORD, PW_PASSWORD, pgrelay_bin, psql

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


def scram_first_exchange(port, user, database="appdb"):
    """Logs in as user up to the server-first-message; returns (mechanisms, salt, iterations, conn)."""
    c = pgwire.RawConn("127.0.0.1", port)
    c.send(pgwire.startup_packet({"user": user, "database": database}))
    t, payload = c.read_message()
    assert t == "R", (t, payload)
    (code,) = struct.unpack_from("!I", payload)
    assert code == 10, f"expected AuthenticationSASL, got code {code}"
    mechs = [m.decode() for m in payload[4:].split(b"\0") if m]
    scram = pgwire._ScramClient("not-the-password")
    first = scram.client_first().encode()
    c.send(pgwire.message("p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
    t, payload = c.read_message()
    assert t == "R" and struct.unpack_from("!I", payload)[0] == 11, (t, payload)
    server_first = payload[4:].decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    c.scram, c.server_first = scram, server_first
    return mechs, attrs["s"], int(attrs["i"]), c


def finish_wrong_proof(c):
    c.send(pgwire.message("p", c.scram.client_final(c.server_first).encode()))
    t, payload = c.read_message()
    assert t == "E", (t, payload)
    assert pgwire.wait_closed(c.sock, 5)
    c.sock.close()
    return pgwire.PgError(pgwire.parse_fields(payload))


def test_client_auth_unknown_user_mock_exchange(pgrelay):
    """An unknown user gets the SCRAM exchange a known one gets (same mechanism, a salt of the same
    length that stays the same from one attempt to the next, the same iteration count) and the same
    28P01 error: probing cannot tell which user names exist."""
    relay = pgrelay()
    known = [scram_first_exchange(relay.port, "app") for _ in range(2)]
    unknown = [scram_first_exchange(relay.port, "nosuchuser") for _ in range(2)]
    other = scram_first_exchange(relay.port, "nosuchuser2")
    (km, ks, ki, _), (_, ks2, _, _) = known
    (um, us, ui, _), (_, us2, _, _) = unknown
    assert um == km == ["SCRAM-SHA-256"]
    assert ui == ki == 4096
    assert len(base64.b64decode(us)) == len(base64.b64decode(ks)) == 16
    assert us == us2 and ks == ks2, "the salt of a user must not change between attempts"
    assert other[1] != us, "each unknown user has a salt of its own"
    errors = {}
    for name, (_, _, _, c) in (("app", known[0]), ("nosuchuser", unknown[0])):
        e = finish_wrong_proof(c)
        errors[name] = e
        assert e.sqlstate == "28P01", e.fields
        assert e.message == f'password authentication failed for user "{name}"'
    for _, _, _, c in (known[1], unknown[1], other):
        c.sock.close()
    assert errors["app"].severity == errors["nosuchuser"].severity == "FATAL"
    # libpq sees the same error as for a wrong password
    r = psql(relay.port, "SELECT 1", user="nosuchuser", password="x", check=False)
    assert r.returncode != 0 and 'password authentication failed for user "nosuchuser"' in r.stderr
    # the log says why (for the administrator)
    relay.wait_log('password authentication failed for user "nosuchuser"')
    assert "no such user" in relay.log()


def test_client_names_escaped_in_text_log(pgrelay):
    """user, database and application_name are the client's: a newline in them must not start a
    forged log line, nor may other control characters reach the log."""
    relay = pgrelay()
    forged = "2030-01-01 00:00:00.000 UTC [1] LOG C-999: login: admin@appdb from 10.0.0.1"
    for params in ({"user": "evil\n" + forged, "database": "appdb"},
                   {"user": "app", "database": "nodb\r\n" + forged + "\x1b[2J"},
                   {"user": "app", "database": "nodb\n" + forged, "application_name": "x\n" + forged}):
        c = pgwire.RawConn("127.0.0.1", relay.port)
        try:
            if params["user"] == "app":
                with pytest.raises(pgwire.PgError):
                    c.startup(params["user"], params["database"], APP_PASSWORD,
                              params={k: v for k, v in params.items() if k not in ("user", "database")})
            else:
                with pytest.raises(pgwire.PgError):
                    c.startup(params["user"], params["database"], "wrong")
        finally:
            c.sock.close()
    relay.wait_log("password authentication failed for user")
    relay.wait_log("login for unknown database", count=2)
    lines = relay.log().splitlines()
    assert not [ln for ln in lines if ln.startswith("2030-01-01")], "a client forged a log line"
    assert not [ln for ln in lines if "\x1b" in ln or "\r" in ln]
    assert any('evil\\n2030-01-01' in ln for ln in lines), "the newline is shown escaped"
    assert any('\\x1b[2J' in ln for ln in lines)


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


# ------------------------------------------------------------------ hostile servers


class FakeServer:
    """A PostgreSQL server that misbehaves during authentication. Answers 'N' to SSLRequest; refuses
    pgrelay's libpq connections (health checks, catalog) with a FATAL; for pgrelay's own logins
    runs `script`: one of
      ok_after_first  AuthenticationSASL, then AuthenticationOk instead of the server-first-message
      ok_after_final  a real server-first-message, then AuthenticationOk instead of SASLFinal
      iterations      a server-first-message asking for 10 million PBKDF2 iterations
      trust           AuthenticationOk at once
      md5             an md5 password request
    and records what pgrelay sent (self.got: message types and payloads per connection)."""

    def __init__(self, script, iterations=10_000_000):
        import socket
        import threading
        self.script, self.iterations = script, iterations
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.got = []
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def close(self):
        self.stop = True
        self.sock.close()

    def serve(self):
        import threading
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    @staticmethod
    def recv_exact(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def read_msg(self, conn):
        head = self.recv_exact(conn, 5)
        (ln,) = struct.unpack("!I", head[1:])
        return chr(head[0]), self.recv_exact(conn, ln - 4)

    @staticmethod
    def auth(code, data=b""):
        return pgwire.message("R", struct.pack("!I", code) + data)

    @staticmethod
    def ready():
        return (FakeServer.auth(0) + pgwire.message("S", b"server_version\x0015.0\x00") +
                pgwire.message("S", b"client_encoding\x00UTF8\x00") + pgwire.message("K", struct.pack("!II", 1, 2)) +
                pgwire.message("Z", b"I"))

    def handle(self, conn):
        got = []
        self.got.append(got)
        conn.settimeout(30)
        try:
            while True:
                (ln,) = struct.unpack("!I", self.recv_exact(conn, 4))
                body = self.recv_exact(conn, ln - 4)
                (code,) = struct.unpack("!I", body[:4])
                if code == pgwire.SSL_REQUEST_CODE:
                    conn.sendall(b"N")
                    continue
                break
            params = body[4:].split(b"\0")
            params = dict(zip(params[0::2], params[1::2]))
            if params.get(b"application_name", b"").startswith(b"pgrelay-"):
                conn.sendall(pgwire.message("E", b"SFATAL\x00C57P03\x00Mnot for libpq\x00\x00"))
                return
            s = self.script
            if s == "trust":
                conn.sendall(self.ready())
            elif s == "md5":
                conn.sendall(self.auth(5, b"abcd"))
            else:
                conn.sendall(self.auth(10, b"SCRAM-SHA-256\x00\x00"))
                t, p = self.read_msg(conn)
                got.append((t, p))
                if s == "ok_after_first":
                    conn.sendall(self.ready())
                else:
                    (n,) = struct.unpack_from("!I", p, len(b"SCRAM-SHA-256\0"))
                    first = p[len(b"SCRAM-SHA-256\0") + 4:].decode()
                    nonce = dict(kv.split("=", 1) for kv in first[3:].split(","))["r"]
                    salt = base64.b64encode(b"0123456789abcdef").decode()
                    it = self.iterations if s == "iterations" else 4096
                    conn.sendall(self.auth(11, f"r={nonce}srv,s={salt},i={it}".encode()))
                    if s == "ok_after_final":
                        t, p = self.read_msg(conn)
                        got.append((t, p))
                        conn.sendall(self.ready())
            while True:  # answer queries with an error, record everything
                t, p = self.read_msg(conn)
                got.append((t, p))
                if t == "X":
                    return
                if t in ("Q", "S"):
                    conn.sendall(pgwire.message("E", b"SERROR\x00CXX000\x00Mfake server\x00\x00") +
                                 pgwire.message("Z", b"I"))
        except (EOFError, OSError):
            pass
        finally:
            conn.close()


def relay_to(pgrelay, fake, **tls):
    svc = {"primary": {"host": "127.0.0.1", "port": fake.port, "dbname": "appdb", "user": "app",
                       "password": APP_PASSWORD}}
    if tls:
        svc["tls"] = tls
    return pgrelay(services={"main": svc}, health={"interval": "1h", "fail_after": 1000})


def login_fails(relay, within):
    t0 = time.monotonic()
    with pytest.raises(psycopg.Error):
        with relay.connect() as conn:
            conn.execute("SELECT 1")
    took = time.monotonic() - t0
    assert took < within, f"the failed login took {took:.1f} s"


@pytest.mark.parametrize("script", ["ok_after_first", "ok_after_final"])
def test_server_authentication_ok_in_the_middle_of_scram_refused(pgrelay, script):
    """A server that says AuthenticationOk before its SCRAM signature was verified has not proved
    it knows the password (a man in the middle would do exactly that): the login is refused."""
    fake = FakeServer(script)
    try:
        relay = relay_to(pgrelay, fake)
        login_fails(relay, 10)
        relay.wait_log("before completing the SCRAM exchange")
        assert not any(t == "Q" for conn in fake.got for t, _ in conn), "pgrelay sent a query to the server"
    finally:
        fake.close()


def test_server_scram_iteration_count_bounded(pgrelay):
    """10 million PBKDF2 iterations would block the event loop for seconds: refused at once."""
    fake = FakeServer("iterations")
    try:
        relay = relay_to(pgrelay, fake)
        login_fails(relay, 3)
        relay.wait_log("more SCRAM iterations than pgrelay allows")
    finally:
        fake.close()
    # PostgreSQL's own default (4096) is fine, and so is a count at the bound
    fake = FakeServer("ok_after_final", iterations=100000)
    try:
        relay = relay_to(pgrelay, fake)
        login_fails(relay, 10)
        relay.wait_log("before completing the SCRAM exchange")  # got past the iteration check
        assert "more SCRAM iterations" not in relay.log()
    finally:
        fake.close()


@pytest.mark.parametrize("script", ["trust", "md5"])
def test_server_require_scram(pgrelay, script):
    """services.X.tls.require_auth: scram-sha-256 makes the server prove it knows the password:
    a server that lets pgrelay in without SCRAM, or asks for md5 (and would get a hash of the
    password), is refused before anything is sent."""
    fake = FakeServer(script)
    try:
        relay = relay_to(pgrelay, fake, require_auth="scram-sha-256")
        login_fails(relay, 10)
        relay.wait_log("require_auth is scram-sha-256")
        assert not any(t == "p" for conn in fake.got for t, _ in conn), "pgrelay sent a password message"
    finally:
        fake.close()
    # without require_auth the same server is accepted (the default stays compatible)
    if script == "trust":
        fake = FakeServer(script)
        try:
            relay = relay_to(pgrelay, fake)
            with pytest.raises(psycopg.Error, match="fake server"):
                with relay.connect() as conn:
                    conn.execute("SELECT 1")
        finally:
            fake.close()


def test_server_require_scram_with_real_postgresql(pgrelay, pg):
    relay = pgrelay(services={"main": {"tls": {"require_auth": "scram-sha-256"}}})
    assert relay.psql("SELECT current_user").stdout.strip() == "app"


# ------------------------------------------------------------------ secrets in the configuration


def test_passwords_from_file_and_environment(pgrelay, monkeypatch, tmp_path):
    """password_file / password_env wherever a password goes (here: a client user, the service's
    server login); a proxy.yaml that then holds no secret may be readable."""
    monkeypatch.setenv("PGRELAY_IT_SERVER_PW", APP_PASSWORD)
    pwfile = tmp_path / "app.pw"
    pwfile.write_text("file-pw-8812\n")
    pwfile.chmod(0o600)
    relay = pgrelay(start=False)
    relay.cfg["users"] = [{"name": "app", "password_file": str(pwfile)},
                          {"name": "pwuser", "password_env": "PGRELAY_IT_SERVER_PW", "auth": "md5"}]
    primary = relay.cfg["services"]["main"]["primary"]
    del primary["password"]
    primary["password_env"] = "PGRELAY_IT_SERVER_PW"
    relay.start()
    assert raw_login(relay.port, "app", "file-pw-8812") == "app"
    assert raw_login(relay.port, "pwuser", APP_PASSWORD) == "app"
    assert raw_login_error(relay.port, "app", APP_PASSWORD).sqlstate == "28P01"
    assert "readable by group or others" not in relay.log()
    assert "file-pw-8812" not in relay.log()


def test_config_readable_by_others_with_secrets_warns(pgrelay):
    relay = pgrelay(start=False)
    relay.config_mode = 0o644
    old = os.umask(0o022)
    try:
        relay.start()  # the harness's file holds passwords inline, here created 0644
    finally:
        os.umask(old)
    # a warning at start...
    relay.wait_log("is readable by group or others (mode 0644) and holds secrets (users[0].password, ...)")
    assert re.search(r"proxy\.yaml:\d+:\d+: .*proxy\.yaml is readable by group or others", relay.log())
    # ... and at each reload
    old = os.umask(0o022)
    try:
        relay.reload(relay.cfg)
    finally:
        os.umask(old)
    relay.wait_log("is readable by group or others", count=2)
    # once only pgrelay's user can read it, no warning
    before = relay.log().count("is readable by group or others")
    relay.config_mode = 0o600
    relay.write_config()
    n = relay.log().count("configuration reloaded")
    relay.proc.send_signal(signal.SIGHUP)
    relay.wait_log("configuration reloaded", count=n + 1)
    assert relay.log().count("is readable by group or others") == before


def test_bad_password_source_is_a_config_error(pgrelay, tmp_path):
    """A missing file or variable, or two sources at once: file:line:column errors, pgrelay does
    not start (pgrelay --check says the same)."""
    relay = pgrelay(start=False)
    relay.cfg["users"] = [{"name": "app", "password_file": str(tmp_path / "missing.pw")}]
    relay.write_config()
    r = subprocess.run([pgrelay_bin(), "--check", "-c", relay.cfg_path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert re.search(r"proxy\.yaml:\d+:\d+: users\[0\]\.password_file: cannot open \".*missing\.pw\": No such file",
                     r.stderr), r.stderr
    relay.cfg["users"] = [{"name": "app", "password": "x", "password_env": "HOME"}]
    relay.write_config()
    r = subprocess.run([pgrelay_bin(), "--check", "-c", relay.cfg_path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "users[0].password, password_file and password_env exclude each other" in r.stderr, r.stderr
