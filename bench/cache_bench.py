#!/usr/bin/python3
"""pgrelay's result cache under a Zipf-distributed read workload with a few writes, with pgbench.

Started by bench/cache.sh (through run.sh, which checks for root and /usr/bin/python3); see
bench/README.md, "The cache benchmark". Reuses bench.py's machinery (PostgreSQL as postgres, the
proxies, pool warm-up, pgbench --log percentiles, /proc CPU); adds the demo schema with generated
rows, the weighted pgbench scripts, a redis-server, and the hit rate measured on PostgreSQL's side
with pg_stat_statements. Progress to stderr, the Markdown report to stdout and bench/out/cache.md.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as base  # noqa: E402  (bench/bench.py, next to this file)
from bench import fmt, progress, ratio  # noqa: E402

REDIS_SERVER = "/usr/bin/redis-server"
SYSTEMS = ("direct", "pgbouncer", "pgrelay", "pgrelay-cache", "pgrelay-redis")
CACHED = ("pgrelay-cache", "pgrelay-redis")
LABELS = {"pgrelay": "pgrelay, cache off", "pgrelay-cache": "pgrelay + cache L1",
          "pgrelay-redis": "pgrelay + cache L1+Redis"}
SHORT = {"pgrelay": "cache off", "pgrelay-cache": "L1", "pgrelay-redis": "L1+Redis"}

# The workload: one statement per script (so one transaction = one statement, in autocommit).
# name -> (share of the reads or of the writes in %, marker: a piece of the text only this
# statement has (to find it in pg_stat_statements), the script with NPRODUCTS, NCATEGORIES, NUSERS
# and ZIPF to fill in). Ids are uuids in the demo schema. pgbench cannot make a uuid string, so row
# n of products and users has the id 00000000-0000-4000-8000-<100000000000 + n> and a script turns
# its Zipf-drawn number into that uuid in SQL: ('00000000-0000-4000-8000-' || :id)::uuid, a
# constant (or, with -M extended/prepared, a parameter) that pgrelay's row keys read as one value.
UUID = "('00000000-0000-4000-8000-' || :{})::uuid"
READS = {
    "product": (50, "FROM products.products WHERE id =", f"""\\set id 100000000000 + random_zipfian(1, NPRODUCTS, ZIPF)
SELECT id, sku, name, description, category_id, status FROM products.products
WHERE id = {UUID.format("id")};
"""),
    "category": (20, "WHERE category_id", """\\set c random_zipfian(1, NCATEGORIES, ZIPF)
SELECT id, sku, name->>'en' AS name FROM products.products
WHERE category_id = md5(:c::text || '-category')::uuid AND status = 'active' ORDER BY sku LIMIT 20;
"""),
    "profile": (30, "JOIN users.user_profiles", f"""\\set u 100000000000 + random_zipfian(1, NUSERS, ZIPF)
SELECT u.id, u.username, u.email, p.full_name, p.language_preference, p.timezone FROM users.users u
JOIN users.user_profiles p ON p.user_id = u.id WHERE u.id = {UUID.format("u")};
"""),
}
WRITES = {
    "write_product": (50, "UPDATE products.products", f"""\\set id 100000000000 + random_zipfian(1, NPRODUCTS, ZIPF)
UPDATE products.products SET status = CASE status WHEN 'active' THEN 'promoted' ELSE 'active' END, updated_at = now()
WHERE id = {UUID.format("id")};
"""),
    "write_profile": (50, "UPDATE users.user_profiles", f"""\\set u 100000000000 + random_zipfian(1, NUSERS, ZIPF)
UPDATE users.user_profiles SET language_preference = CASE language_preference WHEN 'en' THEN 'bn' ELSE 'en' END
WHERE user_id = {UUID.format("u")};
"""),
}
WEIGHT_UNITS = 10000  # pgbench weights are integers: a write share of 1% is 100 of 10000

# The rows, generated in SQL (no downloads): categories, products spread over them, users with profiles.
DATA_SQL = """
INSERT INTO products.categories (id, name, slug, level)
SELECT md5(g::text || '-category')::uuid, jsonb_build_object('en', 'Category ' || g, 'bn', 'বিভাগ ' || g),
       'category-' || g, 0
FROM generate_series(1, NCATEGORIES) g;
INSERT INTO products.products (id, sku, name, description, vendor_id, category_id, status, created_at,
                               updated_at)
