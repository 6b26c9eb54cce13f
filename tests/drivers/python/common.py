"""What the Python driver workloads (psycopg_workload.py, asyncpg_workload.py) share: arguments, the
output format and the statements. The workload itself is described in tests/drivers/README.md.

Output: one line per step, `label<TAB>JSON rows` (a list of rows, each a list of values), flushed as
it goes, so that a run cut short shows how far it got. A failure prints `FAILED in step <label>: ...`
on stderr and exits 1."""
import argparse
import json
import sys

STEP_TIMEOUT = 3.0  # seconds one driver call may take (a query here takes milliseconds)

# Statements with $n placeholders (asyncpg); pg_format() gives psycopg's %s form.
PLAIN = "SELECT /*drv-plain*/ id, name, qty FROM drv_items ORDER BY id"
REF = "SELECT code, label FROM drv_ref WHERE code = $1"
PARAM = "SELECT name, qty FROM drv_items WHERE id = $1"
RANGE = "SELECT id FROM drv_items WHERE qty > $1 ORDER BY id"
FETCHVAL = "SELECT $1::int + 1"
INSERT = "INSERT INTO drv_items (id, name, qty) VALUES ($1, $2, $3)"
QTY = "SELECT qty FROM drv_items WHERE id = $1"
BUMP = "UPDATE drv_items SET qty = qty + $1 WHERE id = $2"
BUMP_RETURNING = "UPDATE drv_items SET qty = qty + $1 WHERE id = $2 RETURNING qty"
LOG_INSERT = "INSERT INTO drv_log (id, note) VALUES ($1, $2)"
LOG_READ = "SELECT id, note FROM drv_log ORDER BY id"
LOG_ROWS = [(1, "a"), (2, "b"), (3, "c")]


def pg_format(sql):
    """$1, $2 ... as psycopg's %s (the statements use each parameter once, in order)."""
    out, i = sql, 1
    while f"${i}" in out:
        out = out.replace(f"${i}", "%s", 1)
        i += 1
    return out


def args(paths):
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--user", default="app")
    p.add_argument("--password", required=True)
    p.add_argument("--dbname", default="appdb")
    p.add_argument("--path", choices=paths, required=True)
    return p.parse_args()


def emit(label, rows):
    print(f"{label}\t{json.dumps([list(r) for r in rows])}", flush=True)


def fail(label, exc):
    print(f"FAILED in step {label}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    sys.exit(1)
