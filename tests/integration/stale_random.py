"""stale_random — a randomized differential check of the result cache's stale-read promise
(test_stale_random.py runs it).

Writers and readers run concurrently through two (or three) pgrelay instances sharing Redis, and
directly on PostgreSQL; every write and every read goes into a ledger with its times, and the
ledger is checked after the run (check()).

Versions. Every row holds a column v set by every write to nextval('sr.vseq'): versions are
unique in the whole schema, and per row they grow in commit order (an UPDATE that waited for a
row lock re-evaluates nextval after the lock; INSERT and DELETE of one key are serialized by a
Python lock held from before the statement to after the acknowledgement, so an INSERT's version
is above every version of the row's previous life). Each write returns (RETURNING) the rows and
versions it made: a row's history is the list of its versions (and deletions: "deleted at v" sits
just after v) with, for each, the time its commit was sent and the time it was acknowledged.
Other tables' versions: sr.counter.n is set by the trigger of sr.events (BEFORE INSERT: UPDATE
sr.counter SET n = nextval(..) RETURNING n INTO NEW.cn, so the INSERT returns it); sr.child rows
also hold inc (the version of the INSERT that made them), and a DELETE of a parent returns
nextval (d): the cascade removed exactly the children of that parent whose inc < d.

What is asserted for each read (a read = one statement; it started at s, before its message was
sent, and ended at e, when its reply was in):
  version sanity   every version read is one a write made for that very row (not another row's:
                   "wrong-row"), whose transaction was not rolled back ("rolled-back": incl. writes
                   undone by ROLLBACK TO SAVEPOINT), and whose commit was sent before e ("future",
                   a harness self-check); an unknown version is "unknown";
  freshness        let W be the latest (in the row's commit order) write of the row acknowledged
                   before s (writes made directly on PostgreSQL: acknowledged + WAL_BOUND, with the
                   WAL listener). The read must show W's state or a later one: a version >= W's;
                   absent only if W deleted the row or a deletion after W (direct or by cascade)
                   was sent before e; present after W deleted it only as a later version
                   ("stale"). A child row whose parent was deleted by a commit acknowledged
                   before s, and whose inc is below that delete's d, must not be read
                   ("cascade-stale");
  aggregates       (count/sum over a table, a view, a join) compared with the same statement run on
                   PostgreSQL directly right after; decided (and then must be equal: "aggregate")
                   only when no write that could change them (committed or of unknown outcome) was
                   in flight between the start of the read through pgrelay and the end of the
                   direct one; otherwise counted as undecided.
Scopes: "all" (every commit, the promise of the cache), "own" (only the reading client's own
commits: read-your-writes, for reads that may go to a replica), "loose" (version sanity only: a
plain replica read by another client may lag; "replica-lag" counts those as information).

A failed check is a violation; each is printed with the read (statement, parameters, protocol,
instance, client, times), what was expected and got, and the row's whole history.
"""
import bisect
import collections
import itertools
import os
import random
import tempfile
import threading
import time
import traceback
import uuid

import psycopg
from psycopg import pq

from cache_matrix import Deployment
from conftest import APP_PASSWORD, Relay, base_config, deep_merge, free_port, wait_for

S = "sr"  # the schema
NKEYS = 24  # keys 1..NKEYS in k1, k2, u1, vbase, pt, parent (one in five absent at the start)
NCHILD = 36  # child ids 1..NCHILD
NKINDS = 6  # counter ids 1..NKINDS
PT_SPLIT = NKEYS // 2  # pt_a holds 1..PT_SPLIT, pt_b the rest

RULES = [
    {"schema": S, "tables": ["k1", "k2", "parent", "child", "counter", "vbase", "vk", "pt", "pt_a", "pt_b"],
     "key": "id", "ttl": "5m"},
    {"schema": S, "ttl": "5m"},  # u1, events: table versions only
]
# The documented workaround for what pgrelay does not learn from the catalog yet (for comparison).
INVALIDATE = [
    {"table": f"{S}.parent", "also": [f"{S}.child"]},
    {"table": f"{S}.events", "also": [f"{S}.counter"]},
    {"table": f"{S}.vbase", "also": [f"{S}.vk"]},
    {"table": f"{S}.pt_a", "also": [f"{S}.pt"]},
    {"table": f"{S}.pt_b", "also": [f"{S}.pt"]},
    {"table": f"{S}.pt", "also": [f"{S}.pt_a", f"{S}.pt_b"]},
]

# The row a table's rows are (a view's rows are its base table's, a partition's its parent's).
ROWTABLE = {"vk": "vbase", "pt_a": "pt", "pt_b": "pt"}
# What a write to a table may change (for deciding aggregates).
WRITES_ALSO = {"parent": {"child"}, "events": {"counter"}, "pt_a": {"pt"}, "pt_b": {"pt"}, "vk": {"vbase"}}

EXPECTED_SQLSTATES = {"23505", "23503", "40P01"}  # unique / FK violation, deadlock: the workload's own

SCHEMA_SQL = f"""
DROP SCHEMA IF EXISTS {S} CASCADE;
CREATE SCHEMA {S};
GRANT USAGE ON SCHEMA {S} TO app;
CREATE SEQUENCE {S}.vseq;
CREATE TABLE {S}.k1 (id int PRIMARY KEY, v bigint NOT NULL);
ALTER TABLE {S}.k1 REPLICA IDENTITY FULL;
CREATE TABLE {S}.k2 (id int PRIMARY KEY, v bigint NOT NULL);
CREATE TABLE {S}.u1 (id int PRIMARY KEY, v bigint NOT NULL);
CREATE TABLE {S}.parent (id int PRIMARY KEY, v bigint NOT NULL);
CREATE TABLE {S}.child (id int PRIMARY KEY, parent_id int NOT NULL REFERENCES {S}.parent ON DELETE CASCADE,
                        v bigint NOT NULL, inc bigint NOT NULL);
CREATE INDEX ON {S}.child (parent_id);
CREATE TABLE {S}.counter (id int PRIMARY KEY, n bigint NOT NULL);
CREATE TABLE {S}.events (id bigserial PRIMARY KEY, kind int NOT NULL, cn bigint);
CREATE FUNCTION {S}.count_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE {S}.counter SET n = nextval('{S}.vseq') WHERE id = NEW.kind RETURNING n INTO NEW.cn;
  RETURN NEW;
END $$;
CREATE TRIGGER count_event BEFORE INSERT ON {S}.events FOR EACH ROW EXECUTE FUNCTION {S}.count_event();
CREATE TABLE {S}.vbase (id int PRIMARY KEY, v bigint NOT NULL);
CREATE VIEW {S}.vk AS SELECT id, v FROM {S}.vbase;
CREATE TABLE {S}.pt (id int PRIMARY KEY, v bigint NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE {S}.pt_a PARTITION OF {S}.pt FOR VALUES FROM (MINVALUE) TO ({PT_SPLIT + 1});
CREATE TABLE {S}.pt_b PARTITION OF {S}.pt FOR VALUES FROM ({PT_SPLIT + 1}) TO (MAXVALUE);
GRANT ALL ON ALL TABLES IN SCHEMA {S} TO app;
GRANT ALL ON ALL SEQUENCES IN SCHEMA {S} TO app;
"""


def create_schema(db):
    """Creates the schema and its first rows on the superuser connection db; returns the initial
    state {(rowtable, id): version or None} and the children's (inc, parent)."""
    db.execute(SCHEMA_SQL)
    present = [k for k in range(1, NKEYS + 1) if k % 5]
    for t in ("k1", "k2", "u1", "vbase", "pt", "parent"):
        db.execute(f"INSERT INTO {S}.{t} (id, v) SELECT k, nextval('{S}.vseq') FROM unnest(%s::int[]) k", (present,))
    parents = present
    for c in range(1, NCHILD + 1):
        if c % 7:
            db.execute(f"INSERT INTO {S}.child (id, parent_id, v, inc) VALUES (%s, %s, nextval('{S}.vseq'), "
                       f"currval('{S}.vseq'))", (c, parents[c % len(parents)]))
    for k in range(1, NKINDS + 1):
        db.execute(f"INSERT INTO {S}.counter (id, n) VALUES (%s, nextval('{S}.vseq'))", (k,))
    db.execute(f"ANALYZE {S}.k1, {S}.k2, {S}.u1, {S}.vbase, {S}.pt, {S}.parent, {S}.child, {S}.counter")
    init = {}
    children = {}
    for t in ("k1", "k2", "u1", "vbase", "pt", "parent"):
        have = dict(db.execute(f"SELECT id, v FROM {S}.{t}").fetchall())
        for k in range(1, NKEYS + 1):
            init[(t, k)] = have.get(k)
    have = {i: (v, inc, p) for i, v, inc, p in db.execute(f"SELECT id, v, inc, parent_id FROM {S}.child")}
    for c in range(1, NCHILD + 1):
        init[("child", c)] = have[c][0] if c in have else None
        if c in have:
            children[c] = (have[c][1], have[c][2])
    for k, n in db.execute(f"SELECT id, n FROM {S}.counter"):
        init[("counter", k)] = n
    return init, children


