"""The result cache's stale-read promise across configurations: L1 only, L1 + Redis, L1 + Redis
Cluster; each with and without the WAL listener; with one and with two pgrelay instances (reads
through both, writes through either). Every scenario runs on every configuration, once per
protocol (simple Query, psycopg's extended batches, raw Parse/Bind/Execute/Sync without
Describe), and checks what the configuration promises after each commit (cache_matrix.py):

    commit through the same instance        seen at once (every configuration)
    commit through the other instance       at once with Redis; within WAL_BOUND with the WAL
                                            listener alone; never with neither (L1 only: each
                                            instance serves its own entries until their TTL)
    write made directly on PostgreSQL       within WAL_BOUND with the WAL listener; never without
                                            it (documented: name the writers' tables in
                                            cache.invalidate, or run the listener)

A read of a view depends on its base table (the service's catalog says so): a write of the table
through either instance or directly on PostgreSQL is seen as for a read of the table itself.

"never" is asserted too: the old row must still come from the cache, which also proves that the
reads are cached in that configuration. With Redis, a freshly started instance must not serve an
entry that a commit made stale (test_fresh_instance_reads_no_stale_entry).

Adding a scenario: a function f(d, proto) decorated with @scenario (see cache_matrix.py for what
the Deployment `d` offers). Instances are shared by the scenarios of a configuration (each
scenario makes its own table); Redis is flushed between configurations.
"""
import pytest

from cache_matrix import BOUNDED, CONFIGS, NEVER, NOW, SCENARIOS, Deployment, redis_keys, scenario


@pytest.fixture(scope="module", params=CONFIGS, ids=lambda c: c.id)
def deployment(request, pg_logical, workdir):
    cfg = request.param
    redis_single = request.getfixturevalue("redis_single") if cfg.l2 == "single" else None
    redis_cluster = request.getfixturevalue("redis_cluster") if cfg.l2 == "cluster" else None
    if redis_cluster:
        redis_cluster.wait_ok()
    d = Deployment(cfg, pg_logical, workdir, redis_single, redis_cluster)
    try:
        d.start()
        yield d
    finally:
        problems = d.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


@pytest.fixture(autouse=True)
def _logs_on_failure(request, deployment):
    request.node._pgrelays = deployment.started  # conftest attaches their logs to a failure


def reads(d, proto):
    """A client per instance."""
    return {r: d.conn(r, proto) for r in d.instances}


# ---------------------------------------------------------------- scenarios


@scenario
def autocommit_write_through_either_instance(d, proto):
    """UPDATEs in autocommit, through A then through B: every instance's next read after each."""
    t = d.table()
    q = f"SELECT v FROM {t} WHERE id = %s"
    conns = reads(d, proto)
    for r, c in conns.items():
        assert d.cached(r, c, q, (1,)) == (0,)
    value = 0
    for writer in (d.a, d.b):
        old, value = value, value + 1
        conns[writer].execute(f"UPDATE {t} SET v = %s WHERE id = %s", (value, 1))
        for r, c in conns.items():
            d.expect(r, c, q, (1,), (value,), (old,), NOW if r is writer else d.after_commit_elsewhere)
        if d.after_commit_elsewhere == NEVER and len(d.instances) > 1:
            return  # the other instance keeps its entry: nothing more to learn here
    d.remember(proto, q, (1,), (value,))


@scenario
def explicit_transaction_write(d, proto):
    """BEGIN; two UPDATEs; COMMIT through A: inside the transaction the writer reads its own rows
    (never the cache), afterwards every instance reads the new ones; a rolled-back transaction
    changes nothing."""
    t = d.table()
    q = f"SELECT v FROM {t} WHERE id = %s"
    conns = reads(d, proto)
    for r, c in conns.items():
        for key in (1, 2):
            assert d.cached(r, c, q, (key,)) == (0,)
    w = d.conn(d.a, proto)
    w.execute("BEGIN")
    w.execute(f"UPDATE {t} SET v = 10 WHERE id = %s", (1,))
    w.execute(f"UPDATE {t} SET v = 20 WHERE id = %s", (2,))
    assert w.one(q, (1,)) == (10,), "a read inside the writing transaction came from the cache"
    for r, c in conns.items():
        assert c.one(q, (2,)) == (0,), "a read outside saw an uncommitted row"
    w.execute("COMMIT")
    for r, c in conns.items():
        seen = NOW if r is d.a else d.after_commit_elsewhere
        d.expect(r, c, q, (1,), (10,), (0,), seen)
        d.expect(r, c, q, (2,), (20,), (0,), seen)
    w.execute("BEGIN")
    w.execute(f"UPDATE {t} SET v = 99 WHERE id = %s", (1,))
    w.execute("ROLLBACK")
    for r, c in conns.items():
        if r is d.a or d.after_commit_elsewhere != NEVER:
            assert c.one(q, (1,)) == (10,)
    d.remember(proto, q, (2,), (20,))


