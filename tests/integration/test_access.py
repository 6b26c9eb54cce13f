"""Client access rules (proxy.yaml's access section), as pg_hba.conf: first match wins on type,
database, user and address; reject and "no rule matches" refuse with 28000 in PostgreSQL's wording;
a rule's method replaces the user's auth; hostssl / hostnossl; the admin console by either name;
SIGHUP reloads the rules for new connections (a bad file keeps the old ones); bad rules are
reported as file:line:column by --check; SHOW ACCESS counts matches."""
import os
import socket
import struct
import subprocess
import urllib.request

import psycopg
import pytest

import pgwire
from conftest import APP_PASSWORD, MD5_PASSWORD, PW_PASSWORD, base_config, free_port, pgrelay_bin, psql, to_yaml
from test_tls import certs, tls_listen  # noqa: F401 (the certs fixture: a throw-away CA)

ALLOW_ALL = [{"database": "all", "user": "all", "address": "all", "method": "scram-sha-256"}]


def login_error(port, user="app", password=APP_PASSWORD, database="appdb"):
    c = pgwire.RawConn("127.0.0.1", port)
    try:
        with pytest.raises(pgwire.PgError) as ei:
            c.startup(user, database, password)
        assert pgwire.wait_closed(c.sock, 5), "pgrelay did not close the connection after refusing it"
        return ei.value
    finally:
        c.sock.close()


def login_ok(port, user="app", password=APP_PASSWORD, database="appdb", host="127.0.0.1"):
    c = pgwire.RawConn(host, port)
    try:
        c.startup(user, database, password)
        results, errs, _ = c.simple_query("SELECT 1")
        assert not errs, errs
        return results[0][1][0][0]
    finally:
        c.close()


def first_auth_request(port, user, database="appdb"):
    """The authentication pgrelay asks a client for: 3 cleartext, 5 md5, 10 SASL; or an error."""
    c = pgwire.RawConn("127.0.0.1", port)
    try:
        c.send(pgwire.startup_packet({"user": user, "database": database}))
        t, payload = c.read_message()
        if t == "E":
            raise pgwire.PgError(pgwire.parse_fields(payload))
        assert t == "R", (t, payload)
        return struct.unpack_from("!I", payload)[0]
    finally:
        c.close()


def test_reject_rule(pgrelay):
    http_port = free_port()
    relay = pgrelay(admin={"http": {"host": "127.0.0.1", "port": http_port}},
                    access=[{"database": "all", "user": "md5user", "method": "reject"}] + ALLOW_ALL)
    err = login_error(relay.port, "md5user", MD5_PASSWORD)
    assert err.sqlstate == "28000", err.fields
    assert err.severity == "FATAL"
    assert err.message == ('pgrelay access rules reject connection for host "127.0.0.1", user "md5user", '
                           'database "appdb", no encryption')
    relay.wait_log("refused: access rule 0 (line")
    # The other users fall through to the next rule.
    assert login_ok(relay.port) == "1"
    relay.wait_log("access rule 1 (line")
    # Refused before any password is asked for: a wrong one gets the same 28000.
    err = login_error(relay.port, "md5user", "whatever")
    assert err.sqlstate == "28000"
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert "\npgrelay_access_refused_total 2\n" in metrics, metrics


def test_no_rule_matches_refused(pgrelay):
    relay = pgrelay(access=[{"database": "sessdb", "user": "all", "method": "scram-sha-256"}])
    err = login_error(relay.port, database="appdb")
    assert err.sqlstate == "28000", err.fields
    assert err.message == 'no pgrelay access rule for host "127.0.0.1", user "app", database "appdb", no encryption'
    relay.wait_log('refused: no access rule matches app@appdb')
    # Nothing is asked before the refusal: not even a password from a user that does not exist.
    with pytest.raises(pgwire.PgError) as ei:
        first_auth_request(relay.port, "nosuchuser", "appdb")
    assert ei.value.sqlstate == "28000"
    assert login_ok(relay.port, database="sessdb") == "1"


def test_cidr_not_matching_localhost_is_refused(pgrelay):
    relay = pgrelay(access=[{"address": "10.0.0.0/8", "method": "scram-sha-256"},
                            {"address": "::1/128", "method": "scram-sha-256"}])
    err = login_error(relay.port)
    assert err.sqlstate == "28000"
    assert "no pgrelay access rule" in err.message


@pytest.mark.parametrize("address", ["127.0.0.0/8", "127.0.0.1", "0.0.0.0/0", "all"],
                         ids=["block", "host", "every-ipv4", "all"])
def test_cidr_matching_localhost(pgrelay, address):
    relay = pgrelay(access=[{"address": "10.0.0.0/8", "method": "reject"},
                            {"address": address, "method": "scram-sha-256"}])
    assert login_ok(relay.port) == "1"
    relay.wait_log("access rule 1 (line")