SELECT ('00000000-0000-4000-8000-' || (100000000000 + g))::uuid, 'SKU-' || lpad(g::text, 7, '0'),
       jsonb_build_object('en', 'Product ' || g, 'bn', 'পণ্য ' || g),
       jsonb_build_object('en', 'Description of product ' || g || ': ' || repeat('lorem ipsum ', 1 + g % 8)),
       md5((g % 200)::text || '-vendor')::uuid, md5((1 + g % NCATEGORIES)::text || '-category')::uuid,
       CASE WHEN g % 20 = 0 THEN 'archived' ELSE 'active' END,
       timestamptz '2025-01-01' + g * interval '1 minute', timestamptz '2025-01-01' + g * interval '1 minute'
FROM generate_series(1, NPRODUCTS) g;
INSERT INTO users.users (id, username, email, phone, created_at)
SELECT ('00000000-0000-4000-8000-' || (100000000000 + g))::uuid, 'user' || g, 'user' || g || '@example.com',
       '+88017' || lpad(g::text, 8, '0'), timestamptz '2025-01-01' + g * interval '1 minute'
FROM generate_series(1, NUSERS) g;
INSERT INTO users.user_profiles (user_id, full_name, date_of_birth, gender, language_preference)
SELECT ('00000000-0000-4000-8000-' || (100000000000 + g))::uuid, 'User ' || g, date '1970-01-01' + (g * 37) % 15000,
       CASE WHEN g % 2 = 0 THEN 'female' ELSE 'male' END, CASE WHEN g % 3 = 0 THEN 'en' ELSE 'bn' END