# ---------------------------------------------------------------- the ledger


class Effect:
    """What one statement did to one row: op "set" (the row now has version v) or "del" (the row,
    at version v, is gone); inc/parent for child rows."""
    __slots__ = ("row", "op", "v", "inc", "parent", "txn")

    def __init__(self, row, op, v, inc=None, parent=None):
        self.row, self.op, self.v, self.inc, self.parent, self.txn = row, op, v, inc, parent, None

    @property
    def order(self):
        return 2 * self.v + (1 if self.op == "del" else 0)

    def __repr__(self):
        extra = f" inc={self.inc} parent={self.parent}" if self.inc is not None else ""
        return f"{self.op} v={self.v}{extra}"


class Txn:
    """One transaction (or autocommit statement, or implicit transaction of a batch)."""
    __slots__ = ("tid", "client", "where", "mode", "proto", "status", "t0", "t_commit", "t_ack", "committed",
                 "undone", "cascades", "tables", "stmts", "error", "direct")

    def __init__(self, tid, client, where, mode, proto, direct=False):
        self.tid, self.client, self.where, self.mode, self.proto = tid, client, where, mode, proto
        self.status = None  # committed | rolledback | ambiguous
        self.t0 = self.t_commit = self.t_ack = None
        self.committed = []  # effects that the commit made durable (if status is committed)
        self.undone = []  # effects rolled back (ROLLBACK TO, ROLLBACK, an error)
        self.cascades = []  # (parent id, d)
        self.tables = set()
        self.stmts = []
        self.error = None
        self.direct = direct

    def describe(self, t_base):
        times = f"{self.t_commit - t_base:+.4f}..{self.t_ack - t_base:+.4f}" if self.t_ack else "(no ack)"
        return (f"txn#{self.tid} {self.status} {self.mode}/{self.proto} by {self.client} via {self.where} "
                f"commit sent..acked {times}: " + " ; ".join(self.stmts)
                + (f"  [error {self.error}]" if self.error else ""))


class Read:
    __slots__ = ("rid", "client", "where", "proto", "kind", "sql", "params", "s", "e", "rows", "scope", "feature",
                 "direct_rows", "ds", "de", "hit", "spec")

    def __init__(self, rid, client, where, proto, kind, sql, params, spec, feature, scope):
        self.rid, self.client, self.where, self.proto, self.kind = rid, client, where, proto, kind
        self.sql, self.params, self.spec, self.feature, self.scope = sql, params, spec, feature, scope
        self.s = self.e = self.ds = self.de = None
        self.rows = self.direct_rows = None
        self.hit = None

    def describe(self, t_base):
        hit = "" if self.hit is None else (" (cache hit)" if self.hit else " (miss)")
        return (f"read#{self.rid} {self.kind} by {self.client} via {self.where} proto={self.proto}{hit} "
                f"started {self.s - t_base:+.4f} ended {self.e - t_base:+.4f}: {self.sql} {list(self.params)} "
                f"-> {self.rows}")


class Ledger:
    def __init__(self):
        self.txns = []
        self.reads = []
        self.errors = collections.Counter()  # (where, sqlstate or type) -> n
        self.error_samples = {}
        self._ids = itertools.count(1)
        self.t_base = time.monotonic()

    def next_id(self):
        return next(self._ids)

    def note_error(self, where, exc):
        k = (where, getattr(exc, "sqlstate", None) or type(exc).__name__)
        self.errors[k] += 1
        self.error_samples.setdefault(k, str(exc).strip().splitlines()[0][:200] if str(exc).strip() else repr(exc))


# ---------------------------------------------------------------- statements


class W:
    """One write statement: sql with %s parameters; kind tells how to read its RETURNING rows;
    lock: the (rowtable, id) pairs that must be held (INSERT / DELETE)."""

    def __init__(self, kind, table, sql, params, lock=(), tables=()):
        self.kind, self.table, self.sql, self.params = kind, table, sql, tuple(params)
        self.lock = tuple(lock)
        self.tables = {ROWTABLE.get(table, table)} | WRITES_ALSO.get(table, set()) | set(tables)

    def effects(self, rows):
        """(effects, cascades) from the statement's RETURNING rows."""
        eff, cas = [], []
        rt = ROWTABLE.get(self.table, self.table)
        for r in rows:
            if self.kind in ("set", "del"):
                eff.append(Effect((rt, r[0]), self.kind, r[1]))
            elif self.kind in ("child-set", "child-del"):
                eff.append(Effect(("child", r[0]), self.kind[6:], r[1], inc=r[2], parent=r[3]))
            elif self.kind == "parent-del":
                eff.append(Effect(("parent", r[0]), "del", r[1]))
                cas.append((r[0], r[2]))
            elif self.kind == "event":
                eff.append(Effect(("counter", r[1]), "set", r[2]))
        return eff, cas

    def text(self):
        return self.sql.replace("%s", "{}").format(*self.params)

    def __repr__(self):
        return self.text()


def upd(t, k):
    return W("set", t, f"UPDATE {S}.{t} SET v = nextval('{S}.vseq') WHERE id = %s RETURNING id, v", [k])


def ins(t, k):
    return W("set", t, f"INSERT INTO {S}.{t} (id, v) VALUES (%s, nextval('{S}.vseq')) RETURNING id, v", [k],
             lock=[(ROWTABLE.get(t, t), k)])


def dele(t, k):
    return W("del", t, f"DELETE FROM {S}.{t} WHERE id = %s RETURNING id, v", [k], lock=[(ROWTABLE.get(t, t), k)])


def range_upd(t, lo, hi):
    """A write whose rows pgrelay cannot name by key."""
    return W("set", t, f"UPDATE {S}.{t} SET v = nextval('{S}.vseq') WHERE id BETWEEN %s AND %s RETURNING id, v",
             [lo, hi])


def in_upd(t, keys):
    return W("set", t, f"UPDATE {S}.{t} SET v = nextval('{S}.vseq') WHERE id IN ({', '.join(['%s'] * len(keys))}) "
             "RETURNING id, v", keys)


CHILD_RET = "RETURNING id, v, inc, parent_id"


def child_ins(c, p):
    return W("child-set", "child", f"INSERT INTO {S}.child (id, parent_id, v, inc) VALUES "
             f"(%s, %s, nextval('{S}.vseq'), currval('{S}.vseq')) {CHILD_RET}", [c, p], lock=[("child", c)])


def child_upd(c):
    return W("child-set", "child", f"UPDATE {S}.child SET v = nextval('{S}.vseq') WHERE id = %s {CHILD_RET}", [c])


def child_del(c):
    return W("child-del", "child", f"DELETE FROM {S}.child WHERE id = %s {CHILD_RET}", [c], lock=[("child", c)])


def parent_del(p):
    return W("parent-del", "parent", f"DELETE FROM {S}.parent WHERE id = %s RETURNING id, v, nextval('{S}.vseq')",
             [p], lock=[("parent", p)])


def event_ins(kind):
    return W("event", "events", f"INSERT INTO {S}.events (kind) VALUES (%s) RETURNING id, kind, cn", [kind])


def counter_upd(k):
    return W("set", "counter", f"UPDATE {S}.counter SET n = nextval('{S}.vseq') WHERE id = %s RETURNING id, n", [k])