def test_ipv6_peer(pgrelay, monkeypatch):
    relay = pgrelay(listen={"host": "::1"}, start=False,
                    access=[{"address": "127.0.0.0/8", "method": "reject"},
                            {"address": "::1", "method": "md5"}])
    # The harness waits for 127.0.0.1; this pgrelay listens on ::1 only.
    connect_to = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda addr, *a, **kw: connect_to(("::1", addr[1]), *a, **kw))
    relay.start()
    monkeypatch.undo()
    assert login_ok(relay.port, host="::1") == "1"
    relay.wait_log("access rule 1 (line")
    relay.reload(text=to_yaml(dict(relay.cfg, access=[{"address": "fe80::/10", "method": "md5"}])) + "\n")
    c = pgwire.RawConn("::1", relay.port)
    try:
        with pytest.raises(pgwire.PgError) as ei:
            c.startup("app", "appdb", APP_PASSWORD)
    finally:
        c.sock.close()
    assert ei.value.message.startswith('no pgrelay access rule for host "::1"')


def test_method_overrides_user_auth(pgrelay):
    # app: scram-sha-256 by default; md5user: md5; pwuser: password (all with plain passwords).
    relay = pgrelay(access=[{"user": "app", "method": "md5"},
                            {"user": "md5user", "method": "scram-sha-256"},
                            {"user": "pwuser", "database": "sessdb", "method": "scram-sha-256"},
                            {"user": "all", "method": "password"}])
    assert first_auth_request(relay.port, "app") == 5
    assert first_auth_request(relay.port, "md5user") == 10
    assert first_auth_request(relay.port, "pwuser", "sessdb") == 10
    assert first_auth_request(relay.port, "pwuser", "appdb") == 3
    for user, password, db in (("app", APP_PASSWORD, "appdb"), ("md5user", MD5_PASSWORD, "appdb"),
                               ("pwuser", PW_PASSWORD, "sessdb"), ("pwuser", PW_PASSWORD, "appdb")):
        assert psql(relay.port, "SELECT 1", user=user, password=password, dbname=db).stdout.strip() == "1"
    # Wrong passwords still fail with 28P01 under the rule's method.
    err = login_error(relay.port, "app", "wrong")
    assert err.sqlstate == "28P01"
    # An unknown user under a password rule is asked for a password too, then refused as a wrong one.
    assert first_auth_request(relay.port, "nosuchuser", "appdb") == 3
    err = login_error(relay.port, "nosuchuser", "x")
    assert err.sqlstate == "28P01"


def test_md5_rule_with_scram_verifier_runs_scram(pgrelay):
    """As PostgreSQL: md5 for a user whose secret is a SCRAM verifier runs SCRAM; a cleartext
    password is checked against an md5 hash or a verifier."""
    users = [{"name": "app", "password": pgwire.scram_verifier(APP_PASSWORD)},
             {"name": "md5user", "password": pgwire.md5_hash(MD5_PASSWORD, "md5user"), "auth": "md5"}]
    relay = pgrelay(users=users,
                    access=[{"database": "appdb", "method": "md5"},
                            {"database": "sessdb", "method": "password"}])
    assert first_auth_request(relay.port, "app") == 10
    assert login_ok(relay.port, "app") == "1"
    assert login_ok(relay.port, "app", database="sessdb") == "1"
    assert login_ok(relay.port, "md5user", MD5_PASSWORD, database="sessdb") == "1"
    assert login_error(relay.port, "md5user", "wrong", database="sessdb").sqlstate == "28P01"
    assert login_error(relay.port, "app", "wrong", database="sessdb").sqlstate == "28P01"


def test_hostssl_and_hostnossl(pgrelay, certs):  # noqa: F811
    relay = pgrelay(listen=tls_listen(certs, mode="prefer"),
                    access=[{"type": "hostssl", "user": "app", "method": "scram-sha-256"},
                            {"type": "hostnossl", "user": "md5user", "method": "md5"},
                            {"type": "hostnossl", "method": "reject"}])
    r = psql(relay.port, "SELECT 'tls'", conninfo="sslmode=require")
    assert r.stdout.strip() == "tls"
    r = psql(relay.port, "SELECT 1", conninfo="sslmode=disable", check=False)
    assert r.returncode != 0
    assert ('pgrelay access rules reject connection for host "127.0.0.1", user "app", database "appdb", '
            'no encryption') in r.stderr
    # hostnossl: md5user only without TLS; over TLS no rule matches.
    assert psql(relay.port, "SELECT 1", user="md5user", password=MD5_PASSWORD,
                conninfo="sslmode=disable").stdout.strip() == "1"
    r = psql(relay.port, "SELECT 1", user="md5user", password=MD5_PASSWORD, conninfo="sslmode=require", check=False)
    assert r.returncode != 0
    assert ('no pgrelay access rule for host "127.0.0.1", user "md5user", database "appdb", TLS encryption'
            in r.stderr)


