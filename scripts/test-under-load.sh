#!/usr/bin/env bash
# Runs pytest while `stress-ng --cpu N` keeps the machine's cores busy, the way a shared CI runner is.
# Usage: scripts/test-under-load.sh [pytest args...]   (default: the whole suite, -n 2 --dist loadfile -q)
# STRESS_CPU=N   stress-ng CPU workers (default 2: one per core here)
# STRESS_RUNS=N  run pytest N times in a row under the same load; stops at the first failing run
# Exit code: pytest's (of the first failing run).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v stress-ng >/dev/null || { echo "test-under-load: stress-ng missing (make system-deps)" >&2; exit 2; }
cpu=${STRESS_CPU:-2}
runs=${STRESS_RUNS:-1}
[ $# -gt 0 ] || set -- -n 2 --dist loadfile -q
stress-ng --cpu "$cpu" --quiet &
stress_pid=$!
# stress-ng stops its workers when it gets SIGTERM; only the pid we started is signalled.
trap 'kill "$stress_pid" 2>/dev/null || true; wait "$stress_pid" 2>/dev/null || true' EXIT
echo "test-under-load: stress-ng --cpu $cpu (pid $stress_pid), $runs run(s) of: pytest $*"
for i in $(seq 1 "$runs"); do
  echo "== run $i/$runs, load average: $(cut -d' ' -f1-3 /proc/loadavg)"
  .venv/bin/python -m pytest "$@"
done
