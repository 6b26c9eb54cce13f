"""The client side of the startup handshake: SSLRequest / GSSENCRequest answered 'N', protocol
versions other than 3.x refused, garbage never hangs, max_client_conn."""
import socket
import struct
import time

import psycopg
import pytest

import pgwire
from conftest import PW_PASSWORD, psql


def test_sslmode_prefer_works_without_tls(pgrelay):
    relay = pgrelay()
    r = psql(relay.port, "SELECT 'plain'", conninfo="sslmode=prefer")
    assert r.stdout.strip() == "plain"


def test_sslmode_require_fails_clearly(pgrelay):
    relay = pgrelay()
    t0 = time.monotonic()
    r = psql(relay.port, "SELECT 1", conninfo="sslmode=require", check=False)
    assert r.returncode != 0
    assert "server does not support SSL" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 10


def test_ssl_request_answered_N_then_startup(pgrelay):
    relay = pgrelay()
    for code in (pgwire.SSL_REQUEST_CODE, pgwire.GSSENC_REQUEST_CODE):
        c = pgwire.RawConn("127.0.0.1", relay.port)
        c.send(struct.pack("!II", 8, code))
        assert c.read_byte() == b"N"
        c.startup("pwuser", "appdb", PW_PASSWORD)
        results, errs, _ = c.simple_query("SELECT 'after N'")
        assert not errs and results[0][1] == [["after N"]]
        c.close()


def test_gssenc_then_ssl_request_then_startup(pgrelay):
    """libpq with gssencmode=prefer sends GSSENCRequest, then SSLRequest, on one connection."""
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port)
    c.send(struct.pack("!II", 8, pgwire.GSSENC_REQUEST_CODE))
    assert c.read_byte() == b"N"
    c.send(struct.pack("!II", 8, pgwire.SSL_REQUEST_CODE))
    assert c.read_byte() == b"N"
    c.startup("pwuser", "appdb", PW_PASSWORD)
    c.close()


@pytest.mark.parametrize("version", [(2, 0), (1, 0), (4, 0)], ids=["2.0", "1.0", "4.0"])
def test_unsupported_protocol_version_gets_error(pgrelay, version):
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
    c.send(pgwire.startup_packet({"user": "app", "database": "appdb"}, version=(version[0] << 16) | version[1]))
    t, payload = c.read_message()
    assert t == "E", (t, payload)
    fields = pgwire.parse_fields(payload)
    assert fields["S"] == "FATAL"
    assert f"{version[0]}.{version[1]}" in fields["M"] and "3.0" in fields["M"], fields
    assert pgwire.wait_closed(c.sock, 5)
    c.sock.close()


def test_protocol_3_minor_version_negotiated(pgrelay):
    """3.x with x > 0 (and unknown _pq_ options) gets NegotiateProtocolVersion and works as 3.0."""
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port)
    c.send(pgwire.startup_packet({"user": "pwuser", "database": "appdb", "_pq_.future_option": "on"},
                                 version=(3 << 16) | 7))
    t, payload = c.read_message()
    assert t == "v", (t, payload)
    minor, n = struct.unpack_from("!II", payload)
    assert minor == 0 and n == 1 and b"_pq_.future_option" in payload
    t, payload = c.read_message()
    assert t == "R" and struct.unpack_from("!I", payload)[0] == 3  # cleartext password request
    c.send(pgwire.message("p", PW_PASSWORD.encode() + b"\0"))
    while True:
        t, payload = c.read_message()
        assert t != "E", pgwire.parse_fields(payload)
        if t == "Z":
            break
    results, errs, _ = c.simple_query("SELECT 1")
    assert not errs
    c.close()


@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",   # length field 0x47455420: far too long
    b"\x00\x00\x00\x04\x00\x03\x00\x00",            # length 4 < 8
    b"\x00\x00\x00\x08\x12\x34\x56\x78",            # unknown request code
    b"\x00\x00\x00\x0f\x00\x03\x00\x00user\x00x\x00",  # parameter list not terminated
], ids=["http", "short-length", "bad-code", "unterminated"])
def test_garbage_startup_gets_error_or_close_never_hangs(pgrelay, garbage):
    relay = pgrelay()
    s = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    s.sendall(garbage)
    t0 = time.monotonic()
    data = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pytest.fail(f"pgrelay neither answered nor closed within 5 s; got {data!r}")
    except ConnectionResetError:
        pass
    finally:
        s.close()
    assert time.monotonic() - t0 < 5
    if data:
        assert data[:1] == b"E", data
    # and pgrelay is still fine
    assert psql(relay.port, "SELECT 'alive'").stdout.strip() == "alive"


def test_invalid_message_type_after_login(pgrelay):
    relay = pgrelay()
    c = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
    c.startup("pwuser", "appdb", PW_PASSWORD)
    c.send(pgwire.message("z", b"junk"))
    t, payload = c.read_message()
    assert t == "E" and pgwire.parse_fields(payload)["C"] == "08P01"
    assert pgwire.wait_closed(c.sock, 5)
    c.sock.close()
    assert psql(relay.port, "SELECT 'alive'").stdout.strip() == "alive"


def test_max_client_conn_refuses_with_53300(pgrelay):
    relay = pgrelay(listen={"max_client_conn": 2})
    a = relay.connect()
    b = relay.connect()
    try:
        # a third connection is refused at once, before it says anything
        s = pgwire.RawConn("127.0.0.1", relay.port, timeout=5)
        t, payload = s.read_message()
        assert t == "E"
        fields = pgwire.parse_fields(payload)
        assert fields["C"] == "53300", fields
        s.sock.close()
        with pytest.raises(psycopg.OperationalError, match="too many clients"):
            relay.connect()
        assert a.execute("SELECT 1").fetchone() == (1,)
    finally:
        a.close()
        b.close()
    # with the two gone, a new client gets in
    def can_connect():
        try:
            with relay.connect() as c:
                return c.execute("SELECT 2").fetchone() == (2,)
        except psycopg.OperationalError:
            return False
    from conftest import wait_for
    wait_for(can_connect, 5, interval=0.1, what="a client slot to become free")