def test_database_name_all_and_console(pgrelay):
    relay = pgrelay(admin={"users": ["md5user"]},
                    access=[{"database": "pgrelay", "user": "md5user", "method": "md5"},
                            {"database": "appdb", "user": "app", "method": "scram-sha-256"},
                            {"database": "all", "user": "app", "method": "reject"},
                            {"database": ["sessdb"], "user": "all", "method": "md5"}])
    assert login_ok(relay.port, "app") == "1"
    assert login_error(relay.port, "app", database="sessdb").sqlstate == "28000"
    assert login_error(relay.port, "app", database="pgrelay").sqlstate == "28000"
    assert login_ok(relay.port, "md5user", MD5_PASSWORD, database="sessdb") == "1"
    assert login_error(relay.port, "md5user", MD5_PASSWORD, database="appdb").sqlstate == "28000"
    # The console under either name; SHOW ACCESS lists the rules with their matches.
    for db in ("pgrelay", "pgbouncer"):
        with psycopg.connect(host="127.0.0.1", port=relay.port, user="md5user", password=MD5_PASSWORD, dbname=db,
                             sslmode="disable", autocommit=True, cursor_factory=psycopg.ClientCursor) as conn:
            rows = conn.execute("SHOW ACCESS").fetchall()
    assert [r[0] for r in rows] == [0, 1, 2, 3]
    assert rows[0][2:7] == ("host", "pgrelay", "md5user", "all", "md5")
    assert rows[2][3:7] == ("all", "app", "all", "reject")
    # matches: rule 0 both console logins, 1 app@appdb, 2 app@sessdb and app@pgrelay, 3 md5user@sessdb
    # (md5user@appdb matched none)
    assert [r[7] for r in rows] == [2, 1, 2, 1]


def test_reload_changes_rules_for_new_connections(pgrelay):
    relay = pgrelay(access=ALLOW_ALL)
    kept = relay.connect()
    assert kept.execute("SELECT 1").fetchone() == (1,)
    relay.reload(text=to_yaml(dict(relay.cfg, access=[{"user": "app", "method": "reject"}] + ALLOW_ALL)) + "\n")
    assert login_error(relay.port).sqlstate == "28000"
    assert login_ok(relay.port, "md5user", MD5_PASSWORD) == "1"
    # The connection made before the reload is untouched.
    assert kept.execute("SELECT 2").fetchone() == (2,)
    # A bad file keeps the running rules.
    bad = to_yaml(dict(relay.cfg, access=[{"address": "10.0.0.1/8", "method": "md5"}])) + "\n"
    relay.reload(text=bad, expect="reload failed")
    assert "access[0].address" in relay.log()
    assert login_error(relay.port).sqlstate == "28000"
    assert login_ok(relay.port, "md5user", MD5_PASSWORD) == "1"
    # Without the section, everyone is let in again with their own auth.
    cfg = dict(relay.cfg)
    cfg.pop("access", None)
    relay.reload(text=to_yaml(cfg) + "\n")
    assert login_ok(relay.port) == "1"
    kept.close()


def check(tmp_path, text):
    path = tmp_path / "proxy.yaml"
    path.write_text(text)
    return subprocess.run([pgrelay_bin(), "--check", "-c", str(path)], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("rule,column,message", [
    ("{ address: 10.0.0.1/8, method: md5 }", 16, 'access[0].address: "10.0.0.1/8": the address has bits set'),
    ("{ address: 300.0.0.0/8, method: md5 }", 16, 'access[0].address: "300.0.0.0/8": not an IPv4 or IPv6 address'),
    ("{ address: fe80::/200, method: md5 }", 16, "an IPv6 prefix length is at most 128"),
    ("{ method: trust }", 15, "access[0].method must be one of: scram-sha-256, md5, password, reject"),
    ("{ type: hostgssenc, method: md5 }", 13, "access[0].type must be one of: host, hostssl, hostnossl"),
    ("{ type: local, method: md5 }", 13, "local (Unix-socket clients) cannot match"),
    ("{ method: md5, adress: all }", 20, 'unknown key "adress" in access[0]'),
], ids=["host-bits", "bad-ipv4", "long-prefix", "trust", "gssenc", "local", "unknown-key"])
def test_bad_rules_file_line_column(pg, tmp_path, rule, column, message):
    base = to_yaml(base_config(pg, 6543)) + "\n"
    line = base.count("\n") + 2
    r = check(tmp_path, base + "access:\n  - " + rule + "\n")
    assert r.returncode != 0
    out = r.stderr + r.stdout
    assert f"proxy.yaml:{line}:{column}: " in out and message in out, out


def test_check_accepts_rules(pg, tmp_path):
    base = to_yaml(base_config(pg, 6543)) + "\n"
    r = check(tmp_path, base + "access:\n"
              "  - { type: hostssl, database: [appdb, sessdb], user: [app], address: 10.0.0.0/8, method: scram-sha-256 }\n"
              "  - { type: host, database: all, user: all, address: '::1', method: md5 }\n"
              "  - { database: all, user: all, address: all, method: reject }\n")
    assert r.returncode == 0, r.stderr
