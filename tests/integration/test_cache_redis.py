"""Result cache with its L2 in Redis (issue 5): two pgrelay instances sharing one Redis or a 6-node
Redis Cluster never hand out a row that a commit acknowledged through the other one changed; L2
hits; Redis killed and restarted under load without a client error; a slot moved in the cluster.

How a test knows a result came from the cache: it changes the row directly on PostgreSQL (around
pgrelay), so only a cached result still shows the old value."""
import threading
import time
import uuid

import psycopg
import pytest

from test_cache import RULES
from test_redis import _migrate

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


def redis_cache(nodes, cluster=False, prefix=None, **over):
    c = {"l1": {"max_memory": "16MB"}, "rules": RULES,
         "redis": {"nodes": list(nodes), "cluster": cluster, "timeout": "200ms",
                   "prefix": prefix or f"t{uuid.uuid4().hex[:8]}"}}
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
