#!/bin/bash
# bench/cache.sh — the result-cache benchmark: a Zipf-distributed read workload over the demo schema
# (products, user profiles) with a small share of writes, against PostgreSQL directly, pgbouncer,
# and pgrelay with the cache off, on (L1) and on with Redis. See README.md ("The cache benchmark").
# Usage: bench/cache.sh [--quick] [--duration S] [--clients 16,64] [--write-share 1] [--pool N] ...
#        (as root; bench/cache.sh --help lists every option)
# run.sh does the root check and the clean-up of last resort; cache_bench.py does the work.
exec "$(cd "$(dirname "$0")" && pwd)/run.sh" cache "$@"
