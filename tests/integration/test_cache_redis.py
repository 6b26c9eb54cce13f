"""Result cache with its L2 in Redis: two pgrelay instances sharing one Redis or a 6-node
Redis Cluster never hand out a row that a commit acknowledged through the other one changed; L2
hits; Redis killed and restarted under load without a client error; a slot moved in the cluster.

How a test knows a result came from the cache: it changes the row directly on PostgreSQL (around
pgrelay), so only a cached result still shows the old value."""
import hashlib
import hmac
import os
import socket
import struct
import threading
import time
import uuid

import psycopg
import pytest

from conftest import APP_PASSWORD, wait_for
from redis_fixtures import RedisCluster, RedisServer
from test_cache import RULES
from test_redis import _migrate
from wal_fixtures import WAL_PASSWORD, WAL_USER, drop_slots

pytestmark = pytest.mark.usefixtures("cache_tables")


@pytest.fixture
def cache_tables(pg):
    pg.sql("""
DROP TABLE IF EXISTS items, race CASCADE;
CREATE TABLE items (id int PRIMARY KEY, val text);
INSERT INTO items SELECT g, 'v' || g FROM generate_series(1, 50) g;
CREATE TABLE race (id int PRIMARY KEY, n int);
INSERT INTO race VALUES (1, 0);
GRANT ALL ON items, race TO app;
""", dbname="appdb")
    yield pg


SIGNING_KEY = "a test signing key of 32+ bytes for L2 entries"


def redis_cache(nodes, cluster=False, prefix=None, **over):
    c = {"l1": {"max_memory": "16MB"}, "rules": RULES,
         "redis": {"nodes": list(nodes), "cluster": cluster, "timeout": "200ms",
                   "prefix": prefix or f"t{uuid.uuid4().hex[:8]}", "signing_key": SIGNING_KEY}}
    c.update(over)
    return c


def one(conn, sql, params=None):
    return conn.execute(sql, params).fetchone()


def warm(conn, sql, params=None, tries=50):
    """Reads until the cache has the entry (the first lookup of a service creates its epoch in
    Redis and is not stored)."""
    for _ in range(3):
        one(conn, sql, params)
        time.sleep(0.05)
    return one(conn, sql, params)


def two_instances(pgrelay, nodes, cluster=False):
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a = pgrelay(cache=redis_cache(nodes, cluster, prefix), pool={"max": 8})
    b = pgrelay(cache=redis_cache(nodes, cluster, prefix), pool={"max": 8})
    return a, b


def check_two_instances(pg, a, b):
    with a.connect() as ca, b.connect() as cb:
        q = "SELECT val FROM items WHERE id = 7"
        assert warm(cb, q) == ("v7",)
        warm(ca, q)
        # L2: A filled the entry; B has it too (from its L1 or from Redis): both stay on the old row
        pg.sql("UPDATE items SET val = 'behind' WHERE id = 7", dbname="appdb")
        assert one(cb, q) == ("v7",), "B's read was not served from the cache"
        assert one(ca, q) == ("v7",), "A's read was not served from the cache"
        # an L2 hit proper: an entry only A read
        q8 = "SELECT val FROM items WHERE id = 8"
        warm(ca, q8)
        pg.sql("UPDATE items SET val = 'behind8' WHERE id = 8", dbname="appdb")
        assert one(cb, q8) == ("v8",), "B did not get A's entry from Redis"
        # a commit acknowledged through A: B's next read sees it
        for i in range(30):
            ca.execute("UPDATE items SET val = %s WHERE id = 7", (f"a{i}",))
            assert one(cb, q) == (f"a{i}",)
            assert one(ca, q) == (f"a{i}",)
            cb.execute("UPDATE items SET val = %s WHERE id = 7", (f"b{i}",))
            assert one(ca, q) == (f"b{i}",)


def race_two_instances(a, b, seconds=3):
    acked = [0]
    stop = threading.Event()
    errors = []

    def writer():
        with a.connect() as w:
            while not stop.is_set():
                n = one(w, "UPDATE race SET n = n + 1 WHERE id = 1 RETURNING n")[0]
                acked[0] = max(acked[0], n)

    def reader(relay):
        with relay.connect() as c:
            while not stop.is_set():
                floor = acked[0]
                got = one(c, "SELECT n FROM race WHERE id = 1")[0]
                if got < floor:
                    errors.append(f"read {got} after commit {floor} was acknowledged")

    threads = [threading.Thread(target=writer), threading.Thread(target=reader, args=(a,)),
               threading.Thread(target=reader, args=(b,)), threading.Thread(target=reader, args=(b,))]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(20)
    assert acked[0] > 30, "the writer made too little progress to mean anything"
    assert not errors, errors[:5]


