#!/usr/bin/python3
"""make_corpus.py — (re)builds the seed corpora of the fuzz targets in fuzz/corpus/<target>/.

    fuzz/make_corpus.py            # static seeds only (SQL, WAL lines, RESP, YAML, admin, SCRAM, entries)
    fuzz/make_corpus.py --capture  # also real traffic: as root, starts its own PostgreSQL 15 (as the
                                   # postgres user, port 33541, under /tmp) and runs psql, pgbench,
                                   # psycopg, node-postgres and JDBC through a TCP tee on port 33542

The tee keeps each connection's two byte streams: the client's (startup packet then messages)
seeds startup and client_msgs, the server's seeds server_msgs. SCRAM messages seen in the
streams seed scram_server / scram_client (the nonces replaced by "@N@", which the targets fill
in); DataRow/RowDescription/CommandComplete runs seed cache_entry and redis_reply (as entries
and RESP bulk strings). Files are named by the SHA-1 of their content, so a rerun adds only new
ones; regress-* files (inputs that once crashed) are never removed.
"""
import argparse
import glob
import hashlib
import hmac
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
SEP = b"\n----\n"
MAX_FILE = 16 * 1024


def put(target, data, name=None):
    if isinstance(data, str):
        data = data.encode()
    data = data[:MAX_FILE]
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = name or hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def msg(t, body):
    return t.encode() + struct.pack(">I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def startup(**params):
    body = struct.pack(">I", 196608) + b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    return struct.pack(">I", len(body) + 4) + body


# ---- cache entries (src/cache_entry.h) ----
MAGIC = 0x32726770
SIGNING_KEY = b"0123456789abcdef0123456789abcdef-signing-key"  # fuzz_redis_reply.c
EKEY = b"pgrelay:e:app:0123456789abcdef0123456789abcdef"


def entry(versions, names, reply):
    out = struct.pack("<II", MAGIC, len(versions)) + b"".join(struct.pack("<Q", v) for v in versions)
    return out + struct.pack("<H", len(names)) + names + reply


def sign(e):
    tag = hmac.new(SIGNING_KEY, b"pgrelay-l2-v1\0" + EKEY + b"\0" + e, hashlib.sha256).digest()
    return tag + e


def resp_bulk(b):
    return b"$%d\r\n" % len(b) + b + b"\r\n"


def row_description(cols):
    body = struct.pack(">H", len(cols))
    for name, oid in cols:
        body += cstr(name) + struct.pack(">IhIhih", 0, 0, oid, -1, -1, 0)
    return msg("T", body)


def data_row(vals):
    body = struct.pack(">H", len(vals))
    for v in vals:
        body += struct.pack(">i", -1) if v is None else struct.pack(">I", len(v)) + v
    return msg("D", body)


def sample_replies():
    one = row_description([("id", 23), ("name", 25)]) + data_row([b"1", b"apple"]) + data_row([b"2", None]) + \
        msg("C", cstr("SELECT 2"))
    empty = row_description([("n", 20)]) + msg("C", cstr("SELECT 0"))
    execute = data_row([b"42"]) + msg("C", cstr("SELECT 1"))
    return [one, empty, execute]


def pg_query_json(sql):
    """libpg_query's JSON parse tree of sql (pg_query_parse through ctypes), or None."""
    import ctypes
    import ctypes.util

    class Result(ctypes.Structure):
        _fields_ = [("parse_tree", ctypes.c_void_p), ("stderr_buffer", ctypes.c_void_p),
                    ("error", ctypes.c_void_p)]
    lib = ctypes.CDLL(ctypes.util.find_library("pg_query") or "libpg_query.so")
    lib.pg_query_parse.restype = Result
    lib.pg_query_parse.argtypes = [ctypes.c_char_p]
    lib.pg_query_free_parse_result.argtypes = [Result]
    r = lib.pg_query_parse(sql.encode())
    tree = None if r.error else ctypes.string_at(r.parse_tree)
    lib.pg_query_free_parse_result(r)
    return tree


def static_seeds():
    names = b"app\0public\0accounts"
    for i, r in enumerate(sample_replies()):
        e = entry([7, 3], names, r)
        put("cache_entry", e)
        put("redis_reply", resp_bulk(sign(e)))
        put("redis_reply", b"*2\r\n" + resp_bulk(b"7") + b"$-1\r\n" + resp_bulk(sign(e)))
    put("cache_entry", entry([1], b"app", b""))
    for r in [b"+OK\r\n", b"-ERR wrong number of arguments\r\n", b":42\r\n", b"$-1\r\n", b"*-1\r\n",
              b"*3\r\n$2\r\n17\r\n$-1\r\n$1\r\n0\r\n",
              b"-MOVED 3999 127.0.0.1:6381\r\n", b"-ASK 3999 127.0.0.1:6381\r\n",
              b"*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:6379\r\n$40\r\n" + b"a" * 40 + b"\r\n",
              b"*2\r\n*3\r\n:0\r\n:8191\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n*3\r\n:8192\r\n:16383\r\n*2\r\n$1\r\n?\r\n:7001\r\n",
              b"*3\r\n$7\r\nmessage\r\n$15\r\npgrelay:inval:x\r\n$9\r\napp:1:2:3\r\n",
              b"%1\r\n+a\r\n:1\r\n", b"~2\r\n+a\r\n+b\r\n", b",3.14\r\n", b"#t\r\n", b"_\r\n",
              b"(12345678901234567890\r\n", b"=15\r\ntxt:Some string\r\n", b">3\r\n+message\r\n+ch\r\n+x\r\n"]:
        put("redis_reply", r)

    # SQL: migrations, driver workloads, statements from the tests
    sqls = set()
    for path in glob.glob(os.path.join(ROOT, "migrations", "*", "*.sql")) + \
            glob.glob(os.path.join(ROOT, "tests", "drivers", "*", "*.sql")):
        text = open(path, encoding="utf-8", errors="replace").read()
        for stmt in text.split(";\n"):
            if stmt.strip():
                sqls.add(stmt.strip()[:4000])
    pat = re.compile(r'"((?:SELECT|INSERT|UPDATE|DELETE|WITH|BEGIN|COMMIT|ROLLBACK|SET|RESET|SHOW|PREPARE|EXECUTE|'
                     r'DEALLOCATE|DISCARD|LISTEN|CREATE|ALTER|DROP|TRUNCATE|COPY|EXPLAIN|START|SAVEPOINT|LOCK|'
                     r'VACUUM|NOTIFY|DO|CALL|VALUES)\b[^"\\]{3,400})"', re.I)
    for path in glob.glob(os.path.join(ROOT, "tests", "unit", "test_sql*.c")) + \
            glob.glob(os.path.join(ROOT, "tests", "unit", "test_cachepolicy.c")) + \
            glob.glob(os.path.join(ROOT, "tests", "unit", "test_router.c")) + \
            glob.glob(os.path.join(ROOT, "tests", "integration", "test_*.py")):
        for m in pat.finditer(open(path, encoding="utf-8", errors="replace").read()):
            sqls.add(m.group(1))
    for s in sorted(sqls)[:400]:
        put("sqlclass", s)

    # JSON: libpg_query's trees of some of those statements, and texts for the reader's corners
    for s in sorted(sqls)[::10]:
        tree = pg_query_json(s)
        if tree:
            put("jsontree", tree)
    for j in ['{"a":[1,-0,2.5e-3,1E+9,true,false,null,{},[]],"b":"\\"\\\\\\/\\b\\f\\n\\r\\t"}',
              '["\\u0041\\u00e9\\u20ac\\ud83d\\ude00","\u00e9 raw",9223372036854775808,-99999999999999999999]',
              '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]',
              ' {"k" : "v" , "l" : [ 1 , 2 ] } \n']:
        put("jsontree", j)

    # WAL lines (test_decoding), the first line of each seed is the key column
    wal = [
        "BEGIN 1234", "COMMIT 1234",
        "table public.accounts: INSERT: id[integer]:1 name[text]:'alice' balance[numeric]:10.5",
        "table public.accounts: UPDATE: old-key: id[integer]:1 new-tuple: id[integer]:2 name[text]:'bob'",
        "table public.accounts: UPDATE: id[integer]:1 name[text]:'it''s' note[text]:unchanged-toast-datum",
        "table public.accounts: DELETE: id[integer]:7",
        "table public.accounts: DELETE: (no-tuple-data)",
        'table "My Schema"."T ""x""": INSERT: "Id"[bigint]:null',
        "table public.a, public.b, s.\"c,d\": TRUNCATE: (no-flags)",
        "message: transactional: 1 prefix: p, sz: 3 content:abc",
        "table public.t: INSERT: id[integer]:1 v[text]:'table x.y: INSERT: z'",
    ]
    put("wal_parse", "id\n" + "\n".join(wal))
    for i, line in enumerate(wal):
        put("wal_parse", ("Id\n" if i % 2 else "id\n") + line)

    # admin console commands
    for c in ["SHOW POOLS;", "show clients", "SHOW SERVERS", "SHOW DATABASES", "SHOW STATS", "SHOW STATS_TOTALS",
              "SHOW CONFIG", "SHOW CACHE", "SHOW CATALOG", "SHOW ROUTES", "SHOW BACKENDS", "SHOW PREPARED",
              "PAUSE appdb", "RESUME", "RELOAD;", "RECONNECT appdb", "KILL \"my db\"", "DISABLE appdb",
              "ENABLE 'appdb'", "SET log_level = 'debug'", "SET log_level TO info;", "SHUTDOWN", "  ;  ",
              "show help; show version"]:
        put("admin", c)

    # proxy.yaml variants
    ex = os.path.join(ROOT, "proxy.yaml.example")
    if os.path.exists(ex):
        put("config", open(ex, "rb").read())
    for path in glob.glob(os.path.join(ROOT, "tests", "integration", "*.py")):
        text = open(path, encoding="utf-8", errors="replace").read()
        for m in re.finditer(r'"""\n?((?:listen|services|proxy|databases):.*?)"""', text, re.S):
            if "{" not in m.group(1):
                put("config", m.group(1))
    put("config", "listen: {host: 127.0.0.1, port: 6432}\nservices:\n  app:\n    primary: {host: 127.0.0.1, port: 5432}\n"
                  "databases:\n  appdb: {service: app, dbname: app}\nusers:\n  - {name: app, password: secret}\n")

    # SCRAM: client-first \n----\n client-final [\n----\n verifier]
    put("scram_server", b"n,,n=,r=rOprNGfwEbeRWgbNEkqO" + SEP + b"c=biws,r=@N@,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    put("scram_server", b"n,,n=app,r=abc" + SEP + b"c=biws,r=@N@,p=AAAA" + SEP +
        b"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
        b"HKZbHFNuX6Lwj6Fd+ivJJKz3Egg8UO1B3+0i+DZKtlY=")
    put("scram_server", b"y,,n=,r=x" + SEP + b"c=eSws,r=@N@,p=AAAA" + SEP + SEP)
    put("scram_server", b"p=tls-server-end-point,,n=,r=x")
    put("scram_client", b"r=@N@3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4" + SEP + b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    put("scram_client", b"r=@N@x,s=AAAA,i=1" + SEP + b"e=invalid-proof")
    put("scram_client", b"m=ext,r=@N@x,s=AAAA,i=1")

    # startup packets and short client streams
    ssl = struct.pack(">II", 8, 80877103)
    gss = struct.pack(">II", 8, 80877104)
    cancel = struct.pack(">IIII", 16, 80877102, 1234, 5678)
    su = startup(user="app", database="appdb", application_name="psql", client_encoding="UTF8")
    put("startup", su)
    put("startup", ssl + su)
    put("startup", gss + ssl + su)
    put("startup", cancel)
    put("startup", startup(user="app", options="-c search_path=s1,public --statement_timeout=5s -c x=a\\ b"))
    put("startup", startup(user="app", replication="database", _pq_="1"))
    put("startup", struct.pack(">I", 8) + struct.pack(">I", 196609) + su)
    q = msg("Q", cstr("SELECT 1"))
    parse = msg("P", cstr("s1") + cstr("SELECT $1::int + $2") + struct.pack(">HII", 2, 23, 23))
    bind = msg("B", cstr("") + cstr("s1") + struct.pack(">HH", 1, 1) + struct.pack(">H", 2) +
               struct.pack(">I", 4) + struct.pack(">i", 41) + struct.pack(">i", -1) + struct.pack(">HH", 1, 0))
    ext = parse + bind + msg("D", b"P" + cstr("")) + msg("E", cstr("") + struct.pack(">I", 0)) + msg("S", b"")
    for first in (b"\x00", b"\x41", b"\x7f"):
        put("client_msgs", first + su + q + ext + msg("X", b""))
    sasl = msg("p", cstr("SCRAM-SHA-256") + struct.pack(">I", 14) + b"n,,n=,r=abcdef")
    put("client_msgs", b"\x03" + ssl + su + sasl + msg("p", b"c=biws,r=abc,p=AAAA") + q)
    put("client_msgs", b"\x05" + su + msg("p", cstr("md5" + "0" * 32)) + msg("F", struct.pack(">IHHHI", 1, 0, 1, 0, 0)))
    # server streams: first byte (read size, buffer, 0x80: after login), then pipeline entries
    login = msg("R", struct.pack(">I", 10) + cstr("SCRAM-SHA-256") + b"\0") + \
        msg("R", struct.pack(">I", 11) + b"r=abc,s=AAAA,i=4096") + msg("R", struct.pack(">I", 12) + b"v=AAAA") + \
        msg("R", struct.pack(">I", 0)) + msg("S", cstr("server_version") + cstr("15.6")) + \
        msg("K", struct.pack(">II", 42, 4242)) + msg("Z", b"I")
    put("server_msgs", b"\x00\x00" + login)
    put("server_msgs", b"\x01\x00" + msg("R", struct.pack(">I", 5) + b"salt") + msg("E", b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0"))
    reply = sample_replies()[0]
    put("server_msgs", b"\x80\x02\x00\x02" + reply + msg("Z", b"I") + msg("1", b"") + msg("2", b"") + msg("Z", b"T"))
    put("server_msgs", b"\xc0\x01\x80" + data_row([b"0/16B3748"]) + msg("C", cstr("SELECT 1")) + msg("Z", b"I"))


# ---- traffic capture ----
PGBIN = "/usr/lib/postgresql/15/bin"
PG_PORT, TEE_PORT = 33541, 33542


class Tee:
    """A TCP proxy on TEE_PORT → PG_PORT that keeps each connection's two byte streams."""

    def __init__(self):
        self.conns = []
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", TEE_PORT))
        self.sock.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            s = socket.create_connection(("127.0.0.1", PG_PORT))
            rec = [bytearray(), bytearray()]
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.pump, args=(c, s, rec[0]), daemon=True).start()
            threading.Thread(target=self.pump, args=(s, c, rec[1]), daemon=True).start()

    @staticmethod
    def pump(a, b, into):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                into += d
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def split_messages(stream, startup_first):
    """[(type, bytes)] of a stream; the startup family has type ''."""
    out, pos = [], 0
    while startup_first and pos + 8 <= len(stream):
        n, code = struct.unpack(">II", stream[pos:pos + 8])
        out.append(("", bytes(stream[pos:pos + n])))
        pos += n
        if code >> 16 == 3:
            break
    while pos + 5 <= len(stream):
        t = chr(stream[pos])
        n = struct.unpack(">I", stream[pos + 1:pos + 5])[0]
        out.append((t, bytes(stream[pos:pos + 1 + n])))
        pos += 1 + n
    return out


def seeds_from_capture(conns, label):
    for i, (cli, srv) in enumerate(conns):
        cm = split_messages(cli, True)
        sm = split_messages(srv, False)
        if cli:
            start = b"".join(m for t, m in cm if t == "")
            put("startup", start)
            put("client_msgs", bytes([i % 128]) + bytes(cli[:MAX_FILE - 1]))
            # single messages too (small, each one a separate seed)
            for t, m in cm:
                if t and len(m) < 2000:
                    put("client_msgs", b"\x00" + start + m)
                if t == "Q" and len(m) < 4000:
                    put("sqlclass", m[5:].rstrip(b"\0"))
                if t == "P":
                    body = m[5:]
                    z = body.find(b"\0")
                    q = body[z + 1:body.find(b"\0", z + 1)]
                    put("sqlclass", q)
        if srv:
            put("server_msgs", b"\x00\x00" + bytes(srv[:MAX_FILE - 2]))
            # after login: the replies of each request up to ReadyForQuery, with a pipeline guess
            run = b""
            for t, m in sm:
                run += m
                if t == "Z":
                    if b"R" not in run[:1]:
                        put("server_msgs", b"\x80\x04\x01\x04\x05\x08" + run[:MAX_FILE])
                        body = b"".join(x for tt, x in split_messages(run, False) if tt in "TDC")
                        if body and len(body) < 8000:
                            e = entry([1, 2], b"app\0public\0drv_items", body)
                            put("cache_entry", e)
                            put("redis_reply", resp_bulk(sign(e)))
                    run = b""
        # SCRAM from the two streams
        for t, m in cm:
            if t == "p" and b"n,,n=" in m:
                first = m[m.find(b"n,,n="):]
                final = [x for tt, x in cm if tt == "p" and b"c=biws" in x]
                fin = final[0][5:] if final else b""
                fin = re.sub(rb"r=[^,]*", b"r=@N@", fin)
                put("scram_server", first + SEP + fin)
        for t, m in sm:
            if t == "R" and len(m) > 9 and struct.unpack(">I", m[5:9])[0] == 11:
                sf = m[9:]
                cnonce = re.search(rb"n,,n=[^,]*,r=([^,\0]+)", bytes(cli))
                if cnonce:
                    sf = sf.replace(cnonce.group(1), b"@N@", 1)
                sf = re.sub(rb"i=\d+", b"i=4", sf)
                finals = [x for tt, x in sm if tt == "R" and struct.unpack(">I", x[5:9])[0] == 12]
                put("scram_client", sf + SEP + (finals[0][9:] if finals else b""))
    print(f"make_corpus: {label}: {len(conns)} connection(s)", file=sys.stderr)


def run(cmd, env=None, timeout=120):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        print(f"make_corpus: {' '.join(cmd[:3])} ... failed: {r.stderr[-400:]}", file=sys.stderr)
    return r.returncode == 0


def capture():
    if os.geteuid() != 0:
        sys.exit("make_corpus.py --capture: run as root (PostgreSQL is started as the postgres user)")
    base = tempfile.mkdtemp(prefix="pgfz.", dir="/tmp")
    shutil.chown(base, "postgres")

    def as_pg(*cmd):
        return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], cwd=base, capture_output=True, text=True)

    r = as_pg(f"{PGBIN}/initdb", "-D", f"{base}/db", "-U", "postgres", "-E", "UTF8", "--locale=C", "-N",
              "--auth-local=trust", "--auth-host=scram-sha-256")
    if r.returncode:
        sys.exit(r.stderr)
    with open(f"{base}/db/postgresql.conf", "a") as f:
        f.write(f"listen_addresses='127.0.0.1'\nport={PG_PORT}\nunix_socket_directories='{base}'\nfsync=off\n")
    r = as_pg(f"{PGBIN}/pg_ctl", "-D", f"{base}/db", "-l", f"{base}/log", "-w", "-t", "30", "start")
    if r.returncode:
        sys.exit(r.stderr)
    try:
        psql = ["psql", "-h", base, "-p", str(PG_PORT), "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]
        subprocess.run(psql + ["-d", "postgres", "-c", "CREATE ROLE app LOGIN PASSWORD 'app'",
                               "-c", "CREATE DATABASE appdb OWNER app"], check=True, capture_output=True)
        setup = ("SET ROLE app; CREATE TABLE drv_items (id int PRIMARY KEY, name text NOT NULL, qty int NOT NULL);"
                 "CREATE TABLE drv_log (id int PRIMARY KEY, note text NOT NULL);"
                 "CREATE TABLE drv_ref (code int PRIMARY KEY, label text NOT NULL);"
                 "INSERT INTO drv_ref VALUES (1, 'one'), (2, 'two'), (3, 'three');")
        reset = ("BEGIN; DELETE FROM drv_items; DELETE FROM drv_log; INSERT INTO drv_items VALUES (1, 'apple', 10),"
                 " (2, 'banana', 20), (3, 'cherry', 30), (4, 'date', 40), (5, 'elder', 50); COMMIT")
        subprocess.run(psql + ["-d", "appdb", "-c", setup], check=True, capture_output=True)
        tee = Tee()
        env = dict(os.environ, PGPASSWORD="app")
        drivers = os.path.join(ROOT, "tests", "drivers")
        conn = ["--host", "127.0.0.1", "--port", str(TEE_PORT), "--password", "app", "--dbname", "appdb", "--user", "app"]

        def step(label, cmd, e=env):
            subprocess.run(psql + ["-d", "appdb", "-c", reset], capture_output=True)
            n0 = len(tee.conns)
            run(cmd, e)
            time.sleep(0.3)
            with tee.lock:
                new = tee.conns[n0:]
            seeds_from_capture(new, label)

        tcp = ["-h", "127.0.0.1", "-p", str(TEE_PORT), "-U", "app", "-d", "appdb"]
        step("psql", ["psql", *tcp, "-X", "-q", "-f", os.path.join(drivers, "psql", "workload.sql")])
        step("psql -c", ["psql", *tcp, "-X", "-c", "SELECT 1; SELECT now(); SHOW search_path; BEGIN; SET LOCAL x.y = '1'; COMMIT"])
        subprocess.run(["pgbench", "-i", "-s", "1", "-q", *tcp], env=env, capture_output=True)
        for mode in ("simple", "extended", "prepared"):
            step(f"pgbench -M {mode}", ["pgbench", *tcp, "-n", "-M", mode, "-t", "3", "-c", "1"])
        for path in ("simple", "extended", "prepared"):
            step(f"psycopg {path}", ["/usr/bin/python3", os.path.join(drivers, "python", "psycopg_workload.py"),
                                     *conn, "--path", path])
        node_env = dict(env, NODE_PATH="/usr/share/nodejs:/usr/local/lib/pgrelay/node-pg")
        if shutil.which("node"):
            for path in ("unnamed", "named"):
                step(f"node-pg {path}", ["node", os.path.join(drivers, "node", "node_pg_workload.js"), *conn,
                                         "--path", path], node_env)
        jar = "/usr/share/java/postgresql.jar"
        if shutil.which("javac") and os.path.exists(jar):
            out = tempfile.mkdtemp(prefix="jdbc.")
            if run(["javac", "-d", out, "-cp", jar, os.path.join(drivers, "java", "JdbcWorkload.java")], timeout=300):
                for path in ("default", "threshold1"):
                    step(f"jdbc {path}", ["java", "-cp", f"{out}:{jar}", "JdbcWorkload", *conn, "--path", path])
            shutil.rmtree(out, ignore_errors=True)
        tee.sock.close()
    finally:
        as_pg(f"{PGBIN}/pg_ctl", "-D", f"{base}/db", "-m", "immediate", "stop")
        shutil.rmtree(base, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--capture", action="store_true", help="also capture real driver traffic (root)")
    a = ap.parse_args()
    static_seeds()
    if a.capture:
        capture()
    total = sum(os.path.getsize(p) for p in glob.glob(os.path.join(CORPUS, "*", "*")))
    print(f"make_corpus: {len(glob.glob(os.path.join(CORPUS, '*', '*')))} files, {total} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
