#!/bin/bash
# bench/scale.sh — pgrelay at scale: 10,000 idle clients (RSS at start, after the logins, after one
# query each), 10,000 active clients over a pool of 20 (pgbench, 0 failed transactions, TPS and
# p50/p95/p99), and new connections per second with pgbench --connect through pgrelay and pgbouncer
# (per authentication method). See README.md ("The scale benchmark").
# Usage: bench/scale.sh [--quick] [--clients N] [--duration S] [--parts idle,active,connect] ...
#        (as root; bench/scale.sh --help lists every option)
# run.sh does the root check and the clean-up of last resort; scale.py does the work.
exec "$(cd "$(dirname "$0")" && pwd)/run.sh" scale "$@"