# Reads: (kind, sql, params, spec, feature). spec says how to check the rows:
#   ("point", rowtable, key, cols)       one row or none; cols: "v" (id, v) / "child" (id, v, inc, parent_id)
#   ("range", rowtable, lo, hi)           rows (id, v) of lo..hi
#   ("join-kk", k)                        LEFT JOIN k1/k2 on id: (k1.id, k1.v, k2.v)
#   ("join-cp", c)                        child JOIN parent: (c.id, c.v, c.inc, c.parent_id, p.id, p.v)
#   ("agg", tables)                       compared with the direct read when decidable

def point(t, k, feature):
    if t == "child":
        return ("point", f"SELECT id, v, inc, parent_id FROM {S}.child WHERE id = %s", [k],
                ("point", "child", k, "child"), feature)
    col = "n" if t == "counter" else "v"
    return ("point", f"SELECT id, {col} FROM {S}.{t} WHERE id = %s", [k], ("point", ROWTABLE.get(t, t), k, "v"),
            feature)


def rng(t, lo, hi, feature):
    return ("range", f"SELECT id, v FROM {S}.{t} WHERE id BETWEEN %s AND %s ORDER BY id", [lo, hi],
            ("range", ROWTABLE.get(t, t), lo, hi), feature)


def agg(sql, params, tables, feature):
    return ("agg", sql, params, ("agg", set(tables)), feature)


# ---------------------------------------------------------------- the workload per feature

FEATURES = ("keyed", "savepoints", "savepoints-release", "direct", "cascade", "trigger", "view", "partition",
            "replicas")


def rand_key(rnd):
    return rnd.randint(1, NKEYS)


class Workload:
    """Random statements of one feature."""

    def __init__(self, feature, init):
        self.feature = feature
        self.present = {row: v is not None for row, v in init.items()}

    # -- writes --
    def key(self, rnd, table, want_present, n=NKEYS):
        """A key of table that is (probably: the writers' last view) present or absent."""
        rt = ROWTABLE.get(table, table)
        for _ in range(4):
            k = rnd.randint(1, n)
            if self.present.get((rt, k), False) == want_present:
                return k
        return rnd.randint(1, n)

    def one_write(self, rnd, direct=False):
        f = self.feature
        x = rnd.random()
        if f in ("keyed", "savepoints", "savepoints-release", "direct", "replicas"):
            t = rnd.choice(("k1", "u1") if direct else ("k1", "k2", "u1"))
            if x < 0.6:
                return upd(t, self.key(rnd, t, True))
            if x < 0.78:
                return ins(t, self.key(rnd, t, False))
            if x < 0.94:
                return dele(t, self.key(rnd, t, True))
            if x < 0.97:
                lo = rand_key(rnd)
                return range_upd(t, lo, lo + rnd.randint(0, 3))
            return in_upd(t, sorted({rand_key(rnd) for _ in range(2)}))
        if f == "cascade":
            if x < 0.35:
                return child_upd(self.key(rnd, "child", True, NCHILD))
            if x < 0.55:
                return child_ins(self.key(rnd, "child", False, NCHILD), self.key(rnd, "parent", True))
            if x < 0.65:
                return child_del(self.key(rnd, "child", True, NCHILD))
            if x < 0.8:
                return upd("parent", self.key(rnd, "parent", True))
            if x < 0.9:
                return ins("parent", self.key(rnd, "parent", False))
            return parent_del(self.key(rnd, "parent", True))
        if f == "trigger":
            if x < 0.75:
                return event_ins(rnd.randint(1, NKINDS))
            return counter_upd(rnd.randint(1, NKINDS))
        if f == "view":
            if x < 0.6:
                return upd("vbase", self.key(rnd, "vbase", True))
            if x < 0.8:
                return ins("vbase", self.key(rnd, "vbase", False))
            return dele("vbase", self.key(rnd, "vbase", True))
        if f == "partition":
            k = self.key(rnd, "pt", x < 0.6 or x >= 0.8)
            leaf = "pt_a" if k <= PT_SPLIT else "pt_b"
            t = leaf if rnd.random() < 0.4 else "pt"  # through the leaf: pgrelay sees the partition's name
            if x < 0.6:
                return upd(t, k)
            if x < 0.8:
                return ins(t, k)
            return dele(t, k)
        raise AssertionError(f)

    def learn(self, txn):
        """The writers' view of which rows exist (to pick INSERTs of absent keys, DELETEs of present ones)."""
        if txn.status == "committed":
            for e in txn.committed:
                self.present[e.row] = e.op == "set"

    def writes(self, rnd, n, direct=False):
        ws = [self.one_write(rnd, direct) for _ in range(n)]
        # a fixed order (parents first) keeps deadlocks rare
        rank = {"parent": 0, "events": 1, "counter": 2}
        return sorted(ws, key=lambda w: (rank.get(w.table, 3), w.table, w.params))

    def op(self, rnd, direct=False):
        """A transaction plan: (mode, steps, end). steps: ("w", W) | ("try", W) (in its own savepoint,
        rolled back to on error) | ("sp", name) | ("release", name) | ("rollback_to", name);
        end: "commit" or "rollback". Modes: auto (one statement, autocommit), tx (BEGIN ... end),
        pipeline (autocommit batch: one implicit transaction up to Sync), pipeline-tx (BEGIN ... COMMIT
        in one batch), multi (several statements in one simple Query: one implicit transaction)."""
        x = rnd.random()
        if self.feature in ("savepoints", "savepoints-release") and not direct and x < 0.7:
            release_only = self.feature == "savepoints-release"
            steps = [("w", w) for w in self.writes(rnd, rnd.randint(1, 2))]
            for name in ("a", "b")[:rnd.randint(1, 2)]:
                steps.append(("sp", name))
                steps += [("w", w) for w in self.writes(rnd, rnd.randint(1, 2))]
                if rnd.random() < 0.3 and not release_only:
                    steps.append(("try", self.one_write(rnd)))
                steps.append(("release" if release_only else rnd.choice(("rollback_to", "rollback_to", "release")),
                              name))
                if rnd.random() < 0.5:
                    steps += [("w", w) for w in self.writes(rnd, 1)]
            return "tx", steps, "rollback" if rnd.random() < 0.1 else "commit"
        if x < 0.45:
            return "auto", [("w", self.one_write(rnd, direct))], "commit"
        if x < 0.75 or direct:
            n = rnd.randint(2, 4)
            end = "rollback" if rnd.random() < 0.15 else "commit"
            return "tx", [("w", w) for w in self.writes(rnd, n, direct)], end
        if x < 0.85:
            return "pipeline", [("w", w) for w in self.writes(rnd, rnd.randint(2, 3))], "commit"
        if x < 0.92:
            return "pipeline-tx", [("w", w) for w in self.writes(rnd, rnd.randint(2, 3))], "commit"
        return "multi", [("w", w) for w in self.writes(rnd, 2)], "commit"

    # -- reads --
    def read(self, rnd):
        f = self.feature
        k = rand_key(rnd)
        x = rnd.random()
        if f in ("keyed", "savepoints", "savepoints-release", "direct", "replicas"):
            t = rnd.choice(("k1", "k2", "u1"))
            if x < 0.6:
                return point(t, k, f)
            if x < 0.78:
                return rng(t, k, k + rnd.randint(0, 4), f)
            if x < 0.9:
                return ("join", f"SELECT a.id, a.v, b.v FROM {S}.k1 a LEFT JOIN {S}.k2 b ON b.id = a.id "
                        "WHERE a.id = %s", [k], ("join-kk", k), f)
            t = rnd.choice(("k2", "u1", "k1"))
            return agg(f"SELECT count(*), coalesce(sum(v), 0) FROM {S}.{t}", [], [t], f)
        if f == "cascade":
            c = rnd.randint(1, NCHILD)
            if x < 0.45:
                return point("child", c, f)
            if x < 0.6:
                return point("parent", k, f)
            if x < 0.8:
                return ("join", f"SELECT c.id, c.v, c.inc, c.parent_id, p.id, p.v FROM {S}.child c "
                        f"JOIN {S}.parent p ON p.id = c.parent_id WHERE c.id = %s", [c], ("join-cp", c), f)
            if x < 0.9:
                return agg(f"SELECT count(*), coalesce(sum(v), 0) FROM {S}.child WHERE parent_id = %s", [k],
                           ["child"], f)
            return agg(f"SELECT count(*) FROM {S}.child", [], ["child"], f)
        if f == "trigger":
            kind = rnd.randint(1, NKINDS)
            if x < 0.6:
                return point("counter", kind, f)
            if x < 0.8:
                return agg(f"SELECT count(*) FROM {S}.events WHERE kind = %s", [kind], ["events"], f)
            return agg(f"SELECT coalesce(sum(n), 0) FROM {S}.counter", [], ["counter"], f)
        if f == "view":
            if x < 0.6:
                return point("vk", k, f)
            if x < 0.75:
                return rng("vk", k, k + rnd.randint(0, 4), f)
            if x < 0.85:
                return point("vbase", k, f)
            return agg(f"SELECT count(*), coalesce(sum(v), 0) FROM {S}.vk", [], ["vbase"], f)
        if f == "partition":
            if x < 0.5:
                return point("pt", k, f)
            if x < 0.7:
                return point("pt_a" if k <= PT_SPLIT else "pt_b", k, f)
            if x < 0.85:
                return rng("pt", k, k + rnd.randint(0, 4), f)
            return agg(f"SELECT count(*), coalesce(sum(v), 0) FROM {S}.pt", [], ["pt"], f)
        raise AssertionError(f)