@scenario
def write_directly_on_postgresql(d, proto):
    """An UPDATE made around pgrelay. With the WAL listener every instance stops serving the old
    row within WAL_BOUND; without it nothing tells pgrelay (documented), and the check is that the
    cached old row is what it serves."""
    t = d.table()
    q = f"SELECT v FROM {t} WHERE id = %s"
    conns = reads(d, proto)
    for r, c in conns.items():
        assert d.cached(r, c, q, (3,)) == (0,)
    d.direct(f"UPDATE {t} SET v = 5 WHERE id = 3")
    for r, c in conns.items():
        d.expect(r, c, q, (3,), (5,), (0,), d.after_direct_write)
    if d.after_direct_write == BOUNDED:
        d.remember(proto, q, (3,), (5,))


@scenario
def write_to_a_views_base_table(d, proto):
    """A read of a view, then UPDATEs of its base table through A and directly on PostgreSQL: the
    view's entry depends on the table (today's names-only dependencies would serve it until its
    TTL)."""
    t = d.table()
    v = d.view(t)
    q = f"SELECT v FROM {v} WHERE id = %s"
    conns = reads(d, proto)
    for r, c in conns.items():
        assert d.cached(r, c, q, (1,)) == (0,)
    conns[d.a].execute(f"UPDATE {t} SET v = %s WHERE id = %s", (7, 1))
    for r, c in conns.items():
        d.expect(r, c, q, (1,), (7,), (0,), NOW if r is d.a else d.after_commit_elsewhere)
    if d.after_commit_elsewhere == NEVER and len(d.instances) > 1:
        return  # the other instance keeps its entry
    d.direct(f"UPDATE {t} SET v = 8 WHERE id = 1")
    for r, c in conns.items():
        d.expect(r, c, q, (1,), (8,), (7,), d.after_direct_write)
    if d.after_direct_write == BOUNDED:
        d.remember(proto, q, (1,), (8,))


@pytest.mark.parametrize("fn,proto", SCENARIOS, ids=[f"{f.__name__}-{p}" for f, p in SCENARIOS])
def test_scenario(deployment, fn, proto):
    fn(deployment, proto)


def test_fresh_instance_reads_no_stale_entry(deployment):
    """With Redis, an instance started after entries were stored and made stale reads the versions
    from Redis: every row the scenarios (and this test) changed shows its last value, and a row of
    a table nobody wrote is an L2 hit (so the instance does use Redis's entries). In WAL configurations the
    fresh instance runs without a listener of its own: a new slot says "everything may have
    changed", which would hide what this checks (that the others' listeners bumped Redis)."""
    d = deployment
    if not d.cfg.l2:
        pytest.skip("L1 only: nothing is shared for a fresh instance to read")
    t, untouched = d.table(), d.table()
    q = f"SELECT v FROM {t} WHERE id = %s"
    c = d.conn(d.a, "extended")
    for key in (1, 2):
        assert d.cached(d.a, c, q, (key,)) == (0,)
    assert d.cached(d.a, c, f"SELECT v FROM {untouched} WHERE id = %s", (3,)) == (0,)
    assert redis_keys(d, f"{d.prefix}:e:*"), "no entry reached Redis"
    c.execute(f"UPDATE {t} SET v = 1 WHERE id = 1")
    d.remember("extended", q, (1,), (1,))
    if d.cfg.wal:
        assert d.cached(d.a, c, q, (2,)) == (0,)  # an entry under the versions after A's commit
        d.direct(f"UPDATE {t} SET v = 2 WHERE id = 2")
        d.expect(d.a, c, q, (2,), (2,), (0,), BOUNDED)  # A reads Redis's versions: the bump is there
        d.remember("extended", q, (2,), (2,))
    fresh = d.start_instance(wal=False)
    for proto, sql, params, value in d.memory:
        got = d.conn(fresh, proto).one(sql, params)
        assert got == value, f"the fresh instance read {got} for {sql} {params} ({proto}), not {value}"
    before = d.hits(fresh)
    assert d.conn(fresh, "extended").one(f"SELECT v FROM {untouched} WHERE id = %s", (3,)) == (0,)
    assert d.hits(fresh) == before + 1, "the unchanged row was not served from Redis"