def test_two_instances_sharing_one_redis(pgrelay, pg, redis_single):
    a, b = two_instances(pgrelay, [redis_single.addr])
    check_two_instances(pg, a, b)
    race_two_instances(a, b)


def test_two_instances_sharing_a_redis_cluster(pgrelay, pg, redis_cluster):
    redis_cluster.wait_ok()
    a, b = two_instances(pgrelay, redis_cluster.addrs, cluster=True)
    check_two_instances(pg, a, b)
    race_two_instances(a, b)


def test_redis_killed_and_restarted_under_load(pgrelay, pg, redis_single):
    """Clients read and write through two instances while Redis dies and comes back: no client
    error, and afterwards no stale read across the instances."""
    a, b = two_instances(pgrelay, [redis_single.addr])
    stop = threading.Event()
    errors, done = [], [0]

    def load(relay, writes):
        try:
            with relay.connect() as c:
                i = 0
                while not stop.is_set():
                    i += 1
                    one(c, "SELECT val FROM items WHERE id = %s", (i % 20 + 1,))
                    if writes and i % 10 == 0:
                        c.execute("UPDATE items SET val = %s WHERE id = %s", (f"w{i}", i % 20 + 1))
                    done[0] += 1
        except Exception as e:  # noqa: BLE001 - any client error fails the test
            errors.append(repr(e))

    threads = [threading.Thread(target=load, args=(r, w)) for r, w in ((a, True), (b, False), (b, True))]
    for t in threads:
        t.start()
    try:
        time.sleep(1)
        redis_single.kill()
        time.sleep(2)
        redis_single.start()
        time.sleep(2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        redis_single.ensure_running()
    assert not errors, errors[:3]
    assert done[0] > 100
    assert "redis" in a.log() and "down" in a.log(), "the outage was not logged"
    # back to normal: strict across instances again
    time.sleep(1)
    check_two_instances(pg, a, b)


def test_cluster_slot_moved_is_followed(pgrelay, pg, redis_cluster):
    """The slot holding the service's versions moves to another master: pgrelay follows MOVED and
    the cache stays correct and useful."""
    redis_cluster.wait_ok()
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a = pgrelay(cache=redis_cache(redis_cluster.addrs, True, prefix))
    b = pgrelay(cache=redis_cache(redis_cluster.addrs, True, prefix))
    with a.connect() as ca, b.connect() as cb:
        q = "SELECT val FROM items WHERE id = 3"
        assert warm(ca, q) == ("v3",)
        epoch_key = f"{prefix}:{{main}}:epoch"
        slot = redis_cluster.keyslot(epoch_key)
        src = redis_cluster.owner(slot)
        dst = next(redis_cluster.node(m["addr"]) for m in redis_cluster.masters() if m["addr"] != src.addr)
        keys = [k for k in src.cli("CLUSTER", "GETKEYSINSLOT", slot, 1000).split() if k]
        _migrate(redis_cluster, slot, keys, src, dst)
        assert redis_cluster.owner(slot).addr == dst.addr
        # still correct across instances, and still cached
        ca.execute("UPDATE items SET val = 'moved' WHERE id = 3")
        assert one(cb, q) == ("moved",)
        warm(cb, q)
        warm(ca, q)
        pg.sql("UPDATE items SET val = 'behind' WHERE id = 3", dbname="appdb")
        assert one(cb, q) == ("moved",), "no cache hit after the slot moved"
        assert one(ca, q) == ("moved",)


# ---------------------------------------------------------------- the WAL listener with Redis


def cache_counts(relay):
    """SHOW CACHE as {tier: {column: value}} (the instance needs admin.users: [app])."""
    with psycopg.connect(host="127.0.0.1", port=relay.port, user="app", password=APP_PASSWORD, dbname="pgrelay",
                         autocommit=True, cursor_factory=psycopg.ClientCursor) as a:
        cur = a.execute("SHOW CACHE")
        cols = [d.name for d in cur.description]
        return {row[0]: dict(zip(cols, row)) for row in cur.fetchall()}


def wal_instance(pgrelay, pg_logical, nodes, prefix, slot, cluster=False, **over):
    """A pgrelay on pg_logical with Redis and its own WAL listener slot; returns once it streams."""
    from test_cache import wait_wal_streaming
    drop_slots(pg_logical, [slot])
    r = pgrelay(services={"main": {"primary": {"port": pg_logical.port}}}, admin={"users": ["app"]},
                cache=redis_cache(nodes, cluster, prefix, rules=[{"tables": ["wr", "wr_other"], "ttl": "5m"}],
                                  wal_listener={"service": "main", "slot": slot, "user": WAL_USER,
                                                "password": WAL_PASSWORD}, **over))
    wait_wal_streaming(r, pg_logical, slot)
    return r


@pytest.fixture
def wal_tables(pg_logical):
    pg_logical.sql("""
DROP TABLE IF EXISTS wr, wr_other;
CREATE TABLE wr (id int PRIMARY KEY, v int); INSERT INTO wr VALUES (1, 0), (2, 0);
CREATE TABLE wr_other (id int PRIMARY KEY); INSERT INTO wr_other VALUES (1);
GRANT ALL ON wr, wr_other TO app;
""", dbname="appdb")
    return pg_logical


def until(conn, sql, want, what, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        got = one(conn, sql)
        if got == want:
            return time.monotonic()
        assert time.monotonic() < deadline, f"{what}: still {got}, not {want} after {timeout} s"
        time.sleep(0.02)


def test_wal_listener_bumps_the_versions_every_instance_reads(pgrelay, wal_tables, redis_single):
    """Two instances, each with its own WAL listener slot, share one Redis: a write made directly on
    PostgreSQL stops being served by both (they take Redis's versions on every lookup, so the WAL
    commit must bump those, not only the local ones), and a freshly started third instance does not
    serve the old entry from Redis either."""
    pg = wal_tables
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a = wal_instance(pgrelay, pg, [redis_single.addr], prefix, "wr_a")
    b = wal_instance(pgrelay, pg, [redis_single.addr], prefix, "wr_b")
    q = "SELECT v FROM wr WHERE id = 1"
    with a.connect() as ca, b.connect() as cb:
        for c, relay in ((ca, a), (cb, b)):
            deadline = time.monotonic() + 5
            while True:  # the new slots' "invalidate everything" may come after the first reads
                before = cache_counts(relay)["total"]["hits"]
                assert one(c, q) == (0,)
                if cache_counts(relay)["total"]["hits"] == before + 1:
                    break
                assert time.monotonic() < deadline, "reads are never served from the cache"
                time.sleep(0.05)
        for i in range(1, 4):
            pg.sql(f"UPDATE wr SET v = {i} WHERE id = 1", dbname="appdb")
            until(ca, q, (i,), "instance A after a write seen in the WAL")
            until(cb, q, (i,), "instance B after a write seen in the WAL")
        assert cache_counts(a)["l2"]["invalidations"] > 0, "the WAL's bumps did not go to Redis"
    # a fresh instance (its own new slot) reads the versions from Redis: no old entry from L2
    c = wal_instance(pgrelay, pg, [redis_single.addr], prefix, "wr_c")
    with c.connect() as cc:
        assert one(cc, q) == (3,)
        pg.sql("UPDATE wr SET v = 4 WHERE id = 1", dbname="appdb")
        until(cc, q, (4,), "a fresh instance after a write seen in the WAL")


def slot_confirmed(pg, slot):
    from test_wal import lsn_int
    return lsn_int(pg.sql(f"SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'",
                          dbname="appdb"))


def write_at(pg, sql):
    """Runs sql in a transaction; returns an LSN inside it (before its commit record)."""
    from test_wal import lsn_int
    out = pg.sql(f"BEGIN; {sql}; SELECT pg_current_wal_insert_lsn(); COMMIT;", dbname="appdb")
    return lsn_int(next(w for w in out.split() if "/" in w))  # among the command tags


def test_wal_commit_is_confirmed_only_once_redis_has_its_bump(pgrelay, wal_tables, redis_single):
    """While Redis cannot take the bump of a commit seen in the WAL, the slot stays before that
    commit (a restart would get it again), and the instance, on its local versions, still stops
    serving what the commit changed; once Redis answers, the service gets a new epoch there (the
    bump that went missing is covered) and the slot moves on."""
    pg = wal_tables
    prefix = f"t{uuid.uuid4().hex[:8]}"
    a = wal_instance(pgrelay, pg, [redis_single.addr], prefix, "wr_hold")
    q = "SELECT v FROM wr WHERE id = 2"
    with a.connect() as ca:
        warm(ca, q)
        # an LSN inside each transaction: the slot passes it only once that commit is confirmed
        base = write_at(pg, "UPDATE wr_other SET id = 1")
        wait_for(lambda: slot_confirmed(pg, "wr_hold") >= base, 15, what="the slot to catch up before the test")
        redis_single.pause()
        try:
            commit = write_at(pg, "UPDATE wr SET v = 7 WHERE id = 2")
            until(ca, q, (7,), "the instance with Redis unreachable", timeout=10)
            a.wait_log("is down", timeout=10)
            # more WAL traffic makes the listener report its position again (and after a keepalive)
            for _ in range(3):
                pg.sql("UPDATE wr_other SET id = 1", dbname="appdb")
                time.sleep(0.4)
            assert slot_confirmed(pg, "wr_hold") < commit, "the slot moved past a commit Redis never got"
        finally:
            redis_single.resume()
        a.wait_log("has a new epoch in Redis", timeout=10)

        def moved_on():
            pg.sql("UPDATE wr_other SET id = 1", dbname="appdb")
            return slot_confirmed(pg, "wr_hold") >= commit
        wait_for(moved_on, 20, interval=0.5, what="the slot to move past the commit once Redis answers")
        until(ca, q, (7,), "after Redis is back")


# ---------------------------------------------------------------- L2 entries: signed and checked


def l2_keys(redis, prefix):
    return sorted(k for k in redis.cli("--scan", "--pattern", f"{prefix}:e:*").split() if k)


def entry_parts(value):
    """An L2 value -> (tag, header bytes up to the reply, reply bytes)."""
    tag, entry = value[:32], value[32:]
    assert entry[:4] == b"pgr2", entry[:16]
    count = struct.unpack_from("<I", entry, 4)[0]
    at = 8 + 8 * count
    names_len = struct.unpack_from("<H", entry, at)[0]
    at += 2 + names_len
    return tag, entry[:at], entry[at:]


def sign(key_name, entry):
    return hmac.new(SIGNING_KEY.encode(), b"pgrelay-l2-v1\0" + key_name.encode() + b"\0" + entry,
                    hashlib.sha256).digest() + entry


def redis_get(redis, key):
    r = socket.create_connection((redis.host, redis.port))
    try:
        r.sendall(f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            data += r.recv(65536)
        n = int(data[1:data.index(b"\r\n")])
        body = data[data.index(b"\r\n") + 2:]
        while len(body) < n + 2:
            body += r.recv(65536)
        return body[:n]
    finally:
        r.close()


def redis_set(redis, key, value):
    r = socket.create_connection((redis.host, redis.port))
    try:
        k = key.encode()
        r.sendall(b"*5\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n$2\r\nPX\r\n$6\r\n300000\r\n"
                  % (len(k), k, len(value), value))
        assert r.recv(100).startswith(b"+OK")
    finally:
        r.close()


def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


def test_l2_entries_are_authenticated_and_checked(pgrelay, pg, redis_single):
    """Whoever can write to Redis cannot make pgrelay hand out bytes it did not store itself: an
    entry with a wrong signature, an authentic entry copied under another statement's key, and
    (made with the signing key) an entry whose reply or names are not what the lookup expects are
    all refused (counted in SHOW CACHE, logged, never served: the client gets the row from
    PostgreSQL), while an untouched entry is an L2 hit."""
    prefix = f"t{uuid.uuid4().hex[:8]}"

    def instance():
        return pgrelay(cache=redis_cache([redis_single.addr], prefix=prefix), admin={"users": ["app"]})

    a = instance()
    q7, q8 = "SELECT val FROM items WHERE id = 7", "SELECT val FROM items WHERE id = 8"
    with a.connect(cursor_factory=psycopg.ClientCursor) as ca:
        warm(ca, q7)
        (k7,) = l2_keys(redis_single, prefix)
        warm(ca, q8)
        (k8,) = [k for k in l2_keys(redis_single, prefix) if k != k7]
    v7, v8 = redis_get(redis_single, k7), redis_get(redis_single, k8)
    tag, head7, reply7 = entry_parts(v7)
    assert hmac.compare_digest(tag, sign(k7, v7[32:])[:32]), "the stored tag is not HMAC-SHA256 over key and entry"
    pg.sql("UPDATE items SET val = 'fresh7' WHERE id = 7; UPDATE items SET val = 'fresh8' WHERE id = 8",
           dbname="appdb")

    def read_fresh(sql):
        """Through a new instance (empty L1): what it answers, and how SHOW CACHE counted it."""
        b = instance()
        with b.connect(cursor_factory=psycopg.ClientCursor) as cb:
            got = one(cb, sql)
        counts = cache_counts(b)["l2"]
        return got, counts, b

    # untouched: an L2 hit (the old row: the write above went around pgrelay)
    got, counts, _ = read_fresh(q7)
    assert got == ("v7",) and counts["hits"] == 1 and counts["refused"] == 0

    forged_rows = msg(b"T", bytes.fromhex("0001") + b"val\0" + bytes(18)) + \
        msg(b"D", bytes.fromhex("0001") + struct.pack("!I", 4) + b"evil") + msg(b"C", b"SELECT 1\0")
    cases = [
        # (what, value written under k7, reason logged)
        ("a forged entry without the key", v7[:32] + head7 + forged_rows, "bad signature"),
        ("q8's authentic entry copied to q7's key", v8, "bad signature"),
        ("a tag that is all zero", bytes(32) + v7[32:], "bad signature"),
        ("too short for a tag", b"x" * 16, "bad signature"),
        ("signed, an ErrorResponse in the reply", sign(k7, head7 + reply7[:-14] + msg(b"E", b"SERROR\0\0") +
                                                      reply7[-14:]),
         "a message other than RowDescription, DataRow, CommandComplete"),
        ("signed, the wrong row count", sign(k7, head7 + reply7.replace(b"SELECT 1\0", b"SELECT 2\0")),
         "CommandComplete is not SELECT <number of rows>"),
        ("signed, a DataRow longer than its columns", sign(k7, head7 + reply7.replace(b"v7", b"v7x", 1)),
         "message length out of bounds"),
        ("signed, another table's names", sign(k7, head7.replace(b"items", b"other") + reply7),
         "names of another service or other tables"),
        ("signed, no RowDescription for a simple Query", sign(k7, head7 + reply7[reply7.index(b"D"):]),
         "no RowDescription"),
    ]
    refused_total = 0
    for what, value, reason in cases:
        redis_set(redis_single, k7, value)
        got, counts, b = read_fresh(q7)
        assert got == ("fresh7",), f"{what}: served {got}"
        assert counts["refused"] == 1 and counts["hits"] == 0, f"{what}: {counts}"
        assert f"refused an entry read from Redis ({reason})" in b.log(), f"{what}:\n{b.log_tail()}"
        refused_total += 1
        # the instance's own fill replaced the bad value: the next fresh instance gets a hit
        got, counts, _ = read_fresh(q7)
        assert got == ("fresh7",) and counts["hits"] == 1, f"{what}: the refused entry was not replaced"
    # made with the signing key and well-formed: served (the key is the secret)
    good = sign(k7, head7 + reply7.replace(b"v7", b"k7"))
    redis_set(redis_single, k7, good)
    assert read_fresh(q7)[0] == ("k7",)
    assert refused_total == len(cases)


def test_without_a_signing_key_redis_holds_versions_only(pgrelay, pg, redis_single):
    """No cache.redis.signing_key: pgrelay says so once at start, stores no entry in Redis and
    reads none, and two instances still share the versions (a commit through one is seen by the
    other at once)."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    cfg = redis_cache([redis_single.addr], prefix=prefix)
    del cfg["redis"]["signing_key"]
    a = pgrelay(cache=cfg, pool={"max": 8})
    b = pgrelay(cache=cfg, pool={"max": 8})
    with a.connect() as ca, b.connect() as cb:
        q = "SELECT val FROM items WHERE id = 9"
        warm(ca, q)
        warm(cb, q)
        pg.sql("UPDATE items SET val = 'behind' WHERE id = 9", dbname="appdb")
        assert one(ca, q) == ("v9",) and one(cb, q) == ("v9",), "L1 still serves"
        for i in range(5):
            ca.execute("UPDATE items SET val = %s WHERE id = 9", (f"a{i}",))
            assert one(cb, q) == (f"a{i}",)
    assert l2_keys(redis_single, prefix) == []
    assert redis_single.cli("--scan", "--pattern", f"{prefix}:*").split(), "no shared versions in Redis"
    for r in (a, b):
        assert r.log().count("cache.redis has no signing_key") == 1, r.log_tail()


# ---------------------------------------------------------------- Redis AUTH

ACL_USER, ACL_PASSWORD = "pgrelay", "acl-pw-7f3"
# Redis 7's ACL: the default user off, so that only the ACL user gets in
ACL_ARGS = ["--user", "default", "off", "--user", ACL_USER, "on", f">{ACL_PASSWORD}", "~*", "&*", "+@all"]


def check_l2_works(pgrelay, pg, nodes, cluster, prefix, ids, **redis_over):
    """Two instances with these Redis credentials: entries reach Redis (one per statement read), and
    a commit through one is seen by the other at once. Returns the instances."""
    cfg = redis_cache(nodes, cluster, prefix)
    cfg["redis"].update(redis_over)
    a = pgrelay(cache=cfg, pool={"max": 8})
    b = pgrelay(cache=cfg, pool={"max": 8})
    with a.connect() as ca, b.connect() as cb:
        for i in ids:
            warm(ca, f"SELECT val FROM items WHERE id = {i}")
        for i in range(3):
            q = f"SELECT val FROM items WHERE id = {ids[0]}"
            warm(cb, q)
            ca.execute("UPDATE items SET val = %s WHERE id = %s", (f"auth{i}", ids[0]))
            assert one(cb, q) == (f"auth{i}",)
    return a, b


def test_redis_password(pgrelay, pg, workdir):
    """requirepass: with the password, the cache uses Redis; with a wrong one or none, one clear log
    line, and pgrelay serves every query from the server: without Redis an instance cannot learn
    what another one commits, so its L1 serves nothing either (strict across instances)."""
    server = RedisServer(os.path.join(workdir, "redis"), "auth-pw", extra=["--requirepass", "s3cret-pw"],
                         password="s3cret-pw")
    server.start()
    try:
        prefix = f"t{uuid.uuid4().hex[:8]}"
        check_l2_works(pgrelay, pg, [server.addr], False, prefix, [11, 12], password="s3cret-pw")
        assert len([k for k in server.cli("--scan", "--pattern", f"{prefix}:e:*").split() if k]) == 2
        for password, line in (("wrong-pw", "AUTH failed: WRONGPASS"),
                               (None, "the node requires AUTH and no password is configured")):
            cfg = redis_cache([server.addr])
            if password:
                cfg["redis"]["password"] = password
            r = pgrelay(cache=cfg, admin={"users": ["app"]})
            r.wait_log(line)
            with r.connect() as c:
                for i in range(3):
                    c.execute("UPDATE items SET val = %s WHERE id = 13", (f"np{i}",))
                    assert one(c, "SELECT val FROM items WHERE id = 13") == (f"np{i}",)
                    assert one(c, "SELECT val FROM items WHERE id = 13") == (f"np{i}",)
            assert cache_counts(r)["l1"]["hits"] == 0, "L1 served results while Redis could not be asked"
            assert "s3cret-pw" not in r.log() and "wrong-pw" not in r.log()
            assert r.log().count(line) == 1, r.log_tail()
    finally:
        server.kill()


def test_redis_acl_user_single_node(pgrelay, pg, workdir):
    """An ACL user (AUTH user password) on one node: every connection pgrelay opens (commands and
    pub/sub) is that user's; a wrong password says which user failed."""
    server = RedisServer(os.path.join(workdir, "redis"), "auth-acl", extra=ACL_ARGS, user=ACL_USER,
                         password=ACL_PASSWORD)
    server.start()
    try:
        prefix = f"t{uuid.uuid4().hex[:8]}"
        check_l2_works(pgrelay, pg, [server.addr], False, prefix, [14], user=ACL_USER, password=ACL_PASSWORD)
        clients = [ln for ln in server.cli("CLIENT", "LIST").splitlines() if "cmd=client" not in ln]
        assert len(clients) >= 4, clients  # two instances: a command and a pub/sub connection each
        assert all(f"user={ACL_USER}" in ln for ln in clients), clients
        assert any("cmd=subscribe" in ln for ln in clients), clients
        cfg = redis_cache([server.addr])
        cfg["redis"].update(user=ACL_USER, password="not-it")
        r = pgrelay(cache=cfg)
        r.wait_log(f"AUTH as user {ACL_USER} failed: WRONGPASS")
        with r.connect() as c:
            assert one(c, "SELECT val FROM items WHERE id = 15") == ("v15",)
        assert "not-it" not in r.log()
    finally:
        server.kill()


def test_redis_acl_user_cluster(pgrelay, pg, workdir):
    """An ACL user on a Redis Cluster (3 masters): the slot map, every master's connection and the
    pub/sub connection authenticate as that user (entries for 40 statements land on every master),
    and a wrong password leaves pgrelay working without L2."""
    cluster = RedisCluster(os.path.join(workdir, "redis"), size=3, replicas=0, name="acl-cluster", extra=ACL_ARGS,
                           user=ACL_USER, password=ACL_PASSWORD)
    try:
        cluster.start()
        prefix = f"t{uuid.uuid4().hex[:8]}"
        check_l2_works(pgrelay, pg, cluster.addrs, True, prefix, list(range(1, 41)), user=ACL_USER,
                       password=ACL_PASSWORD)
        for node in cluster.nodes:
            keys = [k for k in node.cli("--scan", "--pattern", f"{prefix}:e:*").split() if k]
            assert keys, f"no entry on master {node.addr}: its connection did not work"
            clients = [ln for ln in node.cli("CLIENT", "LIST").splitlines() if "cmd=client" not in ln
                       and "cmd=cluster" not in ln]
            assert clients and all(f"user={ACL_USER}" in ln for ln in clients), clients
        cfg = redis_cache(cluster.addrs, True)
        cfg["redis"].update(user=ACL_USER, password="not-it")
        r = pgrelay(cache=cfg)
        r.wait_log(f"AUTH as user {ACL_USER} failed: WRONGPASS")
        with r.connect() as c:
            assert one(c, "SELECT val FROM items WHERE id = 16") == ("v16",)
    finally:
        cluster.stop()


def test_no_stale_read_across_instances_while_redis_is_down(pgrelay, pg, redis_single):
    """Redis down: an instance cannot learn what another one commits, so nothing is served from
    the cache (every read goes to PostgreSQL) until Redis answers again and every service has a
    new epoch there (Redis may come back without the last bumps it acknowledged). Before the
    change, B kept answering from L1 with its own versions and returned the row A had replaced."""
    a, b = two_instances(pgrelay, [redis_single.addr])
    q = "SELECT val FROM items WHERE id = 11"
    with a.connect() as ca, b.connect() as cb:
        ca.execute("UPDATE items SET val = 'v11' WHERE id = 11")
        assert warm(cb, q) == ("v11",)
        pg.sql("UPDATE items SET val = 'behind11' WHERE id = 11", dbname="appdb")
        assert one(cb, q) == ("v11",), "B's read was not served from the cache"
        pg.sql("UPDATE items SET val = 'v11' WHERE id = 11", dbname="appdb")
        redis_single.kill()
        try:
            wait_for(lambda: "down" in b.log() and "down" in a.log(), timeout=10)
            for i in range(20):
                ca.execute("UPDATE items SET val = %s WHERE id = 11", (f"down{i}",))
                assert one(cb, q) == (f"down{i}",), "a read through B missed A's acknowledged commit"
        finally:
            redis_single.ensure_running()
        # Redis back (empty): every service gets a new epoch before the cache serves again, and
        # the instances are strict again.
        wait_for(lambda: "new epoch" in a.log() and "new epoch" in b.log(), timeout=15)
        for i in range(10):
            ca.execute("UPDATE items SET val = %s WHERE id = 11", (f"up{i}",))
            assert one(cb, q) == (f"up{i}",)
    check_two_instances(pg, a, b)