# ---------------------------------------------------------------- clients

PROTOS = ("simple", "extended", "prepared")
READ_PROTOS = PROTOS * 3 + ("pipeline",)  # pipelined reads (never served from the cache) one in ten


class Client:
    """A psycopg connection (autocommit) through pgrelay or directly on PostgreSQL; each statement
    is sent with the protocol asked for: simple (ClientCursor: Query), extended (unnamed
    Parse/Bind/Describe/Execute/Sync), prepared (psycopg prepare=True: a named statement)."""

    def __init__(self, name, where, connect):
        self.name, self.where, self._connect = name, where, connect
        self.conn = None
        self.reconnect()

    def reconnect(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                pass
        self.conn = self._connect()

    def cursor(self, proto):
        return psycopg.ClientCursor(self.conn) if proto == "simple" else self.conn.cursor()

    def run(self, proto, sql, params=()):
        cur = self.cursor(proto)
        cur.execute(sql, params or None, **({"prepare": True} if proto == "prepared" else {}))
        return cur.fetchall() if cur.description else []

    def in_error(self):
        return self.conn.info.transaction_status == pq.TransactionStatus.INERROR

    def in_tx(self):
        return self.conn.info.transaction_status in (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)

    def broken(self):
        return self.conn.closed or self.conn.broken

    def close(self):
        try:
            self.conn.close()
        except Exception:  # noqa: BLE001
            pass


class KeyLocks:
    def __init__(self):
        self._locks = collections.defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def acquire(self, keys):
        keys = sorted(set(keys))
        with self._guard:
            locks = [self._locks[k] for k in keys]
        for lk in locks:
            lk.acquire()
        return locks

    @staticmethod
    def release(locks):
        for lk in reversed(locks):
            lk.release()


# ---------------------------------------------------------------- running

class Run:
    """One randomized run: threads of writers and readers over the given clients."""

    def __init__(self, ledger, workload, seed):
        self.ledger = ledger
        self.workload = workload
        self.seed = seed
        self.locks = KeyLocks()
        self.stop = threading.Event()
        self.reads_done = 0
        self.count_lock = threading.Lock()
        self.thread_errors = []

    # -- writes --
    def write_txn(self, client, rnd, direct=False, readback=None):
        mode, steps, end = self.workload.op(rnd, direct)
        proto = rnd.choice(PROTOS)
        if mode == "multi":
            proto = "simple"
        if mode.startswith("pipeline") and proto == "simple":
            proto = "extended"
        led = self.ledger
        txn = Txn(led.next_id(), client.name, client.where, mode, proto, direct=direct)
        ws = [s[1] for s in steps if s[0] in ("w", "try")]
        locks = self.locks.acquire([lk for w in ws for lk in w.lock])
        try:
            self._exec_txn(client, txn, steps, end, rnd)
        finally:
            KeyLocks.release(locks)
        led.txns.append(txn)
        self.workload.learn(txn)
        if readback and txn.status == "committed" and txn.committed:
            readback(txn)
        return txn

    def _exec_txn(self, client, txn, steps, end, rnd):
        led = self.ledger
        levels = [("", [])]  # (savepoint name, effects since it)
        cascades = []

        def apply(w, rows):
            eff, cas = w.effects(rows)
            for e in eff:
                e.txn = txn
            levels[-1][1].extend(eff)
            cascades.extend(cas)
            txn.tables |= w.tables

        def undo_all():
            for _, eff in levels:
                txn.undone.extend(eff)
                for e in eff:
                    e.txn = txn
            levels[:] = [("", [])]
            cascades.clear()

        mode, proto = txn.mode, txn.proto
        txn.stmts = []
        try:
            if mode == "auto":
                w = steps[0][1]
                txn.stmts.append(w.text())
                txn.t0 = txn.t_commit = time.monotonic()
                try:
                    rows = client.run(proto, w.sql, w.params)
                except psycopg.Error as e:
                    txn.t_ack = time.monotonic()
                    self._failed(client, txn, e, commit_phase=True)
                    return
                txn.t_ack = time.monotonic()
                apply(w, rows)
            elif mode == "multi":
                ws = [s[1] for s in steps]
                sql = "; ".join(w.sql for w in ws)
                params = [p for w in ws for p in w.params]
                txn.stmts.append(" ; ".join(w.text() for w in ws))
                txn.t0 = txn.t_commit = time.monotonic()
                try:
                    cur = psycopg.ClientCursor(client.conn)
                    cur.execute(sql, params)
                    results = [cur.fetchall()]
                    while cur.nextset():
                        results.append(cur.fetchall())
                except psycopg.Error as e:
                    txn.t_ack = time.monotonic()
                    self._failed(client, txn, e, commit_phase=True)
                    return
                txn.t_ack = time.monotonic()
                for w, rows in zip(ws, results):
                    apply(w, rows)
            elif mode in ("pipeline", "pipeline-tx"):
                ws = [s[1] for s in steps]
                txn.stmts = (["BEGIN"] if mode == "pipeline-tx" else []) + [w.text() for w in ws] + \
                    (["COMMIT"] if mode == "pipeline-tx" else [])
                txn.t0 = txn.t_commit = time.monotonic()
                curs = []
                try:
                    with client.conn.pipeline():
                        if mode == "pipeline-tx":
                            client.cursor(proto).execute("BEGIN")
                        for w in ws:
                            cur = client.cursor(proto)
                            cur.execute(w.sql, w.params, **({"prepare": True} if proto == "prepared" else {}))
                            curs.append(cur)
                        if mode == "pipeline-tx":
                            client.cursor(proto).execute("COMMIT")
                    results = [c.fetchall() for c in curs]
                except psycopg.Error as e:
                    txn.t_ack = time.monotonic()
                    self._failed(client, txn, e, commit_phase=True)
                    return
                txn.t_ack = time.monotonic()
                for w, rows in zip(ws, results):
                    apply(w, rows)
            else:  # tx
                txn.t0 = time.monotonic()
                client.run(proto, "BEGIN")
                txn.stmts.append("BEGIN")
                for step in steps:
                    kind = step[0]
                    if kind == "w":
                        w = step[1]
                        txn.stmts.append(w.text())
                        try:
                            rows = client.run(proto, w.sql, w.params)
                        except psycopg.Error as e:
                            self._failed(client, txn, e, commit_phase=False)
                            undo_all()
                            return
                        apply(w, rows)
                    elif kind == "try":
                        w = step[1]
                        txn.stmts += ["SAVEPOINT t", w.text()]
                        client.run(proto, "SAVEPOINT t")
                        levels.append(("t", []))
                        try:
                            rows = client.run(proto, w.sql, w.params)
                            apply(w, rows)
                            client.run(proto, "RELEASE SAVEPOINT t")
                            txn.stmts.append("RELEASE SAVEPOINT t")
                            _, eff = levels.pop()
                            levels[-1][1].extend(eff)
                        except psycopg.Error as e:
                            if client.broken():
                                raise
                            led.note_error(client.where, e)
                            client.run(proto, "ROLLBACK TO SAVEPOINT t")
                            txn.stmts.append(f"ROLLBACK TO SAVEPOINT t (after {getattr(e, 'sqlstate', '')})")
                            _, eff = levels.pop()
                            txn.undone.extend(eff)
                    elif kind == "sp":
                        client.run(proto, f"SAVEPOINT {step[1]}")
                        txn.stmts.append(f"SAVEPOINT {step[1]}")
                        levels.append((step[1], []))
                    elif kind == "release":
                        client.run(proto, f"RELEASE SAVEPOINT {step[1]}")
                        txn.stmts.append(f"RELEASE SAVEPOINT {step[1]}")
                        while True:
                            name, eff = levels.pop()
                            levels[-1][1].extend(eff)
                            if name == step[1]:
                                break
                    elif kind == "rollback_to":
                        client.run(proto, f"ROLLBACK TO SAVEPOINT {step[1]}")
                        txn.stmts.append(f"ROLLBACK TO SAVEPOINT {step[1]}")
                        while levels[-1][0] != step[1]:
                            _, eff = levels.pop()
                            txn.undone.extend(eff)
                        txn.undone.extend(levels[-1][1])
                        levels[-1] = (step[1], [])
                txn.stmts.append(end.upper())
                txn.t_commit = time.monotonic()
                try:
                    client.run(proto, end.upper())
                except psycopg.Error as e:
                    txn.t_ack = time.monotonic()
                    self._failed(client, txn, e, commit_phase=end == "commit")
                    if txn.status == "rolledback":
                        undo_all()
                    return
                txn.t_ack = time.monotonic()
                if end == "rollback":
                    undo_all()
                    txn.status = "rolledback"
                    return
            txn.status = "committed"
            for _, eff in levels:
                txn.committed.extend(eff)
            txn.cascades = list(cascades)
        except psycopg.Error as e:
            # a control statement failed (or the connection broke) before the commit was sent
            txn.t_commit = txn.t_commit or time.monotonic()
            txn.t_ack = time.monotonic()
            self._failed(client, txn, e, commit_phase=False)
            undo_all()
        finally:
            if txn.status == "ambiguous":
                txn.committed = [e for _, eff in levels for e in eff]
                txn.cascades = list(cascades)
            elif txn.status == "rolledback":
                for _, eff in levels:
                    txn.undone.extend(eff)
                    for e in eff:
                        e.txn = txn
                levels[:] = [("", [])]

    def _failed(self, client, txn, exc, commit_phase):
        """An error: by PostgreSQL (or pgrelay) with a SQLSTATE -> the transaction is rolled back;
        the connection broke -> during the commit the outcome is unknown."""
        self.ledger.note_error(client.where, exc)
        now = time.monotonic()
        txn.t_commit = txn.t_commit or now
        txn.t_ack = txn.t_ack or now
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        txn.error = f"{getattr(exc, 'sqlstate', None) or type(exc).__name__}: {first[:120]}"
        if client.broken():
            txn.status = "ambiguous" if commit_phase else "rolledback"
            client.reconnect()
            return
        txn.status = "rolledback"
        if client.in_tx():
            try:
                client.run("extended", "ROLLBACK")
            except psycopg.Error as e2:
                self.ledger.note_error(client.where, e2)
                client.reconnect()

    # -- reads --
    def do_read(self, client, rnd, scope, direct_db=None, admin=None, spec=None, proto=None):
        led = self.ledger
        kind, sql, params, rspec, feature = spec or self.workload.read(rnd)
        proto = proto or rnd.choice(READ_PROTOS)
        if proto == "pipeline":
            return self.do_pipeline_read(client, rnd, scope, direct_db)
        r = Read(led.next_id(), client.name, client.where, proto, kind, sql, params, rspec, feature, scope)
        before = self.hits(admin) if admin else None
        r.s = time.monotonic()
        try:
            r.rows = client.run(proto, sql, params)
        except psycopg.Error as e:
            led.note_error(client.where, e)
            if client.broken():
                client.reconnect()
            elif client.in_tx():
                client.run("extended", "ROLLBACK")
            return None
        r.e = time.monotonic()
        if admin:
            # the probe: a hit must be fresh; a miss may come from a lagging replica
            r.hit = self.hits(admin) > before
            r.scope = "all" if r.hit else "loose"
        elif r.scope == "hit":
            r.scope = "loose"
        if kind == "agg" and direct_db is not None:
            r.ds = time.monotonic()
            r.direct_rows = direct_db.execute(sql, params or None).fetchall()
            r.de = time.monotonic()
        led.reads.append(r)
        self.count_read()
        return r

    def do_pipeline_read(self, client, rnd, scope, direct_db):
        led = self.ledger
        specs = [self.workload.read(rnd) for _ in range(rnd.randint(2, 3))]
        specs = [s for s in specs if s[0] != "agg"] or [self.workload.read(rnd)]
        reads = [Read(led.next_id(), client.name, client.where, "pipeline", kind, sql, params, rspec, feature,
                      "loose" if scope == "hit" else scope)
                 for kind, sql, params, rspec, feature in specs]
        s = time.monotonic()
        curs = []
        try:
            with client.conn.pipeline():
                for r in reads:
                    cur = client.cursor("extended")
                    cur.execute(r.sql, r.params or None)
                    curs.append(cur)
            rows = [c.fetchall() for c in curs]
        except psycopg.Error as e:
            led.note_error(client.where, e)
            if client.broken():
                client.reconnect()
            elif client.in_tx():
                client.run("extended", "ROLLBACK")
            return None
        e = time.monotonic()
        for r, rw in zip(reads, rows):
            if r.kind == "agg":
                continue
            r.s, r.e, r.rows = s, e, rw
            led.reads.append(r)
            self.count_read()
        return reads

    @staticmethod
    def hits(admin):
        return next(int(row[3]) for row in admin.execute("SHOW CACHE").fetchall() if row[0] == "total")

    def count_read(self):
        with self.count_lock:
            self.reads_done += 1

    # -- threads --
    def thread(self, name, fn):
        def body():
            try:
                fn()
            except Exception:  # noqa: BLE001 - reported by the test
                self.thread_errors.append(f"{name}: {traceback.format_exc()}")
                self.stop.set()
        t = threading.Thread(target=body, name=name, daemon=True)
        return t


def readback_reads(run, client, rnd, scope, feature):
    """After a committed write, the writing client reads back each row it changed (read-your-writes
    through the instance it wrote through)."""
    def readback(txn):
        rows = {e.row for e in txn.committed}
        for rt, key in sorted(rows)[:3]:
            table = "counter" if rt == "counter" else rt
            kind, sql, params, spec, _ = point(table, key, feature)
            run.do_read(client, rnd, scope, spec=(kind, sql, params, spec, feature),
                        proto=rnd.choice(PROTOS))
    return readback


# ---------------------------------------------------------------- the check

class Violation:
    def __init__(self, kind, read, row, expected, got, refs=()):
        self.kind, self.read, self.row, self.expected, self.got, self.refs = kind, read, row, expected, got, refs


class Checker:
    def __init__(self, ledger, init, children, wal_bound=None, direct_bound=None):
        """init: {(rowtable, id): version or None} at t = -inf; direct_bound: seconds added to the
        acknowledgement of writes made directly on PostgreSQL (the WAL listener's bound; None: none
        were made)."""
        self.led = ledger
        self.direct_bound = direct_bound or 0.0
        self.versions = {}  # v -> Effect ("set" effects)
        self.init = init
        self.rows = collections.defaultdict(list)  # row -> [Effect] of committed / ambiguous txns
        self.undone_versions = {}
        self.cascades = collections.defaultdict(list)  # parent id -> [(d, txn)]
        self.windows = collections.defaultdict(list)  # table -> [(start, end)]
        for row, v in init.items():
            if v is not None:
                e = Effect(row, "set", v)
                if row[0] == "child":
                    e.inc, e.parent = children[row[1]]
                self.versions[v] = e
        for txn in ledger.txns:
            for e in txn.undone:
                if e.op == "set":
                    self.undone_versions[e.v] = e
            if txn.status in ("committed", "ambiguous"):
                for e in txn.committed:
                    if e.op == "set":
                        self.versions[e.v] = e
                    self.rows[e.row].append(e)
                for p, d in txn.cascades:
                    self.cascades[p].append((d, txn))
                end = txn.t_ack + (self.direct_bound if txn.direct else 0.0)
                if txn.status == "ambiguous":
                    end = float("inf")
                for t in txn.tables:
                    self.windows[t].append((txn.t_commit, end))
        # per row: committed events sorted by effective acknowledgement, with the prefix maximum of
        # their commit order (the latest state a read starting after them must reflect)
        self.by_ack = {}
        for row, effs in self.rows.items():
            self.by_ack[row] = self._index([e for e in effs if e.txn.status == "committed"])
        self.by_ack_client = {}
        for t, ws in self.windows.items():
            ws.sort()
            ends, m = [], float("-inf")
            for _, end in ws:
                m = max(m, end)
                ends.append(m)
            self.windows[t] = ([w[0] for w in ws], ends)
        self.violations = []
        self.stats = collections.Counter()
        self.direct_lags = []

    def _eff_ack(self, e):
        return e.txn.t_ack + (self.direct_bound if e.txn.direct else 0.0)

    def _index(self, effs):
        effs = sorted(effs, key=self._eff_ack)
        acks, best, cur = [], [], None
        for e in effs:
            if cur is None or e.order > cur.order:
                cur = e
            acks.append(self._eff_ack(e))
            best.append(cur)
        return acks, best

    def latest(self, row, s, client=None, raw=False):
        """The latest write of row acknowledged before s (None: the initial state)."""
        if client is not None:
            key = (row, client)
            if key not in self.by_ack_client:
                self.by_ack_client[key] = self._index([e for e in self.rows.get(row, ())
                                                       if e.txn.status == "committed" and e.txn.client == client])
            acks, best = self.by_ack_client[key]
        elif raw:
            key = (row, "raw")
            if key not in self.by_ack_client:
                effs = [e for e in self.rows.get(row, ()) if e.txn.status == "committed"]
                effs.sort(key=lambda e: e.txn.t_ack)
                acks, best, cur = [], [], None
                for e in effs:
                    if cur is None or e.order > cur.order:
                        cur = e
                    acks.append(e.txn.t_ack)
                    best.append(cur)
                self.by_ack_client[key] = (acks, best)
            acks, best = self.by_ack_client[key]
        else:
            acks, best = self.by_ack.get(row, ((), ()))
        i = bisect.bisect_left(acks, s)
        return best[i - 1] if i else None

    def _init_order(self, row):
        v = self.init.get(row)
        return -1 if v is None else 2 * v

    def check_row(self, r, row, g, parent=None):
        """g: the version read for row (None: absent); parent: the child's parent id as read."""
        self.stats["rows checked"] += 1
        if g is not None:
            info = self.versions.get(g)
            if info is None:
                undone = self.undone_versions.get(g)
                if undone is not None and undone.row == row:
                    self.violations.append(Violation("rolled-back", r, row, "a committed version", g,
                                                     refs=[undone.txn]))
                else:
                    self.violations.append(Violation("unknown" if undone is None else "wrong-row", r, row,
                                                     "a version written for this row", g,
                                                     refs=[undone.txn] if undone else []))
                return
            if info.row != row:
                self.violations.append(Violation("wrong-row", r, row, "a version written for this row",
                                                 f"{g} (written for {info.row})",
                                                 refs=[info.txn] if info.txn else []))
                return
            if info.txn is not None and info.txn.t_commit > r.e:
                self.violations.append(Violation("future", r, row, "a version committed before the read ended", g,
                                                 refs=[info.txn]))
        if r.scope == "loose":
            stale = self._stale(r, row, g, None, parent, record=False)
            if stale:
                self.stats["replica-lag (allowed)"] += 1
            return
        client = r.client if r.scope == "own" else None
        stale = self._stale(r, row, g, client, parent, record=True)
        if not stale and self.direct_bound and client is None:
            self._direct_lag(r, row, g)

    def _stale(self, r, row, g, client, parent, record):
        w = self.latest(row, r.s, client)
        w_order = w.order if w else self._init_order(row)
        problem = None
        if g is None:
            if w_order % 2 == 0 and not self._deleted_after(row, w, w_order, r.e):
                problem = "absent"
        elif 2 * g < w_order:
            problem = "older"
        if g is not None and row[0] == "child" and parent is not None:
            info = self.versions.get(g)
            inc = info.inc if info else None
            for d, txn in self.cascades.get(parent, ()):
                if inc is not None and d > inc and txn.status == "committed" and \
                        (client is None or txn.client == client) and \
                        txn.t_ack + (self.direct_bound if txn.direct else 0.0) < r.s:
                    if record:
                        self.violations.append(Violation(
                            "cascade-stale", r, row, f"absent: parent {parent} deleted (d={d} > inc={inc})", g,
                            refs=[txn]))
                    return True
        if problem and record:
            exp = (f"v >= {w.v}" if w.op == "set" else f"absent or v > {w.v}") if w else \
                (f"v >= {self.init.get(row)}" if self.init.get(row) else "absent or any committed version")
            self.violations.append(Violation("stale", r, row, exp, g if g is not None else "absent",
                                             refs=[w.txn] if w else []))
        return bool(problem)

    def _deleted_after(self, row, w, w_order, read_end):
        """Was row deleted after w's state (by a commit sent before read_end)?"""
        for e in self.rows.get(row, ()):
            if e.op == "del" and e.order > w_order and e.txn.t_commit < read_end:
                return True
        # a cascade: w's life (or the initial one) belonged to a parent that was deleted after it began
        if row[0] == "child":
            if w is not None and w.op == "set":
                inc, parent = w.inc, w.parent
            else:
                info = self.versions.get(self.init.get(row))
                inc, parent = (info.inc, info.parent) if info else (None, None)
            if parent is not None:
                for d, txn in self.cascades.get(parent, ()):
                    if d > inc and txn.t_commit < read_end:
                        return True
        return False

    def _direct_lag(self, r, row, g):
        """Information: how long after a direct write's acknowledgement a read still saw the state
        before it (within the WAL bound)."""
        w = self.latest(row, r.s, raw=True)
        if w is None or not w.txn.direct:
            return
        if (g is None and w.op == "set" and not self._deleted_after(row, w, w.order, r.e)) or \
                (g is not None and 2 * g < w.order):
            self.direct_lags.append(r.s - w.txn.t_ack)

    def check_read(self, r):
        spec = r.spec
        kind = spec[0]
        self.stats[f"reads ({r.scope})"] += 1
        self.stats[f"reads {r.kind}"] += 1
        if kind == "point":
            _, rt, key, cols = spec
            row = (rt, key)
            if not r.rows:
                self.check_row(r, row, None)
            else:
                got = r.rows[0]
                self.check_row(r, row, got[1], parent=got[3] if cols == "child" else None)
        elif kind == "range":
            _, rt, lo, hi = spec
            got = {row[0]: row[1] for row in r.rows}
            for key in range(lo, hi + 1):
                if rt != "child" and key > NKEYS:
                    continue
                self.check_row(r, (rt, key), got.get(key))
        elif kind == "join-kk":
            key = spec[1]
            if not r.rows:
                self.check_row(r, ("k1", key), None)
            else:
                _, v1, v2 = r.rows[0]
                self.check_row(r, ("k1", key), v1)
                self.check_row(r, ("k2", key), v2)
        elif kind == "join-cp":
            c = spec[1]
            if not r.rows:
                self.check_row(r, ("child", c), None)  # a child always has its parent (FK)
            else:
                cid, cv, inc, pid, _, pv = r.rows[0]
                self.check_row(r, ("child", c), cv, parent=pid)
                self.check_row(r, ("parent", pid), pv)
        elif kind == "agg":
            self.check_agg(r)

    def check_agg(self, r):
        if r.direct_rows is None or r.scope != "all":
            self.stats["aggregates not compared"] += 1
            return
        tables = r.spec[1]
        for t in tables:
            starts, ends = self.windows.get(t, ((), ()))
            i = bisect.bisect_left(starts, r.de)
            if i and ends[i - 1] > r.s:
                self.stats["aggregates undecided"] += 1
                return
        self.stats["aggregates decided"] += 1
        got = [tuple(x) for x in r.rows]
        want = [tuple(x) for x in r.direct_rows]
        if got != want:
            self.violations.append(Violation("aggregate", r, None, f"{want} (PostgreSQL, read right after)", got))

    def run(self):
        for r in self.led.reads:
            self.check_read(r)
        return self.violations

    # -- reporting --
    def history(self, row, around=None):
        t0 = self.led.t_base
        lines = []
        v0 = self.init.get(row)
        lines.append(f"      initial: {'absent' if v0 is None else f'v={v0}'}")
        events = []
        for txn in self.led.txns:
            for e in txn.committed:
                if e.row == row:
                    events.append((txn.t_commit, e, txn, txn.status))
            for e in txn.undone:
                if e.row == row:
                    events.append((txn.t_commit, e, txn, "undone"))
            if row[0] == "child":
                for p, d in txn.cascades:
                    events.append((txn.t_commit, f"cascade: parent {p} deleted, d={d}", txn, txn.status))
        events.sort(key=lambda x: x[0])
        for t, e, txn, st in events:
            if row[0] == "child" and isinstance(e, str):
                # only the cascades of a parent this row had
                parents = {x.parent for x in self.rows.get(row, ())} | {
                    self.versions[self.init[row]].parent if self.init.get(row) else None}
                if not any(e.startswith(f"cascade: parent {p} ") for p in parents if p is not None):
                    continue
            if around is not None and abs(t - around) > 5.0:
                continue
            ack = f"{txn.t_ack - t0:+.4f}" if txn.t_ack else "?"
            lines.append(f"      {txn.t_commit - t0:+.4f}..{ack} {st:10s} {e}  <- {txn.describe(t0)}")
        return "\n".join(lines)

    def describe(self, v, limit_history=True):
        t0 = self.led.t_base
        out = [f"  [{v.kind}] {v.read.describe(t0)}"]
        if v.row:
            out.append(f"    row {S}.{v.row[0]} id={v.row[1]}: expected {v.expected}, got {v.got}")
        else:
            out.append(f"    expected {v.expected}, got {v.got}")
        for txn in v.refs:
            out.append(f"    because of {txn.describe(t0)}")
        if v.row:
            out.append(f"    history of {S}.{v.row[0]} id={v.row[1]} (commit sent..acknowledged, relative times):")
            out.append(self.history(v.row, around=v.read.s if limit_history else None))
        return "\n".join(out)


# ---------------------------------------------------------------- deployments

class StaleDeployment(Deployment):
    """cache_matrix's Deployment with this test's cache rules (optionally the invalidate lines),
    and optionally streaming-replica reads."""

    def __init__(self, cfg, pg, workdir, redis_single=None, redis_cluster=None, *, invalidate=False, replica=None):
        super().__init__(cfg, pg, workdir, redis_single, redis_cluster)
        self.invalidate = invalidate
        self.replica = replica

    def cache_section(self, slot):
        c = super().cache_section(slot)
        c["rules"] = RULES
        if self.invalidate:
            c["invalidate"] = INVALIDATE
        return c

    def start_instance(self, wal=True):
        slot = None
        if self.cfg.wal and wal:
            slot = f"sr_{uuid.uuid4().hex[:12]}"
            self.slots.append(slot)
        port = free_port()
        main = {"primary": {"port": self.pg.port}, "pool": {"max": 8, "query_wait_timeout": "30s"}}
        over = {"admin": {"users": ["app"]}, "cache": self.cache_section(slot), "log": {"level": "warning"}}
        if self.replica is not None:
            main.update({"replicas": [self.replica.backend()], "reads": "replicas"})
            # a paused replica stays usable (max_lag 1GB): its reads lag, which only the cache must hide
            # (a replica's result is stored only if the last primary probe began after the last
            # invalidation, counting health.timeout: keep it short)
            over["health"] = {"interval": "100ms", "timeout": "300ms", "fail_after": 3, "recover_after": 1,
                              "max_lag": "1GB"}
        c = deep_merge(base_config(self.pg, port), deep_merge({"services": {"main": main}}, over))
        c["listen"]["port"] = port
        folder = tempfile.mkdtemp(prefix=f"stale-{self.cfg.id}.", dir=self.workdir)
        r = Relay(self.pg, folder, c)
        self.started.append(r)
        r.start()
        if slot:
            wait_for(lambda: self.sql_value(f"SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' "
                                            "AND active") == 1, 15, 0.05, what=f"the WAL listener of {r.port}")
        return r

    def cache_stats(self, relay):
        a = self._admin.get(relay)
        if a is None:
            self.hits(relay)
            a = self._admin[relay]
        rows = a.execute("SHOW CACHE").fetchall()
        return {row[0]: {"hits": int(row[3]), "misses": int(row[4]), "refused": int(row[9] or 0),
                         "errors": int(row[8] or 0)} for row in rows}


def app_connect(port):
    return lambda: psycopg.connect(host="127.0.0.1", port=port, user="app", password=APP_PASSWORD, dbname="appdb",
                                   autocommit=True, prepare_threshold=None, sslmode="disable", connect_timeout=10)


def admin_connect(port):
    return psycopg.connect(host="127.0.0.1", port=port, user="app", password=APP_PASSWORD, dbname="pgrelay",
                           autocommit=True, cursor_factory=psycopg.ClientCursor, sslmode="disable")


def direct_connect(pg):
    def connect():
        c = pg.connect()
        c.execute("SET synchronous_commit = on")  # the test server's default is off: the WAL listener sees
        return c                                   # a commit only once the WAL writer flushed it
    return connect


# ---------------------------------------------------------------- one test

def cause_tag(t):
    """How a transaction was made, for grouping the violations by the commit they missed."""
    return t.mode + ("+direct" if t.direct else "") + \
        (" with ROLLBACK TO" if any(x.startswith("ROLLBACK TO") for x in t.stmts) else "") + \
        (" with SAVEPOINT" if any(x.startswith("SAVEPOINT") for x in t.stmts) else "")


def target_reads():
    return int(os.environ.get("PGRELAY_STALE_READS", "1500"))


def run_random(d, feature, *, direct_writes=False, replica=None, seed=None, reads=None, max_seconds=None,
               report=print):
    """Runs one randomized differential test on the started deployment d; returns (summary text,
    violations text or None)."""
    from conftest import TEST_TIMEOUT
    reads = reads or target_reads()
    if max_seconds is None:
        max_seconds = max(20.0, TEST_TIMEOUT - 45.0)
    seed = seed if seed is not None else int(os.environ.get("PGRELAY_STALE_SEED", "0")) or random.randrange(1 << 30)
    ledger = Ledger()
    init, children = create_schema(d.db)
    workload = Workload(feature, init)
    if d.slots:
        d.wal_settled(d.sql_value("SELECT pg_current_wal_insert_lsn()"))
    if replica is not None:
        wait_for(lambda: replica.sql(f"SELECT to_regclass('{S}.child') IS NOT NULL AND "
                                     f"(SELECT count(*) FROM {S}.counter) = {NKINDS}", dbname="appdb") == "t",
                 20, 0.1, what="the replica to replay the schema")
    run = Run(ledger, workload, seed)
    instances = d.instances
    names = {r: "AB"[i] if i < 2 else chr(ord("A") + i) for i, r in enumerate(instances)}
    before = {r: d.cache_stats(r) for r in instances}
    clients = []
    threads = []
    scope = "loose" if replica is not None else "all"
    wscope = "own" if replica is not None else "all"

    def mk(name, relay):
        c = Client(name, f"{names[relay]}:{relay.port}", app_connect(relay.port))
        clients.append(c)
        return c

    n_writers = 4
    # mean seconds between a writer's transactions; with replicas longer: a replica's result is stored
    # only when the last health probe began after the last invalidation
    pause = float(os.environ.get("PGRELAY_STALE_WRITE_PAUSE", "0.05"))
    # with replicas, writes come in phases (0.3-0.8 s of writes, then 0.6-1.5 s without): a replica's
    # result is stored only when the last health probe began after the last invalidation, which a
    # steady write load never allows
    gate = threading.Event()
    gate.set()
    n_readers = 6
    for i in range(n_writers):
        relay = instances[i % 2]
        c = mk(f"w{i}", relay)
        rnd = random.Random(seed * 1000 + i)

        def writer(c=c, rnd=rnd):
            rb = readback_reads(run, c, rnd, wscope, feature)
            while not run.stop.is_set():
                if not gate.wait(0.05):
                    continue
                run.write_txn(c, rnd, readback=rb if rnd.random() < 0.5 else None)
                run.stop.wait(rnd.uniform(0, 2 * pause))
        threads.append(run.thread(f"writer-{i}", writer))
    if direct_writes:
        dc = Client("direct0", "PostgreSQL", direct_connect(d.pg))
        clients.append(dc)
        rnd = random.Random(seed * 1000 + 99)

        def direct_writer():
            while not run.stop.is_set():
                run.write_txn(dc, rnd, direct=True)
                run.stop.wait(rnd.uniform(0, 2 * pause))
        threads.append(run.thread("direct-writer", direct_writer))
    for i in range(n_readers):
        relay = instances[i % 2]
        c = mk(f"r{i}", relay)
        db = d.pg.connect()
        clients.append(db)
        rnd = random.Random(seed * 1000 + 50 + i)

        def reader(c=c, db=db, rnd=rnd):
            while not run.stop.is_set():
                run.do_read(c, rnd, scope, direct_db=db)
                if run.reads_done >= reads:
                    run.stop.set()
        threads.append(run.thread(f"reader-{i}", reader))
    if replica is not None:
        # the probe: the only client of the third instance, so SHOW CACHE tells whether each of its
        # reads was a hit (then it must be fresh: scope "all"); its misses may come from the replica
        probe_relay = instances[2]
        pc = mk("probe", probe_relay)
        padmin = admin_connect(probe_relay.port)
        clients.append(padmin)
        pdb = d.pg.connect()
        clients.append(pdb)
        prnd = random.Random(seed * 1000 + 77)

        def probe():
            while not run.stop.is_set():
                run.do_read(pc, prnd, "hit", direct_db=pdb, admin=padmin, proto=prnd.choice(PROTOS))
        threads.append(run.thread("probe", probe))
        lrnd = random.Random(seed * 1000 + 78)

        def lagger():
            if os.environ.get("PGRELAY_STALE_REPLAY_PAUSES", "1") == "0":
                return
            try:
                while not run.stop.wait(lrnd.uniform(0.3, 1.2)):
                    replica.pause_replay()
                    run.stop.wait(lrnd.uniform(0.2, 0.8))
                    replica.resume_replay()
            finally:
                replica.ensure_running()
        threads.append(run.thread("lagger", lagger))
        grnd = random.Random(seed * 1000 + 79)

        def phases():
            while not run.stop.wait(grnd.uniform(0.3, 0.8) if gate.is_set() else grnd.uniform(0.6, 1.5)):
                if gate.is_set():
                    gate.clear()
                else:
                    gate.set()
            gate.set()
        threads.append(run.thread("phases", phases))

    t_start = ledger.t_base = time.monotonic()
    for t in threads:
        t.start()
    deadline = t_start + max_seconds
    while not run.stop.wait(0.2):
        if time.monotonic() > deadline:
            run.stop.set()
    for t in threads:
        t.join(60)
    duration = time.monotonic() - t_start
    alive = [t.name for t in threads if t.is_alive()]
    after = {r: d.cache_stats(r) for r in instances}
    for c in clients:
        try:
            c.close()
        except Exception:  # noqa: BLE001
            pass

    from cache_matrix import WAL_BOUND
    checker = Checker(ledger, init, children, direct_bound=WAL_BOUND if direct_writes else None)
    violations = checker.run()

    # -- the summary --
    st = checker.stats
    txns = ledger.txns
    status = collections.Counter(t.status for t in txns)
    modes = collections.Counter(t.mode for t in txns)
    n_undone = sum(1 for t in txns if t.status == "committed" and t.undone)
    protos = collections.Counter(r.proto for r in ledger.reads)
    lines = [f"stale-random {feature} on {d.cfg.id}{' +invalidate' if d.invalidate else ''}"
             f"{' +replica' if replica is not None else ''} (seed {seed}): "
             f"{len(ledger.reads)} reads in {duration:.1f} s = {len(ledger.reads) / duration:.0f} reads/s; "
             f"violations: {len(violations)}"]
    lines.append("  reads by scope/kind: " + ", ".join(f"{k} {v}" for k, v in sorted(st.items())))
    lines.append("  reads by protocol: " + ", ".join(f"{k} {v}" for k, v in sorted(protos.items())))
    lines.append(f"  transactions: {len(txns)} ({', '.join(f'{k} {v}' for k, v in sorted(status.items(), key=str))}; "
                 f"{n_undone} committed with writes rolled back to a savepoint; "
                 f"{sum(1 for t in txns if t.direct)} direct on PostgreSQL); modes: "
                 + ", ".join(f"{k} {v}" for k, v in sorted(modes.items())))
    for r in instances:
        b, a = before[r]["total"], after[r]["total"]
        h, m = a["hits"] - b["hits"], a["misses"] - b["misses"]
        extra = ""
        if "l2" in after[r]:
            l2h = after[r]["l2"]["hits"] - before[r]["l2"]["hits"]
            extra = f", of which L2 {l2h}; refused {after[r]['total']['refused']}; redis errors {a['errors']}"
        lines.append(f"  instance {names[r]} (port {r.port}): hits {h}, misses {m}, hit rate "
                     f"{h / (h + m) if h + m else 0:.3f}{extra}")
    if checker.direct_lags:
        lags = sorted(checker.direct_lags)
        lines.append(f"  direct writes seen late (within the WAL bound {WAL_BOUND}s): {len(lags)} reads, "
                     f"max {lags[-1] * 1000:.1f} ms, p50 {lags[len(lags) // 2] * 1000:.1f} ms")
    if ledger.errors:
        lines.append("  errors: " + "; ".join(f"{w} {k} x{n} ({ledger.error_samples[(w, k)]})"
                                             for (w, k), n in sorted(ledger.errors.items())))
    if run.thread_errors:
        lines.append("  thread failures:\n" + "\n".join(run.thread_errors))
    if alive:
        lines.append(f"  threads still running: {alive}")
    summary = "\n".join(lines)
    report(summary)
    detail = None
    if violations:
        kinds = collections.Counter(v.kind for v in violations)
        by_feature = collections.Counter((v.read.spec[1] if v.read.spec[0] in ("point", "range") else v.read.kind)
                                         for v in violations)
        out = [f"{len(violations)} violations: " + ", ".join(f"{k} {n}" for k, n in kinds.items())
               + "; by table/kind read: " + ", ".join(f"{k} {n}" for k, n in by_feature.items())]
        # what the commit that the read missed was, and how long after its acknowledgement the read began
        causes, lags = collections.Counter(), collections.defaultdict(list)
        for v in violations:
            if v.kind in ("stale", "cascade-stale") and v.refs:
                t = v.refs[0]
                causes[f"{v.kind} after {cause_tag(t)}"] += 1
                lags[v.kind].append(v.read.s - t.t_ack)
        if causes:
            out.append("  the commit missed: " + ", ".join(f"{k} {n}" for k, n in sorted(causes.items())))
            for k, ls in sorted(lags.items()):
                ls.sort()
                out.append(f"  {k}: read started {ls[0] * 1000:.1f} .. {ls[-1] * 1000:.1f} ms (p50 "
                           f"{ls[len(ls) // 2] * 1000:.1f} ms) after that commit's acknowledgement")
        shown = collections.Counter()
        for v in violations:
            # a few of each kind of read and of each kind of commit missed
            key = (v.kind, v.read.spec[0], cause_tag(v.refs[0]) if v.refs else None)
            if shown[key] >= 2 or sum(shown.values()) >= 16:
                continue
            shown[key] += 1
            out.append(checker.describe(v))
        detail = "\n".join(out)
        report(detail)
    path = os.environ.get("PGRELAY_STALE_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(summary + "\n" + (detail or "") + "\n\n")
    return summary, detail, len(ledger.reads), violations, run, reads