FROM generate_series(1, NUSERS) g;
-- Not in the demo schema: without it "products of a category" scans the whole table, which would
-- flatter the cache against a direct PostgreSQL that is merely missing an index.
CREATE INDEX bench_products_category ON products.products (category_id, sku);
GRANT USAGE ON SCHEMA products, users TO app;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA products, users TO app;
CREATE EXTENSION pg_stat_statements;
"""


def weights(write_share):
    """{script name: pgbench weight} for a write share in % (scripts of weight 0 left out)."""
    w_units = round(write_share * WEIGHT_UNITS / 100)
    out = {}
    for group, units in ((READS, WEIGHT_UNITS - w_units), (WRITES, w_units)):
        for name, (share, _, _) in group.items():
            if round(units * share / 100) > 0:
                out[name] = round(units * share / 100)
    return out


def pct(v):
    return "-" if v is None else f"{100 * v:.1f}%".replace("-0.0%", "0.0%")


class CacheBench(base.Bench):
    PORT_NAMES = ("pg", "pgbouncer", "pgrelay", "pgrelay_cache", "pgrelay_redis", "redis")
    REPORT_FILE = "cache.md"
    LOG_PREFIX = "cache-"

    def __init__(self, args):
        super().__init__(args)
        self.redis = None
        self.write_share = None  # of the cell being run
        self.mode = None

    # -- setup ---------------------------------------------------------------------------------

    def setup(self):
        self.make_base()
        self.start_postgres()
        self.load_data()
        self.start_redis()
        self.write_scripts()
        for name in SYSTEMS[1:]:
            self.start_proxy(name)

    def extra_pg_conf(self):
        return "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = top\n"

    def fill(self, text):
        a = self.args
        for k, v in (("NPRODUCTS", a.products), ("NCATEGORIES", a.categories), ("NUSERS", a.users),
                     ("ZIPF", a.zipf)):
            text = text.replace(k, str(v))
        return text

    def load_data(self):
        a = self.args
        progress(f"demo schema (migrations/products, users) + {a.products} products in "
                 f"{a.categories} categories, {a.users} users with profiles")
        t = time.monotonic()
        data = self.write("cache-data.sql", self.fill(DATA_SQL))
        schema = [os.path.join(base.REPO_DIR, "migrations", s, "0001_schema.sql") for s in ("products", "users")]
        self.psql(files=schema + [data])
        self.psql("VACUUM ANALYZE", "CHECKPOINT")
        progress(f"data loaded in {time.monotonic() - t:.1f} s")

    def write_scripts(self):
        for name, (_, _, sql) in list(READS.items()) + list(WRITES.items()):
            self.write(f"{name}.sql", self.fill(sql))
        # Fills the pools: not cacheable (no table), so it reaches PostgreSQL through every proxy.
        self.write("warm-up.sql", "SELECT 1;\n")

    def start_redis(self):
        d = os.path.join(self.base, "redis")
        os.mkdir(d, 0o700)
        log = os.path.join(self.base, "redis.log")
        self.redis = subprocess.Popen(
            [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.redis_port), "--save", "", "--appendonly", "no",
             "--dir", d, "--logfile", log, "--daemonize", "no"],
            cwd=d, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        with open(os.path.join(self.base, "redis.pid"), "w") as f:
            f.write(f"{self.redis.pid}\n")  # for run.sh's clean-up of last resort
        deadline = time.monotonic() + 15
        while not redis_ping(self.redis_port):
            if self.redis.poll() is not None or time.monotonic() > deadline:
                raise base.SetupError(f"redis-server did not answer PING on port {self.redis_port}:\n"
                                      f"{base.tail(log, 20)}")
            time.sleep(0.05)
        progress(f"redis-server started (pid {self.redis.pid}, port {self.redis_port})")

    def stop_others(self):
        if self.redis and self.redis.poll() is None:
            self.redis.send_signal(signal.SIGTERM)
            try:
                self.redis.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.redis.kill()
                self.redis.wait()

    def pgrelay_extra_yaml(self, name):
        if name not in CACHED:
            return ""
        redis = ""
        if name == "pgrelay-redis":
            redis = f'  redis: {{ nodes: ["127.0.0.1:{self.redis_port}"], prefix: "bench" }}\n'
        return f"""cache:
  l1: {{ max_memory: 256MB }}
  ttl: 5m
  rules:
    - {{ schema: products, key: id }}
    - {{ schema: users, tables: [user_profiles], key: user_id }}
    - {{ schema: users, key: id }}
{redis}"""

    def versions(self):
        return super().versions() + "; " + base.first_line([REDIS_SERVER, "--version"])

    # -- one run -------------------------------------------------------------------------------

    def script_args(self, script):
        if script == "warm-up":
            return ["-f", os.path.join(self.base, "warm-up.sql")]
        return [a for name, w in weights(self.write_share).items()
                for a in ("-f", f"{os.path.join(self.base, name)}.sql@{w}")]

    def before_run(self, script):
        self.psql("SELECT pg_stat_statements_reset()")

    def after_run(self, system, script, res, out):
        """Adds sent (transactions per script, from pgbench), at_pg (calls per script, from
        pg_stat_statements), the hit rate over all reads and per read script, and Redis's CPU."""
        res["sent"] = {}
        for m in re.finditer(r"^SQL script \d+: (\S+)\n - weight: .*\n - (\d+) transactions", out, re.M):
            res["sent"][os.path.basename(m.group(1)).removesuffix(".sql")] = int(m.group(2))
        rows = self.psql("SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls FROM pg_stat_statements "
                         "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'app') "
                         "AND userid = 'app'::regrole AND query ~ '(products|users)\\.'", tuples=True).stdout
        res["at_pg"] = {name: 0 for name in list(READS) + list(WRITES)}
        for line in rows.splitlines():
            text, _, calls = line.rpartition(" ")
            if not calls.isdigit():
                continue
            for name, (_, marker, _) in list(READS.items()) + list(WRITES.items()):
                if marker in text:
                    res["at_pg"][name] += int(calls)
        res["hit"] = {}
        for name in READS:
            if res["sent"].get(name):
                res["hit"][name] = 1 - res["at_pg"][name] / res["sent"][name]
        sent = sum(res["sent"].get(n, 0) for n in READS)
        res["hit_all"] = 1 - sum(res["at_pg"][n] for n in READS) / sent if sent else None
        res["pg_per_s"] = sum(res["at_pg"].values()) / self.args.duration
        for name in WRITES:
            if res["sent"].get(name, 0) > res["at_pg"][name]:
                self.notes.append(f"{system}, -M {self.mode}, write share {self.write_share:g}%: {name}: pgbench "
                                  f"ran {res['sent'][name]} transactions, PostgreSQL executed "
                                  f"{res['at_pg'][name]}")
        progress(f"  {system}: hit rate {pct(res['hit_all'])}, statements at PostgreSQL "
                 f"{res['pg_per_s']:.0f}/s")

    def pgbench_run(self, system, port, script, mode, clients, **kw):
        """bench.py's, after priming the cache of a cached system; adds Redis's CPU to the result."""
        if system in CACHED and self.args.prime > 0 and self.ensure_proxy(system):
            self.warm_up(system, port, False, script, self.args.prime, clients, mode)
        cpu0 = base.cpu_seconds(self.redis.pid)
        res = super().pgbench_run(system, port, script, mode, clients, **kw)
        if res["n"] > 0:
            res["redis_cpu"] = (base.cpu_seconds(self.redis.pid) - cpu0) / res["n"] * 10000
        return res

    # -- the benchmark -------------------------------------------------------------------------

    def main(self):
        a = self.args
        started, date = self.begin()
        cells = [(w, m, c) for w in a.write_share for m in a.modes for c in a.clients]
        n_runs = sum(len(SYSTEMS) - (m == "prepared") for _, m, _ in cells)
        n_primes = len(cells) * len(CACHED) if a.prime else 0
        progress(f"{n_runs} pgbench runs of {a.duration} s and {n_primes} primings of {a.prime} s: about "
                 f"{(n_runs * (a.duration + 1.5) + n_primes * (a.prime + 0.5) + 60) / 60:.1f} min")
        self.setup()
        sections = {}
        for cell_no, (w, mode, clients) in enumerate(cells):
            self.write_share, self.mode = w, mode
            # Debian's pgbouncer 1.18 cannot run -M prepared in transaction pooling.
            systems = [s for s in SYSTEMS if not (mode == "prepared" and s == "pgbouncer")]
            results = self.run_cell(f"write share {w:g}% -M {mode} -c {clients}", systems, cell_no, "mix", mode,
                                    clients)
            sections.setdefault(w, []).append(((mode, clients), results))
        self.finish(started, lambda elapsed: self.report(date, sections, elapsed))

    # -- report --------------------------------------------------------------------------------

    def report(self, date, sections, elapsed):
        a = self.args
        pw = weights(a.write_share[0])
        mix = ", ".join(f"`{n}.sql@{w}`" for n, w in pw.items())
        out = self.report_head(
            "# pgrelay result-cache benchmark", date, elapsed,
            f"the demo schema (`migrations/products`, `migrations/users`, 0001 only) with generated rows: "
            f"{a.products} products in {a.categories} categories, {a.users} users with profiles, plus an index on "
            f"products (category_id, sku). pgbench custom scripts, one statement each (autocommit), ids drawn with "
            f"`random_zipfian(1, N, {a.zipf})`: reads = product by id (50%), products of a category "
            f"(`LIMIT 20`, 20%), user + profile join (30%); writes = UPDATE of a product / a profile by a Zipf "
            f"id (half each; the product write flips its status, which the category read filters on), through the system measured (so pgrelay invalidates). E.g. {mix} for a write share "
            f"of {a.write_share[0]:g}%. {a.duration} s per run, `-j` = min(clients, 2); pool size {a.pool} on every "
            f"proxy, transaction pooling, SCRAM-SHA-256 on both sides, plain TCP. pgrelay's cache: "
            f"`l1.max_memory 256MB, ttl 5m`, rules for the schemas products and users with row keys (`key: id`, "
            f"`key: user_id` for user_profiles: a write of a row invalidates the reads of that row, and the "
            f"category reads, which do not name a key, by table); the Redis variant adds "
            f"`redis.nodes` = one local redis-server (Debian's, no persistence; default 20 ms timeout). "
            f"PostgreSQL: fsync off, synchronous_commit off, shared_buffers 256MB, pg_stat_statements loaded "
            f"(for every system). Systems run back to back within each cell, in an order rotated from cell to "
            f"cell; pools filled first; " + (f"before each run of a cached system, {a.prime} s of the same "
                                             f"workload (unmeasured) prime its cache." if a.prime else
                                             "no priming of the caches (`--prime 0`)."),
            "TPS, latency percentiles (ms, from `pgbench --log`) and failed as in bench/run.sh; hit = "
            "1 - (read statements PostgreSQL executed, from `pg_stat_statements` reset before each run) / (read "
            "transactions pgbench completed), i.e. the share of reads that never reached PostgreSQL; at PG/s = "
            "statements PostgreSQL executed (reads + writes) per second of `-T` (connection time included); "
            "CPU = the proxy's utime+stime per 10,000 transactions (for L1+Redis: pgrelay + redis-server); "
            "pgbench CPU = the load generator's own utime+stime (getrusage of the reaped child) per 10,000 "
            "transactions: on this 2-CPU machine pgbench shares the CPUs with what it measures, so a system "
            "that costs nothing could at best run 2 CPUs / pgbench CPU per transaction.")
        for w, rows in sections.items():
            out += [f"## Write share {w:g}%", ""]
            out += base.results_table(rows, SYSTEMS, RESULT_COLUMNS, LABELS)
            out += ["Hit rate by statement (cached systems):", ""]
            out += base.ratio_table(rows, [f"{SHORT[s]}: {n}" for s in CACHED for n in READS],
                                    lambda results: [pct(results[s]["hit"].get(n)) if isinstance(results.get(s), dict)
                                                     and "hit" in results[s] else "-"
                                                     for s in CACHED for n in READS])
            out += ["TPS ratios:", ""]
            pairs = [(c, o) for c in CACHED for o in ("direct", "pgbouncer", "pgrelay")]
            out += base.ratio_table(rows, [f"{SHORT[c]} / {SHORT.get(o, o)}" for c, o in pairs],
                                    lambda results: [tps_ratio(results, c, o) for c, o in pairs])
        return "\n".join(out + self.notes_lines("No pgbench errors, failed transactions, lost writes or "
                                                "unusual pgrelay log lines."))


