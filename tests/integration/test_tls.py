"""TLS on both sides, with a throw-away CA made by the openssl CLI: clients with sslmode=require and
verify-full, refusal of plain clients under mode: require, server TLS to a PostgreSQL with ssl=on
(verify-full against the CA, and a wrong CA refused), and cleartext passwords only over TLS."""
import os
import pwd
import shutil
import socket
import ssl
import struct
import subprocess

import psycopg
import pytest

from conftest import APP_PASSWORD, PW_PASSWORD, psql, wait_for
from pgwire import RawConn, query_message


def run(*cmd, cwd):
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, timeout=60)


def make_cert(folder, name, ca_name):
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
        "-subj", "/CN=localhost", cwd=folder)
    with open(os.path.join(folder, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("openssl", "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca_name}.pem", "-CAkey", f"{ca_name}.key",
        "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=folder)


@pytest.fixture(scope="module")
def certs(workdir):
    folder = os.path.join(workdir, "tls")
    os.makedirs(folder, exist_ok=True)
    for ca in ("ca", "otherca"):
        run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
            "-days", "2", "-subj", f"/CN=pgrelay test {ca}", cwd=folder)
    make_cert(folder, "relay", "ca")
    make_cert(folder, "pg", "ca")
    for f in os.listdir(folder):
        os.chmod(os.path.join(folder, f), 0o644)
    return {k: os.path.join(folder, v) for k, v in
            {"ca": "ca.pem", "otherca": "otherca.pem", "cert": "relay.pem", "key": "relay.key",
             "pgcert": "pg.pem", "pgkey": "pg.key"}.items()}


@pytest.fixture(scope="module")
def pg_ssl(pg, certs):
    """Turns ssl on in the session's PostgreSQL for this module, off again afterwards."""
    pw = pwd.getpwnam("postgres")
    for src, dst in ((certs["pgcert"], "server.crt"), (certs["pgkey"], "server.key")):
        path = os.path.join(pg.data, dst)
        shutil.copy(src, path)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, 0o600)
    pg.sql("ALTER SYSTEM SET ssl = on")
    pg.sql("SELECT pg_reload_conf()")
    yield pg
    pg.sql("ALTER SYSTEM RESET ssl")
    pg.sql("SELECT pg_reload_conf()")


def tls_listen(certs, mode="require", **extra):
    return {"tls": {"mode": mode, "cert": certs["cert"], "key": certs["key"], **extra}}


def test_client_verify_full(pgrelay, certs):
    relay = pgrelay(listen=tls_listen(certs))
    r = psql(relay.port, "SELECT 'tls ok'", host="localhost",
             conninfo="sslmode=verify-full sslrootcert=" + certs["ca"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "tls ok"
    # The Terminate that arrives together with the TLS close_notify is still read.
    relay.wait_log("client sent Terminate")
    assert "connection closed by peer" not in relay.log()
    with psycopg.connect(host="localhost", port=relay.port, user="app", password=APP_PASSWORD, dbname="appdb",
                         sslmode="verify-full", sslrootcert=certs["ca"], autocommit=True) as c:
        assert c.pgconn.ssl_in_use
        rows = c.execute("SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g").fetchall()
        assert len(rows) == 50000 and rows[-1][0] == 50000


def test_client_wrong_ca_is_rejected_by_the_client(pgrelay, certs):
    relay = pgrelay(listen=tls_listen(certs))
    r = psql(relay.port, "SELECT 1", host="localhost", conninfo="sslmode=verify-full sslrootcert=" + certs["otherca"], check=False)
    assert r.returncode != 0
    assert "certificate verify failed" in r.stderr


def test_require_refuses_plain_clients(pgrelay, certs):
    relay = pgrelay(listen=tls_listen(certs))
    r = psql(relay.port, "SELECT 1", conninfo="sslmode=disable", check=False)
    assert r.returncode != 0
    assert "pgrelay accepts only TLS connections" in r.stderr
    relay.wait_log("refusing unencrypted connection")


def test_prefer_accepts_both(pgrelay, certs):
    relay = pgrelay(listen=tls_listen(certs, mode="prefer"))
    for mode, want in (("disable", "f"), ("require", "t")):
        with psycopg.connect(host="127.0.0.1", port=relay.port, user="app", password=APP_PASSWORD, dbname="appdb",
                             sslmode=mode, autocommit=True) as c:
            assert c.pgconn.ssl_in_use == (want == "t")
            assert c.execute("SELECT 1").fetchone()[0] == 1


def test_disabled_listener_answers_n(pgrelay):
    relay = pgrelay()
    r = psql(relay.port, "SELECT 1", conninfo="sslmode=require", check=False)
    assert r.returncode != 0
    assert "does not support SSL" in r.stderr or "SSL" in r.stderr


def test_server_require_without_server_tls_fails(pgrelay, pg):
    relay = pgrelay(services={"main": {"tls": {"mode": "require"}}}, health={"fail_after": 1})
    with pytest.raises(psycopg.OperationalError) as e:
        relay.connect()
    assert "server does not accept TLS" in str(e.value)
    # The health check uses the same TLS mode (libpq sslmode=require).
    relay.wait_log(f"main primary 127.0.0.1:{pg.port} is down after 1 failed check: ")
    assert "server does not support SSL" in relay.log()


def health_ssl(pg):
    """ssl of the pgrelay-health connections on pg, e.g. 'true'."""
    return pg.sql("SELECT string_agg(s.ssl::text, ',') FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                  "WHERE a.application_name = 'pgrelay-health'")


def server_ssl_in_use(relay):
    with relay.connect() as c:
        return c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0]


def test_server_tls_verify_full(pgrelay, pg_ssl, certs):
    relay = pgrelay(services={"main": {"tls": {"mode": "verify-full", "ca": certs["ca"]},
                                       "primary": {"host": "localhost"}}})
    assert server_ssl_in_use(relay) is True
    # The health check too: verify-full with sslrootcert = the service's ca, host name checked.
    relay.wait_log(f"main primary localhost:{pg_ssl.port} is up (first check")
    wait_for(lambda: health_ssl(pg_ssl) == "true", 10, what="the health connection over TLS")


def test_server_tls_prefer_uses_tls_and_disable_does_not(pgrelay, pg_ssl):
    assert server_ssl_in_use(pgrelay()) is True  # prefer is the default
    assert server_ssl_in_use(pgrelay(services={"main": {"tls": {"mode": "disable"}}})) is False


def test_server_tls_wrong_ca_refused(pgrelay, pg_ssl, certs):
    relay = pgrelay(services={"main": {"tls": {"mode": "verify-full", "ca": certs["otherca"]},
                                       "primary": {"host": "localhost"}}}, health={"fail_after": 1})
    with pytest.raises(psycopg.OperationalError) as e:
        relay.connect()
    assert "certificate verify failed" in str(e.value)
    relay.wait_log(f"main primary localhost:{pg_ssl.port} is down after 1 failed check: ")
    assert "certificate verify failed" in relay.log().split("is down after 1 failed check: ")[1].splitlines()[0]


def test_cleartext_password_needs_tls(pgrelay, certs):
    relay = pgrelay(listen=tls_listen(certs, mode="prefer"), proxy={"allow_cleartext_without_tls": False})
    r = psql(relay.port, "SELECT 1", user="pwuser", password=PW_PASSWORD, conninfo="sslmode=disable", check=False)
    assert r.returncode != 0
    assert "cleartext password" in r.stderr
    r = psql(relay.port, "SELECT 'over tls'", user="pwuser", password=PW_PASSWORD, conninfo="sslmode=require")
    assert r.returncode == 0, r.stderr
    allowed = pgrelay()  # the harness's default allows it
    r = psql(allowed.port, "SELECT 'allowed'", user="pwuser", password=PW_PASSWORD, conninfo="sslmode=disable")
    assert r.returncode == 0, r.stderr


def test_server_cleartext_over_plain_refused(pgrelay, pg):
    """pwuser logs in to PostgreSQL with cleartext (pg_hba 'password'): refused without TLS."""
    relay = pgrelay(services={"main": {"primary": {"user": "pwuser", "password": PW_PASSWORD},
                                       "tls": {"mode": "disable"}}},
                    proxy={"allow_cleartext_without_tls": False})
    with pytest.raises(psycopg.OperationalError) as e:
        relay.connect()
    assert "cleartext password" in str(e.value)


class TlsWire(RawConn):
    """A raw protocol client over TLS whose TCP writes are under the test's control (ssl.MemoryBIO):
    bytes the TLS layer produces are sent only at the next send(), all in one sendall()."""

    def __init__(self, port, cafile):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = bytearray()
        self.params, self.notices, self.parameter_changes, self.backend_key = {}, [], [], None
        self.sock.sendall(struct.pack("!II", 8, 80877103))  # SSLRequest
        assert self.sock.recv(1) == b"S"
        ctx = ssl.create_default_context(cafile=cafile)
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname="localhost")
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self.sock.sendall(self.outgoing.read())
                data = self.sock.recv(65536)
                assert data, "EOF during the TLS handshake"
                self.incoming.write(data)
        # The handshake's last flight (TLS 1.3: the client Finished) is still in self.outgoing:
        # it leaves with the first send(), in the same TCP write as the first records.

    def queue(self, data):
        """One TLS record, sent with the next send()."""
        self.tls.write(data)

    def send(self, data=b""):
        if data:
            self.tls.write(data)
        self.sock.sendall(self.outgoing.read())

    def recv_some(self, n=65536):
        while True:
            try:
                data = self.tls.read(n)
                if data:
                    self.buf += data
                return data
            except ssl.SSLWantReadError:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return b""
                self.incoming.write(chunk)


def test_client_records_that_arrive_with_the_handshake_or_in_a_burst(pgrelay, certs):
    """OpenSSL reads ahead: records that came in the same TCP read as the end of the handshake, or
    more than the read buffer holds, are in OpenSSL and not signalled by the socket again. They
    must still be read (a client that sends its startup packet with its Finished, a pipelining
    client), not wait forever."""
    relay = pgrelay(listen=tls_listen(certs), proxy={"buffer_size": "4kB"})
    w = TlsWire(relay.port, certs["ca"])
    assert w.startup("app", "appdb", APP_PASSWORD) == "I"  # startup packet sent with the Finished
    n = 300  # one TLS record each, ~13 kB of queries in one TCP write: over 3 read buffers
    for i in range(n):
        w.queue(query_message(f"SELECT {i} AS n"))
    w.send()
    seen = []
    for _ in range(n):
        results, errors, status = w.read_results()
        assert not errors and status == "I"
        seen.append(int(results[0][1][0][0]))
    assert seen == list(range(n))
    w.close()


def tls_handshake(port, **ctx_settings):
    """SSLRequest, then a TLS handshake with a client context restricted as given; returns the
    negotiated (version, cipher) or raises ssl.SSLError."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in ctx_settings.items():
        if k == "ciphers":
            ctx.set_ciphers(v)
        else:
            setattr(ctx, k, v)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(struct.pack("!II", 8, 80877103))
        assert s.recv(1) == b"S"
        t = ctx.wrap_socket(s)
        out = (t.version(), t.cipher()[0])
        t.close()
        return out
    finally:
        s.close()


def test_client_tls_minimum_version_and_ciphers(pgrelay, certs):
    """TLS 1.2 at least; with TLS 1.2 only forward-secret AEAD suites (the documented list)."""
    relay = pgrelay(listen=tls_listen(certs))
    version, cipher = tls_handshake(relay.port, maximum_version=ssl.TLSVersion.TLSv1_2)
    assert version == "TLSv1.2" and ("GCM" in cipher or "CHACHA20" in cipher), cipher
    assert tls_handshake(relay.port)[0] == "TLSv1.3"
    # CBC with static RSA key exchange, and CBC with ECDHE: refused
    for weak in ("AES256-SHA", "AES128-SHA256", "ECDHE-RSA-AES256-SHA"):
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls_handshake(relay.port, maximum_version=ssl.TLSVersion.TLSv1_2, ciphers=weak)
    # still fine for libpq
    assert psql(relay.port, "SELECT 'ok'", conninfo="sslmode=require").stdout.strip() == "ok"
