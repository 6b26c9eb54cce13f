"""pgwire — a tiny PostgreSQL v3 frontend written against the protocol, for tests that need to see
exact bytes: SQLSTATEs of login errors, SSL/GSSENC negotiation, unsupported protocol versions,
garbage, FunctionCall, and reading a large result slowly at the socket level.

Authentication: trust, cleartext, md5 and SCRAM-SHA-256 (no channel binding).
"""
import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_3_0 = 3 << 16
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


class PgError(Exception):
    """An ErrorResponse: fields by their one-letter codes (S, C, M, ...)."""

    def __init__(self, fields):
        self.fields = fields
        self.sqlstate = fields.get("C")
        self.severity = fields.get("S")
        self.message = fields.get("M")
        super().__init__(f"{self.severity} {self.sqlstate}: {self.message}")


class ConnectionClosed(Exception):
    pass


def parse_fields(payload):
    fields = {}
    for part in payload.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def message(type_char, payload=b""):
    return type_char.encode() + struct.pack("!I", len(payload) + 4) + payload


def startup_packet(params, version=PROTOCOL_3_0):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def query_message(sql):
    return message("Q", sql.encode() + b"\0")


class RawConn:
    def __init__(self, host, port, timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = bytearray()
        self.params = {}
        self.backend_key = None
        self.notices = []
        self.parameter_changes = []

    # -- bytes --
    def send(self, data):
        self.sock.sendall(data)

    def recv_some(self, n=65536):
        data = self.sock.recv(n)
        if data:
            self.buf += data
        return data

    def read_byte(self):
        """One raw byte (the answer to SSLRequest / GSSENCRequest)."""
        while not self.buf:
            if not self.recv_some(1):
                raise ConnectionClosed("EOF while waiting for one byte")
        b = self.buf[:1]
        del self.buf[:1]
        return bytes(b)

    def read_message(self):
        """(type, payload); raises ConnectionClosed at EOF."""
        while True:
            if len(self.buf) >= 5:
                (length,) = struct.unpack_from("!I", self.buf, 1)
                if length < 4:
                    raise AssertionError(f"invalid message length {length}")
                if len(self.buf) >= 1 + length:
                    t = chr(self.buf[0])
                    payload = bytes(self.buf[5:1 + length])
                    del self.buf[:1 + length]
                    return t, payload
            if not self.recv_some():
                raise ConnectionClosed(f"EOF with {len(self.buf)} unparsed bytes")

    def read_until_eof(self, timeout):
        """Everything until the peer closes; raises socket.timeout if it does not within timeout."""
        self.sock.settimeout(timeout)
        while self.recv_some():
            pass
        data = bytes(self.buf)
        self.buf.clear()
        return data

    def close(self):
        try:
            self.sock.sendall(message("X"))
        except OSError:
            pass
        self.sock.close()

    # -- login --
    def startup(self, user, database, password=None, params=None, version=PROTOCOL_3_0):
        p = {"user": user, "database": database}
        p.update(params or {})
        self.send(startup_packet(p, version))
        scram = None
        while True:
            t, payload = self.read_message()
            if t == "E":
                raise PgError(parse_fields(payload))
            if t == "R":
                (code,) = struct.unpack_from("!I", payload)
                if code == 0:
                    continue
                if code == 3:  # cleartext
                    self.send(message("p", password.encode() + b"\0"))
                elif code == 5:  # md5
                    salt = payload[4:8]
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(message("p", b"md5" + outer.encode() + b"\0"))
                elif code == 10:  # SASL
                    mechs = [m.decode() for m in payload[4:].split(b"\0") if m]
                    assert "SCRAM-SHA-256" in mechs, mechs
                    scram = _ScramClient(password)
                    first = scram.client_first().encode()
                    self.send(message("p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
                elif code == 11:
                    self.send(message("p", scram.client_final(payload[4:].decode()).encode()))
                elif code == 12:
                    scram.verify_server_final(payload[4:].decode())
                else:
                    raise AssertionError(f"unsupported auth request {code}")
            elif t == "S":
                k, v = payload.split(b"\0")[:2]
                self.params[k.decode()] = v.decode()
            elif t == "K":
                self.backend_key = struct.unpack("!II", payload)
            elif t == "N":
                self.notices.append(parse_fields(payload))
            elif t == "v":
                continue  # NegotiateProtocolVersion
            elif t == "Z":
                return payload.decode()
            else:
                raise AssertionError(f"unexpected message {t!r} during login")

    # -- queries --
    def simple_query(self, sql):
        """Runs sql with the simple protocol. Returns (results, errors, tx_status): results is a list
        of (command_tag, rows) with rows as lists of str/None; errors a list of PgError."""
        self.send(query_message(sql))
        return self.read_results()

    def read_results(self):
        results, errors, rows = [], [], []
        while True:
            t, payload = self.read_message()
            if t == "T":
                rows = []
            elif t == "D":
                rows.append(_parse_datarow(payload))
            elif t == "C":
                results.append((payload.rstrip(b"\0").decode(), rows))
                rows = []
            elif t == "I":
                results.append(("", []))
            elif t == "E":
                errors.append(PgError(parse_fields(payload)))
            elif t == "N":
                self.notices.append(parse_fields(payload))
            elif t == "S":
                k, v = payload.split(b"\0")[:2]
                self.parameter_changes.append((k.decode(), v.decode()))
            elif t == "V":
                (n,) = struct.unpack_from("!i", payload)
                results.append(("FunctionCall", [[None if n < 0 else payload[4:4 + n]]]))
            elif t == "Z":
                return results, errors, payload.decode()
            elif t in ("1", "2", "3", "n", "t", "s"):
                continue
            else:
                raise AssertionError(f"unexpected message {t!r}")


def _parse_datarow(payload):
    (n,) = struct.unpack_from("!H", payload)
    pos, out = 2, []
    for _ in range(n):
        (ln,) = struct.unpack_from("!i", payload, pos)
        pos += 4
        if ln < 0:
            out.append(None)
        else:
            out.append(payload[pos:pos + ln].decode())
            pos += ln
    return out


class _ScramClient:
    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"

    def client_first(self):
        return "n,," + self.first_bare

    def client_final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        assert attrs["r"].startswith(self.nonce)
        salt = base64.b64decode(attrs["s"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, int(attrs["i"]))
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        self.auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        sig = hmac.new(stored_key, self.auth_message, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        return f"{without_proof},p={base64.b64encode(proof).decode()}"

    def verify_server_final(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.split(","))
        want = hmac.new(self.server_key, self.auth_message, "sha256").digest()
        assert base64.b64decode(attrs["v"]) == want, "server SCRAM signature mismatch"


def scram_verifier(password, salt=None, iterations=4096):
    """A SCRAM-SHA-256 verifier as pg_authid stores it."""
    salt = salt or os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored)}:{b64(server)}"


def md5_hash(password, user):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def wait_closed(sock, timeout):
    """True if the peer closes sock within timeout (data read meanwhile is discarded)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        sock.settimeout(left)
        try:
            if not sock.recv(65536):
                return True
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