def tps_ratio(results, a, b):
    ra, rb = results.get(a), results.get(b)
    if not isinstance(ra, dict) or not isinstance(rb, dict):
        return "n/a"
    return ratio(ra["tps"], rb["tps"])


def cpu_cell(r, s):
    if s == "direct":
        return "-"
    if s == "pgrelay-redis" and r.get("redis_cpu") is not None and r["cpu"] is not None:
        return fmt(r["cpu"] + r["redis_cpu"], 3)
    return fmt(r["cpu"], 3)


RESULT_COLUMNS = base.RESULT_COLUMNS[:5] + [
    ("hit", lambda r, s: pct(r.get("hit_all"))),
    ("at PG/s", lambda r, s: fmt(r.get("pg_per_s"), 0)),
    ("CPU s/10k tx", cpu_cell),
    ("pgbench CPU s/10k tx", lambda r, s: fmt(r.get("client_cpu"), 3)),
]


def redis_ping(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def int_list(text):
    return [int(x) for x in text.split(",") if x]


def main():
    ap = base.arg_parser("bench/cache.sh", __doc__.splitlines()[0], 6)
    ap.add_argument("--quick", action="store_true",
                    help="smoke test: 2 s per run, 16 clients, -M simple and extended, 1 s priming")
    ap.add_argument("--clients", type=int_list, default=None, help="client counts, comma-separated (default 16,64)")
    ap.add_argument("--modes", default=None,
                    help="pgbench -M protocols, comma-separated (default simple,extended,prepared)")
    ap.add_argument("--write-share", type=lambda t: [float(x) for x in t.split(",") if x], default=[1.0],
                    help="share of the transactions that are writes, in %%; comma-separated for several "
                         "(default 1)")
    ap.add_argument("--zipf", type=float, default=1.1, help="random_zipfian parameter, > 1 (default 1.1)")
    ap.add_argument("--products", type=int, default=10000, help="rows in products.products (default 10000)")
    ap.add_argument("--categories", type=int, default=100, help="rows in products.categories (default 100)")
    ap.add_argument("--users", type=int, default=10000, help="users with a profile (default 10000)")
    ap.add_argument("--prime", type=int, default=None,
                    help="seconds of unmeasured workload before each cached run (default 8; 1 with --quick)")
    args = base.parse_common(ap, 6)
    args.clients = args.clients or ([16] if args.quick else [16, 64])
    args.modes = (args.modes or ("simple,extended" if args.quick else "simple,extended,prepared")).split(",")
    if args.prime is None:
        args.prime = 1 if args.quick else 8
    if (not all(m in ("simple", "extended", "prepared") for m in args.modes) or not all(0 <= w <= 100 for w in
                                                                                         args.write_share)
            or not 1 < args.zipf <= 1000 or min(args.products, args.categories, args.users) < 1
            or not all(1 <= c <= 120 for c in args.clients)):
        ap.error("--modes: simple, extended, prepared; --write-share 0..100; --zipf in (1, 1000]; row counts >= 1; "
                 "clients 1..120")
    base.run_bench(CacheBench, args, [(REDIS_SERVER, "redis-server")])


if __name__ == "__main__":
    main()
