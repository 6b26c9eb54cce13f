"""A randomized differential test of the stale-read promise (stale_random.py has the workload and
the exact check): concurrent writers (autocommit, explicit transactions, savepoints, rollbacks,
pipelined batches, multi-statement Queries; simple, extended and named-prepared protocol) and
readers (the same protocols, and pipelined reads) through two pgrelay instances sharing Redis
(single node or Cluster; WAL listener or not), plus writes made directly on PostgreSQL. Every read
is checked against the ledger of acknowledged commits: a read that started after a commit was
acknowledged must show that commit's rows (or later ones), never a rolled-back version, and
aggregates must equal PostgreSQL's answer when no write was in flight.

One test function per feature, so that what passes is visible:
    test_random_keyed                  keyed (key: id) and unkeyed tables
    test_random_savepoints             transactions with SAVEPOINT / RELEASE / ROLLBACK TO
    test_random_savepoints_release_only  the same without ROLLBACK TO
    test_random_direct_writes          writes made directly on PostgreSQL (WAL listener, its bound)
    test_random_cascade_trigger_view   [cascade | trigger | view | partition]: what the catalog
                                       knows (without cache.invalidate lines, and with them for
                                       comparison: "+invalidate")
    test_random_replicas               reads: replicas (read-your-writes for the writer, cache hits
                                       of a third instance's only client checked strictly)

Configurations: CONFIGS below (two instances, L1 + Redis single node or Cluster, WAL listener on
pg_logical or not); direct writes only with the listener (checked with cache_matrix.WAL_BOUND);
replicas on pg + pg_replica with a third instance for the probe.

The default (1500 reads per test, 39,000 over the file) takes 2-5 s per test, about 1 min for the
file with ASan.
The full run (100,000 reads per test, release build):
    PGRELAY_STALE_READS=100000 PGRELAY_IT_TEST_TIMEOUT=900 PGRELAY_BIN=build/pgrelay \
        /usr/bin/python3 -m pytest -p no:cacheprovider tests/integration/test_stale_random.py -q -s

Environment:
    PGRELAY_STALE_READS   reads per test (default 1500)
    PGRELAY_STALE_WRITE_PAUSE  mean seconds between a writer's transactions (default 0.05)
    PGRELAY_STALE_REPLAY_PAUSES  0: the replica test does not pause the replica's replay
    PGRELAY_STALE_SEED    a fixed seed (default: random, printed)
    PGRELAY_STALE_REPORT  a file the summaries (and violations) are appended to
Run with -s to see each test's summary (reads/s, hit rates, checks) when it passes.
"""
import contextlib

import pytest

from cache_matrix import Config
from stale_random import StaleDeployment, run_random

CONFIGS = {
    "redis-nowal": Config("single", False, 2),
    "redis-wal": Config("single", True, 2),
    "cluster-nowal": Config("cluster", False, 2),
    "cluster-wal": Config("cluster", True, 2),
}


@contextlib.contextmanager
def deployed(request, cfg_name, pg, workdir, *, invalidate=False, replica=None, instances=None):
    cfg = CONFIGS[cfg_name]
    if instances:
        cfg = Config(cfg.l2, cfg.wal, instances)
    redis_single = request.getfixturevalue("redis_single") if cfg.l2 == "single" else None
    redis_cluster = request.getfixturevalue("redis_cluster") if cfg.l2 == "cluster" else None
    if redis_cluster:
        redis_cluster.wait_ok()
    d = StaleDeployment(cfg, pg, workdir, redis_single, redis_cluster, invalidate=invalidate, replica=replica)
    request.node._pgrelays = d.started  # conftest attaches their logs to a failure
    try:
        d.start()
        yield d
    finally:
        problems = d.stop()
        if problems:
            pytest.fail("\n".join(problems), pytrace=False)


def check(result):
    summary, detail, n, violations, run, target = result
    assert not run.thread_errors, summary
    assert n >= target, f"only {n} of {target} reads within the time limit\n{summary}"
    assert not violations, f"{summary}\n{detail}"


@pytest.mark.parametrize("cfg", list(CONFIGS))
def test_random_keyed(request, pg_logical, workdir, cfg):
    with deployed(request, cfg, pg_logical, workdir) as d:
        check(run_random(d, "keyed"))


@pytest.mark.parametrize("cfg", list(CONFIGS))
def test_random_savepoints(request, pg_logical, workdir, cfg):
    with deployed(request, cfg, pg_logical, workdir) as d:
        check(run_random(d, "savepoints"))


@pytest.mark.parametrize("cfg", ["redis-nowal", "cluster-wal"])
def test_random_savepoints_release_only(request, pg_logical, workdir, cfg):
    """The same with SAVEPOINT and RELEASE only (no ROLLBACK TO): separates what ROLLBACK TO breaks."""
    with deployed(request, cfg, pg_logical, workdir) as d:
        check(run_random(d, "savepoints-release"))


@pytest.mark.parametrize("cfg", ["redis-wal", "cluster-wal"])
def test_random_direct_writes(request, pg_logical, workdir, cfg):
    with deployed(request, cfg, pg_logical, workdir) as d:
        check(run_random(d, "direct", direct_writes=True))


@pytest.mark.parametrize("cfg", ["redis-nowal", "redis-wal", "redis-nowal+invalidate"])
@pytest.mark.parametrize("feature", ["cascade", "trigger", "view", "partition"])
def test_random_cascade_trigger_view(request, pg_logical, workdir, feature, cfg):
    name, _, extra = cfg.partition("+")
    with deployed(request, name, pg_logical, workdir, invalidate=extra == "invalidate") as d:
        check(run_random(d, feature))


@pytest.mark.parametrize("cfg", ["redis-nowal", "cluster-nowal"])
def test_random_replicas(request, pg, pg_replica, workdir, cfg):
    """Replica routing (reads: replicas) with L1 + Redis (single or Cluster), two instances and a third one whose only
    client is the probe. pgrelay promises: the writing client reads its own writes (scope "own");
    what the cache serves is fresh (the probe's hits, scope "all"); plain replica reads by other
    clients may lag (checked for version sanity only, lag counted). The replica's replay is paused
    for a moment every second or so (max_lag 1GB keeps it in use)."""
    pg_replica.ensure_running()
    with deployed(request, cfg, pg, workdir, replica=pg_replica, instances=3) as d:
        check(run_random(d, "replicas", replica=pg_replica))
