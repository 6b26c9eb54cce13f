#!/bin/bash
# bench/soak.sh — a long mixed soak through pgrelay (default 30 minutes; not run in CI): a
# select/update mix, connection churn, named prepared statements, optionally the result cache, all
# at once; pgrelay's RSS and open descriptors sampled every 10 s, then a verdict "flat" or not by
# the rule stated in the report. See README.md ("The soak").
# Usage: bench/soak.sh [--duration S] [--interval S] [--cache] [--quick] ...
#        (as root; bench/soak.sh --help lists every option)
# run.sh does the root check and the clean-up of last resort; soak.py does the work.
exec "$(cd "$(dirname "$0")" && pwd)/run.sh" soak "$@"
