#!/usr/bin/env bash
# Reliability drills that cannot run inside CI (they stop the machine's PostgreSQL) or
# that CI runs only briefly. Results go in docs/reliability.md.
#   bash scripts/drills.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== kill -9 while 64 creates are in flight, 20 times per backend"
CREDVAULT_DRILL_ROUNDS=20 cargo test --test api drills::kill_nine -- --nocapture 2>&1 | grep -E "drill|test result"
echo "== PostgreSQL stopped for 30 s under load"
cargo test --test api drills::postgres_outage -- --ignored --nocapture 2>&1 | grep -E "drill|test result|panicked"
